"""The one exception tree of d1sync, and the only place that reads error message text.

Every error d1sync raises is a :class:`D1SyncError`. Errors from the D1 API, the emulator and local SQLite
are translated where they enter the library (``raise ... from exc``), so no ``httpx`` or ``sqlite3``
exception leaks out of a public call::

    D1SyncError                      anything d1sync raises
    ├── ConfigError                  missing/invalid configuration (no token, no account id, bad config file)
    │   ├── UsageError               the invocation is incomplete or contradictory (a choice to make, two flags)
    │   └── SchemaMismatchError      the remote lacks a synced table, column or key
    ├── ValueEncodingError           a Python value that cannot travel to D1 (NaN, int beyond 64 bits, ...)
    ├── SyncPausedError              wait_synced: the changes wait for a pause that needs a fix (.table, .fix)
    ├── MigrationError               a migration file could not be applied (.name, .path)
    │   ├── UnsafeMigrationError     it holds BEGIN/COMMIT/...; refused before anything ran (.line)
    │   └── MigrationFailedError     the database refused it; rolled back (.cause, .statement_number, .line)
    └── D1Error                      a failed database call: .code, .status, .retryable, .statement,
        │                            .result_code and .extended_code (SQLite's, when it reported one)
        ├── SQLError                 SQLite refused the statement (7500/400): .row_level, .constraint, ...
        │   ├── LimitError           a D1 limit was exceeded (params, statement size, value size)
        │   └── UndecodableTextError a TEXT value in a local file is not valid UTF-8
        ├── AuthError                10000/9109/7403: bad token or account not authorized (pause, never drop)
        ├── FileRewoundError         D1 took a newer send from this file than the file has made (restored?)
        ├── NotFoundError            7003: no route
        │   └── DatabaseNotFoundError 7404: the database id does not exist
        ├── InvalidRequestError      7400 and other 4xx: the request itself is wrong
        ├── ApiError                 an answer the emulator sends in D1's envelope (code, status, message)
        └── TransientError           worth retrying: 5xx, HTML gateway pages, busy files, transient D1 messages
            ├── RateLimitedError     971/429, with .retry_after seconds
            ├── NetworkError         the connection failed or broke
            │   └── UnreachableError nothing answers at the address (refused, unknown host)
            ├── RequestTimeoutError  no answer in time (a write may still have committed)
            ├── ExecutionTimeoutError D1 stopped the request at its 30 s limit and rolled it back (send less)
            └── UnprovenResultError  an answer that says success but does not prove it (outcome unknown)

``retryable`` is True exactly for :class:`TransientError` and its subclasses.

SQLite's result code is parsed once, here: from a ``sqlite3`` exception (:func:`from_sqlite`) or from the
``: SQLITE_X`` / ``(extended: SQLITE_X_Y)`` suffix D1 puts on its messages. Everything downstream branches
on the parsed code and the properties of :class:`SQLError`, never on message text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._codes import (
    _CONSTRAINT_EXTENDED,
    _CONSTRAINT_KINDS,
    _CONSTRAINT_TEXTS,
    _FENCE,
    _MALFORMED_JSON,
    _NO_SUCH,
    _PRIMARY,
    _ROW_LEVEL_CODES,
    FENCE_MARKER,
    _primary_of,
    parse_result_code,
)

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigError",
    "D1Error",
    "D1SyncError",
    "DatabaseNotFoundError",
    "ExecutionTimeoutError",
    "FENCE_MARKER",
    "FileRewoundError",
    "InvalidRequestError",
    "LimitError",
    "MigrationError",
    "MigrationFailedError",
    "NetworkError",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SQLError",
    "SchemaMismatchError",
    "SyncPausedError",
    "TransientError",
    "UndecodableTextError",
    "UnprovenResultError",
    "UnreachableError",
    "UnsafeMigrationError",
    "UsageError",
    "ValueEncodingError",
    "classify_error",
    "from_sqlite",
    "parse_result_code",
]

_STATEMENT_PREVIEW = 200


class D1SyncError(Exception):
    """Base class of every error d1sync raises."""


class ConfigError(D1SyncError):
    """Configuration is missing or invalid; the message says what and how to set it.

    Attributes:
        message: what is wrong (the text before the hint).
        hint: how to fix it, when one fix applies (the command line prints it as ``Try:``); also at the end
            of ``str(error)``.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{message}; {hint}" if hint else message)
        self.message = message
        self.hint = hint


