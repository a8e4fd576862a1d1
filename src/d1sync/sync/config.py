"""SyncConfig: every knob of a :class:`~d1sync.sync.engine.SyncWorker`, in one frozen value.

A worker is built from a file, a target and one config (plus the clocks and a progress callback), so the
constructor stays small and a fleet can build many engines from one shared config. Keywords that used to
be the worker's own (``SyncWorker(path, target, window=500)``) still work for one release, with a
DeprecationWarning naming the field (:func:`merge_deprecated`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal

from d1sync.backoff import Backoff

__all__ = [
    "D1_MAX_VALUE_BYTES",
    "DEFAULT_IMPORT_THRESHOLD",
    "DEFAULT_PAGE",
    "DEFAULT_WINDOW",
    "DEFAULT_RETENTION",
    "Limits",
    "MAX_WINDOW",
    "PullOptions",
    "SyncConfig",
    "Via",
    "merge_deprecated",
]


D1_MAX_VALUE_BYTES = 2_000_000
"""D1's limit on one string/BLOB value or row (d1-contract §3)."""
DEFAULT_WINDOW = 20_000
"""Keys per window at least, when the window follows the request size (``SyncConfig(window=None)``)."""
MAX_WINDOW = 150_000
"""Keys per window at most, when the window follows the request size: it bounds what a pass holds (about
80 MB while a window of 8-column rows is read, and two windows while one is read ahead)."""
DEFAULT_PAGE = 10_000
"""Rows per page at most: about one remote request each. Requests are what D1's rate limit counts."""
DEFAULT_RETENTION = 7 * 86_400.0
"""Seconds a replica may stay silent and still hold the remote log back (pruning waits for it)."""
DEFAULT_IMPORT_THRESHOLD = 200_000
"""Distinct pending rows from which ``via="auto"`` sends the backlog through D1's import."""
Via = Literal["auto", "import", "batch"]
"""How a backlog travels to D1 (:attr:`SyncConfig.via`)."""


@dataclass(frozen=True)
class Limits:
    """Size limits for planning: ceilings the request size adapts under (see :mod:`~d1sync.sync.push.sizing`).

    Requests start at ``start_request_bytes``, grow while D1 answers fast, and shrink when a request nears
    ``target_seconds`` of D1's own execution time (``meta.duration``), times out, or is refused as too big.
    They never pass the ceilings below, nor D1's documented limits (100 KB of SQL text per statement, 2 MB per
    bound value).

    Attributes:
        max_value_bytes: bytes of one JSON parameter (D1 refuses values over 2,000,000 bytes).
        max_request_bytes: the most bytes of one request body (D1 documents no limit; a 413 or a reset
            connection shrinks the size below it, and the smaller size is remembered).
        max_statements: the most statements per request (each request is one atomic batch).
        start_request_bytes: the request size of a database that has no learned size yet (today's 2 MB).
        target_seconds: the execution time per request (``meta.duration``) sizes aim under; D1 stops a
            request at 30 s.
        adaptive: False: every request is planned at ``max_request_bytes`` (the fixed size of earlier
            releases, which had a 2,000,000-byte default).
    """

    max_value_bytes: int = 1_000_000
    max_request_bytes: int = 32_000_000
    max_statements: int = 50
    start_request_bytes: int = 2_000_000
    target_seconds: float = 5.0
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 1_000 <= self.max_value_bytes <= D1_MAX_VALUE_BYTES:
            raise ValueError(f"max_value_bytes must be between 1,000 and {D1_MAX_VALUE_BYTES:,}")
        if self.max_request_bytes < 1_000 or self.start_request_bytes < 1_000:
            raise ValueError("max_request_bytes and start_request_bytes must be at least 1,000")
        if self.max_statements < 1:
            raise ValueError("max_statements must be at least 1")
        if not 0 < self.target_seconds <= 30:
            raise ValueError("target_seconds must be above 0 and at most D1's 30 s")

    @property
    def first_request_bytes(self) -> int:
        """The size of a first request: the start size under the ceiling (the ceiling when not adaptive)."""
        return min(self.start_request_bytes, self.max_request_bytes) if self.adaptive else self.max_request_bytes


@dataclass(frozen=True)
class PullOptions:
    """How a worker pulls.

    Attributes:
        interval: seconds between pulls while nothing else wakes the worker (pull lag is about this plus one
            round trip).
        window: remote log entries read per pass.
        retention: seconds a silent replica still holds the remote log back.
        prune_every: seconds between this replica's prunes of the remote log.
        page: rows per page of a resync.
    """

    interval: float = 1.0
    window: int = 2_000
    retention: float = DEFAULT_RETENTION
    prune_every: float = 86_400.0
    page: int = DEFAULT_PAGE

    def __post_init__(self) -> None:
        if self.interval < 0 or self.window < 1 or self.retention < 0 or self.page < 1:
            raise ValueError("pull interval and retention must be >= 0, window and page >= 1")


