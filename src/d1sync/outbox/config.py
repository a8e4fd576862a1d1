"""SyncConfig: every knob of a :class:`~d1sync.outbox.worker.SyncWorker`, in one frozen value.

A worker is built from a file, a target and one config (plus the clocks and a progress callback), so the
constructor stays small and a fleet can build many engines from one shared config. Keywords that used to
be the worker's own (``SyncWorker(path, target, window=500)``) still work for one release, with a
DeprecationWarning naming the field (:func:`merge_deprecated`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from d1sync.backoff import Backoff
from d1sync.outbox.planner import Limits
from d1sync.outbox.pull import PullOptions

__all__ = ["SyncConfig", "merge_deprecated"]


@dataclass(frozen=True)
class SyncConfig:
    """How a SyncWorker syncs: sizes, timings and directions. Frozen: derive variants with
    :func:`dataclasses.replace`.

    Attributes:
        limits: planner limits (bytes per value and request, statements per request).
        window: change rows read per pass (bounds memory).
        backoff: back-off for transient failures (default: 0.5 s doubling to 60 s, jittered).
        pause_interval: seconds before re-checking after a pause (auth error, missing database, schema).
        lease_ttl: seconds the drain lease lasts without renewal; must exceed a request's timeout.
        check_schema: verify the remote schema before the first send.
        poll_interval: seconds between ``PRAGMA data_version`` checks while idle (other processes' writes).
        min_interval: the floor between write-triggered passes, so a burst of small commits shares a request.
        seed: seeds the back-off jitter (for reproducible tests).
        push: send local changes (False: pull only; local changes wait).
        pull: pull the remote changes of two-way tables (``Outbox.replicate``); None: when there are any.
        pull_options: pull interval, window, log retention (:class:`~d1sync.outbox.pull.PullOptions`).
        read_ahead: read and plan the next window while a full window's last request is in flight (the send
            runs in a helper thread, so the target must accept calls from a thread other than the one that made
            it; D1Client and LocalDatabase do). Requests still go one at a time, in order.

    Example::

        config = SyncConfig(window=5_000, limits=Limits(max_statements=20))
        with SyncWorker("app.db", D1Client(), config) as worker:
            worker.sync_once()
    """

    limits: Limits = field(default_factory=Limits)
    window: int = 20_000
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


FIELDS = frozenset(f.name for f in dataclasses.fields(SyncConfig))


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
    values = {name: value for name, value in keywords.items() if value is not None or name in ("seed", "pull")}
    return dataclasses.replace(config, **values) if values else config
