"""``fleet sync`` holds a paused table to exit 1 even when nothing of it is pending (issue 26, repro 1's
fleet twin): an empty table that does not fit its database is not drained. The database has a d1_migrations
ledger, so migrations own its schema and d1sync pauses the table instead of altering D1's."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer
from d1sync.migrations.runner import ledger_ddl

from ..support import TOKEN
from .conftest import connect_to, make_tenant


def test_a_tenant_with_an_empty_paused_table_is_not_drained(account: EmulatorServer, tenants: Path) -> None:
    with connect_to(account)(None) as acct:
        made = acct.create_database("stale")
    with connect_to(account)(str(made["uuid"])) as db:
        db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")  # by hand, without column n
        db.exec(ledger_ddl())
    make_tenant(tenants / "stale.db", rows=0)
    result = CliRunner().invoke(
        cli,
        ["fleet", "sync", str(tenants), "--emulator", account.url, "--json"],
        env={"D1SYNC_EMULATOR_TOKEN": TOKEN},
        catch_exceptions=False,
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["totals"]["not_drained"] == ["stale.db"] and data["tenants"][0]["pending"] == 0
    assert "stale.db: notes:" in result.stderr and "lacks column(s) n" in result.stderr