@dataclass(frozen=True)
class SyncConfig:
    """How a SyncWorker syncs: sizes, timings and directions. Frozen: derive variants with
    :func:`dataclasses.replace`.

    Attributes:
        limits: planner limits (bytes per value and request, statements per request).
        window: distinct keys per window of the change log (it bounds memory): each key's changes in the
            window coalesce to its newest, so requests follow rows, not churn. None: enough keys to fill two
            requests of the learned size, at least :data:`DEFAULT_WINDOW` and at most :data:`MAX_WINDOW`.
        backoff: back-off for transient failures (default: 0.5 s doubling to 60 s, jittered).
        pause_interval: seconds before re-checking after a pause (auth error, missing database, schema).
        lease_ttl: seconds the drain lease lasts without renewal; must exceed a request's timeout.
        check_schema: verify the remote schema before the first send.
        poll_interval: seconds between ``PRAGMA data_version`` checks while idle (other processes' writes).
        min_interval: the floor between write-triggered passes, so a burst of small commits shares a request.
        seed: seeds the back-off jitter (for reproducible tests).
        push: send local changes (False: pull only; local changes wait).
        pull: pull the remote changes of two-way tables (``Outbox.replicate``); None: when there are any.
        pull_options: pull interval, window, log retention (:class:`~d1sync.sync.pull.puller.PullOptions`).
        read_ahead: read and plan the next window while a full window's last request is in flight (the send
            runs in a helper thread, so the target must accept calls from a thread other than the one that made
            it; D1Client and LocalDatabase do). Requests still go one at a time, in order.
        via: how a backlog travels: ``batch`` (requests of rows), ``import`` (D1's import API, for whatever is
            pending), or ``auto`` (the import once ``import_threshold`` distinct rows are pending). See
            :mod:`d1sync.sync.push.seeder`; a target without an import (a local file) always takes batches.
        import_threshold: the distinct pending rows from which ``auto`` sends the backlog through the import.
        pool: where those sends run: an executor that engines of one process share (the scheduler that drives
            them owns it); None: each engine starts one helper thread of its own when it first reads ahead.
        manage_schema: whether d1sync makes every synced table's remote schema follow the local one (creates
            missing tables, follows ALTERs and rebuilds; see docs/sync.md), overriding each table's own choice;
            None: each table's choice (``Outbox.track(manage_schema=...)``), else the default rule: managed
            unless the remote has a migrations ledger (``d1_migrations``, or wrangler's under another name).
            Two-way tables are never managed.

    Example::

        config = SyncConfig(window=5_000, limits=Limits(max_statements=20))
        with SyncWorker("app.db", D1Client(), config) as worker:
            worker.sync_once()
    """

    limits: Limits = field(default_factory=Limits)
    window: int | None = None
    backoff: Backoff = field(default_factory=Backoff)
    pause_interval: float = 30.0
    lease_ttl: float = 90.0
    check_schema: bool = True
    poll_interval: float = 0.05
    min_interval: float = 0.02
    seed: int | None = None
    push: bool = True
    pull: bool | None = None
    pull_options: PullOptions = field(default_factory=PullOptions)
    read_ahead: bool = True
    via: Via = "auto"
    import_threshold: int = DEFAULT_IMPORT_THRESHOLD
    pool: Executor | None = field(default=None, compare=False, repr=False)
    manage_schema: bool | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise ValueError("window must be at least 1 key (or None: sized to the requests)")
        if self.via not in ("auto", "import", "batch"):
            raise ValueError(f"via must be 'auto', 'import' or 'batch', not {self.via!r}")
        if self.import_threshold < 1:
            raise ValueError("import_threshold must be >= 1")


FIELDS = frozenset(f.name for f in dataclasses.fields(SyncConfig)) - {"pool"}
"""The keywords SyncWorker used to take itself."""


def merge_deprecated(config: SyncConfig | None, keywords: Mapping[str, Any], *, owner: str) -> SyncConfig:
    """``config`` with the old keyword arguments of ``owner`` applied, each with a DeprecationWarning.

    ``None`` for ``limits``, ``backoff`` or ``pull_options`` meant "the default", as it did before.

    Raises:
        TypeError: a keyword that is no SyncConfig field (as Python says for any unknown argument).
    """
    config = config or SyncConfig()
    unknown = sorted(set(keywords) - FIELDS)
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    for name in sorted(keywords):
        warnings.warn(
            f"{owner}({name}=...) is deprecated and will be removed in the next release: "
            f"pass SyncConfig({name}=...) as config",
            DeprecationWarning,
            stacklevel=3,
        )
    values = {
        name: value
        for name, value in keywords.items()
        if value is not None or name in ("seed", "pull", "manage_schema")
    }
    return dataclasses.replace(config, **values) if values else config
