"""No write lost at the edges: seqs never reused, a lease lost mid-send, a table tracked mid-pass, bytes that are
not UTF-8, a secondary UNIQUE value changing hands, and a worker loop that outlives an unexpected error."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from d1sync.client import RateLimiter
from d1sync.database import Statement
from d1sync.local import LocalDatabase
from d1sync.outbox import Backoff, Outbox, SyncWorker, drain
from d1sync.outbox.schema import ensure_schema

from .conftest import RecordingTarget, open_file, snapshot


def seqs(path: Path) -> list[int]:
    conn = open_file(path)
    try:
        return [r[0] for r in conn.execute("SELECT seq FROM _d1sync_changes ORDER BY seq")]
    finally:
        conn.close()


def both(app: LocalDatabase, remote: LocalDatabase, ddl: str) -> None:
    app.exec(ddl)
    remote.exec(ddl)


# -- seqs ----------------------------------------------------------------------------------------------------


def test_a_seq_is_never_reused_after_the_log_was_emptied(local_pair: tuple[Path, LocalDatabase, LocalDatabase]) -> None:
    """A late acknowledgement deletes by seq: a reused seq would delete another write's change."""
    path, app, _ = local_pair
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with Outbox(path) as outbox:
        outbox.track("t")
        app.exec("INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (2, 'b')")
        first = seqs(path)
        outbox.untrack("t", drop_pending=True)
        assert seqs(path) == []
        outbox.track("t", backfill_existing=False)
        app.exec("INSERT INTO t VALUES (3, 'c')")
    assert len(first) == 2 and seqs(path) and min(seqs(path)) > max(first)


def test_a_change_log_of_an_earlier_build_is_upgraded_with_its_pending_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = open_file(path)
    conn.executescript(
        """
        CREATE TABLE _d1sync_changes (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, key TEXT NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')), payload TEXT, created_at INTEGER NOT NULL);
        INSERT INTO _d1sync_changes VALUES (7, 't', '[1]', 'upsert', NULL, 0), (9, 't', '[2]', 'delete', NULL, 0);
        """
    )
    ensure_schema(conn)
    ensure_schema(conn)  # idempotent
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = '_d1sync_changes'").fetchone()[0]
    assert "AUTOINCREMENT" in ddl.upper()
    assert conn.execute("SELECT seq, key, op FROM _d1sync_changes").fetchall() == [
        (7, "[1]", "upsert"),
        (9, "[2]", "delete"),
    ]
    conn.execute("INSERT INTO _d1sync_changes (tbl, key, op, created_at) VALUES ('t', '[3]', 'upsert', 0)")
    assert conn.execute("SELECT max(seq) FROM _d1sync_changes").fetchone()[0] == 10
    conn.close()


# -- the lease ------------------------------------------------------------------------------------------------


