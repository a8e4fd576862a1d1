"""The fleet: the tenant files of one folder, each synced to its own D1 database, by one process.

:class:`Fleet` holds the tenants and nothing per tenant (STYLE rule 20): it sweeps the folder (new files are
picked up within ``sweep_interval``; a vanished one is closed and shown ``missing``, its database kept), asks
the :class:`~d1sync.fleet.scheduler.Scheduler` whose turn it is, and runs their passes on a bounded pool of
threads. Every tenant's client shares one :class:`~d1sync.RateLimiter`: one account budget for all.

Example::

    limiter = RateLimiter(1200, 300)
    connect = connector(resolve_target(remote=True), limiter)
    with Fleet("tenants/", connect) as fleet:
        fleet.drain(timeout=600)        # or fleet.start() ... fleet.stop()
        print(fleet.status().totals)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Self

from d1sync.client import D1Client, RateLimiter
from d1sync.errors import D1SyncError
from d1sync.fleet.engine import Connect, TenantEngine, TenantRow
from d1sync.fleet.naming import DEFAULT_TEMPLATE, check_template, database_name
from d1sync.fleet.provision import ANYWHERE, Placement, place_of
from d1sync.fleet.scheduler import Scheduler, Signature, file_signature
from d1sync.fleet.sizes import list_sizes, size_interval
from d1sync.fleet.status import FleetStatus, totals
from d1sync.fleet.tenants import DEFAULT_PATTERN, discover
from d1sync.fleet.watch import RACY_NS, FolderWatch, folder_stamp
from d1sync.sync import SyncConfig, SyncResult
from d1sync.target import Target

__all__ = ["Fleet", "FleetStatus", "connector"]

log = logging.getLogger("d1sync.fleet")

_SAFETY_SCAN = 30.0
"""Seconds between looks at every tenant's file while notifications come (for what they miss)."""


def connector(target: Target, limiter: RateLimiter | None, **client_options: Any) -> Connect:
    """``connect(database_id)`` for ``target``'s account: clients that all share ``limiter``."""

    def connect(database_id: str | None) -> D1Client:
        return D1Client(
            account_id=target.account_id,
            database_id=database_id,
            api_token=target.api_token,
            base_url=target.base_url,
            rate_limiter=limiter,
            **client_options,
        )

    return connect


