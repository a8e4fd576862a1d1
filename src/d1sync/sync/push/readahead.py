"""Reading ahead: the next window is read and planned while a full window's last request is in flight.

It wraps the window source: :func:`window_reader` is what the sender
(:func:`~d1sync.sync.push.sender.deliver_window`) runs while a full window's last request goes from a helper
thread (:class:`~d1sync.sync.link.Aside`); it reads the next window, leaving out the change rows in flight
(see :func:`~d1sync.sync.push.window.read_window`). Requests still go one at a time and in order: the next is sent
only after this one is answered and acknowledged. The window read ahead is used only if the tables are still
as the pass's preflight saw them, once that request is acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from d1sync.sqlite import Connection
from d1sync.sync.model import Change
from d1sync.sync.push.planner import Plan, plan
from d1sync.sync.push.sizing import Sizer
from d1sync.sync.push.window import ReadAhead, Window, read_window
from d1sync.sync.store.state import schema_version

if TYPE_CHECKING:
    from d1sync.sync.tables.preflight import Preflight

__all__ = ["READ_AHEAD_SECONDS", "still_current", "window_reader"]

log = logging.getLogger("d1sync.sync")

T = TypeVar("T")

READ_AHEAD_SECONDS = 5.0
"""A pass reads windows ahead only this long, so a long backlog still ends passes (state, stamps) regularly."""


def still_current(conn: Connection, ready: Preflight, ahead: tuple[Window, Plan] | None) -> tuple[Window, Plan] | None:
    """The window read ahead, unless DDL came during the send, after it was read: then None, and the next pass
    follows the DDL first."""
    if ahead is not None and schema_version(conn) != ready.schema_version:
        return None
    return ahead


def window_reader(
    conn: Connection, size: Callable[[], int], sizer: Sizer, ready: Preflight, window: Window
) -> Callable[[list[Change], list[Change]], tuple[Window, Plan] | None]:
    """What reads the window after ``window`` while its last request is in flight (given the changes in
    flight and those held back), with its plan; None if its tables are not as the pass's preflight ``ready``
    saw them (DDL ran, a table was tracked or declared: the next pass checks them on the remote first).
    ``size()`` is the window's size in keys, asked when it is read; it is planned at ``sizer``'s size."""

    def read_next(in_flight: list[Change], held_back: list[Change]) -> tuple[Window, Plan] | None:
        carry = ReadAhead(window.high, window.top, in_flight, held_back)
        ahead = read_window(conn, size(), skip=ready.waiting, ahead=carry)
        if ahead.schema_version != ready.schema_version or ahead.specs != ready.specs:
            return None
        return ahead, plan(ahead.changes, ahead.specs, sizer.limits)  # the size as it is once this one went

    return read_next
