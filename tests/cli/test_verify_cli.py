"""``d1sync verify``, ``resume``, ``status --check`` and ``untrack --delete-remote`` through the real CLI, on the
emulator over a real socket."""

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

SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n)"


def invoke(*args: str) -> tuple[int, str]:
    """(exit code, stdout and stderr)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env={"D1SYNC_EMULATOR_TOKEN": TOKEN})
    return result.exit_code, result.output


def invoke_json(*args: str) -> tuple[int, Any]:
    """(exit code, the JSON on stdout): errors and progress go to stderr."""
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False, env={"D1SYNC_EMULATOR_TOKEN": TOKEN})
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def synced(tmp_path: Path, emulator_server: EmulatorServer) -> tuple[Path, list[str]]:
    """A file whose 300 notes are synced to a fresh emulator database; (the file, the target options)."""
    app = tmp_path / "app.db"
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    with LocalDatabase(app) as db:
        db.exec(SCHEMA)
        db.batch([db.prepare("INSERT INTO notes VALUES (?, ?, ?)").bind(i, f"note {i}", i) for i in range(300)])
    assert invoke("query", *target, SCHEMA)[0] == 0
    # D1's schema is not d1sync's to follow here: a local ALTER pauses the table (the tests below need one).
    assert invoke("track", str(app), "notes", "--no-manage-schema")[0] == 0
    code, out = invoke("sync", str(app), *target)
    assert code == 0, out
    return app, target


def test_verify_exits_0_on_an_equal_mirror_and_reports_the_rows_compared(synced: tuple[Path, list[str]]) -> None:
    app, target = synced
    code, report = invoke_json("verify", str(app), *target)
    assert code == 0, report
    assert report["equal"] is True
    assert report["tables"][0] | {"samples": None} == report["tables"][0] | {
        "table": "notes",
        "local_rows": 300,
        "remote_rows": 300,
        "missing": 0,
        "extra": 0,
        "different": 0,
        "samples": None,
    }


def test_verify_finds_a_type_change_a_missing_and_an_extra_row_then_repair_converges(
    synced: tuple[Path, list[str]],
) -> None:
    app, target = synced
    # 5 -> '5' (same value as text), 6 -> 6.0 (as a real), 7 deleted, 1000 added: as a Worker might.
    code, out = invoke(
        "query",
        *target,
        "UPDATE notes SET n = '5' WHERE id = 5; UPDATE notes SET n = 6.0 WHERE id = 6; "
        "DELETE FROM notes WHERE id = 7; INSERT INTO notes VALUES (1000, 'extra', 0)",
    )
    assert code == 0, out
    code, full = invoke_json("verify", str(app), *target)
    assert code == 1
    report = full["tables"][0]
    assert (report["missing"], report["extra"], report["different"]) == (1, 1, 2)
    assert report["samples"] == {"missing": [[7]], "extra": [[1000]], "different": [[5], [6]]}
    # --repair alone restores what the remote lost or changed, and keeps the remote-only row.
    code, full = invoke_json("verify", str(app), *target, "--repair")
    assert code == 1 and full["queued"] == 3
    report = full["tables"][0]
    assert (report["missing"], report["extra"], report["different"]) == (0, 1, 0)
    code, out = invoke("verify", str(app), *target, "--repair", "--delete-extra")
    assert code == 0, out
    assert "repair: queued 1 row(s)" in out and "equal" in out
    code, out = invoke("verify", str(app), "notes", *target)
    assert code == 0, out


def test_verify_refuses_an_unknown_table_and_delete_extra_without_repair(synced: tuple[Path, list[str]]) -> None:
    app, target = synced
    code, out = invoke("verify", str(app), "nope", *target)
    assert code == 1 and f"table 'nope' is not synced in {app}" in out and "synced tables: notes" in out
    code, out = invoke("verify", str(app), *target, "--delete-extra")
    assert code == 2 and "--delete-extra only works with --repair" in out


def test_a_paused_table_shows_in_status_fails_check_and_resume_clears_it(
    synced: tuple[Path, list[str]],
) -> None:
    app, target = synced
    with LocalDatabase(app) as db:
        db.exec("ALTER TABLE notes ADD COLUMN tag TEXT")
        db.prepare("UPDATE notes SET tag = 'x' WHERE id = 1").run()
    code, out = invoke("sync", str(app), *target, "--no-manage-schema")
    assert code == 1
    code, out = invoke("status", str(app), "--check")
    assert code == 1
    assert "needs a fix" in out and "paused" in out
    code, status = invoke_json("status", str(app), "--check")
    assert code == 1 and status["healthy"] is False
    notes = status["table_states"]["notes"]
    assert notes["state"] == "paused" and notes["fix"] == (
        f'run on the remote: ALTER TABLE "notes" ADD COLUMN tag TEXT; or let d1sync manage this table\'s schema: '
        f"`d1sync track {app} notes --manage-schema`"
    )

    # The fix, then resume: the next sync re-sends every row, so the new column arrives everywhere.
    assert invoke("query", *target, "ALTER TABLE notes ADD COLUMN tag TEXT")[0] == 0
    code, out = invoke("resume", str(app))
    assert code == 0 and "resumed: notes" in out
    code, out = invoke("sync", str(app), *target)
    assert code == 0, out
    assert invoke("status", str(app), "--check")[0] == 0
    assert invoke("verify", str(app), *target)[0] == 0
    assert invoke("resume", str(app))[1].strip() == "nothing was paused"


def test_untrack_delete_remote_empties_the_remote_table_on_the_next_sync(synced: tuple[Path, list[str]]) -> None:
    app, target = synced
    code, out = invoke("untrack", str(app), "notes", "--delete-remote")
    assert code == 0 and "deleted on the next sync" in out
    code, out = invoke("sync", str(app), *target)
    assert code == 0, out
    assert invoke_json("query", *target, "SELECT count(*) AS n FROM notes")[1]["results"] == [{"n": 0}]
    assert invoke_json("status", str(app))[1]["tables"] == []


@pytest.mark.parametrize("repair", [[], ["--repair"]], ids=["verify", "verify --repair"])
def test_a_missing_row_that_is_a_dead_letter_is_named_so_and_repair_does_not_promise_it(
    synced: tuple[Path, list[str]], repair: list[str]
) -> None:
    """A 3 MB BLOB is over D1's own limit: verify says the missing row is a dead letter, and why, instead of
    telling to run --repair again for ever."""
    app, target = synced
    with LocalDatabase(app) as db:
        db.prepare("INSERT INTO notes VALUES (1000, 'too big', ?)").bind(b"\x01" * 3_000_000).run()
    assert invoke("sync", str(app), *target)[0] == 3  # drained, with a dead letter
    code, out = invoke("verify", str(app), *target, *repair)
    assert code == 1
    assert "1 of them are dead letters, refused by D1 for good" in out and "2,000,000" in out
    assert f"d1sync dead {app} list" in out and "--repair (add" not in out
    code, report = invoke_json("verify", str(app), *target)
    assert (report["tables"][0]["missing"], report["tables"][0]["dead"], report["queued"]) == (1, 1, 0)


def test_sync_with_a_wrong_token_says_so_and_never_nothing_to_sync(synced: tuple[Path, list[str]]) -> None:
    app, target = synced
    result = CliRunner().invoke(cli, ["sync", str(app), *target], env={"D1SYNC_EMULATOR_TOKEN": "not-the-token"})
    assert result.exit_code == 1
    assert "nothing to sync" not in result.output
    assert "D1SYNC_EMULATOR_TOKEN must equal the token the emulator was started with" in result.output


@pytest.mark.parametrize("repair", [[], ["--repair"]], ids=["verify", "verify --repair"])
def test_verify_never_clears_a_pause_while_its_cause_remains(synced: tuple[Path, list[str]], repair: list[str]) -> None:
    """Issue 26, repro 6: `status --check` went from 1 to 0 after a verify, with the fault still there."""
    app, target = synced
    with LocalDatabase(app) as db:
        db.exec("ALTER TABLE notes ADD COLUMN tag TEXT")
        db.prepare("UPDATE notes SET tag = 'x' WHERE id = 1").run()
    assert invoke("sync", str(app), *target)[0] == 1
    assert invoke("status", str(app), "--check")[0] == 1
    invoke("verify", str(app), *target, *repair)
    code, status = invoke_json("status", str(app), "--check")
    assert code == 1 and status["table_states"]["notes"]["state"] == "paused"
    assert status["dead_letters"] == 0