def test_a_send_that_lands_after_the_lease_passed_on_is_repaired(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    """Worker A's send outlives its lease; B takes over and sends a newer state; then A's stale send lands.

    A must not acknowledge, and must queue the rows again, so the remote ends with the newest state.
    """
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    Outbox(path).track("t")
    app.exec("INSERT INTO t VALUES (1, 'old')")
    later = [10_000.0]
    b = SyncWorker(path, remote, clock=lambda: later[0], lease_ttl=30)

    def meanwhile(statements: Sequence[Statement]) -> None:
        target.before_batch = None
        app.exec("UPDATE t SET v = 'new' WHERE id = 1")
        assert b.sync_once().rows == 1  # A's lease has expired by B's clock: B sends 'new' and acknowledges it
        assert remote.prepare("SELECT v FROM t").first("v") == "new"

    target = RecordingTarget(remote)
    target.before_batch = meanwhile
    a = SyncWorker(path, target, clock=lambda: 0.0, lease_ttl=30)
    assert a.sync_once().state == "locked"  # A's batch carried 'old' and landed after B's
    assert remote.prepare("SELECT v FROM t").first("v") == "old"
    later[0] += 60
    drain(b, max_passes=3, sleep=lambda s: None)
    assert snapshot(remote.connection, "t") == snapshot(app.connection, "t")
    a.close()
    b.close()


def test_the_lease_covers_the_wait_for_the_rate_limiter(local_pair: tuple[Path, LocalDatabase, LocalDatabase]) -> None:
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    Outbox(path).track("t")
    app.exec("INSERT INTO t VALUES (1, 'x')")
    now = [1_000.0]
    limiter = RateLimiter(10, 100.0, burst=1, clock=lambda: now[0], sleep=lambda s: None)
    limiter.acquire()  # empty: the next token is 1 / 0.09 s away
    target = RecordingTarget(remote)
    leases: list[float] = []

    def record_lease(statements: Sequence[Statement]) -> None:
        conn = open_file(path)
        leases.append(json.loads(conn.execute("SELECT v FROM _d1sync_meta WHERE k = 'lease'").fetchone()[0])["expires"])
        conn.close()

    target.before_batch = record_lease
    target.rate_limiter = limiter  # type: ignore[attr-defined]
    with SyncWorker(path, target, clock=lambda: now[0], lease_ttl=30) as worker:
        assert worker.sync_once().rows == 1
    assert leases == [pytest.approx(1_000.0 + 30 + 2 * (1 / 0.09))]


# -- specs and the schema check ---------------------------------------------------------------------------------


def test_a_table_tracked_during_the_schema_check_is_not_dead_lettered(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    """The specs and the changes are read in one snapshot: a table tracked a moment later waits its turn."""
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE a (id INTEGER PRIMARY KEY); CREATE TABLE b (id INTEGER PRIMARY KEY)")
    app.exec("INSERT INTO a VALUES (1); INSERT INTO b VALUES (1), (2)")
    Outbox(path).track("a")

    class TrackDuringCheck(RecordingTarget):
        def _execute(self, statement: Statement) -> Any:
            if statement.sql.startswith("PRAGMA table_info") and not self.tracked:
                self.tracked = True
                Outbox(path).track("b")  # backfills b's two rows into the change log
            return super()._execute(statement)

    target = TrackDuringCheck(remote)
    target.tracked = False  # type: ignore[attr-defined]
    with SyncWorker(path, target) as worker:
        drain(worker, max_passes=5, sleep=lambda s: None)
        assert worker.counters.dead == 0
    assert snapshot(remote.connection, "b") == snapshot(app.connection, "b")


# -- text that is not UTF-8 ----------------------------------------------------------------------------------


def test_a_row_that_is_not_utf8_is_dead_lettered_and_the_rest_syncs(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    outbox = Outbox(path)
    outbox.track("t")
    app.exec("INSERT INTO t VALUES (1, 'fine'), (2, CAST(x'ff41' AS TEXT)), (3, 'ok')")
    with SyncWorker(path, remote) as worker, caplog.at_level(logging.ERROR, "d1sync.sync"):
        result = worker.sync_once()
        assert (result.rows, result.dead, worker.pending()) == (2, 1, 0)
        assert worker.sync_once().state == "idle"  # no stall, no log storm
    assert [r[0] for r in remote.connection.execute("SELECT id FROM t ORDER BY id")] == [1, 3]
    [dead] = outbox.dead_letters()
    assert (dead.table, dead.key) == ("t", "[2]") and "not valid UTF-8" in dead.error
    assert sum("not valid UTF-8" in r.getMessage() for r in caplog.records) == 1
    # Fixed locally, the dead letter goes through.
    app.exec("UPDATE t SET v = 'A' WHERE id = 2")
    outbox.retry_dead()
    with SyncWorker(path, remote) as worker:
        drain(worker, max_passes=3, sleep=lambda s: None)
    assert snapshot(remote.connection, "t") == snapshot(app.connection, "t")


def test_a_key_that_is_not_utf8_is_dead_lettered_with_its_bytes(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v TEXT)")
    outbox = Outbox(path)
    outbox.track("t")
    app.exec("INSERT INTO t VALUES ('good', 'x'); INSERT INTO t VALUES (CAST(x'c328' AS TEXT), 'y')")
    with SyncWorker(path, remote) as worker:
        result = worker.sync_once()
        assert (result.rows, result.dead, worker.pending()) == (1, 1, 0)
    [dead] = outbox.dead_letters()
    assert dead.key.encode("utf-8", "surrogateescape") == b'["\xc3("]'
    conn = open_file(path)
    assert conn.execute("SELECT hex(key) FROM _d1sync_dead").fetchone()[0] == b'["\xc3("]'.hex().upper()
    conn.close()


# -- secondary UNIQUE values -----------------------------------------------------------------------------------


def test_a_unique_value_handed_from_one_row_to_another_syncs_without_dead_letters(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    """Coalescing sends b (now holding 'x') before a (which let go of 'x'): b is tried again after a."""
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")
    Outbox(path).track("users")
    app.exec("INSERT INTO users VALUES (1, 'x'), (2, 'y')")
    with SyncWorker(path, remote) as worker:
        drain(worker, max_passes=3, sleep=lambda s: None)
        app.exec("UPDATE users SET email = 'tmp' WHERE id = 1")
        app.exec("UPDATE users SET email = 'x' WHERE id = 2")
        app.exec("UPDATE users SET email = 'z' WHERE id = 1")
        result = worker.sync_once()
        assert (result.rows, result.dead) == (2, 0)
    assert snapshot(remote.connection, "users") == snapshot(app.connection, "users")


def test_a_unique_clash_that_stays_is_dead_lettered_after_one_retry(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    path, app, remote = local_pair
    app.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")
    remote.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")
    remote.exec("INSERT INTO users VALUES (99, 'x')")  # only the remote has it
    Outbox(path).track("users")
    app.exec("INSERT INTO users VALUES (1, 'x'), (2, 'y')")
    target = RecordingTarget(remote)
    with SyncWorker(path, target) as worker:
        result = worker.sync_once()
    assert (result.rows, result.dead) == (1, 1)
    error = Outbox(path).dead_letters()[0].error
    assert "UNIQUE constraint failed" in error and "recursive_triggers" in error


def test_insert_or_replace_is_captured_whole_with_recursive_triggers(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    """REPLACE deletes the row holding a UNIQUE value; only recursive_triggers makes SQLite fire DELETE for it."""
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")
    Outbox(path).track("users")
    app.exec("INSERT INTO users VALUES (1, 'x')")
    with SyncWorker(path, remote) as worker:
        drain(worker, max_passes=3, sleep=lambda s: None)
        app.exec("PRAGMA recursive_triggers = ON")
        app.exec("INSERT OR REPLACE INTO users VALUES (2, 'x')")
        result = worker.sync_once()
        assert (result.rows, result.dead) == (2, 0)
    assert snapshot(remote.connection, "users") == snapshot(app.connection, "users") != []


# -- the loop --------------------------------------------------------------------------------------------------


def test_run_outlives_an_unexpected_error_and_syncs_afterwards(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in one pass (here: a target that breaks once) must not end the daemon with writes pending."""
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    Outbox(path).track("t")
    app.exec("INSERT INTO t VALUES (1), (2)")

    def break_once(statements: Sequence[Statement]) -> None:
        target.before_batch = None
        raise RuntimeError("a bug in some layer")

    target = RecordingTarget(remote)
    target.before_batch = break_once
    worker = SyncWorker(path, target, backoff=Backoff(pause=0.05), poll_interval=0.01)
    thread = threading.Thread(target=worker.run, kwargs={"idle_interval": 0.05})
    with caplog.at_level(logging.ERROR, "d1sync.sync"):
        thread.start()
        for _ in range(200):
            if worker.pending() == 0:
                break
            threading.Event().wait(0.02)
        worker.stop()
        thread.join(5)
    assert worker.pending() == 0 and not thread.is_alive()
    assert any("unexpected error" in r.getMessage() for r in caplog.records)
    assert snapshot(remote.connection, "t") == snapshot(app.connection, "t")
    worker.close()


def test_dead_letters_stay_readable_whatever_bytes_they_hold(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with Outbox(path) as outbox:
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO _d1sync_dead (tbl, key, op, error, first_failed_at, last_failed_at) "
            "VALUES ('t', CAST(x'5bff5d' AS TEXT), 'upsert', 'e', 0, 0)"
        )
        conn.commit()
        conn.close()
        [dead] = outbox.dead_letters()
    assert dead.key.encode("utf-8", "surrogateescape") == b"[\xff]"
