"""docs/schema.md's Alembic recipe: a batch migration (add with a server default, drop, INTEGER to VARCHAR(20))
on a tracked table with rows; D1 follows, values and declared types exact."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from .conftest import Kitchen, assert_exact, recipe


def test_a_batch_migration_is_followed_on_d1_values_and_declared_types_exact(kitchen: Kitchen) -> None:
    ran = kitchen.run("alembic")
    assert [r.args[1] for r in ran] == ["track", "sync", "sync", "verify"]  # every one exited 0
    assert_exact(kitchen.db, kitchen.remote.path, "accounts")
    with closing(sqlite3.connect(kitchen.remote.path)) as d1:
        columns = {r[1]: (r[2], r[3], r[4]) for r in d1.execute("PRAGMA table_info(accounts)")}
        assert columns["score"][0] == "VARCHAR(20)" and "legacy_code" not in columns
        assert columns["status"] == ("VARCHAR(16)", 1, "'active'")
        assert d1.execute("SELECT typeof(score), score FROM accounts WHERE id = 101").fetchone() == ("text", "707")
        # The data step ran after the rebuild, when the new table had no capture yet: only the re-send carries it.
        assert d1.execute("SELECT count(*) FROM accounts WHERE status = 'dormant'").fetchone() == (49,)
    status = json.loads(kitchen.command("d1sync status app.db --json").output)
    assert (status["pending_changes"], status["dead_letters"], status["healthy"]) == (0, 0, True)
    change = status["table_states"]["accounts"]["last_schema_change"]
    assert change["action"] == "rebuild" and any("VARCHAR(20)" in sql for sql in change["sql"]), change


def test_a_running_daemon_follows_the_same_migration(kitchen: Kitchen) -> None:
    """`d1sync run` notices the migration on a pass of its own (the page says so): `sync --wait` waits for it."""
    blocks = recipe("alembic")
    for block in blocks:
        kitchen.run_block("alembic", block)
        if kitchen.daemon is None and any(r.args[1] == "sync" for r in kitchen.ran):
            kitchen.start_daemon()  # from the first sync on, the daemon sends, as it would in production
    assert [r.args[1:] for r in kitchen.ran if r.args[1] == "sync"] == [
        ["sync", "app.db"],
        ["sync", "app.db", "--wait"],
    ]
    assert_exact(kitchen.db, kitchen.remote.path, "accounts")
    code, log = kitchen.stop_daemon()
    assert code == 0, log
