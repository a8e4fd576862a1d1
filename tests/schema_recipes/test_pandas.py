"""docs/schema.md's pandas recipes: to_sql append (20,000 rows), replacing the rows, and what if_exists="replace"
does to a tracked table (pandas' own table has no primary key: d1sync says so, and the rebuild is the user's)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from .conftest import Kitchen, assert_exact


def remote_count(kitchen: Kitchen) -> int:
    with closing(sqlite3.connect(kitchen.remote.path)) as d1:
        count: int = d1.execute("SELECT count(*) FROM prices").fetchone()[0]
        return count


def test_to_sql_append_of_20000_rows_reaches_d1_exactly(kitchen: Kitchen) -> None:
    kitchen.run("pandas")
    assert_exact(kitchen.db, kitchen.remote.path, "prices")
    assert remote_count(kitchen) == 20_000


def test_replacing_the_rows_in_one_transaction_keeps_the_mirror_exact(kitchen: Kitchen) -> None:
    kitchen.run("pandas")
    kitchen.run("pandas-replace")
    assert_exact(kitchen.db, kitchen.remote.path, "prices")
    assert remote_count(kitchen) == len(kitchen.namespace["latest"]) < 20_000


def test_if_exists_replace_pauses_the_table_saying_it_has_no_primary_key(kitchen: Kitchen) -> None:
    kitchen.run("pandas")
    sync, status = kitchen.run("pandas-replaced")  # sync exits 1 (checked by the recipe's own "# exit 1")
    assert "prices" in sync.output and "primary key" in sync.output.lower(), sync.output
    assert "prices" in status.output and "primary key" in status.output.lower(), status.output
    state = json.loads(kitchen.command("d1sync status app.db --json").output)["table_states"]["prices"]
    assert state["state"] == "paused" and "primary key" in (state["reason"] or "").lower(), state
    assert remote_count(kitchen) == 20_000  # nothing was deleted or rebuilt on D1 behind the user's back


def test_after_if_exists_replace_the_users_rebuild_with_a_key_makes_the_mirror_exact_again(kitchen: Kitchen) -> None:
    kitchen.run("pandas")
    kitchen.run("pandas-replaced")
    kitchen.run("pandas-rebuild")  # `d1sync verify` in it exits 0 (the recipe says so)
    assert_exact(kitchen.db, kitchen.remote.path, "prices")
    assert remote_count(kitchen) == 20_000
    assert json.loads(kitchen.command("d1sync status app.db --json").output)["healthy"] is True
