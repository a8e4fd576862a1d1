"""A fleet converges every tenant to its own database, fairly, under one budget, and keeps trouble apart."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from d1sync.client import RateLimiter
from d1sync.emulator.server import EmulatorServer

from .conftest import MakeFleet, connect_to, database_names, equal, make_tenant, write


def test_fleet_sync_converges_20_tenants_to_one_database_each(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    paths = [make_tenant(tenants / f"t{i:02}.db", rows=10 + i) for i in range(20)]
    fleet = make_fleet(concurrency=4)
    status = fleet.drain(timeout=60)
    assert status.totals["pending"] == 0 and status.totals["failed"] == 0, status.to_dict()
    assert database_names(account) == [f"t{i:02}" for i in range(20)]
    by_file = {row.file: row for row in status.tenants}
    for path in paths:
        row = by_file[path.name]
        assert row.database_name == path.stem and row.pending == 0 and row.dead == 0
        assert equal(account, path, str(row.database_id))
    # Written again, and one tenant more: a second drain carries only that, still one database each.
    write(paths[3], "UPDATE notes SET body = 'changed' WHERE id = 1")
    write(paths[7], "DELETE FROM notes WHERE id = 2")
    late = make_tenant(tenants / "late.db", rows=3)
    status = fleet.drain(timeout=60)
    by_file = {row.file: row for row in status.tenants}
    assert len(database_names(account)) == 21
    for path in (paths[3], paths[7], late):
        assert equal(account, path, str(by_file[path.name].database_id))


def test_a_running_fleet_picks_up_new_files_and_drops_vanished_ones(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    first = make_tenant(tenants / "first.db", rows=2)
    fleet = make_fleet(sweep_interval=0.2, tick=0.05, scan_interval=0.1).start()
    second = make_tenant(tenants / "second.db", rows=3)
    deadline = time.monotonic() + 60  # generous: the machine is shared
    while time.monotonic() < deadline:
        rows = {r.file: r for r in fleet.status().tenants}
        if all(f in rows and rows[f].database_id and rows[f].pending == 0 for f in ("first.db", "second.db")):
            break
        time.sleep(0.1)
    rows = {r.file: r for r in fleet.status().tenants}
    assert equal(account, second, str(rows["second.db"].database_id))
    write(first, "INSERT INTO notes VALUES (100, 'live', 1)")
    deadline = time.monotonic() + 60  # generous: the machine is shared
    while time.monotonic() < deadline and not equal(account, first, str(rows["first.db"].database_id)):
        time.sleep(0.05)
    assert equal(account, first, str(rows["first.db"].database_id))
    second.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{second}{suffix}").unlink(missing_ok=True)
    deadline = time.monotonic() + 60  # generous: the machine is shared
    while time.monotonic() < deadline and {r.file: r.state for r in fleet.status().tenants}["second.db"] != "missing":
        time.sleep(0.05)
    fleet.stop()
    assert {r.file: r.state for r in fleet.status().tenants}["second.db"] == "missing"
    assert database_names(account) == ["first", "second"]  # its database is kept


def test_one_tenants_trouble_stays_in_its_row(account: EmulatorServer, tenants: Path, make_fleet: MakeFleet) -> None:
    """A refused token on one database, a table without a key, a file that is not SQLite, a corrupt one: the
    rest converge."""
    good = [make_tenant(tenants / f"ok{i}.db") for i in range(3)]
    keyless = make_tenant(tenants / "keyless.db")
    with closing(sqlite3.connect(keyless)) as conn:
        conn.execute("CREATE TABLE log (line TEXT)")
    make_tenant(tenants / "locked-out.db")
    (tenants / "junk.db").write_text("this is not sqlite")
    (tenants / "corrupt.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # a header, then garbage
    fine = connect_to(account)
    refused = connect_to(account, token="wrong-token")
    names: dict[str, str] = {}

    def connect(database_id: str | None):  # type: ignore[no-untyped-def]
        if database_id is not None and names.get(database_id) == "locked-out":
            return refused(database_id)
        client = fine(database_id)
        if database_id is None:
            original = client.create_database

            def create(name: str, **options: object):  # type: ignore[no-untyped-def]
                made = original(name, **options)  # type: ignore[arg-type]
                names[str(made["uuid"])] = name
                return made

            client.create_database = create  # type: ignore[method-assign]
        return client

    fleet = make_fleet(connect=connect)
    status = fleet.drain(timeout=30)
    rows = {r.file: r for r in status.tenants}
    for path in good:
        assert rows[path.name].pending == 0 and equal(account, path, str(rows[path.name].database_id))
    assert rows["keyless.db"].pending == 0 and "log" in rows["keyless.db"].warnings
    assert equal(account, keyless, str(rows["keyless.db"].database_id))
    assert rows["locked-out.db"].state == "failed" and "AuthError" in str(rows["locked-out.db"].last_error)
    assert status.totals["not_tenants"] == ["junk.db"]
    assert rows["corrupt.db"].state == "failed" and rows["corrupt.db"].last_error


def test_a_hot_tenant_does_not_starve_the_others(account: EmulatorServer, tenants: Path, make_fleet: MakeFleet) -> None:
    """Under a rate of R requests/s, with N tenants that have work, every tenant gets a request within about
    N/R seconds: counted in the order the passes ran, each quiet tenant is served before the hot one's
    third request."""
    hot = make_tenant(tenants / "hot.db", rows=3000)
    quiet = [make_tenant(tenants / f"q{i}.db", rows=1) for i in range(6)]
    fleet = make_fleet(concurrency=1, rate_limiter=RateLimiter(1000, 1.0))
    fleet.config = type(fleet.config)(read_ahead=False, window=200)  # the hot tenant needs 15 passes
    fleet.sweep()
    fleet.sync_once()  # binds and first passes: every tenant once
    order: list[str] = []
    fleet.on_pass = lambda engine, result: order.append(engine.path.stem) if result.requests else None
    for i in range(6):
        write(quiet[i], "INSERT INTO notes VALUES (?, 'x', 0)", 1000 + i)
    deadline = time.monotonic() + 30
    while fleet.pending_work and time.monotonic() < deadline:
        fleet.sync_once()
    served = Counter(order)
    assert all(served[q.stem] >= 1 for q in quiet)
    hot_passes = [i for i, stem in enumerate(order) if stem == "hot"]
    last_quiet = max(order.index(q.stem) for q in quiet)
    assert len(hot_passes) < 3 or last_quiet < hot_passes[2], order
    assert equal(account, hot, str(fleet.engines[hot].binding.database_id))  # type: ignore[union-attr]


def test_a_table_created_later_in_a_tenant_is_tracked_and_created_remotely(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    path = make_tenant(tenants / "grows.db")
    fleet = make_fleet()
    fleet.drain(timeout=30)
    write(path, "CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT)")
    write(path, "CREATE INDEX tags_label ON tags (label)")
    write(path, "INSERT INTO tags VALUES (1, 'red'), (2, 'blue')")
    status = fleet.drain(timeout=30)
    [row] = status.tenants
    assert row.tables == ["notes", "tags"] and row.pending == 0
    assert equal(account, path, str(row.database_id), "tags")


def test_a_write_the_stat_cannot_see_still_wakes_an_open_tenant(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    """A WAL reused from its start keeps its size, and two commits in one tick keep its mtime: an open tenant
    is asked PRAGMA data_version, which always moves."""
    from d1sync.fleet.scheduler import file_signature

    path = make_tenant(tenants / "quiet.db")
    fleet = make_fleet()
    fleet.drain(timeout=30)
    write(path, "UPDATE notes SET body = 'seen' WHERE id = 0")
    fleet.schedule.slots[path].signature = file_signature(path)  # as if the stat had not moved
    for _ in range(3):
        fleet.sync_once()
    [row] = fleet.status().tenants
    assert row.pending == 0 and equal(account, path, str(row.database_id))


def test_open_files_stay_bounded_while_many_new_tenants_converge(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    paths = [make_tenant(tenants / f"n{i:02}.db", rows=3) for i in range(12)]
    fleet = make_fleet(max_open=3, concurrency=2)
    most = 0

    def count(engine: object, result: object) -> None:
        nonlocal most
        most = max(most, sum(1 for e in fleet.engines.values() if e.open))

    fleet.on_pass = count
    status = fleet.drain(timeout=60)
    assert status.totals["pending"] == 0 and all(
        equal(account, p, str(r.database_id)) for p, r in zip(paths, status.tenants, strict=True)
    )
    assert most <= 3 + 2  # max_open, plus the passes in flight that opened one before the next close


def test_a_new_tenant_converges_in_three_requests(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    """Create, schema, rows: the database was just given the file's own schema, so its columns are not
    checked on D1 before the rows go (the budget is the scarce resource: four requests before)."""
    paths = [make_tenant(tenants / f"n{i}.db", rows=50) for i in range(5)]
    account.app.state.faults.reset_stats()
    status = make_fleet().drain(timeout=60)
    assert status.totals["pending"] == 0 and status.totals["failed"] == 0, status.to_dict()
    queries = account.app.state.faults.stats["requests"]  # /query and /raw: the schema batch and the rows
    assert queries == 2 * len(paths), queries  # plus one create each on the account's route
    for row in status.tenants:
        assert equal(account, tenants / row.file, str(row.database_id))


def test_a_restarted_fleet_of_quiet_tenants_spends_no_request(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    """Opening a tenant's engine checks nothing on D1 until it has changes to send (the check that the file is
    not behind D1 cost a request per tenant: four minutes of the budget for 1,000 quiet tenants)."""
    paths = [make_tenant(tenants / f"q{i}.db", rows=5) for i in range(6)]
    first = make_fleet()
    assert first.drain(timeout=60).totals["pending"] == 0
    first.close()
    account.app.state.faults.reset_stats()
    second = make_fleet()
    status = second.drain(timeout=60)  # as a new process: every engine opened afresh
    second.close()
    assert status.totals["pending"] == 0 and len(status.tenants) == len(paths)
    assert account.app.state.faults.stats["requests"] == 0
    write(paths[2], "INSERT INTO notes VALUES (900, 'one more', 1)")
    assert make_fleet().drain(timeout=60).totals["pending"] == 0
    assert account.app.state.faults.stats["requests"] == 2  # that tenant's check, then its row
    assert equal(account, paths[2], str({r.file: r for r in status.tenants}["q2.db"].database_id))


def test_a_stop_before_run_is_kept_and_start_then_stop_ends_the_thread(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    make_tenant(tenants / "a.db", rows=2)
    fleet = make_fleet()
    fleet.stop()
    fleet.run()  # returns at once: the stop came first (a signal handler installed before run)
    for _ in range(10):
        fleet.start()
        fleet.stop(timeout=30)
        assert not fleet.running
    assert fleet.drain(timeout=60).totals["pending"] == 0  # a later run goes on
