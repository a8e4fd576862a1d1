"""`fleet run` learns of writes from file-change notifications: no stat of every tenant every few seconds."""

from __future__ import annotations

import time
from pathlib import Path

from d1sync.emulator.server import EmulatorServer
from d1sync.fleet.watch import FolderWatch

from .conftest import MakeFleet, equal, make_tenant, write


def wait_for(condition: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_the_watch_names_each_database_whose_files_were_written(tenants: Path) -> None:
    seen: set[str] = set()
    with FolderWatch(tenants) as watch:
        assert watch.alive
        make_tenant(tenants / "a.db")  # WAL mode: a.db, a.db-wal and a.db-shm are all written
        (tenants / "notes.txt").write_text("x")
        assert wait_for(lambda: seen.update(watch.take()) or seen == {"a.db", "notes.txt"})
    assert not watch.alive


def test_a_write_to_a_closed_tenant_is_sent_though_its_file_is_never_statted(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    make_tenant(tenants / "a.db")
    # Idle tenants close at once, and the stats that would notice a write come only once an hour: only a
    # notification can wake the tenant.
    fleet = make_fleet(idle_close=0, scan_interval=3600, tick=0.05)
    fleet.drain(timeout=30)
    fleet.start()
    assert wait_for(lambda: not any(e.open for e in fleet.engines.values()))
    write(tenants / "a.db", "INSERT INTO notes (id, body, n) VALUES (100, 'late', 1)")
    database_id = fleet.status().tenants[0].database_id
    assert database_id is not None
    assert wait_for(lambda: equal(account, tenants / "a.db", database_id))


def test_without_the_watch_the_stats_still_notice_writes(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    make_tenant(tenants / "a.db")
    fleet = make_fleet(idle_close=0, scan_interval=0.1, tick=0.05, watch=False)
    fleet.drain(timeout=30)
    fleet.start()
    assert wait_for(lambda: not any(e.open for e in fleet.engines.values()))
    write(tenants / "a.db", "INSERT INTO notes (id, body, n) VALUES (100, 'late', 1)")
    database_id = fleet.status().tenants[0].database_id
    assert database_id is not None
    assert wait_for(lambda: equal(account, tenants / "a.db", database_id))