class Fleet:
    """The tenant files of ``folder`` synced to a D1 database each (see the module docstring).

    Args:
        folder: the folder of tenant files.
        connect: ``connect(database_id)`` returns a client on the shared limiter (:func:`connector`).
        pattern: which file names are tenants (``*.db``).
        tables: the tables every tenant syncs (None: all its user tables).
        name: the database name template (:mod:`~d1sync.fleet.naming`).
        placement: where new databases go.
        config: the worker config (default: no read-ahead threads, so threads stay bounded).
        concurrency: passes (so requests) in flight at once, whatever the number of tenants.
        max_open: tenant files held open at once; the least recently used idle one is closed beyond it.
        idle_close: seconds after which an idle tenant's file and client are closed.
        sweep_interval: seconds between looks at the folder for new or vanished files.
        tick: seconds between looks at the open tenants for writes (``PRAGMA data_version``).
        scan_interval: seconds between stats of the closed (idle) tenants' files for writes.
        full_check_interval: seconds between passes of every tenant, the safety net for what a stat misses.
        size_interval: least seconds between reads of the databases' sizes by listing the account (a request
            per 100 databases), done only after rows were sent whose answers did not say the size (D1's say:
            ``meta.size_after``), and never so often that it would spend more than 1 % of ``rate_limiter``'s
            budget.
        watch: while :meth:`run` runs, learn of writes from file-change notifications (watchfiles); the
            stats of every tenant every ``scan_interval`` become a safety net every 30 s.
        rate_limiter: the shared limiter, reported in status (the clients ``connect`` makes should use it).
        monotonic: the clock of the schedule.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        connect: Connect,
        *,
        pattern: str = DEFAULT_PATTERN,
        tables: Sequence[str] | None = None,
        name: str = DEFAULT_TEMPLATE,
        placement: Placement = ANYWHERE,
        config: SyncConfig | None = None,
        concurrency: int = 4,
        max_open: int = 256,
        idle_close: float = 60.0,
        sweep_interval: float = 2.0,
        tick: float = 0.5,
        scan_interval: float = 2.0,
        full_check_interval: float = 600.0,
        size_interval: float = 600.0,
        watch: bool = True,
        rate_limiter: RateLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency < 1 or max_open < 1:
            raise ValueError("concurrency and max_open must be at least 1")
        self.folder = Path(folder)
        self.pattern = pattern
        self.name_template = check_template(name)
        self.tables = None if tables is None else list(tables)
        self.placement = placement
        self.config = config or SyncConfig(read_ahead=False)
        self.concurrency = concurrency
        self.max_open = max_open
        self.idle_close = idle_close
        self.sweep_interval = sweep_interval
        self.tick = tick
        self.scan_interval = scan_interval
        self.full_check_interval = full_check_interval
        self.size_interval = size_interval
        self.watch = watch
        self._watch: FolderWatch | None = None
        self.rate_limiter = rate_limiter
        self._connect = connect
        self._monotonic = monotonic
        self.account = connect(None)
        self.engines: dict[Path, TenantEngine] = {}
        self.missing: dict[Path, TenantRow] = {}
        self.rejected: dict[Path, str] = {}
        self.schedule = Scheduler()
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="d1sync-fleet")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = float("-inf")
        self._last_full = monotonic()
        self._last_scan = float("-inf")
        self._last_sizes = monotonic()
        self._sent_since_sizes = False
        self._folder_seen: int | None = None
        """The folder's mtime when a sweep last listed it completely (None: list it again)."""
        self._settled: dict[Path, Signature] = {}
        """Each settled tenant's file signature when its row was last read (see :meth:`status`)."""
        self.on_pass: Callable[[TenantEngine, SyncResult], None] | None = None
        """Called after every pass (from a pool thread), for progress bars."""

    def __repr__(self) -> str:
        return f"Fleet({os.fspath(self.folder)!r}, tenants={len(self.engines)})"

    # -- the many ------------------------------------------------------------------------------------------

    def sweep(self) -> None:
        """Look at the folder: add new tenant files, drop vanished ones (their databases are kept)."""
        stamp = folder_stamp(self.folder)
        found = discover(self.folder, self.pattern, frozenset(self.engines))
        now = self._monotonic()
        # The listing can be trusted next time while the folder's mtime stays this one, if it was already old
        # when read (a change within the same tick of the file system's clock would not move it).
        old = stamp is not None and time.time_ns() - stamp > RACY_NS
        self._folder_seen = stamp if old and not found.undecided else None
        for path, why in found.rejected.items():
            if path not in self.rejected:
                log.warning("%s is not a tenant: %s", path, why)
        self.rejected = found.rejected
        present = set(found.tenants)
        names = {engine.name: path for path, engine in self.engines.items()}
        for path in found.tenants:
            if path in self.engines:
                continue
            engine = TenantEngine(
                path,
                database_name(path, self.name_template),
                self._connect,
                self.config,
                tables=self.tables,
                placement=self.placement,
                monotonic=self._monotonic,
            )
            clash = names.get(engine.name)
            if clash is not None:
                engine.row.state = "failed"
                engine.row.last_error = f"its database name {engine.name!r} is {clash.name}'s too: choose --name"
                self.missing.pop(path, None)
                self.missing[path] = engine.row
                continue
            engine.load_binding(self.account)
            with self._lock:
                self.engines[path] = engine
                self.missing.pop(path, None)
                self.schedule.add(path, now)
            names[engine.name] = path
            log.info("tenant %s: database %s", path.name, engine.name)
        for path in [p for p in self.engines if p not in present]:
            self._drop(path)
        self._last_sweep = now

    def _drop(self, path: Path) -> None:
        with self._lock:
            slot = self.schedule.slots.get(path)
            if slot is not None and slot.busy:
                self._folder_seen = None
                return  # dropped by the next sweep, once its pass is over
            engine = self.engines.pop(path)
            self.schedule.remove(path)
        engine.close()
        engine.row.state = "missing"
        self.missing[path] = engine.row
        log.warning("tenant %s vanished: dropped (its database %s is kept)", path.name, engine.name)

    # -- passes --------------------------------------------------------------------------------------------

    def _pass(self, engine: TenantEngine) -> SyncResult:
        result = SyncResult("backoff", retry_in=self.tick)
        try:
            result = engine.step(self.account)
            # D1 tells a database's size in every batch's answer; a listing is needed only when it did not.
            self._sent_since_sizes = self._sent_since_sizes or (result.rows > 0 and result.remote_size is None)
        finally:
            # A write that landed during the pass is not in the stat taken after it: data_version tells.
            more = result.more or (result.state in ("idle", "synced") and engine.open and engine.changed())
            with self._lock:
                self.schedule.done(engine.path, self._monotonic(), more=more, retry_in=result.retry_in)
        if self.on_pass is not None:
            self.on_pass(engine, result)
        return result

    def _look(self) -> None:
        """Wake the tenants that were written to, and all of them on the slow full check; close idle ones."""
        now = self._monotonic()
        full = now - self._last_full >= self.full_check_interval
        if now - self._last_sweep >= self.sweep_interval:
            # At rest the folder's entries do not change: one stat of the folder instead of reading them all.
            if full or self._folder_seen is None or folder_stamp(self.folder) != self._folder_seen:
                self.sweep()
            else:
                self._last_sweep = now
        # With notifications, a tenant is looked at when its files were touched, and all of them only now and
        # then: a notification can be missed (a full queue), a look cannot.
        touched = self._watch.take() if self._watch is not None and self._watch.alive else None
        if touched and not touched <= {p.name for p in self.engines}:
            self._folder_seen = None  # a file we do not know: list the folder at the next sweep
        with self._lock:
            every = self.scan_interval if touched is None else max(self.scan_interval, _SAFETY_SCAN)
            scan = now - self._last_scan >= every
            for path, slot in self.schedule.quiet():
                engine = self.engines.get(path)
                if engine is None:
                    continue
                hinted = scan or (touched is not None and path.name in touched)
                # An open engine's data_version is exact; a closed one has only its file's stat, looked at
                # less often (it has been idle a while: a second more of latency is cheaper than the stats).
                if engine.open:
                    written = (touched is None or hinted) and engine.changed()
                else:
                    written = hinted and self.schedule.stat_moved(path, slot)
                if full or written:
                    self.schedule.wake(path, now)
            if full:
                self._last_full = now
            if scan:
                self._last_scan = now
        self._close_idle(now)
        waited = now - self._last_sizes
        if self._sent_since_sizes and waited >= size_interval(self.size_interval, len(self.engines), self.rate_limiter):
            self.refresh_sizes()

    def refresh_sizes(self) -> int:
        """Read every database's size (D1's ``file_size``) from one listing of the account, into the tenants'
        rows and files; the number of tenants whose size moved. Skipped (0) while the budget has no tokens
        to spare for the listing: the tenants' own requests come first."""
        self._last_sizes = self._monotonic()
        sizes = list_sizes(self.account, len(self.engines), self.rate_limiter)
        if sizes is None:
            return 0
        self._sent_since_sizes = False
        place, moved = place_of(self.account), 0
        with self._lock:
            for path, engine in self.engines.items():
                size, slot = sizes.get(engine.row.database_id or ""), self.schedule.slots[path]
                if size is None or slot.busy:
                    continue  # a tenant in a pass gets its size at the next listing
                stat_moved = not engine.open and self.schedule.stat_moved(path, slot)
                try:
                    written = engine.seen_size(size, place)
                except D1SyncError as exc:
                    log.debug("%s: could not record its size: %s", path.name, exc)
                    continue
                moved += written
                if stat_moved:
                    self.schedule.wake(path, self._monotonic())  # the application wrote: that stat is its
                elif written and not engine.open:
                    slot.signature = file_signature(path)  # our own write is no reason for a pass
        return moved

    def _close_idle(self, now: float) -> None:
        with self._lock:
            idle = [(p, e) for p, e in self.engines.items() if e.open and self.schedule.is_quiet(p)]
            idle.sort(key=lambda item: item[1].last_used)
            over = self._open_count() - self.max_open
            for index, (path, engine) in enumerate(idle):
                if index >= over and now - engine.last_used < self.idle_close:
                    continue
                if engine.changed():
                    self.schedule.wake(path, now)
                    continue
                engine.close()
                # Its stat from now on, taken after the close: closing the last connection checkpoints the
                # WAL (the worker's own lease and acks), which must not read as a write. A write that lands
                # within the close itself is left to the full check.
                self.schedule.slots[path].signature = file_signature(path)

    def _open_count(self) -> int:
        return sum(1 for e in self.engines.values() if e.open)

    def sync_once(self) -> dict[Path, SyncResult]:
        """One round: a pass of every tenant that has work and is due, ``concurrency`` at a time, the longest
        waiting first. Returns each pass's result."""
        self._look()
        results: dict[Path, SyncResult] = {}
        running: dict[Future[SyncResult], Path] = {}
        while True:
            with self._lock:
                chosen = self.schedule.due(self._monotonic(), self.concurrency - len(running))
                for path in chosen:
                    if path in results:  # its pass of this round is over: it goes again next round
                        self.schedule.slots[path].busy = False
            for path in chosen:
                if path not in results:
                    running[self._pool.submit(self._pass, self.engines[path])] = path
            if not running:
                return results
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                results[running.pop(future)] = future.result()
            if self._open_count() > self.max_open:  # a round of many new tenants opens them one by one
                self._close_idle(self._monotonic())

    @property
    def pending_work(self) -> bool:
        """Whether some tenant has work scheduled (waiting, backing off or in a pass)."""
        with self._lock:
            return self.schedule.waiting > 0

    # -- the daemon ----------------------------------------------------------------------------------------

    def run(self) -> None:
        """Run rounds until :meth:`stop`: passes as tenants have work, a sweep every ``sweep_interval``; with
        ``watch``, file-change notifications tell which tenants to look at. A :meth:`stop` before this call is
        kept: the run then returns at once."""
        self._watch = FolderWatch(self.folder) if self.watch else None
        try:
            while not self._stop.is_set():
                self.sync_once()
                with self._lock:
                    due = self.schedule.next_due()
                delay = self.tick if due is None else min(self.tick, max(0.0, due - self._monotonic()))
                self._stop.wait(delay)
        finally:
            self._stop.clear()  # the stop was this run's: a later run goes on until it is stopped again
            watch, self._watch = self._watch, None
            if watch is not None:
                watch.close()

    def start(self) -> Self:
        """Run :meth:`run` in a daemon thread and return at once."""
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="d1sync-fleet", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the daemon after the passes in flight (changes not sent stay in each tenant's outbox)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None

    @property
    def running(self) -> bool:
        """True while a daemon started by :meth:`start` is running (a :meth:`stop` may still be ending it)."""
        return self._thread is not None and self._thread.is_alive()

    def drain(self, timeout: float | None = None, *, sleep: Callable[[float], None] = time.sleep) -> FleetStatus:
        """Rounds until no tenant has work left that can move (drained, paused, failed), or ``timeout``.

        A tenant that backs off is waited for (within ``timeout``); one that is paused or failed is not. When
        rows were sent, the databases' sizes are read at the end (:meth:`refresh_sizes`).
        """
        deadline = None if timeout is None else self._monotonic() + timeout
        self.sweep()
        while not self._stop.is_set():
            results = self.sync_once()
            with self._lock:
                due = self.schedule.next_due()
                stuck = self._stuck()
            if due is None or self.schedule.waiting <= len(stuck):
                break
            now = self._monotonic()
            if deadline is not None and now >= deadline:
                break
            if not results:
                wait_for = max(0.0, due - now)
                sleep(min(wait_for, self.tick, max(0.0, deadline - now) if deadline is not None else wait_for))
        if self._sent_since_sizes:  # sizes no answer said, for `fleet status`: one listing per 100 databases
            self.refresh_sizes()
        return self.status()

    def _stuck(self) -> set[Path]:
        """Tenants whose work waits for a person: paused, failed, or sent by another worker holding its lease
        (not merely backing off)."""
        return {p for p, e in self.engines.items() if e.row.state in ("paused", "failed", "locked")}

    def status(self) -> FleetStatus:
        """Every tenant's row, read from its file now, and the totals.

        A settled tenant (nothing pending, no pause, no error) whose file has not changed since it was last
        read is not read again: a fleet at rest costs a stat per tenant per status, not a query.
        """
        with self._lock:
            engines = list(self.engines.values())
            missing = list(self.missing.values())
        rows = sorted([self._row(e) for e in engines] + missing, key=lambda r: r.file)
        summary = totals(rows, [p.name for p in self.rejected])
        if self.rate_limiter is not None:
            limiter = self.rate_limiter
            summary["budget"] = {"rate": limiter.rate, "per": limiter.per, "available": round(limiter.available(), 1)}
        return FleetStatus(rows, summary)

    def _row(self, engine: TenantEngine) -> TenantRow:
        signature = file_signature(engine.path)
        if signature is not None and self._settled.get(engine.path) == signature:
            return engine.row
        row = engine.refresh()
        if signature is not None and row.pending == 0 and not (row.paused or row.last_error or row.state == "failed"):
            self._settled[engine.path] = signature
        else:
            self._settled.pop(engine.path, None)
        return row

    def close(self) -> None:
        """Stop, close every tenant and the pool."""
        self.stop()
        self._pool.shutdown(wait=True)
        for engine in list(self.engines.values()):
            engine.close()
        self.account.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
