"""D1's rules in the emulator: limits, transactions, parameters, atomic batches, value encoding (d1-contract)."""

from __future__ import annotations

import math

import pytest

from d1sync.emulator.engine import js_number, to_d1_value
from d1sync.local import MULTI_PARAM_MESSAGE

from .conftest import Api


def test_100_bound_parameters_pass_and_101_fail(api: Api) -> None:
    hundred = ", ".join("?" for _ in range(100))
    assert api.sql(f"SELECT {hundred}", *range(100)).status_code == 200
    status, code, message = api.error(api.sql(f"SELECT {hundred}, ?", *range(101)))
    assert (status, code) == (400, 7500) and "too many SQL variables" in message


def test_a_placeholder_numbered_over_100_is_refused(api: Api) -> None:
    status, code, message = api.error(api.sql("SELECT ?101"))
    assert (status, code) == (400, 7500) and "?100" in message


def test_a_statement_of_100000_bytes_passes_and_100001_fails(api: Api) -> None:
    head, tail = "SELECT '", "' AS s"
    fits = head + "x" * (100_000 - len(head) - len(tail)) + tail
    assert len(fits.encode()) == 100_000
    assert api.sql(fits).status_code == 200
    status, code, message = api.error(api.sql(fits.replace("'x", "'xy", 1)))
    assert (status, code) == (400, 7500) and "SQLITE_TOOBIG" in message


def test_a_value_over_2mb_fails_with_sqlite_toobig(api: Api) -> None:
    api.ok("CREATE TABLE blobs (v TEXT)")
    status, code, message = api.error(api.sql("INSERT INTO blobs VALUES (?)", "x" * 2_200_000))
    assert (status, code) == (400, 7500) and "SQLITE_TOOBIG" in message
    assert api.ok("SELECT count(*) AS n FROM blobs") == [{"n": 0}]


def test_a_multibyte_text_over_2_2mb_in_bytes_fails_though_its_length_in_characters_fits(api: Api) -> None:
    assert api.ok("SELECT length(?) AS n", "é" * 1_100_000) == [{"n": 1_100_000}]  # 2,200,000 bytes: D1's limit
    status, _, message = api.error(api.sql("SELECT length(?) AS n", "é" * 1_100_001))
    assert status == 400 and "SQLITE_TOOBIG" in message


def test_a_value_of_1_9mb_round_trips(api: Api) -> None:
    api.ok("CREATE TABLE blobs (v TEXT)")
    api.ok("INSERT INTO blobs VALUES (?)", "y" * 1_900_000)
    assert api.ok("SELECT length(v) AS n FROM blobs") == [{"n": 1_900_000}]


def test_a_value_computed_in_sql_over_2_2mb_fails_with_sqlite_toobig(api: Api) -> None:
    assert api.ok("SELECT length(zeroblob(2200000)) AS n") == [{"n": 2_200_000}]
    status, _, message = api.error(api.sql("SELECT zeroblob(2200001) AS z"))
    assert status == 400 and "SQLITE_TOOBIG" in message


@pytest.mark.parametrize(
    "sql", ["BEGIN", "BEGIN TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT sp", "RELEASE sp", "END"]
)
def test_transaction_statements_are_rejected(api: Api, sql: str) -> None:
    status, code, _ = api.error(api.sql(sql))
    assert (status, code) == (400, 7500)


