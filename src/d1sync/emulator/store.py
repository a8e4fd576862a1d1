"""One emulated D1 database: a SQLite file run by apsw's bundled SQLite (D1's version) under D1's rules.

Why apsw: its wheels bundle a chosen SQLite on every platform and Python d1sync supports (3.47.0, the
build workerd's D1 engine runs: ``concat``, ``jsonb``, JSON5, ``'subsec'``, ``timediff``...), and it reports
what D1's error texts are made of: SQLite's error offset (``... at offset 7``) and extended result codes
(``(extended: SQLITE_CONSTRAINT_DATATYPE)``). ``pysqlite3-binary`` ships only Linux x86-64 wheels, bundles
whatever SQLite it was last built with, and exposes neither.

A :class:`Store` runs the statements of one request in one transaction, the way workerd runs them: a text is
split where SQLite's own prepare loop would split it, every statement but the last must have no parameters,
the last must get exactly as many as it has, and the errors read as D1's. ``meta`` follows the engine:
``changes`` counts every row written (triggers, cascades, FTS5 shadow tables), ``last_row_id`` is the
connection's ``last_insert_rowid()``, ``changed_db`` is true when rows changed, the row id moved or the file
grew or shrank.

A request may run for ``max_duration`` seconds (D1's 30 s): SQLite's progress handler checks the clock every
thousand virtual-machine steps and interrupts the statement once the time is up, the transaction is rolled
back, and the request fails with D1's text for it, :data:`TIMEOUT_MESSAGE` (code 7429).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from d1sync.database import Meta, RawResult
from d1sync.emulator import DEFAULT_MAX_DURATION
from d1sync.errors import ApiError
from d1sync.local import D1_LIMITS, MULTI_PARAM_MESSAGE, TRANSACTION_MESSAGE, VACUUM_REFUSED, D1Authorizer
from d1sync.sql import first_keyword

__all__ = [
    "NO_STATEMENT",
    "SQLITE_VERSION",
    "TIMEOUT_CODE",
    "TIMEOUT_MESSAGE",
    "TIMEOUT_STATUS",
    "WRONG_BINDINGS",
    "Store",
    "split_sql",
]

SQLITE_VERSION = apsw.sqlite_lib_version()
NO_STATEMENT = "SQL code did not contain a statement."
WRONG_BINDINGS = "Wrong number of parameter bindings for SQL query."
_ROLLED_BACK = (
    "Durable Object was reset and rolled back to its last known good state because the application left the "
    "database in a state where constraints were violated: "
)
# D1's text when a request passes its time: the debug-d1 page's list of D1_ERRORs; wrangler prints real D1's
# answer as "D1 DB storage operation exceeded timeout which caused object to be reset. [code: 7429]". D1
# documents no HTTP status for it: 429 follows the code, as 7400/7403/7404 follow theirs.
TIMEOUT_MESSAGE = "D1 DB storage operation exceeded timeout which caused object to be reset."
TIMEOUT_CODE = 7429
TIMEOUT_STATUS = 429
_PROGRESS_STEPS = 1000  # virtual-machine steps between two looks at the clock: microseconds apart
_PRINTF_LIMIT = 100_000  # D1's SQLite is built with SQLITE_PRINTF_PRECISION_LIMIT=100000
_METADATA_DDL = "CREATE TABLE _cf_METADATA (\n        key INTEGER PRIMARY KEY,\n        value BLOB\n      )"

_TOKEN = re.compile(
    r"""\s+|--[^\n]*\n?|/\*.*?(?:\*/|\Z)|'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?|;|[^\s;'"`\[/-]+|.""",
    re.S,
)
_QUIET = frozenset("-/ \t\n\r\v\f;")  # tokens that start with these are comments, whitespace or ';' ...
_SPEC = re.compile(r"%([-+ 0#,!]*)(\d+|\*)?(?:\.(\d+|\*))?(ll|l)?(.)", re.S)


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement of a text, as SQLite's prepare loop cuts it (``sql`` keeps its leading comments)."""

    sql: str
    rest: str  # the text from this statement on: SQLite's length limit applies to all of it

    @property
    def too_long(self) -> bool:
        limit = D1_LIMITS["SQL_LENGTH"]
        return len(self.rest) > limit or (len(self.rest) * 4 > limit and len(self.rest.encode()) > limit)


def _is_quiet(token: str) -> bool:
    return token == ";" or token.isspace() or token.startswith(("--", "/*"))


