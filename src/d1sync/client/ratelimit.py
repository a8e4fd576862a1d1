"""A client-side token bucket that keeps d1sync under Cloudflare's account rate limit.

Cloudflare allows 1,200 API requests per 5 minutes per user, across all of that user's tokens; going over
locks every call out with 429 for 5 minutes (d1-contract §3). A plain token bucket holding ``rate`` tokens
and refilling at ``rate/per`` can let through twice the budget in one window (a full bucket plus a window's
refill), so this one holds a smaller ``burst`` and refills at ``(rate - burst) / per``: no window of ``per``
seconds ever sees more than ``rate`` requests.

One limiter may serve several clients, threads and event loops: pass the same instance to each client.
Clients without an explicit limiter share one default limiter per API base URL (:func:`default_limiter`).
Processes cannot share an instance, so each client also tells its limiter what every response reports about
the account (:meth:`RateLimiter.observe`): a bucket holding more than the account has left drops to match,
and requests are paced so the account's remaining requests last until its window resets. An answer saying
the account is at its limit (nothing left beyond the reserve) pauses until the reset and halves the share,
as a 429 would, but before anyone is refused; no tokens accrue during a pause, so daemons told to wait do
not all come back with a full bucket at once.

Where answers carry no such count, a 429 is the only signal that others share the budget: the limiter then
halves its rate (:meth:`RateLimiter.throttled`) and grows it back linearly, a full rate's worth over one
window without a 429 (additive increase, multiplicative decrease, as TCP does). Two daemons on one account
settle on shares that add up to less than the budget instead of hammering it in turns.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

__all__ = ["RateLimiter", "default_limiter", "is_local_url"]

DEFAULT_RATE = 1200
DEFAULT_PER = 300.0
_EPSILON = 1e-9
_MIN_SHARE = 1 / 16
"""The lowest share of its rate a limiter cuts to after 429s (four halvings)."""


class RateLimiter:
    """A thread-safe token bucket: at most ``rate`` requests in any ``per`` seconds.

    Args:
        rate: requests allowed per window.
        per: window length in seconds.
        burst: tokens the bucket holds (requests that may go back to back); default ``rate // 40``, small so
            a long drain keeps ~97.5% of the budget (``(rate - burst) / per`` per second).
        adaptive: halve the rate on each 429 (:meth:`throttled`) and grow it back over ``per`` seconds.
        reserve: requests of the account's reported remaining count left to others (other processes, the
            dashboard), whose spending since that answer is unknown; default ``burst``. See :meth:`observe`.
        clock: monotonic clock in seconds (injectable for tests).
        sleep: blocking sleep used by :meth:`acquire`.
        async_sleep: awaitable sleep used by :meth:`acquire_async`.

    Example::

        limiter = RateLimiter(rate=1200, per=300.0)
        a = D1Client(database_id="...", rate_limiter=limiter)
        b = D1Client(database_id="...", rate_limiter=limiter)   # a and b share one budget
        limiter.available()                                     # tokens left right now
    """

    def __init__(
        self,
        rate: int = DEFAULT_RATE,
        per: float = DEFAULT_PER,
        *,
        burst: int | None = None,
        adaptive: bool = True,
        reserve: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate < 1 or per <= 0:
            raise ValueError(f"RateLimiter needs rate >= 1 and per > 0 (got rate={rate}, per={per})")
        capacity = max(1, rate // 40) if burst is None else burst
        if not 1 <= capacity <= rate:
            raise ValueError(f"RateLimiter burst must be between 1 and rate={rate} (got {burst})")
        self.rate = rate
        self.per = per
        self.burst = capacity
        # With burst == rate (or rate == 1) the bucket cannot reserve a window's budget: it falls back to the
        # classic refill of rate/per, which is only a long-run average.
        self.refill_per_second = (rate - capacity) / per if capacity < rate else rate / per
        self.adaptive = adaptive
        self.reserve = capacity if reserve is None else reserve
        if self.reserve < 0:
            raise ValueError(f"RateLimiter reserve must not be negative (got {reserve})")
        self._share = 1.0
        self._last_cut = float("-inf")
        self._paced = math.inf
        self._paced_until = float("-inf")
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._tokens = float(capacity)
        self._updated = clock()
        self._paused_until = float("-inf")
        self._granted = 0

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, per={self.per}, burst={self.burst}, reserve={self.reserve})"

    @property
    def share(self) -> float:
        """The share of ``rate`` the limiter allows now: 1.0, or less for a while after a 429."""
        with self._lock:
            self._refill(self._clock())
            return self._share

    def _rate(self, now: float) -> float:
        """Tokens per second now: the refill, times the share left after 429s, at most the account's pace."""
        rate = self.refill_per_second * self._share
        return min(rate, self._paced) if now < self._paced_until else rate

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        # No tokens accrue during a pause: every process told to wait would otherwise come back with a full
        # bucket at the same moment, and their bursts together overrun what the pause freed.
        accruing = max(0.0, now - max(self._updated, self._paused_until))
        self._tokens = min(float(self.burst), self._tokens + accruing * self._rate(now))
        if self._share < 1.0:
            self._share = min(1.0, self._share + elapsed / self.per)
        self._updated = now

    def _take(self) -> float:
        """Take a token if one is there (returns 0.0), else return how long to wait. Caller holds the lock."""
        now = self._clock()
        self._refill(now)
        if now < self._paused_until:
            return self._paused_until - now
        # The epsilon absorbs float error: a wait of (1 - tokens) / rate may land a hair short of a token.
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            self._granted += 1
            return 0.0
        return (1.0 - self._tokens) / self._rate(now)

    def try_acquire(self) -> bool:
        """Take a token without waiting; False when none is available now."""
        with self._lock:
            return self._take() == 0.0

    @property
    def granted(self) -> int:
        """Tokens taken so far (by :meth:`acquire`, :meth:`acquire_async` and :meth:`try_acquire`)."""
        with self._lock:
            return self._granted

    def acquire(self) -> int:
        """Take a token, sleeping (outside the lock) until one is available.

        Returns the request's ticket: the tokens taken up to and including this one. Pass it to
        :meth:`observe` with the answer, so requests sent after this one are counted as not yet seen.
        """
        while True:
            with self._lock:
                wait = self._take()
                if wait == 0.0:
                    return self._granted
            self._sleep(wait)

    async def acquire_async(self) -> int:
        """Take a token, awaiting (never blocking the event loop) until one is available; returns its ticket."""
        while True:
            with self._lock:
                wait = self._take()
                if wait == 0.0:
                    return self._granted
            await self._async_sleep(wait)

    def available(self) -> float:
        """Tokens available right now (fractional; 0 while paused): the requests that can go without waiting."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            return 0.0 if now < self._paused_until else self._tokens

    def wait_time(self) -> float:
        """Seconds until :meth:`acquire` would return if called now (0.0 when a token is there); takes nothing.

        An estimate when the limiter is shared: other acquirers may take the next token first.
        """
        with self._lock:
            now = self._clock()
            self._refill(now)
            paused = max(0.0, self._paused_until - now)
            # Nothing accrues during a pause: a missing token takes its refill time after the pause ends.
            tokens = self._tokens
            return paused + (0.0 if tokens >= 1.0 - _EPSILON else (1.0 - tokens) / self._rate(now))

    def pause(self, seconds: float) -> None:
        """Hold every acquirer for ``seconds`` (the server said 429 with ``retry-after``); never shortens a pause."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def throttled(self, retry_after: float | None) -> None:
        """The server answered 429: empty the bucket, pause for ``retry_after`` seconds and, when adaptive,
        halve the rate. Requests resume one refill interval after the pause, not in a burst.

        Several requests in flight may all come back 429 for one overrun: the rate is cut at most once per
        second (and never below a sixteenth), then grows back by a full rate over ``per`` seconds.
        """
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._paused_until = max(self._paused_until, now + max(0.0, retry_after or 0.0))
            self._tokens = 0.0  # the account has nothing left, whatever the bucket held
            self._cut(now)

    def _cut(self, now: float) -> None:
        """Halve the share (when adaptive), at most once a second. Caller holds the lock."""
        if self.adaptive and now - self._last_cut >= 1.0:
            self._share = max(_MIN_SHARE, self._share / 2)
            self._last_cut = now

    def observe(self, remaining: float, reset: float | None = None, *, ticket: int | None = None) -> None:
        """Align the bucket with a response's count: ``remaining`` requests left, more in ``reset`` seconds.

        Cloudflare counts every process, token and the dashboard of a user together, so other processes may
        have spent what this bucket still holds, and may be spending it now. Of ``remaining``, ``reserve``
        requests are left to them: the bucket drops to what is left over (an observation never adds tokens);
        until ``reset`` seconds have passed, requests are paced at that count over ``reset`` at most, so the
        account's budget lasts the window whoever else spends it; when nothing is left over it also pauses
        for ``reset`` seconds, as :meth:`pause` does (never shortening a pause), and, when adaptive, halves
        the share as a 429 would: the account is at its limit, so someone must slow down before anyone is
        refused. Two daemons on one account then hit no 429 where a bare count would have them race for the
        same freed request (``d1sync bench --only fleet``, and ``tests/client/test_shared_account_in_flight.py``).

        ``ticket`` is what :meth:`acquire` returned for the request this answer is for: the requests this
        limiter granted after it may still be on their way, so they count as spent too. A negative or NaN
        ``remaining`` is ignored, and so is a negative, NaN or infinite ``reset``. The clients call this for
        every response that reports the account's remaining requests (see ``parse_rate_limit`` in ``_core``).

        Example::

            limiter = RateLimiter(1200, 300.0, reserve=30)
            limiter.observe(remaining=33, reset=42.0)   # 3 go at once, then one every 14 s (3 over 42 s)
            limiter.observe(remaining=30, reset=42.0)   # nothing goes for 42 s: 30 are left to others
        """
        if not remaining >= 0:  # also refuses NaN
            return
        with self._lock:
            now = self._clock()
            self._refill(now)
            # The answer counted the account as the request found it: what this limiter granted since may
            # not have reached it yet (requests in flight at once), so it is counted as spent.
            unseen = max(0, self._granted - ticket) if ticket is not None else 0
            usable = max(0.0, remaining - self.reserve - unseen)
            self._tokens = min(self._tokens, float(usable))
            if reset is None or not 0 <= reset < math.inf:
                return
            if usable < 1:
                # The window renews at the reset: an older answer's pace no longer applies after it.
                self._paused_until = max(self._paused_until, now + reset)
                self._cut(now)
                self._paced_until = float("-inf")
            elif reset > 0:
                self._paced, self._paced_until = usable / reset, now + reset


_defaults: dict[str, RateLimiter] = {}
_defaults_lock = threading.Lock()

_LOOPBACK_HOSTS = frozenset({"localhost", "::1"})


def is_local_url(url: str) -> bool:
    """True for loopback hosts and dot-less names (``http://emulator``): local emulators, not Cloudflare."""
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOOPBACK_HOSTS or host.startswith("127.") or "." not in host


def default_limiter(base_url: str) -> RateLimiter | None:
    """The process-wide limiter for ``base_url`` (created on first use), or None for a local emulator.

    Cloudflare counts requests per user, so every client of one API base in a process shares one budget.
    A local emulator has no such limit; give the client a :class:`RateLimiter` to limit it anyway.
    """
    if is_local_url(base_url):
        return None
    key = base_url.rstrip("/")
    with _defaults_lock:
        limiter = _defaults.get(key)
        if limiter is None:
            limiter = _defaults[key] = RateLimiter()
        return limiter
