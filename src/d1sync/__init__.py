"""d1sync: write to SQLite at local speed; a durable outbox carries every write to Cloudflare D1.

The front door: import everything from here::

    from d1sync import LocalDatabase, D1Client, Outbox, SyncWorker, TaskQueue

Names load on first use, so ``import d1sync`` (and ``d1sync --help``) stays cheap: the HTTP client loads
with ``D1Client``, and no server or benchmark code loads at all.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from d1sync._version import __version__

if TYPE_CHECKING:
    from d1sync.backoff import Backoff
    from d1sync.client import AsyncD1Client, D1Client, RateLimiter, RetryPolicy
    from d1sync.database import (
        AsyncDatabase,
        AsyncStatement,
        Database,
        ExecResult,
        Meta,
        ModuleStore,
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
        ExecutionTimeoutError,
        FileRewoundError,
        InvalidRequestError,
        LimitError,
        MigrationError,
        MigrationFailedError,
        NetworkError,
        NotFoundError,
        RateLimitedError,
        RequestTimeoutError,
        SchemaMismatchError,
        SQLError,
        SyncPausedError,
        TransientError,
        UndecodableTextError,
        UnprovenResultError,
        UnreachableError,
        UnsafeMigrationError,
        ValueEncodingError,
    )
    from d1sync.fleet import Fleet, FleetStatus
    from d1sync.local import LocalDatabase
    from d1sync.migrations import MigrationSource, Migrator
    from d1sync.sync import (
        CloneReport,
        DeadLetter,
        DrainReport,
        Limits,
        Outbox,
        PullOptions,
        Status,
        SyncConfig,
        SyncResult,
        SyncWorker,
        TableSpec,
        clone,
        drain,
        from_env,
    )
    from d1sync.target import Target, resolve_target
    from d1sync.tasks import Task, TaskQueue
    from d1sync.wrangler import find_wrangler_config, load_wrangler_config

# A library logs; the application decides where logs go (`d1sync run` configures a handler).
logging.getLogger("d1sync").addHandler(logging.NullHandler())

__all__ = [
    "AsyncD1Client",
    "AsyncDatabase",
    "AsyncStatement",
    "AuthError",
    "Backoff",
    "CloneReport",
    "ConfigError",
    "D1Client",
    "D1Error",
    "D1SyncError",
    "Database",
    "DatabaseNotFoundError",
    "DeadLetter",
    "DrainReport",
    "ExecResult",
    "ExecutionTimeoutError",
    "FileRewoundError",
    "Fleet",
    "FleetStatus",
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
    "PullOptions",
    "RateLimitedError",
    "RateLimiter",
    "RawResult",
    "RequestTimeoutError",
    "Result",
    "RetryPolicy",
    "SQLError",
    "SchemaMismatchError",
    "Statement",
    "Status",
    "SyncConfig",
    "SyncPausedError",
    "SyncResult",
    "SyncWorker",
    "TableSpec",
    "Target",
    "Task",
    "TaskQueue",
    "TransientError",
    "UndecodableTextError",
    "UnprovenResultError",
    "UnreachableError",
    "UnsafeMigrationError",
    "ValueEncodingError",
    "__version__",
    "clone",
    "drain",
    "find_wrangler_config",
    "from_env",
    "load_wrangler_config",
    "resolve_target",
]

_LAZY = {
    "Backoff": "d1sync.backoff",
    "AsyncD1Client": "d1sync.client",
    "D1Client": "d1sync.client",
    "RateLimiter": "d1sync.client",
    "RetryPolicy": "d1sync.client",
    "AsyncDatabase": "d1sync.database",
    "AsyncStatement": "d1sync.database",
    "Database": "d1sync.database",
    "ExecResult": "d1sync.database",
    "Meta": "d1sync.database",
    "ModuleStore": "d1sync.database",
    "RawResult": "d1sync.database",
    "Result": "d1sync.database",
    "Statement": "d1sync.database",
    "AuthError": "d1sync.errors",
    "ConfigError": "d1sync.errors",
    "D1Error": "d1sync.errors",
    "D1SyncError": "d1sync.errors",
    "DatabaseNotFoundError": "d1sync.errors",
    "ExecutionTimeoutError": "d1sync.errors",
    "FileRewoundError": "d1sync.errors",
    "InvalidRequestError": "d1sync.errors",
    "LimitError": "d1sync.errors",
    "MigrationError": "d1sync.errors",
    "MigrationFailedError": "d1sync.errors",
    "NetworkError": "d1sync.errors",
    "NotFoundError": "d1sync.errors",
    "RateLimitedError": "d1sync.errors",
    "RequestTimeoutError": "d1sync.errors",
    "SQLError": "d1sync.errors",
    "SyncPausedError": "d1sync.errors",
    "SchemaMismatchError": "d1sync.errors",
    "TransientError": "d1sync.errors",
    "UndecodableTextError": "d1sync.errors",
    "UnprovenResultError": "d1sync.errors",
    "UnreachableError": "d1sync.errors",
    "UnsafeMigrationError": "d1sync.errors",
    "ValueEncodingError": "d1sync.errors",
    "Fleet": "d1sync.fleet",
    "FleetStatus": "d1sync.fleet",
    "LocalDatabase": "d1sync.local",
    "MigrationSource": "d1sync.migrations",
    "Migrator": "d1sync.migrations",
    "CloneReport": "d1sync.sync",
    "clone": "d1sync.sync",
    "DeadLetter": "d1sync.sync",
    "DrainReport": "d1sync.sync",
    "Limits": "d1sync.sync",
    "Outbox": "d1sync.sync",
    "PullOptions": "d1sync.sync",
    "Status": "d1sync.sync",
    "SyncConfig": "d1sync.sync",
    "SyncResult": "d1sync.sync",
    "SyncWorker": "d1sync.sync",
    "TableSpec": "d1sync.sync",
    "drain": "d1sync.sync",
    "from_env": "d1sync.sync",
    "Target": "d1sync.target",
    "resolve_target": "d1sync.target",
    "Task": "d1sync.tasks",
    "TaskQueue": "d1sync.tasks",
    "find_wrangler_config": "d1sync.wrangler",
    "load_wrangler_config": "d1sync.wrangler",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
