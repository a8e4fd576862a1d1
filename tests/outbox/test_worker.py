"""The sync worker on local targets: bisection, back-off, retry-after, the remote schema check, the lease."""

from __future__ import annotations

import json
import math
import random
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from d1sync.errors import AuthError, RateLimitedError, TransientError
from d1sync.local import LocalDatabase
from d1sync.outbox import Backoff, Limits, Outbox, Status, SyncConfig, SyncWorker, drain
from d1sync.sqlite import Connection
from d1sync.sync.status import read_status

from ..conftest import Closer
from .conftest import FakeClock, OpenWorker, RecordingTarget, snapshot

DDL = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"


def setup_notes(app: LocalDatabase, remote: LocalDatabase, path: Path, remote_ddl: str = DDL) -> None:
    """notes locally and remotely; a remote made different on purpose keeps its schema (not managed)."""
    app.exec(DDL)
    remote.exec(remote_ddl)
    Outbox(path).track("notes", manage_schema=None if remote_ddl == DDL else False)


def status_at(path: Path, now: float) -> Status:
    """The outbox status as seen at ``now`` (the fake clock's time)."""
    with Connection(path) as conn:
        return read_status(conn, now=now)


def insert(app: LocalDatabase, rows: list[tuple[int, str, int]]) -> None:
    with app.atomic() as conn:
        conn.executemany("INSERT OR REPLACE INTO notes VALUES (?, ?, ?)", rows)


# -- bisection ---------------------------------------------------------------------------------------------


def test_one_poison_row_among_many_is_the_only_one_dead_lettered(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER CHECK (n < 1000))")
    insert(app, [(i, f"row {i}", i % 100) for i in range(500)])
    insert(app, [(137, "poison", 5_000)])
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(limits=Limits(max_statements=4, max_value_bytes=2_000)))
    result = worker.sync_once()
    assert result.state == "synced"
    assert (result.rows, result.dead) == (499, 1)
    [dead] = Outbox(path).dead_letters()
    assert (dead.table, dead.key, dead.op) == ("notes", "[137]", "upsert")
    assert "CHECK constraint failed" in dead.error
    assert worker.pending() == 0
    remote_ids = {r[0] for r in remote.connection.execute("SELECT id FROM notes")}
    assert remote_ids == set(range(500)) - {137}
    # Bisection narrows down: far fewer successful sends than rows.
    assert len(target.batches) < 60


def test_several_poison_rows_in_several_requests_are_each_isolated(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n INTEGER)")
    insert(app, [(i, None if i in (3, 250, 251, 999) else "ok", i) for i in range(1_000)])  # type: ignore[misc]
    worker = open_worker(path, remote, config=SyncConfig(limits=Limits(max_statements=2, max_value_bytes=1_000)))
    result = worker.sync_once()
    assert (result.rows, result.dead) == (996, 4)
    dead = Outbox(path).dead_letters()
    assert sorted(d.key for d in dead) == ["[250]", "[251]", "[3]", "[999]"]
    assert all("NOT NULL constraint failed: notes.body" in d.error for d in dead)