class UsageError(ConfigError):
    """The call is incomplete or contradictory: a choice is missing (which of several databases) or two
    given options conflict. The CLI exits 2 for it, as for a bad flag."""


class SchemaMismatchError(ConfigError):
    """The remote lacks a synced table, column or key; the message names each one."""


class ValueEncodingError(D1SyncError, ValueError):
    """A Python value cannot be represented exactly on D1."""


# -- migrations --------------------------------------------------------------------------------------------


class SyncPausedError(D1SyncError):
    """The changes waited for are held by a pause that needs a fix (a table missing on D1, a bad token, a file
    that went back in time); nothing is dropped. ``table`` (None: the whole worker), ``reason``, ``fix``."""

    def __init__(self, reason: str, *, table: str | None = None, fix: str | None = None) -> None:
        self.table = table
        self.reason = reason
        self.fix = fix
        where = f"table {table!r}" if table is not None else "the sync worker"
        super().__init__(f"{where} is paused: {reason}" + (f"; fix: {fix}" if fix else ""))


class MigrationError(D1SyncError):
    """A migration could not be applied. ``name`` is its ledger name, ``path`` its file."""

    def __init__(self, message: str, *, name: str, path: Path) -> None:
        super().__init__(message)
        self.name = name
        self.path = path


class UnsafeMigrationError(MigrationError):
    """A pending file holds a transaction statement (``BEGIN``/``COMMIT``/...), which fails on D1.

    Raised before anything runs. ``line`` is the 1-based line of the statement in the file.
    """

    def __init__(self, message: str, *, name: str, path: Path, line: int) -> None:
        super().__init__(message, name=name, path=path)
        self.line = line


class MigrationFailedError(MigrationError):
    """The database refused a migration; it was rolled back, earlier ones stay applied.

    Attributes:
        statement_number: 1-based statement of the file that failed (None: the ledger insert, or unknown).
        line: the line that statement starts on, when known.
        cause: the database error.
        applied: the migrations (``AppliedMigration``) applied by this run before the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str,
        path: Path,
        cause: D1Error,
        statement_number: int | None,
        line: int | None,
        applied: Sequence[Any] = (),
    ) -> None:
        super().__init__(message, name=name, path=path)
        self.cause = cause
        self.statement_number = statement_number
        self.line = line
        self.applied = list(applied)


class D1Error(D1SyncError):
    """A database call failed.

    Attributes:
        message: the database's own error text (SQLite's message for SQL errors).
        code: the D1 error code (7500, 7404, 10000, ...) or None when the failure had no envelope.
        status: the HTTP status, or None for local SQLite and network failures.
        retryable: whether sending the same request again can succeed.
        statement: the SQL that failed, when known.
        result_code: SQLite's primary result code name (``SQLITE_CONSTRAINT``), when the error came from SQLite.
        extended_code: SQLite's extended result code name (``SQLITE_CONSTRAINT_UNIQUE``), when known.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        statement: str | None = None,
        result_code: str | None = None,
        extended_code: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.status = status
        self.statement = statement
        if result_code is None:
            result_code, parsed_extended = parse_result_code(message)
            extended_code = extended_code or parsed_extended
        self.result_code = result_code
        self.extended_code = extended_code
        super().__init__(message)

    def __str__(self) -> str:
        return self.describe()

    def describe(self, *, statement: bool = True) -> str:
        """The message with code and HTTP status, and (unless ``statement=False``) the failing SQL."""
        parts = [self.message]
        where = []
        if self.code is not None:
            where.append(f"code {self.code}")
        if self.status is not None:
            where.append(f"HTTP {self.status}")
        if where:
            parts.append(f"({', '.join(where)})")
        if statement and self.statement:
            sql = " ".join(self.statement.split())
            if len(sql) > _STATEMENT_PREVIEW:
                sql = sql[:_STATEMENT_PREVIEW] + "..."
            parts.append(f"in statement: {sql}")
        return " ".join(parts)


