"""LocalDatabase: the Database API over a SQLite file, with D1-shaped results and errors.

This module also holds D1's rules for SQLite connections, measured on workerd's D1 engine (the conformance
suite in tests/conformance pins each of them): the authorizer (:class:`D1Authorizer`: the PRAGMA allow-list,
refused functions, no TEMP objects, no virtual tables but FTS5, no ``_cf_*`` names, no ATTACH, no
transaction statements) and the limits (:data:`D1_LIMITS`). ``LocalDatabase(path, d1_rules=True)`` applies
them to a local file; the emulator applies them to every database it serves.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from d1sync.database import Database, ExecResult, Meta, RawResult, Result, Statement
from d1sync.errors import SQLError
from d1sync.sql import first_keyword, has_placeholder, is_transaction_control, split_statements
from d1sync.sqlite import DEFAULT_BUSY_TIMEOUT, Connection
from d1sync.values import encode_params

__all__ = [
    "D1_LIMITS",
    "D1_MISSING_FUNCTIONS",
    "D1_MISSING_TABLES",
    "D1_REFUSED_FUNCTIONS",
    "MULTI_PARAM_MESSAGE",
    "TRANSACTION_MESSAGE",
    "VACUUM_REFUSED",
    "D1Authorizer",
    "LocalDatabase",
    "apply_d1_rules",
]

MULTI_PARAM_MESSAGE = (
    "When executing multiple SQL statements in a single call, only the last statement can have parameters."
)
# D1's own words for BEGIN, COMMIT, SAVEPOINT and the rest (workerd's storage API answers them).
TRANSACTION_MESSAGE = (
    "To execute a transaction, please use the state.storage.transaction() or state.storage.transactionSync() "
    "APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT statements. The JavaScript API is safer because it "
    "will automatically roll back on exceptions, and because it interacts correctly with Durable Objects' "
    "automatic atomic write coalescing."
)
VACUUM_REFUSED = "cannot VACUUM from within a transaction: SQLITE_ERROR"
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

    With ``d1_rules=True`` the statements run through this API also meet D1's authorizer and limits (PRAGMA
    allow-list, refused functions, no TEMP tables, 100 columns, 50-byte LIKE patterns...; see
    docs/emulator.md), so code tested against a plain file fails here where it would fail on D1. The
    default stays plain SQLite. ``wal=False`` keeps the file's journal mode (WAL by default).

    Raises:
        SQLError: the file cannot be opened or is not a SQLite database.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        d1_rules: bool = False,
        wal: bool = True,
    ) -> None:
        self.path = Path(path)
        self._conn = Connection(path, busy_timeout=busy_timeout, wal=wal)
        self.d1_rules = d1_rules
        self._authorizer: D1Authorizer | None = None
        if d1_rules:
            # Trusted by default: only the statements run through this Database API meet D1's authorizer, so
            # d1sync's own bookkeeping on the same connection (sizes, changes) still runs.
            self._authorizer = D1Authorizer(trusted=True)
            apply_d1_rules(self._conn.raw, self._authorizer)

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
            message = TRANSACTION_MESSAGE if self.d1_rules else _TRANSACTION_REFUSED
            raise SQLError(message, code=7500, statement=sql)
        if self.d1_rules and first_keyword(sql) == "VACUUM":  # D1 runs every request in a transaction
            raise SQLError(VACUUM_REFUSED, code=7500, statement=sql)
        conn = self._conn
        encoded = encode_params(params)
        before = conn.total_changes
        started = time.perf_counter()
        if self._authorizer is None:
            rows = conn.execute(sql, encoded)
        else:
            with self._authorizer.enforce():
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


# -- D1's rules for a connection ---------------------------------------------------------------------------

# sqlite3_limit() values of D1's connections. LENGTH bounds any string, BLOB or row; SQL_LENGTH the text
# handed to SQLite from the current statement to the end.
D1_LIMITS: dict[str, int] = {
    "LENGTH": 2_200_000,
    "SQL_LENGTH": 100_000,
    "COLUMN": 100,
    "EXPR_DEPTH": 100,
    "COMPOUND_SELECT": 5,
    "FUNCTION_ARG": 127,
    "ATTACHED": 0,
    "LIKE_PATTERN_LENGTH": 50,
    "VARIABLE_NUMBER": 100,
    "TRIGGER_DEPTH": 10,
}
# Built into SQLite 3.47 but refused: "not authorized to use function: X at offset N".
D1_REFUSED_FUNCTIONS = frozenset(
    {
        "ceiling", "fts5", "fts5_get_locale", "fts5_locale", "fts5_source_id", "json_error_position",
        "json_pretty", "log10", "power", "sqlite_compileoption_get", "sqlite_compileoption_used", "sqlite_log",
        "sqlite_source_id", "sqlite_version", "subtype",
    }
)  # fmt: skip
# Compiled out of D1's SQLite (FTS3/4, R*Tree, Geopoly): "no such function: X" there.
D1_MISSING_FUNCTIONS = frozenset(
    {
        "fts3_tokenizer", "geopoly_area", "geopoly_bbox", "geopoly_blob", "geopoly_ccw", "geopoly_contains_point",
        "geopoly_debug", "geopoly_group_bbox", "geopoly_json", "geopoly_overlap", "geopoly_regular",
        "geopoly_svg", "geopoly_within", "geopoly_xform", "matchinfo", "offsets", "optimize", "rtreecheck",
        "rtreedepth", "rtreenode",
    }
)  # fmt: skip
# Eponymous virtual tables of the local SQLite that D1's build lacks ("no such table: X" there).
D1_MISSING_TABLES = frozenset({"dbstat", "sqlite_dbpage", "sqlite_stmt", "generate_series"})
_BOOLEAN, _OBJECT, _OPTIONAL_OBJECT, _NO_ARG, _NUMBER, _NUMBER_OR_OBJECT = range(6)
_PRAGMAS = {
    "data_version": _NO_ARG,
    "case_sensitive_like": _BOOLEAN,
    "foreign_keys": _BOOLEAN,
    "defer_foreign_keys": _BOOLEAN,
    "ignore_check_constraints": _BOOLEAN,
    "legacy_alter_table": _BOOLEAN,
    "recursive_triggers": _BOOLEAN,
    "reverse_unordered_selects": _BOOLEAN,
    "foreign_key_check": _OPTIONAL_OBJECT,
    "foreign_key_list": _OBJECT,
    "index_info": _OBJECT,
    "index_list": _OBJECT,
    "index_xinfo": _OBJECT,
    "quick_check": _NUMBER_OR_OBJECT,
    "optimize": _NUMBER,
}
_TRUE_OR_FALSE = ("true", "false", "yes", "no", "on", "off", "1", "0")
_NAMED_TABLE_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_INSERT,
        sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_ALTER_TABLE,
        sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE,
    }
)  # fmt: skip
_TWO_NAME_ACTIONS = frozenset(
    {sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_DROP_TRIGGER}
)
_OK, _DENY = sqlite3.SQLITE_OK, sqlite3.SQLITE_DENY


def _allowed_name(name: str | None) -> bool:
    return name is None or not name.startswith("_cf_")  # D1's internal tables (case-sensitive, as there)


def _is_int(text: str, *, signed: bool) -> bool:
    """True for a decimal or ``0x`` hexadecimal integer (what D1's parser accepts), signed when allowed."""
    body = text[1:] if signed and text[:1] in "+-" else text
    if body[:2].lower() == "0x" and len(body) > 2:
        return all(c in "0123456789abcdefABCDEF" for c in body[2:])
    return body.isascii() and body.isdigit()


def _pragma_allowed(name: str, arg: str | None) -> bool:
    if name == "table_list":
        return True
    if name in ("table_info", "table_xinfo"):
        return arg is not None and _allowed_name(arg)
    kind = _PRAGMAS.get(name)
    if kind is None:
        return False
    if arg is None:
        return kind != _OBJECT
    if kind == _BOOLEAN:
        value = arg[1:-1] if len(arg) >= 2 and arg[0] in "'\"" and arg[-1] == arg[0] else arg
        return value.lower().startswith(_TRUE_OR_FALSE)
    if kind == _NUMBER:
        return _is_int(arg, signed=True)
    if kind == _NUMBER_OR_OBJECT:
        return _is_int(arg, signed=False) or _allowed_name(arg)
    return kind != _NO_ARG and _allowed_name(arg)


class D1Authorizer:
    """D1's SQLite authorizer, for ``sqlite3`` and ``apsw`` connections alike (same action codes).

    While :meth:`trust` is held, everything is allowed (d1sync's own statements: transactions, sizes). After a
    refusal, :attr:`refusal` says what D1 would answer instead of SQLite's "not authorized":
    ``"transaction"`` (:data:`TRANSACTION_MESSAGE`), ``"function:<name>"`` or ``"table:<name>"`` (no such
    function or table on D1: compiled out of its SQLite).
    """

    def __init__(self, *, trusted: bool = False) -> None:
        self.trusted = trusted
        self.refusal: str | None = None

    @contextmanager
    def trust(self) -> Iterator[None]:
        """Allow everything in the block (d1sync's own statements)."""
        previous, self.trusted = self.trusted, True
        try:
            yield
        finally:
            self.trusted = previous

    @contextmanager
    def enforce(self) -> Iterator[None]:
        """Apply D1's rules in the block (a caller's statement)."""
        previous, self.trusted, self.refusal = self.trusted, False, None
        try:
            yield
        finally:
            self.trusted = previous

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
        if self.trusted:
            return _OK
        allowed = self._allowed(action, arg1, arg2, db)
        return _OK if allowed else _DENY

    def _allowed(self, action: int, arg1: str | None, arg2: str | None, db: str | None) -> bool:
        if action in (sqlite3.SQLITE_ALTER_TABLE, sqlite3.SQLITE_DETACH):
            arg1, arg2, db = arg2, None, arg1  # SQLite passes these two the other way round
        if db == "temp":
            return action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE) and _allowed_name(arg1)
        if db not in (None, "main"):
            return False
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_ANALYZE):
            return True
        if action == sqlite3.SQLITE_READ and arg1 in D1_MISSING_TABLES:
            self.refusal = f"table:{arg1}"
            return False
        if action in _NAMED_TABLE_ACTIONS:
            return _allowed_name(arg1)
        if action in _TWO_NAME_ACTIONS:
            return _allowed_name(arg1) and _allowed_name(arg2)
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            self.refusal = "transaction"
            return False
        if action == sqlite3.SQLITE_PRAGMA:
            return _pragma_allowed((arg1 or "").lower(), arg2)
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            if name in D1_MISSING_FUNCTIONS:
                self.refusal = f"function:{arg2}"
                return False
            return name not in D1_REFUSED_FUNCTIONS
        if action in (sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE):
            return (arg2 or "").lower() in ("fts5", "fts5vocab")
        return False  # ATTACH, DETACH, TEMP objects, anything unknown


def apply_d1_rules(connection: sqlite3.Connection, authorizer: D1Authorizer) -> None:
    """Give a ``sqlite3`` connection D1's limits and ``authorizer``."""
    for name, value in D1_LIMITS.items():
        connection.setlimit(getattr(sqlite3, f"SQLITE_LIMIT_{name}"), value)
    connection.set_authorizer(authorizer)
