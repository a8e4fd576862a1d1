"""The one exception tree of d1sync.

Every error d1sync raises is a :class:`D1SyncError`. Errors from the D1 API, the emulator and local SQLite
are translated at the boundary (``raise ... from exc``), so no ``httpx`` or ``sqlite3`` exception leaks out.

::

    D1SyncError                      anything d1sync raises
    ├── ConfigError                  missing/invalid configuration (no token, no account id, bad wrangler file)
    ├── ValueEncodingError           a Python value that cannot travel to D1 (NaN, int beyond 64 bits, ...)
    └── D1Error                      a failed database call: .code, .status, .retryable, .statement
        ├── SQLError                 7500/400: SQLite refused the statement (permanent for that statement)
        │   └── LimitError           a D1 limit was exceeded (params, statement size, value size)
        ├── AuthError                10000/9109/7403: bad token or account not authorized (pause, never drop)
        ├── NotFoundError            7003: no route
        │   └── DatabaseNotFoundError 7404: the database id does not exist
        ├── InvalidRequestError      7400 and other 4xx: the request itself is wrong
        └── TransientError           worth retrying: 5xx, HTML gateway pages, transient D1 messages
            ├── RateLimitedError     971/429, with .retry_after seconds
            ├── NetworkError         the connection failed or broke
            └── RequestTimeoutError  no answer in time (a write may still have committed)

``retryable`` is True exactly for :class:`TransientError` and its subclasses.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "D1Error",
    "D1SyncError",
    "DatabaseNotFoundError",
    "InvalidRequestError",
    "LimitError",
    "NetworkError",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SQLError",
    "TransientError",
    "ValueEncodingError",
]

_STATEMENT_PREVIEW = 200


class D1SyncError(Exception):
    """Base class of every error d1sync raises."""


class ConfigError(D1SyncError):
    """Configuration is missing or invalid; the message says what and how to set it."""


class ValueEncodingError(D1SyncError, ValueError):
    """A Python value cannot be represented exactly on D1."""


class D1Error(D1SyncError):
    """A database call failed.

    Attributes:
        message: the database's own error text (SQLite's message for SQL errors).
        code: the D1 error code (7500, 7404, 10000, ...) or None when the failure had no envelope.
        status: the HTTP status, or None for local SQLite and network failures.
        retryable: whether sending the same request again can succeed.
        statement: the SQL that failed, when known.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        statement: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.status = status
        self.statement = statement
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
    """SQLite refused the statement (D1 code 7500 with HTTP 400). Permanent for that statement."""


class LimitError(SQLError):
    """A D1 limit was exceeded: bound parameters, statement length, or value size."""


class AuthError(D1Error):
    """The API token is invalid or lacks permission. Fix the token; nothing is dropped meanwhile."""


class NotFoundError(D1Error):
    """The API has no such route (7003)."""


class DatabaseNotFoundError(NotFoundError):
    """The database id does not exist in the account (7404)."""


class InvalidRequestError(D1Error):
    """The request was malformed or refused for a reason a retry cannot fix."""


class TransientError(D1Error):
    """A failure that may pass: retry after a back-off."""

    retryable = True


class RateLimitedError(TransientError):
    """Rate limited (971 / HTTP 429). ``retry_after`` holds the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class NetworkError(TransientError):
    """The connection could not be made or broke mid-request."""


class RequestTimeoutError(TransientError):
    """No response in time. A write may still have been applied: only retry idempotent writes."""
