"""One push pass, as a pipeline: local DDL followed and the tables checked (preflight), then window source ->
planner -> sender, the next window read ahead while a full window's last request is in flight; or, for a large
backlog, D1's import (:mod:`~d1sync.sync.push.seeder`).

The engine takes the lease and honours the pacing before, and records the outcome after: a :class:`Pusher`
only moves rows, given a :class:`~d1sync.sync.link.Link`, and returns what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from d1sync.errors import D1Error
from d1sync.sync.config import DEFAULT_WINDOW, MAX_WINDOW, SyncConfig
from d1sync.sync.link import Link
from d1sync.sync.model import Failure, SyncResult
from d1sync.sync.push.planner import plan
from d1sync.sync.push.readahead import READ_AHEAD_SECONDS, still_current, window_reader
from d1sync.sync.push.refusals import Refusal, Verdict, decide
from d1sync.sync.push.seeder import Seeder
from d1sync.sync.push.sender import deliver_window
from d1sync.sync.push.sizing import Sizer
from d1sync.sync.push.window import read_window
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import load_state, load_table_states, save_state, schema_version
from d1sync.sync.tables.follow import reconcile
from d1sync.sync.tables.preflight import Preflight, preflight

__all__ = ["Pusher"]


class Pusher:
    """Pushes a file's pending changes, one pass at a time (see the module docstring).

    It remembers between passes the local schema version it last followed, so that local DDL is followed
    once (:meth:`recheck` forgets it), and the request size learned from the target's answers
    (:mod:`~d1sync.sync.push.sizing`, kept in the outbox's state as well, so a restart starts from it).

    Example::

        pusher = Pusher(SyncConfig())
        result, outcome = pusher.push(link, time.time())    # outcome: None, or what ended the pass early
    """

    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self.seeder = Seeder(config)
        self._seen_schema = -1
        self.sizer: Sizer | None = None

    def _sizer(self, link: Link) -> Sizer:
        """The request size for ``link``'s target: learned in this process, else as the outbox remembers it."""
        target = repr(link.target)
        if self.sizer is None or self.sizer.target != target:
            self.sizer = Sizer(self.config.limits, load_state(link.conn).request_size, target)
        return self.sizer

    def _remember(self, link: Link, sizer: Sizer) -> None:
        if sizer.changed:
            with link.conn.atomic():
                save_state(link.conn, request_size=sizer.state)
            sizer.changed = False

    def window_size(self, sizer: Sizer) -> int:
        """Keys per window: as configured, else enough rows (of the size last seen) to fill a request of the
        learned size and a quarter, between :data:`~d1sync.sync.config.DEFAULT_WINDOW` and
        :data:`~d1sync.sync.config.MAX_WINDOW`."""
        return sizer.window(self.config.window, DEFAULT_WINDOW, MAX_WINDOW)

    def recheck(self) -> None:
        """Follow the local schema and check the remote one again at the next pass (after a fix)."""
        self._seen_schema = -1

    def push(
        self,
        link: Link,
        now: float,
        *,
        started: float | None = None,
        on_progress: Callable[[SyncResult], None] | None = None,
    ) -> tuple[SyncResult | None, SyncResult | Failure | None]:
        """One pass (the lease held): what it delivered (None: it ended before reading a window), and what
        ended it early (a lost lease, a :class:`~d1sync.sync.model.Failure` to record), or None.

        ``started`` (monotonic) is when the pass began: windows are read ahead only for
        :data:`~d1sync.sync.push.readahead.READ_AHEAD_SECONDS` after it.
        """
        config, conn = self.config, link.conn
        started = time.monotonic() if started is None else started
        try:
            if schema_version(conn) != self._seen_schema:  # local DDL came: follow it before anything is read
                reconcile(conn, load_specs(conn), load_table_states(conn), now)
            ready = preflight(
                conn,
                link.target,
                now=now,
                check_schema=config.check_schema,
                pause_interval=config.pause_interval,
                chunk=max(1, (config.window or DEFAULT_WINDOW) // 2),  # room for new writes in the same window
                manage_schema=config.manage_schema,
            )
        except D1Error as exc:  # transient: back off; auth, a missing database: not about one table, pause
            return None, Failure(exc, now, pause=decide(Refusal(exc)) is not Verdict.BACK_OFF)
        self._seen_schema = ready.schema_version
        seeded = self.seeder.run(link, now, waiting=ready.waiting, on_progress=on_progress)
        if seeded is not None:  # a large backlog went (or is on its way) through D1's import
            return (seeded, None) if isinstance(seeded, SyncResult) else (None, seeded)
        result = SyncResult("idle", paused_tables=ready.paused)
        if ready.retry_soon:
            result.retry_in = config.backoff.base
        sizer = self._sizer(link)
        try:
            return self._deliver(link, sizer, ready, result, started, on_progress)
        finally:
            self._remember(link, sizer)

    def _deliver(
        self,
        link: Link,
        sizer: Sizer,
        ready: Preflight,
        result: SyncResult,
        started: float,
        on_progress: Callable[[SyncResult], None] | None,
    ) -> tuple[SyncResult | None, SyncResult | Failure | None]:
        """Deliver windows until the backlog ends or a window ends the pass (see :meth:`push`)."""
        config, conn = self.config, link.conn
        window = read_window(conn, self.window_size(sizer), skip=ready.waiting)
        planned = plan(window.changes, window.specs, sizer.limits)
        while True:
            sizer.planned(sum(r.rows for r in planned.requests), sum(r.body_bytes for r in planned.requests))
            result.more = window.full or ready.resending
            ahead = config.read_ahead and window.full and time.monotonic() - started < READ_AHEAD_SECONDS
            # The next window's size is asked when it is read: this window's first requests may have grown it.
            reader = window_reader(conn, partial(self.window_size, sizer), sizer, ready, window) if ahead else None
            growths = sizer.growths
            outcome, next_window = deliver_window(
                link, window, planned, result, sizer=sizer, on_progress=on_progress, read_ahead=reader
            )
            next_window = still_current(conn, ready, next_window)
            if outcome is not None:
                return result, outcome
            if sizer.growths != growths and window.full and time.monotonic() - started < READ_AHEAD_SECONDS:
                # The size grew: what is left of this window, and a window read ahead at the old size, are
                # read again at the new one, or their requests would go as small as before (each a request
                # of the budget). Sent requests are acknowledged: the rest is still pending, read afresh.
                window = read_window(conn, self.window_size(sizer), skip=ready.waiting)
                planned = plan(window.changes, window.specs, sizer.limits)
                continue
            if next_window is None:
                return result, outcome
            window, planned = next_window
