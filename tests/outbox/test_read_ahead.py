"""Reading ahead: the next window is read and planned while a full window's last request is in flight.

What must hold: requests still go one at a time and in order; a window read ahead never holds a change that
is in flight (no row is sent twice); a write made during the send reaches the remote in its newest state; a
refusal, a failure or DDL during the send throws the window read ahead away (the next one is read afresh).
Everything runs against real files, with the send on the worker's real helper thread.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync.errors import SQLError, TransientError
from d1sync.local import LocalDatabase
from d1sync.outbox import Limits, Outbox, SyncConfig, drain
from d1sync.sqlite import Connection
from d1sync.sync.model import Change, seq_param
from d1sync.sync.push import readahead as ahead_module
from d1sync.sync.push import window as changes_module
from d1sync.sync.push.window import ReadAhead, Window, read_window

from .conftest import OpenWorker, RecordingTarget, open_file, snapshot

DDL = "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"
ROWS = 1_000
WINDOW = 100
# About 70 of these rows fill a request: every full window of 100 sends one and holds the rest back.
LIMITS = Limits(max_request_bytes=3_000, max_value_bytes=1_000)


@pytest.fixture
def backlog(local_pair: tuple[Path, LocalDatabase, LocalDatabase]) -> tuple[Path, LocalDatabase, LocalDatabase]:
    path, app, remote = local_pair
    app.exec(DDL)
    remote.exec(DDL)
    Outbox(path).track("items")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"row {i}", i) for i in range(ROWS)])
    return path, app, remote


def sent_ids(target: RecordingTarget) -> list[int]:
    """The id of every row the target was sent, request after request (upserts of ``items``)."""
    ids = []
    for batch in target.batches:
        for sql, params in batch:
            if sql.startswith('INSERT INTO "items"'):
                ids += [row[0] for row in json.loads(params[0])]
    return ids


def around_first_read_ahead(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[ReadAhead], None], *, after: bool = False
) -> list[ReadAhead]:
    """Run ``action`` once, just before (or just after) the first window is read ahead, on the worker's thread;
    the list returned gets the ReadAhead it ran for. The wrapper only orders the two: the read is the real one."""
    real = ahead_module.read_window
    ran: list[ReadAhead] = []

    def wrapped(conn: Any, limit: int, **options: Any) -> Any:
        carry = options["ahead"]
        first = not ran
        if first and not after:
            action(carry)
        window = real(conn, limit, **options)
        if first:
            if after:
                action(carry)
            ran.append(carry)
        return window

    monkeypatch.setattr(ahead_module, "read_window", wrapped)
    return ran


def exact(path: Path, remote: LocalDatabase) -> bool:
    with closing(open_file(path)) as local, closing(open_file(remote.path)) as other:
        return snapshot(local, "items") == snapshot(other, "items")


def test_one_pass_sends_window_after_window_and_never_a_row_twice(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, _, remote = backlog
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    result = worker.sync_once()
    assert result.state == "synced" and result.rows == ROWS
    assert result.requests == len(target.batches) > ROWS // WINDOW  # many windows, in one pass
    ids = sent_ids(target)
    assert sorted(ids) == list(range(ROWS))  # each row once: nothing in flight was read again
    assert ids == sorted(ids)  # and in the order they were written
    assert target.max_active == 1  # one request at a time
    assert worker.pending() == 0 and exact(path, remote)


def test_without_read_ahead_a_pass_is_one_window(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, _, remote = backlog
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS, read_ahead=False))
    result = worker.sync_once()
    assert result.requests == 1 and result.more
    report = drain(worker, sleep=lambda s: None)
    assert report.drained and sorted(sent_ids(target)) == list(range(ROWS))
    assert exact(path, remote)


def test_writes_made_while_a_request_is_in_flight_arrive_in_their_newest_state(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    """During each send, the application rewrites a row that is in flight, one that is held back and one
    far ahead. State is read from the table, so the remote must end equal to the local file."""
    path, _, remote = backlog
    target = RecordingTarget(remote)
    writer = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    sends = Counter[str]()

    def write_during_send(statements: Any) -> None:
        sends[threading.current_thread().name] += 1
        rows = [json.loads(s.params[0]) for s in statements if s.sql.startswith('INSERT INTO "items"')]
        round_ = sum(sends.values())
        if not rows or round_ > 12:  # then let the drain finish
            return
        in_flight = rows[-1][-1][0]
        for key in (in_flight, in_flight + 1, in_flight + 10, (in_flight + 500) % ROWS):
            writer.execute("UPDATE items SET body = ?, n = n + 1 WHERE id = ?", (f"rewritten {round_}", key))
        writer.execute("DELETE FROM items WHERE id = ?", ((in_flight + 7) % ROWS,))

    target.before_batch = write_during_send
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    try:
        report = drain(worker, sleep=lambda s: None)
    finally:
        writer.close()
    assert report.drained
    assert exact(path, remote)
    assert any(name.startswith("d1sync-send") for name in sends)  # the sends did run on the helper thread


def test_a_refusal_in_flight_discards_the_window_read_ahead(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    app.exec(DDL)
    remote.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT, n INTEGER CHECK (n <> 42))")
    Outbox(path).track("items", manage_schema=False)
    with app.atomic() as conn:
        conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"row {i}", i) for i in range(ROWS)])
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    first = worker.sync_once()
    # The first request holds row 42: it is refused, bisected, and the pass ends with that window.
    assert (first.dead, first.more) == (1, True)
    assert first.rows < WINDOW
    report = drain(worker, sleep=lambda s: None)
    assert report.drained
    ids = sent_ids(target)  # the batches that were applied
    delivered = [i for i in range(ROWS) if i != 42]
    with closing(open_file(remote.path)) as other:
        assert [r[0] for r in other.execute("SELECT id FROM items ORDER BY id")] == delivered
    assert sorted(ids) == delivered  # acknowledged once each: the refused request's rows went in its halves
    assert worker.status().dead_letters == 1


def test_a_failure_in_flight_acknowledges_nothing_and_discards_the_window_read_ahead(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, _, remote = backlog
    target = RecordingTarget(remote)
    target.fail_when = lambda statements: TransientError("the network went away") if len(target.batches) == 2 else None
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    result = worker.sync_once()
    assert result.state == "backoff"
    assert result.requests == 2 == len(target.batches)
    assert worker.pending() == ROWS - result.rows
    target.fail_when = None
    worker.resume()
    assert drain(worker, sleep=lambda s: None).drained
    assert sorted(sent_ids(target)) == list(range(ROWS))  # the failed request's rows went once, later
    assert exact(path, remote)


def test_ddl_during_a_send_ends_the_pass_so_the_next_one_follows_the_change(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application adds a column while the first request is in flight, just before the window ahead is
    read (the wrapper only orders the two; the read is the real one): that window is of a schema the pass's
    preflight never saw, so it is dropped and the next pass reads afresh, with the new column."""
    path, _, remote = backlog

    def alter(_: ReadAhead) -> None:
        with closing(open_file(path)) as other:
            other.execute("ALTER TABLE items ADD COLUMN extra TEXT DEFAULT 'x'")

    altered = around_first_read_ahead(monkeypatch, alter)
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    first = worker.sync_once()
    assert altered and (first.requests, first.more) == (1, True)
    remote.exec("ALTER TABLE items ADD COLUMN extra TEXT DEFAULT 'x'")
    with closing(open_file(path)) as conn:
        conn.execute("UPDATE items SET extra = 'local ' || id WHERE id % 3 = 0")
    assert drain(worker, sleep=lambda s: None).drained
    # Rows sent after the change carry the new column, so the remote holds exactly the local rows.
    assert exact(path, remote)


