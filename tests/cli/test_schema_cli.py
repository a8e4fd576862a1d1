"""The managed schema through the command line: a table D1 lacks is created by `sync`, the action shows in
`status` (text and JSON), and --manage-schema / --no-manage-schema on track, sync and run decide who owns it."""

from __future__ import annotations

import json
from pathlib import Path

from d1sync import LocalDatabase

from .conftest import invoke


def empty_remote(tmp_path: Path) -> Path:
    """A remote database without the synced table."""
    path = tmp_path / "remote.db"
    with LocalDatabase(path) as db:
        db.exec("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    return path


def test_sync_creates_the_table_d1_lacks_and_status_shows_the_schema_change(app: Path, tmp_path: Path) -> None:
    remote = empty_remote(tmp_path)
    result = invoke("sync", str(app), "--local", str(remote))
    assert result.exit_code == 0, result.output
    with LocalDatabase(remote) as db:
        assert db.prepare("SELECT count(*) AS n FROM notes").first("n") == 20
    text = invoke("status", str(app)).stdout
    assert "schema create on the remote" in " ".join(text.split())
    change = json.loads(invoke("status", str(app), "--json").stdout)["table_states"]["notes"]["last_schema_change"]
    assert change["action"] == "create" and change["sql"] == [
        "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"
    ]


def test_no_manage_schema_on_sync_pauses_the_table_with_the_fix_naming_the_file(app: Path, tmp_path: Path) -> None:
    remote = empty_remote(tmp_path)
    result = invoke("sync", str(app), "--local", str(remote), "--no-manage-schema", "--timeout", "5")
    assert result.exit_code == 1
    notes = json.loads(invoke("status", str(app), "--json").stdout)["table_states"]["notes"]
    assert notes["state"] == "paused"
    assert notes["fix"] == (
        "run on the remote: CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER); or let d1sync "
        f"manage this table's schema: `d1sync track {app} notes --manage-schema`"
    )


def test_no_manage_schema_on_track_is_kept_with_the_table_and_manage_schema_on_sync_overrides_it(
    app: Path, tmp_path: Path
) -> None:
    remote = empty_remote(tmp_path)
    assert invoke("track", str(app), "notes", "--no-manage-schema").exit_code == 0
    assert invoke("sync", str(app), "--local", str(remote), "--timeout", "5").exit_code == 1
    assert invoke("sync", str(app), "--local", str(remote), "--manage-schema").exit_code == 0
    with LocalDatabase(remote) as db:
        assert db.prepare("SELECT count(*) AS n FROM notes").first("n") == 20
