"""``d1sync verify`` compares schemas before rows, names the columns of different rows, and ``--repair`` never
queues rows D1's schema would refuse (issue 26: repros 2, 5 and 6), through the real CLI on the emulator over a
real socket."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from d1sync import LocalDatabase
from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer

from ..support import TOKEN

SCHEMA = "CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT, score VARCHAR(20))"
ROWS = 40


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env={"D1SYNC_EMULATOR_TOKEN": TOKEN})


@pytest.fixture
def synced(tmp_path: Path, emulator_server: EmulatorServer) -> tuple[Path, list[str]]:
    """A file whose scores (text, as an application wrote them) are synced to a fresh emulator database."""
    app = tmp_path / "app.db"
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    with LocalDatabase(app) as db:
        db.exec(SCHEMA)
        insert = db.prepare("INSERT INTO scores VALUES (?, ?, ?)")
        db.batch([insert.bind(i, f"p{i}", str(700 + i)) for i in range(ROWS)])
    assert invoke("query", *target, SCHEMA).exit_code == 0
    # Unmanaged: D1's schema is edited by hand below, and a local ALTER pauses the table (d1sync alters nothing).
    assert invoke("track", str(app), "scores", "--no-manage-schema").exit_code == 0
    result = invoke("sync", str(app), *target)
    assert result.exit_code == 0, result.output
    assert invoke("verify", str(app), *target).exit_code == 0
    return app, target


def rebuild_remote(target: list[str], ddl: str, copy: str) -> None:
    """Rebuild D1's table as SQLite tools do (create, copy, drop, rename): outside d1sync, as a person might."""
    sql = f"{ddl.replace('scores', 'scores_new', 1)}; INSERT INTO scores_new {copy}; DROP TABLE scores; " + (
        "ALTER TABLE scores_new RENAME TO scores"
    )
    result = invoke("query", *target, sql)
    assert result.exit_code == 0, result.output


