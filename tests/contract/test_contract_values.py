"""Value encoding through every backend, as properties (d1-contract §4).

Each example writes through the backend and reads back; the database is reused across examples, so each
example uses its own row.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d1sync.database import Database
from d1sync.errors import ValueEncodingError
from d1sync.values import INT64_MAX, INT64_MIN, MAX_SAFE_INT

PROPERTY = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)

EDGES = [INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX, 0, -1, 1]
EDGES += [sign * (2**53 + d) for sign in (1, -1) for d in (-2, -1, 0, 1, 2)]
INTEGERS = st.one_of(st.sampled_from(EDGES), st.integers(INT64_MIN, INT64_MAX), st.integers(-(2**60), 2**60))


def _table(db: Database, ddl: str) -> None:
    db.exec(f"CREATE TABLE IF NOT EXISTS {ddl}")


@PROPERTY
@given(value=INTEGERS)
def test_integers_in_64_bits_are_exact_in_an_integer_column(db: Database, value: int) -> None:
    _table(db, "ints (id INTEGER PRIMARY KEY, n INTEGER)")
    row_id = db.prepare("INSERT INTO ints (n) VALUES (?)").bind(value).run().meta.last_row_id
    row = db.prepare("SELECT n, CAST(n AS TEXT) AS text, typeof(n) AS t FROM ints WHERE id = ?").bind(row_id).first()
    assert row is not None
    assert int(row["text"]) == value and row["t"] == "integer"
    if abs(value) <= MAX_SAFE_INT:
        assert row["n"] == value and isinstance(row["n"], int)
    else:
        # Read directly, a big integer is exact locally and a rounded double through D1's JSON: never a lie.
        assert row["n"] == value or row["n"] == float(value)


@PROPERTY
@given(text=st.text(max_size=200))
def test_unicode_text_round_trips_exactly(db: Database, text: str) -> None:
    _table(db, "texts (id INTEGER PRIMARY KEY, s TEXT)")
    row_id = db.prepare("INSERT INTO texts (s) VALUES (?)").bind(text).run().meta.last_row_id
    assert db.prepare("SELECT s FROM texts WHERE id = ?").bind(row_id).first("s") == text


@PROPERTY
@given(text=st.text(alphabet=st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), min_size=1, max_size=20))
def test_astral_characters_round_trip_through_parameters_and_results(db: Database, text: str) -> None:
    assert db.prepare("SELECT ? AS s").bind(text).first("s") == text


@PROPERTY
@given(data=st.binary(max_size=300))
def test_bytes_stored_with_unhex_read_back_as_bytes_and_as_hex(db: Database, data: bytes) -> None:
    _table(db, "blobs (id INTEGER PRIMARY KEY, b BLOB)")
    row_id = db.prepare("INSERT INTO blobs (b) VALUES (unhex(?))").bind(data).run().meta.last_row_id
    row = db.prepare("SELECT b, hex(b) AS h, typeof(b) AS t FROM blobs WHERE id = ?").bind(row_id).first()
    assert row == {"b": data, "h": data.hex().upper(), "t": "blob"}


@PROPERTY
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip_in_a_real_column(db: Database, value: float) -> None:
    _table(db, "reals (id INTEGER PRIMARY KEY, r REAL)")
    row_id = db.prepare("INSERT INTO reals (r) VALUES (?)").bind(value).run().meta.last_row_id
    back = db.prepare("SELECT r FROM reals WHERE id = ?").bind(row_id).first("r")
    assert back == value  # 1.0 may come back as 1 and -0.0 as 0 (as from D1): equal values either way


@PROPERTY
@given(values=st.lists(st.one_of(st.none(), st.booleans()), min_size=1, max_size=5))
def test_none_and_bools_round_trip_as_null_and_integers(db: Database, values: list[bool | None]) -> None:
    placeholders = ", ".join(f"CAST(? AS INTEGER) AS c{i}" for i in range(len(values)))
    row = db.prepare(f"SELECT {placeholders}").bind(*values).first()
    assert row == {f"c{i}": None if v is None else int(v) for i, v in enumerate(values)}


def test_text_with_a_lone_surrogate_is_refused_before_anything_is_written(db: Database) -> None:
    """Not UTF-8: SQLite could not bind it and D1 would store a replacement character. One clear error."""
    _table(db, "texts (id INTEGER PRIMARY KEY, s TEXT)")
    before = db.prepare("SELECT count(*) AS n FROM texts").first("n")
    with pytest.raises(ValueEncodingError, match=r"parameter 2: text holds a lone surrogate \('\\udcff' at index 1\)"):
        db.prepare("INSERT INTO texts (id, s) VALUES (?, ?)").bind(None, "a\udcffb").run()
    assert db.prepare("SELECT count(*) AS n FROM texts").first("n") == before
