"""The single-drainer lease: at most one worker sends a file's changes at a time, across processes.

The lease is a row of the worker state (:class:`~d1sync.sync.store.state.Lease`: owner and expiry). A worker
takes it before a pass and renews it before every request; it is released on stop. A worker killed with
SIGKILL cannot release it, so a successor on the same host takes it over as soon as the owner's process is
gone (:func:`owner_is_dead`) instead of waiting for the expiry.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from d1sync.sqlite import Connection
from d1sync.sync.store.state import Lease, load_state, save_state

__all__ = [
    "MAX_ALLOWANCE",
    "DrainLease",
    "LeaseWatch",
    "acquire",
    "describe_holder",
    "live_holder",
    "holds_lease",
    "host_identity",
    "new_owner",
    "owner_is_dead",
    "release",
]

log = logging.getLogger("d1sync.sync")

MAX_ALLOWANCE = 300.0
"""The most a lease is extended for a send waiting on the rate limiter: a lease never runs longer than
``lease_ttl + MAX_ALLOWANCE`` from the moment it was written."""


class LeaseWatch:
    """Tells when another worker's lease lies implausibly far ahead (its clock ran fast) and has stayed so,
    unrenewed, for the longest a lease can run: then it is treated as expired.

    A live owner renews its lease before every request, which changes the expiry and restarts the watch, so
    only a lease whose owner stopped (or hangs) is ever taken over this way. Timed with a monotonic clock.
    """

    def __init__(self, longest: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.longest = longest
        self._clock = clock
        self._seen: tuple[Lease, float] | None = None

    def stale(self, lease: Lease, now: float) -> bool:
        if lease.expires - now <= self.longest:
            self._seen = None
            return False  # plausible: the expiry decides
        if self._seen is None or self._seen[0] != lease:
            self._seen = (lease, self._clock())
            return False
        return self._clock() - self._seen[1] >= self.longest


class DrainLease:
    """The lease as one worker holds it: who it is (``owner``), how long a taking lasts (``ttl``), and the
    watch for leases that lie implausibly far ahead. What push and pull are given to take and renew it.

    Example::

        held = DrainLease(conn, new_owner(), ttl=90.0)
        if held.acquire(time.time()):
            ...                     # send; held.acquire(now, renew=True) before every request
            held.release()
    """

    def __init__(
        self, conn: Connection, owner: str, ttl: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.conn = conn
        self.owner = owner
        self.ttl = ttl
        self.watch = LeaseWatch(ttl + MAX_ALLOWANCE + 1.0, monotonic)

    def acquire(self, now: float, *, renew: bool = False, extra: float = 0.0) -> bool:
        """Take (or renew) the lease until ``now + ttl + extra``; False if another worker has it."""
        return acquire(self.conn, self.owner, now, self.ttl + extra, renew=renew, watch=self.watch)

    def release(self) -> None:
        """Give up the lease now (another worker may take it at once)."""
        release(self.conn, self.owner)

    def held(self) -> bool:
        """Whether this owner holds the lease (live, or expired but not taken by another)."""
        return holds_lease(self.conn, self.owner)


def new_owner() -> str:
    """A fresh lease owner name for a worker of this process: ``host:pid:nonce``."""
    return f"{host_identity()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holds_lease(conn: Connection, owner: str) -> bool:
    """True if ``owner`` holds the drain lease, live or expired but not taken by another."""
    lease = load_state(conn).lease
    return lease is not None and lease.owner == owner


def acquire(
    conn: Connection, owner: str, now: float, ttl: float, *, renew: bool = False, watch: LeaseWatch | None = None
) -> bool:
    """Take (or renew) the lease for ``owner`` until ``now + ttl``; False if another worker has it.

    Renewing (mid-pass) fails if anyone else held the lease meanwhile, even if they have let it go: they may
    have sent newer states of this pass's rows, which ours must not overwrite. With ``watch``, a lease whose
    expiry lies implausibly far ahead is taken over once it has stayed unrenewed for the longest a lease runs.
    """
    with conn.atomic():
        lease = load_state(conn).lease
        held = lease is not None and lease.owner != owner and (renew or lease.expires > now)
        if held and lease is not None and not renew and owner_is_dead(lease.owner):
            log.info("taking over the lease of %s: that process no longer exists", lease.owner)
            held = False
        if held and lease is not None and not renew and watch is not None and watch.stale(lease, now):
            log.warning("taking over the lease of %s: it ends implausibly far ahead and was not renewed", lease.owner)
            held = False
        if held:
            return False
        since = now
        if lease is not None and lease.owner == owner and lease.expires > 0 and lease.since:
            since = lease.since  # a renewal: the same holding goes on
        save_state(conn, lease=Lease(owner, now + ttl, since))
    return True


def release(conn: Connection, owner: str) -> None:
    """Give up the lease now if ``owner`` holds it (another worker may take it at once)."""
    with conn.atomic():
        if holds_lease(conn, owner):
            save_state(conn, lease=Lease(owner, 0.0))


def live_holder(conn: Connection, owner: str, now: float) -> Lease | None:
    """The lease if another worker holds it now (alive, unexpired), else None."""
    lease = load_state(conn).lease
    if lease is None or lease.owner == owner or lease.expires <= now or owner_is_dead(lease.owner):
        return None
    return lease


def describe_holder(lease: Lease) -> str:
    """A lease's holder for people: ``pid 4242 on build-7 since 2026-12-02 13:45:02 UTC``."""
    parts = lease.owner.split(":")
    if len(parts) < 3:
        return lease.owner
    host = ":".join(parts[:-2]).split("/")[0]
    since = ""
    if lease.since:
        since = " since " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease.since))
    return f"pid {parts[-2]} on {host}{since}"


@functools.cache
def host_identity() -> str:
    """This host as a lease owner names it: hostname, plus boot id and PID namespace where Linux has them.

    Two containers can share a hostname (and a mounted SQLite file) while their PIDs mean different things:
    a dead PID in our namespace says nothing about a process in theirs. The extra parts keep
    :func:`owner_is_dead` from taking over a live worker's lease in that case.
    """
    parts = [socket.gethostname().replace(":", "_")]
    with contextlib.suppress(OSError):  # not Linux: the hostname alone
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


def owner_is_dead(owner: str) -> bool:
    """True if a lease ``owner`` (``host:pid:nonce``) was a process on this host that no longer exists.

    Only POSIX, and only for owners of this very host identity (same boot and PID namespace, see
    :func:`host_identity`): elsewhere ``os.kill(pid, 0)`` would not be a meaningful probe.
    """
    parts = owner.split(":")
    if os.name != "posix" or len(parts) < 3:
        return False
    host, pid_text = ":".join(parts[:-2]), parts[-2]
    if host != host_identity() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False