class SQLError(D1Error):
    """SQLite refused the statement (D1 code 7500 with HTTP 400). Permanent for that statement.

    The properties below classify the refusal from its result code (and, where D1 sent only the primary
    code, from SQLite's own text): callers branch on them, never on the message.
    """

    @property
    def constraint(self) -> str | None:
        """The constraint that failed: ``UNIQUE``, ``PRIMARY KEY``, ``FOREIGN KEY``, ``NOT NULL``, ``CHECK``,
        ``DATATYPE`` (a STRICT column) or ``TRIGGER``; None if this is not a constraint error."""
        if self.extended_code in _CONSTRAINT_KINDS:
            return _CONSTRAINT_KINDS[self.extended_code]
        if self.result_code not in (None, "SQLITE_CONSTRAINT"):
            return None
        for text, kind in _CONSTRAINT_TEXTS:
            if text in self.message:
                return kind
        return None

    @property
    def row_level(self) -> bool:
        """True when the refusal belongs to the values of a row (a constraint, a type mismatch, a value too
        big, a bad bind index, malformed JSON), not to the statement or the schema: the row can be isolated
        and set aside while the rest goes through."""
        if self.result_code in _ROW_LEVEL_CODES or self.constraint is not None:
            return True
        return _MALFORMED_JSON in self.message

    @property
    def missing(self) -> tuple[str, str] | None:
        """``("table", name)`` or ``("column", name)`` for a "no such table/column" refusal, else None."""
        match = _NO_SUCH.search(self.message)
        return (match.group(1), match.group(2).removeprefix("main.")) if match else None

    @property
    def fence(self) -> str | None:
        """The name of the d1sync fence statement that raised this error on purpose, else None."""
        match = _FENCE.search(self.message)
        return match.group(1) if match else None


class LimitError(SQLError):
    """A D1 limit was exceeded: bound parameters, statement length, value size, or the size of a request
    body (HTTP 413)."""


class UndecodableTextError(SQLError):
    """A TEXT value read from a local file holds bytes that are not UTF-8 (SQLite stores any bytes as TEXT)."""


class AuthError(D1Error):
    """The API token is invalid or lacks permission. Fix the token; nothing is dropped meanwhile."""


class FileRewoundError(D1Error):
    """D1 has already taken a newer send from this file than the file itself has made: the file went back in
    time (restored from a backup or a snapshot), or another file carries its identity. Nothing is sent until
    D1 is made equal to the file (``verify --repair --delete-extra``) or the file is restored from D1
    (``clone``); nothing is dropped."""


class NotFoundError(D1Error):
    """The API has no such route (7003)."""


class DatabaseNotFoundError(NotFoundError):
    """The database id does not exist in the account (7404)."""


class InvalidRequestError(D1Error):
    """The request was malformed or refused for a reason a retry cannot fix."""


class ApiError(D1Error):
    """An error the emulator answers in D1's envelope: D1's ``code``, the HTTP ``status`` and ``message``."""

    code: int
    status: int

    def __init__(self, code: int, status: int, message: str) -> None:
        super().__init__(message, code=code, status=status)


class TransientError(D1Error):
    """A failure that may pass: retry after a back-off."""

    retryable = True


