"""LocalDatabase: the Database API over a SQLite file, with D1-shaped results and errors."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from d1sync.database import Database, ExecResult, Meta, RawResult, Result, Statement
from d1sync.errors import SQLError
from d1sync.sql import has_placeholder, is_transaction_control, split_statements
from d1sync.sqlite import DEFAULT_BUSY_TIMEOUT, Connection
from d1sync.values import encode_params

__all__ = ["MULTI_PARAM_MESSAGE", "LocalDatabase"]

MULTI_PARAM_MESSAGE = (
    "When executing multiple SQL statements in a single call, only the last statement can have parameters."
)
_TRANSACTION_REFUSED = (
    "D1 does not support transaction statements (BEGIN/COMMIT/ROLLBACK/SAVEPOINT); "
    "use batch() for atomic groups: SQLITE_AUTH"
)


class LocalDatabase(Database):
    """The Database API over a local SQLite file.

    Safe to share between threads (one :class:`~d1sync.sqlite.Connection` behind a lock). Results carry D1's
    meta keys; errors are D1's (``SQLError`` with SQLite's text and code 7500). Transactions are managed by
    d1sync: ``BEGIN``/``COMMIT``/``SAVEPOINT`` statements are refused as on D1; use :meth:`batch` or
    :meth:`atomic`. Close it (or use ``with``) when done.

    Example::

        with LocalDatabase("app.db") as db:
            db.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
            db.prepare("INSERT INTO notes (body) VALUES (?)").bind("hello").run()
            db.prepare("SELECT * FROM notes").all().results   # [{'id': 1, 'body': 'hello'}]

    Raises:
        SQLError: the file cannot be opened or is not a SQLite database.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self._conn = Connection(path, busy_timeout=busy_timeout)

    def __repr__(self) -> str:
        return f"LocalDatabase({os.fspath(self.path)!r})"

    @property
    def connection(self) -> Connection:
        """The underlying connection, for code that needs SQLite directly. Hold :meth:`atomic` to write."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        """A write transaction (see :meth:`Connection.atomic <d1sync.sqlite.Connection.atomic>`): commits on
        success, rolls back on any exception, and nests as savepoints."""
        with self._conn.atomic() as conn:
            yield conn

    # -- execution ---------------------------------------------------------------------------------------

    def _run_one(self, sql: str, params: Sequence[Any]) -> RawResult:
        if is_transaction_control(sql):
            raise SQLError(_TRANSACTION_REFUSED, code=7500, statement=sql)
        conn = self._conn
        encoded = encode_params(params)
        before = conn.total_changes
        started = time.perf_counter()
        rows = conn.execute(sql, encoded)
        elapsed = (time.perf_counter() - started) * 1000
        written = conn.total_changes - before
        # changes() is sqlite3_changes(): rows touched by this statement itself, excluding triggers, as D1.
        changes = int(conn.execute("SELECT changes()").fetchone()[0]) if written else 0
        columns = rows.columns
        values = [list(r) for r in rows.fetchall()]
        meta = Meta(
            duration=elapsed,
            changes=changes,
            last_row_id=rows.lastrowid or 0,
            changed_db=written > 0,
            rows_read=len(values) if columns else changes,
            rows_written=written,
            size_after=self._size(),
            sql_duration_ms=elapsed,
        )
        return RawResult(columns, values, meta)

    def _size(self) -> int:
        page_count = self._conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return int(page_count) * int(page_size)

    def _run_text(self, sql: str, params: Sequence[Any]) -> RawResult:
        """Run one prepared text, which may hold several statements (params bind to the last only)."""
        parts = split_statements(sql)
        if len(parts) <= 1:
            return self._run_one(parts[0] if parts else sql, params)
        if params and any(has_placeholder(part) for part in parts[:-1]):
            # D1 binds parameters to the last statement only; an earlier placeholder is refused, not guessed.
            raise SQLError(MULTI_PARAM_MESSAGE, code=7500, statement=sql)
        with self._conn.atomic():
            for part in parts[:-1]:
                self._run_one(part, ())
            return self._run_one(parts[-1], params)

    def _execute_raw(self, statement: Statement) -> RawResult:
        with self._conn.lock:  # the statement and the meta read after it, with no other thread in between
            return self._run_text(statement.sql, statement.params)

    def _execute(self, statement: Statement) -> Result:
        return self._execute_raw(statement).to_result()

    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        """Run ``statements`` in one transaction (all apply or none does), with ``/raw``-shaped results."""
        with self._conn.atomic():
            return [self._run_text(s.sql, s.params) for s in statements]

    def exec(self, sql: str) -> ExecResult:
        """Run ``;``-separated statements without parameters, atomically; returns how many ran."""
        started = time.perf_counter()
        parts = split_statements(sql)
        with self._conn.atomic():
            for part in parts:
                self._run_one(part, ())
        return ExecResult(count=len(parts), duration=(time.perf_counter() - started) * 1000)
