"""Benchmark 1: drain rate of a backlog, three strategies side by side on the same emulator and data.

(a) ``one_row``: one upsert request per row, the loop most D1 sync code runs today.
(b) ``multi_values``: ``INSERT ... VALUES (?,...),(?,...) ON CONFLICT DO UPDATE`` statements of as many rows
    as fit D1's 100 bound parameters, packed into one batch request up to the same byte budget d1sync's
    planner uses (no statement cap: the strongest honest version of that design).
(c) ``d1sync``: the outbox and :class:`~d1sync.sync.SyncWorker` with default limits, in batches.
(d) ``d1sync_import``: the same worker with ``via="import"``: the backlog through D1's import (the upload to
    the signed URL is counted apart: it is not an API request).

(a) and (b) keep a durable cursor (the last acknowledged id) in the local file, as a real syncer must; (c)
acknowledges change rows. Every strategy stops when its backlog is drained or its time budget is spent, and
its rate is what was acknowledged divided by the time it ran. Afterwards every remote row is compared with
the local row of the same id, types included.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from d1sync.bench.data import COLUMNS, TABLE, make_backlog
from d1sync.bench.remote import BenchEmulator, CountingTransport, compare_with_remote, pacing_limiter
from d1sync.client import D1Client
from d1sync.errors import ConfigError
from d1sync.sqlite import connect
from d1sync.sync import Limits, SyncConfig, SyncWorker
from d1sync.sync.config import Via
from d1sync.values import encode_params

__all__ = ["STRATEGIES", "DrainOutcome", "multi_values_sql", "run_drain"]

MAX_PARAMS = 100
ROWS_PER_VALUES_STATEMENT = MAX_PARAMS // len(COLUMNS)
_PAGE = 5_000
_READ_AHEAD = 40_000
"""Rows (b) holds in memory: well over one full request (about 13,000 of these rows fill 2 MB)."""

STRATEGIES = {
    "one_row": "(a) one request per row",
    "multi_values": f"(b) multi-row VALUES, {ROWS_PER_VALUES_STATEMENT} rows/statement, batched",
    "d1sync": "(c) d1sync planner (json_each)",
    "d1sync_import": "(d) d1sync through D1's import",
}


@dataclass
class DrainOutcome:
    """What one strategy achieved within its budget."""

    strategy: str
    label: str
    rows: int
    requests: int
    write_requests: int
    bytes_sent: int
    seconds: float
    drained: bool
    remote_rows: int
    remote_mismatches: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_request(self) -> float:
        return self.rows / self.write_requests if self.write_requests else 0.0

    @property
    def verified(self) -> bool:
        return self.remote_rows == self.rows and self.remote_mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            rows_per_second=self.rows_per_second, rows_per_request=self.rows_per_request, verified=self.verified
        )
        return data


def multi_values_sql(rows: int) -> str:
    """An idempotent upsert of ``rows`` rows through ``VALUES`` (``unhex(?)`` turns hex text into the BLOB)."""
    placeholders = "(" + ", ".join("unhex(?)" if c == "payload" else "?" for c in COLUMNS) + ")"
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "id")
    return (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES {', '.join([placeholders] * rows)} "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


class _Cursor:
    """The (a)/(b) bookkeeping: rows after the last acknowledged id, and a durable cursor."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS bench_cursor (k INTEGER PRIMARY KEY, last_id INTEGER)")
        self.last_id = 0

    def page(self, after: int, limit: int = _PAGE) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows with ids above ``after``, in id order."""
        return self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        ).fetchall()

    def acknowledge(self, last_id: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO bench_cursor (k, last_id) VALUES (1, ?)", (last_id,))
        self.last_id = last_id

    def close(self) -> None:
        self.conn.close()


Clock = Callable[[], float]


def _one_row(path: Path, client: D1Client, budget: float, clock: Clock) -> tuple[int, int, bool]:
    cursor = _Cursor(path)
    sql = multi_values_sql(1)
    rows = requests = 0
    start = clock()
    try:
        while True:
            page = cursor.page(cursor.last_id)
            if not page:
                return rows, requests, True
            for row in page:
                if clock() - start >= budget:
                    return rows, requests, False
                client.prepare(sql).bind(*row).run()
                requests += 1
                rows += 1
                cursor.acknowledge(int(row[0]))
    finally:
        cursor.close()


def _pack(rows: Sequence[tuple[Any, ...]], max_bytes: int) -> tuple[list[tuple[str, list[Any]]], int]:
    """Statements of up to 12 rows each, as many as fit ``max_bytes`` of request body; also the rows used."""
    statements: list[tuple[str, list[Any]]] = []
    size = 16
    used = 0
    for start in range(0, len(rows), ROWS_PER_VALUES_STATEMENT):
        chunk = rows[start : start + ROWS_PER_VALUES_STATEMENT]
        sql = multi_values_sql(len(chunk))
        params = [value for row in chunk for value in row]
        body = {"sql": sql, "params": encode_params(params)}
        cost = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        if statements and size + cost > max_bytes:
            break
        statements.append((sql, params))
        size += cost
        used += len(chunk)
    return statements, used


def _multi_values(path: Path, client: D1Client, budget: float, clock: Clock, max_bytes: int) -> tuple[int, int, bool]:
    cursor = _Cursor(path)
    rows = requests = 0
    start = clock()
    pending: list[tuple[Any, ...]] = []
    read_after = 0
    try:
        while clock() - start < budget:
            # Top up before packing, so every request is full: a short one would waste a rate-limit token.
            if len(pending) < _READ_AHEAD // 2:
                more = cursor.page(read_after, _READ_AHEAD - len(pending))
                if more:
                    read_after = int(more[-1][0])
                    pending += more
            if not pending:
                return rows, requests, True
            statements, used = _pack(pending, max_bytes)
            client.batch([client.prepare(sql).bind(*params) for sql, params in statements])
            requests += 1
            rows += used
            cursor.acknowledge(int(pending[used - 1][0]))
            pending = pending[used:]
        return rows, requests, not pending and not cursor.page(read_after, 1)
    finally:
        cursor.close()


def _d1sync(
    path: Path, client: D1Client, budget: float, clock: Clock, limits: Limits, via: Via = "batch"
) -> tuple[int, int, bool]:
    worker = SyncWorker(path, client, SyncConfig(limits=limits, via=via))
    start = clock()
    try:
        while clock() - start < budget:
            result = worker.sync_once()
            if result.state in ("paused", "backoff", "locked"):
                raise ConfigError(f"the d1sync strategy stopped: {result.state}: {result.error}")
            if not result.more and worker.pending() == 0:
                return worker.counters.rows, worker.counters.requests, True
        return worker.counters.rows, worker.counters.requests, worker.pending() == 0
    finally:
        worker.close()


def run_drain(
    emulator: BenchEmulator,
    workdir: Path,
    *,
    rows: int,
    budget: float,
    requests_per_second: float,
    strategies: Sequence[str] = tuple(STRATEGIES),
    limits: Limits | None = None,
    clock: Clock = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> list[DrainOutcome]:
    """Drain a backlog of ``rows`` rows with each strategy; see the module docstring."""
    limits = limits or Limits()
    template = make_backlog(workdir / "drain-template.db", rows)
    outcomes = []
    for name in strategies:
        if progress:
            progress(f"drain: {STRATEGIES[name]}")
        local = workdir / f"drain-{name}.db"
        shutil.copyfile(template, local)
        database_id = emulator.fresh_database(f"drain-{name}")
        transport = CountingTransport()
        client = emulator.client(database_id, rate_limiter=pacing_limiter(requests_per_second), transport=transport)
        started = clock()
        with client:
            if name == "one_row":
                acked, writes, drained = _one_row(local, client, budget, clock)
            elif name == "multi_values":
                acked, writes, drained = _multi_values(local, client, budget, clock, limits.max_request_bytes)
            elif name in ("d1sync", "d1sync_import"):
                via: Via = "import" if name == "d1sync_import" else "batch"
                acked, writes, drained = _d1sync(local, client, budget, clock, limits, via)
            else:
                raise ConfigError(f"unknown drain strategy {name!r}; choose from {', '.join(STRATEGIES)}")
        seconds = clock() - started
        remote_rows, mismatches = compare_with_remote(local, emulator.database_path(database_id))
        outcomes.append(
            DrainOutcome(
                strategy=name,
                label=STRATEGIES[name],
                rows=acked,
                requests=transport.requests,
                write_requests=writes,
                bytes_sent=transport.bytes_sent,
                seconds=seconds,
                drained=drained,
                remote_rows=remote_rows,
                remote_mismatches=mismatches,
            )
        )
        local.unlink()
    template.unlink()
    return outcomes
