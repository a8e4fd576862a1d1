"""Verify and schema-change convergence through the emulator at the bench's latency and rate limit.

Three figures, each with the conditions that produced it:
1. verify: rows compared per second on a synced table, and the requests spent per 10,000 rows;
2. repair: after a remote edit (a Worker's, or a rewound restore), the time for ``verify --repair`` to converge;
3. ADD COLUMN: after ``ALTER TABLE ... ADD COLUMN`` on both sides, the time until every row carries the new
   column's local value on the remote (the worker re-sends the whole table), checked by verify.

.venv/bin/python benchmarks/convergence.py --rows 200000 --add-column-rows 100000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from d1sync.bench import machine_info
from d1sync.bench.data import TABLE, make_backlog
from d1sync.bench.remote import BenchEmulator, CountingTransport, pacing_limiter
from d1sync.client import D1Client
from d1sync.sync import SyncWorker, drain

console = Console()


def _synced(emulator: BenchEmulator, root: Path, name: str, rows: int) -> tuple[Path, str]:
    """A local file of ``rows`` benchmark rows, synced (without latency or rate limit) to a fresh database."""
    emulator.server.app.state.faults.update(latency=0.0)
    try:
        database_id = emulator.fresh_database(name)
        path = make_backlog(root / f"{name}.db", rows)
        with emulator.client(database_id) as client, SyncWorker(path, client) as worker:
            report = drain(worker)
            assert report.drained, report
    finally:
        emulator.server.app.state.faults.update(latency=emulator.latency)
    return path, database_id


def _client(emulator: BenchEmulator, database_id: str, rate: float) -> tuple[D1Client, CountingTransport]:
    transport = CountingTransport()
    return emulator.client(database_id, rate_limiter=pacing_limiter(rate), transport=transport), transport


def bench_verify(emulator: BenchEmulator, root: Path, rows: int, rate: float, page: int) -> dict[str, Any]:
    path, database_id = _synced(emulator, root, f"verify-{page}", rows)
    client, transport = _client(emulator, database_id, rate)
    with client, SyncWorker(path, client) as worker:
        started = time.monotonic()
        report = worker.verify(page=page)
        seconds = time.monotonic() - started
    assert report.equal, report
    return {
        "rows": rows,
        "page": page,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "requests": transport.requests,
        "requests_per_10k_rows": transport.requests / rows * 10_000,
    }


def bench_repair(emulator: BenchEmulator, root: Path, rows: int, rate: float, edited: int) -> dict[str, Any]:
    path, database_id = _synced(emulator, root, "repair", rows)
    remote = sqlite3.connect(emulator.database_path(database_id))
    with remote:  # a Worker edits every (rows // edited)-th row behind the mirror's back
        remote.execute(f"UPDATE {TABLE} SET note = 'edited remotely' WHERE id % ? = 0", (rows // edited,))
    remote.close()
    client, transport = _client(emulator, database_id, rate)
    with client, SyncWorker(path, client) as worker:
        started = time.monotonic()
        found = worker.verify(repair=True)
        drain(worker)
        final = worker.verify()
        seconds = time.monotonic() - started
    assert final.equal, final
    return {
        "rows": rows,
        "different": found.tables[0].different,
        "seconds": seconds,
        "requests": transport.requests,
    }


def bench_add_column(emulator: BenchEmulator, root: Path, rows: int, rate: float) -> dict[str, Any]:
    path, database_id = _synced(emulator, root, "add-column", rows)
    client, transport = _client(emulator, database_id, rate)
    with client, SyncWorker(path, client) as worker:
        client.exec(f"ALTER TABLE {TABLE} ADD COLUMN region TEXT")  # as docs/sync.md says: remote first
        local = sqlite3.connect(path)
        local.execute(f"ALTER TABLE {TABLE} ADD COLUMN region TEXT NOT NULL DEFAULT 'eu-west'")
        local.close()
        started = time.monotonic()
        report = drain(worker)
        converged = time.monotonic() - started
        final = worker.verify()
    assert report.drained and final.equal, (report, final)
    return {
        "rows": rows,
        "seconds": converged,
        "rows_sent": report.rows,
        "requests": transport.requests - final.requests,
        "rows_per_request": report.rows / max(report.requests, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows verified (default 200,000)")
    parser.add_argument("--add-column-rows", type=int, default=100_000, help="rows re-sent (default 100,000)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulator latency per request (default 50)")
    parser.add_argument("--rate-limit", type=float, default=4.0, help="requests per second (default 4)")
    parser.add_argument("--page", type=int, action="append", help="verify page sizes (default 2,000 and 10,000)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine_info(), "latency_ms": args.latency_ms, "rate_limit": args.rate_limit}
    with tempfile.TemporaryDirectory(prefix="d1sync-convergence-") as tmp:
        root = Path(tmp)
        with BenchEmulator(root / "emulator", latency=args.latency_ms / 1000) as emulator:
            results["verify"] = [
                bench_verify(emulator, root, args.rows, args.rate_limit, page) for page in args.page or [2_000, 10_000]
            ]
            results["repair"] = bench_repair(emulator, root, args.rows, args.rate_limit, edited=100)
            results["add_column"] = bench_add_column(emulator, root, args.add_column_rows, args.rate_limit)
    conditions = f"emulator latency {args.latency_ms:g} ms, {args.rate_limit:g} requests/s"
    table = Table("figure", "result", title=f"convergence ({conditions})")
    for run in results["verify"]:
        table.add_row(
            f"verify {run['rows']:,} rows, page {run['page']:,}",
            f"{run['rows_per_second']:,.0f} rows/s; {run['requests_per_10k_rows']:.1f} requests per 10,000 rows",
        )
    repair = results["repair"]
    table.add_row(
        f"verify --repair, {repair['different']:,} of {repair['rows']:,} rows edited remotely",
        f"{repair['seconds']:.1f}s to equal, {repair['requests']} requests",
    )
    add = results["add_column"]
    table.add_row(
        f"ADD COLUMN on {add['rows']:,} rows",
        f"{add['seconds']:.1f}s to converge, {add['requests']} requests ({add['rows_per_request']:,.0f} rows each)",
    )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
