"""In-process wake-ups: a write through d1sync in this process wakes the workers of that file at once.

Writes from other processes (or raw sqlite3 connections) are noticed through ``PRAGMA data_version``
polling instead; this registry only removes the polling delay for the common in-process case.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["notify", "register", "unregister"]

_lock = threading.Lock()
_events: dict[str, set[threading.Event]] = {}


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(Path(path))


def register(path: str | os.PathLike[str], event: threading.Event) -> None:
    with _lock:
        _events.setdefault(_key(path), set()).add(event)


def unregister(path: str | os.PathLike[str], event: threading.Event) -> None:
    with _lock:
        events = _events.get(_key(path))
        if events is not None:
            events.discard(event)
            if not events:
                del _events[_key(path)]


def notify(path: str | os.PathLike[str]) -> None:
    """Wake every worker registered for ``path`` (cheap when there is none)."""
    if not _events:
        return
    with _lock:
        events = list(_events.get(_key(path), ()))
    for event in events:
        event.set()
