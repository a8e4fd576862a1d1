"""Which tenants get the next passes: fair, bounded, and cheap at rest.

Each tenant has a slot: whether it has work (``waiting_since``: when it was first seen with work, on the
monotonic clock), when it may go next (``due_at``, after a back-off), and the last stat of its file and WAL.
The turn goes to the due tenants that have waited longest. A tenant whose pass left more to send goes to the
back of the line (its ``waiting_since`` becomes now), so tenants with work take turns, round-robin, and a
hot tenant cannot starve the others: with N tenants that have work and R requests/s, each gets a pass
within about N/R seconds.

At rest nothing runs SQL: a closed tenant is looked at again only when the stat of its file or its ``-wal``
changes (a ``stat`` per file per tick), or on the slow full check that catches what a stat cannot see. An
open tenant (one that ran lately; idle ones are closed) is asked ``PRAGMA data_version`` instead, which a
stat cannot match: a WAL reused from its start keeps its size, and two commits within one tick of the
file system's clock keep its mtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Scheduler", "Slot", "file_signature"]

Signature = tuple[int, int, int, int]


def file_signature(path: Path) -> Signature | None:
    """(mtime, size) of the file and of its ``-wal``: any commit changes one of them. None: the file is gone."""
    try:
        main = os.stat(path)
    except OSError:
        return None
    try:
        wal = os.stat(f"{path}-wal")
        wal_part = (wal.st_mtime_ns, wal.st_size)
    except OSError:
        wal_part = (0, 0)
    return (main.st_mtime_ns, main.st_size, *wal_part)


@dataclass
class Slot:
    """One tenant's place in the schedule."""

    waiting_since: float | None
    due_at: float = 0.0
    signature: Signature | None = None
    busy: bool = False


class Scheduler:
    """The schedule of a fleet's tenants (see the module docstring). Not thread-safe: the fleet holds a lock."""

    def __init__(self) -> None:
        self.slots: dict[Path, Slot] = {}

    def add(self, path: Path, now: float) -> None:
        """A new tenant: it has work (binding, its first pass) from ``now``."""
        self.slots.setdefault(path, Slot(waiting_since=now, signature=file_signature(path)))

    def remove(self, path: Path) -> None:
        self.slots.pop(path, None)

    def wake(self, path: Path, now: float) -> None:
        """``path`` has work (a write was seen): it waits from ``now`` unless it already waited."""
        slot = self.slots.get(path)
        if slot is not None and slot.waiting_since is None:
            slot.waiting_since = now

    def quiet(self) -> list[tuple[Path, Slot]]:
        """The tenants with no work and no pass running: the ones to look at for writes."""
        return [(p, s) for p, s in self.slots.items() if not s.busy and s.waiting_since is None]

    def stat_moved(self, path: Path, slot: Slot) -> bool:
        """Whether the stat of ``path`` moved since it was last kept (the new one is kept)."""
        signature = file_signature(path)
        if signature == slot.signature:
            return False
        slot.signature = signature
        return True

    def is_quiet(self, path: Path) -> bool:
        slot = self.slots.get(path)
        return slot is not None and not slot.busy and slot.waiting_since is None

    def due(self, now: float, limit: int) -> list[Path]:
        """Up to ``limit`` tenants to pass now, the longest waiting first; they are marked busy."""
        ready = [
            (slot.waiting_since, path)
            for path, slot in self.slots.items()
            if not slot.busy and slot.waiting_since is not None and slot.due_at <= now
        ]
        ready.sort()
        chosen = [path for _, path in ready[: max(0, limit)]]
        for path in chosen:
            self.slots[path].busy = True
        return chosen

    def next_due(self) -> float | None:
        """When the earliest waiting tenant becomes due (None: nobody waits)."""
        times = [s.due_at for s in self.slots.values() if not s.busy and s.waiting_since is not None]
        return min(times) if times else None

    def done(self, path: Path, now: float, *, more: bool, retry_in: float | None) -> None:
        """A pass of ``path`` ended: ``more`` sends it to the back of the line, ``retry_in`` waits, else it is
        quiet until its file changes."""
        slot = self.slots.get(path)
        if slot is None:
            return
        slot.busy = False
        slot.signature = file_signature(path)
        if more:
            slot.waiting_since, slot.due_at = now, now
        elif retry_in is not None:
            slot.waiting_since = slot.waiting_since if slot.waiting_since is not None else now
            slot.due_at = now + retry_in
        else:
            slot.waiting_since = None

    @property
    def waiting(self) -> int:
        return sum(1 for s in self.slots.values() if s.waiting_since is not None or s.busy)
