"""The sync worker: ``sync_once()`` drains what is pending; ``run()`` is a thin loop around it.

One pass (``sync_once``):

1. honour a persisted back-off or pause; take the single-drainer lease (two workers never both send);
2. check the remote schema once (every synced table and column must exist there);
3. read a window of pending changes, coalesced per key, with the rows' current state (one snapshot);
4. plan ``json_each`` bulk statements and pack them into requests;
5. send each request as one atomic batch; on success delete exactly the change rows it covered;
6. transient failure: nothing is acknowledged; back off (capped exponential, jittered, persisted;
   ``retry-after`` wins); a permanent row-level failure: bisect so only the offending rows are dead-lettered;
   auth, missing database or a schema mismatch: pause loudly, drop nothing, try again later.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from d1sync.database import Database
from d1sync.errors import (
    ConfigError,
    D1Error,
    RateLimitedError,
    SQLError,
    TransientError,
)
from d1sync.local import connect, write_transaction
from d1sync.outbox import wake
from d1sync.outbox.capture import TableSpec
from d1sync.outbox.changes import acknowledge, dead_letter, read_window, requeue
from d1sync.outbox.planner import DEFER_FOREIGN_KEYS, Change, Limits, PlannedRequest, plan
from d1sync.outbox.schema import ensure_schema, get_meta, holds_lease, set_meta
from d1sync.sql import quote_identifier

__all__ = ["Backoff", "SchemaMismatchError", "SyncResult", "SyncWorker"]

log = logging.getLogger("d1sync.sync")

State = Literal["idle", "synced", "backoff", "paused", "locked"]

# SQLite error classes that belong to a row (its values), not to the statement or the schema.
_ROW_LEVEL = ("SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_TOOBIG", "SQLITE_RANGE", "malformed JSON")
# A row refused for a secondary UNIQUE value may only be waiting for another row of the pass to let go of it.
_UNIQUE = "UNIQUE constraint failed"
_REPLACE_HINT = (
    " (another remote row holds this value; if the application writes with INSERT OR REPLACE, the rows REPLACE"
    " removed locally were not captured: set PRAGMA recursive_triggers = ON on its connection)"
)


class SchemaMismatchError(ConfigError):
    """The remote lacks a synced table, column or key; the message names each one."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off with jitter: ``min(cap, base * 2**(failures-1))``, jittered to 50-100%."""

    base: float = 0.5
    cap: float = 60.0
    pause: float = 30.0
    """How long to wait before re-checking after a pause (auth error, missing database, schema mismatch)."""

    def delay(self, failures: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(failures - 1, 0))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass
class SyncResult:
    """What one ``sync_once`` did."""

    state: State
    rows: int = 0
    requests: int = 0
    dead: int = 0
    retry_in: float | None = None
    more: bool = False
    error: str | None = None


@dataclass
class Counters:
    rows: int = 0
    requests: int = 0
    retries: int = 0
    dead: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.time)


