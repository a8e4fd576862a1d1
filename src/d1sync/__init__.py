"""d1sync: write to SQLite at local speed; a durable outbox carries every write to Cloudflare D1.

The front door: import everything from here::

    from d1sync import LocalDatabase, D1Client, Outbox, SyncWorker, TaskQueue
"""

from __future__ import annotations

import logging

from d1sync._version import __version__
from d1sync.client import AsyncD1Client, D1Client, RateLimiter
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
from d1sync.migrations import (
    MigrationError,
    MigrationFailedError,
    MigrationSource,
    Migrator,
    UnsafeMigrationError,
    find_wrangler_config,
    load_wrangler_config,
)
from d1sync.modules import ModuleStore
from d1sync.outbox import Backoff, Limits, Outbox, SchemaMismatchError, SyncWorker
from d1sync.tasks import Task, TaskQueue

# A library logs; the application decides where logs go (`d1sync run` configures a handler).
logging.getLogger("d1sync").addHandler(logging.NullHandler())

__all__ = [
    "AsyncD1Client",
    "AsyncDatabase",
    "AsyncStatement",
    "AuthError",
    "Backoff",
    "ConfigError",
    "D1Client",
    "D1Error",
    "D1SyncError",
    "Database",
    "DatabaseNotFoundError",
    "ExecResult",
    "InvalidRequestError",
    "LimitError",
    "Limits",
    "LocalDatabase",
    "Meta",
    "MigrationError",
    "MigrationFailedError",
    "MigrationSource",
    "Migrator",
    "ModuleStore",
    "NetworkError",
    "NotFoundError",
    "Outbox",
    "RateLimitedError",
    "RateLimiter",
    "RawResult",
    "RequestTimeoutError",
    "Result",
    "SQLError",
    "SchemaMismatchError",
    "Statement",
    "SyncWorker",
    "Task",
    "TaskQueue",
    "TransientError",
    "UnsafeMigrationError",
    "ValueEncodingError",
    "__version__",
    "find_wrangler_config",
    "load_wrangler_config",
]
