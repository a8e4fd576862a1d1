"""Benchmark 2: what capture costs the writer. The same writes go to a tracked table (its triggers append to
the change log inside the writer's transaction) and to an identical untracked table in the same file, with the
same connection settings, in interleaved rounds so neither side gets the warmer cache or the quieter moment.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from d1sync.bench.data import COLUMNS, create_table, fill_rows
from d1sync.outbox import Outbox
from d1sync.sqlite import connect

__all__ = ["CaptureOutcome", "run_capture"]

TRACKED = "capture_tracked"
PLAIN = "capture_plain"

Clock = Callable[[], float]


@dataclass
class CaptureOutcome:
    """Write rates (rows per second) into a tracked and an untracked table, per transaction size."""

    rows_per_transaction: int
    transactions: int
    rounds: int
    tracked_rows_per_second: float
    plain_rows_per_second: float

    @property
    def ratio(self) -> float:
        """Tracked rate / untracked rate (1.0 = capture is free)."""
        return self.tracked_rows_per_second / self.plain_rows_per_second if self.plain_rows_per_second else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _source_rows(count: int) -> list[tuple[Any, ...]]:
    """``count`` rows of the benchmark data (generated once, so both tables receive the very same values)."""
    conn = connect(":memory:")
    try:
        create_table(conn, "source")
        fill_rows(conn, 1, count, "source")
        return conn.execute(f"SELECT {', '.join(COLUMNS)} FROM source ORDER BY id").fetchall()
    finally:
        conn.close()


def _write(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]], per_tx: int, clock: Clock) -> float:
    sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    started = clock()
    for start in range(0, len(rows), per_tx):
        conn.execute("BEGIN IMMEDIATE")
        if per_tx == 1:
            conn.execute(sql, rows[start])
        else:
            conn.executemany(sql, rows[start : start + per_tx])
        conn.execute("COMMIT")
    return clock() - started


def run_capture(
    workdir: Path,
    *,
    transactions: int,
    rows_per_transaction: int,
    rounds: int = 10,
    clock: Clock = time.perf_counter,
) -> CaptureOutcome:
    """Write ``transactions`` transactions of ``rows_per_transaction`` rows into each table, in ``rounds``."""
    path = workdir / f"capture-{rows_per_transaction}.db"
    rounds = max(1, min(rounds, transactions))
    per_round = max(1, transactions // rounds)
    total_rows = per_round * rounds * rows_per_transaction
    rows = _source_rows(total_rows)
    conn = connect(path)
    try:
        create_table(conn, TRACKED)
        create_table(conn, PLAIN)
        with Outbox(path) as outbox:
            outbox.track(TRACKED)
        seconds = {TRACKED: 0.0, PLAIN: 0.0}
        step = per_round * rows_per_transaction
        for r in range(rounds):
            chunk = rows[r * step : (r + 1) * step]
            # Alternate which table goes first, so any drift in the machine hits both equally.
            order = (TRACKED, PLAIN) if r % 2 == 0 else (PLAIN, TRACKED)
            for table in order:
                seconds[table] += _write(conn, table, chunk, rows_per_transaction, clock)
        captured = conn.execute("SELECT count(*) FROM _d1sync_changes").fetchone()[0]
        if captured != total_rows:
            raise RuntimeError(f"capture recorded {captured} changes for {total_rows} tracked writes")
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return CaptureOutcome(
        rows_per_transaction=rows_per_transaction,
        transactions=per_round * rounds,
        rounds=rounds,
        tracked_rows_per_second=total_rows / seconds[TRACKED],
        plain_rows_per_second=total_rows / seconds[PLAIN],
    )
