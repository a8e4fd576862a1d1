"""Issue 28's storm, scaled to a test: a churned backlog on 5 tables (five change records per distinct row)
drained through an emulator failing 80 % of requests. Windows count distinct keys and requests are sized from
the emulator's answers, so the drain needs requests for rows, not for churn, and ends exact. It took 152-157 s
alone on a 2-core machine (the issue's goal: within 180 s); the test allows 600 s, since a shared machine's
load must not fail a correctness test, and prints the time it took."""

from __future__ import annotations

import random
import time
from contextlib import closing
from pathlib import Path

import pytest

from d1sync import Outbox
from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID, EmulatorServer
from d1sync.emulator.faults import FaultConfig
from d1sync.local import LocalDatabase
from d1sync.outbox import SyncConfig, SyncWorker, drain
from d1sync.sqlite import Connection
from d1sync.sync.store.log import pending_count, pending_keys

from ..support import TOKEN
from .conftest import emulator_file, open_file, snapshot

TABLES = [f"t{i}" for i in range(5)]
KEYS = 10_000


@pytest.mark.slow
def test_a_churned_backlog_drains_exactly_through_eighty_percent_failing_requests(tmp_path: Path) -> None:
    faults = FaultConfig(
        error_rate=0.3,
        rate_limit_rate=0.2,
        timeout_rate=0.1,
        lost_response_rate=0.1,
        html_rate=0.1,
        seed=28,
        retry_after=0,
        timeout_delay=6.0,
    )
    rng = random.Random(28)
    with EmulatorServer(tmp_path / "emu", token=TOKEN, faults=FaultConfig(), auto_create=True) as server:
        remote = D1Client(
            account_id="a",
            database_id=DEFAULT_DATABASE_ID,
            api_token=TOKEN,
            base_url=server.api_base,
            retry=RetryPolicy(max_retries=0),
            timeout=5.0,
        )
        with LocalDatabase(tmp_path / "app.db") as app, remote:
            for name in TABLES:
                for db in (app, remote):
                    db.exec(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, v TEXT, n REAL, k INTEGER)")
            with Outbox(tmp_path / "app.db") as outbox:
                outbox.track(*TABLES)
            for round_ in range(5):  # inserts, then four rounds of updates in random order
                with app.atomic() as conn:
                    for name in TABLES:
                        ids = list(range(KEYS))
                        rng.shuffle(ids)
                        rows = [(i, f"{name}-{i}-{round_}", i / 7 + round_, rng.getrandbits(63)) for i in ids]
                        conn.executemany(f"INSERT OR REPLACE INTO {name} VALUES (?, ?, ?, ?)", rows)
            with Connection(tmp_path / "app.db") as conn:
                records, keys = pending_count(conn), pending_keys(conn)
            assert (records, keys) == (5 * len(TABLES) * KEYS, len(TABLES) * KEYS)
            server.app.state.faults.configure(faults)
            started = time.monotonic()
            with SyncWorker(tmp_path / "app.db", remote, SyncConfig(seed=28)) as worker:
                report = drain(worker, deadline=started + 600)
                seconds = time.monotonic() - started
                acknowledged = worker.counters.requests
            stats = server.app.state.faults.stats
            server.app.state.faults.configure(FaultConfig())
            print(
                f"{records:,} change records for {keys:,} rows, 80 % of requests failing: drained={report.drained} "
                f"in {seconds:.0f} s, {acknowledged} requests acknowledged of {stats['requests']} sent"
            )
            assert report.drained, report
            with closing(open_file(tmp_path / "app.db")) as local, closing(open_file(emulator_file(server))) as far:
                for name in TABLES:
                    assert snapshot(local, name) == snapshot(far, name), name
