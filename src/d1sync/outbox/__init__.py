"""The outbox and the sync worker: every local write carried to D1, batched, in order, through any failure.

See ``docs/sync.md`` for the design; the pieces, in the order a change travels:

- :mod:`~d1sync.outbox.store.schema`: the outbox's tables and the worker's typed state;
- :mod:`~d1sync.outbox.capture`: triggers that record ``(table, key, op)`` inside the writer's transaction;
- :mod:`~d1sync.outbox.codec`: how keys and rows are encoded, in SQL and in Python;
- :mod:`~d1sync.outbox.changes`: the change log (windows, coalescing, acknowledgement);
- :mod:`~d1sync.outbox.planner`: ``json_each`` bulk statements packed into size-bounded requests;
- :mod:`~d1sync.outbox.lease`: the single-drainer lease;
- :mod:`~d1sync.outbox.delivery`: sending, bisecting refusals, dead letters (:mod:`~d1sync.outbox.store.dead`);
- :mod:`~d1sync.outbox.config`: ``SyncConfig``, every knob of a worker;
- :mod:`~d1sync.outbox.worker`: ``SyncWorker.sync_once()``; :mod:`~d1sync.outbox.loop` its loop, in a thread
  or the foreground, with ``wait_synced`` and the asyncio surface; :mod:`~d1sync.outbox.drain`;
- :mod:`~d1sync.outbox.embed`: ``from_env``, the zero-config worker;
- :mod:`~d1sync.outbox.reconcile`, :mod:`~d1sync.outbox.preflight`, :mod:`~d1sync.outbox.verify`: following
  schema changes, per-table remote checks, exact comparison and repair;
- :mod:`~d1sync.outbox.status` and :mod:`~d1sync.outbox.metrics`: what it is doing, for people and Prometheus;
- :mod:`~d1sync.outbox.clone` (and :mod:`~d1sync.outbox.clone_plan`): the way back, a database copied into a file;
- replication (docs/replication.md): :mod:`~d1sync.outbox.replicate` (the remote capture, pruning),
  :mod:`~d1sync.outbox.store.replica` (a replica's own state), :mod:`~d1sync.outbox.pull` (the pull pass) and
  :mod:`~d1sync.outbox.apply` (pulled rows applied locally, uncaptured, under the conflict rule).
"""

from __future__ import annotations

from d1sync.backoff import Backoff
from d1sync.errors import SchemaMismatchError
from d1sync.outbox.clone import CloneReport, clone
from d1sync.outbox.config import SyncConfig
from d1sync.outbox.drain import DrainReport, drain
from d1sync.outbox.embed import from_env
from d1sync.outbox.model import TableSpec
from d1sync.outbox.outbox import Outbox
from d1sync.outbox.planner import Limits
from d1sync.outbox.pull import PullOptions
from d1sync.outbox.results import SyncResult
from d1sync.outbox.status import Status
from d1sync.outbox.store.dead import DeadLetter
from d1sync.outbox.worker import SyncWorker

__all__ = [
    "Backoff",
    "CloneReport",
    "DeadLetter",
    "DrainReport",
    "Limits",
    "Outbox",
    "PullOptions",
    "SchemaMismatchError",
    "Status",
    "SyncConfig",
    "SyncResult",
    "SyncWorker",
    "TableSpec",
    "clone",
    "drain",
    "from_env",
]