def test_verify_names_a_column_whose_type_differs_and_the_values_of_the_first_keys(
    synced: tuple[Path, list[str]],
) -> None:
    """Repro 2: D1's INTEGER column stores '700' as 700; verify said only which keys differ."""
    app, target = synced
    rebuild_remote(
        target,
        "CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT, score INTEGER)",
        "SELECT id, name, score FROM scores",
    )
    result = invoke("verify", str(app), *target)
    assert result.exit_code == 1
    assert "scores: column 'score': declared type VARCHAR(20) locally, INTEGER on D1" in result.stdout
    assert "key 0: score '700' (text) locally, 700 (integer) on D1" in result.stdout
    assert result.stdout.index("declared type") < result.stdout.index("key 0: score")  # schema first
    report = json.loads(invoke("verify", str(app), *target, "--json").stdout)
    table = report["tables"][0]
    assert report["equal"] is False and table["different"] == ROWS
    assert [(d["column"], d["aspect"], d["local"], d["remote"]) for d in table["schema"]] == [
        ("score", "type", "VARCHAR(20)", "INTEGER")
    ]
    assert table["columns"][1] == "key 1: score '701' (text) locally, 701 (integer) on D1"
    # --repair would re-send '700' and D1 would store 700 again: it queues nothing and names the column.
    result = invoke("verify", str(app), *target, "--repair", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["queued"] == 0
    assert "schema of scores on D1 differs" in result.stderr


def test_repair_queues_nothing_d1_would_refuse_and_dead_letters_nothing(synced: tuple[Path, list[str]]) -> None:
    """Repro 5: D1's table gained a NOT NULL column the file lacks, and lost rows; verify --repair
    --delete-extra dead-lettered the whole backlog. Now it stops with the difference, and the data is intact."""
    app, target = synced
    rebuild_remote(
        target,
        "CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT, score VARCHAR(20), pages INTEGER NOT NULL)",
        "SELECT id, name, score, 1 FROM scores WHERE id >= 10",
    )
    result = invoke("verify", str(app), *target, "--repair", "--delete-extra")
    assert result.exit_code == 1
    assert "column 'pages' (INTEGER NOT NULL) is only on D1" in result.stdout
    assert "--repair queued nothing" in result.stdout
    assert "Try: make D1's table match the local one" in result.stderr
    status = json.loads(invoke("status", str(app), "--json").stdout)
    assert (status["dead_letters"], status["pending_changes"]) == (0, 0)
    with LocalDatabase(app) as db:
        assert db.prepare("SELECT count(*) FROM scores").first() == {"count(*)": ROWS}
    remote = json.loads(invoke("query", *target, "SELECT count(*) AS n FROM scores", "--json").stdout)
    assert remote["results"] == [{"n": ROWS - 10}]


def test_repair_queues_nothing_for_a_paused_table_and_keeps_the_pause(synced: tuple[Path, list[str]]) -> None:
    app, target = synced
    assert invoke("query", *target, "DELETE FROM scores WHERE id < 5").exit_code == 0
    with LocalDatabase(app) as db:
        db.exec("ALTER TABLE scores ADD COLUMN tag TEXT")
        db.prepare("UPDATE scores SET tag = 'x' WHERE id = 20").run()
    assert invoke("sync", str(app), *target).exit_code == 1  # paused: D1 lacks tag
    result = invoke("verify", str(app), *target, "--repair", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["queued"] == 0 and "paused" in report["tables"][0]["not_repaired"]
    assert report["tables"][0]["schema"][0]["message"] == "column 'tag' (TEXT) is missing on D1"
    status = json.loads(invoke("status", str(app), "--json").stdout)
    assert status["table_states"]["scores"]["state"] == "paused" and status["dead_letters"] == 0


def test_a_managed_table_whose_d1_schema_drifted_is_not_repaired_but_sync_makes_it_follow(
    tmp_path: Path, emulator_server: EmulatorServer
) -> None:
    """d1sync owns the table's schema on D1 (the default): --repair still queues nothing a drifted D1 table
    would refuse, and its hint is the `sync` that rebuilds D1's table from the local DDL; then all is equal."""
    app = tmp_path / "app.db"
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    with LocalDatabase(app) as db:
        db.exec(SCHEMA)
        db.batch([db.prepare("INSERT INTO scores VALUES (?, ?, ?)").bind(i, f"p{i}", str(700 + i)) for i in range(5)])
    assert invoke("track", str(app), "scores").exit_code == 0
    assert invoke("sync", str(app), *target).exit_code == 0  # D1's table is created from the local DDL
    rebuild_remote(
        target,
        "CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT, score INTEGER, pages INTEGER NOT NULL)",
        "SELECT id, name, score, 1 FROM scores",
    )
    result = invoke("verify", str(app), *target, "--repair", "--json")
    assert result.exit_code == 1
    table = json.loads(result.stdout)["tables"][0]
    assert table["managed"] is True and table["not_repaired"] and table["queued"] == 0
    assert f"Try: `d1sync sync {app}` makes D1's tables follow the local ones" in result.stderr
    assert invoke("sync", str(app), *target).exit_code == 0
    result = invoke("verify", str(app), *target)
    assert result.exit_code == 0, result.output
    assert json.loads(invoke("status", str(app), "--json").stdout)["dead_letters"] == 0


def test_a_column_left_out_with_exclude_is_no_schema_difference(
    tmp_path: Path, emulator_server: EmulatorServer
) -> None:
    app = tmp_path / "app.db"
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    with LocalDatabase(app) as db:
        db.exec("CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT, secret TEXT NOT NULL)")
        db.prepare("INSERT INTO scores VALUES (1, 'a', 'hidden')").run()
    assert invoke("query", *target, "CREATE TABLE scores (id INTEGER PRIMARY KEY, name TEXT)").exit_code == 0
    assert invoke("track", str(app), "scores", "--exclude", "secret").exit_code == 0
    assert invoke("sync", str(app), *target).exit_code == 0
    result = invoke("verify", str(app), *target, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tables"][0]["schema"] == []
    # A column D1 has and the file lacks is still one.
    assert invoke("query", *target, "ALTER TABLE scores ADD COLUMN extra INTEGER").exit_code == 0
    result = invoke("verify", str(app), *target, "--json")
    assert result.exit_code == 1
    assert [d["message"] for d in json.loads(result.stdout)["tables"][0]["schema"]] == [
        "column 'extra' (INTEGER) is only on D1"
    ]
