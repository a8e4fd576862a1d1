"""One push pass, as a pipeline: local DDL followed and the tables checked (preflight), then window source ->
planner -> sender, the next window read ahead while a full window's last request is in flight.

The engine takes the lease and honours the pacing before, and records the outcome after: a :class:`Pusher`
only moves rows, given a :class:`~d1sync.sync.link.Link`, and returns what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from d1sync.errors import D1Error
from d1sync.sync.config import SyncConfig
from d1sync.sync.link import Link
from d1sync.sync.model import Failure, SyncResult
from d1sync.sync.push.planner import plan
from d1sync.sync.push.readahead import READ_AHEAD_SECONDS, still_current, window_reader
from d1sync.sync.push.refusals import Refusal, Verdict, decide
from d1sync.sync.push.sender import deliver_window
from d1sync.sync.push.window import read_window
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import load_table_states, schema_version
from d1sync.sync.tables.follow import reconcile
from d1sync.sync.tables.preflight import preflight

__all__ = ["Pusher"]


class Pusher:
    """Pushes a file's pending changes, one pass at a time (see the module docstring).

    It remembers one thing between passes: the local schema version it last followed, so that local DDL is
    followed once (:meth:`recheck` forgets it).

    Example::

        pusher = Pusher(SyncConfig())
        result, outcome = pusher.push(link, time.time())    # outcome: None, or what ended the pass early
    """

    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self._seen_schema = -1

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
                chunk=max(1, config.window // 2),  # room for new writes in the same window
                manage_schema=config.manage_schema,
            )
        except D1Error as exc:  # transient: back off; auth, a missing database: not about one table, pause
            return None, Failure(exc, now, pause=decide(Refusal(exc)) is not Verdict.BACK_OFF)
        self._seen_schema = ready.schema_version
        result = SyncResult("idle", paused_tables=ready.paused)
        if ready.retry_soon:
            result.retry_in = config.backoff.base
        window = read_window(conn, config.window, skip=ready.waiting)
        planned = plan(window.changes, window.specs, config.limits)
        while True:
            result.more = window.full or ready.resending
            ahead = config.read_ahead and window.full and time.monotonic() - started < READ_AHEAD_SECONDS
            reader = window_reader(conn, config.window, config.limits, ready, window) if ahead else None
            outcome, next_window = deliver_window(
                link, window, planned, result, limits=config.limits, on_progress=on_progress, read_ahead=reader
            )
            next_window = still_current(conn, ready, next_window)
            if outcome is not None or next_window is None:
                return result, outcome
            window, planned = next_window
