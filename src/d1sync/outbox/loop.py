"""The worker's loop, in the foreground (:meth:`run`) or in a thread of its own (:meth:`start`), and the
asyncio surface on top of it.

:class:`WorkerLoop` is a mixin of :class:`~d1sync.outbox.worker.SyncWorker`: the pass itself
(``sync_once``) lives there; this module decides when passes run. New writes wake the loop at once (commit
hooks in this process, ``PRAGMA data_version`` for other processes); failures back off on a timer; a full
window runs the next pass at once; ``stop`` makes one last drain until a deadline.

Threads, not a task on the event loop: a pass is blocking SQLite and HTTP work, and a thread keeps it off
the event loop entirely (sqlite3 and httpx release the GIL while they wait). The ``*_async`` methods only
hand blocking calls to a thread (:func:`asyncio.to_thread`), so ``await worker.wait_synced_async()`` never
blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from d1sync.backoff import Backoff
from d1sync.errors import ConfigError, D1Error
from d1sync.outbox.results import SyncResult
from d1sync.outbox.store.log import issued_seq, pending_through
from d1sync.outbox.store.schema import LastError, save_state
from d1sync.sqlite import Connection, on_commit

__all__ = ["WorkerLoop"]

log = logging.getLogger("d1sync.sync")

DEFAULT_FLUSH_TIMEOUT = 10.0


class WorkerLoop:
    """When passes run (see the module docstring). Needs the attributes and methods SyncWorker defines."""

    path: Path
    conn: Connection
    backoff: Backoff
    poll_interval: float
    min_interval: float
    pause_interval: float
    lease_ttl: float
    _stop: threading.Event
    _wake: threading.Event
    _stopped: threading.Event
    _flush_deadline: float | None
    _seen_version: int
    _thread: threading.Thread | None
    _crash: BaseException | None

    if TYPE_CHECKING:  # SyncWorker defines these

        def sync_once(self, now: float | None = None) -> SyncResult: ...
        def release_lease(self) -> None: ...
        def close(self) -> None: ...

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
            if self._wake.wait(min(self.poll_interval, remaining)):
                self._wake.clear()
                if wake_on_writes:
                    return
            # Another connection committed since the last pass read the change log.
            if wake_on_writes and self.conn.data_version() != self._seen_version:
                return

    def run(self, *, idle_interval: float = 5.0) -> None:
        """Sync until :meth:`stop` is called. New writes wake it at once; failures back off on a timer."""
        self._stop.clear()
        self._stopped.clear()
        unsubscribe = on_commit(self.path, self._wake.set)
        try:
            while not self._stop.is_set():
                result = self.safe_sync_once()
                if result.more and result.state == "synced":
                    continue  # a backlog: keep draining
                if result.retry_in is not None:
                    # Timer-driven: a back-off always ends by itself, never waiting for the next write.
                    self._wait(result.retry_in, wake_on_writes=False)
                    continue
                # A worker that pulls also wakes when its next pull is due.
                self._wait(min(idle_interval, result.next_pull or idle_interval), wake_on_writes=True)
                # The floor: let a burst of small commits gather into one request instead of one each.
                self._wait(self.min_interval, wake_on_writes=False)
            self._flush()
        finally:
            unsubscribe()
            self.release_lease()
            self._stopped.set()

    def safe_sync_once(self) -> SyncResult:
        """:meth:`sync_once`, but a local error or a bug becomes a back-off instead of an exception."""
        try:
            return self.sync_once()
        except D1Error as exc:
            # Remote failures are handled inside the pass: this is the local file, busy or unreadable for now.
            log.warning("local database error, retrying: %s", exc)
            return SyncResult("backoff", retry_in=self.backoff.base, error=str(exc))
        except Exception as exc:
            # A bug must not end the daemon silently with writes pending: say it loudly and try again later.
            log.exception("unexpected error in a sync pass; retrying in %.0fs", self.pause_interval)
            return SyncResult("backoff", retry_in=self.pause_interval, error=f"{type(exc).__name__}: {exc}")

    def _flush(self) -> None:
        deadline = self._flush_deadline
        while deadline is not None and time.monotonic() < deadline:
            result = self.safe_sync_once()
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

    def start(self, *, idle_interval: float = 5.0) -> Self:
        """Run the loop in a daemon thread and return at once (the worker itself, for ``with``).

        ``with worker.start():`` stops it (with a flush) when the block ends. A loop that crashed (a
        ``BaseException`` escaped it) leaves its error in :meth:`status` and may be started again.

        Raises:
            ConfigError: the loop is already running.
        """
        if self.running:
            raise ConfigError("this worker's loop is already running; call stop() before starting it again")
        self._crash = None
        self._stop.clear()
        self._stopped.clear()
        self._thread = threading.Thread(
            target=self._run_thread, kwargs={"idle_interval": idle_interval}, name="d1sync-worker", daemon=True
        )
        self._thread.start()
        return self

    def _run_thread(self, idle_interval: float) -> None:
        try:
            self.run(idle_interval=idle_interval)
        except BaseException as exc:
            self._crash = exc
            log.critical("the sync loop stopped on %s: %s (start() runs it again)", type(exc).__name__, exc)
            try:
                error = LastError(at=time.time(), message=f"the sync loop crashed: {exc}", kind=type(exc).__name__)
                with self.conn.atomic():
                    save_state(self.conn, last_error=error)
            except Exception:  # the file may be the cause: the log line above is what remains
                log.exception("could not record the crash in the outbox")

    def stop(self, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT, *, wait: bool = True) -> None:
        """Stop the loop after a last drain that may take up to ``flush_timeout`` seconds.

        With ``wait``, return once the loop has ended (and, for :meth:`start`'s thread, it is joined).
        """
        self._flush_deadline = time.monotonic() + flush_timeout
        self._stop.set()
        self._wake.set()
        if not wait:
            return
        thread = self._thread
        if thread is not None:
            thread.join(flush_timeout + self.lease_ttl)
            self._thread = None
        else:
            self._stopped.wait(flush_timeout + self.lease_ttl)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop a started loop (with a flush), then close the worker."""
        try:
            if self.running:
                self.stop()
        finally:
            self.close()

    # -- read-your-writes --------------------------------------------------------------------------------

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every change committed before this call has left the outbox; False on timeout.

        A change leaves the outbox when D1 acknowledges it (or refuses it for good: it is then a dead
        letter, counted in ``status().dead_letters``). Whoever holds the drain lease sends: this worker's
        loop, another process's (``d1sync run``), or, when neither runs, this call itself.
        """
        mark = issued_seq(self.conn)  # the newest change now in the log
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending_through(self.conn, mark):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self.running:
                self._wake.set()
                time.sleep(min(self.poll_interval, remaining or self.poll_interval))
                continue
            result = self.safe_sync_once()
            if result.state in ("locked", "backoff", "paused") or not result.rows:
                pause = result.retry_in or self.poll_interval
                time.sleep(max(0.0, min(pause, self.poll_interval * 4, remaining or pause)))
        return True

    # -- asyncio -----------------------------------------------------------------------------------------

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
