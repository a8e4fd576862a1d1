"""Issue 28's storm, scaled to a test: a churned backlog on 5 tables (five change records per distinct row)
drained through an emulator failing 80 % of requests. Windows count distinct keys and requests are sized from
the emulator's answers, so the drain needs requests for rows, not for churn, and ends exact. It took 152-157 s
alone on a 2-core machine (the issue's goal: within 180 s); the test allows 600 s, since a shared machine's
load must not fail a correctness test, and prints the time it took."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import threading
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
EIGHTY_PERCENT_FAILING = FaultConfig(
    error_rate=0.3,  # 5xx
    rate_limit_rate=0.2,  # 429
    timeout_rate=0.1,  # applied, then no answer within the client's 5 s
    lost_response_rate=0.1,
    html_rate=0.1,  # an HTML 504 page
    seed=28,
    retry_after=0,
    timeout_delay=6.0,
)
"""The issue's mix of failures: 80 % of requests."""
KEYS = 10_000


@pytest.mark.slow
def test_a_churned_backlog_drains_exactly_through_eighty_percent_failing_requests(tmp_path: Path) -> None:
    faults = EIGHTY_PERCENT_FAILING
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


def _writer(path: Path, stop: threading.Event, rng: random.Random, written: list[int]) -> None:
    """Commits of 1 to 200 rows to random keys of the five tables until ``stop``: the churn of an application."""
    with LocalDatabase(path) as app:
        while not stop.is_set():
            name = rng.choice(TABLES)
            rows = [
                (rng.randrange(KEYS), f"{name}-{rng.getrandbits(32)}", rng.random(), rng.getrandbits(63))
                for _ in range(rng.randint(1, 200))
            ]
            with app.atomic() as conn:
                conn.executemany(f"INSERT OR REPLACE INTO {name} VALUES (?, ?, ?, ?)", rows)
            written[0] += len(rows)
            time.sleep(rng.uniform(0.0, 0.01))


@pytest.mark.slow
def test_the_issues_storm_run_killed_17_times_under_a_writer_then_sync_through_80_percent_failing(
    tmp_path: Path,
) -> None:
    """The whole storm of issue 28, with the CLI in real processes: a writer on 5 tables while `d1sync run` is
    kill -9'd 17 times (5 % of requests failing, some after they applied), then `d1sync sync` through 80 %
    failing requests (30 % 5xx, 20 % 429, 10 % applied then timed out, 10 % lost, 10 % HTML 504). It must exit
    0 and leave every table exact. The issue's goal is 180 s; the test allows 600 (a shared machine's load must
    not fail a correctness test) and prints the time the sync took."""
    rng = random.Random(1728)
    path = tmp_path / "app.db"
    env = {**os.environ, "D1SYNC_EMULATOR_TOKEN": TOKEN}
    light = FaultConfig(latency=0.05, error_rate=0.03, lost_response_rate=0.02, seed=17)
    with EmulatorServer(tmp_path / "emu", token=TOKEN, faults=light, auto_create=True) as server:
        with LocalDatabase(path) as app:
            for name in TABLES:
                app.exec(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, v TEXT, n REAL, k INTEGER)")
        with Outbox(path) as outbox:
            outbox.track(*TABLES)
        stop, written = threading.Event(), [0]
        writer = threading.Thread(target=_writer, args=(path, stop, rng, written))
        writer.start()
        try:
            for _ in range(17):
                run = subprocess.Popen(
                    [sys.executable, "-m", "d1sync", "run", str(path), "--emulator", server.url, "-q"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(rng.uniform(0.5, 2.5))
                run.kill()
                run.wait(timeout=30)
        finally:
            stop.set()
            writer.join(timeout=60)
        with Connection(path) as conn:
            records, keys = pending_count(conn), pending_keys(conn)
        server.app.state.faults.configure(dataclasses.replace(EIGHTY_PERCENT_FAILING, latency=0.05))
        started = time.monotonic()
        sync = subprocess.run(
            [sys.executable, "-m", "d1sync", "sync", str(path), "--emulator", server.url, "--timeout", "600"],
            env=env,
            capture_output=True,
            text=True,
            timeout=660,
        )
        seconds = time.monotonic() - started
        stats = server.app.state.faults.stats
        server.app.state.faults.configure(FaultConfig())
        print(
            f"{written[0]:,} rows written across 17 kills; {records:,} change records for {keys:,} rows left; "
            f"`sync` exited {sync.returncode} in {seconds:.0f} s, {stats['requests']} requests sent"
        )
        assert sync.returncode == 0, sync.stderr[-3000:]
        with closing(open_file(path)) as local, closing(open_file(emulator_file(server))) as far:
            for name in TABLES:
                assert snapshot(local, name) == snapshot(far, name), name
