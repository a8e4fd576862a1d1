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
from d1sync.errors import RequestTimeoutError, SQLError
from d1sync.local import LocalDatabase
from d1sync.outbox import Limits, Outbox, SyncConfig, SyncWorker, drain
from d1sync.sqlite import Connection
from d1sync.sync.store.log import append_changes
from d1sync.sync.store.upgrade import ensure_schema

from .conftest import OpenWorker, RecordingTarget, open_file, snapshot


def seqs(path: Path) -> list[int]:
    conn = open_file(path)
    try:
        return [r[0] for r in conn.execute("SELECT seq FROM _d1sync_pending ORDER BY seq")]
    finally:
        conn.close()


def both(app: LocalDatabase, remote: LocalDatabase, ddl: str) -> None:
    app.exec(ddl)
    remote.exec(ddl)


USERS = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)"


def tracked(local_pair: tuple[Path, LocalDatabase, LocalDatabase], ddl: str, rows: str) -> None:
    """Create ``ddl`` on both sides, track its table (named after CREATE TABLE), then insert ``rows`` locally."""
    path, app, remote = local_pair
    both(app, remote, ddl)
    Outbox(path).track(ddl.split()[2])
    app.exec(rows)


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


def test_a_late_acknowledgement_after_the_log_was_emptied_removes_nothing_newer(tmp_path: Path) -> None:
    """The request's seqs were dropped by untrack(drop_pending=True), and new writes came: the late
    acknowledgement of that request must not take the new changes with it."""
    from d1sync.sync.push.window import acknowledge, read_window

    path = tmp_path / "app.db"
    with LocalDatabase(path) as app:
        app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        with Outbox(path) as outbox:
            outbox.track("t")
            app.exec("INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (2, 'b')")
            with Connection(path) as conn:
                in_flight = read_window(conn, 100).changes  # sent, not yet answered
                outbox.untrack("t", drop_pending=True)
                outbox.track("t", backfill_existing=False)
                app.exec("INSERT INTO t VALUES (3, 'c'); UPDATE t SET v = 'z' WHERE id = 2")
                assert acknowledge(conn, in_flight) == 0
            assert outbox.status().pending_changes == 2


@pytest.mark.parametrize("autoincrement", [False, True], ids=["plain rowid", "AUTOINCREMENT"])
def test_a_change_log_of_an_earlier_build_is_upgraded_with_its_pending_rows(
    tmp_path: Path, autoincrement: bool
) -> None:
    path = tmp_path / "old.db"
    conn = open_file(path)
    seq = "seq INTEGER PRIMARY KEY AUTOINCREMENT" if autoincrement else "seq INTEGER PRIMARY KEY"
    conn.executescript(
        f"""
        CREATE TABLE _d1sync_changes ({seq}, tbl TEXT NOT NULL, key TEXT NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')), payload TEXT, created_at INTEGER NOT NULL);
        INSERT INTO _d1sync_changes VALUES (7, 't', '[1]', 'upsert', NULL, 0), (9, 't', '[2]', 'delete', NULL, 0),
            (12, 't', '[3]', 'upsert', NULL, 0);
        DELETE FROM _d1sync_changes WHERE seq = 12;  -- acknowledged: 12 was issued and must never come back
        """
    )
    with Connection(path) as ours:
        ensure_schema(ours)
        ensure_schema(ours)  # idempotent
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = '_d1sync_changes'").fetchone()[0]
    assert "AUTOINCREMENT" not in ddl.upper() and " tid " in ddl
    assert conn.execute("SELECT seq, tbl, key, op FROM _d1sync_pending").fetchall() == [
        (7, "t", "[1]", "upsert"),
        (9, "t", "[2]", "delete"),
    ]
    conn.execute("INSERT INTO _d1sync_changes (tid, key, op) VALUES (1, 4, 1)")
    # AUTOINCREMENT's counter remembered 12; a plain rowid log only knew 9 was the highest left.
    assert conn.execute("SELECT max(seq) FROM _d1sync_changes").fetchone()[0] == (13 if autoincrement else 10)
    conn.close()


def test_the_log_keeps_at_most_one_mark_and_seqs_only_grow(tmp_path: Path) -> None:
    from d1sync.sync.push.window import acknowledge, read_window

    path = tmp_path / "app.db"
    with LocalDatabase(path) as app:
        app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        Outbox(path).track("t")
        issued: list[int] = []
        with Connection(path) as conn:
            for round_ in range(5):
                app.exec(f"INSERT INTO t VALUES ({round_}, 'x')")
                [change] = read_window(conn, 10).changes
                issued += change.seqs
                acknowledge(conn, [change])
                marks = conn.execute("SELECT count(*) FROM _d1sync_changes WHERE tid = 0").fetchone()[0]
                assert marks == 1
    assert issued == sorted(issued) and len(set(issued)) == 5