def test_begin_inside_a_multi_statement_text_is_rejected_and_nothing_applies(api: Api) -> None:
    api.ok("CREATE TABLE t (x)")
    assert api.sql("INSERT INTO t VALUES (1); BEGIN; INSERT INTO t VALUES (2)").status_code == 400
    assert api.ok("SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_several_statements_may_have_parameters_only_on_the_last(api: Api) -> None:
    api.ok("CREATE TABLE t (x)")
    status, code, message = api.error(api.sql("INSERT INTO t VALUES (?); SELECT 1", 5))
    assert (status, code, message) == (400, 7500, MULTI_PARAM_MESSAGE)
    assert api.ok("INSERT INTO t VALUES (1); INSERT INTO t VALUES (?)", "2") == []
    assert api.ok("SELECT x FROM t ORDER BY x") == [{"x": 1}, {"x": "2"}]


def test_a_batch_is_atomic_when_its_second_statement_fails(api: Api) -> None:
    api.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    body = {"batch": [{"sql": "INSERT INTO t VALUES (1)"}, {"sql": "INSERT INTO nope VALUES (2)"}]}
    status, code, message = api.error(api.post(body))
    assert (status, code, message) == (400, 7500, "no such table: nope: SQLITE_ERROR")
    assert api.ok("SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_a_multi_statement_text_is_atomic(api: Api) -> None:
    api.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    assert api.sql("INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)").status_code == 400
    assert api.ok("SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_a_json_number_parameter_binds_as_real_and_a_string_as_text(api: Api) -> None:
    rows = api.ok("SELECT typeof(?) AS a, typeof(?) AS b, typeof(?) AS c, typeof(?) AS d", 1, 1.5, "1", None)
    assert rows == [{"a": "real", "b": "real", "c": "text", "d": "null"}]


def test_column_affinity_converts_a_number_parameter_and_a_big_integer_string_exactly(api: Api) -> None:
    api.ok("CREATE TABLE t (n INTEGER, s TEXT)")
    api.ok("INSERT INTO t VALUES (?, ?)", 7, 7)
    api.ok("INSERT INTO t VALUES (?, ?)", "9223372036854775807", "x")
    rows = api.ok("SELECT typeof(n) AS tn, CAST(n AS TEXT) AS n, typeof(s) AS ts, s FROM t ORDER BY rowid")
    assert rows == [
        {"tn": "integer", "n": "7", "ts": "text", "s": "7.0"},
        {"tn": "integer", "n": "9223372036854775807", "ts": "text", "s": "x"},
    ]


def test_a_json_number_beyond_2_53_is_rounded_like_a_javascript_double(api: Api) -> None:
    rows = api.ok("SELECT CAST(CAST(? AS INTEGER) AS TEXT) AS v", 2**53 + 1)
    assert rows == [{"v": str(2**53)}]


def test_big_integers_leave_as_javascript_would_print_them(api: Api) -> None:
    text = api.sql("SELECT 9223372036854775807 AS a, -9223372036854775808 AS b, 9007199254740993 AS c").text
    assert '"a":9223372036854776000' in text
    assert '"b":-9223372036854776000' in text
    assert '"c":9007199254740992' in text


def test_integers_within_2_53_leave_exactly(api: Api) -> None:
    assert api.ok("SELECT 9007199254740991 AS a, -9007199254740991 AS b") == [
        {"a": 9007199254740991, "b": -9007199254740991}
    ]


def test_an_integral_float_leaves_without_a_fraction(api: Api) -> None:
    text = api.sql("SELECT 1.0 AS one, 2.5 AS half, -0.0 AS zero, 1e20 AS big").text
    assert '"one":1,' in text and '"half":2.5' in text and '"zero":0,' in text
    assert '"big":100000000000000000000' in text


def test_a_non_finite_result_leaves_as_null(api: Api) -> None:
    assert api.ok("SELECT 1e308 * 10 AS inf") == [{"inf": None}]


def test_a_blob_leaves_as_an_array_of_byte_values(api: Api) -> None:
    assert api.ok("SELECT x'0001ff' AS b, unhex(?) AS u", "CAFE") == [{"b": [0, 1, 255], "u": [0xCA, 0xFE]}]


def test_unhex_and_hex_work(api: Api) -> None:
    api.ok("CREATE TABLE files (data BLOB)")
    api.ok("INSERT INTO files VALUES (unhex(?))", "00FF10")
    assert api.ok("SELECT hex(data) AS h, typeof(data) AS t FROM files") == [{"h": "00FF10", "t": "blob"}]


def test_json_functions_work_for_bulk_writes(api: Api) -> None:
    api.ok("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    rows = '[{"id": 9223372036854775807, "a": "x"}, {"id": 2, "a": "y"}]'
    sql = (
        "INSERT INTO t (id, a) SELECT value->>'id', value->>'a' FROM json_each(?) WHERE true "
        "ON CONFLICT (id) DO UPDATE SET a = excluded.a"
    )
    assert api.sql(sql, rows).json()["result"][0]["meta"]["changes"] == 2
    assert api.ok("SELECT CAST(id AS TEXT) AS id, a FROM t ORDER BY a") == [
        {"id": "9223372036854775807", "a": "x"},
        {"id": "2", "a": "y"},
    ]


def test_unicode_text_including_astral_characters_round_trips(api: Api) -> None:
    text = "héllo 世界 🦆 \U0010fffd"
    assert api.ok("SELECT ? AS t, length(?) AS n", text, text) == [{"t": text, "n": len(text)}]


def test_an_object_parameter_is_refused_with_a_type_error(api: Api) -> None:
    status, code, message = api.error(api.post({"sql": "SELECT ?", "params": [{"a": 1}]}))
    assert (status, code) == (400, 7500) and "D1_TYPE_ERROR" in message


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (2**63 - 1, "9223372036854776000"),
        (-(2**63), "-9223372036854776000"),
        (2**60, "1152921504606847000"),
        (123456789012345678, "123456789012345680"),
        (2**53 + 1, "9007199254740992"),
        (2**53 - 1, "9007199254740991"),
        (1.0, "1"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
    ],
)
def test_js_number_prints_like_javascript(value: int | float, printed: str) -> None:
    import json

    assert json.dumps(js_number(value)) == printed


def test_js_number_turns_non_finite_floats_into_null_and_to_d1_value_maps_types() -> None:
    assert js_number(math.inf) is None and js_number(-math.inf) is None
    assert to_d1_value(b"\x00\x7f") == [0, 127]
    assert to_d1_value(True) == 1 and to_d1_value("s") == "s" and to_d1_value(None) is None