def test_a_failing_read_ahead_costs_only_the_overlap(
    backlog: tuple[Path, LocalDatabase, LocalDatabase],
    open_worker: OpenWorker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A local error while reading ahead (here injected: it cannot be produced on demand) must not lose the
    request in flight: it is acknowledged, and the next window is read in the next pass."""
    path, _, remote = backlog
    real = ahead_module.read_window

    def failing(conn: Any, limit: int, **options: Any) -> Any:
        if options.get("ahead"):
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn, limit, **options)

    monkeypatch.setattr(ahead_module, "read_window", failing)
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    with caplog.at_level(logging.WARNING, logger="d1sync.sync"):
        first = worker.sync_once()
    assert first.requests == 1 and first.rows > 0 and first.more
    assert "reading the next window ahead failed" in caplog.text
    assert worker.pending() == ROWS - first.rows
    assert drain(worker, sleep=lambda s: None).drained and exact(path, remote)


def test_closing_the_worker_ends_its_send_thread(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, _, remote = backlog
    worker = open_worker(path, RecordingTarget(remote), config=SyncConfig(window=WINDOW, limits=LIMITS))
    worker.sync_once()
    assert any(t.name.startswith("d1sync-send") for t in threading.enumerate())
    worker.close()
    assert not any(t.name.startswith("d1sync-send") for t in threading.enumerate())


def test_an_error_from_the_in_flight_request_wins_over_the_read_ahead(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    """A refused request is handled as before (bisection) even though the read ahead succeeded meanwhile."""
    path, _, remote = backlog
    target = RecordingTarget(remote)
    refused = {"left": 1}

    def refuse_once(statements: Any) -> SQLError | None:
        if refused["left"] and len(target.batches) == 1:
            refused["left"] = 0
            return SQLError("UNIQUE constraint failed: items.id: SQLITE_CONSTRAINT", code=7500)
        return None

    target.fail_when = refuse_once
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    report = drain(worker, sleep=lambda s: None)
    assert report.drained and exact(path, remote)


def _copy_without(path: Path, copy: Path, in_flight: list[Change]) -> None:
    """A copy of the file whose log no longer holds the rows in flight (as if acknowledged)."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
        target.execute(
            "DELETE FROM _d1sync_changes WHERE seq IN (SELECT value FROM json_each(?))", (seq_param(in_flight),)
        )
        target.commit()


def _shape(window: Window) -> list[tuple[str, str, str, str | None, list[int]]]:
    return [(c.table, c.key, c.op, c.data, c.seqs) for c in window.changes]


@pytest.mark.parametrize("limit", [WINDOW, 2 * ROWS], ids=["the new rows beyond it", "the new rows in it"])
@pytest.mark.parametrize("others_below", [False, True], ids=["plain delivery", "another row pending below"])
def test_a_window_read_ahead_is_the_window_the_log_gives_without_the_rows_in_flight(
    backlog: tuple[Path, LocalDatabase, LocalDatabase],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    others_below: bool,
    limit: int,
) -> None:
    """Read while 60 of a window's 100 changes are in flight, with the application writing meanwhile, the
    window ahead must equal the window read from the same log with those rows acknowledged: in the plain case
    from the held-back tail and the rows after the window (no scan past the rows in flight), and when another
    change row is pending below (here the window's middle ten, neither sent nor held back) by leaving the rows
    in flight out by seq. The application's new change rows fall beyond the window ahead or in it: either
    way, what it rewrote is read in its newest state, never reused from the window before."""
    path, _, _ = backlog
    reads: list[dict[str, Any]] = []
    real_read_log = changes_module.read_log

    def spy(*args: Any, **options: Any) -> Any:
        reads.append(options)
        return real_read_log(*args, **options)

    monkeypatch.setattr(changes_module, "read_log", spy)
    with Connection(path) as conn:
        window = read_window(conn, WINDOW)
        in_flight = window.changes[:60]
        held_back = window.changes[70:] if others_below else window.changes[60:]
        with closing(open_file(path)) as writer:
            for key in (5, 65, 95, 150):  # in flight, held back, held back, after the window
                writer.execute("UPDATE items SET body = 'rewritten', n = -n WHERE id = ?", (key,))
            writer.execute("DELETE FROM items WHERE id = 66")
            writer.execute("INSERT INTO items VALUES (5000, 'new', 0)")
        reads.clear()
        ahead = read_window(conn, limit, ahead=ReadAhead(window.high, window.top, in_flight, held_back))
    assert [("after" in r, "exclude" in r) for r in reads] == [(not others_below, others_below)]
    _copy_without(path, tmp_path / "reference.db", in_flight)
    with Connection(tmp_path / "reference.db") as conn:
        reference = read_window(conn, limit)
    assert _shape(ahead) == _shape(reference)
    assert (ahead.full, ahead.high) == (reference.full, reference.high)
    rewritten = {c.key: c.data for c in ahead.changes if c.key in ("[65]", "[95]", "[150]")}
    assert rewritten == {f"[{k}]": f'[{k},"rewritten",-{k}]' for k in (65, 95, 150)}
    sent = {c.key for c in in_flight}
    assert all(c.key not in sent or c.seqs[0] > ROWS for c in ahead.changes)  # only by a newer write


def test_after_more_writes_than_a_window_no_held_back_state_is_reused(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], tmp_path: Path
) -> None:
    """More rows written since the window before than a window holds: the keys written are not all looked
    at, so every held-back key's state is read again (the rewritten one arrives in its newest state)."""
    path, _, _ = backlog
    with Connection(path) as conn:
        window = read_window(conn, WINDOW)
        in_flight, held_back = window.changes[:60], window.changes[60:]
        with closing(open_file(path)) as writer:
            writer.execute("UPDATE items SET n = -n WHERE id >= 500")  # 500 change rows beyond any window
            writer.execute("UPDATE items SET body = 'rewritten' WHERE id = 65")  # held back
        ahead = read_window(conn, WINDOW, ahead=ReadAhead(window.high, window.top, in_flight, held_back))
    _copy_without(path, tmp_path / "reference.db", in_flight)
    with Connection(tmp_path / "reference.db") as conn:
        reference = read_window(conn, WINDOW)
    assert _shape(ahead) == _shape(reference)
    assert {c.key: c.data for c in ahead.changes}["[65]"] == '[65,"rewritten",65]'


