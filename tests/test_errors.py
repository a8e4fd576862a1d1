"""One exception tree: SQLite's result code is parsed once (from sqlite3 or from D1's text), classified once,
and no public call lets a raw sqlite3 exception out."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from d1sync import LocalDatabase, Outbox
from d1sync.errors import (
    ApiError,
    D1Error,
    LimitError,
    SQLError,
    TransientError,
    UndecodableTextError,
    classify_error,
    from_sqlite,
    parse_result_code,
)
from d1sync.sql import fence_sql
from d1sync.sqlite import Connection


def raised(sql: str, *setup: str) -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    try:
        for statement in setup:
            conn.execute(statement)
        with pytest.raises(sqlite3.Error) as info:
            conn.execute(sql)
        return info.value
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("message", "codes"),
    [
        ("no such table: t: SQLITE_ERROR", ("SQLITE_ERROR", None)),
        (
            "UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)",
            ("SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_UNIQUE"),
        ),
        ("string or blob too big: SQLITE_TOOBIG", ("SQLITE_TOOBIG", None)),
        (
            "cannot store TEXT value in INTEGER column t.a: SQLITE_CONSTRAINT_DATATYPE",
            ("SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_DATATYPE"),
        ),
        ("Network connection lost.", (None, None)),
    ],
)
def test_result_codes_are_parsed_from_d1s_message_suffix(message: str, codes: tuple[str | None, str | None]) -> None:
    assert parse_result_code(message) == codes
    error = SQLError(message, code=7500, status=400)
    assert (error.result_code, error.extended_code) == codes


def test_result_codes_come_from_the_sqlite3_exception_itself_even_where_python_has_no_name() -> None:
    unique = from_sqlite(raised("INSERT INTO t VALUES (1)", "CREATE TABLE t (a UNIQUE)", "INSERT INTO t VALUES (1)"))
    assert (unique.result_code, unique.extended_code) == ("SQLITE_CONSTRAINT", "SQLITE_CONSTRAINT_UNIQUE")
    assert unique.message.endswith(": SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)")
    # Python's sqlite3 names this one "unknown"; the numeric code says what it is.
    strict = from_sqlite(raised("INSERT INTO s VALUES ('x')", "CREATE TABLE s (a INT) STRICT"))
    assert isinstance(strict, SQLError) and strict.extended_code == "SQLITE_CONSTRAINT_DATATYPE"
    assert strict.constraint == "DATATYPE" and "unknown" not in strict.message


@pytest.mark.parametrize(
    ("message", "constraint", "row_level"),
    [
        ("UNIQUE constraint failed: t.b: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)", "UNIQUE", True),
        ("UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT", "UNIQUE", True),  # D1 sent the primary code only
        ("FOREIGN KEY constraint failed: SQLITE_CONSTRAINT", "FOREIGN KEY", True),
        ("NOT NULL constraint failed: t.a: SQLITE_CONSTRAINT", "NOT NULL", True),
        ("CHECK constraint failed: n >= 0: SQLITE_CONSTRAINT", "CHECK", True),
        ("datatype mismatch: SQLITE_MISMATCH", None, True),
        ("string or blob too big: SQLITE_TOOBIG", None, True),
        ("malformed JSON: SQLITE_ERROR", None, True),
        ("no such column: t.b: SQLITE_ERROR", None, False),
        ("table t has no column named c: SQLITE_ERROR", None, False),
    ],
)
def test_refusals_are_classified_by_code_into_constraint_and_row_level(
    message: str, constraint: str | None, row_level: bool
) -> None:
    error = SQLError(message, code=7500, status=400)
    assert (error.constraint, error.row_level) == (constraint, row_level)


def test_a_missing_object_is_named() -> None:
    assert SQLError("no such table: main.tasks: SQLITE_ERROR").missing == ("table", "tasks")
    assert SQLError("no such column: t.b: SQLITE_ERROR").missing == ("column", "t.b")
    assert SQLError("UNIQUE constraint failed: t.a: SQLITE_CONSTRAINT").missing is None


def test_a_fence_is_told_apart_from_any_other_failure_on_every_backend(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "f.db") as db:
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        with pytest.raises(SQLError) as info:
            db.batch([db.prepare("INSERT INTO t VALUES (1)"), db.prepare(fence_sql("probe-1"))])
        assert info.value.fence == "probe-1"
        assert db.prepare("SELECT count(*) AS n FROM t").first("n") == 0  # the fence rolled the batch back
        guard = fence_sql("claim", unless="EXISTS (SELECT 1 FROM t WHERE id = ?1)")
        db.prepare("INSERT INTO t VALUES (5)").run()
        assert db.prepare(guard).bind(5).first("fence") == "{}"  # the condition holds: no failure
        with pytest.raises(SQLError) as info:
            db.prepare(guard).bind(6).first()
        assert info.value.fence == "claim"
        with pytest.raises(SQLError) as other:
            db.prepare("INSERT INTO t VALUES (5)").run()
        assert other.value.fence is None


def test_d1_failures_are_classified_by_code_and_status() -> None:
    assert isinstance(classify_error(status=500, code=7500, message="internal error"), TransientError)
    assert isinstance(classify_error(status=400, code=7500, message="Network connection lost."), TransientError)
    refused = classify_error(status=400, code=7500, message="no such table: x: SQLITE_ERROR")
    assert type(refused) is SQLError and refused.result_code == "SQLITE_ERROR"


def test_a_body_too_large_is_a_limit_error_never_retried_whatever_the_code() -> None:
    edge = classify_error(status=413, code=None, message="<html><title>413 Request Entity Too Large</title></html>")
    emulator = classify_error(status=413, code=7400, message="The request is too large: over the limit")
    for error in (edge, emulator):
        assert type(error) is LimitError and error.status == 413 and not error.retryable


def test_the_emulators_answers_are_d1_errors_with_their_code_and_status() -> None:
    error = ApiError(7404, 404, "The database x could not be found")
    assert isinstance(error, D1Error) and (error.code, error.status) == (7404, 404)


def test_a_file_busy_with_another_writer_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    with Connection(path) as holder, Connection(path, busy_timeout=0.0) as waiter:
        holder.execute("CREATE TABLE t (a)")
        with holder.atomic():
            holder.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(TransientError) as info, waiter.atomic():
                waiter.execute("INSERT INTO t VALUES (2)")
        assert info.value.result_code == "SQLITE_BUSY" and info.value.retryable


def test_a_file_that_is_not_a_database_is_one_sqlerror_naming_it(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("hi\n" * 100)
    for open_it in (LocalDatabase, Outbox, Connection):
        with pytest.raises(SQLError) as info:
            open_it(junk)
        assert info.value.result_code == "SQLITE_NOTADB" and str(junk) in str(info.value)


def test_a_file_in_a_missing_folder_is_one_sqlerror_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "app.db"
    for open_it in (LocalDatabase, Outbox, Connection):
        with pytest.raises(SQLError) as info:
            open_it(missing)
        assert info.value.result_code == "SQLITE_CANTOPEN" and str(missing) in str(info.value)


def test_text_that_is_not_utf8_is_its_own_error_and_can_be_read_leniently(tmp_path: Path) -> None:
    with Connection(tmp_path / "t.db") as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (CAST(x'ff41' AS TEXT))")
        with pytest.raises(UndecodableTextError):
            conn.execute("SELECT v FROM t")
        rows, lenient = conn.read("SELECT v FROM t")
        assert lenient and rows.fetchall() == [("\udcffA",)]


def test_statements_refused_by_sqlite_raise_sqlerror_never_sqlite3_errors(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "a.db") as db:
        for sql in ("SELECT * FROM nope", "CREATE TABLE", "SELECT ?"):
            with pytest.raises(D1Error) as info:
                db.prepare(sql).all()
            assert not isinstance(info.value, sqlite3.Error)
