"""The sync engine: every local write carried to D1, batched, in order, through any failure; and back.

See ``docs/sync.md`` for the design and ``docs/architecture.md`` for the drawing. The parts, by capability:

- :mod:`~d1sync.sync.model`: plain data (TableSpec, Change, SyncResult); :mod:`~d1sync.sync.config`:
  SyncConfig, every knob of an engine; :mod:`~d1sync.sync.codec`: keys and rows, in SQL and in Python;
- :mod:`~d1sync.sync.store`: the only code that reads or writes the outbox's ``_d1sync_*`` tables (change log,
  windows, acks, dead letters, lease, pauses, cursors, typed state);
- :mod:`~d1sync.sync.capture`: which tables can be tracked, and how; :mod:`~d1sync.sync.outbox`: the Outbox
  API (track, declare, enqueue, replicate, dead letters);
- :mod:`~d1sync.sync.tables`: one table's life: following local DDL, remote checks, re-sends, pauses;
- :mod:`~d1sync.sync.push`: window source (read ahead as a wrapper) -> planner -> sender, and
  :mod:`~d1sync.sync.push.refusals`, what each D1 refusal means;
- :mod:`~d1sync.sync.pull`: the pull pass and the local apply; :mod:`~d1sync.sync.remote`: what d1sync keeps
  on D1 (remote capture, origin, replica positions), used by push and pull alike;
- :mod:`~d1sync.sync.compare`: exact pages, verify and repair, clone;
- :mod:`~d1sync.sync.engine`: SyncWorker, composed of a lease, a pacer (:mod:`~d1sync.sync.pacing`), a
  puller and a loop, each given what it needs (:mod:`~d1sync.sync.link`); :mod:`~d1sync.sync.run`: ways to
  run engines (the loop, ``drain``, ``from_env``); :mod:`~d1sync.sync.status` and
  :mod:`~d1sync.sync.metrics`: what it is doing, for people and Prometheus.
"""

from __future__ import annotations

from d1sync.backoff import Backoff
from d1sync.errors import SchemaMismatchError
from d1sync.sync.compare.clone import CloneReport, clone
from d1sync.sync.config import Limits, PullOptions, SyncConfig
from d1sync.sync.engine import SyncWorker
from d1sync.sync.model import SyncResult, TableSpec
from d1sync.sync.outbox import Outbox
from d1sync.sync.run.drain import DrainReport, drain
from d1sync.sync.run.embed import from_env
from d1sync.sync.status import Status
from d1sync.sync.store.dead import DeadLetter

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
