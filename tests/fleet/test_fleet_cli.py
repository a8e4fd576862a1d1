"""``d1sync fleet``: sync's exit codes and JSON, status from the files, the daemon, and kill -9 at any moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer

from ..support import TOKEN
from .conftest import connect_to, database_names, equal, make_tenant, write

ENV = {"D1SYNC_EMULATOR_TOKEN": TOKEN}
ROW_KEYS = {
    "file",
    "database_name",
    "database_id",
    "pending",
    "dead",
    "paused",
    "oldest_pending_seconds",
    "last_error",
    "size_bytes",
}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=ENV, catch_exceptions=False)


def test_fleet_sync_drains_and_status_reads_the_same_from_the_files(account: EmulatorServer, tenants: Path) -> None:
    for name in ("a", "b"):
        make_tenant(tenants / f"{name}.db", rows=7)
    result = invoke("fleet", "sync", str(tenants), "--emulator", account.url, "--json")
    assert result.exit_code == 0, result.output
    synced = json.loads(result.stdout)
    assert synced["totals"]["pending"] == 0 and synced["totals"]["not_drained"] == []
    status = invoke("fleet", "status", str(tenants), "--json")
    data = json.loads(status.stdout)
    assert set(data) == {"tenants", "totals"} and data["totals"]["tenants"] == 2
    for row in data["tenants"]:
        assert ROW_KEYS <= set(row) and row["pending"] == 0 and row["paused"] is None
        assert row["size_bytes"] and equal(account, tenants / row["file"], row["database_id"])
    assert [r["database_id"] for r in data["tenants"]] == [r["database_id"] for r in synced["tenants"]]


LEDGER = (
    "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, "
    "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
)


def made_by_hand(account: EmulatorServer, name: str, schema: str) -> None:
    """A database of the account, created and given ``schema`` by migrations outside d1sync (the fleet adopts
    it; its ``d1_migrations`` ledger says d1sync does not own its schema)."""
    with connect_to(account)(None) as acct:
        made = acct.create_database(name)
    with connect_to(account)(str(made["uuid"])) as db:
        db.exec(f"{LEDGER}; {schema}")


def test_a_tenant_that_cannot_drain_is_named_and_exit_1(account: EmulatorServer, tenants: Path) -> None:
    """Its database was made by hand without a column: its table pauses, the other tenant drains."""
    made_by_hand(account, "stale", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    make_tenant(tenants / "stale.db")
    fine = make_tenant(tenants / "fine.db")
    result = invoke("fleet", "sync", str(tenants), "--emulator", account.url)
    assert result.exit_code == 1
    assert "1 tenant(s) not drained: stale.db" in result.stderr and "lacks column(s) n" in result.stderr
    status = json.loads(invoke("fleet", "status", str(tenants), "--json").stdout)
    rows = {r["file"]: r for r in status["tenants"]}
    assert rows["stale.db"]["paused"] and rows["fine.db"]["pending"] == 0
    assert equal(account, fine, rows["fine.db"]["database_id"])


def test_rows_refused_for_good_are_exit_3(account: EmulatorServer, tenants: Path) -> None:
    made_by_hand(
        account,
        "strict",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT CHECK (body NOT LIKE 'strict-3'), n INTEGER)",
    )
    make_tenant(tenants / "strict.db")
    result = invoke("fleet", "sync", str(tenants), "--emulator", account.url)
    assert result.exit_code == 3, result.output
    assert "strict.db" in result.stderr and "d1sync dead" in result.stderr


def test_a_missing_folder_or_a_bad_option_is_refused(tenants: Path) -> None:
    result = invoke("fleet", "status", str(tenants / "nope"))
    assert result.exit_code == 1 and "no such folder" in result.stderr
    result = invoke("fleet", "sync", str(tenants), "--emulator", "http://127.0.0.1:9", "--rate-limit", "x/y")
    assert result.exit_code == 2 and "--rate-limit" in result.stderr
    result = invoke("fleet", "sync", str(tenants), "--emulator", "http://127.0.0.1:9", "--name", "{who}")
    assert result.exit_code == 2 and "{stem}" in result.stderr


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "d1sync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV},
    )


def test_fleet_run_syncs_new_writes_and_files_and_stops_quietly(account: EmulatorServer, tenants: Path) -> None:
    first = make_tenant(tenants / "first.db")
    daemon = _spawn("fleet", "run", str(tenants), "--emulator", account.url, "-q")
    try:
        second = make_tenant(tenants / "second.db")
        write(first, "INSERT INTO notes VALUES (500, 'live', 5)")
        deadline = time.monotonic() + 60  # generous: the machine is shared
        while time.monotonic() < deadline:
            rows = {
                r["file"]: r for r in json.loads(invoke("fleet", "status", str(tenants), "--json").stdout)["tenants"]
            }
            ids = [rows[f]["database_id"] for f in ("first.db", "second.db")]
            if all(ids) and equal(account, first, ids[0]) and equal(account, second, ids[1]):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the daemon did not sync both tenants in time")
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
    assert (daemon.returncode, out, err) == (0, "", "")


@pytest.mark.slow
def test_kill_9_at_any_moment_still_gives_one_database_per_tenant(account: EmulatorServer, tenants: Path) -> None:
    """fleet sync killed again and again while it binds, creates and sends; then one clean run converges."""
    account.app.state.faults.update(latency=0.02)
    paths = [make_tenant(tenants / f"k{i:02}.db", rows=200) for i in range(12)]
    for delay in (0.3, 0.6, 0.9, 1.2, 1.5):
        proc = _spawn("fleet", "sync", str(tenants), "--emulator", account.url, "-q", "--concurrency", "6")
        time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=30)
        write(
            paths[int(delay * 10) % len(paths)], "INSERT INTO notes VALUES (?, 'between', 0)", 10_000 + int(delay * 10)
        )
    account.app.state.faults.update(latency=0.0)
    result = invoke("fleet", "sync", str(tenants), "--emulator", account.url, "--json")
    assert result.exit_code == 0, result.output
    assert database_names(account) == [p.stem for p in paths]
    for row in json.loads(result.stdout)["tenants"]:
        assert equal(account, tenants / row["file"], row["database_id"])


def test_a_tenant_whose_lease_another_worker_holds_is_named_not_waited_for(
    account: EmulatorServer, tenants: Path
) -> None:
    from d1sync import LocalDatabase, SyncWorker

    held = make_tenant(tenants / "held.db")
    make_tenant(tenants / "free.db")
    assert invoke("fleet", "sync", str(tenants), "--emulator", account.url).exit_code == 0
    write(held, "INSERT INTO notes VALUES (77, 'waits', 7)")
    with LocalDatabase(tenants / "elsewhere.sqlite") as other, SyncWorker(held, other) as worker:
        assert worker.acquire_lease(time.time(), extra=600)  # another daemon (`run`) sending this file
        started = time.monotonic()
        result = invoke("fleet", "sync", str(tenants), "--emulator", account.url, "--timeout", "30")
    assert time.monotonic() - started < 20
    assert result.exit_code == 1 and "held.db" in result.stderr and "sync lease" in result.stderr
