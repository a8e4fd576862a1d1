"""``d1sync replicate`` and both directions of ``sync`` through the real CLI, on the emulator over a real socket:
clone, replicate, sync on two files, and both stay equal to the remote; the migration file; pruning; the
direction flags; one-line refusals."""

from __future__ import annotations

import json
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer

from ..outbox.conftest import open_file, snapshot
from ..support import TOKEN

ENV = {"D1SYNC_EMULATOR_TOKEN": TOKEN}


def invoke(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env=ENV)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def remote(emulator_server: EmulatorServer) -> list[str]:
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    assert invoke("query", *target, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")[0] == 0
    assert invoke("query", *target, "INSERT INTO notes VALUES (1, 'one'), (2, 'two')")[0] == 0
    return target


def rows(path: Path) -> list[tuple[object, ...]]:
    with closing(open_file(path)) as conn:
        return snapshot(conn, "notes")


def test_clone_replicate_and_sync_keep_two_files_equal_to_the_remote(tmp_path: Path, remote: list[str]) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    for path in (first, second):
        assert invoke("clone", *remote, str(path))[0] == 0
        code, out, err = invoke("replicate", str(path), "notes", *remote)
        assert code == 0, err
        assert "replicating notes both ways" in out
    with closing(open_file(first)) as conn:
        conn.execute("INSERT INTO notes VALUES (3, 'written in first')")
    assert invoke("sync", str(first), *remote)[0] == 0
    code, out, _ = invoke("sync", str(second), *remote, "--json")
    assert code == 0 and json.loads(out)["pulled"] == 1
    assert rows(first) == rows(second)
    code, out, _ = invoke("status", str(second), "--json")
    status = json.loads(out)
    assert status["replica"]["cursor"] >= 1 and status["table_states"]["notes"]["replicated"]
    assert invoke("status", str(second))[1].count("pull lag") == 1


def test_push_only_and_pull_only_move_one_direction(tmp_path: Path, remote: list[str]) -> None:
    path = tmp_path / "app.db"
    assert invoke("clone", *remote, str(path))[0] == 0
    assert invoke("replicate", str(path), "notes", *remote)[0] == 0
    assert invoke("sync", str(path), *remote)[0] == 0
    invoke("query", *remote, "INSERT INTO notes VALUES (5, 'remote')")
    with closing(open_file(path)) as conn:
        conn.execute("INSERT INTO notes VALUES (6, 'local')")
    code, out, _ = invoke("sync", str(path), *remote, "--pull-only", "--json")
    assert code == 0 and json.loads(out)["pulled"] == 1 and json.loads(out)["pending"] == 1
    code, out, _ = invoke("sync", str(path), *remote, "--push-only", "--json")
    assert code == 0 and json.loads(out)["rows"] == 1 and json.loads(out)["pulled"] == 0
    code, _, err = invoke("sync", str(path), *remote, "--push-only", "--pull-only")
    assert code == 2 and "exclude each other" in err


def test_emit_migration_writes_the_ddl_and_prune_deletes_what_was_passed(tmp_path: Path, remote: list[str]) -> None:
    path = tmp_path / "app.db"
    assert invoke("clone", *remote, str(path))[0] == 0
    migrations = tmp_path / "migrations"
    code, out, err = invoke("replicate", str(path), "notes", "--emit-migration", str(migrations))
    assert code == 0, err
    written = migrations / "0001_d1sync_replicate.sql"
    assert "CREATE TABLE IF NOT EXISTS _d1sync_log" in written.read_text()
    code, _, err = invoke("migrations", "apply", *remote, "--migrations-dir", str(migrations), "--yes")
    assert code == 0, err
    invoke("query", *remote, "UPDATE notes SET body = 'logged' WHERE id = 1")
    assert invoke("sync", str(path), *remote)[0] == 0
    assert invoke("sync", str(path), *remote)[0] == 0  # the cursor reaches the remote with the next heartbeat
    code, out, _ = invoke("replicate", str(path), *remote, "--prune", "--json")
    assert code == 0 and json.loads(out)["pruned"] == 1


def test_replicate_refusals_are_one_line(tmp_path: Path, remote: list[str]) -> None:
    path = tmp_path / "app.db"
    assert invoke("clone", *remote, str(path))[0] == 0
    code, _, err = invoke("replicate", str(path), *remote)
    assert code == 2 and "name the tables" in err
    code, _, err = invoke("replicate", str(path), "nope", *remote)
    assert code != 0 and "nope" in err and "Traceback" not in err
    with closing(open_file(path)) as conn:
        conn.execute("CREATE TABLE local_only (id INTEGER PRIMARY KEY)")
    code, _, err = invoke("replicate", str(path), "local_only", *remote)
    assert code != 0 and "the remote has no table 'local_only'" in err
