"""Many engines in one process: SyncWorkers on different files share one client (one rate limiter) and one
thread pool, and an outside scheduler drives them pass by pass from one thread, with no thread of their own."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.outbox import Limits, Outbox, SyncConfig, SyncWorker

from ..conftest import Closer
from .conftest import emulator_client, emulator_file, open_file

ENGINES = 50
ROWS = 40
DDL = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"


def _tenant(folder: Path, number: int) -> Path:
    """A file with ``ROWS`` tracked rows whose keys no other file uses (they all sync to one database)."""
    path = folder / f"tenant-{number:02d}.db"
    with LocalDatabase(path) as app:
        app.exec(DDL)
        Outbox(path).track("notes")
        with app.atomic() as conn:
            rows = [(number * 1_000 + i, f"tenant {number} note {i}", i) for i in range(ROWS)]
            conn.executemany("INSERT INTO notes VALUES (?, ?, ?)", rows)
    return path


class CountingPool(ThreadPoolExecutor):
    """The scheduler's pool, counting the sends that ran on it."""

    submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def _engine_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(("d1sync-send", "d1sync-worker")))


def test_fifty_engines_on_fifty_files_share_a_client_and_a_pool_and_drain_from_one_thread(
    tmp_path: Path, emulator: EmulatorServer, closer: Closer
) -> None:
    client = closer(emulator_client(emulator))
    client.exec(DDL)
    paths = [_tenant(tmp_path, n) for n in range(ENGINES)]
    pool = CountingPool(max_workers=2, thread_name_prefix="scheduler-pool")
    # Small windows, so engines read ahead (through the shared pool) and need several passes each.
    config = SyncConfig(window=16, limits=Limits(max_statements=2, max_value_bytes=1_000), pool=pool)
    engines = [closer(SyncWorker(path, client, config)) for path in paths]
    try:
        for _ in range(ROWS):  # a round-robin scheduler: one pass of each engine per round
            results = [engine.step() for engine in engines]
            assert {r.state for r in results} <= {"synced", "idle"}, [r for r in results if r.error]
            if all(r.state == "idle" for r in results):
                break
        assert [engine.pending() for engine in engines] == [0] * ENGINES
        assert sum(engine.counters.rows for engine in engines) == ENGINES * ROWS
        assert _engine_threads() == []  # the engines started no thread: sends ran on the scheduler's pool
        assert pool.submitted >= ENGINES
    finally:
        pool.shutdown(wait=True)
    assert all(engine.target is client for engine in engines)
    with closing(open_file(emulator_file(emulator))) as remote:
        count, low, high = remote.execute("SELECT count(*), min(id), max(id) FROM notes").fetchone()
    assert (count, low, high) == (ENGINES * ROWS, 0, (ENGINES - 1) * 1_000 + ROWS - 1)
