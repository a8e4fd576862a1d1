"""The worker's loop, in the foreground (:meth:`Loop.run`) or in a thread of its own (:meth:`Loop.start`).

:class:`Loop` is given what it needs: the file (for commit hooks and ``PRAGMA data_version``), the config
(intervals), the step to run (an engine's ``sync_once``) and what to do when it ends (release the lease). It
decides when passes run; the pass itself is the engine's. New writes wake it at once (commit hooks in this
process, ``PRAGMA data_version`` for other processes); failures back off on a timer; a full window runs the
next pass at once; ``stop`` makes one last drain until a deadline. An outside scheduler that drives engines
pass by pass (``sync_once``) needs no Loop at all.

Threads, not a task on the event loop: a pass is blocking SQLite and HTTP work, and a thread keeps it off
the event loop entirely (sqlite3 and httpx release the GIL while they wait). The engine's ``*_async`` methods
only hand blocking calls to a thread (:func:`asyncio.to_thread`), so ``await worker.wait_synced_async()``
never blocks the loop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from d1sync.errors import ConfigError, D1Error, SyncPausedError
from d1sync.sqlite import Connection, on_commit
from d1sync.sync.config import SyncConfig
from d1sync.sync.model import SyncResult
from d1sync.sync.store.log import issued_seq, pending_tables_through, pending_through
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import LastError, load_state, load_table_states, save_state, schema_version

__all__ = ["DEFAULT_FLUSH_TIMEOUT", "Loop", "make_warnings_visible", "raise_if_held"]

log = logging.getLogger("d1sync.sync")

DEFAULT_FLUSH_TIMEOUT = 10.0


class Loop:
    """When an engine's passes run (see the module docstring).

    Example::

        loop = Loop(path, conn, config, step=worker.sync_once, release=lease.release)
        loop.start()                    # passes run in a daemon thread until loop.stop()
    """

    def __init__(
        self,
        path: Path,
        conn: Connection,
        config: SyncConfig,
        *,
        step: Callable[[], SyncResult],
        release: Callable[[], None],
    ) -> None:
        self.path = path
        self.conn = conn
        self.config = config
        self._step = step
        self._release = release
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._flush_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self.crash: BaseException | None = None
        """What ended a loop started by :meth:`start`, if something did."""
        self.local_failures = 0
        """Passes in a row that failed on the local file (a full disk, a locked or damaged file)."""
        self.local_error: LastError | None = None
        """The last of them, kept here too: with a full disk it cannot be written into the file."""
        self._rng = random.Random()
        self.seen_version = -1
        """``PRAGMA data_version`` when the last pass read the change log: another connection's commit
        since changes it, which wakes the loop (the engine sets it before reading a window)."""

    # -- the loop in the foreground ----------------------------------------------------------------------

    def wake(self) -> None:
        """Ask a running loop to look for changes now."""
        self._wake.set()

    def _wait(self, timeout: float, *, wake_on_writes: bool) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._wake.wait(min(self.config.poll_interval, remaining)):
                self._wake.clear()
                if wake_on_writes:
                    return
            # Another connection committed since the last pass read the change log.
            if wake_on_writes and self.conn.data_version() != self.seen_version:
                return

    def run(self, *, idle_interval: float = 5.0) -> None:
        """Sync until :meth:`stop` is called. New writes wake it at once; failures back off on a timer.

        A :meth:`stop` that comes before this call (a signal handler installed first) is kept: the loop then
        only makes its last drain and returns.
        """
        self._stopped.clear()
        unsubscribe = on_commit(self.path, self._wake.set)
        try:
            while not self._stop.is_set():
                result = self.safe_step()
                if result.more and result.state == "synced":
                    continue  # a backlog: keep draining
                if result.retry_in is not None:
                    # Timer-driven: a back-off always ends by itself, never waiting for the next write.
                    self._wait(result.retry_in, wake_on_writes=False)
                    continue
                # A worker that pulls also wakes when its next pull is due.
                self._wait(min(idle_interval, result.next_pull or idle_interval), wake_on_writes=True)
                # The floor: let a burst of small commits gather into one request instead of one each.
                self._wait(self.config.min_interval, wake_on_writes=False)
            self._flush()
        finally:
            unsubscribe()
            self._release()
            self._stop.clear()  # the stop was this run's: a later run goes on until it is stopped again
            self._stopped.set()

    def safe_step(self, step: Callable[[], SyncResult] | None = None) -> SyncResult:
        """The step (``sync_once``, or ``step``), but a local error or a bug becomes a back-off instead of an
        exception."""
        try:
            result = (step or self._step)()
        except D1Error as exc:
            # Remote failures are handled inside the pass: this is the local file (full, busy, damaged).
            return self._local_failure(exc)
        except Exception as exc:
            # A bug must not end the daemon silently with writes pending: say it loudly and try again later.
            log.exception("unexpected error in a sync pass; retrying in %.0fs", self.config.pause_interval)
            return SyncResult("backoff", retry_in=self.config.pause_interval, error=f"{type(exc).__name__}: {exc}")
        if self.local_failures:
            log.info("the local file works again after %d failed pass(es)", self.local_failures)
            self.local_failures, self.local_error = 0, None
        return result

    def _local_failure(self, exc: D1Error) -> SyncResult:
        """A pass failed on the local file: back off like a remote failure (growing, jittered) and record it
        where ``status`` reads it, if the file takes the write (a full disk does not: the log still says it)."""
        self.local_failures += 1
        delay = self.config.backoff.delay(self.local_failures, self._rng)
        self.local_error = LastError(at=time.time(), message=f"local file: {exc.message}", kind=type(exc).__name__)
        if self.local_failures == 1 or self.local_failures % 20 == 0:  # not one line per retry
            log.warning(
                "local database error (%d in a row), retrying in %.1fs: %s", self.local_failures, delay, exc.message
            )
        try:
            with self.conn.atomic():
                save_state(self.conn, last_error=self.local_error)
        except D1Error:
            pass  # a full disk refuses even this write: local_error (status()) and the log still tell it
        return SyncResult("backoff", retry_in=delay, error=str(exc))

    def _flush(self) -> None:
        deadline = self._flush_deadline
        while deadline is not None and time.monotonic() < deadline:
            result = self.safe_step()
            if result.state in ("idle", "paused", "locked"):
                return
            if result.retry_in is not None:
                wait = min(result.retry_in, deadline - time.monotonic())
                if wait <= 0:
                    return
                time.sleep(wait)
            elif not result.more:
                return

    # -- the loop in a thread ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a loop started by :meth:`start` is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, idle_interval: float = 5.0) -> None:
        """Run the loop in a daemon thread and return at once. A loop that crashed (a ``BaseException`` escaped
        it) leaves its error in the outbox's status and may be started again.

        Raises:
            ConfigError: the loop is already running.
        """
        if self.running:
            raise ConfigError("this worker's loop is already running; call stop() before starting it again")
        self.crash = None
        self._stop.clear()
        self._stopped.clear()
        self._thread = threading.Thread(
            target=self._run_thread, kwargs={"idle_interval": idle_interval}, name="d1sync-worker", daemon=True
        )
        self._thread.start()

    def _run_thread(self, idle_interval: float) -> None:
        try:
            self.run(idle_interval=idle_interval)
        except BaseException as exc:
            self.crash = exc
            log.critical("the sync loop stopped on %s: %s (start() runs it again)", type(exc).__name__, exc)
            try:
                error = LastError(at=time.time(), message=f"the sync loop crashed: {exc}", kind=type(exc).__name__)
                with self.conn.atomic():
                    save_state(self.conn, last_error=error)
            except Exception:  # the file may be the cause: the log line above is what remains
                log.exception("could not record the crash in the outbox")

    def stop(self, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT, *, wait: bool = True) -> None:
        """Stop the loop after a last drain of up to ``flush_timeout`` seconds; with ``wait``, until it ended."""
        self._flush_deadline = time.monotonic() + flush_timeout
        self._stop.set()
        self._wake.set()
        if not wait:
            return
        thread = self._thread
        if thread is not None:
            thread.join(flush_timeout + self.config.lease_ttl)
            self._thread = None
        else:
            self._stopped.wait(flush_timeout + self.config.lease_ttl)

    # -- read-your-writes --------------------------------------------------------------------------------

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every change committed before this call has left the outbox (see
        :meth:`SyncWorker.wait_synced <d1sync.sync.engine.SyncWorker.wait_synced>`); False on timeout.

        Raises:
            SyncPausedError: some of those changes wait for a pause that needs a fix.
        """
        mark = issued_seq(self.conn)  # the newest change now in the log
        # A migration made before this call is part of it: D1 must have followed it (a rebuild leaves no
        # change rows, its re-send comes once the worker has seen it).
        version = schema_version(self.conn) if self.config.check_schema else None
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending_through(self.conn, mark) or schema_behind(self.conn, version):
            raise_if_held(self.conn, mark)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self.running:
                self._wake.set()
                time.sleep(min(self.config.poll_interval, remaining or self.config.poll_interval))
                continue
            result = self.safe_step()
            if result.state in ("locked", "backoff", "paused") or not result.rows:
                pause = result.retry_in or self.config.poll_interval
                time.sleep(max(0.0, min(pause, self.config.poll_interval * 4, remaining or pause)))
        return True


