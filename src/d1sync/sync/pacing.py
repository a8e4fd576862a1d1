"""Pacing: when an engine's next pass may run, kept in the file so a restart honours it.

A failed pass is recorded (a back-off, capped exponential and jittered, or a pause; ``retry-after`` wins;
the last error), a pass that delivered clears it, and :meth:`Pacer.waiting` says whether a persisted
back-off or pause holds the next pass. Only the lease holder writes: a worker that lost the lease must not
make the new holder back off or pause.

The back-off never waits more than a quarter of the time the failing has lasted (since the last pass that
delivered, or this run's first failure, the later; :data:`FLAKY_SHARE`): a target that answered a moment ago
is flaky, not down, and each attempt there is a fresh chance. With 80 % of requests failing at random, the
exponential alone reaches its cap after a streak of seven failures (one streak in five) and spends most of a
drain waiting: in simulation, four successes took 217 s on average (762 s at p95); with the quarter, 50 s
(183 s). In an outage the waits still grow to the cap, only later: about twice the attempts over ten minutes
(39 instead of 20).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from d1sync.database import Database
from d1sync.errors import D1Error, RateLimitedError
from d1sync.sqlite import Connection
from d1sync.sync.config import SyncConfig
from d1sync.sync.model import Counters, Failure, State, SyncResult
from d1sync.sync.store.lease import DrainLease
from d1sync.sync.store.state import LastError, LastPass, RateBudget, WorkerState, load_state, save_state

__all__ = ["FLAKY_SHARE", "Pacer"]

log = logging.getLogger("d1sync.sync")

FLAKY_SHARE = 0.25
"""The longest back-off, as a share of the time since the last pass that delivered (see the module docstring)."""


class Pacer:
    """Records how passes end and says when the next may run (see the module docstring).

    Example::

        pacer = Pacer(conn, lease, config, counters)
        held = pacer.waiting(load_state(conn), now)     # a SyncResult while backing off or paused
        result = pacer.failed(Failure(exc, now, pause=False))   # "backoff", retry_in=...
    """

    def __init__(self, conn: Connection, lease: DrainLease, config: SyncConfig, counters: Counters) -> None:
        self.conn = conn
        self.lease = lease
        self.config = config
        self.counters = counters
        self.rng = random.Random(config.seed)
        self._failing_since: float | None = None

    def write_state(self, **values: Any) -> bool:
        """Write shared worker state, only while this worker holds the lease (False, nothing written, if not):
        a worker that lost it must not make the new holder back off or pause."""
        with self.conn.atomic():
            if not self.lease.held():
                return False
            save_state(self.conn, **values)
        return True

    def waiting(self, state: WorkerState, now: float) -> SyncResult | None:
        """The persisted back-off or pause that holds this pass, if any.

        A persisted deadline further ahead than its longest possible length was written by a clock that has
        since jumped back: it is ignored, so a clock jump delays sync by at most one back-off cap.
        """
        remaining = state.backoff_until - now
        longest = self.config.pause_interval if state.paused else self.config.backoff.cap
        if remaining <= 0 or remaining > longest + 1.0:
            return None
        kind: State = "paused" if state.paused else "backoff"
        return SyncResult(kind, retry_in=remaining, error=state.paused)

    def failed(self, failure: Failure) -> SyncResult:
        """Persist a failed pass (back-off or pause, last error) and say when to try again.

        A failure that ``progressed`` (the pass delivered requests first) counts as the first: an
        acknowledged request resets the back-off.
        """
        exc, now, pause = failure.error, failure.at, failure.pause
        state = load_state(self.conn)
        failures = 1 if failure.progressed else state.failures + 1
        if pause:
            delay = self.config.pause_interval
        elif isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            delay = exc.retry_after  # the server knows best: retry-after wins over our own schedule
        else:
            backoff = self.config.backoff
            ceiling = backoff.ceiling(failures)
            # The failing began at the last pass that delivered or at this run's first failure, the later.
            known = [t for t in (state.last_success, self._failing_since) if t is not None]
            healthy_at = max(known) if known else None
            if healthy_at is not None and now >= healthy_at:
                ceiling = min(ceiling, max(backoff.base, FLAKY_SHARE * (now - healthy_at)))
            delay = ceiling * backoff.jitter(self.rng)
        # The batch's first statement is the foreign-key prelude, never the culprit: leave SQL out.
        text = exc.describe(statement=False) if isinstance(exc, D1Error) else str(exc)
        error = LastError(
            at=now,
            message=text,
            kind=type(exc).__name__,
            code=getattr(exc, "code", None),
            status=getattr(exc, "status", None),
        )
        if not self.write_state(
            failures=failures, backoff_until=now + delay, last_error=error, paused=text if pause else None
        ):
            return SyncResult("locked", retry_in=self.config.lease_ttl / 3, error=text)
        self.counters.retries += 0 if pause else 1
        if self._failing_since is None:
            self._failing_since = now
        # Log the first failure and then at most one line per back-off step, never a storm.
        log.log(
            logging.ERROR if pause else logging.WARNING,
            "sync %s: %s (failure %d, next attempt in %.1fs)",
            "paused" if pause else "failed",
            text,
            failures,
            delay,
        )
        return SyncResult("paused" if pause else "backoff", retry_in=delay, error=text)

    def succeeded(self, now: float, result: SyncResult, seconds: float, target: Database) -> None:
        """Record a pass that delivered ``result`` in ``seconds``: back-off and pause cleared, "recovered"
        logged once after failures."""
        state = load_state(self.conn)
        if state.failures or state.paused:
            since = self._failing_since
            log.info("sync recovered%s", f" after {now - since:.1f}s" if since else "")
        self._failing_since = None
        values: dict[str, Any] = {
            "failures": 0,
            "backoff_until": 0,
            "paused": None,
            "last_success": now,
            "last_pass": LastPass(rows=result.rows, requests=result.requests, seconds=round(seconds, 3)),
        }
        limiter = getattr(target, "rate_limiter", None)
        if limiter is not None:
            # `d1sync status` runs in another process: leave it the budget this worker's client sees.
            values["rate_budget"] = RateBudget(limiter.available(), limiter.rate, limiter.per)
        self.write_state(**values)