class SyncWorker:
    """Carries the outbox of one SQLite file to a target Database (D1, the emulator, or another file).

    Args:
        path: the application's SQLite file (tables tracked with :class:`~d1sync.Outbox`).
        target: where rows go; usually a :class:`~d1sync.D1Client`.
        limits: planner limits (bytes per value and request, statements per request).
        window: change rows read per pass (bounds memory).
        backoff: back-off policy for transient failures.
        lease_ttl: seconds the drain lease lasts without renewal; must exceed a request's timeout.
        clock: returns epoch seconds; injectable for tests.
        check_schema: verify the remote schema before the first send.
        poll_interval: seconds between ``PRAGMA data_version`` checks while idle (other processes' writes).
        min_interval: the floor between write-triggered passes, so a burst of small commits shares a request.
        seed: seeds the back-off jitter (for reproducible tests).
        on_progress: called with the result of every request-level step (for progress bars).

    Example::

        worker = SyncWorker("app.db", D1Client())
        worker.sync_once()          # one pass; or worker.run() as a daemon
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        target: Database,
        *,
        limits: Limits | None = None,
        window: int = 20_000,
        backoff: Backoff | None = None,
        lease_ttl: float = 90.0,
        clock: Callable[[], float] = time.time,
        check_schema: bool = True,
        poll_interval: float = 0.05,
        min_interval: float = 0.02,
        seed: int | None = None,
        on_progress: Callable[[SyncResult], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.target = target
        self.limits = limits or Limits()
        self.window = window
        self.backoff = backoff or Backoff()
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.check_schema = check_schema
        self.poll_interval = poll_interval
        self.min_interval = min_interval
        self.on_progress = on_progress
        self.owner = f"{_host_identity()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.counters = Counters()
        self._rng = random.Random(seed)
        self._conn = connect(self.path)
        ensure_schema(self._conn)
        self._checked: dict[str, TableSpec] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._flush_deadline: float | None = None
        self._failing_since: float | None = None
        self._seen_version = -1

    def __repr__(self) -> str:
        return f"SyncWorker({os.fspath(self.path)!r}, target={self.target!r})"

    # -- persisted state ---------------------------------------------------------------------------------

    def _write_meta(self, **values: Any) -> bool:
        """Write shared worker state, only while this worker holds the lease (False, nothing written, if not):
        a worker that lost it must not make the new holder back off or pause."""
        with write_transaction(self._conn) as conn:
            if not holds_lease(conn, self.owner):
                return False
            for key, value in values.items():
                set_meta(conn, key, value)
        return True

    def _acquire_lease(self, now: float, *, renew: bool = False, extra: float = 0.0) -> bool:
        """Take (or renew) the drain lease until ``now + lease_ttl + extra``; False if another worker has it."""
        with write_transaction(self._conn) as conn:
            lease = get_meta(conn, "lease")
            # Renewing mid-pass fails if anyone else held the lease meanwhile, even if they have let it go:
            # they may have sent newer states of this window's rows, which ours must not overwrite.
            held = lease and lease["owner"] != self.owner and (renew or lease["expires"] > now)
            if held and not renew and _owner_is_dead(lease["owner"]):
                log.info("taking over the lease of %s: that process no longer exists", lease["owner"])
                held = False
            if held:
                return False
            set_meta(conn, "lease", {"owner": self.owner, "expires": now + self.lease_ttl + extra})
        return True

    def release_lease(self) -> None:
        """Give up the drain lease now (another worker may take it at once)."""
        with write_transaction(self._conn) as conn:
            if holds_lease(conn, self.owner):
                set_meta(conn, "lease", {"owner": self.owner, "expires": 0})

    def _record_failure(self, exc: D1Error, now: float, *, pause: bool) -> SyncResult:
        failures = int(get_meta(self._conn, "failures", 0)) + 1
        if pause:
            delay = self.backoff.pause
        elif isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            delay = exc.retry_after  # the server knows best: retry-after wins over our own schedule
        else:
            delay = self.backoff.delay(failures, self._rng)
        # The batch's first statement is the foreign-key prelude, never the culprit: leave SQL out.
        text = exc.describe(statement=False)
        error = {
            "at": now,
            "message": text,
            "kind": type(exc).__name__,
            "code": exc.code,
            "status": exc.status,
        }
        if not self._write_meta(
            failures=failures, backoff_until=now + delay, last_error=error, paused=text if pause else None
        ):
            return SyncResult("locked", retry_in=self.lease_ttl / 3, error=text)
        self.counters.retries += 0 if pause else 1
        if self._failing_since is None:
            self._failing_since = now
        level = logging.ERROR if pause else logging.WARNING
        # Log the first failure and then at most one line per back-off step, never a storm.
        log.log(
            level,
            "sync %s: %s (failure %d, next attempt in %.1fs)",
            "paused" if pause else "failed",
            text,
            failures,
            delay,
        )
        return SyncResult("paused" if pause else "backoff", retry_in=delay, error=text)

    def _record_success(self, now: float, result: SyncResult, seconds: float) -> None:
        if get_meta(self._conn, "failures", 0) or get_meta(self._conn, "paused"):
            since = self._failing_since
            log.info("sync recovered%s", f" after {now - since:.1f}s" if since else "")
        self._failing_since = None
        state: dict[str, Any] = {
            "failures": 0,
            "backoff_until": 0,
            "paused": None,
            "last_success": now,
            "last_pass": {"rows": result.rows, "requests": result.requests, "seconds": round(seconds, 3)},
        }
        limiter = getattr(self.target, "rate_limiter", None)
        if limiter is not None:
            # `d1sync status` runs in another process: leave it the budget this worker's client sees.
            state["rate_budget"] = {"available": limiter.available(), "rate": limiter.rate, "per": limiter.per}
        self._write_meta(**state)

    # -- remote schema -----------------------------------------------------------------------------------

    def check_remote_schema(self, specs: dict[str, TableSpec]) -> None:
        """Raise SchemaMismatchError naming every synced table/column the remote lacks."""
        problems: list[str] = []
        for spec in specs.values():
            rows = self.target.prepare(f"PRAGMA table_info({quote_identifier(spec.name)})").all().results
            if not rows:
                problems.append(f"table {spec.name!r} is missing")
                continue
            remote = {str(r["name"]) for r in rows}
            missing = [c for c in spec.columns if c not in remote]
            if missing:
                problems.append(f"table {spec.name!r} lacks column(s) {', '.join(missing)}")
        if problems:
            raise SchemaMismatchError(
                "the remote schema does not match the synced tables: "
                + "; ".join(problems)
                + " (apply the same migrations remotely: `d1sync migrations apply --remote`)"
            )

    # -- one pass ----------------------------------------------------------------------------------------

    def _check_schema(self, specs: dict[str, TableSpec]) -> None:
        """Check the remote schema of tables not checked yet (or whose spec changed since)."""
        unchecked = {name: spec for name, spec in specs.items() if self._checked.get(name) != spec}
        if self.check_schema and unchecked:
            self.check_remote_schema(unchecked)
        self._checked.update(unchecked)

    def sync_once(self, now: float | None = None) -> SyncResult:
        """Send what is pending (one window), unless backing off or another worker holds the lease."""
        now = self.clock() if now is None else now
        started = time.monotonic()
        backoff_until = float(get_meta(self._conn, "backoff_until", 0) or 0)
        if now < backoff_until:
            paused = get_meta(self._conn, "paused")
            return SyncResult("paused" if paused else "backoff", retry_in=backoff_until - now, error=paused)
        if not self._acquire_lease(now):
            return SyncResult("locked", retry_in=self.lease_ttl / 3)
        # Taken before the window is read: a commit after this point must wake the loop (see _wait).
        self._seen_version = self._data_version()
        window = read_window(self._conn, self.window)
        specs = window.specs
        try:
            self._check_schema(specs)
        except SchemaMismatchError as exc:
            return self._record_failure(D1Error(str(exc)), now, pause=True)
        except TransientError as exc:
            return self._record_failure(exc, now, pause=False)
        except D1Error as exc:  # auth, a missing database, or anything else the remote refuses: pause loudly
            return self._record_failure(exc, now, pause=True)
        if window.superseded:
            acknowledge(self._conn, window.superseded)  # their newer changes stay pending and send the state
        busy = window.changes or window.orphans or window.superseded or window.invalid
        result = SyncResult("synced" if busy else "idle", more=window.full)
        if window.orphans:
            reason = "table is not synced any more (untracked while changes were pending)"
            result.dead += dead_letter(self._conn, [(c, reason) for c in window.orphans])
        if window.invalid:
            result.dead += dead_letter(self._conn, window.invalid)
            for change, reason in window.invalid:
                log.error("dead-lettered %s key %s: %s", change.table, change.key, reason)
        planned = plan(window.changes, specs, self.limits)
        if planned.rejected:
            result.dead += dead_letter(self._conn, planned.rejected)
        requests, held_back = planned.requests, []
        if window.full and len(requests) > 1:
            # A full window's last request is usually short: its rows stay pending and the next window,
            # read right away, fills a request with them. Under a rate limit, full requests are throughput.
            requests, held_back = requests[:-1], requests[-1:]
        deferred: list[Change] = []
        outcome = self._deliver(requests, specs, result, window_full=window.full, deferred=deferred)
        if outcome is None and deferred and held_back:
            # What a deferred row waits for may be in the held-back tail: send it, or the window could stall.
            outcome = self._deliver(held_back, specs, result, window_full=True, deferred=deferred)
        if outcome is None and deferred and not (result.rows or result.dead or window.superseded):
            # Nothing moved, so the next pass would read this very window again: stop waiting for what lies
            # beyond it. The deferred rows get their one retry now, then they are dead letters.
            retry = plan(deferred, specs, self.limits).requests
            outcome = self._deliver(retry, specs, result, window_full=False, deferred=[])
        self.counters.dead += result.dead
        if outcome is not None:
            outcome.rows, outcome.requests, outcome.dead = result.rows, result.requests, result.dead
            return outcome
        if result.requests:
            self._record_success(self.clock(), result, time.monotonic() - started)
        return result

    def _send_allowance(self) -> float:
        """Seconds a send may spend waiting for the client's rate limiter, added to the lease before it."""
        limiter = getattr(self.target, "rate_limiter", None)  # a D1Client's; other targets have none
        return 2 * limiter.wait_time() if limiter is not None else 0.0  # a shared limiter serves others first

    def _deliver(
        self,
        requests: list[PlannedRequest],
        specs: dict[str, TableSpec],
        result: SyncResult,
        *,
        window_full: bool,
        deferred: list[Change],
    ) -> SyncResult | None:
        """Send ``requests`` in order. A row-level refusal is bisected until only the offending rows are left,
        and those are dead-lettered. Returns None when everything was delivered (or dead-lettered).

        A single row refused for a foreign key or a secondary UNIQUE value may be waiting for another row's
        change: the parent, or the row holding the value remotely. In a full window that change may lie beyond
        it, so the row stays pending (and is added to ``deferred``); otherwise it is tried once more after the
        rest of the pass, then dead-lettered.
        """
        queue: deque[list[PlannedRequest]] = deque([requests])
        retry_later: list[Change] = []
        retried = False
        while queue or (retry_later and not retried):
            if not queue:
                retried = True
                queue.append(plan(retry_later, specs, self.limits).requests)
            batch = queue.popleft()
            for i, request in enumerate(batch):
                if not self._acquire_lease(self.clock(), renew=True, extra=self._send_allowance()):
                    return SyncResult("locked", retry_in=self.lease_ttl / 3)
                try:
                    self._send(request)
                except SQLError as exc:
                    if not any(marker in exc.message for marker in _ROW_LEVEL):
                        # Not about a row (e.g. a column vanished remotely): bisecting would dead-letter all.
                        return self._record_failure(exc, self.clock(), pause=True)
                    if batch[i + 1 :]:
                        queue.appendleft(batch[i + 1 :])
                    rows = request.changes
                    waits = "FOREIGN KEY" in exc.message or _UNIQUE in exc.message
                    if len(rows) == 1 and waits and window_full:
                        # What it waits for may be in a later window: leave it pending. Once the whole backlog
                        # fits in one window, the failure is final and dead-letters the row.
                        log.info("deferred %s key %s: %s", rows[0].table, rows[0].key, exc.message)
                        deferred.append(rows[0])
                    elif len(rows) == 1 and waits and not retried:
                        retry_later.append(rows[0])
                    elif len(rows) == 1:
                        reason = exc.message + (_REPLACE_HINT if _UNIQUE in exc.message else "")
                        result.dead += dead_letter(self._conn, [(rows[0], reason)])
                        log.error("dead-lettered %s key %s: %s", rows[0].table, rows[0].key, reason)
                    else:
                        half = len(rows) // 2
                        queue.appendleft(plan(rows[half:], specs, self.limits).requests)
                        queue.appendleft(plan(rows[:half], specs, self.limits).requests)
                    break
                except TransientError as exc:
                    return self._send_failed(exc, request, specs, pause=False)
                except D1Error as exc:  # auth, a missing database, anything not about a row: pause loudly
                    return self._send_failed(exc, request, specs, pause=True)
                if acknowledge(self._conn, request.changes, owner=self.owner) is None:
                    return self._lost_lease(request, specs)
                result.rows += request.rows
                result.requests += 1
                self.counters.rows += request.rows
                self.counters.requests += 1
                self.counters.bytes += request.body_bytes
                if self.on_progress is not None:
                    self.on_progress(result)
        return None

    def _send_failed(
        self, exc: D1Error, request: PlannedRequest, specs: dict[str, TableSpec], *, pause: bool
    ) -> SyncResult:
        """A send failed with no verdict on its rows: D1 may still have applied it (a lost response)."""
        if not holds_lease(self._conn, self.owner):
            return self._lost_lease(request, specs)
        return self._record_failure(exc, self.clock(), pause=pause)

    def _lost_lease(self, request: PlannedRequest, specs: dict[str, TableSpec]) -> SyncResult:
        """A send landed after another worker took the lease: it may have overwritten newer states.

        Tracked rows are queued again, so the current holder sends their current state once more. Rows given
        to ``enqueue()`` carry their own state: if the other worker already sent a newer one, it is gone from
        the log and cannot be restored here (a ``version_column`` makes D1 itself keep the newer one).
        """
        tracked = [c for c in request.changes if specs[c.table].mode == "track"]
        requeue(self._conn, tracked)
        log.warning(
            "the drain lease passed to another worker during a send of %d row(s); %d tracked row(s) queued again",
            request.rows,
            len(tracked),
        )
        return SyncResult("locked", retry_in=self.lease_ttl / 3)

    def _send(self, request: PlannedRequest) -> None:
        db = self.target
        statements = [db.prepare(DEFER_FOREIGN_KEYS)]
        statements += [db.prepare(s.sql).bind(s.param) for s in request.statements]
        db.batch(statements)

    # -- the loop ----------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask a running loop to look for changes now."""
        self._wake.set()

    def _data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

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
            if wake_on_writes and self._data_version() != self._seen_version:
                return

    def run(self, *, idle_interval: float = 5.0) -> None:
        """Sync until :meth:`stop` is called. New writes wake it at once; failures back off on a timer."""
        self._stop.clear()
        self._stopped.clear()
        wake.register(self.path, self._wake)
        try:
            while not self._stop.is_set():
                result = self._safe_sync_once()
                if result.more and result.state == "synced":
                    continue  # a backlog: keep draining
                if result.retry_in is not None:
                    # Timer-driven: a back-off always ends by itself, never waiting for the next write.
                    self._wait(result.retry_in, wake_on_writes=False)
                    continue
                self._wait(idle_interval, wake_on_writes=True)
                # The floor: let a burst of small commits gather into one request instead of one each.
                self._wait(self.min_interval, wake_on_writes=False)
            self._flush()
        finally:
            wake.unregister(self.path, self._wake)
            self.release_lease()
            self._stopped.set()

    def _safe_sync_once(self) -> SyncResult:
        try:
            return self.sync_once()
        except sqlite3.Error as exc:
            # The local file is busy or unreadable for a moment: never let the loop die on it.
            log.warning("local database error, retrying: %s", exc)
            return SyncResult("backoff", retry_in=self.backoff.base, error=str(exc))
        except Exception as exc:
            # A bug must not end the daemon silently with writes pending: say it loudly and try again later.
            log.exception("unexpected error in a sync pass; retrying in %.0fs", self.backoff.pause)
            return SyncResult("backoff", retry_in=self.backoff.pause, error=f"{type(exc).__name__}: {exc}")

    def _flush(self) -> None:
        deadline = self._flush_deadline
        while deadline is not None and time.monotonic() < deadline:
            result = self._safe_sync_once()
            if result.state in ("idle", "paused", "locked"):
                return
            if result.retry_in is not None:
                wait = min(result.retry_in, deadline - time.monotonic())
                if wait <= 0:
                    return
                time.sleep(wait)
            elif not result.more:
                return

    def stop(self, flush_timeout: float = 10.0, *, wait: bool = True) -> None:
        """Stop the loop after a last drain that may take up to ``flush_timeout`` seconds."""
        self._flush_deadline = time.monotonic() + flush_timeout
        self._stop.set()
        self._wake.set()
        if wait:
            self._stopped.wait(flush_timeout + self.lease_ttl)

    def close(self) -> None:
        """Release the lease (if held) and close the worker's connection to the file."""
        try:
            self.release_lease()
        finally:
            self._conn.close()

    def __enter__(self) -> SyncWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pending(self) -> int:
        """Change rows not yet acknowledged."""
        return int(self._conn.execute("SELECT count(*) FROM _d1sync_changes").fetchone()[0])


