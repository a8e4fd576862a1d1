"""docs/schema.md's SQLAlchemy recipe: ORM models on a tracked file; d1sync creates the remote tables itself."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from .conftest import Kitchen, assert_exact


def test_orm_models_reach_d1_exactly_with_no_table_created_by_hand(kitchen: Kitchen) -> None:
    ran = kitchen.run("sqlalchemy")
    assert [r.args[1] for r in ran] == ["track", "sync", "verify"]  # every one exited 0
    assert_exact(kitchen.db, kitchen.remote.path, "accounts", "transfers")
    with closing(sqlite3.connect(kitchen.remote.path)) as d1:
        extremes = d1.execute("SELECT min(amount), max(amount), count(*) FROM transfers").fetchone()
        assert extremes == (-(2**63), 2**63 - 1, 2_002)
        assert d1.execute("SELECT count(*) FROM accounts WHERE id = 9999").fetchone() == (0,)  # rolled back
        index = d1.execute("SELECT count(*) FROM sqlite_master WHERE name = 'ix_transfers_account_id'").fetchone()
        assert index == (1,)
    status = json.loads(kitchen.command("d1sync status app.db --json").output)
    assert (status["pending_changes"], status["dead_letters"], status["healthy"]) == (0, 0, True)
    for table in ("accounts", "transfers"):  # made by d1sync, from the local DDL
        assert status["table_states"][table]["last_schema_change"]["action"] == "create", status["table_states"]
