"""Crash storms in real processes: kill -9 aimed at requests in flight, and schema changes between the kills.

Each kill lands on a worker subprocess pushing to the emulator over a real socket. The emulator adds latency,
so a request stays in flight long enough to be hit, and loses some responses after applying them. At the
end one more worker drains, and the remote must equal the local file exactly (values and their types).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncConfig, drain

from ..conftest import Closer
from .conftest import TOKEN, OpenWorker, emulator_client, emulator_file, open_file, snapshot
from .crash import LEASE_TTL, SCHEMA, Child, random_writes

LATENCY = 0.2
"""Seconds the emulator holds every request before it runs it: the window the kills aim at."""
FAULTS = FaultConfig(latency=LATENCY, lost_response_rate=0.05, error_rate=0.05, seed=11)


def _seed(app: LocalDatabase, rows: int) -> None:
    with app.atomic() as conn:
        conn.executemany(
            "INSERT INTO items (id, grp, name, payload, score) VALUES (?, ?, ?, ?, ?)",
            ((i, i % 97, f"item {i} ✨", i.to_bytes(4, "big"), i / 3) for i in range(rows)),
        )


def _kill_in_flight(child: Child, rng: random.Random) -> tuple[bool, int]:
    """Let the child get 0 to 3 requests acknowledged, then kill -9 it within the next request's latency.

    Returns (whether the kill landed while a request was in flight, the requests it saw acknowledged).
    """
    lines = []
    for _ in range(rng.choice([0, 0, 1, 3])):
        child.wait_for("sent", timeout=40)
        lines.append("sent")
    child.wait_for("send", timeout=40)
    time.sleep(rng.uniform(0.0, LATENCY * 0.9))
    lines += ["send", *child.kill()]
    events = [line for line in lines if line in ("send", "sent")]
    return events[-1] == "send", events.count("sent")


def _assert_exact(app: LocalDatabase, server: EmulatorServer, open_worker: OpenWorker, tables: tuple[str, ...]) -> None:
    server.app.state.faults.update(latency=0.0, lost_response_rate=0.0, error_rate=0.0)
    client = emulator_client(server)
    try:
        final = open_worker(app.path, client, config=SyncConfig(lease_ttl=LEASE_TTL, pause_interval=0.2))
        final.resume()
        report = drain(final, deadline=time.monotonic() + 120, sleep=time.sleep)
        assert report.drained, report
        status = Outbox(app.path).status()
        assert (status.pending_changes, status.dead_letters, status.healthy) == (0, 0, True), status
        remote = open_file(emulator_file(server))
        try:
            for table in tables:
                assert snapshot(remote, table) == snapshot(app.connection, table), table
        finally:
            remote.close()
        assert final.verify().equal
    finally:
        client.close()


@pytest.mark.slow
def test_kill_9_while_a_request_is_in_flight_loses_and_duplicates_nothing(
    tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    rng = random.Random(2026)
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True, faults=FAULTS) as server:
        setup = closer(emulator_client(server))
        server.app.state.faults.update(latency=0.0)
        setup.exec(SCHEMA)
        server.app.state.faults.update(latency=LATENCY)
        app = closer(LocalDatabase(tmp_path / "app.db"))
        app.exec(SCHEMA)
        Outbox(app.path).track("items", "tags")
        _seed(app, 5_000)
        next_id = 5_000
        in_flight = acknowledged = kills = 0
        while in_flight < 110 and kills < 200:
            child = Child("send", str(app.path), server.api_base, TOKEN, str(LEASE_TTL))
            try:
                next_id = random_writes(app, rng, next_id)
                hit, sent = _kill_in_flight(child, rng)
            finally:
                child.kill()
            kills += 1
            in_flight += hit
            acknowledged += sent
        assert in_flight >= 110, (in_flight, kills)
        assert acknowledged >= 50, "the workers' requests were rarely acknowledged: the storm tested little"
        _assert_exact(app, server, open_worker, ("items", "tags"))


@pytest.mark.slow
def test_schema_changes_between_kill_9s_end_exact(tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]) -> None:
    """ADD COLUMN, RENAME COLUMN and DROP + CREATE, each applied as docs/sync.md says (remote first, then
    locally), while the application writes and the workers die mid-request."""
    rng = random.Random(7)

    def on_both(remote_sql: str, local_sql: str | None = None) -> None:
        server.app.state.faults.update(latency=0.0, lost_response_rate=0.0, error_rate=0.0)
        setup.exec(remote_sql)
        server.app.state.faults.configure(FAULTS)
        app.exec(local_sql or remote_sql)

    changes = {
        6: lambda: on_both("ALTER TABLE items ADD COLUMN extra TEXT"),
        12: lambda: on_both("ALTER TABLE tags RENAME COLUMN weight TO w"),
        18: lambda: on_both(
            "DROP TABLE tags; CREATE TABLE tags (item_id INTEGER NOT NULL, tag TEXT NOT NULL, w INTEGER, "
            "PRIMARY KEY (item_id, tag))"
        ),
        24: lambda: on_both("ALTER TABLE items DROP COLUMN score"),
    }
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True, faults=FAULTS) as server:
        setup = closer(emulator_client(server))
        server.app.state.faults.update(latency=0.0)
        setup.exec(SCHEMA)
        server.app.state.faults.configure(FAULTS)
        app = closer(LocalDatabase(tmp_path / "app.db"))
        app.exec(SCHEMA)
        Outbox(app.path).track("items", "tags")
        _seed(app, 2_000)
        next_id = 2_000
        for kill in range(30):
            if kill in changes:
                changes[kill]()
            child = Child("send", str(app.path), server.api_base, TOKEN, str(LEASE_TTL))
            try:
                if kill < 24:  # random_writes sets score, which the last change drops
                    next_id = random_writes(app, rng, next_id)
                if kill >= 6:
                    app.prepare("UPDATE items SET extra = ? WHERE id % 13 = ?").bind(f"x{kill}", kill % 13).run()
                _kill_in_flight(child, rng)
            finally:
                child.kill()
        _assert_exact(app, server, open_worker, ("items", "tags"))
