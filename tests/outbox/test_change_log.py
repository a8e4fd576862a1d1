"""The change log's layout: raw keys from triggers, JSON keys from Python, the clock, and the in-place upgrade
from the layouts of earlier builds (see d1sync.sync.store.log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from d1sync.errors import TransientError
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox
from d1sync.sqlite import Connection
from d1sync.sync.codec import encode_key
from d1sync.sync.push.window import read_window, requeue
from d1sync.sync.status import read_status
from d1sync.sync.store.log import stamp
from d1sync.sync.store.triggers import capture_of
from d1sync.sync.store.upgrade import ensure_schema

from ..conftest import Closer
from .conftest import OpenWorker, RecordingTarget, open_file

KEYS: list[tuple[str, Any]] = [
    ("big integer", 2**63 - 1),
    ("negative integer", -(2**63)),
    ("text with NUL", "a\x00b"),
    ("text that looks like a JSON key", "[1]"),
    ("blob", b"\x00\xff\x10"),
    ("empty blob", b""),
    ("unicode text", 'é"\\ \U0001f600'),
]


@pytest.mark.parametrize(("kind", "value"), KEYS, ids=[k for k, _ in KEYS])
def test_a_trigger_stores_the_key_raw_and_readers_see_its_canonical_text(
    tmp_path: Path, closer: Closer[Any], kind: str, value: Any
) -> None:
    path = tmp_path / "app.db"
    app = closer(LocalDatabase(path))
    app.exec("CREATE TABLE t (k PRIMARY KEY NOT NULL, v TEXT)")  # untyped: every kind of key keeps its type
    Outbox(path).track("t", backfill_existing=False)
    with app.atomic() as conn:
        conn.execute("INSERT INTO t VALUES (?, 'x')", (value,))
    with Connection(path) as conn:
        stored = conn.execute("SELECT typeof(key), op FROM _d1sync_changes").fetchall()
        assert stored == [({int: "integer", str: "text", bytes: "blob"}[type(value)], 1)]
        # The same key queued again from Python (as a re-send does) is written as JSON: one key all the same.
        [change] = read_window(conn, 10).changes
        requeue(conn, [change])
        [again] = read_window(conn, 10).changes
    assert change.key == again.key == encode_key([value])
    assert len(again.seqs) == 2 and again.op == "upsert"


def test_a_composite_key_is_stored_as_its_json_text(tmp_path: Path, closer: Closer[Any]) -> None:
    path = tmp_path / "app.db"
    app = closer(LocalDatabase(path))
    app.exec("CREATE TABLE t (a INTEGER NOT NULL, b BLOB NOT NULL, v, PRIMARY KEY (a, b))")
    Outbox(path).track("t")
    app.exec("INSERT INTO t VALUES (1, x'00', 'x'); DELETE FROM t")
    with Connection(path) as conn:
        assert conn.execute("SELECT key, op FROM _d1sync_changes ORDER BY seq").fetchall() == [
            ('[1,{"x":"00"}]', 3),
            ('[1,{"x":"00"}]', 4),
        ]
        assert [(c.key, c.op) for c in read_window(conn, 10).changes] == [(encode_key([1, b"\x00"]), "delete")]


def test_the_oldest_pending_age_is_when_a_worker_first_saw_the_change(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    remote.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    Outbox(path).track("t")
    app.exec("INSERT INTO t VALUES (1, 'a')")
    target = RecordingTarget(remote)
    target.fail_when = lambda statements: TransientError("D1 is down")
    worker = open_worker(path, target)
    with Connection(path) as conn:
        assert read_status(conn, now=1_000).oldest_pending_age is None  # no worker has seen it yet
        worker.sync_once(now=1_000)  # fails: the change stays, seen at t=1000
        app.exec("INSERT INTO t VALUES (2, 'b')")
        worker.sync_once(now=1_100)  # still down (back-off): the second change is seen at t=1100
        assert read_status(conn, now=1_160).oldest_pending_age == pytest.approx(160)
        assert conn.execute("SELECT count(*) FROM _d1sync_clock").fetchone()[0] == 2
        target.fail_when = None
        worker.resume()
        worker.sync_once(now=1_200)
        status = read_status(conn, now=1_200)
        assert (status.pending_changes, status.oldest_pending_age) == (0, None)
        app.exec("INSERT INTO t VALUES (3, 'c')")
        assert stamp(conn, 1_300_000) and not stamp(conn, 1_400_000)  # once per growth of the log
        # Stamps no pending change needs are forgotten as new ones are written.
        assert conn.execute("SELECT seq, at FROM _d1sync_clock").fetchall() == [(3, 1_300_000)]


OLD_LOG = """
CREATE TABLE _d1sync_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')), payload TEXT, created_at INTEGER NOT NULL);
CREATE TABLE _d1sync_tables (tbl TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE _d1sync_meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
"""


def _old_capture(table: str, on: str) -> str:
    # What an earlier build's AFTER INSERT trigger looked like: it writes the columns the upgrade removes.
    return (
        f"CREATE TRIGGER _d1sync_{table}_ins AFTER INSERT ON {on} BEGIN INSERT INTO _d1sync_changes "
        f"(tbl, key, op, created_at) VALUES ('{table}', json_array(NEW.id), 'upsert', 0); END"
    )


def _old_outbox(path: Path) -> None:
    spec = {"name": "t", "key": ["id"], "columns": ["id", "v"]}
    conn = open_file(path)
    conn.executescript(OLD_LOG)
    conn.execute("INSERT INTO _d1sync_tables VALUES ('t', ?)", (json.dumps(spec),))
    conn.execute(_old_capture("t", "t"))
    conn.executescript(
        "INSERT INTO _d1sync_changes VALUES (1, 't', '[1]', 'upsert', NULL, 1700000000000),"
        " (2, 't', '[2]', 'delete', NULL, 1700000000500), (3, 't', '[3]', 'upsert', NULL, 1700000060000);"
    )
    conn.close()


def test_the_upgrade_keeps_the_pending_rows_their_age_and_capture(tmp_path: Path, closer: Closer[Any]) -> None:
    path = tmp_path / "old.db"
    _old_outbox(path)
    with Connection(path) as conn:
        ensure_schema(conn)
        status = read_status(conn, now=1_700_000_100)
        # The oldest change was written at 1700000000.0 s: its age survives the upgrade, to the second.
        assert (status.pending_changes, status.oldest_pending_age) == (3, pytest.approx(100, abs=1))
    app = closer(LocalDatabase(path))
    app.exec("INSERT INTO t VALUES (4, 'new')")  # the old trigger would fail now: it was replaced
    with Connection(path) as conn:
        rows = conn.execute("SELECT seq, tbl, key, op FROM _d1sync_pending ORDER BY seq").fetchall()
        assert rows == [
            (1, "t", "[1]", "upsert"),
            (2, "t", "[2]", "delete"),
            (3, "t", "[3]", "upsert"),
            (4, "t", "[4]", "upsert"),
        ]
        assert conn.execute("SELECT typeof(key), op FROM _d1sync_changes WHERE seq = 4").fetchone() == ("integer", 1)


def test_the_upgrade_leaves_a_renamed_tables_capture_where_it_sits(tmp_path: Path) -> None:
    """A table renamed before the upgrade keeps its capture on the new name, so the worker sees the rename."""
    path = tmp_path / "old.db"
    _old_outbox(path)
    conn = open_file(path)
    conn.execute("ALTER TABLE t RENAME TO t2")
    conn.close()
    with Connection(path) as upgraded:
        ensure_schema(upgraded)
        assert capture_of(upgraded, "t") == (3, {"t2"})
        upgraded.execute("INSERT INTO t2 VALUES (9, 'x')")
        assert upgraded.execute("SELECT tbl, key FROM _d1sync_pending WHERE seq > 3").fetchall() == [("t", "[9]")]
