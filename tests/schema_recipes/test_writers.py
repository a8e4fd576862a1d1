"""docs/schema.md's two-writers recipe: two WAL writers and `d1sync run`, each a real process, as the page's
shell session runs them (bash); the daemon creates the table on D1 and every committed write arrives."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from .conftest import Kitchen, assert_exact, recipe, shell_block


def test_two_wal_writers_under_d1sync_run_end_exact(kitchen: Kitchen, monkeypatch: pytest.MonkeyPatch) -> None:
    (writer,) = [b for b in recipe("writers") if b.file == "writer.py"]
    (kitchen.folder / "writer.py").write_text(writer.code, encoding="utf-8")
    # `python` and `d1sync` are this interpreter's and this checkout's, as in the user's activated venv.
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    log = kitchen.folder / "session.log"
    with log.open("w") as out:
        # In a session of its own: the daemon the recipe leaves running is in the shell's process group.
        shell = subprocess.Popen(
            ["bash", "-e", "-c", shell_block("writers")],
            cwd=kitchen.folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = shell.wait(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the daemon (a hung shell too): its work is checked below
                os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    assert code == 0, log.read_text()  # every line succeeded: `sync --wait` returned and verify found it equal
    assert_exact(kitchen.db, kitchen.remote.path, "readings")
    with closing(sqlite3.connect(kitchen.remote.path)) as d1:
        per_sensor = dict(d1.execute("SELECT sensor, count(*) FROM readings GROUP BY sensor").fetchall())
    assert per_sensor == {"sensor-a": 4_951, "sensor-b": 4_951}  # 5,000 written, 49 deleted, by each writer
