"""``d1sync restore``: a file with FTS5 tables into a new emulator database, then ``d1sync clone`` back out,
gives a file equal to the first (every table, FTS5 content, exact values); ``--into`` only an empty database."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer
from d1sync.restore import restore

from .conftest import TOKEN, client_of, snapshot

VALUES: list[Any] = [
    None,
    2**63 - 1,
    -(2**63),
    2**53 + 1,
    0.1,
    5e-324,
    2.0**120,
    -1e-300,  # not an infinity: D1's JSON sends those as null, so clone and verify cannot read them back
    "a\x00b\nc",
    b"\x00\xff",
    "",
]


def make_app(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(
            """
            CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, body TEXT, v);
            CREATE TABLE loose (a, b);  -- no key: rows are told apart by their rowid
            CREATE VIRTUAL TABLE docs_fts USING fts5 (title, body, content='docs', content_rowid='id');
            CREATE VIRTUAL TABLE memo USING fts5 (text);
            CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN
              INSERT INTO docs_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
            END;
            CREATE INDEX docs_title ON docs (title);
            CREATE VIEW titles AS SELECT title FROM docs;
            """
        )
        conn.executemany(
            "INSERT INTO docs (id, title, body, v) VALUES (?, ?, ?, ?)",
            [(i * 3, f"title {i}", f"body of document {i} with searchable words", v) for i, v in enumerate(VALUES)],
        )
        conn.executemany("INSERT INTO loose (rowid, a, b) VALUES (?, ?, ?)", [(10, 1, 1.5), (20, "x", b"y")])
        conn.executemany("INSERT INTO memo (rowid, text) VALUES (?, ?)", [(4, "remember the milk"), (9, "ünïcode ✓")])


def run(*words: str) -> Any:
    result = CliRunner().invoke(cli, list(words), catch_exceptions=False)
    return result


def schema(path: Path) -> set[tuple[str, str, str]]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\'")
        return {(str(t), str(n), str(s)) for t, n, s in rows}


@pytest.fixture(autouse=True)
def emulator_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D1SYNC_EMULATOR_TOKEN", TOKEN)


def test_restore_then_clone_gives_back_a_file_equal_to_the_first(tmp_path: Path, server: EmulatorServer) -> None:
    app, copy = tmp_path / "app.db", tmp_path / "copy.db"
    make_app(app)
    restored = run("restore", "--emulator", server.url, str(app), "--to", "backup", "--json")
    assert restored.exit_code == 0, restored.output
    report = json.loads(restored.stdout)
    assert report["created"] and report["equal"] and report["name"] == "backup"
    assert {t["table"] for t in report["tables"]} == {"docs", "loose", "memo"}
    cloned = run("clone", "--emulator", server.url, "--database-id", report["database_id"], str(copy), "--json")
    assert cloned.exit_code == 0, cloned.output
    for table in ("docs", "loose", "memo", "docs_fts"):
        assert snapshot(copy, table) == snapshot(app, table), table
    assert schema(copy) == schema(app)
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("SELECT rowid FROM memo WHERE memo MATCH 'milk'").fetchall() == [(4,)]
        assert len(conn.execute("SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'searchable'").fetchall()) == 11


def test_restore_prints_the_new_database_id(tmp_path: Path, server: EmulatorServer) -> None:
    make_app(tmp_path / "app.db")
    result = run("restore", "--emulator", server.url, str(tmp_path / "app.db"), "--to", "shown")
    assert result.exit_code == 0, result.output
    with client_of(server) as d1:
        [made] = d1.list_databases(name="shown")
    assert f"database_id = {made['uuid']}" in result.stdout


def test_into_restores_an_empty_database_and_refuses_one_with_tables(tmp_path: Path, server: EmulatorServer) -> None:
    make_app(tmp_path / "app.db")
    with client_of(server) as d1:
        empty = str(d1.create_database("empty")["uuid"])
    done = run("restore", "--emulator", server.url, str(tmp_path / "app.db"), "--into", empty, "-q")
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    again = run("restore", "--emulator", server.url, str(tmp_path / "app.db"), "--into", empty, "-q")
    assert again.exit_code == 1
    error, hint = again.stderr.strip().splitlines()
    assert f"database {empty} is not empty" in error and hint.startswith("Try: restore into a new database")


def test_to_or_into_is_required_and_a_local_target_is_refused(tmp_path: Path, server: EmulatorServer) -> None:
    make_app(tmp_path / "app.db")
    assert run("restore", "--emulator", server.url, str(tmp_path / "app.db")).exit_code == 2
    both = run("restore", "--emulator", server.url, str(tmp_path / "app.db"), "--to", "a", "--into", "b")
    assert both.exit_code == 2
    assert run("restore", "--local", str(tmp_path / "x.db"), str(tmp_path / "app.db"), "--to", "a").exit_code == 2


def test_a_failed_import_names_the_database_it_left_behind(tmp_path: Path, server: EmulatorServer) -> None:
    app = tmp_path / "app.db"
    with closing(sqlite3.connect(app)) as conn, conn:
        conn.execute("CREATE TABLE t (v)")
        conn.execute("INSERT INTO t VALUES (zeroblob(2300000))")  # over D1's 2 MB per value: the import fails
    result = run("restore", "--emulator", server.url, str(app), "--to", "broken", "-q")
    assert result.exit_code == 1
    error, hint = result.stderr.strip().splitlines()
    assert "left behind" in error and "--into" in hint


def test_the_library_reports_each_table_verified(tmp_path: Path, server: EmulatorServer) -> None:
    make_app(tmp_path / "app.db")
    seen: list[str] = []
    with client_of(server) as d1:
        report = restore(tmp_path / "app.db", d1, name="lib", on_import=lambda h: seen.append(h.stage))
    assert report.equal and report.statements > 0 and report.bookmark
    assert [t.local_rows for t in report.tables] == [11, 2, 2]
    assert seen == ["init", "uploaded", "ingesting", "complete"]