# -- the lease ------------------------------------------------------------------------------------------------


class AppliedButUnanswered(RecordingTarget):
    """Applies the batch, then the answer is lost (a timeout after D1 committed)."""

    def batch(self, statements: Sequence[Statement]) -> Any:
        super().batch(statements)
        raise RequestTimeoutError("no answer in time; the write may still have been applied")


@pytest.mark.parametrize("target_class", [RecordingTarget, AppliedButUnanswered], ids=["answered", "unanswered"])
def test_a_send_that_lands_after_the_lease_passed_on_is_repaired(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], target_class: type[RecordingTarget], open_worker: OpenWorker
) -> None:
    """Worker A's send outlives its lease; B takes over and sends a newer state; then A's stale send arrives,
    answered or not.

    The fence refuses it as a whole (its number is older than B's), so 'old' never lands over 'new'. A must
    not acknowledge, must queue the rows again, and must not write the shared back-off the new holder reads.
    """
    path, app, remote = local_pair
    both(app, remote, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    Outbox(path).track("t")
    app.exec("INSERT INTO t VALUES (1, 'old')")
    later = [10_000.0]
    b = open_worker(path, remote, clock=lambda: later[0], config=SyncConfig(lease_ttl=30))

    def meanwhile(statements: Sequence[Statement]) -> None:
        target.before_batch = None
        app.exec("UPDATE t SET v = 'new' WHERE id = 1")
        assert b.sync_once().rows == 1  # A's lease has expired by B's clock: B sends 'new' and acknowledges it
        assert remote.prepare("SELECT v FROM t").first("v") == "new"

    target = target_class(remote)
    target.before_batch = meanwhile
    a = open_worker(path, target, clock=lambda: 0.0, config=SyncConfig(lease_ttl=30))
    assert a.sync_once().state == "locked"  # A's batch carried 'old' and arrived after B's
    assert remote.prepare("SELECT v FROM t").first("v") == "new"
    status = Outbox(path).status()
    assert status.last_error is None and status.backoff_remaining == 0
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
    with SyncWorker(path, target, clock=lambda: now[0], config=SyncConfig(lease_ttl=30)) as worker:
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
            if "pragma_table_xinfo" in statement.sql and not self.tracked:  # the remote schema check
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
    tracked(local_pair, USERS, "INSERT INTO users VALUES (1, 'x'), (2, 'y')")
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
    tracked(local_pair, USERS, "INSERT INTO users VALUES (1, 'x'), (2, 'y')")
    remote.exec("INSERT INTO users VALUES (99, 'x')")  # only the remote has it
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
    tracked(local_pair, USERS, "INSERT INTO users VALUES (1, 'x')")
    with SyncWorker(path, remote) as worker:
        drain(worker, max_passes=3, sleep=lambda s: None)
        app.exec("PRAGMA recursive_triggers = ON")
        app.exec("INSERT OR REPLACE INTO users VALUES (2, 'x')")
        result = worker.sync_once()
        assert (result.rows, result.dead) == (2, 0)
    assert snapshot(remote.connection, "users") == snapshot(app.connection, "users") != []


# -- the loop --------------------------------------------------------------------------------------------------


def test_run_outlives_an_unexpected_error_and_syncs_afterwards(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], caplog: pytest.LogCaptureFixture, open_worker: OpenWorker
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
    worker = open_worker(path, target, config=SyncConfig(pause_interval=0.05, poll_interval=0.01))
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


# -- found in review: lease loss without an answer, stalls, children of a retried parent ---------------------


def test_a_row_waiting_for_the_held_back_tail_of_a_full_window_does_not_stall_it(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    """User 3 takes 'x' from user 1, whose change lands in the short last request a full window holds back."""
    path, app, remote = local_pair
    ddl = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, pad TEXT)"
    tracked(local_pair, ddl, "INSERT INTO users VALUES (1, 'x', '')")
    pad = "p" * 600
    limits = Limits(max_value_bytes=1000, max_request_bytes=1500)
    with SyncWorker(path, remote, config=SyncConfig(window=4, limits=limits)) as worker:
        drain(worker, max_passes=3, sleep=lambda s: None)
        app.exec("UPDATE users SET email = 'tmp' WHERE id = 1")
        app.exec(f"INSERT INTO users VALUES (3, 'x', '{pad}')")
        app.exec(f"INSERT INTO users VALUES (4, 'q', '{pad}')")
        app.exec("UPDATE users SET email = 'z' WHERE id = 1")
        app.exec("INSERT INTO users VALUES (5, 'r', '')")
        drain(worker, max_passes=10, sleep=lambda s: None)
        assert worker.pending() == 0 and worker.counters.dead == 0
    assert snapshot(remote.connection, "users") == snapshot(app.connection, "users")


def test_a_window_of_rows_all_waiting_beyond_it_ends_in_dead_letters_not_a_stall(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    path, app, remote = local_pair
    tracked(local_pair, USERS, "INSERT INTO users VALUES (1, 'x'); INSERT INTO users VALUES (2, 'y')")
    remote.exec("INSERT INTO users VALUES (99, 'x')")  # only the remote holds 'x', for good
    with SyncWorker(path, remote, config=SyncConfig(window=1)) as worker:
        drain(worker, max_passes=5, sleep=lambda s: None)
        assert (worker.pending(), worker.counters.dead) == (0, 1)


def test_a_child_of_a_parent_retried_for_its_unique_value_arrives_with_it(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    path, app, remote = local_pair
    both(
        app,
        remote,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);"
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id))",
    )
    Outbox(path).track("users", "posts")
    app.exec("INSERT INTO users VALUES (1, 'x')")
    with SyncWorker(path, remote) as worker:
        drain(worker, max_passes=3, sleep=lambda s: None)
        app.exec("UPDATE users SET email = 'tmp' WHERE id = 1")
        app.exec("INSERT INTO users VALUES (3, 'x')")
        app.exec("UPDATE users SET email = 'z' WHERE id = 1")
        app.exec("INSERT INTO posts VALUES (10, 3)")
        result = worker.sync_once()
        assert (result.rows, result.dead) == (3, 0)
    for table in ("users", "posts"):
        assert snapshot(remote.connection, table) == snapshot(app.connection, table)


