"""The outbox and the sync worker: every local write carried to D1, batched, in order, through any failure.

See ``docs/sync.md`` for the design; the pieces:

- :mod:`~d1sync.outbox.capture`: triggers that record ``(table, key, op)`` inside the writer's transaction;
- :mod:`~d1sync.outbox.changes`: the change log (windows, coalescing, acknowledgement, dead letters);
- :mod:`~d1sync.outbox.planner`: ``json_each`` bulk statements packed into size-bounded requests;
- :mod:`~d1sync.outbox.worker`: ``SyncWorker.sync_once()`` and its loop;
- :mod:`~d1sync.outbox.status`: status and Prometheus metrics.
"""

from __future__ import annotations

from d1sync.outbox.capture import TableSpec
from d1sync.outbox.changes import DeadLetter
from d1sync.outbox.outbox import Outbox
from d1sync.outbox.planner import Limits
from d1sync.outbox.status import Status
from d1sync.outbox.worker import Backoff, SchemaMismatchError, SyncResult, SyncWorker, drain

__all__ = [
    "Backoff",
    "DeadLetter",
    "Limits",
    "Outbox",
    "SchemaMismatchError",
    "Status",
    "SyncResult",
    "SyncWorker",
    "TableSpec",
    "drain",
]