def split_sql(text: str, *, lenient: bool = False) -> list[Piece]:
    """Cut ``text`` into statements like workerd does: a ``;`` ends a statement once SQLite calls it complete
    (so trigger bodies stay whole), whitespace after it is skipped, and a piece that holds no statement (only
    comments or ``;``) is an error, as on D1 (``SELECT 1; -- c`` fails). ``lenient`` skips such pieces
    instead (an import).

    Raises:
        ApiError: 7500 ``SQL code did not contain a statement.``
    """
    pieces: list[Piece] = []
    start = 0
    while True:
        end, meaningful = len(text), False
        for match in _TOKEN.finditer(text, start):
            token = match.group()
            meaningful = meaningful or not _is_quiet(token)
            if token == ";" and apsw.complete(text[start : match.end()]):
                end = match.end()
                break
        if lenient:
            # An import skips comments, and leaves an incomplete remainder alone, as D1's does.
            if meaningful and (end < len(text) or apsw.complete(text[start:end] + ";")):
                pieces.append(Piece(text[start:end], ""))
        elif meaningful:
            pieces.append(Piece(text[start:end], text[start:]))
        else:
            raise ApiError(7500, 400, NO_STATEMENT)
        start = end
        while start < len(text) and text[start] in " \t\n\r\v\f":
            start += 1
        if start >= len(text):
            return pieces


def _code_name(code: int) -> str:
    name = apsw.mapping_result_codes.get(code & 0xFF)
    return name if isinstance(name, str) else "SQLITE_ERROR"


def d1_error(exc: apsw.Error, refusal: str | None) -> ApiError:
    """The 7500 error D1 answers for an SQLite failure: text, ``at offset N`` when SQLite knows the place, the
    primary code, and the extended one for constraints."""
    if refusal == "transaction":
        return ApiError(7500, 400, TRANSACTION_MESSAGE)
    text = str(exc.args[0]) if exc.args else str(exc)
    offset = getattr(exc, "error_offset", -1)
    code = int(getattr(exc, "result", 1) or 1)
    kind, _, name = (refusal or "").partition(":")
    if kind == "function":  # compiled out of D1's SQLite
        text = f"no such function: {name}"
    elif kind == "table":
        text, offset, code = f"no such table: {name}", -1, 1
    extended = int(getattr(exc, "extendedresult", code) or code) if code != 1 else code
    primary = _code_name(code)
    suffix = ""
    if primary == "SQLITE_CONSTRAINT" and extended != code:
        suffix = f" (extended: {apsw.mapping_extended_result_codes.get(extended, primary)})"
    where = f" at offset {offset}" if isinstance(offset, int) and offset >= 0 else ""
    # Another connection holding the file (a test reading it directly) passes: 500, which clients retry.
    status = 500 if primary in ("SQLITE_BUSY", "SQLITE_LOCKED") else 400
    return ApiError(7500, status, f"{text}{where}: {primary}{suffix}")


