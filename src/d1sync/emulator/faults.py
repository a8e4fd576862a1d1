"""Injectable faults and a rate limit for the emulator, seeded and deterministic.

One ``random.Random(seed)`` is drawn in request order, so the same seed and the same sequence of requests give
the same faults. Faults apply to the ``/query`` and ``/raw`` endpoints only; the rate limit applies to every
authenticated request, as Cloudflare's global limit does.

What each fault does to one request (d1-contract §2):

================  ==========================================================================================
``latency``       every request waits this long (seconds) before it is handled
``error_rate``    503 with D1's "overloaded" message, or 500 with 7500 ``internal error``; nothing applied
``rate_limit``    429 with code 971 and a ``retry-after`` header; nothing applied
``timeout``       the statements are applied, then the response is held ``timeout_delay`` seconds (longer
                  than a client waits), then sent or the connection dropped (``timeout_action``)
``html``          504 with an HTML gateway page; nothing applied
``lost_response`` the statements are applied, then a 502 HTML page or a dropped connection
``late``          the connection is dropped at once, unanswered; the statements are applied ``late_delay``
                  seconds later, after whatever the client sent meanwhile (D1 promises no order between
                  requests: one that timed out may still be applied after a newer one)
``garbled``       HTTP 200 with ``"success": true`` but an answer that proves nothing: no ``result``, a
                  ``null`` one, a list shorter than the statements sent, or a statement result with
                  ``"success": false`` (a seeded choice); applied or not (``garbled_mode``)
================  ==========================================================================================

Example::

    app = create_app(tmp, token="t", faults=FaultConfig(error_rate=0.1, seed=7))
    app.state.faults.update(error_rate=0.0)      # change at runtime
    app.state.faults.stats                       # {"requests": 12, "error_503": 1, ...}
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

__all__ = ["Fault", "FaultConfig", "Garble", "FaultInjector", "FaultPlan", "RateLimitState", "RateLimitWindow"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Fault(Enum):
    """The fault chosen for one request."""

    NONE = "none"
    ERROR_503 = "error_503"
    ERROR_500 = "error_500"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    HTML_504 = "html_504"
    LOST_502 = "lost_502"
    LOST_DROP = "lost_drop"
    GARBLED = "garbled"
    LATE = "late"


class Garble(Enum):
    """The shape of a garbled 200: what a gateway or a partial outage answered instead of the results."""

    NO_RESULT = "no_result"
    NULL_RESULT = "null_result"
    SHORT_RESULT = "short_result"
    FAILED_STATEMENT = "failed_statement"

    def envelope(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The garbled envelope, made from the real statement results (or from none, if nothing was applied)."""
        body: dict[str, Any] = {"success": True, "errors": [], "messages": []}
        if self is Garble.NULL_RESULT:
            body["result"] = None
        elif self is Garble.SHORT_RESULT:
            body["result"] = results[:-1]
        elif self is Garble.FAILED_STATEMENT:
            failed = results or [{"results": [], "meta": {}}]
            body["result"] = [{**element, "success": False} for element in failed]
        return body