class RateLimitedError(TransientError):
    """Rate limited (971 / HTTP 429). ``retry_after`` holds the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class NetworkError(TransientError):
    """The connection could not be made or broke mid-request."""


class UnreachableError(NetworkError):
    """Nothing answers at the address: the connection was refused or the host is unknown. The request never
    left, so it is safe to send again; a target that never answered is probably not running or misnamed."""


class RequestTimeoutError(TransientError):
    """No response in time. A write may still have been applied: only retry idempotent writes."""


class ExecutionTimeoutError(TransientError):
    """D1 ran the request past its execution limit (30 s), reset the database and rolled the request back
    (``D1 DB storage operation exceeded timeout which caused object to be reset.``, code 7429).

    Nothing of the request was applied. D1 counts it among the errors worth retrying (a busy machine can cause
    it), but a request that is simply too much work fails again: send less per request.
    """


class UnprovenResultError(TransientError):
    """D1 said "success" without proof: no ``result``, a ``null`` or short one, a statement result without
    ``success: true`` or its ``meta``. The outcome is unknown, as after a lost response (the message tells the
    answer's shape, never its data)."""


# -- translation at the boundaries -------------------------------------------------------------------------


def from_sqlite(exc: sqlite3.Error, statement: str | None = None, *, path: str | None = None) -> D1Error:
    """The d1sync error D1 would give for a ``sqlite3`` exception (the message carries D1's code suffix).

    Busy and locked files are transient; misuse of the Python API (wrong number of bindings) is an invalid
    request; text that is not UTF-8 is an :class:`UndecodableTextError`. With ``path``, a file that cannot be
    opened, or is not a database, names the file.
    """
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "decode to UTF-8" in text:
        return UndecodableTextError(f"{text}: SQLITE_ERROR", code=7500, statement=statement)
    number = getattr(exc, "sqlite_errorcode", None)
    if number is None and isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return InvalidRequestError(text, statement=statement)  # raised by Python's sqlite3, not by SQLite
    name = getattr(exc, "sqlite_errorname", None)
    primary = _PRIMARY.get(number & 0xFF) if isinstance(number, int) else None
    if primary is None:
        primary = _primary_of(name) if name and name != "unknown" else "SQLITE_ERROR"
    extended = _CONSTRAINT_EXTENDED.get(number) if isinstance(number, int) else None
    if extended is None and name and name not in ("unknown", primary):
        extended = name
    # D1 names the extended code of constraint errors only: "...: SQLITE_CONSTRAINT (extended: ...)".
    suffix = f" (extended: {extended})" if primary == "SQLITE_CONSTRAINT" and extended else ""
    message = f"{text}: {primary}{suffix}"
    codes: dict[str, Any] = {"statement": statement, "result_code": primary, "extended_code": extended}
    if path is not None and primary in ("SQLITE_CANTOPEN", "SQLITE_NOTADB"):
        reason = "it is not a SQLite database" if primary == "SQLITE_NOTADB" else "the file cannot be opened"
        return SQLError(f"cannot open {path}: {reason} ({text}: {primary})", **codes)
    if primary in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return TransientError(message, **codes)
    if primary == "SQLITE_TOOBIG":
        return LimitError(message, code=7500, **codes)
    return SQLError(message, code=7500, **codes)


_TRANSIENT_MESSAGES = (
    "network connection lost",
    "storage caused object to be reset",
    "d1 db reset because its code was updated",
    "d1 db is overloaded",
    "cannot resolve d1 db due to transient issue",
)
_EXECUTION_TIMEOUT = "storage operation exceeded timeout which caused object to be reset"
_LIMIT_MESSAGES = ("sqlite_toobig", "too many sql variables", "string or blob too big")
_AUTH_CODES = frozenset({7403, 9109, 10000})


def classify_error(
    *,
    status: int,
    code: int | None,
    message: str,
    statement: str | None = None,
    retry_after: float | None = None,
) -> D1Error:
    """The d1sync error for a D1 failure, from its error code, HTTP status and message (d1-contract §2)."""
    kwargs: dict[str, Any] = {"code": code, "status": status, "statement": statement}
    lowered = message.lower()
    if _EXECUTION_TIMEOUT in lowered:
        # Before the 429 test: this is one request's own time, not the account's rate limit.
        return ExecutionTimeoutError(message, **kwargs)
    if code == 971 or status == 429:
        return RateLimitedError(message, retry_after=retry_after, **kwargs)
    if status == 413:
        # The body is over a size limit (Cloudflare's edge sends an HTML page, the emulator 7400): a retry
        # cannot pass, a smaller request can.
        return LimitError(message, **kwargs)
    if any(m in lowered for m in _TRANSIENT_MESSAGES):
        # D1 reports some infrastructure hiccups as 7500/400; they pass on retry.
        return TransientError(message, **kwargs)
    if code in _AUTH_CODES or status in (401, 403):
        return AuthError(message, **kwargs)
    if code == 7404:
        return DatabaseNotFoundError(message, **kwargs)
    if code == 7003 or (code is None and status == 404):
        return NotFoundError(message, **kwargs)
    if code == 7400:
        return InvalidRequestError(message, **kwargs)
    if status == 408:
        return RequestTimeoutError(message, **kwargs)
    if status >= 500:
        return TransientError(message, **kwargs)
    if code == 7500:
        if any(m in lowered for m in _LIMIT_MESSAGES):
            return LimitError(message, **kwargs)
        return SQLError(message, **kwargs)
    if 400 <= status < 500:
        return InvalidRequestError(message, **kwargs)
    return D1Error(message, **kwargs)
