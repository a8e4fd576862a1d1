"""d1sync: write to SQLite at local speed; a durable outbox carries every write to Cloudflare D1.

The front door: import everything from here::

    from d1sync import LocalDatabase, D1Client
"""

from __future__ import annotations

__version__ = "0.1.0"

from d1sync.database import (
    AsyncDatabase,
    AsyncStatement,
    Database,
    ExecResult,
    Meta,
    RawResult,
    Result,
    Statement,
)
from d1sync.errors import (
    AuthError,
    ConfigError,
    D1Error,
    D1SyncError,
    DatabaseNotFoundError,
    InvalidRequestError,
    LimitError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    SQLError,
    TransientError,
    ValueEncodingError,
)
from d1sync.local import LocalDatabase
from d1sync.modules import ModuleStore

__all__ = [
    "AsyncDatabase",
    "AsyncStatement",
    "AuthError",
    "ConfigError",
    "D1Error",
    "D1SyncError",
    "Database",
    "DatabaseNotFoundError",
    "ExecResult",
    "InvalidRequestError",
    "LimitError",
    "LocalDatabase",
    "Meta",
    "ModuleStore",
    "NetworkError",
    "NotFoundError",
    "RateLimitedError",
    "RawResult",
    "RequestTimeoutError",
    "Result",
    "SQLError",
    "Statement",
    "TransientError",
    "ValueEncodingError",
    "__version__",
]
