"""What a queue remembers of its calls that got no answer, so that calling again is a retry, not a new call.

A remote write can be applied and its response lost (d1-contract §2). The client resends idempotent requests
itself, but when its retries run out the error reaches the caller, whose natural reaction is to call again.
For that second call to be recognised by the database as the same operation, it must send the same
identifying values: the same claim id for a claim, the same completion time for a completion. This memory
keeps those values from a call that raised until the next identical call takes them (or the memory is full).

Taking is exclusive: two threads retrying the same call cannot both get the remembered claim id, so they
never end up holding one claim together.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["Unanswered"]

_CAPACITY = 1024


class Unanswered:
    """A bounded, thread-safe map from a call's key to the identifying values it sent."""

    def __init__(self, capacity: int = _CAPACITY) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._values: OrderedDict[Hashable, Any] = OrderedDict()

    def take(self, key: Hashable) -> Any:
        """The values remembered for ``key`` (now forgotten), or None."""
        with self._lock:
            return self._values.pop(key, None)

    def keep(self, key: Hashable, values: Any) -> None:
        """Remember ``values`` for the next call with ``key``; the oldest entry goes when the memory is full."""
        with self._lock:
            self._values[key] = values
            self._values.move_to_end(key)
            while len(self._values) > self._capacity:
                self._values.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)
