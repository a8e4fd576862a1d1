"""Real processes: kill -9 of the worker at random points, and two worker processes on one file."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncConfig, drain

from ..conftest import Closer
from .conftest import TOKEN, OpenWorker, emulator_client, emulator_file, open_file, snapshot
from .crash import BACKLOG, LEASE_TTL, SCHEMA, Child, random_writes
from .worker_process import CRASH_LIMITS


@pytest.mark.slow
def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    from d1sync.emulator.server import EmulatorServer

    rng = random.Random(1234)
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True) as srv:
        client = emulator_client(srv)
        client.exec(SCHEMA)
        app = closer(LocalDatabase(tmp_path / "app.db"))
        app.exec(SCHEMA)
        outbox = Outbox(tmp_path / "app.db")
        outbox.track("items", "tags")
        with app.atomic() as conn:
            conn.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                ((i, i % 97, f"item {i} ✨", i.to_bytes(4, "big"), i / 3) for i in range(BACKLOG)),
            )
        next_id = BACKLOG
        pending_at_kill = []
        kills = 0
        started = time.monotonic()
        while kills < 22:
            child = Child("run", str(tmp_path / "app.db"), srv.api_base, TOKEN, str(LEASE_TTL))
            try:
                next_id = random_writes(app, rng, next_id)  # the app keeps writing while workers come and go
                try:
                    child.wait_for("progress", timeout=15)  # it holds the lease and has delivered a request
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; after {kills} kills; {outbox.status()}") from None
                time.sleep(rng.uniform(0.0, 0.25))
            finally:
                child.kill()
            kills += 1
            pending_at_kill.append(outbox.status().pending_changes)
        crash_phase = time.monotonic() - started

        # The backlog shrank across the kills: the workers really were sending when they died, mid-backlog.
        assert pending_at_kill[-1] < pending_at_kill[0] < BACKLOG
        assert sum(p > 0 for p in pending_at_kill) >= 20, pending_at_kill
        final = open_worker(tmp_path / "app.db", client, config=SyncConfig(limits=CRASH_LIMITS, lease_ttl=LEASE_TTL))
        drain(final, sleep=time.sleep)
        status = outbox.status()
        assert (status.pending_changes, status.dead_letters) == (0, 0)
        remote = open_file(emulator_file(srv))
        try:
            for table in ("items", "tags"):
                local_rows, remote_rows = snapshot(app.connection, table), snapshot(remote, table)
                assert len(remote_rows) == len(local_rows), table
                assert remote_rows == local_rows, table
        finally:
            remote.close()
        assert len(snapshot(app.connection, "items")) > BACKLOG - 5_000
        assert crash_phase < 60, crash_phase
        final.close()
        client.close()


@pytest.mark.slow
def test_two_worker_processes_on_one_file_never_send_at_the_same_time(
    tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    app = closer(LocalDatabase(tmp_path / "app.db"))
    remote = closer(LocalDatabase(tmp_path / "remote.db"))
    app.exec(SCHEMA)
    remote.exec(SCHEMA)
    Outbox(tmp_path / "app.db").track("items", "tags")
    log = tmp_path / "sends.log"
    children = [Child("contend", str(tmp_path / "app.db"), str(tmp_path / "remote.db"), str(log), "2.5") for _ in "ab"]
    try:
        for child in children:
            child.wait_for("started")
        rng = random.Random(99)
        next_id = 1
        with app.atomic() as conn:
            conn.execute("INSERT INTO items VALUES (0, 0, 'seed', NULL, NULL)")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            next_id = random_writes(app, rng, next_id)
            time.sleep(0.01)
        for child in children:
            child.proc.wait(timeout=30)
    finally:
        for child in children:
            child.kill()

    sends = [tuple(int(x) for x in line.split()) for line in log.read_text().splitlines()]
    pids = {pid for pid, _, _ in sends}
    assert pids == {c.proc.pid for c in children}, "both processes must have held the lease at some point"
    sends.sort(key=lambda s: s[1])
    for (pid_a, _, end_a), (pid_b, start_b, _) in zip(sends, sends[1:], strict=False):
        assert start_b >= end_a or pid_a == pid_b, "two processes were sending at the same time"

    drain(open_worker(tmp_path / "app.db", remote), sleep=time.sleep)
    for table in ("items", "tags"):
        assert snapshot(remote.connection, table) == snapshot(app.connection, table)