STAT_KEYS = (
    "requests",
    "latency_seconds",
    *(f.value for f in Fault if f is not Fault.NONE),
    "late_applied",
    "late_refused",
    "rate_limit_rejections",
    "rate_limit_blocked",
)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Which faults to inject and how often. Rates are probabilities per request; their sum must be <= 1.

    Attributes:
        latency: seconds added to every ``/query`` and ``/raw`` request.
        error_rate: share of requests answered 503 (JSON, "overloaded") or 500 (7500 internal error).
        rate_limit_rate: share answered 429 / code 971 with ``retry-after: <retry_after>``.
        timeout_rate: share applied, then held ``timeout_delay`` seconds, then answered or dropped.
        html_rate: share answered 504 with an HTML body.
        lost_response_rate: share applied, then answered 502 HTML or dropped (``lost_response_mode``).
        garbled_rate: share answered 200 "success" with an answer that proves nothing (see :class:`Garble`).
        late_rate: share dropped unanswered, then applied ``late_delay`` seconds later.
        seed: seed of the one random generator (None: unseeded, not reproducible).
        retry_after: seconds sent in ``retry-after`` for injected 429s.
        timeout_delay: how long a timed-out response is held (choose more than the client's timeout).
        timeout_action: after the hold, ``"drop"`` the connection or ``"respond"`` normally.
        lost_response_mode: ``"mixed"`` (a seeded coin), ``"html"`` (502 page) or ``"drop"`` (connection closed).
        garbled_mode: whether a garbled answer's statements were applied: ``"mixed"`` (a seeded coin),
            ``"applied"`` or ``"unapplied"``.
        garbled_forms: the :class:`Garble` shapes to choose among (their values; empty: all of them).
        late_delay: seconds after which a ``late`` request is applied.
        block_seconds: with a rate limit, a refusal blocks every request for this long, as Cloudflare
            answers an overrun with 5 minutes of 429s (0: only the refused request).
        rate_limit_headers: with a rate limit, whether answers carry the account's count
            (``x-ratelimit-*``); without it a client learns of the limit only from 429s and ``retry-after``.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    html_rate: float = 0.0
    lost_response_rate: float = 0.0
    garbled_rate: float = 0.0
    late_rate: float = 0.0
    seed: int | None = None
    retry_after: int = 1
    timeout_delay: float = 35.0
    timeout_action: Literal["drop", "respond"] = "drop"
    lost_response_mode: Literal["mixed", "html", "drop"] = "mixed"
    garbled_mode: Literal["mixed", "applied", "unapplied"] = "mixed"
    garbled_forms: tuple[str, ...] = ()
    late_delay: float = 2.0
    block_seconds: float = 0.0
    rate_limit_headers: bool = True

    def __post_init__(self) -> None:
        rates = self._rates()
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {sum(rates.values()):.3f}; they must not exceed 1")
        if min(self.latency, self.timeout_delay, self.late_delay, self.block_seconds) < 0:
            raise ValueError("latency, timeout_delay, late_delay and block_seconds must not be negative")
        if self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        if self.timeout_action not in ("drop", "respond"):
            raise ValueError("timeout_action must be 'drop' or 'respond'")
        if self.lost_response_mode not in ("mixed", "html", "drop"):
            raise ValueError("lost_response_mode must be 'mixed', 'html' or 'drop'")
        if self.garbled_mode not in ("mixed", "applied", "unapplied"):
            raise ValueError("garbled_mode must be 'mixed', 'applied' or 'unapplied'")
        unknown = set(self.garbled_forms) - {g.value for g in Garble}
        if unknown:
            raise ValueError(f"unknown garbled forms {sorted(unknown)}; choose from {[g.value for g in Garble]}")

    def _rates(self) -> dict[str, float]:
        return {
            "error_rate": self.error_rate,
            "rate_limit_rate": self.rate_limit_rate,
            "timeout_rate": self.timeout_rate,
            "html_rate": self.html_rate,
            "lost_response_rate": self.lost_response_rate,
            "garbled_rate": self.garbled_rate,
            "late_rate": self.late_rate,
        }

    @property
    def active(self) -> bool:
        """Whether any fault or latency is configured."""
        return self.latency > 0 or any(self._rates().values())


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What happens to one request: added latency, then the fault (if any).

    A garbled answer also says its shape and whether the statements are applied first.
    """

    fault: Fault
    latency: float
    garble: Garble | None = None
    apply_garbled: bool = False


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """The rate limit's verdict on one request and the window after it, as the response headers tell it.

    Attributes:
        limit: requests allowed per window.
        remaining: requests the window still admits after this one.
        reset: whole seconds until the window admits one more request (its oldest request leaves).
        retry_after: None when the request was admitted, else the seconds to wait (it was refused).
    """

    limit: int
    remaining: int
    reset: int
    retry_after: int | None = None

    def headers(self, *, count: bool = True) -> dict[str, str]:
        """``x-ratelimit-limit``, ``-remaining`` and ``-reset`` (d1-contract §2; left out when not ``count``),
        plus ``retry-after`` on a refusal."""
        headers = {}
        if count:
            headers = {
                "x-ratelimit-limit": str(self.limit),
                "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-reset": str(self.reset),
            }
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return headers


class RateLimitWindow:
    """At most ``requests`` per sliding ``window`` seconds; over it, callers are told how long to wait."""

    def __init__(self, requests: int, window: float, *, clock: Clock = time.monotonic) -> None:
        if requests < 1 or window <= 0:
            raise ValueError("a rate limit needs requests >= 1 and window > 0")
        self.requests = requests
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()

    def acquire(self) -> int | None:
        """Count one request; return None when allowed, else the whole seconds to wait (>= 1)."""
        return self.admit().retry_after

    def admit(self) -> RateLimitState:
        """Count one request unless the window is full; the verdict and the window's state after it."""
        now = self._clock()
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        refused = len(self._times) >= self.requests
        if not refused:
            self._times.append(now)
        # Whole seconds rounded up, as Cloudflare's retry-after: waiting that long always frees a slot.
        reset = max(1, math.ceil(self._times[0] + self.window - now))
        return RateLimitState(self.requests, self.remaining, reset, reset if refused else None)

    @property
    def remaining(self) -> int:
        return max(0, self.requests - len(self._times))


class FaultInjector:
    """Decides faults per request and counts them; lives at ``app.state.faults``.

    Thread-safe: the decision and the counters sit behind one lock, so the draw order is the request order.
    """

    def __init__(
        self,
        config: FaultConfig | None = None,
        rate_limit: tuple[int, float] | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.sleep = sleep
        self.config = config or FaultConfig()
        self._random = random.Random(self.config.seed)
        self._limit = RateLimitWindow(*rate_limit, clock=clock) if rate_limit else None
        self._blocked_until = float("-inf")
        self._stats: dict[str, float] = dict.fromkeys(STAT_KEYS, 0)

    # -- configuration ---------------------------------------------------------------------------------

    def configure(self, config: FaultConfig | None) -> None:
        """Replace the configuration and reseed the generator from ``config.seed``."""
        with self._lock:
            self.config = config or FaultConfig()
            self._random = random.Random(self.config.seed)

    def update(self, **changes: Any) -> FaultConfig:
        """Change some fields (``update(error_rate=0)``), keeping the generator's position."""
        with self._lock:
            self.config = dataclasses.replace(self.config, **changes)
            return self.config

    def set_rate_limit(self, rate_limit: tuple[int, float] | None) -> None:
        """Enforce ``(requests, window_seconds)`` from now on, or no limit with None."""
        with self._lock:
            self._limit = RateLimitWindow(*rate_limit, clock=self._clock) if rate_limit else None

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        limit = self._limit
        return (limit.requests, limit.window) if limit else None

    @property
    def stats(self) -> dict[str, float]:
        """A copy of the counters: requests seen, seconds of latency added, and each fault injected."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = dict.fromkeys(STAT_KEYS, 0)

    # -- per request -----------------------------------------------------------------------------------

    def check_rate_limit(self) -> RateLimitState | None:
        """Count a request against the rate limit: its verdict and the window after it (None: no limit).

        With ``block_seconds``, a refusal blocks every request until the block ends, counted apart.
        """
        with self._lock:
            limit = self._limit
            if limit is None:
                return None
            now = self._clock()
            if now < self._blocked_until:
                self._stats["rate_limit_blocked"] += 1
                wait = max(1, math.ceil(self._blocked_until - now))
                return RateLimitState(limit.requests, 0, wait, wait)
            state = limit.admit()
            if state.retry_after is not None:
                self._stats["rate_limit_rejections"] += 1
                block = self.config.block_seconds
                if block > 0:
                    self._blocked_until = now + block
                    wait = max(state.retry_after, math.ceil(block))
                    state = dataclasses.replace(state, remaining=0, reset=wait, retry_after=wait)
            return state

    def count(self, key: str) -> None:
        """Add one to the counter ``key`` (one of :data:`STAT_KEYS`)."""
        with self._lock:
            self._stats[key] += 1

    def plan(self) -> FaultPlan:
        """Draw the fault for the next ``/query`` or ``/raw`` request and count it."""
        with self._lock:
            config = self.config
            self._stats["requests"] += 1
            self._stats["latency_seconds"] += config.latency
            fault = self._draw(config)
            if fault is not Fault.NONE:
                self._stats[fault.value] += 1
            if fault is not Fault.GARBLED:
                return FaultPlan(fault, config.latency)
            garble = self._random.choice([Garble(f) for f in config.garbled_forms] or list(Garble))
            mode = config.garbled_mode
            applied = self._random.random() < 0.5 if mode == "mixed" else mode == "applied"
            return FaultPlan(fault, config.latency, garble, applied)

    def _draw(self, config: FaultConfig) -> Fault:
        if not any(config._rates().values()):
            return Fault.NONE  # draw nothing, so turning faults on later starts from the seed's beginning
        r = self._random.random()
        for rate, fault in (
            (config.error_rate, Fault.ERROR_503),
            (config.rate_limit_rate, Fault.RATE_LIMITED),
            (config.timeout_rate, Fault.TIMEOUT),
            (config.html_rate, Fault.HTML_504),
            (config.lost_response_rate, Fault.LOST_502),
            (config.garbled_rate, Fault.GARBLED),
            (config.late_rate, Fault.LATE),
        ):
            if r < rate:
                return self._variant(fault, config)
            r -= rate
        return Fault.NONE

    def _variant(self, fault: Fault, config: FaultConfig) -> Fault:
        if fault is Fault.ERROR_503:
            return Fault.ERROR_503 if self._random.random() < 0.5 else Fault.ERROR_500
        if fault is Fault.LOST_502:
            mode = config.lost_response_mode
            if mode == "mixed":
                mode = "html" if self._random.random() < 0.5 else "drop"
            return Fault.LOST_502 if mode == "html" else Fault.LOST_DROP
        return fault
