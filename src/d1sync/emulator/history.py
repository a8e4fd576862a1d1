"""Time Travel for the emulator: bookmarks, and snapshots to restore them.

Every committed write makes a new version of a database; its bookmark looks like D1's
(``00000085-00000000-00000000-<32 hex>``) and names the version. D1 keeps every version for 30 days; the
emulator keeps snapshots, which is enough to restore what a client can name:

* the version a bookmark was handed out for (``/time_travel/bookmark``, an import's ``final_bookmark``, a
  restore's ``previous_bookmark``) is copied aside before the next request can change it;
* otherwise a version is copied at most once every ``interval`` seconds (60 by default, D1's timestamps are
  per minute), so a timestamp restores the newest copy made at or before it.

At most ``keep`` snapshots are kept per database (the oldest go first). Snapshots live beside the database, in
``<uuid>.history/``, with an ``index.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import apsw

from d1sync.emulator.store import Store
from d1sync.errors import ApiError

__all__ = ["History", "parse_timestamp"]


@dataclass
class _Version:
    version: int
    at: float  # when it was committed (Unix time)
    file: str | None = None  # its snapshot, if one was kept


def parse_timestamp(text: str) -> float:
    """A Unix timestamp or an ISO 8601 time (``2026-01-02T03:04:05Z``), as Unix seconds (else 7400)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(7400, 400, f"The request is malformed: invalid timestamp {text[:64]!r}") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class History:
    """The versions of one database (see the module docstring); call every method holding ``store.lock``."""

    def __init__(
        self,
        store: Store,
        database_id: str,
        *,
        interval: float = 60.0,
        keep: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.database_id = database_id
        self.folder = store.path.with_name(f"{database_id}.history")
        self.interval = interval
        self.keep = keep
        self.clock = clock
        self._versions: list[_Version] = []
        self._handed_out: set[int] = set()
        index = self.folder / "index.json"
        if index.exists():
            saved = json.loads(index.read_text())
            self._versions = [_Version(**v) for v in saved["versions"] if v.get("file")]
        # After a restart the file may have changed unseen: it is a version of its own.
        self._current = _Version(max((v.version for v in self._versions), default=-1) + 1, self.clock())
        self._opened = self._current.at
        store.on_commit = self._committed

    # -- bookmarks ---------------------------------------------------------------------------------------

    def bookmark(self, version: int) -> str:
        digest = hashlib.sha256(f"{self.database_id}:{version}".encode()).hexdigest()[:32]
        return f"{version:08x}-00000000-00000000-{digest}"

    def _version_of(self, bookmark: str) -> int:
        head = bookmark.split("-", 1)[0]
        try:
            # At most 16 hex digits: a longer number would not even print in decimal for the check below.
            version = int(head, 16) if len(head) <= 16 else -1
        except ValueError:
            version = -1
        if version < 0 or self.bookmark(version) != bookmark:
            raise ApiError(7400, 400, f"The request is malformed: invalid bookmark {bookmark[:80]!r}")
        return version

    def current_bookmark(self) -> str:
        """The bookmark of the database as it is now; its state is kept before anything changes it."""
        self._handed_out.add(self._current.version)
        return self.bookmark(self._current.version)

    def bookmark_at(self, timestamp: float) -> str:
        """The bookmark of the newest state the emulator can restore that was committed at or before
        ``timestamp``."""
        if self._current.at <= timestamp:
            return self.current_bookmark()
        kept = [v for v in self._versions if v.at <= timestamp]
        if not kept:
            raise ApiError(7500, 400, "No bookmark found for the given timestamp: it is older than the history kept")
        return self.bookmark(kept[-1].version)

    # -- snapshots ---------------------------------------------------------------------------------------

    def before_request(self) -> None:
        """Keep the current state if a client can name it, or if the last copy is older than the interval."""
        current = self._current
        if current.file is not None:
            return
        last = self._versions[-1].at if self._versions else self._opened
        if current.version in self._handed_out or self.clock() - last >= self.interval:
            self._keep_current()

    def _keep_current(self) -> None:
        current = self._current
        if current.file is not None:
            return
        self.folder.mkdir(exist_ok=True)
        target = self.folder / f"{current.version:08d}.sqlite3"
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        destination = apsw.Connection(os.fspath(target))
        try:
            with destination.backup("main", self.store.connection, "main") as backup:
                backup.step()
        finally:
            destination.close()
        current.file = target.name
        self._versions.append(current)
        while len(self._versions) > self.keep:
            dropped = self._versions.pop(0)
            if dropped.file and all(v.file != dropped.file for v in self._versions):
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / dropped.file).unlink()
        self._save()

    def _save(self) -> None:
        document = {"versions": [asdict(v) for v in self._versions]}
        (self.folder / "index.json").write_text(json.dumps(document, indent=1))

    def _committed(self) -> None:
        self._current = _Version(self._current.version + 1, self.clock())

    # -- restore -----------------------------------------------------------------------------------------

    def restore(self, bookmark: str) -> dict[str, Any]:
        """Put the database back as it was at ``bookmark``; D1's answer (``bookmark``, ``previous_bookmark``)."""
        version = self._version_of(bookmark)
        previous = self.current_bookmark()
        self._keep_current()  # so the previous state can be restored in turn
        if version != self._current.version:
            kept = next((v for v in self._versions if v.version == version and v.file), None)
            if kept is None or kept.file is None:
                raise ApiError(7500, 400, f"Bookmark {bookmark} is not in the history the emulator kept")
            self.store.replace_with(self.folder / kept.file)
            self._current = _Version(self._current.version + 1, self.clock(), kept.file)
            self._versions.append(self._current)
            self._save()
        return {
            "bookmark": self.bookmark(self._current.version),
            "previous_bookmark": previous,
            "message": f"Restored database {self.database_id} to bookmark {bookmark}",
        }