def test_a_row_replace_removes_during_the_send_is_read_again_not_reused(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``INSERT OR REPLACE`` (recursive triggers off) removes the row holding a clashing UNIQUE value and
    logs nothing for it. When that row was held back (read, never sent), its earlier state must not be
    reused: read again, it is absent, so it goes as a delete, and the row that took its value is not
    refused. (The wrapper only orders the write before the real read ahead.)"""
    path, app, remote = local_pair
    ddl = "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT UNIQUE, n INTEGER)"
    app.exec(ddl)
    remote.exec(ddl)
    Outbox(path).track("items")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"row {i}", i) for i in range(ROWS)])

    def replace_a_held_back_row(carry: ReadAhead) -> None:
        held_back = json.loads(carry.held_back[0].key)[0]
        with closing(open_file(path)) as writer:
            writer.execute("INSERT OR REPLACE INTO items VALUES (?, ?, 0)", (ROWS + 1, f"row {held_back}"))

    replaced = around_first_read_ahead(monkeypatch, replace_a_held_back_row)
    worker = open_worker(path, RecordingTarget(remote), config=SyncConfig(window=WINDOW, limits=LIMITS))
    assert drain(worker, sleep=lambda s: None).drained
    assert replaced and worker.status().dead_letters == 0
    assert exact(path, remote)


def test_ddl_after_the_window_was_read_ahead_ends_the_pass(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column added after the window ahead was read, while its request is still in flight: the window is
    of the old schema, so the pass ends there and the next one follows the change first."""
    path, _, remote = backlog

    def alter(_: ReadAhead) -> None:
        with closing(open_file(path)) as other:
            other.execute("ALTER TABLE items ADD COLUMN extra TEXT DEFAULT 'x'")

    altered = around_first_read_ahead(monkeypatch, alter, after=True)
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    first = worker.sync_once()
    assert altered and (first.requests, first.more) == (1, True)
    remote.exec("ALTER TABLE items ADD COLUMN extra TEXT DEFAULT 'x'")
    assert drain(worker, sleep=lambda s: None).drained
    assert exact(path, remote)


def test_a_table_declared_during_the_send_waits_for_the_next_pass(
    backlog: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Declaring a table writes no DDL, but the window ahead would hold a table the pass's preflight never
    checked on the remote: it is dropped, and the next pass checks the new table first."""
    path, _, remote = backlog

    def declare(_: ReadAhead) -> None:
        with Outbox(path) as outbox:
            outbox.declare("events", key=["id"], columns=["id", "body"])
            outbox.enqueue("events", {"id": 1, "body": "first"})

    declared = around_first_read_ahead(monkeypatch, declare)
    remote.exec("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
    target = RecordingTarget(remote)
    worker = open_worker(path, target, config=SyncConfig(window=WINDOW, limits=LIMITS))
    first = worker.sync_once()
    assert declared and (first.requests, first.more) == (1, True)
    assert drain(worker, sleep=lambda s: None).drained
    assert exact(path, remote)
    assert remote.prepare("SELECT body FROM events").first("body") == "first"
