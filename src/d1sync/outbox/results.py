"""What a sync pass reports (:class:`SyncResult`), shared by the worker and its delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from d1sync.errors import D1SyncError

__all__ = ["Failure", "State", "SyncResult"]

State = Literal["idle", "synced", "backoff", "paused", "locked"]
"""``idle``: nothing pending; ``synced``: sent something; ``backoff``: a transient failure, retry later;
``paused``: auth, missing database or schema, fix it; ``locked``: another worker holds the lease."""


@dataclass
class SyncResult:
    """What one ``sync_once`` did."""

    state: State
    rows: int = 0
    requests: int = 0
    dead: int = 0
    retry_in: float | None = None
    more: bool = False
    error: str | None = None
    paused_tables: dict[str, str] = field(default_factory=dict)
    """Tables paused on their own (the others flowed), and why; their changes wait."""
    pulled: int = 0
    """Remote rows applied locally by this pass's pull (two-way tables only)."""
    next_pull: float | None = None
    """Seconds until a pull is due, when the worker pulls (the loop wakes for it)."""


@dataclass(frozen=True)
class Failure:
    """A pass that failed with no verdict on its rows: the engine records it (a back-off, or a pause).

    Attributes:
        error: what failed.
        at: epoch seconds of the failure.
        pause: pause (auth, a missing database) rather than back off.
        progressed: the pass delivered requests before it failed (the back-off starts afresh).
    """

    error: D1SyncError
    at: float
    pause: bool
    progressed: bool = False
