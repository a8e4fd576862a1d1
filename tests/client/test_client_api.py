"""What the client sends (endpoints, bodies, encoded values) and what it makes of D1's answers."""

from __future__ import annotations

import json

import httpx
import pytest

from d1sync.database import Database
from d1sync.errors import UnprovenResultError, ValueEncodingError

from .scripted import ACCOUNT, BASE, DATABASE, ScriptedD1, envelope, ok_rows

QUERY_URL = f"{BASE}/accounts/{ACCOUNT}/d1/database/{DATABASE}/query"
RAW_URL = f"{BASE}/accounts/{ACCOUNT}/d1/database/{DATABASE}/raw"


def raw_ok(columns: list[str], rows: list[list[object]]) -> httpx.Response:
    element = {"results": {"columns": columns, "rows": rows}, "success": True, "meta": {"duration": 1}}
    return httpx.Response(200, content=envelope([element]))


def elements(*rows_per_statement: list[dict[str, object]]) -> httpx.Response:
    result = [{"results": rows, "success": True, "meta": {"duration": 2.0}} for rows in rows_per_statement]
    return httpx.Response(200, content=envelope(result))


def test_the_client_is_a_database() -> None:
    with ScriptedD1(ok_rows()).client() as client:
        assert isinstance(client, Database)


def test_values_are_encoded_for_d1_in_the_request_body() -> None:
    d1 = ScriptedD1(ok_rows())
    with d1.client() as client:
        client.prepare("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").bind(
            2**60, -(2**60), 2**53 - 1, b"\x00\xff\x10", True, False, None, 1.5, "text"
        ).run()
    assert d1.bodies()[0] == {
        "sql": "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "params": ["1152921504606846976", "-1152921504606846976", 2**53 - 1, "00FF10", 1, 0, None, 1.5, "text"],
    }
    # On the wire the big integer is a JSON string, never a number a double would round.
    assert b'"1152921504606846976"' in d1.requests[0].content


def test_unencodable_values_fail_before_anything_is_sent() -> None:
    d1 = ScriptedD1(ok_rows())
    with d1.client() as client:
        with pytest.raises(ValueEncodingError, match="parameter 2"):
            client.prepare("SELECT ?, ?").bind(1, float("nan")).all()
        with pytest.raises(ValueEncodingError, match="statement 2 of the batch: parameter 1"):
            client.batch([client.prepare("SELECT 1"), client.prepare("SELECT ?").bind(2**64)])
    assert d1.requests == []


def test_all_first_and_run_use_query_and_raw_uses_raw() -> None:
    d1 = ScriptedD1(ok_rows({"a": 1}), ok_rows({"a": 1}), ok_rows(), raw_ok(["a", "b"], [[1, "x"]]))
    with d1.client() as client:
        assert client.prepare("SELECT 1 AS a").all().results == [{"a": 1}]
        assert client.prepare("SELECT 1 AS a").first() == {"a": 1}
        assert client.prepare("DELETE FROM t").run().results == []
        assert client.prepare("SELECT 1 AS a, 'x' AS b").raw(column_names=True) == [["a", "b"], [1, "x"]]
    assert [str(r.url) for r in d1.requests] == [QUERY_URL] * 3 + [RAW_URL]
    assert all(r.method == "POST" for r in d1.requests)


def test_raw_keeps_column_names_on_an_empty_result() -> None:
    d1 = ScriptedD1(raw_ok(["id", "name"], []))
    with d1.client() as client:
        assert client.prepare("SELECT id, name FROM t").raw(column_names=True) == [["id", "name"]]


def test_blobs_arrive_as_bytes_and_big_ints_are_not_passed_off_as_exact() -> None:
    d1 = ScriptedD1(
        httpx.Response(
            200,
            content=b'{"result":[{"results":[{"b":[0,255,16],"e":[],"big":9223372036854775807,"n":42}],'
            b'"success":true,"meta":{}}],"success":true,"errors":[],"messages":[]}',
        )
    )
    with d1.client() as client:
        row = client.prepare("SELECT b, e, big, n FROM t").first()
    assert row == {"b": b"\x00\xff\x10", "e": b"", "big": float(2**63), "n": 42}
    assert isinstance(row["big"], float)


