"""Benchmark 3: commit-to-visibility latency. A writer commits one row at a time through its own sqlite3
connection (as application code does); an idle :class:`~d1sync.sync.SyncWorker` running its loop in a
thread notices the commit (``PRAGMA data_version`` polling), sends it, and the row becomes visible on the
remote. Visibility is read straight from the emulator's SQLite file, so observing costs no request.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from d1sync.bench.data import COLUMNS, TABLE, create_table, fill_rows, make_backlog
from d1sync.bench.remote import BenchEmulator
from d1sync.errors import D1SyncError
from d1sync.sqlite import connect
from d1sync.sync import SyncConfig, SyncWorker
from d1sync.sync.store.log import LIVE

__all__ = ["LatencyOutcome", "percentile", "run_latency"]

Clock = Callable[[], float]


def percentile(samples: list[float], p: int) -> float:
    """The ``p``-th percentile (1-99) by linear interpolation between closest ranks."""
    if len(samples) < 2:
        return samples[0] if samples else 0.0
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


@dataclass
class LatencyOutcome:
    samples: int
    poll_interval: float
    min_interval: float
    """The worker's floor between a wake-up and its pass (it gathers a burst of commits into one request)."""
    seconds: list[float] = field(repr=False)

    @property
    def p50(self) -> float:
        return percentile(self.seconds, 50)

    @property
    def p95(self) -> float:
        return percentile(self.seconds, 95)

    @property
    def p99(self) -> float:
        return percentile(self.seconds, 99)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["seconds"]
        data.update(
            p50=self.p50,
            p95=self.p95,
            p99=self.p99,
            mean=statistics.fmean(self.seconds) if self.seconds else 0.0,
            min=min(self.seconds, default=0.0),
            max=max(self.seconds, default=0.0),
        )
        return data


def _wait_for(check: Callable[[], bool], clock: Clock, timeout: float, what: str) -> None:
    deadline = clock() + timeout
    while not check():
        if clock() > deadline:
            raise D1SyncError(f"latency benchmark: {what} did not happen within {timeout:.0f}s")
        time.sleep(0.0005)


def _pending(conn: sqlite3.Connection) -> int:
    return int(conn.execute(f"SELECT count(*) FROM _d1sync_changes WHERE {LIVE}").fetchone()[0])


def run_latency(
    emulator: BenchEmulator,
    workdir: Path,
    *,
    samples: int,
    poll_interval: float = 0.05,
    seed: int = 1,
    clock: Clock = time.perf_counter,
    timeout: float = 30.0,
) -> LatencyOutcome:
    """Time ``samples`` single-row commits from the writer's COMMIT to the row's visibility on the remote."""
    path = make_backlog(workdir / "latency.db", 0)
    database_id = emulator.fresh_database("latency")
    remote = sqlite3.connect(f"file:{emulator.database_path(database_id)}?mode=ro", uri=True, isolation_level=None)
    writer = connect(path)
    sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    row_source = connect(":memory:")
    create_table(row_source, "source")
    fill_rows(row_source, 1, samples, "source")
    rows = row_source.execute(f"SELECT {', '.join(COLUMNS)} FROM source ORDER BY id").fetchall()
    row_source.close()
    rng = random.Random(seed)
    client = emulator.client(database_id)
    worker = SyncWorker(path, client, SyncConfig(poll_interval=poll_interval))
    thread = threading.Thread(target=worker.run, kwargs={"idle_interval": 5.0}, name="bench-latency-worker")
    thread.start()
    measured: list[float] = []
    try:
        for row in rows:
            # A random pause puts each commit at a random point of the worker's polling cycle.
            time.sleep(rng.uniform(0, poll_interval))
            writer.execute("BEGIN IMMEDIATE")
            writer.execute(sql, row)
            writer.execute("COMMIT")
            committed = clock()

            def visible(key: Any = row[0]) -> bool:
                return remote.execute(f"SELECT 1 FROM {TABLE} WHERE id = ?", (key,)).fetchone() is not None

            _wait_for(visible, clock, timeout, f"row {row[0]} reaching the remote")
            measured.append(clock() - committed)
            # Idle again: the worker has acknowledged the change before the next commit.
            _wait_for(lambda: _pending(writer) == 0, clock, timeout, "the acknowledgement")
    finally:
        worker.stop(flush_timeout=5.0)
        thread.join(timeout=30)
        worker.close()
        client.close()
        writer.close()
        remote.close()
    return LatencyOutcome(
        samples=len(measured), poll_interval=poll_interval, min_interval=worker.min_interval, seconds=measured
    )
