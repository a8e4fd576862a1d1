"""Refusals are handled at the right level with a bounded number of requests; clock jumps delay sync by at
most one back-off cap; a backlog drains exactly through 80 % failing requests."""

from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync import Outbox
from d1sync.backoff import Backoff
from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID, EmulatorServer
from d1sync.emulator.faults import FaultConfig
from d1sync.errors import TransientError
from d1sync.local import LocalDatabase
from d1sync.outbox import SyncConfig, drain
from d1sync.sqlite import Connection
from d1sync.sync.store.state import Lease, load_state, save_state

from ..support import TOKEN, FakeClock
from .conftest import Mirror, OpenWorker, RecordingTarget, emulator_file, open_file, snapshot


def requests_of(mirror: Mirror) -> float:
    return mirror.server.app.state.faults.stats["requests"]


def test_an_extra_not_null_remote_column_pauses_the_table_before_a_row_is_sent_and_dead_letters_nothing(
    mirror: Mirror,
) -> None:
    mirror.app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    mirror.remote.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, extra TEXT NOT NULL)")
    mirror.both("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    mirror.track("t", "other", manage_schema=False)  # the remote's schema is someone else's
    with mirror.app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x") for i in range(500)])
        conn.execute("INSERT INTO other VALUES (1)")
    before = requests_of(mirror)
    report = mirror.drain()
    spent = requests_of(mirror) - before
    assert report.dead == 0 and Outbox(mirror.path).dead_letters() == []
    t = mirror.worker.status().table_states["t"]
    # The schema check sees it (every row would be refused): no row is sent, none probed, none bisected.
    assert t.state == "paused" and "(extra): D1 would refuse every row" in str(t.reason) and t.pending == 500
    assert 'DROP COLUMN "extra"' in str(t.fix)
    assert mirror.exact("other")
    assert spent <= 3, spent  # the schema check and the other table's request


def test_a_strict_column_refusing_every_row_pauses_the_table(mirror: Mirror) -> None:
    mirror.app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n)")  # untyped locally: holds text
    mirror.remote.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER) STRICT")
    mirror.track("t", manage_schema=False)
    with mirror.app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"text {i}") for i in range(200)])
    report = mirror.drain()
    t = mirror.worker.status().table_states["t"]
    assert report.dead == 0 and t.state == "paused" and "cannot store TEXT value" in str(t.reason)


def test_one_row_the_strict_remote_refuses_is_dead_lettered_alone_and_the_rest_arrives(mirror: Mirror) -> None:
    mirror.app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n)")
    mirror.remote.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER) STRICT")
    mirror.track("t", manage_schema=False)
    with mirror.app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, i) for i in range(300)])
        conn.execute("UPDATE t SET n = 'not a number' WHERE id = 123")
    report = mirror.drain()
    letters = Outbox(mirror.path).dead_letters()
    assert report.dead == 1 and [json.loads(d.key) for d in letters] == [[123]]
    assert mirror.remote.prepare("SELECT count(*) AS n FROM t").first("n") == 299
    assert mirror.worker.status().table_states["t"].state == "synced"


