"""Reading ahead: the next window is read and planned while a full window's last request is in flight.

:func:`deliver_window` settles a window and delivers its requests; for a full window the last request goes
from a helper thread (:class:`Aside`) while the worker's thread reads the next window (:func:`window_reader`),
which leaves out the change rows in flight (see :func:`~d1sync.outbox.changes.read_window`). Requests still
go one at a time and in order: the next is sent only after this one is answered and acknowledged. The window
read ahead is used only if the tables are still as the pass's preflight saw them, once that request is
acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from d1sync.outbox.changes import ReadAhead, Window, read_window
from d1sync.outbox.delivery import Worker, deliver, settle_window
from d1sync.outbox.model import Change
from d1sync.outbox.planner import Limits, Plan, plan
from d1sync.outbox.preflight import Preflight
from d1sync.outbox.reconcile import schema_version
from d1sync.outbox.results import SyncResult
from d1sync.sqlite import Connection

__all__ = ["READ_AHEAD_SECONDS", "Aside", "deliver_window", "window_reader"]

log = logging.getLogger("d1sync.sync")

T = TypeVar("T")

READ_AHEAD_SECONDS = 5.0
"""A pass reads windows ahead only this long, so a long backlog still ends passes (state, stamps) regularly."""


class Aside:
    """One helper thread (``d1sync-send``, started on first use) that sends while the caller does more."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def run(self, send: Callable[[], object], meanwhile: Callable[[], T]) -> T | None:
        """Run ``send`` on the helper thread and ``meanwhile`` on this one; return what ``meanwhile`` returned
        once ``send`` is done. The send's error, if any, is raised; an error of ``meanwhile`` only costs its
        result (None), since what it prepares is read again."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d1sync-send")
        sending = self._pool.submit(send)
        try:
            done: T | None = meanwhile()
        except Exception:
            log.warning("reading the next window ahead failed; it is read after this request", exc_info=True)
            done = None
        sending.result()
        return done

    def close(self) -> None:
        """Wait for a send under way, and stop the helper thread."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def deliver_window(
    worker: Worker, window: Window, planned: Plan, result: SyncResult, *, size: int, ready: Preflight | None
) -> tuple[SyncResult | None, tuple[Window, Plan] | None]:
    """Settle one window (superseded keys, dead letters) and deliver its requests. With ``ready`` (the
    pass's preflight), the next window of ``size`` rows is read while the last request is in flight and
    returned with its plan, if the delivery was plain and the tables are still as the preflight saw them."""
    settle_window(worker.conn, window, planned, result)
    read_next = None if ready is None else window_reader(worker.conn, size, worker.limits, ready, window)
    outcome, ahead = deliver(
        worker,
        planned.requests,
        window.specs,
        result,
        window_full=window.full,
        progressed=bool(window.superseded),
        read_ahead=read_next,
    )
    if ahead is not None and ready is not None and schema_version(worker.conn) != ready.schema_version:
        ahead = None  # DDL came during the send, after the window was read: the next pass follows it first
    return outcome, ahead


def window_reader(
    conn: Connection, size: int, limits: Limits, ready: Preflight, window: Window
) -> Callable[[list[Change], list[Change]], tuple[Window, Plan] | None]:
    """What reads the window after ``window`` while its last request is in flight (given the changes in
    flight and those held back), with its plan; None if its tables are not as the pass's preflight ``ready``
    saw them (DDL ran, a table was tracked or declared: the next pass checks them on the remote first)."""

    def read_next(in_flight: list[Change], held_back: list[Change]) -> tuple[Window, Plan] | None:
        carry = ReadAhead(window.high, window.top, in_flight, held_back)
        ahead = read_window(conn, size, skip=ready.waiting, ahead=carry)
        if ahead.schema_version != ready.schema_version or ahead.specs != ready.specs:
            return None
        return ahead, plan(ahead.changes, ahead.specs, limits)

    return read_next