def _clamp_printf(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """printf()'s arguments with every width and precision capped at 100,000, as D1's build caps them."""
    if not args or not isinstance(args[0], str):
        return args
    rest = list(args[1:])
    index = 0

    def clamp(number: str | None) -> str | None:
        nonlocal index
        if number == "*":
            if index < len(rest) and isinstance(rest[index], int | float) and abs(rest[index]) > _PRINTF_LIMIT:
                rest[index] = _PRINTF_LIMIT if rest[index] > 0 else -_PRINTF_LIMIT
            index += 1
            return number
        return str(min(int(number), _PRINTF_LIMIT)) if number else number

    def spec(match: re.Match[str]) -> str:
        nonlocal index
        flags, width, precision, length, kind = match.groups()
        if kind == "%":
            return match.group()
        width, precision = clamp(width), clamp(precision)
        index += 1
        return f"%{flags}{width or ''}{'.' + precision if precision is not None else ''}{length or ''}{kind}"

    return (_SPEC.sub(spec, args[0]), *rest)


class _Printf:
    """``printf``/``format`` with D1's precision cap, evaluated by the same SQLite on a private connection."""

    def __init__(self) -> None:
        self._conn = apsw.Connection(":memory:")
        self._conn.limit(apsw.SQLITE_LIMIT_LENGTH, D1_LIMITS["LENGTH"])
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        args = _clamp_printf(args)
        marks = ", ".join("?" for _ in args)
        with self._lock:
            return self._conn.execute(f"SELECT printf({marks})", args).fetchall()[0][0]


_PRINTF = _Printf()


class Store:
    """One database file under D1's rules (see the module docstring). Thread-safe.

    Example::

        store = Store("db.sqlite3")
        [result] = store.run([("SELECT concat('a', 1) AS v", [])])
        result.rows  # [['a1']]
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, max_duration: float = DEFAULT_MAX_DURATION
    ) -> None:
        if not max_duration > 0:
            raise ValueError(f"max_duration must be a positive number of seconds, not {max_duration}")
        self.path = Path(path)
        self.lock = threading.RLock()
        self.max_duration = max_duration
        self._deadline: float | None = None  # set while a request runs
        self._auth = D1Authorizer()
        self._conn = apsw.Connection(os.fspath(self.path))
        conn = self._conn
        conn.set_busy_timeout(int(busy_timeout * 1000))
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
            list(conn.execute(f"PRAGMA {pragma}"))  # apsw runs a statement as its rows are read
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        for name, value in D1_LIMITS.items():
            conn.limit(getattr(apsw, f"SQLITE_LIMIT_{name}"), value)
        for name in ("printf", "format"):
            conn.create_scalar_function(name, _PRINTF, -1, deterministic=True)
        conn.authorizer = self._auth
        conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
        # Python's own sqlite3 on the same file in this process (a test or benchmark reading the emulator's file)
        # is a second SQLite library, blind to this one's locks: closing its last connection would checkpoint
        # and delete the -wal file under apsw, and later commits would be lost. An idle sqlite3 connection that
        # has read once holds a shared lock that library does see, so no other of its connections is the last.
        self._sentinel = sqlite3.connect(os.fspath(self.path), isolation_level=None, check_same_thread=False)
        self._sentinel.execute("SELECT count(*) FROM sqlite_master").fetchall()
        # An app served without its lifespan (in-process, through SyncASGITransport) may never be closed: its
        # connections close when the store is collected, not left to warn (Python 3.13 warns of each).
        self._finalizer = weakref.finalize(self, _close_connections, self._conn, self._sentinel)
        self._page_size = int(self._trusted("PRAGMA page_size")[0][0])
        self._has_metadata = bool(self._trusted("SELECT 1 FROM sqlite_master WHERE name = '_cf_METADATA'"))
        self.on_commit: Callable[[], None] | None = None

    def _past_deadline(self) -> bool:
        # A true answer makes SQLite stop the running statement with SQLITE_INTERRUPT.
        return self._deadline is not None and time.monotonic() > self._deadline

    @contextmanager
    def _timed(self) -> Iterator[None]:
        """Run a request's statements against the execution limit; past it, D1's error (7429)."""
        self._deadline = time.monotonic() + self.max_duration
        try:
            yield
        except apsw.InterruptError as exc:  # interrupted in d1sync's own bookkeeping between statements
            raise ApiError(TIMEOUT_CODE, TIMEOUT_STATUS, TIMEOUT_MESSAGE) from exc
        except ApiError as exc:
            if isinstance(exc.__cause__, apsw.InterruptError):
                raise ApiError(TIMEOUT_CODE, TIMEOUT_STATUS, TIMEOUT_MESSAGE) from exc
            raise
        finally:
            self._deadline = None

    def close(self) -> None:
        with self.lock:
            self._finalizer()  # closes both connections, once

    @property
    def connection(self) -> apsw.Connection:
        """The apsw connection (its authorizer refuses what D1 refuses); hold :attr:`lock` to use it."""
        return self._conn

    def _trusted(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._auth.trust():
            return list(self._conn.execute(sql, params))

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of d1sync's own query, past the authorizer (exports read ``sqlite_master`` and every table)."""
        with self.lock:
            return self._trusted(sql, params)

    def replace_with(self, snapshot: os.PathLike[str]) -> None:
        """Make the database a copy of the SQLite file ``snapshot`` (a Time Travel restore)."""
        with self.lock:
            source = apsw.Connection(os.fspath(snapshot), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                with self._auth.trust(), self._conn.backup("main", source, "main") as backup:
                    backup.step()
            finally:
                source.close()
            self._has_metadata = bool(self._trusted("SELECT 1 FROM sqlite_master WHERE name = '_cf_METADATA'"))

    def ingest(self, text: str) -> tuple[int, RawResult]:
        """Run a SQL file as D1's import does: every complete statement, in order, in one transaction (comments
        and a trailing incomplete remainder are skipped). Returns how many ran and a meta covering them all."""
        started = time.perf_counter()
        before = self.size()
        count = changes = rows_read = 0
        with self.transaction():
            for piece in split_sql(text, lenient=True):
                result = self._run_one(piece, (), last=True, check_length=False)
                count += 1
                changes += result.meta.changes
                rows_read += result.meta.rows_read
        elapsed = (time.perf_counter() - started) * 1000
        size = self.size()
        meta = Meta(
            duration=elapsed,
            changes=changes,
            last_row_id=self._conn.last_insert_rowid(),
            changed_db=bool(changes) or size != before,
            rows_read=rows_read,
            rows_written=changes,
            size_after=size,
            sql_duration_ms=elapsed,
        )
        return count, RawResult([], [], meta)

    def size(self) -> int:
        """Bytes of the database as D1 counts them: pages in use (free pages left out) times the page size, so
        a DROP shrinks it and ``changed_db`` is true, as on the engine."""
        with self.lock:
            pages = int(self._trusted("PRAGMA page_count")[0][0]) - int(self._trusted("PRAGMA freelist_count")[0][0])
            return pages * self._page_size

    def _version(self) -> tuple[int, int]:
        return self._conn.total_changes(), int(self._trusted("PRAGMA schema_version")[0][0])

    def count_tables(self) -> int:
        """Tables a user made (not SQLite's own, not D1's ``_cf_*``)."""
        sql = (
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'"
        )
        with self.lock:
            return int(self._trusted(sql)[0][0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``), rolled back if the block raises. After a commit that
        changed rows or the schema, :attr:`on_commit` runs."""
        with self.lock:
            self._trusted("BEGIN IMMEDIATE")
            before = self._version()
            try:
                yield
                wrote = self._version() != before
                if wrote and not self._has_metadata:
                    self._write_metadata()
                self._commit()
            except BaseException:
                if self._conn.in_transaction:
                    self._trusted("ROLLBACK")
                raise
            if wrote and self.on_commit is not None:
                self.on_commit()

    def _commit(self) -> None:
        try:
            self._trusted("COMMIT")
        except apsw.ConstraintError as exc:  # a deferred foreign key still violated
            raise ApiError(7500, 400, _ROLLED_BACK + d1_error(exc, None).message) from exc

    def _write_metadata(self) -> None:
        # workerd adds its own table with the first write; it is listed in sqlite_master and refused to users.
        self._trusted(_METADATA_DDL)
        self._trusted("INSERT INTO _cf_METADATA (key, value) VALUES (2, 5)")  # what a wrangler --local file holds
        self._has_metadata = True

    def run(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[RawResult]:
        """Run every ``(sql, params)`` in one transaction; one result per statement (several per text).

        Raises:
            ApiError: 7500 with D1's text; 7429 :data:`TIMEOUT_MESSAGE` past ``max_duration``. Nothing is applied.
        """
        with self.lock, self._timed(), self.transaction():
            return [result for sql, params in queries for result in self._run_text(sql, params)]

    def _run_text(self, sql: str, params: Sequence[Any]) -> list[RawResult]:
        pieces = split_sql(sql)
        results = []
        for number, piece in enumerate(pieces, start=1):
            last = number == len(pieces)
            results.append(self._run_one(piece, params if last else (), last=last))
        return results

    def _run_one(self, piece: Piece, params: Sequence[Any], *, last: bool, check_length: bool = True) -> RawResult:
        if check_length and piece.too_long:
            raise ApiError(7500, 400, "statement too long: SQLITE_TOOBIG")
        if first_keyword(piece.sql) == "VACUUM":  # never outside the request's transaction, so never VACUUM INTO
            raise ApiError(7500, 400, VACUUM_REFUSED)
        conn = self._conn
        before_changes, before_rowid, before_size = conn.total_changes(), conn.last_insert_rowid(), self.size()
        described: list[Any] = []

        def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
            described.append(cursor.get_description())
            return True

        started = time.perf_counter()
        cursor = conn.cursor()
        cursor.exec_trace = trace
        try:
            with self._auth.enforce():
                # Never from apsw's statement cache: a cached statement is not authorized again, and the same
                # text may have been prepared for d1sync's own (trusted) use.
                rows = [list(row) for row in cursor.execute(piece.sql, tuple(params), can_cache=False)]
        except apsw.BindingsError as exc:
            raise ApiError(7500, 400, WRONG_BINDINGS if last else MULTI_PARAM_MESSAGE) from exc
        except apsw.Error as exc:
            raise d1_error(exc, self._auth.refusal) from exc
        elapsed = (time.perf_counter() - started) * 1000
        columns = [str(d[0]) for d in described[-1]] if described else []
        changes = conn.total_changes() - before_changes
        size = self.size()
        meta = Meta(
            duration=elapsed,
            changes=changes,
            last_row_id=conn.last_insert_rowid(),
            changed_db=bool(changes or conn.last_insert_rowid() != before_rowid or size != before_size),
            rows_read=len(rows) if columns else changes,
            rows_written=changes,
            size_after=size,
            sql_duration_ms=elapsed,
        )
        return RawResult(columns, rows, meta)


def _close_connections(conn: apsw.Connection, sentinel: sqlite3.Connection) -> None:
    conn.close()
    sentinel.close()
