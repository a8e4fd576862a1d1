"""Delivery of one window's planned requests: settle the window, send in order, isolate refused rows, survive a
lost lease.

What a refusal means is decided by :mod:`~d1sync.sync.push.refusals` (one table of rules); this module carries
the verdicts out. In short (what each costs, in requests, is in docs/sync.md):

* **Too big or too long** (HTTP 413, ``SQLITE_TOOBIG``, D1's execution limit): nothing was applied; the request
  size shrinks (:mod:`~d1sync.sync.push.sizing`) and the rows go again at once, in smaller requests.
* **Not about a row** (``no such column``, ``table t has no column named c``): the table's statements are
  split from a request holding several tables, and the table that fails is paused with D1's message. Nothing
  is dead-lettered; the other tables go on.
* **About a row** (a constraint, a type, a value too big): before bisecting, up to three rows of the failing
  table are sent alone. If every probe fails the same way with a ``NOT NULL``, ``CHECK`` or STRICT type error,
  the problem is the table's (a remote column the local table lacks, a column type that differs): the table
  pauses with the message and nothing is dead-lettered. Otherwise the request is bisected until only the
  offending rows are left (sending only what it must, :meth:`_Sender._split`); those are dead-lettered and
  everything else goes through.
* A single row refused for a foreign key or a ``UNIQUE`` value may only be waiting for another row's change
  (its parent; the row that holds the value remotely). In a full window that change may lie beyond it, so the
  row stays pending; otherwise it is tried again after the rest of the pass. Rows whose ``UNIQUE`` values move
  among themselves (a swap) still clash on that retry: they are sent together, atomically, as a delete of
  their old remote rows and an insert of their new states, or, where deleting would cascade to other tables,
  by clearing the moving values first. What still fails is dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from d1sync.errors import D1Error, SQLError, TransientError
from d1sync.sqlite import Connection, shown
from d1sync.sync.codec import printable
from d1sync.sync.link import Link
from d1sync.sync.model import Change, Failure, SyncResult, TableSpec
from d1sync.sync.push.planner import Plan, PlannedRequest, plan
from d1sync.sync.push.refusals import PROBES, Refusal, Verdict, blames_the_table, decide, same_refusal
from d1sync.sync.push.request import send_request
from d1sync.sync.push.sizing import Sizer
from d1sync.sync.push.swap import swap_request
from d1sync.sync.push.window import Window, acknowledge, requeue
from d1sync.sync.store.dead import dead_letter, resolve_dead
from d1sync.sync.store.lease import MAX_ALLOWANCE
from d1sync.sync.store.state import TableState, load_table_states, save_table_state
from d1sync.sync.tables.pauses import pause

__all__ = ["deliver", "deliver_window", "send_request", "settle_window"]

log = logging.getLogger("d1sync.sync")

T = TypeVar("T")
_REPLACE_HINT = (
    " (another remote row holds this value; if the application writes with INSERT OR REPLACE, the rows REPLACE"
    " removed locally were not captured: set PRAGMA recursive_triggers = ON on its connection)"
)


def deliver(
    link: Link,
    requests: list[PlannedRequest],
    specs: dict[str, TableSpec],
    result: SyncResult,
    *,
    sizer: Sizer,
    on_progress: Callable[[SyncResult], None] | None = None,
    window_full: bool,
    progressed: bool = False,
    read_ahead: Callable[[list[Change], list[Change]], T] | None = None,
) -> tuple[SyncResult | Failure | None, T | None]:
    """Deliver a window's requests. The first item is None when everything went (or was dead-lettered or
    paused with its table), else the pass's outcome: a lost lease, or a :class:`Failure` for the engine to
    record (a back-off, a global pause). ``on_progress`` hears of every acknowledged request.

    ``progressed`` says the pass already moved something before delivery (keys acknowledged as superseded).

    ``read_ahead`` (given the changes in flight and those held back) runs while the last request is on its
    way, to read the next window; the second item is what it returned, or None when it did not run or the
    delivery was not plain (a refusal, a failure): after those, the next window is read afresh.
    """
    held_back: list[PlannedRequest] = []
    if window_full and len(requests) > 1:
        # A full window's last request is usually short: its rows stay pending and the next window, read
        # right away, fills a request with them. Under a rate limit, full requests are throughput.
        requests, held_back = requests[:-1], requests[-1:]
    sender = _Sender(link, specs, result, sizer, on_progress)
    deferred: list[Change] = []
    ahead: list[T] = []
    tail = [c for r in held_back for c in r.changes]
    read_next = None if read_ahead is None else lambda in_flight: read_ahead(in_flight, tail)
    outcome = sender.run(requests, window_full=window_full, deferred=deferred, read_ahead=read_next, ahead=ahead)
    if outcome is None and deferred and held_back:
        # What a deferred row waits for may be in the held-back tail: send it, or the window could stall.
        outcome = sender.run(held_back, window_full=True, deferred=deferred)
    if outcome is None and deferred and not (result.rows or result.dead or progressed):
        # Nothing moved, so the next pass would read this very window again: stop waiting for what lies
        # beyond it. The deferred rows get their one retry now, then they are dead letters.
        outcome = sender.run(sender.plan(deferred), window_full=False, deferred=[])
    if outcome is None:
        outcome = sender.swap_remaining()
    plain = outcome is None and not sender.refused and ahead
    return outcome, ahead[0] if plain else None


def deliver_window(
    link: Link,
    window: Window,
    planned: Plan,
    result: SyncResult,
    *,
    sizer: Sizer,
    on_progress: Callable[[SyncResult], None] | None = None,
    read_ahead: Callable[[list[Change], list[Change]], T] | None = None,
) -> tuple[SyncResult | Failure | None, T | None]:
    """Settle one window (superseded keys, dead letters) and deliver its requests (see :func:`deliver`).
    ``read_ahead`` reads the next window while the last request is in flight
    (:func:`~d1sync.sync.push.readahead.window_reader`)."""
    settle_window(link.conn, window, planned, result)
    return deliver(
        link,
        planned.requests,
        window.specs,
        result,
        sizer=sizer,
        on_progress=on_progress,
        window_full=window.full,
        progressed=bool(window.superseded),
        read_ahead=read_ahead,
    )


def settle_window(conn: Connection, window: Window, planned: Plan, result: SyncResult) -> None:
    """What a window settles before its requests go: superseded keys acknowledged (their newer changes stay
    pending and send the state), orphans, invalid rows and rows the planner rejected dead-lettered."""
    if window.changes or window.orphans or window.superseded or window.invalid:
        result.state = "synced"
    if window.superseded:
        acknowledge(conn, window.superseded)
    if window.orphans:
        reason = "table is not synced any more (untracked while changes were pending)"
        result.dead += dead_letter(conn, [(c, reason) for c in window.orphans])
    if window.invalid:
        result.dead += dead_letter(conn, window.invalid)
        for change, reason in window.invalid:
            log.error("dead-lettered %s key %s: %s", change.table, printable(change.key), reason)
    if planned.rejected:
        result.dead += dead_letter(conn, planned.rejected)


class _Sender:
    def __init__(
        self,
        link: Link,
        specs: dict[str, TableSpec],
        result: SyncResult,
        sizer: Sizer,
        on_progress: Callable[[SyncResult], None] | None,
    ) -> None:
        self.link = link
        self.specs = specs
        self.result = result
        self.sizer = sizer
        self.on_progress = on_progress
        self.paused: set[str] = set()
        self.probed: set[str] = set()
        self.clashing: dict[str, list[tuple[Change, SQLError]]] = {}
        self.refused = False
        """D1 refused a request of this delivery (whatever followed: a bisection, a dead letter, a pause)."""
        self.suspects: dict[int, tuple[PlannedRequest, list[Change]]] = {}
        """By request (its id): the untested second half of refused rows whose first half it carries."""
        self.leftover: list[Change] = []
        """Untested halves of a bisection whose first half was refused: they go together after it."""
        self.grown = False
        """The request size grew with the last request sent: what is left of a window goes in fewer."""

    def plan(self, changes: list[Change]) -> list[PlannedRequest]:
        return plan([c for c in changes if c.table not in self.paused], self.specs, self.sizer.limits).requests

    def _allowance(self) -> float:
        """Seconds a send may spend waiting for the client's rate limiter, added to the lease before it."""
        limiter = getattr(self.link.target, "rate_limiter", None)  # a D1Client's; other targets have none
        wait = 2 * limiter.wait_time() if limiter is not None else 0.0  # a shared limiter serves others first
        return min(wait, MAX_ALLOWANCE)

    def _send(
        self,
        request: PlannedRequest,
        read_ahead: Callable[[list[Change]], T] | None = None,
        ahead: list[T] | None = None,
    ) -> SyncResult | Failure | None:
        """Send one request and acknowledge it; the pass's outcome if it cannot go on, else None.

        With ``read_ahead``, it runs while the request is in flight and what it returns goes into ``ahead``.
        """
        link = self.link
        if not link.lease.acquire(link.clock(), renew=True, extra=self._allowance()):
            return _locked(link)
        started = time.monotonic()
        changes = request.changes
        if read_ahead is None or ahead is None:
            answered, _ = send_request(link, request)
        else:
            answered, read = send_request(link, request, meanwhile=lambda: read_ahead(changes))
            ahead[:] = [] if read is None else [read]
        elapsed = time.monotonic() - started
        self.grown = self.sizer.succeeded(body_bytes=request.body_bytes, seconds=answered.seconds, elapsed=elapsed)
        self.result.remote_size = answered.size_after or self.result.remote_size
        if acknowledge(link.conn, changes, owner=link.lease.owner, then=resolve_dead) is None:
            return self._lost_lease(request)
        log.debug(
            "request acknowledged: %d row(s), %d bytes, %.0f ms",
            request.rows,
            request.body_bytes,
            elapsed * 1000,
        )
        self.result.rows += request.rows
        self.result.requests += 1
        link.counters.rows += request.rows
        link.counters.requests += 1
        if self.on_progress is not None:
            self.on_progress(self.result)
        return None

    def run(
        self,
        requests: list[PlannedRequest],
        *,
        window_full: bool,
        deferred: list[Change],
        read_ahead: Callable[[list[Change]], T] | None = None,
        ahead: list[T] | None = None,
    ) -> SyncResult | Failure | None:
        """Send ``requests`` in order, handling refusals as the module docstring says. ``read_ahead`` runs
        during the last one, if nothing was refused before it (see :func:`deliver`)."""
        queue: deque[list[PlannedRequest]] = deque([requests])
        retry_later: list[Change] = []
        retried = False
        while queue or (retry_later and not retried):
            if not queue:
                retried = True
                queue.append(self.plan(retry_later))
            batch = queue.popleft()
            for i, request in enumerate(batch):
                if any(c.table in self.paused for c in request.changes):
                    queue.appendleft(self.plan(request.changes + self._sibling(request)) + batch[i + 1 :])
                    break
                last = i == len(batch) - 1 and not queue and not retry_later and not self.refused
                try:
                    try:
                        outcome = self._send(request, read_ahead if last else None, ahead)
                    except D1Error as exc:
                        refusal = self._refusal(exc, request, window_full=window_full, retried=retried)
                        verdict = decide(refusal)
                        self.leftover += self._sibling(request)
                        if verdict is Verdict.SHRINK:
                            self.refused = True
                            queue.appendleft(self._smaller(exc, request, batch[i + 1 :]) + self._flush_leftover())
                            break
                        if verdict in (Verdict.BACK_OFF, Verdict.PAUSE_ALL):
                            # A timeout or a reset connection may say the request was too big.
                            self.sizer.failed(exc, body_bytes=request.body_bytes, rows=request.rows)
                            raise
                        assert refusal.sql is not None
                        self.refused = True
                        # The probes of a refusal send requests too: their failures are handled alike.
                        rest = self._refused(verdict, refusal.sql, request, deferred, retry_later)
                        if not rest or verdict not in (Verdict.BISECT, Verdict.PROBE):
                            rest += self._flush_leftover()
                        queue.appendleft(rest + batch[i + 1 :])
                        break
                except D1Error as exc:  # the pass ends: it backs off, or pauses loudly
                    return self._failed(exc, request, pause=decide(Refusal(exc)) is not Verdict.BACK_OFF)
                if outcome is not None:
                    return outcome
                known_bad = self._sibling(request)
                if known_bad:  # the refused rows' other half holds the offending row: split it, unsent
                    queue.appendleft(self._split(known_bad) + batch[i + 1 :])
                    break
                if self.grown and i + 1 < len(batch) and not self.suspects and not self.leftover:
                    if window_full and not (queue or retry_later or deferred or self.refused):
                        return None  # the rest stays pending: the pass reads a window of the new size
                    if len(batch) - i > 2:
                        queue.appendleft(self.plan([c for r in batch[i + 1 :] for c in r.changes]))  # fuller
                        break
        return None

    def _smaller(self, exc: D1Error, request: PlannedRequest, rest: list[PlannedRequest]) -> list[PlannedRequest]:
        """The requests to send in place of one D1 refused as too big, and of those after it: planned again at
        the smaller size, or, when the size could not go lower, in halves."""
        value_bytes = max(len(s.param) for s in request.statements)
        self.sizer.failed(exc, body_bytes=request.body_bytes, rows=request.rows, value_bytes=value_bytes)
        rows = request.changes
        smaller = self.plan(rows)
        if len(smaller) == 1:
            half = len(rows) // 2
            smaller = self.plan(rows[:half]) + self.plan(rows[half:])
        return smaller + (self.plan([c for r in rest for c in r.changes]) if rest else [])

    def _refusal(self, exc: D1Error, request: PlannedRequest, *, window_full: bool, retried: bool) -> Refusal:
        tables = {c.table for c in request.changes}
        probed = len(tables) == 1 and not tables.isdisjoint(self.probed)
        return Refusal(exc, len(request.changes), len(tables), window_full, retried, probed)

    def _refused(
        self,
        verdict: Verdict,
        exc: SQLError,
        request: PlannedRequest,
        deferred: list[Change],
        retry_later: list[Change],
    ) -> list[PlannedRequest]:
        """Carry out the verdict on a refused request; the requests to send next in its place."""
        rows = request.changes
        table = rows[0].table
        if verdict is Verdict.SPLIT_TABLES:
            tables = sorted({c.table for c in rows})
            return [r for t in tables for r in self.plan([c for c in rows if c.table == t])]
        if verdict is Verdict.PAUSE_TABLE:
            self._pause_table(table, exc)
        elif verdict is Verdict.DEFER:
            log.info("deferred %s key %s: %s", table, printable(rows[0].key), exc.message)
            deferred.append(rows[0])
        elif verdict is Verdict.RETRY_LATER:
            retry_later.append(rows[0])
        elif verdict is Verdict.SWAP:
            self.clashing.setdefault(table, []).append((rows[0], exc))
        elif verdict is Verdict.DEAD_LETTER:
            self._dead(rows[0], exc.message)
        else:
            if verdict is Verdict.PROBE:
                self.probed.add(table)
                rest = self._probe(exc, rows)
                if rest is None:
                    return []
                rows = rest
            return self._split(rows)
        return []

    def _split(self, rows: list[Change]) -> list[PlannedRequest]:
        """Bisect refused rows: their first half goes, and the second waits (:attr:`suspects`). If the first
        half goes through, the offending row is in the second, which is split in turn without being sent
        whole; if it is refused, the second half waits with the other untested halves (:attr:`leftover`),
        which go together, in full requests, once a row is isolated. About log2(rows) + 2 requests a row."""
        if len(rows) <= 1:
            return self.plan(rows) + self._flush_leftover()
        half = len(rows) // 2
        first = self.plan(rows[:half])
        if len(first) != 1:  # the size moved since: plain halves
            return first + self.plan(rows[half:]) + self._flush_leftover()
        self.suspects[id(first[0])] = (first[0], rows[half:])
        return first

    def _sibling(self, request: PlannedRequest) -> list[Change]:
        """The untested half waiting on ``request`` (see :meth:`_split`), no longer waiting; or none."""
        suspect = self.suspects.pop(id(request), None)
        return suspect[1] if suspect is not None and suspect[0] is request else []

    def _flush_leftover(self) -> list[PlannedRequest]:
        rows, self.leftover = self.leftover, []
        return self.plan(rows) if rows else []

    def _probe(self, exc: SQLError, rows: list[Change]) -> list[Change] | None:
        """Send a few rows alone. None if they all fail alike (the table is paused); else the rows left."""
        picks = sorted({0, len(rows) // 2, len(rows) - 1})[:PROBES]
        alike = 0
        sent: set[int] = set()
        for index in picks:
            try:
                if self._send(self.plan([rows[index]])[0]) is not None:
                    return rows  # the lease is gone: the caller's next send finds that out
                sent.add(index)
            except SQLError as probe_exc:
                alike += same_refusal(probe_exc, exc)
        if blames_the_table(alike, len(picks)):
            self._pause_table(rows[0].table, exc, probes=alike)
            return None
        return [c for i, c in enumerate(rows) if i not in sent]

    def swap_remaining(self) -> SyncResult | Failure | None:
        """Send rows still clashing on UNIQUE values together, once, then dead-letter what still fails."""
        for table, clashes in sorted(self.clashing.items()):
            changes = [c for c, _ in clashes]
            request = swap_request(self.link.conn, self.specs[table], changes, self.sizer.limits)
            if request is not None and len(changes) > 1 and table not in self.paused:
                try:
                    outcome = self._send(request)
                    if outcome is not None:
                        return outcome
                    log.info("sent %d rows of %s whose UNIQUE values moved among themselves", len(changes), table)
                    continue
                except SQLError:
                    log.info("the rows of %s refused for UNIQUE values do not swap among themselves", table)
                except TransientError as error:
                    return self._failed(error, request, pause=False)
            for change, refusal in clashes:
                self._dead(change, refusal.message + _REPLACE_HINT)
        self.clashing.clear()
        return None

    def _dead(self, change: Change, reason: str) -> None:
        self.result.dead += dead_letter(self.link.conn, [(change, reason)])
        log.error("dead-lettered %s key %s: %s", change.table, printable(change.key), reason)

    def _pause_table(self, table: str, exc: SQLError, *, probes: int = 0) -> None:
        """Pause one table: D1 refused it as a whole. Its changes stay pending; the others go on."""
        self.paused.add(table)
        shared = f" (every one of {probes} rows sent alone was refused alike)" if probes else ""
        reason = f"D1 refused the rows of {table!r}: {exc.message}{shared}"
        conn = self.link.conn
        with conn.atomic():
            state = load_table_states(conn).get(table, TableState())
            path = self.link.conn.path
            fix = (
                f"make the remote table match the local one (`d1sync verify {shown(path)}` compares them), "
                f"then `d1sync resume {shown(path)}`"
            )
            state = replace(pause(state, "refused", reason, fix, self.link.clock()), remote_columns=None)
            save_table_state(conn, table, state)

    def _failed(self, exc: D1Error, request: PlannedRequest, *, pause: bool) -> SyncResult | Failure:
        """A send failed with no verdict on its rows: D1 may still have applied it (a lost response)."""
        if not self.link.lease.held():
            return self._lost_lease(request)
        return Failure(exc, self.link.clock(), pause=pause, progressed=self.result.requests > 0)

    def _lost_lease(self, request: PlannedRequest) -> SyncResult:
        """A send landed after another worker took the lease: it may have overwritten newer states.

        Tracked rows are queued again, so the current holder sends their current state once more. Rows given
        to ``enqueue()`` carry their own state: if the other worker already sent a newer one, it is gone from
        the log and cannot be restored here (a ``version_column`` makes D1 itself keep the newer one).
        """
        tracked = [c for c in request.changes if self.specs[c.table].mode == "track"]
        requeue(self.link.conn, tracked)
        log.warning(
            "the drain lease passed to another worker during a send of %d row(s); %d tracked row(s) queued again",
            request.rows,
            len(tracked),
        )
        return _locked(self.link)


def _locked(link: Link) -> SyncResult:
    return SyncResult("locked", retry_in=link.lease.ttl / 3)
