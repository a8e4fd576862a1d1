"""docs/schema.md's Django recipe: RenameField + AddField + AlterField on a tracked table with rows; D1 follows,
no dead letters, exact."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing

import pytest

from .conftest import Kitchen, assert_exact


@pytest.fixture
def fresh_django() -> Iterator[None]:
    """Django configured by the recipe itself (settings.configure works once per process), closed afterwards."""
    from django.conf import settings

    assert not settings.configured, "something configured Django before this test: the recipe must do it itself"
    yield
    from django.db import connections

    connections.close_all()
    for name in [m for m in sys.modules if m == "library" or m.startswith("library.")]:
        del sys.modules[name]


def test_rename_add_and_alter_field_are_followed_on_d1_with_no_dead_letter(
    kitchen: Kitchen, fresh_django: None
) -> None:
    ran = kitchen.run("django")
    assert [r.args[1] for r in ran] == ["track", "sync", "sync", "verify", "dead"]  # every one exited 0
    assert_exact(kitchen.db, kitchen.remote.path, "library_book")
    with closing(sqlite3.connect(kitchen.remote.path)) as d1:
        columns = {r[1]: (r[2], r[3]) for r in d1.execute("PRAGMA table_info(library_book)")}
        assert columns["page_count"] == ("integer unsigned", 1) and "pages" not in columns
        assert columns["title"] == ("varchar(300)", 1) and columns["isbn"] == ("varchar(13)", 1)
        assert d1.execute("SELECT count(*), sum(page_count) FROM library_book").fetchone() == (
            5_000,
            5_000 * 100 + 4_999 * 5_000 // 2,
        )
        # RunSQL filled isbn after the rebuild, when the new table had no capture yet: only the re-send carries it.
        assert d1.execute("SELECT count(*) FROM library_book WHERE isbn LIKE '978%'").fetchone() == (1_666,)
    status = json.loads(kitchen.command("d1sync status app.db --json").output)
    assert (status["pending_changes"], status["dead_letters"], status["healthy"]) == (0, 0, True)
    assert status["table_states"]["library_book"]["last_schema_change"]["action"] == "rebuild"
    assert json.loads(kitchen.command("d1sync dead app.db list --json").output) == []