def raise_if_held(conn: Connection, mark: int) -> None:
    """Raise SyncPausedError when changes up to ``mark`` wait for a pause: the worker's, or their table's."""
    state = load_state(conn)
    if state.paused is not None:
        raise SyncPausedError(state.paused)
    waiting = pending_tables_through(conn, mark)
    for name, table in sorted(load_table_states(conn).items()):
        if table.paused is not None and name in waiting:
            raise SyncPausedError(table.paused, table=name, fix=table.fix)


def schema_behind(conn: Connection, version: int | None) -> bool:
    """Whether a synced table has not been checked against D1 since the file's schema reached ``version``: a
    migration the worker has not followed yet. Raises SyncPausedError for such a table that is paused."""
    if version is None:
        return False
    states = load_table_states(conn)
    for name, spec in sorted(load_specs(conn).items()):
        state = states.get(name)
        if spec.mode != "track" or state is None or state.schema_version is None:
            continue  # never compared (schema checks off, or an outbox from before they were kept)
        if state.schema_version < version:
            if state.paused is not None:
                raise SyncPausedError(state.paused, table=name, fix=state.fix)
            return True
    return False


_visible = threading.Lock()


def make_warnings_visible() -> None:
    """An embedded worker's warnings (a pause, a failing target) must reach a person even where the program
    configured no logging for d1sync (uvicorn's default configuration, a bare script): then they go to
    stderr. Where any handler would take them, nothing changes."""
    logger = logging.getLogger("d1sync")
    with _visible:
        chain: logging.Logger | None = logger
        while chain is not None:
            if any(not isinstance(h, logging.NullHandler) for h in chain.handlers):
                return
            chain = chain.parent if chain.propagate else None
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("d1sync %(levelname)s: %(message)s"))
        logger.addHandler(handler)
