"""Replication figures through the emulator: rows written remotely per replicated write, and pull lag.

Two figures:

* **Rows written remotely per row write**, push-only table against two-way table, for inserts, updates and
  deletes of ``--rows`` rows pushed by the worker, then the cost of pruning the log those writes left. The
  counts are the emulator's ``meta.rows_written`` (SQLite's change counter, which, as D1's does, includes
  the rows written by triggers).
* **Pull lag**: a Worker writes one row to the remote (a direct write, origin NULL) at random moments; a
  replica runs ``worker.start()`` with the default pull interval (1 s). The lag is from the moment the
  Worker's write request returned (the commit happened before) to the moment the row is visible in the
  replica's file (polled every 2 ms). p50 / p95 / max over ``--samples`` writes.

.venv/bin/python benchmarks/replication.py --json replication.json
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from d1sync.bench import machine_info
from d1sync.bench.remote import BenchEmulator
from d1sync.database import Database, ExecResult, RawResult, Result, Statement
from d1sync.sync import Outbox, SyncConfig, SyncWorker, drain
from d1sync.sync.config import PullOptions
from d1sync.sync.remote import prune

console = Console()
SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"


class Metered(Database):
    """Forwards to a Database and adds up ``meta.rows_written`` of every statement it runs."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.written = 0

    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        results = self.inner.batch_raw([self.inner.prepare(s.sql).bind(*s.params) for s in statements])
        self.written += sum(r.meta.rows_written for r in results)
        return results

    def exec(self, sql: str) -> ExecResult:
        return self.inner.exec(sql)

    def _execute(self, statement: Statement) -> Result:
        return self.batch_raw([statement])[0].to_result()

    def _execute_raw(self, statement: Statement) -> RawResult:
        return self.batch_raw([statement])[0]


def rows_written(emulator: BenchEmulator, root: Path, rows: int, two_way: bool) -> dict[str, float]:
    """Rows written remotely per row write, for inserts, updates, deletes (and pruning, when two-way)."""
    database_id = emulator.fresh_database(f"written-{two_way}")
    path = root / f"written-{two_way}.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(SCHEMA)
    with emulator.client(database_id) as client:
        client.exec(SCHEMA)
        if two_way:
            Outbox(path).replicate("notes", target=client)
        else:
            Outbox(path).track("notes")
        metered = Metered(client)
        figures: dict[str, float] = {}
        steps: dict[str, tuple[str, object]] = {
            "insert": ("INSERT INTO notes SELECT value, 'note ' || value, value FROM json_each(?)", _numbers(rows)),
            "update": ("UPDATE notes SET body = body || ' edited', n = n + 1 WHERE id <= ?", rows),
            "delete": ("DELETE FROM notes WHERE id <= ?", rows),
        }
        with SyncWorker(path, metered, config=SyncConfig(pull=False)) as worker:
            assert drain(worker).drained
            for step, (sql, param) in steps.items():
                with closing(sqlite3.connect(path)) as conn, conn:
                    conn.execute(sql, (param,))
                before = metered.written
                assert drain(worker).drained
                figures[step] = (metered.written - before) / rows
        if two_way:
            with SyncWorker(path, client, config=SyncConfig(pull_options=PullOptions(interval=0.0))) as worker:
                drain(worker)
                drain(worker)  # the heartbeat now carries the cursor past every entry
            before = metered.written
            pruned = prune(metered)
            figures["prune"] = (metered.written - before) / max(pruned, 1)
            figures["pruned_entries"] = pruned
    return figures


def _numbers(rows: int) -> str:
    return json.dumps(list(range(1, rows + 1)))


def pull_lag(emulator: BenchEmulator, root: Path, samples: int, interval: float, seed: int) -> dict[str, float]:
    """Seconds from a Worker's write returning to the row being visible in a running replica's file."""
    rng = random.Random(seed)
    database_id = emulator.fresh_database("lag")
    path = root / "lag.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(SCHEMA)
    lags: list[float] = []
    with emulator.client(database_id) as client, emulator.client(database_id) as writer:
        client.exec(SCHEMA)
        Outbox(path).replicate("notes", target=client)
        with SyncWorker(path, client, config=SyncConfig(pull_options=PullOptions(interval=interval))) as worker:
            worker.start(idle_interval=5.0)
            reader = sqlite3.connect(path)
            for i in range(1, samples + 1):
                time.sleep(rng.uniform(0.05, interval * 1.5))
                writer.prepare("INSERT INTO notes (id, body) VALUES (?, 'from a Worker')").bind(i).run()
                returned = time.monotonic()
                while reader.execute("SELECT 1 FROM notes WHERE id = ?", (i,)).fetchone() is None:
                    time.sleep(0.002)
                lags.append(time.monotonic() - returned)
            reader.close()
    lags.sort()
    return {
        "samples": len(lags),
        "p50": statistics.median(lags),
        "p95": lags[int(0.95 * (len(lags) - 1))],
        "max": lags[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows per write step (default 10,000)")
    parser.add_argument("--samples", type=int, default=60, help="pull lag samples (default 60)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulator latency per request (default 50)")
    parser.add_argument("--interval", type=float, default=PullOptions().interval, help="pull interval (default 1 s)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine_info(), "latency_ms": args.latency_ms, "interval": args.interval}
    with tempfile.TemporaryDirectory(prefix="d1sync-replication-") as tmp:
        root = Path(tmp)
        with BenchEmulator(root / "emulator", latency=args.latency_ms / 1000) as emulator:
            results["push_only"] = rows_written(emulator, root, args.rows, two_way=False)
            results["two_way"] = rows_written(emulator, root, args.rows, two_way=True)
            results["pull_lag"] = pull_lag(emulator, root, args.samples, args.interval, seed=13)
    table = Table("figure", "push only", "two-way", title=f"replication (emulator latency {args.latency_ms:g} ms)")
    for step in ("insert", "update", "delete"):
        table.add_row(
            f"rows written remotely per row {step.rstrip('e')}ed",
            f"{results['push_only'][step]:.3f}",
            f"{results['two_way'][step]:.3f}",
        )
    table.add_row("rows written per log entry pruned", "-", f"{results['two_way']['prune']:.3f}")
    lag = results["pull_lag"]
    table.add_row(
        f"pull lag, interval {args.interval:g} s ({lag['samples']} samples)",
        "-",
        f"p50 {lag['p50'] * 1000:.0f} ms, p95 {lag['p95'] * 1000:.0f} ms, max {lag['max'] * 1000:.0f} ms",
    )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
