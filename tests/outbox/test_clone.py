"""clone(): a database copied into a new file exactly (types, edge values, keys, FTS5, views, triggers,
AUTOINCREMENT counters, d1_migrations), in bounded pages, resumable, and refusing to overwrite a file."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync import ConfigError, D1Client, clone
from d1sync.database import RawResult, Statement
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.sync.compare.clone import CloneProgress

from .conftest import RecordingTarget, emulator_client, emulator_file, open_file, snapshot

SCHEMA = """
CREATE TABLE vals (id INTEGER PRIMARY KEY, any_ ANY, i INTEGER, r REAL, t TEXT, n NUMERIC, b BLOB, u);
CREATE TABLE pairs (a TEXT NOT NULL COLLATE NOCASE, b INTEGER NOT NULL, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE loose (x, y);
CREATE TABLE named (code TEXT PRIMARY KEY, n INTEGER);
CREATE TABLE counters (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT);
CREATE TABLE d1_migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
CREATE VIRTUAL TABLE notes_fts USING fts5(title, body);
CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
CREATE INDEX loose_x ON loose (x);
CREATE UNIQUE INDEX named_n ON named (n) WHERE n IS NOT NULL;
CREATE VIEW big_vals AS SELECT id, i FROM vals WHERE typeof(i) = 'integer' AND i > 9007199254740992;
CREATE TRIGGER counters_log AFTER INSERT ON counters BEGIN INSERT INTO loose (x, y) VALUES ('counted', NEW.id); END
"""

INTEGERS = [0, 1, -1, 2**31, 2**53 - 1, 2**53, 2**53 + 1, -(2**53) - 1, 2**62 + 12345, 2**63 - 1, -(2**63)]
REALS = [0.0, -0.0, 1.0, -1.5, 0.1, 0.1 + 0.2, 1 / 3, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 1e15 + 0.3]
REALS += [2.0**60]
TEXTS = ["", "a", "a\x00b", "\x00", "café", "日本語", "🦀 astral", "quote ' and \" and \\", "line\nbreak"]
TEXTS += ["x" * 100_000]
BLOBS = [b"", b"\x00", b"\x00\xff\x10", bytes(range(256)), b"\xff" * 250_000]


def _values() -> list[Any]:
    return [None, *INTEGERS, *REALS, *TEXTS, *BLOBS]


def _fill(db: D1Client | LocalDatabase) -> None:
    db.exec(SCHEMA)
    rows = []
    values = _values()
    for i, value in enumerate(values):
        # Every value in every column: each affinity stores (or converts) it its own way, on both sides alike.
        # (a value too large to repeat seven times within D1's 2 MB row goes in one column)
        repeated = [value] * 7 if not isinstance(value, str | bytes) or len(value) < 1000 else [None] * 6 + [value]
        rows.append(db.prepare("INSERT INTO vals VALUES (?, ?, ?, ?, ?, ?, ?, ?)").bind(i + 1, *repeated))
    db.batch(rows)
    db.batch(
        [
            db.prepare("INSERT INTO pairs VALUES (?, ?, ?)").bind(a, b, v)
            for a, b, v in [("A", 1, 1), ("a\x00z", 2, 2.5), ("b", -(2**63), "x"), ("B", 2**63 - 1, b"\x01")]
            + [("", 0, None)]
        ]
    )
    db.batch([db.prepare("INSERT INTO loose VALUES (?, ?)").bind(v, i) for i, v in enumerate([1, 1, None, "z", 2.5])])
    db.batch([db.prepare("INSERT INTO named VALUES (?, ?)").bind(c, n) for c, n in [("x", 1), ("y", None), ("Y", 2)]])
    db.exec(
        "INSERT INTO counters (label) VALUES ('one'); INSERT INTO counters (label) VALUES ('two'); "
        "INSERT INTO counters (label) VALUES ('three'); DELETE FROM counters WHERE id = 3"
    )
    db.exec(
        "INSERT INTO d1_migrations (name, applied_at) VALUES ('0001_init.sql', '2026-01-02 03:04:05'); "
        "INSERT INTO d1_migrations (name, applied_at) VALUES ('0002_more.sql', '2026-01-03 03:04:05')"
    )
    db.batch(
        [
            db.prepare("INSERT INTO notes_fts (rowid, title, body) VALUES (?, ?, ?)").bind(
                i * 7, f"title {i}", f"body {i} {'alpha' if i % 2 else 'beta'} café"
            )
            for i in range(1, 41)
        ]
    )
    db.batch([db.prepare("INSERT INTO docs (id, body) VALUES (?, ?)").bind(i, f"doc {i} gamma") for i in range(1, 21)])
    db.exec("INSERT INTO docs_fts (docs_fts) VALUES ('rebuild')")


TABLES = ["vals", "pairs", "loose", "named", "counters", "d1_migrations", "docs", "notes_fts"]


def _objects(path: Path) -> list[tuple[str, str, str, str]]:
    with closing(open_file(path)) as conn:
        # D1 (and so the emulator) keeps its own _cf_METADATA table in every database; a clone leaves it out.
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' "
            "ORDER BY type, name"
        ).fetchall()
    return [tuple(r) for r in rows]


def _same_file(a: Path, b: Path, tables: list[str] = TABLES) -> None:
    """Same schema objects, same rows with the same storage classes, same REAL bits, same counters."""
    assert _objects(a) == _objects(b)
    with closing(open_file(a)) as x, closing(open_file(b)) as y:
        for table in [*tables, "sqlite_sequence"]:
            assert snapshot(x, table) == snapshot(y, table), table
        bits = "SELECT id, hex(CAST(r AS BLOB)), r FROM vals WHERE typeof(r) = 'real' ORDER BY id"
        left, right = x.execute(bits).fetchall(), y.execute(bits).fetchall()
        assert [(i, struct.pack("<d", v)) for i, _, v in left] == [(i, struct.pack("<d", v)) for i, _, v in right]


@pytest.fixture
def source(emulator: EmulatorServer) -> Iterator[D1Client]:
    with emulator_client(emulator) as client:
        _fill(client)
        yield client


def test_clone_copies_every_type_and_edge_value_and_the_schema_exactly(
    tmp_path: Path, emulator: EmulatorServer, source: D1Client
) -> None:
    report = clone(source, tmp_path / "copy.db")
    assert report.equal and not report.resumed and report.notes == []
    assert {d.table for d in report.tables} == set(TABLES)
    _same_file(emulator_file(emulator), tmp_path / "copy.db")
    with closing(open_file(tmp_path / "copy.db")) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_d1sync%' ESCAPE '\\'").fetchall() == []
        stored = conn.execute("SELECT typeof(any_), any_ FROM vals WHERE id = ?", (1 + 1 + INTEGERS.index(2**53 + 1),))
        assert stored.fetchone() == ("integer", 2**53 + 1)
        big = [r[1] for r in conn.execute("SELECT * FROM big_vals ORDER BY id")]
        assert big == [2**53 + 1, 2**62 + 12345, 2**63 - 1, 2**60]  # 2.0**60 in an INTEGER column is an integer
        first = 2 + len(INTEGERS)
        found = conn.execute("SELECT r FROM vals WHERE id BETWEEN ? AND ? ORDER BY id", (first, first + len(REALS) - 1))
        reals = [r[0] for r in found]
        assert reals == REALS  # bit for bit as the source holds them (_same_file); SQLite itself stores -0.0 as 0.0


def test_clone_rebuilds_fts5_indexes_and_keeps_views_triggers_and_counters_working(
    tmp_path: Path, source: D1Client
) -> None:
    clone(source, tmp_path / "copy.db")
    with closing(open_file(tmp_path / "copy.db")) as conn:
        hits = conn.execute("SELECT rowid FROM notes_fts WHERE notes_fts MATCH 'alpha' ORDER BY rowid").fetchall()
        assert [r[0] for r in hits] == [i * 7 for i in range(1, 41, 2)]
        assert conn.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'gamma'").fetchone()[0] == 20
        assert conn.execute("INSERT INTO notes_fts (notes_fts) VALUES ('integrity-check')").rowcount is not None
        conn.execute("INSERT INTO counters (label) VALUES ('four')")
        # AUTOINCREMENT carries on after the source's highest id ever (3, since deleted); the trigger fired
        # on the source for 1-3, not again for the copied rows, and fires now for 4.
        assert conn.execute("SELECT max(id) FROM counters").fetchone()[0] == 4
        counted = conn.execute("SELECT y FROM loose WHERE x = 'counted' ORDER BY y").fetchall()
        assert [r[0] for r in counted] == [1, 2, 3, 4]
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO named VALUES ('q', 1)")  # the partial unique index came along


def test_clone_pages_stay_within_their_byte_budget(tmp_path: Path, emulator: EmulatorServer) -> None:
    class Counting(RecordingTarget):
        def __init__(self, inner: Any) -> None:
            super().__init__(inner)
            self.pages: list[int] = []

        def _execute_raw(self, statement: Statement) -> RawResult:
            result = super()._execute_raw(statement)
            if statement.sql.startswith("WITH head"):
                self.pages.append(sum(len(str(v)) for row in result.rows for v in row))
            return result

    client = emulator_client(emulator)
    client.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, payload BLOB)")
    client.batch([client.prepare("INSERT INTO big VALUES (?, randomblob(?))").bind(i, 50_000) for i in range(60)])
    counting = Counting(client)
    report = clone(counting, tmp_path / "copy.db", page_bytes=300_000)
    client.close()
    assert report.equal
    # 50,000-byte rows are 100,000 hex characters each: three per 300,000-byte page, never the whole table.
    assert len(counting.pages) >= 20
    assert max(counting.pages) < 3 * 100_000 + 10_000


def test_clone_from_a_local_file_reports_progress_and_can_select_tables(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "src.db") as src:
        _fill(src)
        seen: list[CloneProgress] = []
        chosen = ["notes_fts", "docs_fts", "counters"]
        report = clone(src, tmp_path / "part.db", tables=chosen, page=7, on_progress=seen.append)
    assert report.equal
    assert {d.table for d in report.tables} == {"notes_fts", "docs", "counters"}
    assert seen[-1].phase == "verify" and seen[-1].rows == seen[-1].total_rows == 40 + 20 + 2
    shadows = ("notes_fts_", "docs_fts_")
    copy = [o[1] for o in _objects(tmp_path / "part.db") if o[0] != "index" and not o[1].startswith(shadows)]
    assert sorted(copy) == ["counters", "counters_log", "docs", "docs_fts", "notes_fts", "sqlite_sequence"]


def test_clone_refuses_a_non_empty_file_without_force_and_leaves_it_intact(tmp_path: Path, source: D1Client) -> None:
    target = tmp_path / "busy.db"
    with closing(open_file(target)) as conn:
        conn.execute("CREATE TABLE mine (x)")
        conn.execute("INSERT INTO mine VALUES ('keep me')")
    with pytest.raises(ConfigError, match=r"exists and is not empty.*--force"):
        clone(source, target)
    with closing(open_file(target)) as conn:
        assert conn.execute("SELECT x FROM mine").fetchall() == [("keep me",)]
    assert clone(source, target, force=True).equal
    assert "mine" not in {o[1] for o in _objects(target)}


def test_clone_names_an_unknown_table_and_creates_no_file(tmp_path: Path, source: D1Client) -> None:
    with pytest.raises(ConfigError, match=r"no table or view 'nope' in the source; it has: .*vals"):
        clone(source, tmp_path / "x.db", tables=["nope"])
    assert not (tmp_path / "x.db").exists()


def test_an_interrupted_clone_resumes_from_its_last_committed_page(tmp_path: Path, emulator: EmulatorServer) -> None:
    client = emulator_client(emulator)
    client.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
    client.batch([client.prepare("INSERT INTO items VALUES (?, ?)").bind(i, f"v{i}") for i in range(1, 501)])
    failing = RecordingTarget(client)
    calls = {"n": 0}
    original = failing._execute_raw

    def flaky(statement: Statement) -> RawResult:
        if statement.sql.startswith("WITH head"):
            calls["n"] += 1
            if calls["n"] == 4:
                raise ConnectionError("the network went away mid-clone")
        return original(statement)

    failing._execute_raw = flaky  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        clone(failing, tmp_path / "copy.db", page=100)
    with closing(open_file(tmp_path / "copy.db")) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 300
    report = clone(client, tmp_path / "copy.db", page=100)
    client.close()
    assert report.resumed and report.equal and report.rows == 200
    with closing(open_file(tmp_path / "copy.db")) as conn, closing(open_file(emulator_file(emulator))) as far:
        assert snapshot(conn, "items") == snapshot(far, "items")


def test_one_row_pages_cross_every_key_boundary_exactly(
    tmp_path: Path, emulator: EmulatorServer, source: D1Client
) -> None:
    """Composite NOCASE keys, NUL and empty-text keys, 64-bit extremes and rowids: each page starts exactly
    after the last key, in the table's own collation."""
    report = clone(source, tmp_path / "copy.db", page=1)
    assert report.equal and report.requests > 2 * 70
    _same_file(emulator_file(emulator), tmp_path / "copy.db")


def test_a_resumed_clone_refuses_another_table_choice(tmp_path: Path, source: D1Client) -> None:
    failing = RecordingTarget(source)
    original = failing._execute_raw

    def cut(statement: Statement) -> RawResult:
        if statement.sql.startswith("WITH head"):
            raise ConnectionError("cut")
        return original(statement)

    failing._execute_raw = cut  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        clone(failing, tmp_path / "copy.db", tables=["pairs"])
    with pytest.raises(ConfigError, match=r"interrupted clone without 'vals'.*--force"):
        clone(source, tmp_path / "copy.db", tables=["vals"])
    assert clone(source, tmp_path / "copy.db").resumed
