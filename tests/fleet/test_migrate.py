"""``fleet migrate``: every tenant's database then its file, canary first, failures apart, resumable."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer

from .conftest import database_file, database_names, equal, make_tenant, write
from .test_fleet_cli import ENV

MIGRATIONS = {
    "0001_tags.sql": "CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT NOT NULL);\n"
    "INSERT INTO tags VALUES (1, 'new');\n",
    "0002_extra.sql": "ALTER TABLE notes ADD COLUMN extra TEXT DEFAULT 'x';\n",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, sql in MIGRATIONS.items():
        (folder / name).write_text(sql)
    monkeypatch.chdir(tmp_path)
    return folder


def migrate(account: EmulatorServer, tenants: Path, *args: str) -> tuple[int, Any, str]:
    result = CliRunner().invoke(
        cli, ["fleet", "migrate", str(tenants), "--emulator", account.url, "--json", *args], env=ENV
    )
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None, result.stderr


def ledger(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [str(r[0]) for r in conn.execute("SELECT name FROM d1_migrations ORDER BY id")]


def test_migrate_applies_to_every_database_then_every_file_and_a_rerun_is_current(
    account: EmulatorServer, tenants: Path, project: Path
) -> None:
    paths = [make_tenant(tenants / f"t{i}.db") for i in range(3)]
    write(paths[0], "INSERT INTO notes VALUES (99, 'unsent', 9)")  # drained to D1 before the schema moves
    code, rows, _ = migrate(account, tenants)
    assert code == 0
    assert [(r["file"], r["status"], r["applied"]) for r in rows] == [
        (p.name, "migrated", list(MIGRATIONS)) for p in paths
    ]
    for path, row in zip(paths, rows, strict=True):
        assert set(row) >= {"file", "database_id", "applied", "status", "error"}
        assert ledger(path) == list(MIGRATIONS) == ledger(database_file(account, row["database_id"]))
        assert equal(account, path, row["database_id"]) and equal(account, path, row["database_id"], "tags")
    code, rows, _ = migrate(account, tenants)
    assert code == 0 and {r["status"] for r in rows} == {"current"}
    sync = CliRunner().invoke(cli, ["fleet", "sync", str(tenants), "--emulator", account.url, "--json"], env=ENV)
    assert sync.exit_code == 0, sync.output  # not paused afterwards, and nothing drifted
    for row in json.loads(sync.stdout)["tenants"]:
        assert equal(account, tenants / row["file"], row["database_id"])


def _break_local(path: Path) -> None:
    """The file (bound already) got a view with the name of the first migration's table: that migration's
    local part fails, D1's succeeds."""
    write(path, "CREATE VIEW tags AS SELECT 1 AS id")


def test_a_failed_canary_stops_the_run_and_a_rerun_resumes(
    account: EmulatorServer, tenants: Path, project: Path
) -> None:
    paths = [make_tenant(tenants / f"t{i}.db") for i in range(4)]
    sync = CliRunner().invoke(cli, ["fleet", "sync", str(tenants), "--emulator", account.url], env=ENV)
    assert sync.exit_code == 0  # bound: the databases exist without the table the file gets below
    _break_local(paths[0])
    code, rows, err = migrate(account, tenants, "--canary", "2")
    assert code == 1 and "the canary stopped the run" in err and "t0.db" in err
    assert [r["status"] for r in rows] == ["failed", "skipped", "skipped", "skipped"]
    assert "tags" in rows[0]["error"]
    assert ledger(database_file(account, rows[0]["database_id"])) == list(MIGRATIONS)  # D1 went first
    write(paths[0], "DROP VIEW tags")  # the fix
    code, rows, _ = migrate(account, tenants, "--canary", "2")
    assert code == 0 and [r["status"] for r in rows] == ["migrated"] * 4
    assert rows[0]["applied"] == list(MIGRATIONS)  # the file's part: the database had them already
    assert all(ledger(p) == list(MIGRATIONS) for p in paths)


def test_a_failed_tenant_is_reported_and_the_rest_go_on_unless_stop_on_error(
    account: EmulatorServer, tenants: Path, project: Path
) -> None:
    paths = [make_tenant(tenants / f"t{i}.db") for i in range(3)]
    _break_local(paths[1])  # unbound: its database gets the view too, so D1's part fails there
    code, rows, err = migrate(account, tenants)
    assert code == 1 and "1 tenant(s) failed" in err and "t1.db" in err
    assert [r["status"] for r in rows] == ["migrated", "failed", "migrated"]


def test_stop_on_error_halts_the_tenants_not_yet_started(account: EmulatorServer, tenants: Path, project: Path) -> None:
    paths = [make_tenant(tenants / f"t{i}.db") for i in range(3)]
    _break_local(paths[0])
    code, rows, _ = migrate(account, tenants, "--stop-on-error", "--concurrency", "1")
    assert code == 1 and [r["status"] for r in rows] == ["failed", "skipped", "skipped"]


def test_dry_run_lists_and_writes_nothing(account: EmulatorServer, tenants: Path, project: Path) -> None:
    paths = [make_tenant(tenants / f"t{i}.db") for i in range(2)]
    before = {p.name: p.read_bytes() for p in sorted(tenants.iterdir())}
    code, rows, _ = migrate(account, tenants, "--dry-run")
    assert code == 0 and [r["pending"] for r in rows] == [list(MIGRATIONS)] * 2
    assert {p.name: p.read_bytes() for p in sorted(tenants.iterdir())} == before
    assert database_names(account) == [] and len(paths) == 2


def test_a_table_paused_with_nothing_pending_does_not_hold_a_migration_back(
    account: EmulatorServer, tenants: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox must be empty before the schema moves; a table that only waits for a choice (or for this very
    migration) is no reason to refuse."""
    path = make_tenant(tenants / "t.db")
    write(path, "CREATE TABLE scratch (id INTEGER PRIMARY KEY)")
    run = ["fleet", "sync", str(tenants), "--emulator", account.url]
    assert CliRunner().invoke(cli, run, env=ENV).exit_code == 0
    write(path, "DROP TABLE scratch")  # paused until the user chooses: nothing of it is pending
    assert CliRunner().invoke(cli, run, env=ENV).exit_code == 1
    folder = tmp_path / "only-tags"
    folder.mkdir()
    (folder / "0001_tags.sql").write_text(MIGRATIONS["0001_tags.sql"])
    monkeypatch.chdir(tmp_path)
    code, rows, err = migrate(account, tenants, "--migrations-dir", str(folder))
    assert code == 0, err
    assert [(r["status"], r["applied"]) for r in rows] == [("migrated", ["0001_tags.sql"])]
