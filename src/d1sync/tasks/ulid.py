"""Monotonic ULIDs: 26-character, time-ordered, unique identifiers (https://github.com/ulid/spec).

A ULID is 48 bits of Unix time in milliseconds followed by 80 random bits, written in Crockford base32. Sorting
ULIDs as text sorts them by creation time. Within one millisecond (or if the clock steps back) the generator
increments the random part instead of drawing a new one, so the ULIDs of one generator strictly increase::

    from d1sync.ulid import new_ulid, ulid_time_ms
    a, b = new_ulid(), new_ulid()
    assert a < b and len(a) == 26
    ulid_time_ms(a)        # epoch milliseconds when ``a`` was made
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable

__all__ = ["ULIDGenerator", "is_ulid", "new_ulid", "ulid_time_ms"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_TIME_MAX = (1 << 48) - 1
_RANDOM_MAX = (1 << 80) - 1


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class ULIDGenerator:
    """A thread-safe source of strictly increasing ULIDs.

    Args:
        clock: returns the current time in epoch **seconds** (default ``time.time``); injectable for tests.
        randbits: returns ``n`` random bits (default ``secrets.randbits``).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        randbits: Callable[[int], int] = secrets.randbits,
    ) -> None:
        self._clock = clock
        self._randbits = randbits
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0
        self._pid = os.getpid()

    def new(self) -> str:
        """A new ULID, greater than every ULID this generator returned before."""
        with self._lock:
            if os.getpid() != self._pid:
                # A forked child inherits our state; incrementing it would repeat the parent's next ULIDs.
                self._pid = os.getpid()
                self._last_ms = -1
            now_ms = int(self._clock() * 1000)
            if not 0 <= now_ms <= _TIME_MAX:
                raise ValueError(f"time {now_ms} ms is outside the ULID range (0 .. 2**48 - 1)")
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._last_random = self._randbits(80)
            elif self._last_random < _RANDOM_MAX:
                self._last_random += 1
            else:
                # 2**80 ULIDs in one millisecond cannot happen with real randomness; borrow the next millisecond.
                if self._last_ms == _TIME_MAX:
                    raise ValueError("ULID space exhausted")
                self._last_ms += 1
                self._last_random = self._randbits(80)
            return _encode((self._last_ms << 80) | self._last_random)


_default = ULIDGenerator()


def new_ulid() -> str:
    """A new monotonic ULID from the process-wide generator."""
    return _default.new()


def is_ulid(text: str) -> bool:
    """Whether ``text`` is a canonical (upper-case, 26-character, in-range) ULID."""
    return len(text) == 26 and text[0] in "01234567" and all(c in _DECODE for c in text)


def ulid_time_ms(ulid: str) -> int:
    """The epoch-millisecond timestamp inside ``ulid``.

    Raises:
        ValueError: if ``ulid`` is not a canonical ULID.
    """
    if not is_ulid(ulid):
        raise ValueError(f"not a ULID: {ulid!r}")
    value = 0
    for char in ulid[:10]:
        value = value * 32 + _DECODE[char]
    return value
