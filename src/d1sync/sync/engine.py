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

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

from d1sync.database import Database
from d1sync.errors import D1Error
from d1sync.sqlite import Connection
from d1sync.sync.compare.verify import VerifyReport, verify
from d1sync.sync.config import DEFAULT_PAGE, SyncConfig, merge_deprecated
from d1sync.sync.link import Aside, Link
from d1sync.sync.model import Counters, Failure, State, SyncResult
from d1sync.sync.pacing import Pacer
from d1sync.sync.pull.puller import Puller, PullReport, merge_pull, replicated_specs
from d1sync.sync.push.pusher import Pusher
from d1sync.sync.push.refusals import Refusal, Verdict, decide
from d1sync.sync.push.request import rewound
from d1sync.sync.remote import read_position
from d1sync.sync.run.loop import DEFAULT_FLUSH_TIMEOUT, Loop, make_warnings_visible
from d1sync.sync.status import Status, read_status
from d1sync.sync.store.lease import DrainLease, new_owner
from d1sync.sync.store.log import has_pending, pending_count, stamp
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import WorkerState, catch_up, load_state, load_table_states, save_state
from d1sync.sync.store.twoway import clear_pull_pause
from d1sync.sync.store.upgrade import ensure_schema
from d1sync.sync.tables.pauses import resume_all
from d1sync.sync.tables.preflight import assume_remote_matches

__all__ = ["State", "SyncResult", "SyncWorker"]

log = logging.getLogger("d1sync.sync")


