"""One capped exponential back-off with jitter, for the client's retries, the sync worker and the task queue.

Attempt ``n`` (1-based) may wait up to ``ceiling(n) = min(cap, base * 2**(n-1))``, and waits a random share
of it between 50 % and 100 % ("equal jitter"): never close to zero, so a retry storm cannot form, and spread
out, so many clients that failed together do not retry together. A server's ``retry-after`` always wins over
this schedule (the callers apply it).

Example::

    backoff = Backoff(base=0.5, cap=30.0)
    backoff.ceiling(3)                       # 2.0
    backoff.delay(3, random.Random(1))       # between 1.0 and 2.0
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]

_MAX_SHIFT = 62


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential back-off with equal jitter (see the module docstring).

    Attributes:
        base: the ceiling of the first attempt's wait, in seconds.
        cap: the largest wait, in seconds.
    """

    base: float = 0.5
    cap: float = 60.0

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= 0):
            raise ValueError(f"back-off base and cap must not be negative (got base={self.base}, cap={self.cap})")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt`` (1-based; 0 counts as 1)."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), _MAX_SHIFT))

    @staticmethod
    def jitter(rng: random.Random) -> float:
        """The random share of the ceiling to wait: uniform in [0.5, 1.0]."""
        return rng.uniform(0.5, 1.0)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered wait after failed attempt ``attempt`` (1-based)."""
        return self.ceiling(attempt) * self.jitter(rng)
