"""Capture and coalescing: triggers record every write in the writer's transaction; a window keeps the newest."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from d1sync.errors import ConfigError
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox
from d1sync.sqlite import Connection
from d1sync.sync.push.window import read_window

from ..conftest import Closer
from .conftest import OpenWorker, RecordingTarget, data_statements, snapshot

DDL = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"


@pytest.fixture
def tracked(local_pair: tuple[Path, LocalDatabase, LocalDatabase]) -> tuple[Path, LocalDatabase, LocalDatabase]:
    path, app, remote = local_pair
    app.exec(DDL)
    remote.exec(DDL)
    Outbox(path).track("notes")
    return path, app, remote


def window(path: Path, limit: int = 1000) -> list[tuple[str, str, str, object, list[int]]]:
    with Connection(path) as conn:
        w = read_window(conn, limit)
        return [(c.table, c.key, c.op, c.data, c.seqs) for c in w.changes]


def test_many_updates_of_one_key_coalesce_into_one_upsert_of_the_current_state(
    tracked: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    path, app, remote = tracked
    app.prepare("INSERT INTO notes VALUES (1, 'v0', 0)").run()
    for i in range(1, 50):
        app.prepare("UPDATE notes SET body = ?, n = ? WHERE id = 1").bind(f"v{i}", i).run()
    [(table, key, op, data, seqs)] = window(path)
    assert (table, key, op) == ("notes", "[1]", "upsert")
    assert json.loads(str(data)) == [1, "v49", 49]
    assert len(seqs) == 50  # every change row is acknowledged with the one upsert

    target = RecordingTarget(remote)
    worker = open_worker(path, target)
    assert worker.sync_once().rows == 1
    [batch] = target.batches
    upserts = [params for sql, params in data_statements(batch) if sql.startswith("INSERT")]
    assert [json.loads(p[0]) for p in upserts] == [[[1, "v49", 49]]]
    assert worker.pending() == 0
    assert remote.prepare("SELECT * FROM notes").all().results == [{"id": 1, "body": "v49", "n": 49}]


def test_insert_then_delete_becomes_one_delete(
    tracked: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, app, remote = tracked
    remote.prepare("INSERT INTO notes VALUES (7, 'stale remote copy', 0)").run()
    app.prepare("INSERT INTO notes VALUES (7, 'short-lived', 1)").run()
    app.prepare("UPDATE notes SET n = 2 WHERE id = 7").run()
    app.prepare("DELETE FROM notes WHERE id = 7").run()
    [(_, key, op, _, seqs)] = window(path)
    assert (key, op, len(seqs)) == ("[7]", "delete", 3)
    open_worker(path, remote).sync_once()
    assert remote.prepare("SELECT count(*) AS n FROM notes").first("n") == 0


def test_delete_then_reinsert_becomes_an_upsert_of_the_new_row(
    tracked: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    path, app, remote = tracked
    app.prepare("INSERT INTO notes VALUES (3, 'first', 1)").run()
    app.prepare("DELETE FROM notes WHERE id = 3").run()
    app.prepare("INSERT INTO notes VALUES (3, 'second', 2)").run()
    [(_, _, op, data, _)] = window(path)
    assert op == "upsert" and json.loads(str(data)) == [3, "second", 2]


def test_a_key_change_deletes_the_old_key_and_upserts_the_new(
    tracked: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    path, app, remote = tracked
    app.prepare("INSERT INTO notes VALUES (1, 'moving', 5)").run()
    worker = open_worker(path, remote)
    assert worker.sync_once().state == "synced"
    app.prepare("UPDATE notes SET id = 2 WHERE id = 1").run()
    changes = {(key, op) for _, key, op, _, _ in window(path)}
    assert changes == {("[1]", "delete"), ("[2]", "upsert")}
    assert worker.sync_once().rows == 2
    assert remote.prepare("SELECT * FROM notes").all().results == [{"id": 2, "body": "moving", "n": 5}]


def test_a_rolled_back_write_leaves_no_change_row(tracked: tuple[Path, LocalDatabase, LocalDatabase]) -> None:
    path, app, _ = tracked
    with pytest.raises(RuntimeError), app.atomic() as conn:
        conn.execute("INSERT INTO notes VALUES (1, 'never committed', 0)")
        raise RuntimeError("abort")
    assert window(path) == []
    assert Outbox(path).status().pending_changes == 0


def test_composite_keys_and_awkward_identifiers_sync_exactly(
    tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    ddl = (
        'CREATE TABLE "we""ird tbl" ("k 1" TEXT NOT NULL, "k\'2" INTEGER NOT NULL, "vé" BLOB, '
        'PRIMARY KEY ("k 1", "k\'2"))'
    )
    app, remote = closer(LocalDatabase(tmp_path / "a.db")), closer(LocalDatabase(tmp_path / "r.db"))
    app.exec(ddl)
    remote.exec(ddl)
    Outbox(tmp_path / "a.db").track('we"ird tbl')
    with app.atomic() as conn:
        conn.executemany('INSERT INTO "we""ird tbl" VALUES (?, ?, ?)', [("a'b\"c", 1, b"\x00"), ("😀", -(2**63), None)])
        conn.execute('UPDATE "we""ird tbl" SET "k\'2" = 2 WHERE "k 1" = ?', ("a'b\"c",))
    worker = open_worker(tmp_path / "a.db", remote)
    worker.sync_once()
    with app.atomic() as conn:
        conn.execute('DELETE FROM "we""ird tbl" WHERE "k 1" = ?', ("😀",))
    worker.sync_once()
    assert snapshot(remote.connection, 'we"ird tbl') == snapshot(app.connection, 'we"ird tbl')
    assert len(snapshot(remote.connection, 'we"ird tbl')) == 1


def test_tables_without_a_primary_key_are_refused_with_a_clear_message(tmp_path: Path, closer: Closer[Any]) -> None:
    app = closer(LocalDatabase(tmp_path / "a.db"))
    app.exec("CREATE TABLE log (at INTEGER, line TEXT)")
    with pytest.raises(ConfigError, match="no PRIMARY KEY") as info:
        Outbox(tmp_path / "a.db").track("log")
    assert "'log'" in str(info.value)
    assert Outbox(tmp_path / "a.db").tables() == {}


def test_a_unique_index_on_not_null_columns_serves_as_the_key(tmp_path: Path, closer: Closer[Any]) -> None:
    app = closer(LocalDatabase(tmp_path / "a.db"))
    app.exec("CREATE TABLE users (email TEXT NOT NULL, name TEXT); CREATE UNIQUE INDEX users_email ON users (email)")
    [spec] = Outbox(tmp_path / "a.db").track("users")
    assert spec.key == ("email",)


def test_missing_and_internal_tables_are_refused(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "a.db")
    with pytest.raises(ConfigError, match="no table 'nope'"):
        outbox.track("nope")
    with pytest.raises(ConfigError, match="internal"):
        outbox.track("_d1sync_changes")


def test_include_and_exclude_choose_the_synced_columns(
    tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    app, remote = closer(LocalDatabase(tmp_path / "a.db")), closer(LocalDatabase(tmp_path / "r.db"))
    app.exec("CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, secret TEXT, cache BLOB)")
    # The remote has only the synced columns: the schema check must not ask for the others.
    remote.exec("CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT)")
    outbox = Outbox(tmp_path / "a.db")
    [spec] = outbox.track("p", include=["name"])
    assert spec.columns == ("id", "name")
    [spec] = outbox.track("p", exclude=["secret", "cache"])
    assert spec.columns == ("id", "name")
    with pytest.raises(ConfigError, match="cannot exclude key"):
        outbox.track("p", exclude=["id"])
    with pytest.raises(ConfigError, match="no column"):
        outbox.track("p", include=["nope"])

    app.prepare("INSERT INTO p VALUES (1, 'ann', 's3cret', unhex('00'))").run()
    worker = open_worker(tmp_path / "a.db", remote)
    assert worker.sync_once().rows == 1
    # An update of an unsynced column records nothing.
    app.prepare("UPDATE p SET secret = 'other' WHERE id = 1").run()
    assert worker.pending() == 0
    app.prepare("UPDATE p SET name = 'bob' WHERE id = 1").run()
    assert worker.pending() == 1
    worker.sync_once()
    assert remote.prepare("SELECT * FROM p").all().results == [{"id": 1, "name": "bob"}]


def test_tracking_an_existing_table_backfills_its_rows(
    tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    app, remote = closer(LocalDatabase(tmp_path / "a.db")), closer(LocalDatabase(tmp_path / "r.db"))
    for db in (app, remote):
        db.exec(DDL)
    with app.atomic() as conn:
        conn.executemany("INSERT INTO notes VALUES (?, ?, ?)", [(i, f"n{i}", i) for i in range(100)])
    Outbox(tmp_path / "a.db").track("notes")
    open_worker(tmp_path / "a.db", remote).sync_once()
    assert snapshot(remote.connection, "notes") == snapshot(app.connection, "notes")


def test_untrack_with_pending_changes_dead_letters_them(
    tracked: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, app, remote = tracked
    app.prepare("INSERT INTO notes VALUES (1, 'pending', 0)").run()
    app.prepare("INSERT INTO notes VALUES (2, 'pending', 0)").run()
    outbox = Outbox(path)
    outbox.untrack("notes")
    app.prepare("INSERT INTO notes VALUES (3, 'after untrack: not captured', 0)").run()
    worker = open_worker(path, remote)
    result = worker.sync_once()
    assert result.dead == 2
    dead = outbox.dead_letters()
    assert sorted(d.key for d in dead) == ["[1]", "[2]"]
    assert all(d.table == "notes" and "not synced" in d.error for d in dead)
    assert worker.pending() == 0
    assert remote.prepare("SELECT count(*) AS n FROM notes").first("n") == 0
    with pytest.raises(ConfigError, match="not synced"):
        outbox.untrack("notes")

    # Tracking again and retrying the dead letters delivers the rows' current state.
    outbox.track("notes", backfill_existing=False)
    assert outbox.retry_dead() == 2
    worker.sync_once()
    assert sorted(r["id"] for r in remote.prepare("SELECT id FROM notes").all().results) == [1, 2]
    assert outbox.dead_letters() == []


def test_untrack_with_drop_pending_discards_them_explicitly(
    tracked: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    path, app, _ = tracked
    app.prepare("INSERT INTO notes VALUES (1, 'x', 0)").run()
    outbox = Outbox(path)
    outbox.untrack("notes", drop_pending=True)
    assert outbox.status().pending_changes == 0
    assert outbox.dead_letters() == []


def test_enqueue_and_delete_round_trip_without_a_local_copy(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    path, _, remote = local_pair
    remote.exec(
        "CREATE TABLE events (id INTEGER, kind TEXT, body BLOB, big INTEGER, ok INTEGER, PRIMARY KEY (id, kind))"
    )
    outbox = Outbox(path)
    outbox.declare("events", key=["id", "kind"], columns=["id", "kind", "body", "big", "ok"])
    outbox.enqueue("events", {"id": 1, "kind": "boot", "body": b"\x00\xff", "big": 2**63 - 1, "ok": True})
    outbox.enqueue("events", {"id": 2, "kind": "😀", "body": None, "big": -(2**63), "ok": False})
    outbox.enqueue("events", {"id": 3, "kind": "gone", "body": b"", "big": 0, "ok": None})
    outbox.enqueue("events", {"id": 1, "kind": "boot", "body": b"\x01", "big": 2**53 + 1, "ok": True})
    outbox.delete("events", (3, "gone"))
    worker = open_worker(path, remote)
    assert worker.sync_once().state == "synced"
    assert worker.pending() == 0
    rows = remote.connection.execute(
        "SELECT id, kind, hex(body), typeof(body), big, typeof(big), ok FROM events ORDER BY id"
    ).fetchall()
    assert rows == [
        (1, "boot", "01", "blob", 2**53 + 1, "integer", 1),
        (2, "😀", "", "null", -(2**63), "integer", 0),
    ]
    outbox.delete("events", {"id": 2, "kind": "😀"})
    worker.sync_once()
    assert remote.prepare("SELECT count(*) AS n FROM events").first("n") == 1


def test_enqueue_refuses_rows_that_do_not_match_the_declaration(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "a.db")
    with pytest.raises(ConfigError, match="not declared"):
        outbox.enqueue("events", {"id": 1})
    outbox.declare("events", key=["id"], columns=["id", "kind"])
    with pytest.raises(ConfigError, match="missing: kind"):
        outbox.enqueue("events", {"id": 1})
    with pytest.raises(ConfigError, match="unknown: extra"):
        outbox.enqueue("events", {"id": 1, "kind": "x", "extra": 2})
    with pytest.raises(ConfigError, match="key of 'events'"):
        outbox.delete("events", (1, 2))
    with pytest.raises(ConfigError, match="must be among the declared columns"):
        outbox.declare("other", key=["nope"], columns=["id"])
    assert outbox.status().pending_changes == 0


def test_version_column_keeps_a_newer_remote_row(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    ddl = "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT, v INTEGER NOT NULL)"
    app.exec(ddl)
    remote.exec(ddl)
    # Another machine already pushed version 5 of doc 1 and version 1 of doc 2.
    remote.exec("INSERT INTO docs VALUES (1, 'newer elsewhere', 5); INSERT INTO docs VALUES (2, 'older', 1)")
    Outbox(path).track("docs", version_column="v")
    app.exec("INSERT INTO docs VALUES (1, 'old local', 3); INSERT INTO docs VALUES (2, 'newer local', 2)")
    worker = open_worker(path, remote)
    worker.sync_once()
    assert worker.pending() == 0
    rows = remote.prepare("SELECT * FROM docs ORDER BY id").all().results
    assert rows == [{"id": 1, "body": "newer elsewhere", "v": 5}, {"id": 2, "body": "newer local", "v": 2}]
    # An equal version overwrites (the local writer is at least as new).
    app.exec("UPDATE docs SET body = 'same version', v = 5 WHERE id = 1")
    worker.sync_once()
    assert remote.prepare("SELECT body FROM docs WHERE id = 1").first("body") == "same version"


def test_version_column_guards_enqueued_rows_too(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, _, remote = local_pair
    remote.exec("CREATE TABLE kv (k TEXT PRIMARY KEY, val TEXT, v INTEGER)")
    remote.exec("INSERT INTO kv VALUES ('a', 'remote v9', 9)")
    outbox = Outbox(path)
    outbox.declare("kv", key=["k"], columns=["k", "val", "v"], version_column="v")
    outbox.enqueue("kv", {"k": "a", "val": "local v4", "v": 4})
    outbox.enqueue("kv", {"k": "b", "val": "new", "v": 1})
    open_worker(path, remote).sync_once()
    assert remote.prepare("SELECT * FROM kv ORDER BY k").raw() == [["a", "remote v9", 9], ["b", "new", 1]]


def test_a_write_commits_with_its_change_row_under_a_raw_sqlite3_connection(
    tmp_path: Path, closer: Closer[Any]
) -> None:
    app = closer(LocalDatabase(tmp_path / "a.db"))
    app.exec(DDL)
    Outbox(tmp_path / "a.db").track("notes")
    raw = closer(sqlite3.connect(tmp_path / "a.db"))
    raw.execute("INSERT INTO notes VALUES (1, 'raw', 1)")
    raw.rollback()
    raw.execute("INSERT INTO notes VALUES (2, 'raw', 2)")
    raw.commit()
    assert [key for _, key, _, _, _ in window(tmp_path / "a.db")] == ["[2]"]


def test_a_blob_key_neither_breaks_the_applications_write_nor_the_sync(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    path, app, remote = local_pair
    for db in (app, remote):
        db.exec("CREATE TABLE files (digest BLOB PRIMARY KEY NOT NULL, name TEXT)")
    Outbox(path).track("files")
    with app.atomic() as conn:
        conn.execute("INSERT INTO files VALUES (?, ?)", (b"\x01\x02", "a.txt"))
    open_worker(path, remote).sync_once()
    assert snapshot(remote.connection, "files") == snapshot(app.connection, "files")
