"""The Database contract (d1-contract §1, §6): one body per behaviour, run against every backend."""

from __future__ import annotations

import pytest

from d1sync.database import Database, Meta
from d1sync.errors import SQLError


@pytest.fixture
def notes(db: Database) -> Database:
    db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n REAL)")
    db.batch([db.prepare("INSERT INTO notes (body, n) VALUES (?, ?)").bind(f"note {i}", i / 2) for i in range(1, 4)])
    return db


def test_all_returns_rows_as_dicts_with_meta(notes: Database) -> None:
    result = notes.prepare("SELECT id, body FROM notes WHERE id <= ? ORDER BY id").bind(2).all()
    assert result.results == [{"id": 1, "body": "note 1"}, {"id": 2, "body": "note 2"}]
    assert result.success is True
    assert isinstance(result.meta, Meta) and result.meta.rows_read >= 2 and result.meta.duration >= 0


def test_first_returns_the_first_row_or_none(notes: Database) -> None:
    assert notes.prepare("SELECT body FROM notes ORDER BY id").first() == {"body": "note 1"}
    assert notes.prepare("SELECT body FROM notes WHERE id = ?").bind(99).first() is None


def test_first_with_a_column_returns_one_value(notes: Database) -> None:
    assert notes.prepare("SELECT count(*) AS n FROM notes").first("n") == 3
    assert notes.prepare("SELECT body FROM notes WHERE id = 99").first("body") is None


def test_first_with_a_missing_column_is_an_error(notes: Database) -> None:
    with pytest.raises(SQLError, match="D1_COLUMN_NOTFOUND"):
        notes.prepare("SELECT body FROM notes").first("nope")


def test_run_reports_changes_and_last_row_id(notes: Database) -> None:
    meta = notes.prepare("INSERT INTO notes (body) VALUES (?)").bind("four").run().meta
    assert (meta.changes, meta.last_row_id, meta.changed_db) == (1, 4, True)
    assert meta.rows_written >= 1 and meta.size_after > 0
    updated = notes.prepare("UPDATE notes SET body = body || '!' WHERE id > ?").bind(1).run()
    assert updated.results == [] and updated.meta.changes == 3


def test_a_read_changes_nothing(notes: Database) -> None:
    meta = notes.prepare("SELECT * FROM notes").all().meta
    assert meta.changes == 0 and meta.changed_db is False


def test_raw_returns_lists_optionally_headed_by_column_names(notes: Database) -> None:
    sql = "SELECT id, body FROM notes ORDER BY id LIMIT 2"
    assert notes.prepare(sql).raw() == [[1, "note 1"], [2, "note 2"]]
    assert notes.prepare(sql).raw(column_names=True) == [["id", "body"], [1, "note 1"], [2, "note 2"]]


def test_raw_keeps_column_names_on_an_empty_result(notes: Database) -> None:
    assert notes.prepare("SELECT id, body FROM notes WHERE id < 0").raw(column_names=True) == [["id", "body"]]


def test_returning_gives_the_written_rows(notes: Database) -> None:
    rows = notes.prepare("INSERT INTO notes (body) VALUES (?) RETURNING id, body").bind("r").all().results
    assert rows == [{"id": 4, "body": "r"}]


def test_batch_returns_one_result_per_statement_in_order(notes: Database) -> None:
    results = notes.batch(
        [
            notes.prepare("INSERT INTO notes (body) VALUES (?)").bind("x"),
            notes.prepare("SELECT count(*) AS n FROM notes"),
            notes.prepare("SELECT body FROM notes WHERE id = ?").bind(4),
        ]
    )
    assert [r.results for r in results] == [[], [{"n": 4}], [{"body": "x"}]]
    assert results[0].meta.changes == 1


def test_a_batch_is_atomic_when_a_later_statement_fails(notes: Database) -> None:
    with pytest.raises(SQLError, match="no such table"):
        notes.batch(
            [
                notes.prepare("INSERT INTO notes (body) VALUES ('kept?')"),
                notes.prepare("DELETE FROM notes"),
                notes.prepare("INSERT INTO missing VALUES (1)"),
            ]
        )
    assert notes.prepare("SELECT count(*) AS n FROM notes").first("n") == 3


def test_a_constraint_failure_inside_a_batch_rolls_back_the_batch(notes: Database) -> None:
    with pytest.raises(SQLError, match="NOT NULL constraint failed"):
        notes.batch(
            [
                notes.prepare("INSERT INTO notes (body) VALUES ('a')"),
                notes.prepare("INSERT INTO notes (body) VALUES (NULL)"),
            ]
        )
    assert notes.prepare("SELECT count(*) AS n FROM notes").first("n") == 3


def test_exec_counts_statements_and_applies_them(db: Database) -> None:
    result = db.exec(
        "CREATE TABLE a (x);\n-- a comment; with a semicolon\nCREATE TABLE b (y);\r\nINSERT INTO a VALUES ('1;2');"
    )
    assert result.count == 3 and result.duration >= 0
    assert db.prepare("SELECT x FROM a").first("x") == "1;2"


