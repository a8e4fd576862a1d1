"""``--via`` on ``sync`` and ``run``: the backlog through D1's import, or in batches; a bad choice is usage."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from d1sync.emulator.server import EmulatorServer

from ..support import TOKEN
from .conftest import SCHEMA, invoke

ENV = {"D1SYNC_EMULATOR_TOKEN": TOKEN}


@pytest.mark.parametrize(("via", "requests"), [("import", 2), ("batch", 1)])
def test_sync_via_import_or_batch_sends_every_row(app: Path, tmp_path: Path, via: str, requests: int) -> None:
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True) as server:
        invoke("query", "--emulator", server.url, SCHEMA, env=ENV)
        result = invoke("sync", str(app), "--emulator", server.url, "--via", via, "--json", env=ENV)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["rows"], report["requests"]) == (20, requests)  # the import: init and ingest
        path = server.app.state.engine.path_for("00000000-0000-4000-8000-000000000000")
        with closing(sqlite3.connect(path)) as remote, closing(sqlite3.connect(app)) as local:
            rows = "SELECT * FROM notes ORDER BY id"
            assert remote.execute(rows).fetchall() == local.execute(rows).fetchall()
        status = invoke("status", str(app), "--json")
        assert '"importing": null' in status.output and '"pending_changes": 0' in status.output


@pytest.mark.parametrize("command", ["sync", "run"])
def test_an_unknown_via_is_a_usage_error(app: Path, command: str) -> None:
    result = invoke(command, str(app), "--local", str(app), "--via", "sideways")
    assert result.exit_code == 2 and "'sideways' is not one of 'auto', 'import', 'batch'" in result.output
