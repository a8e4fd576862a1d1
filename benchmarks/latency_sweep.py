"""Drain rate of the three strategies across round-trip latencies, at the same rate limit.

.venv/bin/python benchmarks/latency_sweep.py --latency-ms 0 --latency-ms 100 --rows 50000 --budget 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from d1sync.bench import machine_info
from d1sync.bench.drain import STRATEGIES, run_drain
from d1sync.bench.remote import BenchEmulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, action="append", help="round-trip latency (repeatable)")
    parser.add_argument("--rows", type=int, default=100_000, help="backlog per strategy (default 100,000)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per strategy (default 20)")
    parser.add_argument("--rate-limit", type=float, default=4.0, help="requests per second, 0 = none (default 4)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    latencies = args.latency_ms or [0.0, 20.0, 50.0, 100.0, 200.0]
    console = Console()
    rows: list[dict[str, Any]] = []
    for latency in latencies:
        with tempfile.TemporaryDirectory(prefix="d1sync-sweep-") as tmp:
            root = Path(tmp)
            with BenchEmulator(root / "emulator", latency=latency / 1000) as emulator:
                console.print(f"[dim]latency {latency:g} ms[/dim]")
                outcomes = run_drain(
                    emulator, root, rows=args.rows, budget=args.budget, requests_per_second=args.rate_limit
                )
        rates = {o.strategy: o.rows_per_second for o in outcomes}
        rows.append({"latency_ms": latency, "rates": rates, "outcomes": [o.to_dict() for o in outcomes]})
    table = Table("latency", *(STRATEGIES[s] for s in STRATEGIES), "(c)/(a)", "(c)/(b)")
    for row in rows:
        rates = row["rates"]
        table.add_row(
            f"{row['latency_ms']:g} ms",
            *(f"{rates[s]:,.0f} rows/s" for s in STRATEGIES),
            f"{rates['d1sync'] / rates['one_row']:,.0f}x",
            f"{rates['d1sync'] / rates['multi_values']:,.1f}x",
        )
    console.print(table)
    if args.json:
        payload = {
            "machine": machine_info(),
            "rows": args.rows,
            "budget_s": args.budget,
            "rate_limit": args.rate_limit,
            "sweep": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
