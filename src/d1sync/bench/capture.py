"""Benchmark 2: what capture costs the writer. The same writes go to a tracked table (its triggers append to
the change log inside the writer's transaction) and to an identical untracked table in the same file, with the
same connection settings, in interleaved rounds so neither side gets the warmer cache or the quieter moment.

Two tables: the bench's 8-column table without secondary indexes (``bench``), and the demo's ``messages``
table, a TEXT key, 12 columns and two secondary indexes, as an agent daemon writes it (``messages``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from d1sync.bench.data import COLUMNS, create_table, fill_rows
from d1sync.sqlite import connect, remove_database
from d1sync.sync import Outbox
from d1sync.sync.store.log import LIVE

__all__ = ["CaptureOutcome", "CaptureTable", "run_capture"]

TRACKED = "capture_tracked"
PLAIN = "capture_plain"

Clock = Callable[[], float]


@dataclass
class CaptureOutcome:
    """Write rates (rows per second) into a tracked and an untracked table, per transaction size."""

    table: str
    rows_per_transaction: int
    transactions: int
    rounds: int
    tracked_rows_per_second: float
    plain_rows_per_second: float

    @property
    def ratio(self) -> float:
        """Tracked rate / untracked rate (1.0 = capture is free)."""
        return self.tracked_rows_per_second / self.plain_rows_per_second if self.plain_rows_per_second else 0.0

    @property
    def cost_us(self) -> float:
        """What capture adds to each written row, in microseconds."""
        return (1 / self.tracked_rows_per_second - 1 / self.plain_rows_per_second) * 1e6

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "cost_us_per_row": self.cost_us}


class CaptureTable:
    """How one benchmark table is made, filled and written."""

    def __init__(self, kind: str) -> None:
        if kind not in ("bench", "messages"):
            raise ValueError(f"unknown capture table {kind!r}; choose bench or messages")
        self.kind = kind

    def create(self, conn: sqlite3.Connection, name: str) -> None:
        if self.kind == "bench":
            create_table(conn, name)
            return
        from d1sync.demo import DEMO_SCHEMA

        for statement in DEMO_SCHEMA.split(";"):
            if "messages" in statement and "CREATE" in statement:
                conn.execute(statement.replace("messages", name))

    def insert_sql(self, name: str) -> str:
        width = len(COLUMNS) if self.kind == "bench" else 12
        columns = f" ({', '.join(COLUMNS)})" if self.kind == "bench" else ""
        return f"INSERT INTO {name}{columns} VALUES ({', '.join('?' * width)})"

    def rows(self, count: int) -> list[tuple[Any, ...]]:
        if self.kind == "bench":
            return _source_rows(count)
        platforms = ("web", "slack", "discord", "telegram")
        return [
            (
                f"msg-{i:09d}",
                platforms[i % 4],
                f"conv-{i % 997}",
                "user" if i % 2 else "assistant",
                f"message {i}: " + "the quick brown fox jumps over the lazy dog " * 4,
                None if i % 3 else f"summary {i}",
                1_700_000_000_000 + i * 1000,
                None,
                f"https://example.com/page/{i % 101}",
                None,
                None,
                1_700_000_000_000 + i * 1000,
            )
            for i in range(count)
        ]


def _source_rows(count: int) -> list[tuple[Any, ...]]:
    """``count`` rows of the benchmark data (generated once, so both tables receive the very same values)."""
    conn = connect(":memory:")
    try:
        create_table(conn, "source")
        fill_rows(conn, 1, count, "source")
        return conn.execute(f"SELECT {', '.join(COLUMNS)} FROM source ORDER BY id").fetchall()
    finally:
        conn.close()


def _write(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]], per_tx: int, clock: Clock) -> float:
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
    table: str = "bench",
    rounds: int = 10,
    clock: Clock = time.perf_counter,
) -> CaptureOutcome:
    """Write ``transactions`` transactions of ``rows_per_transaction`` rows into each table, in ``rounds``.

    ``table``: ``bench`` (the bench's table) or ``messages`` (the demo's, with its indexes).
    """
    kind = CaptureTable(table)
    path = workdir / f"capture-{table}-{rows_per_transaction}.db"
    rounds = max(1, min(rounds, transactions))
    per_round = max(1, transactions // rounds)
    total_rows = per_round * rounds * rows_per_transaction
    rows = kind.rows(total_rows)
    conn = connect(path)
    try:
        kind.create(conn, TRACKED)
        kind.create(conn, PLAIN)
        with Outbox(path) as outbox:
            outbox.track(TRACKED)
        seconds = {TRACKED: 0.0, PLAIN: 0.0}
        step = per_round * rows_per_transaction
        for r in range(rounds):
            chunk = rows[r * step : (r + 1) * step]
            # Alternate which table goes first, so any drift in the machine hits both equally.
            order = (TRACKED, PLAIN) if r % 2 == 0 else (PLAIN, TRACKED)
            for name in order:
                seconds[name] += _write(conn, kind.insert_sql(name), chunk, rows_per_transaction, clock)
        captured = conn.execute(f"SELECT count(*) FROM _d1sync_changes WHERE {LIVE}").fetchone()[0]
        if captured != total_rows:
            raise RuntimeError(f"capture recorded {captured} changes for {total_rows} tracked writes")
    finally:
        conn.close()
    remove_database(path)
    return CaptureOutcome(
        table=table,
        rows_per_transaction=rows_per_transaction,
        transactions=per_round * rounds,
        rounds=rounds,
        tracked_rows_per_second=total_rows / seconds[TRACKED],
        plain_rows_per_second=total_rows / seconds[PLAIN],
    )
