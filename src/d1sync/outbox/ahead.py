"""Reading ahead: the next window is read and planned while a full window's last request is in flight.

:func:`deliver_window` settles a window and delivers its requests; for a full window the last request goes
from a helper thread (:class:`~d1sync.outbox.link.Aside`) while the worker's thread reads the next window
(:func:`window_reader`), which leaves out the change rows in flight (see
:func:`~d1sync.outbox.changes.read_window`). Requests still go one at a time and in order: the next is sent
only after this one is answered and acknowledged. The window read ahead is used only if the tables are still
as the pass's preflight saw them, once that request is acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from d1sync.outbox.changes import ReadAhead, Window, read_window
from d1sync.outbox.delivery import deliver, settle_window
from d1sync.outbox.link import Link
from d1sync.outbox.model import Change
from d1sync.outbox.planner import Limits, Plan, plan
from d1sync.outbox.preflight import Preflight
from d1sync.outbox.reconcile import schema_version
from d1sync.outbox.results import Failure, SyncResult
from d1sync.sqlite import Connection

__all__ = ["READ_AHEAD_SECONDS", "deliver_window", "window_reader"]

log = logging.getLogger("d1sync.sync")

T = TypeVar("T")

READ_AHEAD_SECONDS = 5.0
"""A pass reads windows ahead only this long, so a long backlog still ends passes (state, stamps) regularly."""


def deliver_window(
    link: Link,
    window: Window,
    planned: Plan,
    result: SyncResult,
    *,
    limits: Limits,
    on_progress: Callable[[SyncResult], None] | None = None,
    size: int,
    ready: Preflight | None,
) -> tuple[SyncResult | Failure | None, tuple[Window, Plan] | None]:
    """Settle one window (superseded keys, dead letters) and deliver its requests. With ``ready`` (the
    pass's preflight), the next window of ``size`` rows is read while the last request is in flight and
    returned with its plan, if the delivery was plain and the tables are still as the preflight saw them."""
    settle_window(link.conn, window, planned, result)
    read_next = None if ready is None else window_reader(link.conn, size, limits, ready, window)
    outcome, ahead = deliver(
        link,
        planned.requests,
        window.specs,
        result,
        limits=limits,
        on_progress=on_progress,
        window_full=window.full,
        progressed=bool(window.superseded),
        read_ahead=read_next,
    )
    if ahead is not None and ready is not None and schema_version(link.conn) != ready.schema_version:
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
