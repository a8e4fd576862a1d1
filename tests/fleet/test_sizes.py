"""``size_bytes``: D1's ``file_size`` of each tenant's database as last seen, refreshed while the fleet runs."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import httpx

from d1sync.client import D1Client
from d1sync.emulator.server import EmulatorServer
from d1sync.fleet.status import read_fleet_status

from ..outbox.conftest import open_file
from .conftest import TOKEN, MakeFleet, connect_to, make_tenant


def d1_sizes(server: EmulatorServer) -> dict[str, int]:
    """Each database's ``file_size``, as the account lists it now."""
    with connect_to(server)(None) as account:
        return {str(d["uuid"]): int(d["file_size"]) for d in account.list_databases()}


def grow(path: Path, rows: int, start: int = 1000) -> None:
    """``rows`` notes of a kilobyte each, written by the application (not d1sync)."""
    with closing(open_file(path)) as conn:
        conn.executemany(
            "INSERT INTO notes (id, body, n) VALUES (?, ?, ?)", [(start + i, "x" * 1000, i) for i in range(rows)]
        )


def test_size_bytes_follows_d1_file_size_as_rows_arrive(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    for name in ("a", "b"):
        make_tenant(tenants / f"{name}.db")
    fleet = make_fleet(size_interval=0)
    fleet.drain(timeout=30)
    first = {r.file: r.size_bytes for r in fleet.status().tenants}
    grow(tenants / "a.db", 2000)
    fleet.drain(timeout=60)
    sizes = d1_sizes(account)
    rows = {r.file: r for r in fleet.status().tenants}
    assert rows["a.db"].size_bytes == sizes[str(rows["a.db"].database_id)] > 2_000_000 > (first["a.db"] or 0)
    assert rows["b.db"].size_bytes == sizes[str(rows["b.db"].database_id)]
    # `fleet status` (the files alone, no request) shows the same: the size is kept in each tenant's file.
    kept = {r.file: r.size_bytes for r in read_fleet_status(tenants).tenants}
    assert kept == {name: row.size_bytes for name, row in rows.items()}
    assert read_fleet_status(tenants).totals["size_bytes"] == sum(sizes[str(r.database_id)] for r in rows.values())


def test_recording_a_size_is_no_write_of_the_application(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    make_tenant(tenants / "a.db")
    fleet = make_fleet(size_interval=0)
    fleet.drain(timeout=30)
    grow(tenants / "a.db", 300)
    fleet.drain(timeout=30)  # sends, then lists the sizes and writes a.db's into the file
    assert fleet.sync_once() == {}  # that write woke no tenant
    grow(tenants / "a.db", 1, start=5000)
    assert list(fleet.sync_once()) == [tenants / "a.db"]  # an application's write still does


def test_sizes_come_from_d1s_answers_without_listing_the_account(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    """Every batch's answer carries the database's size (``meta.size_after``): converging spends no request on
    listing the account for sizes (it took one per 100 databases after every drain that sent rows)."""
    listings: list[str] = []

    class Watched(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and request.url.path.endswith("/d1/database"):
                listings.append(str(request.url))
            return super().handle_request(request)

    def connect(database_id: str | None) -> D1Client:
        return D1Client(
            account_id="acct", database_id=database_id, api_token=TOKEN, base_url=account.api_base, transport=Watched()
        )

    for name in ("a", "b", "c"):
        make_tenant(tenants / f"{name}.db")
    fleet = make_fleet(connect=connect, size_interval=0)
    fleet.drain(timeout=60)
    listed_to_converge = len(listings)  # creating a database looks its name up first: not for sizes
    grow(tenants / "b.db", 500)
    fleet.drain(timeout=60)
    assert len(listings) == listed_to_converge, listings
    sizes = d1_sizes(account)
    rows = {r.file: r for r in fleet.status().tenants}
    assert {f: r.size_bytes for f, r in rows.items()} == {f: sizes[str(r.database_id)] for f, r in rows.items()}