def test_exec_keeps_trigger_bodies_whole(db: Database) -> None:
    db.exec(
        """
        CREATE TABLE t (x);
        CREATE TABLE log (x);
        CREATE TRIGGER t_log AFTER INSERT ON t BEGIN
            INSERT INTO log VALUES (new.x);
            INSERT INTO log VALUES (new.x * 10);
        END;
        """
    )
    db.prepare("INSERT INTO t VALUES (?)").bind(2).run()
    assert db.prepare("SELECT x FROM log ORDER BY x").raw() == [[2], [20]]


def test_bad_sql_raises_sql_error_with_sqlite_text(db: Database) -> None:
    with pytest.raises(SQLError) as caught:
        db.prepare("SELECT * FROM nowhere").all()
    assert caught.value.message == "no such table: nowhere: SQLITE_ERROR"
    assert caught.value.code == 7500 and caught.value.retryable is False


def test_a_unique_violation_names_the_constraint(notes: Database) -> None:
    with pytest.raises(SQLError, match=r"UNIQUE constraint failed: notes\.id"):
        notes.prepare("INSERT INTO notes (id, body) VALUES (1, 'dup')").run()


@pytest.mark.parametrize("sql", ["BEGIN", "COMMIT", "SAVEPOINT s"])
def test_transaction_statements_are_refused(db: Database, sql: str) -> None:
    with pytest.raises(SQLError):
        db.prepare(sql).run()


def test_value_round_trips_through_every_type(db: Database) -> None:
    db.exec("CREATE TABLE v (i INTEGER, r REAL, t TEXT, b BLOB, n)")
    db.prepare("INSERT INTO v VALUES (?, ?, ?, unhex(?), ?)").bind(42, 2.5, "txt", b"\x00\xff", None).run()
    row = db.prepare("SELECT i, r, t, b, n, hex(b) AS h FROM v").first()
    assert row == {"i": 42, "r": 2.5, "t": "txt", "b": b"\x00\xff", "n": None, "h": "00FF"}


def test_bools_are_stored_as_integers(db: Database) -> None:
    assert db.prepare("SELECT CAST(? AS INTEGER) AS t, CAST(? AS INTEGER) AS f").bind(True, False).first() == {
        "t": 1,
        "f": 0,
    }


def test_an_integral_real_reads_back_equal(db: Database) -> None:
    value = db.prepare("SELECT 1.0 AS one").first("one")
    assert value == 1


def test_a_64_bit_integer_is_exact_when_read_as_text(db: Database) -> None:
    db.exec("CREATE TABLE big (n INTEGER)")
    db.prepare("INSERT INTO big VALUES (?)").bind(2**63 - 1).run()
    assert db.prepare("SELECT CAST(n AS TEXT) AS n, typeof(n) AS t FROM big").first() == {
        "n": str(2**63 - 1),
        "t": "integer",
    }


def test_json_functions_carry_many_rows_in_one_parameter(db: Database) -> None:
    import json

    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    payload = json.dumps([{"id": i, "a": f"row{i}"} for i in range(1, 501)])
    sql = (
        "INSERT INTO t (id, a) SELECT value->>'id', value->>'a' FROM json_each(?) WHERE true "
        "ON CONFLICT (id) DO UPDATE SET a = excluded.a"
    )
    assert db.prepare(sql).bind(payload).run().meta.changes == 500
    assert db.prepare("SELECT count(*) AS n, max(a) AS m FROM t").first() == {"n": 500, "m": "row99"}


def test_a_value_over_the_d1_limit_is_refused_everywhere_it_is_enforced(remote_db: Database) -> None:
    # D1's engine sets SQLITE_LIMIT_LENGTH to 2,200,000 bytes (tests/conformance pins both sides of it).
    assert remote_db.prepare("SELECT length(?) AS n").bind("x" * 2_200_000).first("n") == 2_200_000
    with pytest.raises(SQLError, match="SQLITE_TOOBIG"):
        remote_db.prepare("SELECT length(?) AS n").bind("x" * 2_200_001).first()


def test_remote_meta_says_where_it_was_served(remote_db: Database) -> None:
    meta = remote_db.prepare("SELECT 1").all().meta
    assert meta.served_by_primary is True and meta.served_by_region and meta.served_by_colo
    assert meta.sql_duration_ms is not None


def test_parameters_bind_to_the_last_of_several_statements(db: Database) -> None:
    result = db.prepare("CREATE TABLE multi (a TEXT); INSERT INTO multi (a) VALUES (?) RETURNING a").bind("x").all()
    assert result.results == [{"a": "x"}]


def test_a_placeholder_before_the_last_statement_is_refused_with_d1s_message(db: Database) -> None:
    with pytest.raises(SQLError, match="only the last statement can have parameters"):
        db.prepare("SELECT ?; SELECT ?").bind(1, 2).all()