@functools.cache
def _host_identity() -> str:
    """This host as a lease owner names it: hostname, plus boot id and PID namespace where Linux has them.

    Two containers can share a hostname (and a mounted SQLite file) while their PIDs mean different things:
    a dead PID in our namespace says nothing about a process in theirs. The extra parts keep
    :func:`_owner_is_dead` from taking over a live worker's lease in that case.
    """
    parts = [socket.gethostname().replace(":", "_")]
    with contextlib.suppress(OSError):  # not Linux: the hostname alone, as before
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


def _owner_is_dead(owner: str) -> bool:
    """True if a lease ``owner`` (``host:pid:nonce``) was a process on this host that no longer exists.

    A worker killed with SIGKILL cannot release its lease; without this check its successor would wait
    for the whole lease TTL. Only POSIX, and only for owners of this very host identity (same boot and PID
    namespace, see :func:`_host_identity`): elsewhere ``os.kill(pid, 0)`` would not be a meaningful probe.
    """
    parts = owner.split(":")
    if os.name != "posix" or len(parts) < 3:
        return False
    host, pid_text = ":".join(parts[:-2]), parts[-2]
    if host != _host_identity() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def drain(worker: SyncWorker, *, max_passes: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
    """Call ``sync_once`` until nothing is pending, sleeping through back-offs (pauses raise ConfigError)."""
    passes = 0
    while max_passes is None or passes < max_passes:
        passes += 1
        result = worker.sync_once()
        if result.state == "paused":
            raise ConfigError(f"sync paused: {result.error}")
        if result.state in ("backoff", "locked"):
            sleep(result.retry_in or 0.1)
            continue
        if not result.more and worker.pending() == 0:
            return
