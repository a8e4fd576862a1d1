"""A running fleet's status skips re-reading settled tenants whose files have not changed, and only those."""

from __future__ import annotations

from pathlib import Path

from d1sync.emulator.server import EmulatorServer

from .conftest import MakeFleet, make_tenant, write


def test_status_shows_a_write_made_since_the_last_status_at_once(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    for name in ("a", "b"):
        make_tenant(tenants / f"{name}.db")
    fleet = make_fleet()
    fleet.drain(timeout=30)
    assert [r.pending for r in fleet.status().tenants] == [0, 0]
    assert [r.pending for r in fleet.status().tenants] == [0, 0]  # settled, unchanged: from memory
    write(tenants / "b.db", "INSERT INTO notes (id, body, n) VALUES (100, 'new', 1)")
    rows = {r.file: r for r in fleet.status().tenants}  # no pass ran: the file itself says so
    assert (rows["a.db"].pending, rows["b.db"].pending) == (0, 1)
    fleet.drain(timeout=30)
    assert [r.pending for r in fleet.status().tenants] == [0, 0]


def test_a_tenant_with_pending_changes_is_read_at_every_status(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    make_tenant(tenants / "a.db")
    fleet = make_fleet()
    fleet.sweep()
    write(tenants / "a.db", "INSERT INTO notes (id, body, n) VALUES (100, 'new', 1)")
    first = fleet.status().tenants[0]
    assert first.state == "new"
    fleet.drain(timeout=30)  # a pass sends it: the next status reads the file again
    assert fleet.status().tenants[0].pending == 0
