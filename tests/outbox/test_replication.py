"""Two-way tables: remote capture, the pull pass, echo suppression and the conflict rules, on the emulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.outbox import Outbox, SyncConfig, SyncWorker, drain
from d1sync.sync.config import PullOptions
from d1sync.sync.remote import capture_ddl, migration_text, prune, write_migration

from .conftest import RecordingTarget
from .replicas import SCHEMA, WRITES, Replica, remote_rows, remote_sql

BIG = 2**62 + 7
MakeReplica = Callable[..., Replica]


@pytest.fixture
def make(tmp_path: Path, emulator: EmulatorServer) -> Iterator[MakeReplica]:
    made: list[Replica] = []
    remote_sql(emulator, "SELECT 1")

    def build(name: str, **options: object) -> Replica:
        replica = Replica(tmp_path, name, emulator, **options)
        made.append(replica)
        return replica

    yield build
    for replica in made:
        replica.close()


@pytest.fixture
def pair(make: MakeReplica, emulator: EmulatorServer) -> tuple[Replica, Replica]:
    a, b = make("a"), make("b")
    a.remote.exec(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, data BLOB, score REAL, v INTEGER, any_)"
    )
    a.replicate("items")
    b.replicate("items")
    a.sync()
    b.sync()
    return a, b


def test_a_write_on_one_replica_reaches_the_other_exactly(
    pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    a, b = pair
    a.app.exec(
        "INSERT INTO items VALUES (1, 'a' || char(0) || 'b', 9223372036854775807, x'00ff', 0.1, 1, '7'),"
        " (2, 'é', -9223372036854775808, x'', 1e308, 2, 7.0), (3, NULL, 1, NULL, -0.0, 3, x'01')"
    )
    a.sync()
    report = b.sync()
    assert report.pulled == 3
    assert a.rows() == b.rows() == remote_rows(emulator)
    assert b.changes() == 0  # pulled rows are not captured as local changes


def test_a_replicas_own_pushes_are_not_applied_back(pair: tuple[Replica, Replica], emulator: EmulatorServer) -> None:
    a, _ = pair
    a.app.exec(WRITES)
    a.app.exec("INSERT INTO items (id, name) SELECT value, 'x' FROM json_each('[1,2,3,4,5]')")
    a.app.exec("UPDATE items SET n = 1 WHERE id <= 2")
    a.app.exec("DELETE FROM items WHERE id = 5")
    written = a.app.prepare("SELECT n FROM writes").raw()[0][0]
    report = a.sync()
    assert report.pulled == 0
    # Keys 1-4 came back as its own; 5 was inserted and deleted before the push, so D1 never saw it.
    assert a.worker.counters.echoes == 4
    assert a.app.prepare("SELECT n FROM writes").raw()[0][0] == written  # not one row written by the pull
    assert a.rows() == remote_rows(emulator)


def test_a_workers_direct_write_is_pulled_by_every_replica(
    pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    a, b = pair
    a.remote.prepare("INSERT INTO items (id, name, n) VALUES (?, ?, ?)").bind(10, "from a Worker", str(BIG)).run()
    assert remote_sql(emulator, "SELECT origin FROM _d1sync_log WHERE tbl = 'items'") == [(None,)]
    a.sync()
    b.sync()
    assert a.rows() == b.rows() == remote_rows(emulator)
    remote_sql(emulator, "UPDATE items SET id = 11 WHERE id = 10")  # a key change: delete 10, upsert 11
    a.sync()
    assert [r[1] for r in a.rows()] == [11]
    remote_sql(emulator, "DELETE FROM items")
    b.sync()
    assert b.rows() == []


@pytest.mark.parametrize("applied", ["unapplied", "applied"])
def test_a_pull_answered_with_a_success_that_proves_nothing_skips_nothing(
    applied: Any, pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    """A pull whose answer is garbled (no result, a short one, a failed statement) moves no cursor and applies
    nothing; the next pull brings every remote change."""
    a, b = pair
    for n in range(20):
        a.remote.prepare("INSERT INTO items (id, name, n) VALUES (?, ?, ?)").bind(n, f"worker {n}", n).run()
    emulator.app.state.faults.configure(FaultConfig(garbled_rate=1.0, garbled_mode=applied, seed=5))
    for _ in range(4):
        assert b.worker.sync_once().pulled == 0
    assert b.rows() == []
    emulator.app.state.faults.configure(None)
    drain(b.worker, max_passes=50, sleep=time.sleep)  # through the back-off the failures set
    assert b.rows() == remote_rows(emulator) and len(b.rows()) == 20


def test_a_pending_local_change_keeps_the_local_state_and_is_pushed_next(
    pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    a, b = pair
    a.app.exec("INSERT INTO items (id, name) VALUES (1, 'first')")
    a.sync()
    b.sync()
    remote_sql(emulator, "UPDATE items SET name = 'remote' WHERE id = 1")
    b.app.exec("UPDATE items SET name = 'b, not yet pushed' WHERE id = 1")
    b.worker.pull_once()  # the pull comes first: b's change is still pending
    assert b.app.prepare("SELECT name FROM items").raw() == [["b, not yet pushed"]]
    assert b.worker.counters.kept_local == 1
    b.sync()
    a.sync()
    assert a.rows() == b.rows() == remote_rows(emulator)
    assert remote_sql(emulator, "SELECT name FROM items") == [("b, not yet pushed",)]  # last push wins


def test_without_a_pending_change_the_remote_state_wins(
    pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    a, b = pair
    b.app.exec("INSERT INTO items (id, name) VALUES (1, 'b')")
    b.sync()
    a.sync()
    a.app.exec("UPDATE items SET name = 'a' WHERE id = 1")
    a.sync()
    b.sync()
    assert b.app.prepare("SELECT name FROM items").raw() == [["a"]]


def test_with_a_version_column_the_higher_version_wins_on_both_sides(
    make: MakeReplica, emulator: EmulatorServer
) -> None:
    a, b = make("a"), make("b")
    a.remote.exec(SCHEMA)
    a.replicate("items", version_column="v")
    b.replicate("items", version_column="v")
    a.app.exec("INSERT INTO items (id, name, v) VALUES (1, 'v1', 1), (2, 'v1', 1)")
    a.sync()
    b.sync()
    # Key 1: a Worker writes version 5 while b has a pending version 2: the remote's higher version wins in b.
    remote_sql(emulator, "UPDATE items SET name = 'v5', v = 5 WHERE id = 1")
    b.app.exec("UPDATE items SET name = 'v2', v = 2 WHERE id = 1")
    # Key 2: a Worker writes an older version 0 over b's version 1, with nothing pending in b: b keeps its
    # row and pushes it back, so the remote has the higher version too.
    remote_sql(emulator, "UPDATE items SET name = 'v0', v = 0 WHERE id = 2")
    b.worker.pull_once()
    assert b.app.prepare("SELECT id, name, v FROM items ORDER BY id").raw() == [[1, "v5", 5], [2, "v1", 1]]
    b.sync()
    a.sync()
    assert remote_sql(emulator, "SELECT id, name, v FROM items ORDER BY id") == [(1, "v5", 5), (2, "v1", 1)]
    assert a.rows() == b.rows() == remote_rows(emulator)


def test_parents_and_children_apply_in_foreign_key_order(make: MakeReplica, emulator: EmulatorServer) -> None:
    schema = (
        "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id), name TEXT)"
    )
    a = make("a", schema=schema)
    a.remote.exec(schema)
    a.replicate("child", "parent")
    a.sync()
    remote_sql(emulator, "INSERT INTO parent VALUES (1, 'p')")
    remote_sql(emulator, "INSERT INTO child VALUES (1, 1, 'c')")
    a.sync()
    assert a.rows("child") == remote_rows(emulator, "child")
    remote_sql(emulator, "DELETE FROM child")
    remote_sql(emulator, "DELETE FROM parent")
    a.sync()
    assert a.rows("parent") == a.rows("child") == []
    assert a.app.prepare("PRAGMA foreign_key_check").raw() == []


def test_a_pulled_row_the_local_file_refuses_is_reported_and_the_rest_applies(
    make: MakeReplica, emulator: EmulatorServer
) -> None:
    schema = "CREATE TABLE items (id INTEGER PRIMARY KEY, email TEXT UNIQUE)"
    a = make("a", schema=schema)
    a.remote.exec(schema)
    a.replicate("items")
    a.sync()
    a.app.exec("INSERT INTO items VALUES (3, 'x@example.com')")  # pending: it stays
    remote_sql(emulator, "INSERT INTO items VALUES (1, 'x@example.com'), (2, 'y@example.com')")
    result = a.worker.pull_once()
    assert result.pulled == 1
    assert a.app.prepare("SELECT id FROM items ORDER BY id").raw() == [[2], [3]]
    assert a.worker.counters.pull_failed == 1
    assert "UNIQUE" in (a.worker.status().table_states["items"].pull_note or "")


def test_a_push_only_file_sends_no_origin_and_never_pulls(tmp_path: Path, emulator: EmulatorServer) -> None:
    with Replica(tmp_path, "plain", emulator) as plain:
        plain.remote.exec(SCHEMA)
        recording = RecordingTarget(plain.remote)
        with SyncWorker(plain.path, recording) as worker:
            Outbox(plain.path).track("items")
            plain.app.exec("INSERT INTO items (id) VALUES (1)")
            drain(worker, max_passes=5, sleep=lambda s: None)
            assert not worker.pulling
        sent = [sql for batch in recording.batches for sql, _ in batch]
        assert sent and not any("_d1sync_origin" in sql or "_d1sync_log" in sql for sql in sent)
        # Only the fence every push passes (see d1sync.sync.remote); no capture, no log.
        names = remote_sql(emulator, "SELECT name FROM sqlite_master WHERE name LIKE '%d1sync%'")
        assert names == [("_d1sync_fence",), ("sqlite_autoindex__d1sync_fence_1",)]


def test_installing_twice_is_harmless_and_the_migration_holds_the_same_ddl(
    pair: tuple[Replica, Replica], emulator: EmulatorServer, tmp_path: Path
) -> None:
    a, b = pair
    a.replicate("items")
    triggers = remote_sql(emulator, "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
    assert [t[0] for t in triggers] == ["_d1sync_log_items_del", "_d1sync_log_items_ins", "_d1sync_log_items_upd"]
    folder = tmp_path / "migrations"
    (folder).mkdir()
    (folder / "0001_init.sql").write_text(SCHEMA + ";\n")
    path = write_migration(folder, [Outbox(a.path).tables()["items"]])
    assert path.name == "0002_d1sync_replicate.sql"
    text = path.read_text()
    for statement in capture_ddl([Outbox(a.path).tables()["items"]]):
        assert statement + ";" in text
    remote_sql(emulator, "SELECT 1")
    a.remote.exec(text.split("\n", 1)[1])  # the migration's body, run again: idempotent
    assert remote_sql(emulator, "SELECT count(*) FROM _d1sync_origin") == [(1,)]


def test_remote_log_keys_are_the_local_change_logs_key_texts(make: MakeReplica, emulator: EmulatorServer) -> None:
    schema = (
        "CREATE TABLE k (a INTEGER NOT NULL, b TEXT NOT NULL, c BLOB NOT NULL, v, PRIMARY KEY (a, b, c)) WITHOUT ROWID"
    )
    a = make("a", schema=schema)
    a.remote.exec(schema)
    a.replicate("k")
    a.app.exec(f"INSERT INTO k VALUES ({BIG}, 'x' || char(0) || 'y', x'00ff', 1), (-1, 'é\"\\', x'', 2)")
    local = sorted(r[0] for r in a.app.prepare("SELECT key FROM _d1sync_pending").raw())
    a.sync()
    assert sorted(r[0] for r in remote_sql(emulator, "SELECT key FROM _d1sync_log")) == local
    remote_sql(emulator, "UPDATE k SET v = 3")
    a.sync()
    assert a.rows("k") == remote_rows(emulator, "k")


def test_without_the_remote_log_pulls_wait_and_pushes_go_on(make: MakeReplica, emulator: EmulatorServer) -> None:
    a = make("a")
    a.remote.exec(SCHEMA)
    Outbox(a.path).replicate("items")  # no target: the migration is applied later
    a.app.exec("INSERT INTO items (id) VALUES (1)")
    a.sync()
    assert remote_sql(emulator, "SELECT id FROM items") == [(1,)]
    status = a.worker.status()
    assert status.replica is not None and "no replication log" in status.replica["paused"]
    assert not status.healthy
    a.remote.exec(migration_text([Outbox(a.path).tables()["items"]]))
    a.worker.puller.last = None
    a.worker.resume_pull()
    remote_sql(emulator, "INSERT INTO items (id) VALUES (2)")
    a.sync()
    assert a.rows() == remote_rows(emulator)
    assert a.worker.status().healthy


def test_a_new_replica_joins_equal_to_the_remote_keeping_only_its_pending_rows(
    pair: tuple[Replica, Replica], make: MakeReplica, emulator: EmulatorServer
) -> None:
    a, _ = pair
    a.app.exec("INSERT INTO items (id, name) VALUES (1, 'shared'), (2, 'shared')")
    a.sync()
    c = make("c")
    c.app.exec("INSERT INTO items (id, name) VALUES (2, 'stale copy'), (9, 'deleted remotely long ago')")
    Outbox(c.path).track("items", backfill_existing=False)
    c.app.exec("INSERT INTO items (id, name) VALUES (3, 'c, pending')")
    c.replicate("items")
    c.sync()
    assert c.app.prepare("SELECT id, name FROM items ORDER BY id").raw() == [
        [1, "shared"],
        [2, "shared"],
        [3, "c, pending"],
    ]
    a.sync()
    assert a.rows() == c.rows() == remote_rows(emulator)


def _replica_id(replica: Replica) -> str:
    status = replica.worker.status()
    assert status.replica is not None
    return str(status.replica["id"])


def test_pruning_keeps_what_a_live_replica_has_not_pulled(
    pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    a, b = pair
    a.app.exec("INSERT INTO items (id) SELECT value FROM json_each('[1,2,3]')")
    a.sync()
    a.sync()  # its heartbeat now carries the cursor past its own entries
    assert prune(a.remote) == 0  # b, live, has not pulled them
    b.sync()
    b.sync()
    assert prune(a.remote) == 3
    assert remote_sql(emulator, "SELECT tbl, seq FROM _d1sync_pruned") == [("items", 3)]


def test_a_replica_silent_past_retention_resyncs_exactly_after_the_log_is_pruned(
    pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    a, b = pair
    b.app.exec("INSERT INTO items (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    b.sync()
    a.sync()
    a.app.exec("UPDATE items SET name = 'changed while b was away' WHERE id = 1")
    a.app.exec("DELETE FROM items WHERE id = 2")
    a.app.exec(f"INSERT INTO items (id, n, data) VALUES (4, {BIG}, x'0001')")
    a.sync()
    a.sync()
    # b has been away for eight days: it no longer holds the log back, and the worker's daily prune runs.
    remote_sql(emulator, "UPDATE _d1sync_replicas SET seen_at = seen_at - 8 * 86400000 WHERE id = ?", _replica_id(b))
    assert prune(a.remote) > 0
    assert remote_sql(emulator, "SELECT count(*) FROM _d1sync_log") == [(0,)]
    b.app.exec("UPDATE items SET name = 'b, pending' WHERE id = 3")
    joined = b.worker.counters.resyncs
    report = b.sync()
    assert b.worker.counters.resyncs == joined + 1
    assert report.pulled == 3  # 1 updated, 2 deleted, 4 inserted: found by the resync, not the log
    a.sync()
    assert a.rows() == b.rows() == remote_rows(emulator)
    assert b.app.prepare("SELECT name FROM items WHERE id = 3").raw() == [["b, pending"]]


def test_the_worker_prunes_on_its_own_schedule(make: MakeReplica, emulator: EmulatorServer) -> None:
    a = make("a", config=SyncConfig(pull_options=PullOptions(interval=0.0, prune_every=0.0)))
    a.remote.exec(SCHEMA)
    a.replicate("items")
    a.app.exec("INSERT INTO items (id) VALUES (1), (2)")
    a.sync()
    a.sync()
    assert remote_sql(emulator, "SELECT count(*) FROM _d1sync_log") == [(0,)]


def test_a_recreated_remote_log_or_missing_triggers_make_the_tables_resync(
    pair: tuple[Replica, Replica], emulator: EmulatorServer
) -> None:
    a, b = pair
    a.app.exec("INSERT INTO items (id) VALUES (1), (2)")
    a.sync()
    b.sync()
    remote_sql(emulator, "DROP TRIGGER _d1sync_log_items_upd")
    remote_sql(emulator, "UPDATE items SET name = 'not logged' WHERE id = 1")
    b.sync()
    status = b.worker.status().table_states["items"]
    assert status.resync and "triggers are missing" in (status.pull_note or "")
    b.replicate("items")  # puts the triggers back; the resync then finds the unlogged change
    b.sync()
    assert b.rows() == remote_rows(emulator)
    assert not b.worker.status().table_states["items"].resync
    remote_sql(emulator, "DROP TABLE _d1sync_log")
    a.replicate("items")
    remote_sql(emulator, "INSERT INTO items (id, name) VALUES (3, 'after the reset')")
    a.sync()
    assert a.rows() == remote_rows(emulator)
