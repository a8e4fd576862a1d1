"""``d1sync clone`` through the real CLI on the emulator over a real socket: a clone that `migrations list`
agrees with, one-line refusals (a non-empty FILE, a missing database), and kill -9 mid-clone in a real
subprocess, run again until done, identical to an uninterrupted clone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
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
def remote(tmp_path: Path, emulator_server: EmulatorServer) -> list[str]:
    """A fresh emulator database holding two applied migrations and some rows; its target options."""
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_items.sql").write_text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, big INTEGER);\n")
    (migrations / "0002_tags.sql").write_text(
        "CREATE TABLE tags (item INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (item, tag)) WITHOUT ROWID;\n"
    )
    code, out, err = invoke("migrations", "apply", *target, "--migrations-dir", str(migrations))
    assert code == 0, out + err
    values = ", ".join(f"({i}, 'item {i}', {2**62 + i})" for i in range(1, 201))
    assert invoke("query", *target, f"INSERT INTO items VALUES {values}")[0] == 0
    assert invoke("query", *target, "INSERT INTO tags VALUES (1, 'a'), (1, 'b'), (2, 'a')")[0] == 0
    return target


def test_clone_then_migrations_list_agrees_with_the_source(tmp_path: Path, remote: list[str]) -> None:
    out = tmp_path / "copy.db"
    code, stdout, stderr = invoke("clone", *remote, str(out), "--page", "30")
    assert code == 0, stdout + stderr
    assert "cloned 207 row(s)" in stdout  # 200 items, 3 tags, 2 ledger rows and their 2 checksums
    assert "verified" in stdout and "verified every table" in stdout
    listed = [
        json.loads(invoke("migrations", "list", *where, "--migrations-dir", str(tmp_path / "migrations"), "--json")[1])
        for where in (remote, ["--local", str(out)])
    ]
    assert listed[0]["migrations"] == listed[1]["migrations"]
    assert [m["state"] for m in listed[1]["migrations"]] == ["applied", "applied"]
    with closing(open_file(out)) as conn:
        assert conn.execute("SELECT big FROM items WHERE id = 200").fetchone()[0] == 2**62 + 200


def test_clone_json_reports_each_table(tmp_path: Path, remote: list[str]) -> None:
    code, stdout, _ = invoke("clone", *remote, str(tmp_path / "copy.db"), "--json", "--table", "tags")
    assert code == 0
    report = json.loads(stdout)
    assert report["equal"] is True
    assert [(t["table"], t["local_rows"], t["remote_rows"]) for t in report["tables"]] == [("tags", 3, 3)]


def test_clone_refuses_a_non_empty_file_in_one_line_with_the_flag_that_replaces_it(
    tmp_path: Path, remote: list[str]
) -> None:
    out = tmp_path / "taken.db"
    with closing(sqlite3.connect(out)) as conn:
        conn.execute("CREATE TABLE mine (x)")
    before = out.read_bytes()
    code, _, stderr = invoke("clone", *remote, str(out))
    assert code == 1 and out.read_bytes() == before
    error, hint = stderr.strip().splitlines()
    assert error == f"Error: {out} exists and is not empty"
    assert hint.startswith("Try: ") and "pass --force to replace it" in hint and "force=True" not in hint
    assert invoke("clone", *remote, str(out), "--force")[0] == 0


def test_clone_of_a_missing_database_is_one_line_and_creates_no_file(tmp_path: Path) -> None:
    with EmulatorServer(tmp_path / "emulator", token=TOKEN) as server:  # no --auto-create
        code, _, stderr = invoke("clone", "--emulator", server.url, "--database-id", str(uuid.uuid4()), "x.db")
    assert code == 1
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and "could not be found" in lines[0]
    assert lines[1].startswith("Try: ") and len(lines) == 2
    assert not Path("x.db").exists() and not (tmp_path / "x.db").exists()


def test_clone_from_a_missing_local_file_is_refused_naming_it(tmp_path: Path) -> None:
    code, _, stderr = invoke("clone", "--local", str(tmp_path / "nope.db"), str(tmp_path / "x.db"))
    assert code == 1 and f"no such file: {tmp_path / 'nope.db'}" in stderr and "Try: check the path" in stderr
    assert not (tmp_path / "nope.db").exists()


def _copied(path: Path) -> int:
    """Rows the interrupted clone in ``path`` has committed so far (0 before its plan exists)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute("SELECT coalesce(sum(copied), 0) FROM _d1sync_clone").fetchone()[0])
    except sqlite3.Error:
        return 0


def _clone_process(target: list[str], out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "d1sync", "clone", *target, str(out), "--page", "40", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def test_kill_9_mid_clone_then_clone_again_is_identical(tmp_path: Path) -> None:
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True) as server:
        target = ["--emulator", server.url, "--database-id", str(uuid.uuid4())]
        schema = (
            "CREATE TABLE rows_ (id INTEGER PRIMARY KEY, n INTEGER, r REAL, t TEXT, b BLOB); "
            "CREATE TABLE pairs (a TEXT NOT NULL, b INTEGER NOT NULL, v, PRIMARY KEY (a, b)) WITHOUT ROWID; "
            "CREATE VIRTUAL TABLE search USING fts5(body); CREATE INDEX rows_n ON rows_ (n)"
        )
        assert invoke("query", *target, schema)[0] == 0
        fill = (
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 2000) "
            "INSERT INTO rows_ SELECT i, 9007199254740993 * (i % 3) - i, i / 7.0, 'text ' || i || char(0) || 'é', "
            "randomblob(i % 50) FROM s"
        )
        assert invoke("query", *target, fill)[0] == 0
        pairs = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 600) "
        assert invoke("query", *target, pairs + "INSERT INTO pairs SELECT 'k' || (i % 7), i, i * 1.5 FROM s")[0] == 0
        words = pairs + "INSERT INTO search (rowid, body) SELECT i, 'word' || (i % 13) || ' common' FROM s"
        assert invoke("query", *target, words)[0] == 0
        server.app.state.faults.update(latency=0.05)  # slow enough for the kills to land mid-clone
        out = tmp_path / "copy.db"
        kills = 0
        for threshold in (200, 900, 1700, 2500):
            child = _clone_process(target, out)
            deadline = time.monotonic() + 60
            while _copied(out) < threshold and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills += 1
            child.communicate(timeout=30)
        assert kills >= 3
        assert 0 < _copied(out) < 3200  # interrupted: the plan and some pages are there, not all
        server.app.state.faults.update(latency=0.0)
        final = _clone_process(target, out)
        stdout, stderr = final.communicate(timeout=120)
        assert final.returncode == 0, stderr
        fresh = tmp_path / "fresh.db"
        assert invoke("clone", *target, str(fresh))[0] == 0
        source = server.app.state.engine.path_for(target[-1])
    with closing(open_file(out)) as a, closing(open_file(fresh)) as b, closing(open_file(source)) as c:
        objects = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
        assert a.execute(objects).fetchall() == b.execute(objects).fetchall()
        for table in ("rows_", "pairs", "search"):
            assert snapshot(a, table) == snapshot(b, table) == snapshot(c, table), table
        match = "SELECT rowid FROM search WHERE search MATCH 'word3' ORDER BY rowid"
        assert a.execute(match).fetchall() == c.execute(match).fetchall()
