"""Requests and seconds for each schema action d1sync takes on D1 (a managed table), emulator over a socket.

For a table of ``--rows`` rows: the first sync (the table created on D1, then the rows), a pass with nothing
to do, then one local change at a time: ADD COLUMN, RENAME COLUMN, and a type change made by rebuilding the
table locally (as Alembic and Django do). Each line counts every request the worker made (schema reads,
the schema batch, and the re-sent rows) and the wall time of the drain. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/schema_actions.py --rows 100000
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncWorker, drain


class Counting(D1Client):
    """A D1Client that counts its requests."""

    requests = 0

    def batch(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return super().batch(*args, **kwargs)

    def batch_raw(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return super().batch_raw(*args, **kwargs)

    def _execute(self, statement: Any) -> Any:
        self.requests += 1
        return super()._execute(statement)

    def _execute_raw(self, statement: Any) -> Any:
        self.requests += 1
        return super()._execute_raw(statement)


STEPS = [
    ("first sync: table created on D1, every row sent", None),
    ("nothing changed", None),
    ("ADD COLUMN (the same ALTER on D1, then every row again)", "ALTER TABLE books ADD COLUMN tag TEXT"),
    ("RENAME COLUMN (the same RENAME on D1; the values stay)", "ALTER TABLE books RENAME COLUMN title TO name"),
    (
        "a type changed by a local rebuild (the rebuild on D1, then every row again)",
        "BEGIN; CREATE TABLE nb (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score VARCHAR(20), tag TEXT); "
        "INSERT INTO nb SELECT * FROM books; DROP TABLE books; ALTER TABLE nb RENAME TO books; COMMIT",
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as folder:
        emulator = EmulatorServer(Path(folder) / "emulator", token="t", faults=FaultConfig(), auto_create=True)
        with emulator as server:
            path = Path(folder) / "app.db"
            with LocalDatabase(path) as app:
                app.exec("CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, score INTEGER)")
                with app.atomic() as conn:
                    conn.executemany("INSERT INTO books VALUES (?, ?, ?)", [(i, f"t{i}", i) for i in range(rows)])
            Outbox(path).track("books")
            client = Counting(
                account_id="a",
                database_id=DEFAULT_DATABASE_ID,
                api_token="t",
                base_url=server.api_base,
                retry=RetryPolicy(max_retries=0),
                timeout=60,
            )
            with client, SyncWorker(path, client) as worker:
                for label, sql in STEPS:
                    if sql:
                        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
                            conn.executescript(sql)
                    before, started = client.requests, time.perf_counter()
                    report = drain(worker, sleep=lambda s: None)
                    seconds = time.perf_counter() - started
                    print(f"{label:78s} {client.requests - before:4d} requests {seconds:6.2f} s {report.rows:,} rows")


if __name__ == "__main__":
    main()