def test_an_error_about_the_statement_pauses_that_table_instead_of_dead_lettering_everything(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    insert(app, [(1, "a", 1), (2, "b", 2)])
    worker = open_worker(path, remote, clock=clock, config=SyncConfig(check_schema=False))
    remote.exec("DROP TABLE notes")
    result = worker.sync_once()
    assert "no such table: notes" in result.paused_tables["notes"]
    assert Outbox(path).dead_letters() == []
    assert worker.pending() == 2 and worker.pending(flowing=True) == 0


# -- back-off ----------------------------------------------------------------------------------------------


def test_backoff_delay_is_capped_exponential_with_jitter_between_half_and_full() -> None:
    backoff = Backoff(base=0.5, cap=10.0)
    rng = random.Random(42)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (50, 10.0)]:
        delays = [backoff.delay(failures, rng) for _ in range(300)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4  # really jittered, not a constant


class Failing:
    """A failure switch for a RecordingTarget: counts attempts, raises ``error`` while it is set."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.attempts = 0

    def __call__(self, statements: Any) -> Exception | None:
        self.attempts += 1
        return self.error


def test_transient_failures_back_off_exponentially_and_the_schedule_survives_a_restart(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    insert(app, [(1, "a", 1)])
    target = RecordingTarget(remote)
    failing = target.fail_when = Failing()
    failing.error = TransientError("D1 DB is overloaded", code=7500, status=503)
    backoff = Backoff(base=1.0, cap=1_000.0)
    worker = open_worker(path, target, clock=clock, config=SyncConfig(backoff=backoff, seed=7))

    delays = []
    for failures in (1, 2, 3):
        result = worker.sync_once(now=clock())
        assert result.state == "backoff" and result.retry_in is not None
        ceiling = 2.0 ** (failures - 1)
        assert ceiling / 2 <= result.retry_in <= ceiling
        delays.append(result.retry_in)
        # Before the delay has passed nothing is sent, however often sync_once is called.
        attempts, failed_at = failing.attempts, clock()
        clock.advance(result.retry_in / 2)
        assert worker.sync_once(now=clock()).state == "backoff"
        assert failing.attempts == attempts
        # Tried again a while after the wait: the failing has lasted long enough that a quarter of it (the
        # longest back-off; see the next test) is above these ceilings.
        clock.now = failed_at + result.retry_in + 60
    status = status_at(path, clock())
    assert status.last_error is not None and status.last_error["kind"] == "TransientError"
    assert status.pending_changes == 1

    # A restarted worker (new object, same file) honours the persisted schedule and failure count.
    worker.sync_once(now=clock())  # failure 4: ceiling 8
    worker.release_lease()
    worker.close()
    restarted = open_worker(path, target, clock=clock, config=SyncConfig(backoff=backoff, seed=8))
    waiting = restarted.sync_once(now=clock())
    assert waiting.state == "backoff" and waiting.retry_in is not None and 4.0 <= waiting.retry_in <= 8.0
    assert status_at(path, clock()).backoff_remaining == pytest.approx(waiting.retry_in)
    clock.now += waiting.retry_in
    fifth = restarted.sync_once(now=clock())
    assert fifth.state == "backoff" and fifth.retry_in is not None and 8.0 <= fifth.retry_in <= 16.0

    failing.error = None
    clock.now += fifth.retry_in
    assert restarted.sync_once(now=clock()).state == "synced"
    status = status_at(path, clock())
    assert status.backoff_remaining == 0 and status.pending_changes == 0
    assert remote.prepare("SELECT body FROM notes WHERE id = 1").first("body") == "a"
    # The next failure starts the schedule from the beginning again.
    insert(app, [(2, "b", 2)])
    failing.error = TransientError("again", status=502)
    again = restarted.sync_once(now=clock())
    assert again.retry_in is not None and 0.5 <= again.retry_in <= 1.0


def test_the_backoff_waits_at_most_a_quarter_of_the_time_since_the_last_success(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    """A target that answered a moment ago is flaky, not down: a streak of failures right after a success
    does not climb to the cap; a long outage still does, later."""
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    target = RecordingTarget(remote)
    failing = target.fail_when = Failing()
    worker = open_worker(path, target, clock=clock, config=SyncConfig(backoff=Backoff(base=1.0, cap=60.0), seed=3))
    insert(app, [(1, "a", 1)])
    assert worker.sync_once(now=clock()).state == "synced"
    succeeded = clock()
    insert(app, [(2, "b", 2)])
    failing.error = TransientError("overloaded", status=503)
    waits: list[float] = []
    while clock() - succeeded < 600:  # ten minutes of failures
        result = worker.sync_once(now=clock())
        assert result.state == "backoff" and result.retry_in is not None
        ceiling = min(60.0, 2.0 ** len(waits), max(1.0, (clock() - succeeded) / 4))
        assert ceiling / 2 <= result.retry_in <= ceiling, (len(waits), result.retry_in, ceiling)
        waits.append(result.retry_in)
        clock.advance(result.retry_in)
    assert waits[6] < 2.0**6 / 2  # the seventh failure in a row: 32-64 s by the exponential alone
    assert max(waits) > 30 and len(waits) < 50  # an outage that goes on still grows the waits toward the cap


def test_before_any_success_the_backoff_waits_at_most_a_quarter_of_the_failing_so_far(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    target = RecordingTarget(remote)
    failing = target.fail_when = Failing()
    failing.error = TransientError("overloaded", status=503)
    worker = open_worker(path, target, clock=clock, config=SyncConfig(backoff=Backoff(base=1.0, cap=60.0), seed=5))
    insert(app, [(1, "a", 1)])
    first = clock()
    for failures in range(1, 9):
        result = worker.sync_once(now=clock())
        assert result.state == "backoff" and result.retry_in is not None
        quarter = max(1.0, (clock() - first) / 4) if failures > 1 else math.inf
        assert result.retry_in <= min(2.0 ** (failures - 1), quarter), failures
        clock.advance(result.retry_in)
    assert clock() - first < 2.0**7  # eight failures: the exponential alone waits 127-255 s


@pytest.mark.parametrize(("retry_after", "earlier_failures"), [(7.0, 0), (2.0, 10)])
def test_retry_after_wins_over_the_backoff_schedule(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    clock: FakeClock,
    retry_after: float,
    earlier_failures: int,
    open_worker: OpenWorker,
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    insert(app, [(1, "a", 1)])
    target = RecordingTarget(remote)
    failing = target.fail_when = Failing()
    worker = open_worker(path, target, clock=clock, config=SyncConfig(backoff=Backoff(base=1.0, cap=600.0)))
    failing.error = TransientError("overloaded", status=503)
    for _ in range(earlier_failures):
        result = worker.sync_once(now=clock())
        assert result.retry_in is not None
        clock.advance(result.retry_in + 0.001)
    failing.error = RateLimitedError("rate limited", code=971, status=429, retry_after=retry_after)
    result = worker.sync_once(now=clock())
    assert result.state == "backoff" and result.retry_in == retry_after
    assert status_at(path, clock()).backoff_remaining == pytest.approx(retry_after)
    clock.advance(retry_after - 0.01)
    assert worker.sync_once(now=clock()).state == "backoff"
    failing.error = None
    clock.advance(0.01)
    assert worker.sync_once(now=clock()).state == "synced"


def test_auth_errors_pause_without_dropping_anything(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    insert(app, [(1, "a", 1), (2, "b", 2)])
    target = RecordingTarget(remote)
    failing = target.fail_when = Failing()
    failing.error = AuthError("Authentication error", code=10000, status=401)
    worker = open_worker(path, target, clock=clock, config=SyncConfig(pause_interval=30.0))
    result = worker.sync_once(now=clock())
    assert result.state == "paused" and result.retry_in == 30.0
    status = status_at(path, clock())
    assert status.paused is not None and "Authentication error" in status.paused
    assert (status.pending_changes, status.dead_letters) == (2, 0)
    failing.error = None
    clock.advance(30.0)
    assert worker.sync_once(now=clock()).rows == 2
    assert status_at(path, clock()).paused is None


# -- status ------------------------------------------------------------------------------------------------


def test_a_successful_sync_records_last_success(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    insert(app, [(1, "a", 1)])
    worker = open_worker(path, remote, clock=clock)
    assert worker.sync_once(now=clock()).state == "synced"
    status = status_at(path, clock())
    assert status.last_success == clock()
    assert status.pending_changes == 0 and status.oldest_pending_age is None
    assert status.lease_owner == worker.owner  # still holding its lease: it may go on at once


# -- the remote schema check -------------------------------------------------------------------------------


def test_a_missing_remote_table_or_column_pauses_with_a_message_naming_it(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    app.exec(DDL + "; CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT)")
    remote.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")  # no column n, no table tags
    Outbox(path).track("notes", "tags", manage_schema=False)
    insert(app, [(1, "a", 1)])
    worker = open_worker(path, remote, clock=clock, config=SyncConfig(pause_interval=10.0))
    result = worker.sync_once(now=clock())
    assert "table 'tags' is missing on the remote" in result.paused_tables["tags"]
    assert "table 'notes' on the remote lacks column(s) n" in result.paused_tables["notes"]
    status = status_at(path, clock())
    assert (
        not status.healthy
        and status.table_states["notes"].fix
        == f'run on the remote: ALTER TABLE "notes" ADD COLUMN n INTEGER; or let d1sync manage this table\'s '
        f"schema: `d1sync track {path} notes --manage-schema`"
    )
    assert status.pending_changes == 1 and status.dead_letters == 0

    remote.exec("ALTER TABLE notes ADD COLUMN n INTEGER; CREATE TABLE tags (id INTEGER PRIMARY KEY, label TEXT)")
    clock.advance(5.0)
    assert worker.sync_once(now=clock()).rows == 0  # still waiting out the pause
    clock.advance(5.0)
    assert worker.sync_once(now=clock()).rows == 1
    assert status_at(path, clock()).healthy


# -- the lease ---------------------------------------------------------------------------------------------


def test_two_workers_on_one_file_never_send_at_the_same_time(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    closer: Closer[Any],
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    target = RecordingTarget(remote)
    workers = [
        closer(SyncWorker(path, target, config=SyncConfig(limits=Limits(max_statements=1, max_value_bytes=1_000))))
        for _ in range(2)
    ]
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(60):
                insert(app, [(j, "x" * 200 + str(i), i) for j in range(i, i + 10)])
                time.sleep(0.005)  # a steady trickle, so the workers take many turns
        finally:
            done.set()

    def sync(worker: SyncWorker) -> None:
        try:
            while not done.is_set() or worker.pending():
                worker.sync_once()
                # Hand the lease over often (and let the other thread run), so both workers compete for it.
                worker.release_lease()
                time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=sync, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert target.max_active == 1
    assert all(w.counters.requests > 0 for w in workers), [w.counters.requests for w in workers]
    assert snapshot(remote.connection, "notes") == snapshot(app.connection, "notes")


def test_a_worker_that_lost_its_lease_mid_pass_does_not_send_its_stale_window(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], clock: FakeClock, open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    setup_notes(app, remote, path)
    insert(app, [(1, "v1" + "x" * 600, 1), (2, "v1" + "x" * 600, 1)])  # one request per row with these limits
    limits = Limits(max_value_bytes=1_000, max_statements=1)
    target = RecordingTarget(remote)
    stalled = open_worker(path, target, clock=clock, config=SyncConfig(lease_ttl=10.0, limits=limits))
    other = open_worker(path, remote, clock=clock, config=SyncConfig(lease_ttl=10.0, limits=limits))

    def stall_once(statements: Any) -> None:
        target.before_batch = None
        # The first worker stalls past its lease; meanwhile row 2 changes and another worker syncs it.
        clock.advance(11.0)
        insert(app, [(2, "v2", 2)])
        assert other.sync_once(now=clock()).state == "synced"
        other.release_lease()

    target.before_batch = stall_once
    stalled.sync_once(now=clock())
    drain(stalled, max_passes=5, sleep=clock.advance)
    assert status_at(path, clock()).pending_changes == 0
    assert snapshot(remote.connection, "notes") == snapshot(app.connection, "notes")


def test_drain_stops_at_a_pause_and_reports_the_reason(local_pair: tuple[Path, LocalDatabase, LocalDatabase]) -> None:
    path, app, remote = local_pair
    app.exec(DDL)
    with Outbox(path) as outbox:
        outbox.track("notes", manage_schema=False)
    insert(app, [(1, "a", 1)])
    slept: list[float] = []
    with SyncWorker(path, remote) as worker:
        report = drain(worker, max_passes=3, sleep=slept.append)
    assert (report.state, report.drained, report.pending, slept) == ("paused", False, 1, [])
    assert report.error is not None and "table 'notes' is missing" in report.error


def test_drain_is_not_drained_while_an_empty_table_waits_for_a_fix(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
) -> None:
    """Nothing of the table is pending, but D1 lacks it: the library says so as ``d1sync sync`` does."""
    path, app, remote = local_pair
    app.exec(DDL)
    with Outbox(path) as outbox:
        outbox.track("notes", manage_schema=False)
    with SyncWorker(path, remote) as worker:
        worker.sync_once()  # finds the table missing and pauses it
        report = drain(worker, max_passes=3)
    assert (report.state, report.drained, report.pending) == ("paused", False, 0)
    assert report.error is not None and report.error.startswith("notes: ") and "fix: " in report.error


# -- windows -----------------------------------------------------------------------------------------------


def test_a_backlog_of_related_tables_longer_than_the_window_drains_even_when_every_key_changes_again(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    """Keys deferred because they change again beyond the window must not pin the window in place."""
    path, app, remote = local_pair
    schema = (
        "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors (id), title TEXT)"
    )
    app.exec(schema)
    remote.exec(schema)
    Outbox(path).track("authors", "posts")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO authors VALUES (?, ?)", [(a, f"author {a}") for a in range(10)])
        conn.executemany("INSERT INTO posts VALUES (?, ?, ?)", [(p, p % 10, "draft") for p in range(100)])
    for round_ in range(5):  # every post is edited again and again: each key has changes far beyond a window
        with app.atomic() as conn:
            conn.executemany("UPDATE posts SET title = ? WHERE id = ?", [(f"edit {round_}", p) for p in range(100)])
    worker = open_worker(path, remote, config=SyncConfig(window=50))
    drain(worker, max_passes=100, sleep=lambda s: None)
    assert worker.pending() == 0
    assert Outbox(path).dead_letters() == []
    for table in ("authors", "posts"):
        assert snapshot(remote.connection, table) == snapshot(app.connection, table)


def test_a_pass_that_only_skips_superseded_changes_reports_progress(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    """run() keeps draining (no idle wait) while windows hold only changes superseded further on."""
    path, app, remote = local_pair
    schema = (
        "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors (id), title TEXT)"
    )
    app.exec(schema)
    remote.exec(schema)
    Outbox(path).track("authors", "posts")
    app.exec("INSERT INTO authors VALUES (1, 'a')")
    worker = open_worker(path, remote, config=SyncConfig(window=10))
    assert worker.sync_once().rows == 1
    with app.atomic() as conn:  # a window counts keys: only a churn past its row cap fills it with one key
        conn.executemany("INSERT OR REPLACE INTO posts VALUES (1, 1, ?)", [(f"v{i}",) for i in range(20_030)])
    first = worker.sync_once()  # 20,000 changes of post 1 (the cap), all superseded by the 30 after them
    assert first.state == "synced" and first.more
    assert worker.pending() == 30
    drain(worker, max_passes=5, sleep=lambda s: None)
    assert snapshot(remote.connection, "posts") == snapshot(app.connection, "posts")


def _tracked_pair(tmp_path: Path) -> tuple[Path, Path]:
    """(app, remote) files with a table ``t``, tracked in the app."""
    app, remote = tmp_path / "app.db", tmp_path / "remote.db"
    for path in (app, remote):
        with LocalDatabase(path) as db:
            db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with Outbox(app) as outbox:
        outbox.track("t")
    return app, remote


def _plant_lease(app: Path, owner: str) -> None:
    conn = sqlite3.connect(app)
    conn.execute(
        "INSERT OR REPLACE INTO _d1sync_meta (k, v) VALUES ('lease', ?)",
        (json.dumps({"owner": owner, "expires": time.time() + 3600}),),
    )
    conn.commit()
    conn.close()


def _dead_pid() -> str:
    import subprocess
    import sys

    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    return subprocess.run(command, capture_output=True, text=True).stdout


def test_a_lease_left_by_a_killed_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    """A worker killed with SIGKILL cannot release its lease; its successor must not wait for the TTL."""
    app, remote = _tracked_pair(tmp_path)
    with LocalDatabase(app) as db:
        db.prepare("INSERT INTO t VALUES (1, 'x')").run()
    with LocalDatabase(remote) as target, SyncWorker(app, target) as worker:
        host = worker.owner.rsplit(":", 2)[0]
        _plant_lease(app, f"{host}:{_dead_pid().strip()}:deadbeef")
        assert worker.sync_once().rows == 1


def test_a_dead_pid_of_another_pid_namespace_is_no_reason_to_take_over(tmp_path: Path) -> None:
    """Containers may share a hostname and a mounted file while their PIDs mean different things."""
    app, remote = _tracked_pair(tmp_path)
    with LocalDatabase(remote) as target, SyncWorker(app, target) as worker:
        assert worker.owner.startswith(socket.gethostname())
        _plant_lease(app, f"{socket.gethostname()}/other-boot/4026531836:{_dead_pid().strip()}:deadbeef")
        assert worker.sync_once().state == "locked"


def test_a_live_lease_holder_is_never_taken_over(tmp_path: Path) -> None:
    app, remote = _tracked_pair(tmp_path)
    with LocalDatabase(remote) as target, SyncWorker(app, target) as first, SyncWorker(app, target) as second:
        assert first.sync_once().state == "idle"
        assert second.sync_once().state == "locked"  # same host, and the holder (this process) is alive


# -- configuration -----------------------------------------------------------------------------------------


def test_the_old_keywords_still_configure_the_worker_with_a_warning_naming_the_syncconfig_field(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
) -> None:
    path, _, remote = local_pair
    with pytest.warns(DeprecationWarning, match=r"SyncWorker\((\w+)=\.\.\.\) is deprecated.*SyncConfig\(\1=") as caught:
        worker = open_worker(path, remote, SyncConfig(lease_ttl=12.0), window=7, limits=None)
    assert [str(w.message).split("(")[1].split("=")[0] for w in caught] == ["limits", "window"]
    assert worker.config == SyncConfig(window=7, lease_ttl=12.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'windw'"):
        open_worker(path, remote, windw=7)
