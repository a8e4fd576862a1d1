"""Peak RSS of `d1sync sync` for growing backlogs: memory should follow the window, not the backlog size.

.venv/bin/python benchmarks/memory_scaling.py --rows 100000 --rows 1000000 --json memory.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from d1sync.bench import machine_info
from d1sync.bench.process import run_memory
from d1sync.bench.remote import BenchEmulator

MB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="backlog size (repeatable)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="emulator round-trip latency (default 0)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    sizes = args.rows or [100_000, 300_000, 1_000_000]
    console = Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="d1sync-memory-") as tmp:
        root = Path(tmp)
        with BenchEmulator(root / "emulator", latency=args.latency_ms / 1000) as emulator:
            for rows in sizes:
                console.print(f"[dim]draining {rows:,} rows[/dim]")
                results.append(run_memory(emulator, root, rows=rows).to_dict())
    table = Table("backlog rows", "peak RSS", "empty-outbox RSS", "drain time", "rows/s", "remote = local")
    for r in results:
        table.add_row(
            f"{r['rows']:,}",
            f"{r['peak_rss_bytes'] / MB:,.1f} MB",
            f"{r['baseline_rss_bytes'] / MB:,.1f} MB",
            f"{r['seconds']:,.1f} s",
            f"{r['rows'] / r['seconds']:,.0f}",
            "yes" if r["verified"] else "NO",
        )
    console.print(table)
    if args.json:
        payload = {"machine": machine_info(), "latency_ms": args.latency_ms, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