def test_a_key_that_is_not_utf8_beyond_a_full_window_of_linked_tables_does_not_stall(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    path, app, remote = local_pair
    both(
        app,
        remote,
        "CREATE TABLE p (id TEXT PRIMARY KEY NOT NULL); CREATE TABLE c (id INTEGER PRIMARY KEY, pid TEXT REFERENCES p)",
    )
    Outbox(path).track("p", "c")
    app.exec("INSERT INTO p VALUES ('a'), ('b'), ('c')")
    app.exec("INSERT INTO p VALUES (CAST(x'ff41' AS TEXT))")
    with SyncWorker(path, remote, config=SyncConfig(window=3)) as worker:
        drain(worker, max_passes=5, sleep=lambda s: None)
        assert (worker.pending(), worker.counters.dead) == (0, 1)
    assert remote.prepare("SELECT count(*) AS n FROM p").first("n") == 3


def test_the_lenient_text_factory_never_outlives_the_query_that_needed_it(tmp_path: Path) -> None:
    with Connection(tmp_path / "f.db") as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (CAST(x'ff' AS TEXT))")
        rows, lenient = conn.read("SELECT v FROM t")
        assert lenient and rows.fetchall() == [("\udcff",)] and conn.raw.text_factory is str
        with pytest.raises(SQLError, match="no such table") as info:
            conn.read("SELECT v FROM missing")
        assert info.value.missing == ("table", "missing") and conn.raw.text_factory is str
        conn.raw.text_factory = bytes
        rows, lenient = conn.read("SELECT v FROM t")
        assert (rows.fetchall(), lenient) == ([(b"\xff",)], False)


def test_the_upgrade_keeps_triggers_on_the_change_log(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = open_file(path)
    conn.executescript(
        """
        CREATE TABLE _d1sync_changes (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, key TEXT NOT NULL,
            op TEXT NOT NULL, payload TEXT, created_at INTEGER NOT NULL);
        CREATE TABLE audit (seq INTEGER);
        CREATE TRIGGER audit_changes AFTER INSERT ON _d1sync_changes BEGIN INSERT INTO audit VALUES (NEW.seq); END;
        """
    )
    conn.close()
    with Connection(path) as upgraded:
        ensure_schema(upgraded)
        upgraded.execute("INSERT INTO _d1sync_changes (tid, key, op) VALUES (1, 1, 1)")
        assert upgraded.execute("SELECT count(*) FROM audit").fetchone()[0] == 1


def test_dead_letters_are_made_only_for_changes_still_in_the_log(tmp_path: Path) -> None:
    """Two workers handling the same orphans must not make two dead letters of one change."""
    from d1sync.sync.model import Change
    from d1sync.sync.store.dead import dead_letter

    with Outbox(tmp_path / "app.db") as outbox, Connection(tmp_path / "app.db") as conn:
        with conn.atomic():
            append_changes(conn, "gone", [("[1]", "upsert", None)])
        change = Change("gone", "[1]", "upsert", seqs=(1,))
        assert dead_letter(conn, [(change, "first")]) == 1
        assert dead_letter(conn, [(change, "second")]) == 0
        assert [d.error for d in outbox.dead_letters()] == ["first"]