class SyncWorker:
    """Carries the outbox of one SQLite file to a target Database (D1, the emulator, or another file).

    Args:
        path: the application's SQLite file (tables tracked with :class:`~d1sync.Outbox`).
        target: where rows go; usually a :class:`~d1sync.D1Client`.
        config: sizes, timings and directions (:class:`~d1sync.sync.config.SyncConfig`; default: its
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
        self.owner = new_owner()
        self._target_id = repr(target)
        self.counters = Counters()
        self.conn = Connection(self.path, notify=False)  # its own commits must not wake its loop
        try:
            ensure_schema(self.conn)
        except BaseException:
            self.conn.close()
            raise
        self._position_checked = False
        self.position_check_waits_for_changes = False
        """Check that the file is not behind D1 only once it has changes to send, not on the first pass. A
        fleet of quiet tenants would spend a request each on it; every batch carries the fence anyway, so a
        send from such a file is still refused."""
        self.lease = DrainLease(self.conn, self.owner, config.lease_ttl, monotonic)
        self.pacer = Pacer(self.conn, self.lease, config, self.counters)
        self.loop = Loop(self.path, self.conn, config, step=self.sync_once, release=self.lease.release)
        self.owned: list[Callable[[], None]] = []
        """Closed with the worker: what it opened itself (the client made by ``from_env``)."""
        self.push = config.push
        self.pull = config.pull
        self.puller = Puller(config.pull_options)
        self.pusher = Pusher(config)
        self.read_ahead = config.read_ahead
        self._aside = Aside(config.pool)

    def _link(self) -> Link:
        """What this pass's parts are given (built afresh: ``target`` and ``clock`` may be replaced)."""
        return Link(self.conn, self.target, self.lease, self.clock, self.counters, self._aside)

    def __repr__(self) -> str:
        return f"SyncWorker({os.fspath(self.path)!r}, target={self.target!r})"

    # -- persisted state ---------------------------------------------------------------------------------

    def acquire_lease(self, now: float, *, renew: bool = False, extra: float = 0.0) -> bool:
        """Take (or renew) the drain lease until ``now + lease_ttl + extra``; False if another worker has it."""
        return self.lease.acquire(now, renew=renew, extra=extra)

    def release_lease(self) -> None:
        """Give up the drain lease now (another worker may take it at once)."""
        self.lease.release()

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

    def _remote_position(self) -> int | None:
        """The number of the newest send D1 took from this file, or None (no send yet, or no fence there)."""
        identity = load_state(self.conn).identity
        return None if identity is None else read_position(self.target, identity)

    def _reopen(self) -> None:
        """Another file was put in the file's place while the worker ran (a restore, a copy moved over it):
        sync that one from now on, checked afresh (its schema, and whether it is behind what D1 took)."""
        log.warning("%s was replaced by another file while the worker ran: reopening it", self.path)
        self.conn.reopen()
        ensure_schema(self.conn)
        self.pusher.recheck()
        self._position_checked = False
        self.loop.seen_version = -1  # whatever the new file holds is news

    def _check_position(self) -> None:
        """Once per worker (and after a pause): is this file behind what D1 already took from it? A file
        restored from a backup is, and sending from it would mix two pasts: raise FileRewoundError."""
        sent = load_state(self.conn).sent
        position = self._remote_position() if sent else None
        if position is not None and position > sent:
            raise rewound(self.path, sent + 1)
        self._position_checked = True

    def resume(self) -> None:
        """Try everything again now: clear the back-off, the pause and every table's pause.

        What a person running ``d1sync sync`` or ``d1sync resume`` wants after fixing a cause: not to wait for
        the next re-check. A cause that is still there pauses again at once, with its message.
        """
        resume_all(self.conn)
        self.pusher.recheck()
        self.resume_pull()
        self.wake()

    def _recorded(self, outcome: SyncResult | Failure) -> SyncResult:
        """A part's outcome, with a failure recorded (a back-off or a pause)."""
        return self.pacer.failed(outcome) if isinstance(outcome, Failure) else outcome

    def _pulled(self, now: float) -> PullReport | SyncResult:
        outcome = self.puller.pull(self._link(), self.path, pause_interval=self.pause_interval, now=now)
        return outcome if isinstance(outcome, PullReport) else self._recorded(outcome)

    # -- one pass ----------------------------------------------------------------------------------------

    @property
    def pulling(self) -> bool:
        """Whether passes pull too (``pull=True``, or ``None`` and some table is two-way)."""
        return self.pull if self.pull is not None else bool(replicated_specs(self.conn))

    def sync_once(self, now: float | None = None) -> SyncResult:
        """Send what is pending (one window), then pull when a pull is due (two-way tables), unless backing off
        or another worker holds the lease."""
        now = self.clock() if now is None else now
        if self.conn.replaced():
            self._reopen()
        if self.push:
            # Even while backing off: the oldest pending age is how long a change has waited, to within a pass.
            stamp(self.conn, int(now * 1000))
            result = self._push_once(now)
        else:
            result = self.pacer.waiting(load_state(self.conn), now) or SyncResult("idle")
        if not self.pulling:
            return result
        if result.state in ("idle", "synced") and self.puller.due_in() <= 0:
            result = merge_pull(result, self._pulled(now))
        result.next_pull = self.puller.due_in() or self.puller.options.interval
        return result

    def pull_once(self, now: float | None = None) -> SyncResult:
        """Pull now, whether or not a pull is due (what ``d1sync sync`` runs once the push is drained)."""
        now = self.clock() if now is None else now
        waiting = self.pacer.waiting(load_state(self.conn), now)
        return waiting or merge_pull(SyncResult("idle"), self._pulled(now))

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
        waiting = self.pacer.waiting(state, now)
        if waiting is not None:
            return waiting
        if not self.acquire_lease(now):
            return SyncResult("locked", retry_in=self.lease_ttl / 3)
        # Taken before the window is read: a commit after this point must wake the loop.
        self.loop.seen_version = self.conn.data_version()
        if not self._position_checked and (not self.position_check_waits_for_changes or has_pending(self.conn)):
            try:
                self._check_position()
            except D1Error as exc:  # transient: back off; a file behind D1 (or auth): pause
                return self.pacer.failed(Failure(exc, now, pause=decide(Refusal(exc)) is not Verdict.BACK_OFF))
        result, delivered = self.pusher.push(self._link(), now, started=started, on_progress=self.on_progress)
        outcome = None if delivered is None else self._recorded(delivered)
        if result is None:  # the tables could not be checked: nothing was read
            assert outcome is not None
            return outcome
        self.counters.dead += result.dead
        result.paused_tables = self.paused_tables()
        if outcome is not None:
            outcome.rows, outcome.requests, outcome.dead = result.rows, result.requests, result.dead
            outcome.paused_tables = result.paused_tables
            return outcome
        if result.requests:
            self.pacer.succeeded(self.clock(), result, time.monotonic() - started, self.target)
        return result

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
        """Compare the local tables with the target exactly (see :mod:`d1sync.sync.compare.verify`).

        ``repair`` queues the local state of every missing or different row; ``delete_extra`` also queues
        the rows only the remote has, which are then deleted there. Both go through the outbox: run a pass
        (or the loop) to send them.

        Example::

            report = worker.verify()
            if not report.equal:
                worker.verify(repair=True)
                drain(worker)
        """
        if repair and delete_extra:
            self._take_over()
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

    def _take_over(self) -> None:
        """This file is the truth from now on (``verify --repair --delete-extra``): its sends continue after the
        newest D1 took, and a pause for having gone back in time is lifted (the repair makes D1 equal to it)."""
        position = self._remote_position()
        if position is not None:
            catch_up(self.conn, position)
        state = load_state(self.conn)
        if state.paused is not None and state.last_error is not None and state.last_error.kind == "FileRewoundError":
            with self.conn.atomic():
                save_state(self.conn, paused=None, failures=0, backoff_until=0.0)
        self._position_checked = False

    def created_remote_tables(self) -> None:
        """The target's tables were just made from this file's DDL (a fleet's new database): the first pass
        sends rows at once, without checking the remote schema (one request less per new database)."""
        with self.conn.atomic():
            assume_remote_matches(self.conn)

    def paused_tables(self) -> dict[str, str]:
        """The tables paused on their own, and why (see ``d1sync status``)."""
        specs = load_specs(self.conn)
        states = load_table_states(self.conn)
        return {name: state.paused for name, state in states.items() if state.paused and name in specs}

    def status(self) -> Status:
        """The outbox's status (see :class:`~d1sync.sync.status.Status`), with a local failure the file could
        not record (a full disk) from memory."""
        status = read_status(self.conn)
        error = self.loop.local_error
        recorded = (status.last_error or {}).get("at")
        if error is not None and (recorded is None or recorded < error.at):
            status = dataclasses.replace(status, last_error=dataclasses.asdict(error))
        return status

    def close(self) -> None:
        """Release the lease (if held) and close the worker's connection to the file (and the target, when
        the worker made it: :func:`~d1sync.sync.run.embed.from_env`)."""
        if self.conn.closed:
            return
        try:
            self._aside.close()
            self.lease.release()
        finally:
            self.conn.close()
            for close in self.owned:
                close()

    # -- the loop (:class:`~d1sync.sync.run.loop.Loop`) --------------------------------------------------------

    def wake(self) -> None:
        """Ask a running loop to look for changes now."""
        self.loop.wake()

    def run(self, *, idle_interval: float = 5.0) -> None:
        """Sync until :meth:`stop` is called. New writes wake it at once; failures back off on a timer."""
        self.loop.run(idle_interval=idle_interval)

    def safe_sync_once(self) -> SyncResult:
        """:meth:`sync_once`, but a local error or a bug becomes a back-off instead of an exception."""
        return self.loop.safe_step()

    def step(self, now: float | None = None) -> SyncResult:
        """One pass for an outside scheduler that drives many engines (no thread of the engine's own):
        :meth:`sync_once`, with a local error or a bug turned into a back-off as the loop does. The result
        says when to call again: at once when ``more``, after ``retry_in`` seconds, or on the next write (and
        after ``next_pull`` for an engine that pulls).

        Example::

            pool = ThreadPoolExecutor(2)
            config = SyncConfig(pool=pool)
            engines = [SyncWorker(path, client, config) for path in paths]   # one client, one rate limiter
            while any(e.pending() for e in engines):
                for engine in engines:
                    engine.step()
        """
        return self.loop.safe_step(lambda: self.sync_once(now))

    @property
    def running(self) -> bool:
        """True while a loop started by :meth:`start` is running."""
        return self.loop.running

    def start(self, *, idle_interval: float = 5.0) -> Self:
        """Run the loop in a daemon thread and return at once (the worker itself, for ``with``).

        ``with worker.start():`` stops it (with a flush) when the block ends. A loop that crashed (a
        ``BaseException`` escaped it) leaves its error in :meth:`status` and may be started again.

        Raises:
            ConfigError: the loop is already running.
        """
        make_warnings_visible()  # embedded: a pause must reach a person even with no logging configured
        self.loop.start(idle_interval=idle_interval)
        return self

    def stop(self, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT, *, wait: bool = True) -> None:
        """Stop the loop after a last drain that may take up to ``flush_timeout`` seconds.

        With ``wait``, return once the loop has ended (and, for :meth:`start`'s thread, it is joined).
        """
        self.loop.stop(flush_timeout, wait=wait)

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every change committed before this call has left the outbox; False on timeout.

        A change leaves the outbox when D1 acknowledges it (or refuses it for good: it is then a dead
        letter, counted in ``status().dead_letters``). Whoever holds the drain lease sends: this worker's
        loop, another process's (``d1sync run``), or, when neither runs, this call itself.

        Raises:
            SyncPausedError: some of those changes wait for a pause that needs a fix (a table missing on D1,
                a bad token): it ends the wait at once with ``table``, ``reason`` and ``fix``.
        """
        return self.loop.wait_synced(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop a started loop (with a flush), then close the worker."""
        try:
            if self.running:
                self.stop()
        finally:
            self.close()

    # -- asyncio -------------------------------------------------------------------------------------------

    async def start_async(self, *, idle_interval: float = 5.0) -> Self:
        """:meth:`start` for asyncio programs (starting a thread does not block)."""
        return self.start(idle_interval=idle_interval)

    async def stop_async(self, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
        """:meth:`stop` without blocking the event loop: the last drain and the join run in a thread."""
        await asyncio.to_thread(self.stop, flush_timeout)

    async def wait_synced_async(self, timeout: float | None = None) -> bool:
        """:meth:`wait_synced` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_synced, timeout)

    async def __aenter__(self) -> Self:
        """``async with worker:`` starts the loop; leaving the block stops it with a flush and closes."""
        return await self.start_async()

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self.running:
                await self.stop_async()
        finally:
            await asyncio.to_thread(self.close)
