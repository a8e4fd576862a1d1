"""Drain: pass after pass until nothing is pending, a pause, or a deadline (what ``d1sync sync`` runs)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from d1sync.sync.model import State, SyncResult

if TYPE_CHECKING:
    from d1sync.sync.engine import SyncWorker
    from d1sync.sync.status import Status

__all__ = ["DrainReport", "drain"]


@dataclass
class DrainReport:
    """What :func:`drain` did.

    Attributes:
        state: the last pass's state: ``idle`` once drained, ``paused`` (fix the cause), or ``backoff`` /
            ``locked`` when the deadline came first.
        rows, requests, dead: rows sent, requests acknowledged, changes dead-lettered.
        retries: passes that failed transiently and were retried.
        seconds: how long it took.
        pending: change rows still pending at the end.
        error: the last pass's error, if it failed.
        pulled: remote rows applied locally (two-way tables: after the push, pulls run until caught up).
    """

    state: State = "idle"
    rows: int = 0
    requests: int = 0
    dead: int = 0
    retries: int = 0
    seconds: float = 0.0
    pending: int = 0
    error: str | None = None
    pulled: int = 0

    @property
    def drained(self) -> bool:
        """True when nothing was left pending and no table waits for a fix."""
        return self.pending == 0 and self.state != "paused"


def drain(
    worker: SyncWorker,
    *,
    deadline: float | None = None,
    max_passes: int | None = None,
    on_progress: Callable[[DrainReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DrainReport:
    """Call ``worker.sync_once()`` until nothing is pending, sleeping through back-offs; then, for a worker that
    pulls, ``worker.pull_once()`` until it has caught up with the remote.

    Args:
        deadline: stop once ``clock()`` passes this (a ``time.monotonic()`` value); None: no deadline.
        max_passes: stop after this many passes.
        on_progress: called with the running report after every acknowledged request and every pass.
        sleep, clock: injectable for tests.

    A pause (auth error, missing database, schema mismatch) ends the drain at once: the report's state is
    ``paused`` and its ``error`` says why; so does a table that waits for a fix with nothing of it pending.
    Nothing raises for a remote failure.

    Example::

        report = drain(worker, deadline=time.monotonic() + 60)
        if not report.drained:
            print(report.state, report.error, report.pending)
    """
    started = clock()
    report = DrainReport()
    previous = worker.on_progress

    def progress(result: SyncResult) -> None:
        report.rows, report.requests = base_rows + result.rows, base_requests + result.requests
        if previous is not None:
            previous(result)
        if on_progress is not None:
            on_progress(report)

    passes = 0
    base_rows = base_requests = 0
    worker.on_progress = progress
    try:
        while max_passes is None or passes < max_passes:
            passes += 1
            base_rows, base_requests = report.rows, report.requests
            result = worker.sync_once() if worker.push else worker.pull_once()
            report.rows, report.requests = base_rows + result.rows, base_requests + result.requests
            report.dead += result.dead
            report.pulled += result.pulled
            report.state, report.error = result.state, result.error
            report.pending = worker.pending()
            if on_progress is not None:
                on_progress(report)
            if result.state == "paused":
                break
            if result.state in ("backoff", "locked") or (result.retry_in is not None and not result.more):
                report.retries += result.state == "backoff"
                wait = result.retry_in or 0.1
                if deadline is not None and clock() + wait > deadline:
                    break
                sleep(wait)
                continue
            if not worker.push and not result.more:
                break  # pull only: caught up with the remote; local changes wait on purpose
            if not result.more and (report.pending == 0 or not worker.pending(flowing=True)):
                if report.pending:  # what is left belongs to tables paused on their own
                    report.state = "paused"
                    report.error = "; ".join(f"{t}: {why}" for t, why in sorted(result.paused_tables.items()))
                break
            if deadline is not None and clock() > deadline:
                break
        if worker.push and worker.pulling and report.state != "paused":
            _pull_until_caught_up(worker, report, deadline, clock)
        if worker.push:
            report = with_paused_tables(report, worker.status())
    finally:
        worker.on_progress = previous
    report.seconds = clock() - started
    return report


def with_paused_tables(report: DrainReport, status: Status) -> DrainReport:
    """``report`` as paused when a table waits for a fix, even with nothing of it pending: an empty table
    missing on the remote is not synced (``d1sync sync`` exits 1 and names it, with its fix)."""
    paused = {t: s for t, s in sorted(status.table_states.items()) if s.state == "paused"}
    if not paused or report.state == "paused" and status.paused is not None:
        return report
    why = "; ".join(f"{t}: {s.reason}" + (f" (fix: {s.fix})" if s.fix else "") for t, s in paused.items())
    return dataclasses.replace(report, state="paused", error=why)


def _pull_until_caught_up(
    worker: SyncWorker, report: DrainReport, deadline: float | None, clock: Callable[[], float]
) -> None:
    """Pull passes until one reads the end of the remote log (or fails, or the deadline passes)."""
    while True:
        result = worker.pull_once()
        report.pulled += result.pulled
        if result.state not in ("idle", "synced"):
            report.state, report.error = result.state, result.error
            return
        if not result.more or (deadline is not None and clock() > deadline):
            return
