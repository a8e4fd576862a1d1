"""What push and pull are given to move rows between one file and its target: a :class:`Link`.

A part never receives the worker: the worker builds a Link for each pass from what it holds then (its
connection, target, lease, clock, counters, helper thread) and passes it down; parts return results.
Several workers may share a target (one client, one rate limiter) and an :class:`Aside` (one thread pool).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from d1sync.database import Database
from d1sync.sqlite import Connection
from d1sync.sync.model import Counters
from d1sync.sync.store.lease import DrainLease

__all__ = ["Aside", "Link"]

log = logging.getLogger("d1sync.sync")

T = TypeVar("T")


@dataclass(frozen=True)
class Link:
    """One pass's view of an engine, as arguments.

    Attributes:
        conn: the application's file (the store's functions take it).
        target: where rows go and come from.
        lease: the drain lease as this engine holds it.
        clock: epoch seconds.
        counters: what the engine has done (the ``*_total`` metrics).
        aside: where a request goes while the pass reads ahead.
    """

    conn: Connection
    target: Database
    lease: DrainLease
    clock: Callable[[], float]
    counters: Counters
    aside: Aside


class Aside:
    """Where a send goes while the caller does more: ``pool`` (an executor several engines may share), or else
    a helper thread of its own (``d1sync-send``, started on first use)."""

    def __init__(self, pool: Executor | None = None) -> None:
        self._shared = pool
        self._pool: Executor | None = None

    def run(self, send: Callable[[], object], meanwhile: Callable[[], T]) -> T | None:
        """Run ``send`` on the helper thread and ``meanwhile`` on this one; return what ``meanwhile`` returned
        once ``send`` is done. The send's error, if any, is raised; an error of ``meanwhile`` only costs its
        result (None), since what it prepares is read again."""
        pool = self._shared or self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d1sync-send")
        sending = pool.submit(send)
        try:
            done: T | None = meanwhile()
        except Exception:
            log.warning("reading the next window ahead failed; it is read after this request", exc_info=True)
            done = None
        sending.result()
        return done

    def close(self) -> None:
        """Wait for a send under way, and stop the helper thread (a shared pool is its owner's to stop)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
