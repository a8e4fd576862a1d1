"""docs/schema.md's two-writers recipe: two WAL writers and `d1sync run`, each a real process, as the page's
shell session runs them (bash); the daemon creates the table on D1 and every committed write arrives."""

from __future__ import annotations

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
    shell = subprocess.Popen(
        ["bash", "-e", "-c", shell_block("writers")],
        cwd=kitchen.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the daemon and the writers are in its group: a hung run is killed whole
    )
    try:
        output, _ = shell.communicate(timeout=240)
    finally:
        try:  # whatever is left of the session (a daemon the shell left behind when a line failed) is killed
            os.killpg(shell.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shell.wait()
    assert shell.returncode == 0, output  # the daemon's last drain sent everything, and verify found it equal
    assert_exact(kitchen.db, kitchen.remote.path, "readings")
    with closing(sqlite3.connect(kitchen.remote.path)) as d1:
        per_sensor = dict(d1.execute("SELECT sensor, count(*) FROM readings GROUP BY sensor").fetchall())
    assert per_sensor == {"sensor-a": 4_951, "sensor-b": 4_951}  # 5,000 written, 49 deleted, by each writer
