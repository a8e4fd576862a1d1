"""LocalDatabase: the Database API over a SQLite file, with D1-shaped results and errors."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from d1sync.database import Database, ExecResult, Meta, RawResult, Result, Statement
from d1sync.errors import D1Error, InvalidRequestError, SQLError, TransientError
from d1sync.migrations.splitter import has_placeholder, is_transaction_control, split_statements
from d1sync.values import encode_param

__all__ = ["LocalDatabase", "connect", "translate_sqlite_error", "write_transaction"]

DEFAULT_BUSY_TIMEOUT = 5.0
MULTI_PARAM_MESSAGE = (
    "When executing multiple SQL statements in a single call, only the last statement can have parameters."
)


def _unhex(text: object) -> bytes | None:
    if text is None:
        return None
    try:
        return bytes.fromhex(str(text))
    except ValueError:
        return None  # SQLite's unhex() returns NULL for malformed input


def connect(path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open ``path`` the way every d1sync component does.

    WAL journal, ``synchronous=NORMAL`` (durable at checkpoints, never corrupt), a busy timeout, foreign keys
    on (as on D1), autocommit mode so transactions are explicit (``BEGIN IMMEDIATE`` for writers), and
    ``unhex()`` registered when the local SQLite predates it (3.41).
    """
    conn = sqlite3.connect(os.fspath(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if os.fspath(path) != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if sqlite3.sqlite_version_info < (3, 41, 0):
        conn.create_function("unhex", 1, _unhex, deterministic=True)
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` on a :func:`connect` connection: commit when the block ends (a block that only read,
    or returned early, commits nothing), roll back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _primary_error_name(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
    # D1 reports the primary code (SQLITE_CONSTRAINT), Python the extended one (SQLITE_CONSTRAINT_UNIQUE).
    return "_".join(name.split("_")[:2])


def translate_sqlite_error(exc: sqlite3.Error, statement: str | None = None) -> D1Error:
    """Turn a ``sqlite3`` exception into the d1sync error D1 would give for it.

    The message carries D1's suffix (``no such table: x: SQLITE_ERROR``); busy/locked is transient.
    """
    name = _primary_error_name(exc)
    message = f"{exc}: {name}"
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return TransientError(message, statement=statement)
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return InvalidRequestError(str(exc), statement=statement)
    return SQLError(message, code=7500, statement=statement)


class LocalDatabase(Database):
    """The Database API over a local SQLite file.

    Safe to share between threads (one connection behind a lock). Results carry D1's meta keys; errors
    are D1's (``SQLError`` with SQLite's text and code 7500). Transactions are managed by d1sync:
    ``BEGIN``/``COMMIT``/``SAVEPOINT`` statements are refused as on D1; use :meth:`batch` or :meth:`atomic`.

    Example::

        db = LocalDatabase("app.db")
        db.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
        db.prepare("INSERT INTO notes (body) VALUES (?)").bind("hello").run()
        db.prepare("SELECT * FROM notes").all().results   # [{'id': 1, 'body': 'hello'}]
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path) if os.fspath(path) != ":memory:" else Path(":memory:")
        self._conn = connect(path, busy_timeout=busy_timeout)
        self._lock = threading.RLock()
        self._depth = 0

    def __repr__(self) -> str:
        return f"LocalDatabase({os.fspath(self.path)!r})"

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection, for code that needs SQLite directly. Hold :meth:`atomic` to write."""
        return self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` at the outermost level, a savepoint when nested.

        Commits on success and rolls back on any exception. Holds this object's lock throughout.
        """
        with self._lock:
            outer = self._depth == 0
            name = f"d1sync_sp{self._depth}"
            self._conn.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                else:
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                raise
            self._depth -= 1
            try:
                self._conn.execute("COMMIT" if outer else f"RELEASE {name}")
            except sqlite3.Error as exc:
                # A failed COMMIT (e.g. a deferred foreign key) leaves the transaction open: end it.
                if outer and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise translate_sqlite_error(exc, "COMMIT") from exc
            if outer:
                self._committed()

    # -- execution ---------------------------------------------------------------------------------------

    def _run_one(self, sql: str, params: Sequence[Any]) -> RawResult:
        if is_transaction_control(sql):
            raise SQLError(
                "D1 does not support transaction statements (BEGIN/COMMIT/ROLLBACK/SAVEPOINT); "
                "use batch() for atomic groups: SQLITE_AUTH",
                code=7500,
                statement=sql,
            )
        encoded = [encode_param(p, index=i) for i, p in enumerate(params, start=1)]
        conn = self._conn
        before = conn.total_changes
        started = time.perf_counter()
        try:
            cursor = conn.execute(sql, encoded)
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, sql) from exc
        except OverflowError as exc:
            raise SQLError(f"{exc}: SQLITE_TOOBIG", code=7500, statement=sql) from exc
        elapsed = (time.perf_counter() - started) * 1000
        written = conn.total_changes - before
        if written and self._depth == 0:
            self._committed()
        columns = [d[0] for d in cursor.description] if cursor.description else []
        # changes() is sqlite3_changes(): rows touched by this statement itself, excluding triggers, as D1.
        changes = int(conn.execute("SELECT changes()").fetchone()[0]) if written else 0
        meta = Meta(
            duration=elapsed,
            changes=changes,
            last_row_id=cursor.lastrowid or 0,
            changed_db=written > 0,
            rows_read=len(rows) if cursor.description else changes,
            rows_written=written,
            size_after=self._size(),
            sql_duration_ms=elapsed,
        )
        return RawResult(columns, [list(r) for r in rows], meta)

    def _committed(self) -> None:
        # Wake any sync worker of this file in this process at once (others poll PRAGMA data_version).
        from d1sync.outbox import wake

        wake.notify(self.path)

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
        with self.atomic():
            for part in parts[:-1]:
                self._run_one(part, ())
            return self._run_one(parts[-1], params)

    def _execute_raw(self, statement: Statement) -> RawResult:
        with self._lock:
            return self._run_text(statement.sql, statement.params)

    def _execute(self, statement: Statement) -> Result:
        return self._execute_raw(statement).to_result()

    def batch(self, statements: Sequence[Statement]) -> list[Result]:
        """Run ``statements`` in one transaction: all apply or none does."""
        with self._lock, self.atomic():
            return [self._run_text(s.sql, s.params).to_result() for s in statements]

    def batch_raw(self, statements: Sequence[Statement]) -> list[RawResult]:
        """:meth:`batch` with ``/raw``-shaped results."""
        with self._lock, self.atomic():
            return [self._run_text(s.sql, s.params) for s in statements]

    def exec(self, sql: str) -> ExecResult:
        """Run ``;``-separated statements without parameters, atomically; returns how many ran."""
        started = time.perf_counter()
        parts = split_statements(sql)
        with self._lock, self.atomic():
            for part in parts:
                self._run_one(part, ())
        return ExecResult(count=len(parts), duration=(time.perf_counter() - started) * 1000)