def test_a_backoff_written_by_a_clock_an_hour_fast_delays_sync_by_at_most_one_cap(
    mirror: Mirror, clock: FakeClock
) -> None:
    mirror.both("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    mirror.track("t")
    mirror.app.exec("INSERT INTO t VALUES (1)")
    with Connection(mirror.path) as conn:  # a worker whose clock ran an hour fast failed once
        save_state(conn, failures=1, backoff_until=clock() + 3600 + 0.5, last_error=None)
    worker = mirror.worker
    worker.clock = clock
    result = worker.sync_once()
    assert result.state == "synced" and result.rows == 1  # the implausible deadline is not waited for


def test_a_lease_ending_implausibly_far_ahead_is_taken_over_once_the_longest_lease_has_passed(
    mirror: Mirror, open_worker: OpenWorker
) -> None:
    mirror.both("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    mirror.track("t")
    mirror.app.exec("INSERT INTO t VALUES (1)")
    with Connection(mirror.path) as conn:  # a worker on another host, clock an hour fast, then gone
        save_state(conn, lease=Lease("elsewhere/boot/ns:1:dead", time.time() + 3600))
    ticks = [0.0]
    worker = open_worker(mirror.path, mirror.remote, config=SyncConfig(lease_ttl=10.0), monotonic=lambda: ticks[0])
    assert worker.sync_once().state == "locked"
    ticks[0] += worker.lease_ttl + 300  # not yet: the longest a live lease can run
    assert worker.sync_once().state == "locked"
    ticks[0] += 2.0
    assert worker.sync_once().rows == 1
    with Connection(mirror.path) as conn:
        lease = load_state(conn).lease
    assert lease is not None and lease.owner == worker.owner


def test_an_acknowledged_request_resets_the_backoff(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    for db in (app, remote):
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    Outbox(path).track("t")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 300) for i in range(60)])
    target = RecordingTarget(remote)
    sends = [0]

    def every_second_fails(statements: Any) -> Exception | None:
        sends[0] += 1
        return TransientError("overloaded", status=503) if sends[0] % 2 == 0 else None

    target.fail_when = every_second_fails
    from d1sync.outbox import Limits

    worker = open_worker(
        path, target, clock=clock, config=SyncConfig(limits=Limits(max_request_bytes=4_000, max_statements=2))
    )
    with Connection(path) as conn:
        save_state(conn, failures=6)
    worker.sync_once()
    with Connection(path) as conn:
        assert load_state(conn).failures == 1  # delivered one request, then failed: the count starts over


@pytest.mark.parametrize("seed", [1, 2])
def test_a_backlog_drains_exactly_through_eighty_percent_failing_requests(tmp_path: Path, seed: int) -> None:
    faults = FaultConfig(
        error_rate=0.3,
        rate_limit_rate=0.1,
        timeout_rate=0.1,
        html_rate=0.1,
        lost_response_rate=0.2,
        seed=seed,
        retry_after=0,
        timeout_delay=0.3,
    )
    with EmulatorServer(tmp_path / "emu", token=TOKEN, faults=FaultConfig(), auto_create=True) as server:
        remote = D1Client(
            account_id="a",
            database_id=DEFAULT_DATABASE_ID,
            api_token=TOKEN,
            base_url=server.api_base,
            retry=RetryPolicy(max_retries=0),
            timeout=0.2,
        )
        tables = [f"t{i}" for i in range(5)]
        with (
            LocalDatabase(tmp_path / "app.db") as app,
            D1Client(
                account_id="a", database_id=DEFAULT_DATABASE_ID, api_token=TOKEN, base_url=server.api_base
            ) as setup,
            remote,
        ):
            for name in tables:
                for db in (app, setup):  # the schema with a timeout a loaded machine cannot miss
                    db.exec(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, v TEXT, n REAL)")
            with Outbox(tmp_path / "app.db") as outbox:
                outbox.track(*tables)
            with app.atomic() as conn:
                for name in tables:
                    conn.executemany(f"INSERT INTO {name} VALUES (?, ?, ?)", [(i, f"r{i}", i / 7) for i in range(400)])
            server.app.state.faults.configure(faults)  # from here on, four requests in five fail
            from d1sync.outbox import Limits, SyncWorker

            with SyncWorker(
                tmp_path / "app.db",
                remote,
                config=SyncConfig(
                    limits=Limits(max_request_bytes=3_000, max_statements=5),
                    backoff=Backoff(base=0.005, cap=0.05),
                    seed=seed,
                ),
            ) as worker:
                report = drain(worker, deadline=time.monotonic() + 120)
            assert report.drained, report
            stats = server.app.state.faults.stats
            injected = sum(v for k, v in stats.items() if k not in ("requests", "latency_seconds"))
            assert injected >= 0.7 * stats["requests"] and stats["requests"] >= 100, stats
            server.app.state.faults.configure(FaultConfig())
            with closing(open_file(tmp_path / "app.db")) as local, closing(open_file(emulator_file(server))) as far:
                for name in tables:
                    assert snapshot(local, name) == snapshot(far, name), name
