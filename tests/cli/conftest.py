"""What the command-line tests share: a tracked file and a way to run the command line in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from d1sync import LocalDatabase, Outbox
from d1sync.cli import cli

SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
    """``d1sync ARGS`` in process (stdout and stderr apart), its exceptions shown as they are."""
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False, prog_name="d1sync")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A file with 20 tracked notes, not synced yet."""
    path = tmp_path / "app.db"
    with LocalDatabase(path) as db:
        db.exec(SCHEMA)
        db.batch([db.prepare("INSERT INTO notes VALUES (?, ?, ?)").bind(i, f"n{i}", i) for i in range(20)])
    Outbox(path).track("notes")
    return path
