"""How big a request is: sized from D1's own answers, under the configured ceilings, remembered per database.

What limits a REST user of D1 is the account's request budget (1,200 requests per 5 minutes), not bandwidth,
so every request should carry as much as D1 takes comfortably. D1 documents no body limit; it stops a request
at 30 s of execution. A :class:`Sizer` holds the body size the planner packs to, and moves it:

* **Grow** after a full request that D1 ran fast (``meta.duration`` under a quarter of the target, and the
  request's own time under the target): toward the size that would take half the target at the rate just
  seen, at most four times bigger per step.
* **Shrink** after a request that ran near the target (80 % of it or more): to the size that would take half
  of it.
* **Shrink by half** after a request D1 refused as too big (HTTP 413, ``SQLITE_TOOBIG``, statement too long)
  or stopped at its execution limit: that size is remembered as refused, and growth stays under three
  quarters of it (it is tried again, 25 % higher, only after 50 requests at the cap went fast). A size that
  went through before and then ran too long once may have met a busy moment: it is remembered as refused only
  the second time.
* A timeout or a reset connection says nothing certain (a lost response looks the same): the size halves if
  the request was bigger than any this process saw succeed, or at the second such failure in a row.

Never past :class:`~d1sync.sync.config.Limits`' ceilings (``max_request_bytes``, ``max_statements``,
``max_value_bytes``), which stay under D1's documented limits (2 MB per bound value; statements carry their
rows in parameters, so their SQL text stays a few KB, far under 100 KB).

The size is kept in the outbox's state (:class:`~d1sync.sync.store.state.RequestSize`), tagged with the
target, so a restart starts where the last run was; another database starts from ``start_request_bytes``.
"""

from __future__ import annotations

import dataclasses
import logging

from d1sync.errors import (
    D1Error,
    ExecutionTimeoutError,
    LimitError,
    NetworkError,
    RequestTimeoutError,
    UnreachableError,
)
from d1sync.sync.config import Limits
from d1sync.sync.store.state import RequestSize

__all__ = ["FLOOR_BYTES", "GROWTH", "VALUE_FLOOR_BYTES", "Sizer", "too_big"]

log = logging.getLogger("d1sync.sync")

FLOOR_BYTES = 2_000
"""The smallest size a shrink goes to (a request always carries at least one row, whatever its size)."""
VALUE_FLOOR_BYTES = 250_000
"""The smallest JSON parameter a ``SQLITE_TOOBIG`` shrinks statements to."""
GROWTH = 4.0
"""The most a size grows in one step."""
_FAST = 0.25
_NEAR = 0.8
_AIM = 0.5
_FULL = 0.5
"""A request of at least this share of the size says how the size does (a short one, the end of a backlog,
says little)."""
_RETRY_REFUSED_AFTER = 50


def too_big(error: D1Error) -> bool:
    """Whether ``error`` says the request was too big or too long to run: send it again smaller."""
    return isinstance(error, LimitError | ExecutionTimeoutError)


def _ambiguous(error: D1Error) -> bool:
    """A timeout or a broken connection: maybe the size (a reset on a big body), maybe the network."""
    return isinstance(error, RequestTimeoutError) or (
        isinstance(error, NetworkError) and not isinstance(error, UnreachableError)
    )


