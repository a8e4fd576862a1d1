"""At rest the fleet lists its folder only when the folder changed (its mtime), and never misses a tenant."""

from __future__ import annotations

import os
import time
from pathlib import Path

from d1sync.emulator.server import EmulatorServer

from .conftest import MakeFleet, make_tenant


def age(folder: Path, seconds: float = 60.0) -> None:
    """Set the folder's mtime in the past, as it is in a fleet at rest."""
    old = time.time() - seconds
    os.utime(folder, (old, old))


def test_a_file_added_to_a_quiet_folder_is_picked_up(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    make_tenant(tenants / "a.db")
    fleet = make_fleet(sweep_interval=0)
    fleet.drain(timeout=30)
    age(tenants)
    fleet.sync_once()  # lists it, and trusts that listing while the folder's mtime stays
    fleet.sync_once()
    make_tenant(tenants / "b.db")
    fleet.sync_once()
    assert sorted(p.name for p in fleet.engines) == ["a.db", "b.db"]


def test_an_empty_file_filled_in_place_is_picked_up(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    make_tenant(tenants / "a.db")
    (tenants / "c.db").touch()  # a program is creating it: not a tenant yet
    fleet = make_fleet(sweep_interval=0)
    fleet.drain(timeout=30)
    age(tenants)
    fleet.sync_once()
    assert sorted(p.name for p in fleet.engines) == ["a.db"]
    seen = os.stat(tenants).st_mtime_ns
    make_tenant(tenants / "c.db")  # filled in place: as far as the folder tells, nothing changed
    os.utime(tenants, ns=(seen, seen))
    fleet.sync_once()
    assert sorted(p.name for p in fleet.engines) == ["a.db", "c.db"]


def test_a_vanished_file_is_dropped(account: EmulatorServer, tenants: Path, make_fleet: MakeFleet) -> None:
    for name in ("a", "b"):
        make_tenant(tenants / f"{name}.db")
    fleet = make_fleet(sweep_interval=0)
    fleet.drain(timeout=30)
    age(tenants)
    fleet.sync_once()
    for suffix in ("", "-wal", "-shm"):
        (tenants / f"b.db{suffix}").unlink(missing_ok=True)
    fleet.sync_once()
    assert [p.name for p in fleet.engines] == ["a.db"]
    assert {r.file: r.state for r in fleet.status().tenants}["b.db"] == "missing"
