"""Clone rate through the emulator at the bench's latency and rate limit.

The figure: rows per second of ``clone()`` copying the benchmark table (8 columns of mixed types: REALs,
BLOBs, integers beyond 2^53, NULLs, non-ASCII text) from an emulator database into a new file, the final
verify of every row included, and the requests it spent. The client paces its requests at ``--rate-limit``
per second, and the emulator adds ``--latency-ms`` to each.

.venv/bin/python benchmarks/clone.py --rows 200000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from d1sync import clone
from d1sync.bench import machine_info
from d1sync.bench.data import make_backlog
from d1sync.bench.remote import BenchEmulator, CountingTransport, pacing_limiter
from d1sync.sync import SyncWorker, drain

console = Console()


def bench_clone(emulator: BenchEmulator, root: Path, rows: int, rate: float, page: int) -> dict[str, Any]:
    """Fill a fresh emulator database with ``rows`` rows (no latency), then time a clone of it."""
    emulator.server.app.state.faults.update(latency=0.0)
    try:
        database_id = emulator.fresh_database(f"clone-{page}")
        with emulator.client(database_id) as client, SyncWorker(make_backlog(root / "seed.db", rows), client) as w:
            assert drain(w).drained
    finally:
        emulator.server.app.state.faults.update(latency=emulator.latency)
        for leftover in root.glob("seed.db*"):
            leftover.unlink()
    transport = CountingTransport()
    client = emulator.client(database_id, rate_limiter=pacing_limiter(rate), transport=transport)
    target = root / f"clone-{page}.db"
    with client:
        started = time.monotonic()
        report = clone(client, target, page=page)
        seconds = time.monotonic() - started
    assert report.equal, report
    copied = sum(t.local_rows for t in report.tables)
    return {
        "rows": copied,
        "page": page,
        "seconds": seconds,
        "rows_per_second": copied / seconds,
        "requests": transport.requests,
        "file_bytes": target.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows cloned (default 200,000)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulator latency per request (default 50)")
    parser.add_argument("--rate-limit", type=float, default=4.0, help="requests per second (default 4)")
    parser.add_argument("--page", type=int, action="append", help="rows per page at most (default 10,000)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine_info(), "latency_ms": args.latency_ms, "rate_limit": args.rate_limit}
    with tempfile.TemporaryDirectory(prefix="d1sync-clone-") as tmp:
        root = Path(tmp)
        with BenchEmulator(root / "emulator", latency=args.latency_ms / 1000) as emulator:
            results["clone"] = [
                bench_clone(emulator, root, args.rows, args.rate_limit, page) for page in args.page or [10_000]
            ]
    conditions = f"emulator latency {args.latency_ms:g} ms, {args.rate_limit:g} requests/s"
    table = Table("figure", "result", title=f"clone ({conditions})")
    for run in results["clone"]:
        table.add_row(
            f"clone {run['rows']:,} rows, page {run['page']:,}, verify included",
            f"{run['rows_per_second']:,.0f} rows/s; {run['seconds']:.1f}s, {run['requests']} requests",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
