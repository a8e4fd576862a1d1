"""The sync worker: ``sync_once()`` drains what is pending; ``run()`` is a thin loop around it.

One pass (``sync_once``):

1. honour a persisted back-off or pause; take the single-drainer lease (two workers never both send);
2. check the remote schema once (every synced table and column must exist there);
3. read a window of pending changes, coalesced per key, with the rows' current state (one snapshot);
4. plan ``json_each`` bulk statements and pack them into requests;
5. send each request as one atomic batch; on success delete exactly the change rows it covered. While a full
   window's last request is in flight, the next window is read and planned (leaving out the change rows in
   flight), and the pass goes on with it once that request is acknowledged: requests still go one at a time
   and in order, but the client's work overlaps the round trip;
6. transient failure: nothing is acknowledged; back off (capped exponential, jittered, persisted;
   ``retry-after`` wins); a permanent row-level failure: bisect so only the offending rows are dead-lettered;
   auth, missing database or a schema mismatch: pause loudly, drop nothing, try again later.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from d1sync.database import Database
from d1sync.errors import D1Error, D1SyncError, RateLimitedError, TransientError
from d1sync.outbox import lease
from d1sync.outbox.ahead import READ_AHEAD_SECONDS, Aside, deliver_window
from d1sync.outbox.changes import read_window
from d1sync.outbox.config import SyncConfig, merge_deprecated
from d1sync.outbox.loop import WorkerLoop
from d1sync.outbox.metrics import Counters
from d1sync.outbox.planner import DEFER_FOREIGN_KEYS, PlannedRequest, plan
from d1sync.outbox.preflight import preflight
from d1sync.outbox.pull import Puller, merge_pull, replicated_specs
from d1sync.outbox.replicate import CLEAR_ORIGIN, SET_ORIGIN
from d1sync.outbox.results import State, SyncResult
from d1sync.outbox.status import Status, read_status
from d1sync.outbox.store.log import pending_count, stamp
from d1sync.outbox.store.replica import clear_pull_pause, push_origin
from d1sync.outbox.store.schema import (
    LastError,
    LastPass,
    RateBudget,
    WorkerState,
    load_specs,
    load_state,
    load_table_states,
    save_state,
)
from d1sync.outbox.store.upgrade import ensure_schema
from d1sync.outbox.tables import resume_all
from d1sync.outbox.verify import DEFAULT_PAGE, VerifyReport, verify
from d1sync.sqlite import Connection

__all__ = ["State", "SyncResult", "SyncWorker"]

log = logging.getLogger("d1sync.sync")

T = TypeVar("T")


class SyncWorker(WorkerLoop):
    """Carries the outbox of one SQLite file to a target Database (D1, the emulator, or another file).

    Args:
        path: the application's SQLite file (tables tracked with :class:`~d1sync.Outbox`).
        target: where rows go; usually a :class:`~d1sync.D1Client`.
        config: sizes, timings and directions (:class:`~d1sync.outbox.config.SyncConfig`; default: its
            defaults). The keywords that used to be the worker's own (``window=``, ``limits=``, ...) still
            work, with a DeprecationWarning naming the SyncConfig field.
        clock: returns epoch seconds; injectable for tests.
        monotonic: a monotonic clock for in-process durations (how long a lease has gone unrenewed).
        on_progress: called with the result of every request-level step (for progress bars).

    Close it (or use ``with``) when done: it holds a connection to the file.

    Example::

        with SyncWorker("app.db", D1Client(), SyncConfig(window=5_000)) as worker:
            worker.sync_once()          # one pass; or worker.run() as a daemon
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        target: Database,
        config: SyncConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_progress: Callable[[SyncResult], None] | None = None,
        **deprecated: Any,
    ) -> None:
        config = merge_deprecated(config, deprecated, owner="SyncWorker")
        self.config = config
        self.path = Path(path)
        self.target = target
        self.limits = config.limits
        self.window = config.window
        self.backoff = config.backoff
        self.pause_interval = config.pause_interval
        self.lease_ttl = config.lease_ttl
        self.clock = clock
        self.check_schema = config.check_schema
        self.poll_interval = config.poll_interval
        self.min_interval = config.min_interval
        self.on_progress = on_progress
        self.owner = lease.new_owner()
        self._target_id = repr(target)
        self.counters = Counters()
        self.rng = random.Random(config.seed)
        self.conn = Connection(self.path, notify=False)  # its own commits must not wake its loop
        try:
            ensure_schema(self.conn)
        except BaseException:
            self.conn.close()
            raise
        self._seen_schema = -1
        self._watch = lease.LeaseWatch(config.lease_ttl + lease.MAX_ALLOWANCE + 1.0, monotonic)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._flush_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self.owned: list[Callable[[], None]] = []
        """Closed with the worker: what it opened itself (the client made by ``from_env``)."""
        self._crash: BaseException | None = None
        self._failing_since: float | None = None
        self._seen_version = -1
        self.push = config.push
        self.pull = config.pull
        self.puller = Puller(self, config.pull_options)
        self.read_ahead = config.read_ahead
        self._aside = Aside()

    def __repr__(self) -> str:
        return f"SyncWorker({os.fspath(self.path)!r}, target={self.target!r})"

    # -- persisted state ---------------------------------------------------------------------------------

    def write_state(self, **values: Any) -> bool:
        """Write shared worker state, only while this worker holds the lease (False, nothing written, if not):
        a worker that lost it must not make the new holder back off or pause."""
        with self.conn.atomic():
            if not lease.holds_lease(self.conn, self.owner):
                return False
            save_state(self.conn, **values)
        return True

    def acquire_lease(self, now: float, *, renew: bool = False, extra: float = 0.0) -> bool:
        """Take (or renew) the drain lease until ``now + lease_ttl + extra``; False if another worker has it."""
        return lease.acquire(self.conn, self.owner, now, self.lease_ttl + extra, renew=renew, watch=self._watch)

    def release_lease(self) -> None:
        """Give up the drain lease now (another worker may take it at once)."""
        lease.release(self.conn, self.owner)

    def _waiting(self, state: WorkerState, now: float) -> SyncResult | None:
        """The persisted back-off or pause that holds this pass, if any.

        A persisted deadline further ahead than its longest possible length was written by a clock that has
        since jumped back: it is ignored, so a clock jump delays sync by at most one back-off cap.
        """
        remaining = state.backoff_until - now
        longest = self.pause_interval if state.paused else self.backoff.cap
        if remaining <= 0 or remaining > longest + 1.0:
            return None
        kind: State = "paused" if state.paused else "backoff"
        return SyncResult(kind, retry_in=remaining, error=state.paused)

    def _switch_target(self, state: WorkerState) -> WorkerState:
        """A pause, a back-off and the remote checks belong to the target that caused them: another one
        starts afresh."""
        with self.conn.atomic():
            if state.target is not None:
                log.info(
                    "the target is now %s (was %s): pauses and remote checks start afresh",
                    self._target_id,
                    state.target,
                )
                resume_all(self.conn)
            save_state(self.conn, target=self._target_id)
        return load_state(self.conn)

    def resume(self) -> None:
        """Try everything again now: clear the back-off, the pause and every table's pause.

        What a person running ``d1sync sync`` or ``d1sync resume`` wants after fixing a cause: not to wait for
        the next re-check. A cause that is still there pauses again at once, with its message.
        """
        resume_all(self.conn)
        self._seen_schema = -1
        self.resume_pull()
        self.wake()

    def record_failure(self, exc: D1SyncError, now: float, *, pause: bool, progressed: bool = False) -> SyncResult:
        """Persist a failed pass (back-off or pause, last error) and say when to try again.

        ``progressed``: the pass delivered requests before it failed. An acknowledged request resets the
        back-off, so this failure counts as the first.
        """
        failures = 1 if progressed else load_state(self.conn).failures + 1
        if pause:
            delay = self.pause_interval
        elif isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            delay = exc.retry_after  # the server knows best: retry-after wins over our own schedule
        else:
            delay = self.backoff.delay(failures, self.rng)
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
            return SyncResult("locked", retry_in=self.lease_ttl / 3, error=text)
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

    def _record_success(self, now: float, result: SyncResult, seconds: float) -> None:
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
        limiter = getattr(self.target, "rate_limiter", None)
        if limiter is not None:
            # `d1sync status` runs in another process: leave it the budget this worker's client sees.
            values["rate_budget"] = RateBudget(limiter.available(), limiter.rate, limiter.per)
        self.write_state(**values)

    # -- one pass ----------------------------------------------------------------------------------------

    @property
    def pulling(self) -> bool:
        """Whether passes pull too (``pull=True``, or ``None`` and some table is two-way)."""
        return self.pull if self.pull is not None else bool(replicated_specs(self.conn))

    def sync_once(self, now: float | None = None) -> SyncResult:
        """Send what is pending (one window), then pull when a pull is due (two-way tables), unless backing off
        or another worker holds the lease."""
        now = self.clock() if now is None else now
        if self.push:
            # Even while backing off: the oldest pending age is how long a change has waited, to within a pass.
            stamp(self.conn, int(now * 1000))
            result = self._push_once(now)
        else:
            result = self._waiting(load_state(self.conn), now) or SyncResult("idle")
        if not self.pulling:
            return result
        if result.state in ("idle", "synced") and self.puller.due_in() <= 0:
            result = merge_pull(result, self.puller.pull(now))
        result.next_pull = self.puller.due_in() or self.puller.options.interval
        return result

    def pull_once(self, now: float | None = None) -> SyncResult:
        """Pull now, whether or not a pull is due (what ``d1sync sync`` runs once the push is drained)."""
        now = self.clock() if now is None else now
        waiting = self._waiting(load_state(self.conn), now)
        return waiting or merge_pull(SyncResult("idle"), self.puller.pull(now))

    def resume_pull(self) -> None:
        """Pull at the next pass even if pulls wait for a fix (the remote capture was missing)."""
        with self.conn.atomic():
            clear_pull_pause(self.conn)
        self.puller.last = None

    def _push_once(self, now: float) -> SyncResult:
        started = time.monotonic()
        state = load_state(self.conn)
        if state.target != self._target_id:
            state = self._switch_target(state)
        waiting = self._waiting(state, now)
        if waiting is not None:
            return waiting
        if not self.acquire_lease(now):
            return SyncResult("locked", retry_in=self.lease_ttl / 3)
        # Taken before the window is read: a commit after this point must wake the loop (see _wait).
        self._seen_version = self.conn.data_version()
        try:
            ready = preflight(
                self.conn,
                self.target,
                now=now,
                seen_schema=self._seen_schema,
                check_schema=self.check_schema,
                pause_interval=self.pause_interval,
                chunk=max(1, self.window // 2),  # room for new writes in the same window
            )
        except TransientError as exc:
            return self.record_failure(exc, now, pause=False)
        except D1Error as exc:  # auth, a missing database: not about one table, so the worker pauses
            return self.record_failure(exc, now, pause=True)
        self._seen_schema = ready.schema_version
        result = SyncResult("idle", paused_tables=ready.paused)
        if ready.retry_soon:
            result.retry_in = self.backoff.base
        window = read_window(self.conn, self.window, skip=ready.waiting)
        planned = plan(window.changes, window.specs, self.limits)
        while True:
            result.more = window.full or ready.resending
            ahead = self.read_ahead and window.full and time.monotonic() - started < READ_AHEAD_SECONDS
            reading = ready if ahead else None
            outcome, next_window = deliver_window(self, window, planned, result, size=self.window, ready=reading)
            if outcome is not None or next_window is None:
                break
            window, planned = next_window
        self.counters.dead += result.dead
        result.paused_tables = self.paused_tables()
        if outcome is not None:
            outcome.rows, outcome.requests, outcome.dead = result.rows, result.requests, result.dead
            outcome.paused_tables = result.paused_tables
            return outcome
        if result.requests:
            self._record_success(self.clock(), result, time.monotonic() - started)
        return result

    def send(self, request: PlannedRequest, *, meanwhile: Callable[[], T] | None = None) -> T | None:
        """Send one planned request as one atomic batch (foreign keys checked at its commit).

        A replica's batch sets the remote origin to its id first and clears it last, so the remote log knows
        these writes as its own (see :mod:`~d1sync.outbox.replicate`).

        With ``meanwhile``, the batch goes from a helper thread while ``meanwhile()`` runs on this one, and its
        result is returned once the batch is answered. The send's error, if any, is raised; an error of
        ``meanwhile`` only costs its result (None), since what it prepares is read again next pass.
        """
        db = self.target
        origin = push_origin(self.conn)
        statements = [db.prepare(DEFER_FOREIGN_KEYS)]
        statements += [db.prepare(SET_ORIGIN).bind(origin)] if origin else []
        statements += [db.prepare(s.sql).bind(s.param) for s in request.statements]
        statements += [db.prepare(CLEAR_ORIGIN)] if origin else []
        if meanwhile is None:
            db.batch(statements)
            return None
        return self._aside.run(lambda: db.batch(statements), meanwhile)

    def pending(self, *, flowing: bool = False) -> int:
        """Change rows not yet acknowledged (safe to call from another thread while the loop runs).

        ``flowing=True`` leaves out the changes of paused tables, which wait for their fix.
        """
        return pending_count(self.conn, skip=self.paused_tables() if flowing else ())

    def verify(
        self,
        tables: Iterable[str] | None = None,
        *,
        repair: bool = False,
        delete_extra: bool = False,
        page: int = DEFAULT_PAGE,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> VerifyReport:
        """Compare the local tables with the target exactly (see :mod:`d1sync.outbox.verify`).

        ``repair`` queues the local state of every missing or different row; ``delete_extra`` also queues
        the rows only the remote has, which are then deleted there. Both go through the outbox: run a pass
        (or the loop) to send them.

        Example::

            report = worker.verify()
            if not report.equal:
                worker.verify(repair=True)
                drain(worker)
        """
        report = verify(
            self.conn,
            self.target,
            load_specs(self.conn),
            tables,
            page=page,
            repair=repair,
            delete_extra=delete_extra,
            on_progress=on_progress,
        )
        if repair:
            self.wake()
        return report

    def paused_tables(self) -> dict[str, str]:
        """The tables paused on their own, and why (see ``d1sync status``)."""
        specs = load_specs(self.conn)
        states = load_table_states(self.conn)
        return {name: state.paused for name, state in states.items() if state.paused and name in specs}

    def status(self) -> Status:
        """The outbox's status (see :class:`~d1sync.outbox.status.Status`)."""
        return read_status(self.conn)

    def close(self) -> None:
        """Release the lease (if held) and close the worker's connection to the file (and the target, when
        the worker made it: :func:`~d1sync.outbox.embed.from_env`)."""
        if self.conn.closed:
            return
        try:
            self._aside.close()
            self.release_lease()
        finally:
            self.conn.close()
            for close in self.owned:
                close()