def test_meta_is_parsed_and_unknown_keys_are_kept() -> None:
    meta = {
        "changes": 2,
        "last_row_id": 9,
        "duration": 0.25,
        "changed_db": True,
        "rows_written": 2,
        "served_by_colo": "AMS",
        "timings": {"sql_duration_ms": 0.2},
        "brand_new_key": {"x": 1},
    }
    d1 = ScriptedD1(ok_rows(meta=meta))
    with d1.client() as client:
        result = client.prepare("INSERT INTO t VALUES (1), (2)").run()
    m = result.meta
    assert (m.changes, m.last_row_id, m.duration, m.changed_db, m.rows_written) == (2, 9, 0.25, True, 2)
    assert (m.served_by_colo, m.sql_duration_ms, m.extra) == ("AMS", 0.2, {"brand_new_key": {"x": 1}})


def test_batch_sends_one_batch_body_and_returns_a_result_per_statement() -> None:
    d1 = ScriptedD1(elements([], [{"n": 1}]))
    with d1.client() as client:
        results = client.batch(
            [client.prepare("INSERT INTO t VALUES (?)").bind(b"\x01"), client.prepare("SELECT count(*) AS n FROM t")]
        )
    assert d1.bodies() == [
        {"batch": [{"sql": "INSERT INTO t VALUES (?)", "params": ["01"]}, {"sql": "SELECT count(*) AS n FROM t"}]}
    ]
    assert [r.results for r in results] == [[], [{"n": 1}]]


def test_an_empty_batch_sends_nothing() -> None:
    d1 = ScriptedD1(ok_rows())
    with d1.client() as client:
        assert client.batch([]) == []
    assert d1.requests == []


def test_batch_raw_uses_the_raw_endpoint() -> None:
    d1 = ScriptedD1(raw_ok(["a"], [[1]]))
    with d1.client() as client:
        (result,) = client.batch_raw([client.prepare("SELECT 1 AS a")])
    assert str(d1.requests[0].url) == RAW_URL and (result.columns, result.rows) == (["a"], [[1]])


def test_exec_splits_on_the_client_and_sends_one_batch_without_params() -> None:
    sql = (
        "CREATE TABLE a (x);\r\n"
        "-- a comment; with a semicolon\r\n"
        "CREATE TRIGGER tr AFTER INSERT ON a BEGIN INSERT INTO b VALUES (';'); END;\r\n"
        "INSERT INTO a VALUES ('x;y')"
    )
    d1 = ScriptedD1(elements([], [], []))
    with d1.client() as client:
        result = client.exec(sql)
    assert d1.bodies() == [
        {
            "batch": [
                {"sql": "CREATE TABLE a (x)"},
                {"sql": "CREATE TRIGGER tr AFTER INSERT ON a BEGIN INSERT INTO b VALUES (';'); END"},
                {"sql": "INSERT INTO a VALUES ('x;y')"},
            ]
        }
    ]
    assert (result.count, result.duration) == (3, 6.0)


def test_exec_of_nothing_sends_nothing() -> None:
    d1 = ScriptedD1(ok_rows())
    with d1.client() as client:
        assert client.exec("-- only a comment\n").count == 0
    assert d1.requests == []


def test_query_returns_every_statements_result_and_prepare_the_last() -> None:
    d1 = ScriptedD1(elements([{"a": 1}], [{"b": 2}]))
    with d1.client() as client:
        results = client.query("SELECT 1 AS a; SELECT ? AS b", [2])
        assert [r.results for r in results] == [[{"a": 1}], [{"b": 2}]]
        assert client.prepare("SELECT 1 AS a; SELECT 2 AS b").first() == {"b": 2}
    assert d1.bodies()[0] == {"sql": "SELECT 1 AS a; SELECT ? AS b", "params": [2]}


_GOOD = {"results": [], "success": True, "meta": {"changes": 1}}
_NO_META = {"results": [], "success": True}
_UNSURE = {"results": [], "meta": {}}


@pytest.mark.parametrize(
    ("body", "shape"),
    [
        ({"success": True, "errors": [], "messages": []}, "no 'result'"),
        ({"result": None, "success": True}, "'result' is null"),
        ({"result": [], "success": True}, "'result' is a list of 0"),
        ({"result": [_GOOD], "success": True}, "'result' is a list of 1, for 2 statement(s) sent"),
        (
            {"result": [_GOOD, {**_GOOD, "success": False}], "success": True},
            "statement 2's result has 'success': false",
        ),
        ({"result": [_GOOD, _UNSURE], "success": True}, "statement 2's result has 'success': null"),
        ({"result": [_GOOD, _NO_META], "success": True}, "statement 2's result has no 'meta'"),
        ({"result": [_GOOD, [1]], "success": True}, "statement 2's result is a list of 1"),
        ({"result": "ok", "success": True}, "'result' is a string"),
    ],
)
def test_a_success_that_does_not_prove_every_statement_ran_is_an_unknown_outcome(body: object, shape: str) -> None:
    """A 200 "success" must carry one successful result, with its meta, per statement sent; anything else is
    an unknown outcome (like a lost response), named by the answer's shape, and a write is not resent."""
    d1 = ScriptedD1(httpx.Response(200, content=json.dumps(body).encode()))
    with d1.client() as client, pytest.raises(UnprovenResultError) as caught:
        client.batch([client.prepare("INSERT INTO t VALUES (1)"), client.prepare("INSERT INTO t VALUES (2)")])
    assert shape in str(caught.value)
    assert caught.value.retryable and caught.value.status == 200
    assert len(d1.requests) == 1