class Sizer:
    """The request size of one database (see the module docstring).

    Example::

        sizer = Sizer(Limits(), learned=load_state(conn).request_size, target="D1Client(...)")
        planned = plan(changes, specs, sizer.limits)
        sizer.succeeded(body_bytes=planned.requests[0].body_bytes, seconds=0.2, elapsed=0.3)
        save_state(conn, request_size=sizer.state)
    """

    def __init__(self, limits: Limits, learned: RequestSize | None = None, target: str | None = None) -> None:
        self.ceilings = limits
        self.target = target
        self.bytes = limits.first_request_bytes
        self.refused: int | None = None
        self.value_bytes: int | None = None
        self.row_bytes: float | None = None
        """The mean bytes of a row as last planned (:meth:`planned`)."""
        if limits.adaptive and learned is not None and learned.target == target:
            self.bytes = min(max(FLOOR_BYTES, learned.bytes), limits.max_request_bytes)
            self.refused = learned.refused
            self.value_bytes = learned.value_bytes
            self.row_bytes = learned.row_bytes
        self.changed = False
        """Whether the size moved since :attr:`state` was last saved (the caller clears it)."""
        self.growths = 0
        """How many times the size grew: a window read ahead before the last growth is read again, bigger."""
        self._proven = 0
        self._ambiguous = 0
        self._at_cap = 0

    @property
    def limits(self) -> Limits:
        """What the planner packs to now."""
        value = self.ceilings.max_value_bytes
        if self.value_bytes is not None:
            value = max(1_000, min(value, self.value_bytes))
        if self.bytes == self.ceilings.max_request_bytes and value == self.ceilings.max_value_bytes:
            return self.ceilings
        return dataclasses.replace(self.ceilings, max_request_bytes=self.bytes, max_value_bytes=value)

    @property
    def state(self) -> RequestSize:
        """What to remember of it (:attr:`~d1sync.sync.store.state.WorkerState.request_size`)."""
        return RequestSize(self.target, self.bytes, self.refused, self.value_bytes, self.row_bytes)

    def planned(self, rows: int, body_bytes: int) -> None:
        """A window of ``rows`` rows was planned into requests of ``body_bytes`` in all (too few rows say
        little about the next windows)."""
        if rows < 100:
            return
        mean = body_bytes / rows
        if self.row_bytes is None or abs(mean - self.row_bytes) > 0.1 * self.row_bytes:
            self.changed = self.changed or self.ceilings.adaptive
        self.row_bytes = mean

    def window(self, configured: int | None, least: int, most: int) -> int:
        """Keys per window: ``configured``, else enough rows to fill a request and a quarter (the quarter is held
        back to fill the next window's first request), between ``least`` and ``most``."""
        if configured is not None:
            return configured
        if not self.row_bytes:
            return least
        return max(least, min(int(1.25 * self.bytes / self.row_bytes), most))

    def _cap(self) -> int:
        cap = self.ceilings.max_request_bytes
        if self.refused is not None:
            cap = min(cap, max(FLOOR_BYTES, int(self.refused * 0.75)))  # under the ceiling, whatever the floor
        return cap

    def _set(self, size: int, why: str) -> None:
        size = min(max(FLOOR_BYTES, size), self.ceilings.max_request_bytes)
        if size != self.bytes:
            log.info(
                "request size %s: %s bytes (was %s): %s", "up" if size > self.bytes else "down", size, self.bytes, why
            )
            if size > self.bytes:
                self.growths += 1
            self.bytes = size
            self.changed = True

    def succeeded(self, *, body_bytes: int, seconds: float, elapsed: float) -> bool:
        """A request of ``body_bytes`` went: D1 ran it for ``seconds`` (``meta.duration``; 0 when it did not
        say) and it took ``elapsed`` seconds from here. Whether the size grew."""
        self._ambiguous = 0
        self._proven = max(self._proven, body_bytes)
        if not self.ceilings.adaptive:
            return False
        target = self.ceilings.target_seconds
        ran = seconds if seconds > 0 else elapsed
        if ran >= _NEAR * target:
            self._set(int(min(self.bytes, body_bytes) * _AIM * target / ran), f"a request ran {ran:.1f} s")
            return False
        if body_bytes < _FULL * self.bytes or ran >= _FAST * target or elapsed >= target:
            return False
        cap = self._cap()
        if self.refused is not None and self.bytes >= cap:
            self._at_cap += 1
            if self._at_cap >= _RETRY_REFUSED_AFTER:  # D1 may take more now: look again, carefully
                self._at_cap = 0
                self.refused = int(self.refused * 1.25)
                self.changed = True
                cap = self._cap()
        projected = body_bytes * _AIM * target / max(ran, 1e-3)
        grown = int(min(cap, self.bytes * GROWTH, projected))
        if grown <= self.bytes:
            return False
        self._set(grown, f"a request of {body_bytes} bytes ran {ran * 1000:.0f} ms")
        return True

    def failed(self, error: D1Error, *, body_bytes: int, rows: int, value_bytes: int = 0) -> bool:
        """A request of ``rows`` rows and ``body_bytes`` (its largest parameter ``value_bytes``) failed with
        ``error``; whether the size shrank (a smaller request may go where this one did not). A request of one
        row teaches nothing about the size: it cannot go smaller."""
        if not self.ceilings.adaptive or rows <= 1:
            return False
        before = self.limits
        if isinstance(error, LimitError) and error.result_code == "SQLITE_TOOBIG" and value_bytes > 1_000:
            # A value D1 refused, though under the configured cap; never below a floor, so that one row
            # D1 refuses (it ends alone, dead-lettered) cannot shrink every statement for good.
            self.value_bytes = max(VALUE_FLOOR_BYTES, min(self.value_bytes or value_bytes, value_bytes) // 2)
            self.changed = True
            log.info("parameter size down: %s bytes (D1 refused %s)", self.value_bytes, value_bytes)
        elif too_big(error):
            if isinstance(error, ExecutionTimeoutError) and body_bytes <= self._proven:
                # A size that went through before ran too long once: a busy moment, maybe. Send less now, but
                # lower the cap only if it happens again at this size.
                self._proven = body_bytes - 1
            else:
                self.refused = body_bytes if self.refused is None else min(self.refused, body_bytes)
                self._at_cap = 0
                self.changed = True
            self._set(min(self.bytes, body_bytes) // 2, f"D1 refused {body_bytes} bytes: {error.message}")
        elif _ambiguous(error):
            self._ambiguous += 1
            if body_bytes > self._proven or self._ambiguous >= 2:
                self._ambiguous = 0
                self._set(min(self.bytes, body_bytes) // 2, f"no answer to {body_bytes} bytes: {error.message}")
        return self.limits != before
