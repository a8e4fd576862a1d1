"""How much an asyncio program's event loop lags while the embedded worker drains a backlog.

A ticker awaits ``asyncio.sleep(0.01)`` in a loop and records how late each wake-up is, while ``async with
worker:`` drains the backlog to the emulator on a real loopback socket and ``wait_synced_async`` waits for it.

.venv/bin/python benchmarks/event_loop_lag.py --rows 200000
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from d1sync import D1Client, LocalDatabase, Outbox, SyncWorker
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer

SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"


async def measure(worker: SyncWorker) -> tuple[float, bool, list[float]]:
    lags: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    async with worker:
        synced = await worker.wait_synced_async(timeout=600)
    done.set()
    await ticker
    return time.monotonic() - started, synced, sorted(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="backlog to drain (default 200,000)")
    args = parser.parse_args()
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp, EmulatorServer(Path(tmp) / "em", token=token) as server:
        with D1Client(
            account_id="a", database_id=DEFAULT_DATABASE_ID, api_token=token, base_url=server.api_base
        ) as client:
            client.exec(SCHEMA)
            app = Path(tmp) / "app.db"
            with LocalDatabase(app) as db:
                db.exec(SCHEMA)
                Outbox(app).track("notes")
                with db.atomic() as conn:
                    conn.executemany(
                        "INSERT INTO notes VALUES (?, ?)", ((i, f"note {i} " * 5) for i in range(args.rows))
                    )
            seconds, synced, lags = asyncio.run(measure(SyncWorker(app, client)))
    cuts = statistics.quantiles(lags, n=100)
    print(
        f"drained {args.rows:,} rows in {seconds:.1f} s (synced: {synced}), emulator without latency; event-loop lag "
        f"over {len(lags)} ticks of 10 ms: p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, "
        f"max {lags[-1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
