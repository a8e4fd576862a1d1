"""Delivery of one pass's planned requests: send in order, isolate refused rows, survive a lost lease.

A row-level refusal (a constraint, a type mismatch, a value too big) is bisected until only the offending
rows are left, and those are dead-lettered while everything else goes through. A single row refused for a
foreign key or a secondary UNIQUE value may only be waiting for another row's change (its parent, or the row
holding the value remotely): in a full window that change may lie beyond it, so the row stays pending;
otherwise it is tried once more after the rest of the pass, then dead-lettered.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from d1sync.database import Database
from d1sync.errors import D1Error, D1SyncError, SQLError, TransientError
from d1sync.outbox import lease
from d1sync.outbox.capture import TableSpec
from d1sync.outbox.changes import Change, acknowledge, requeue
from d1sync.outbox.dead import dead_letter
from d1sync.outbox.metrics import Counters
from d1sync.outbox.planner import Limits, PlannedRequest, plan
from d1sync.outbox.results import SyncResult
from d1sync.sqlite import Connection

__all__ = ["deliver"]

log = logging.getLogger("d1sync.sync")

_WAITING_CONSTRAINTS = frozenset({"FOREIGN KEY", "UNIQUE", "PRIMARY KEY"})
_UNIQUE_CONSTRAINTS = frozenset({"UNIQUE", "PRIMARY KEY"})
_REPLACE_HINT = (
    " (another remote row holds this value; if the application writes with INSERT OR REPLACE, the rows REPLACE"
    " removed locally were not captured: set PRAGMA recursive_triggers = ON on its connection)"
)


class Worker(Protocol):
    """What delivery needs of a :class:`~d1sync.outbox.worker.SyncWorker`."""

    conn: Connection
    target: Database
    owner: str
    limits: Limits
    lease_ttl: float
    counters: Counters
    clock: Callable[[], float]
    on_progress: Callable[[SyncResult], None] | None

    def acquire_lease(self, now: float, *, renew: bool = False, extra: float = 0.0) -> bool: ...

    def send(self, request: PlannedRequest) -> None: ...

    def record_failure(self, exc: D1SyncError, now: float, *, pause: bool) -> SyncResult: ...


def deliver(
    worker: Worker,
    requests: list[PlannedRequest],
    specs: dict[str, TableSpec],
    result: SyncResult,
    *,
    window_full: bool,
    progressed: bool = False,
) -> SyncResult | None:
    """Deliver a pass's requests; None when everything went (or was dead-lettered), else the pass's outcome.

    ``progressed`` says the pass already moved something before delivery (keys acknowledged as superseded).
    """
    held_back: list[PlannedRequest] = []
    if window_full and len(requests) > 1:
        # A full window's last request is usually short: its rows stay pending and the next window, read
        # right away, fills a request with them. Under a rate limit, full requests are throughput.
        requests, held_back = requests[:-1], requests[-1:]
    sender = _Sender(worker, specs, result)
    deferred: list[Change] = []
    outcome = sender.run(requests, window_full=window_full, deferred=deferred)
    if outcome is None and deferred and held_back:
        # What a deferred row waits for may be in the held-back tail: send it, or the window could stall.
        outcome = sender.run(held_back, window_full=True, deferred=deferred)
    if outcome is None and deferred and not (result.rows or result.dead or progressed):
        # Nothing moved, so the next pass would read this very window again: stop waiting for what lies
        # beyond it. The deferred rows get their one retry now, then they are dead letters.
        outcome = sender.run(plan(deferred, specs, worker.limits).requests, window_full=False, deferred=[])
    return outcome


class _Sender:
    def __init__(self, worker: Worker, specs: dict[str, TableSpec], result: SyncResult) -> None:
        self.worker = worker
        self.specs = specs
        self.result = result

    def _allowance(self) -> float:
        """Seconds a send may spend waiting for the client's rate limiter, added to the lease before it."""
        limiter = getattr(self.worker.target, "rate_limiter", None)  # a D1Client's; other targets have none
        return 2 * limiter.wait_time() if limiter is not None else 0.0  # a shared limiter serves others first

    def run(self, requests: list[PlannedRequest], *, window_full: bool, deferred: list[Change]) -> SyncResult | None:
        """Send ``requests`` in order, bisecting row-level refusals (see the module docstring)."""
        worker, result = self.worker, self.result
        queue: deque[list[PlannedRequest]] = deque([requests])
        retry_later: list[Change] = []
        retried = False
        while queue or (retry_later and not retried):
            if not queue:
                retried = True
                queue.append(plan(retry_later, self.specs, worker.limits).requests)
            batch = queue.popleft()
            for i, request in enumerate(batch):
                if not worker.acquire_lease(worker.clock(), renew=True, extra=self._allowance()):
                    return _locked(worker)
                try:
                    worker.send(request)
                except SQLError as exc:
                    if not exc.row_level:
                        # Not about a row (e.g. a column vanished remotely): bisecting would dead-letter all.
                        return worker.record_failure(exc, worker.clock(), pause=True)
                    if batch[i + 1 :]:
                        queue.appendleft(batch[i + 1 :])
                    self._refused(exc, request.changes, queue, window_full, deferred, retry_later, retried)
                    break
                except TransientError as exc:
                    return self._failed(exc, request, pause=False)
                except D1Error as exc:  # auth, a missing database, anything not about a row: pause loudly
                    return self._failed(exc, request, pause=True)
                if acknowledge(worker.conn, request.changes, owner=worker.owner) is None:
                    return self._lost_lease(request)
                result.rows += request.rows
                result.requests += 1
                worker.counters.rows += request.rows
                worker.counters.requests += 1
                if worker.on_progress is not None:
                    worker.on_progress(result)
        return None

    def _refused(
        self,
        exc: SQLError,
        rows: list[Change],
        queue: deque[list[PlannedRequest]],
        window_full: bool,
        deferred: list[Change],
        retry_later: list[Change],
        retried: bool,
    ) -> None:
        waits = exc.constraint in _WAITING_CONSTRAINTS
        if len(rows) == 1 and waits and window_full:
            # What it waits for may be in a later window: leave it pending. Once the whole backlog fits in one
            # window, the failure is final and dead-letters the row.
            log.info("deferred %s key %s: %s", rows[0].table, rows[0].key, exc.message)
            deferred.append(rows[0])
        elif len(rows) == 1 and waits and not retried:
            retry_later.append(rows[0])
        elif len(rows) == 1:
            reason = exc.message + (_REPLACE_HINT if exc.constraint in _UNIQUE_CONSTRAINTS else "")
            self.result.dead += dead_letter(self.worker.conn, [(rows[0], reason)])
            log.error("dead-lettered %s key %s: %s", rows[0].table, rows[0].key, reason)
        else:
            half = len(rows) // 2
            queue.appendleft(plan(rows[half:], self.specs, self.worker.limits).requests)
            queue.appendleft(plan(rows[:half], self.specs, self.worker.limits).requests)

    def _failed(self, exc: D1Error, request: PlannedRequest, *, pause: bool) -> SyncResult:
        """A send failed with no verdict on its rows: D1 may still have applied it (a lost response)."""
        if not lease.holds_lease(self.worker.conn, self.worker.owner):
            return self._lost_lease(request)
        return self.worker.record_failure(exc, self.worker.clock(), pause=pause)

    def _lost_lease(self, request: PlannedRequest) -> SyncResult:
        """A send landed after another worker took the lease: it may have overwritten newer states.

        Tracked rows are queued again, so the current holder sends their current state once more. Rows given
        to ``enqueue()`` carry their own state: if the other worker already sent a newer one, it is gone from
        the log and cannot be restored here (a ``version_column`` makes D1 itself keep the newer one).
        """
        tracked = [c for c in request.changes if self.specs[c.table].mode == "track"]
        requeue(self.worker.conn, tracked)
        log.warning(
            "the drain lease passed to another worker during a send of %d row(s); %d tracked row(s) queued again",
            request.rows,
            len(tracked),
        )
        return _locked(self.worker)


def _locked(worker: Worker) -> SyncResult:
    return SyncResult("locked", retry_in=worker.lease_ttl / 3)