def test_an_unproven_answer_to_a_read_is_retried_like_a_lost_response() -> None:
    d1 = ScriptedD1(httpx.Response(200, content=envelope(None)), ok_rows({"a": 1}))
    with d1.client() as client:
        assert client.prepare("SELECT 1 AS a").all().results == [{"a": 1}]
    assert len(d1.requests) == 2 and len(d1.sleeps) == 1


def test_every_statement_of_a_text_needs_its_own_result() -> None:
    d1 = ScriptedD1(elements([{"b": 2}]))
    with d1.client() as client, pytest.raises(UnprovenResultError, match="a list of 1, for 2 statement"):
        client.query("INSERT INTO t VALUES (1); SELECT 2 AS b")


def test_a_created_database_is_proven_by_its_details() -> None:
    d1 = ScriptedD1(httpx.Response(200, content=envelope(None)))
    with d1.client() as client, pytest.raises(UnprovenResultError, match="not the database's details"):
        client.create_database("tenant-1")
    assert len(d1.requests) == 1  # a create is never resent: the fleet looks the name up instead


def test_ids_are_escaped_in_the_url_path() -> None:
    d1 = ScriptedD1(ok_rows())
    with d1.client(database_id="../../../user/tokens") as client:
        client.prepare("SELECT 1").all()
    assert d1.requests[0].url.raw_path == b"/client/v4/accounts/acct-1/d1/database/..%2F..%2F..%2Fuser%2Ftokens/query"


def test_list_databases_walks_every_page() -> None:
    page1 = [{"uuid": f"u{i}", "name": f"db{i}"} for i in range(100)]
    page2 = [{"uuid": "u100", "name": "db100"}]
    d1 = ScriptedD1(httpx.Response(200, content=envelope(page1)), httpx.Response(200, content=envelope(page2)))
    with d1.client() as client:
        databases = client.list_databases()
    assert [d["uuid"] for d in databases] == [f"u{i}" for i in range(101)]
    assert [(r.method, r.url.params["page"]) for r in d1.requests] == [("GET", "1"), ("GET", "2")]
    assert d1.requests[0].url.path == f"/client/v4/accounts/{ACCOUNT}/d1/database"


def test_list_databases_stops_when_a_server_ignores_paging() -> None:
    page = [{"uuid": f"u{i}"} for i in range(100)]
    d1 = ScriptedD1(httpx.Response(200, content=envelope(page)))
    with d1.client() as client:
        assert len(client.list_databases()) == 100
    assert len(d1.requests) == 2


def test_create_get_and_delete_database() -> None:
    created = {"uuid": "5f1c", "name": "notes", "created_at": "2026-01-01T00:00:00Z"}
    d1 = ScriptedD1(
        httpx.Response(200, content=envelope(created)),
        httpx.Response(200, content=envelope({**created, "num_tables": 0})),
        httpx.Response(200, content=envelope(None)),
    )
    with d1.client(database_id=None) as client:
        assert client.create_database("notes")["uuid"] == "5f1c"
        assert client.get_database("5f1c")["num_tables"] == 0
        assert client.delete_database("5f1c") is None
    assert [(r.method, r.url.path) for r in d1.requests] == [
        ("POST", f"/client/v4/accounts/{ACCOUNT}/d1/database"),
        ("GET", f"/client/v4/accounts/{ACCOUNT}/d1/database/5f1c"),
        ("DELETE", f"/client/v4/accounts/{ACCOUNT}/d1/database/5f1c"),
    ]
    assert json.loads(d1.requests[0].content) == {"name": "notes"}


def test_timeout_is_passed_to_httpx() -> None:
    seen: list[object] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return ok_rows()

    d1 = ScriptedD1(capture)
    with d1.client(timeout=2.5) as client:
        client.prepare("SELECT 1").all()
    assert seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]
