"""File-change notifications of a fleet's folder: which tenant files may have been written, without looking.

A fleet at rest should cost almost nothing, and a ``stat`` of every tenant file every few seconds is not
nothing with thousands of them. :class:`FolderWatch` asks the operating system instead (watchfiles: inotify on
Linux, FSEvents on macOS, ReadDirectoryChangesW on Windows), in a daemon thread, and keeps the names of the
files something wrote to (a ``-wal``, ``-shm`` or ``-journal`` counts for its database). A notification is
only a hint: the fleet still checks the file (its stat, or ``PRAGMA data_version``) before waking a tenant,
and still looks at every tenant now and then, for what a notification can miss (a full event queue, a
network file system).

Example::

    with FolderWatch(Path("tenants")) as watch:
        ...
        watch.take()        # {"acme.db", ...}: touched since the last take()
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["RACY_NS", "FolderWatch", "folder_stamp"]

log = logging.getLogger("d1sync.fleet")

_COMPANIONS = ("-wal", "-shm", "-journal")
RACY_NS = 2_000_000_000
"""How old a folder's mtime must be for a listing of it to be trusted while the mtime stays the same."""


def folder_stamp(folder: Path) -> int | None:
    """The folder's mtime (ns): a file created, removed or renamed in it moves it. None: no folder."""
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def _database_name(name: str) -> str:
    for suffix in _COMPANIONS:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class FolderWatch:
    """Notifications of the files written in ``folder`` (not below it), gathered in a daemon thread.

    :attr:`alive` is False when the watch could not start or stopped (then the caller looks at the files
    itself, as without a watch).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._touched: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="d1sync-fleet-watch", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        try:
            import watchfiles  # a compiled extension: loaded by the fleet daemon only

            changes = watchfiles.watch(
                self.folder,
                watch_filter=None,
                debounce=100,
                step=50,
                stop_event=self._stop,
                recursive=False,
                raise_interrupt=False,
                rust_timeout=0,
            )
            self._ready.set()
            for batch in changes:
                names = {_database_name(os.path.basename(path)) for _, path in batch}
                with self._lock:
                    self._touched |= names
        except Exception as exc:  # no watch is a slower fleet, never a failed one
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("no file-change notifications for %s (%s): looking at the files instead", self.folder, exc)
        finally:
            self._ready.set()

    @property
    def alive(self) -> bool:
        """Whether notifications are coming (the watch started and has not stopped)."""
        return self.error is None and self._thread.is_alive() and not self._stop.is_set()

    def take(self) -> set[str]:
        """The names of the database files written to since the last call (companions folded in)."""
        with self._lock:
            touched, self._touched = self._touched, set()
        return touched

    def close(self) -> None:
        """Stop watching (within a step of the watch, 50 ms)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
