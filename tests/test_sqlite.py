"""The connection layer: transactions, snapshots, commit notifications and thread safety, on real files."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from d1sync import LocalDatabase, Outbox, SyncConfig, SyncWorker
from d1sync.errors import SQLError
from d1sync.sqlite import Connection, on_commit


def test_atomic_nests_as_savepoints_and_an_inner_failure_rolls_back_only_the_inner_part(tmp_path: Path) -> None:
    with Connection(tmp_path / "a.db") as conn:
        conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
        with conn.atomic():
            conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(SQLError), conn.atomic():
                conn.execute("INSERT INTO t VALUES (2)")
                conn.execute("INSERT INTO t VALUES (1)")  # fails: the savepoint rolls back 2, keeps 1
            conn.execute("INSERT INTO t VALUES (3)")
        assert [r[0] for r in conn.execute("SELECT a FROM t ORDER BY a")] == [1, 3]
        assert not conn.in_transaction


def test_a_failed_commit_leaves_no_open_transaction(tmp_path: Path) -> None:
    with Connection(tmp_path / "a.db") as conn:
        conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p (id))")
        with pytest.raises(SQLError) as info, conn.atomic():
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute("INSERT INTO c VALUES (1, 99)")  # checked at COMMIT, which fails
        assert info.value.constraint == "FOREIGN KEY"
        assert not conn.in_transaction
        assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 0


def test_a_snapshot_sees_one_state_while_another_connection_commits(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with Connection(path) as reader, Connection(path) as writer:
        writer.execute("CREATE TABLE t (a)")
        writer.execute("INSERT INTO t VALUES (1)")
        with reader.snapshot():
            before = reader.execute("SELECT count(*) FROM t").fetchone()[0]
            writer.execute("INSERT INTO t VALUES (2)")
            during = reader.execute("SELECT count(*) FROM t").fetchone()[0]
        after = reader.execute("SELECT count(*) FROM t").fetchone()[0]
    assert (before, during, after) == (1, 1, 2)


def test_commit_notifications_fire_once_per_commit_that_wrote_and_never_for_reads_or_rollbacks(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    seen: list[int] = []
    unsubscribe = on_commit(path, lambda: seen.append(1))
    try:
        with Connection(path) as conn:
            conn.execute("CREATE TABLE t (a)")  # no rows changed: none
            conn.execute("INSERT INTO t VALUES (0)")  # an autocommit write: one
            with conn.atomic():
                conn.execute("INSERT INTO t VALUES (1)")
                conn.execute("INSERT INTO t VALUES (2)")  # one transaction: one
            conn.execute("SELECT * FROM t")  # a read: none
            with pytest.raises(RuntimeError), conn.atomic():
                conn.execute("INSERT INTO t VALUES (3)")
                raise RuntimeError("rolled back: none")
            with LocalDatabase(path) as db:
                db.prepare("INSERT INTO t VALUES (4)").run()  # LocalDatabase goes through the same layer: one
    finally:
        unsubscribe()
    assert len(seen) == 3


def test_one_connection_is_safe_across_threads_while_another_thread_writes(tmp_path: Path) -> None:
    with Connection(tmp_path / "a.db") as conn:
        conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
        errors: list[BaseException] = []
        counts: list[int] = []

        def write() -> None:
            try:
                for i in range(300):
                    with conn.atomic():
                        conn.execute("INSERT INTO t VALUES (?)", (i,))
                        conn.execute("UPDATE t SET a = a WHERE a = ?", (i,))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def read() -> None:
            try:
                for _ in range(300):
                    counts.append(conn.execute("SELECT count(*) FROM t").fetchone()[0])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write), threading.Thread(target=read), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert all(0 <= c <= 300 for c in counts) and len(counts) == 600


def test_a_workers_pending_count_may_be_read_from_another_thread_while_it_drains(tmp_path: Path) -> None:
    app_path = tmp_path / "app.db"
    with LocalDatabase(app_path) as app, LocalDatabase(tmp_path / "remote.db") as remote:
        for db in (app, remote):
            db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        with Outbox(app_path) as outbox:
            outbox.track("t")
        with app.atomic() as conn:
            conn.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 50) for i in range(20_000)))
        with SyncWorker(app_path, remote, config=SyncConfig(window=500)) as worker:
            seen: list[int] = []
            errors: list[BaseException] = []
            stop = threading.Event()

            def watch() -> None:
                try:
                    while not stop.is_set():
                        seen.append(worker.pending())
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                while worker.sync_once().more or worker.pending():
                    pass
            finally:
                stop.set()
                watcher.join()
        assert errors == [] and seen and seen == sorted(seen, reverse=True)
        assert remote.prepare("SELECT count(*) AS n FROM t").first("n") == 20_000


def test_numbered_parameters_bind_from_a_sequence_as_on_d1(tmp_path: Path) -> None:
    """D1 binds an array to ?1, ?2; Python's sqlite3 deprecates a sequence for them (a warning on 3.12)."""
    import warnings

    with Connection(tmp_path / "n.db") as conn, warnings.catch_warnings():
        warnings.simplefilter("error")
        assert conn.execute("SELECT ?2, ?1, ?1 || '?'", ("a", "b")).fetchall() == [("b", "a", "a?")]
        assert conn.execute("SELECT ?, '?1'", ("plain",)).fetchall() == [("plain", "?1")]
