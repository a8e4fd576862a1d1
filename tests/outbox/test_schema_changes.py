"""The mirror stays exact while the local schema changes, one table at a time, through a real emulator socket.

Each test applies its DDL as docs/sync.md tells users (the same DDL locally and remotely, unless the test is
about a remote that lacks it) and ends by comparing both SQLite files row by row, storage classes included.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from d1sync.emulator.server import EmulatorServer
from d1sync.outbox import SyncConfig, SyncWorker

from .conftest import Mirror

NOTES = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"
OTHER = "CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT)"


def write(mirror: Mirror, sql: str, rows: list[tuple[object, ...]]) -> None:
    with mirror.app.atomic() as conn:
        conn.executemany(sql, rows)


def test_add_column_sends_the_new_columns_values_once_the_remote_has_it(mirror: Mirror) -> None:
    mirror.both(NOTES)
    mirror.track("notes")
    write(mirror, "INSERT INTO notes VALUES (?, ?)", [(i, f"n{i}") for i in range(300)])
    assert mirror.drain().drained
    mirror.both("ALTER TABLE notes ADD COLUMN tag TEXT")
    mirror.app.exec("UPDATE notes SET tag = 'x' || id WHERE id % 2 = 0")
    report = mirror.drain()
    assert report.drained and mirror.exact("notes")
    status = mirror.worker.status().table_states["notes"]
    assert (status.state, status.resending) == ("synced", False)


def test_a_re_send_longer_than_one_chunk_goes_on_until_every_row_is_sent(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    mirror = Mirror(tmp_path, emulator, config=SyncConfig(window=20))  # chunks of 10 keys: the table takes 30 of them
    try:
        mirror.both(NOTES)
        mirror.track("notes")
        write(mirror, "INSERT INTO notes VALUES (?, ?)", [(i, f"n{i}") for i in range(300)])
        assert mirror.drain().drained
        mirror.remote.exec("ALTER TABLE notes ADD COLUMN tag TEXT")
        mirror.app.exec("ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'every row'")
        report = mirror.drain(passes=200)
        assert report.drained and report.rows == 300 and mirror.exact("notes")
        assert not mirror.worker.status().table_states["notes"].resending
    finally:
        mirror.close()


def test_add_column_the_remote_lacks_pauses_an_unmanaged_table_with_the_alter_and_the_others_flow(
    mirror: Mirror,
) -> None:
    mirror.both(NOTES + "; " + OTHER)
    mirror.track("notes", "other", manage_schema=False)
    write(mirror, "INSERT INTO notes VALUES (?, ?)", [(1, "a")])
    assert mirror.drain().drained
    mirror.app.exec("ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'")
    mirror.app.exec("UPDATE notes SET tag = 'set'; INSERT INTO other VALUES (1, 'flows')")
    report = mirror.drain()
    assert report.state == "paused" and "lacks column(s) tag" in (report.error or "")
    assert mirror.exact("other")
    notes = mirror.worker.status().table_states["notes"]
    assert notes.state == "paused"
    assert notes.fix == (
        """run on the remote: ALTER TABLE "notes" ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'; or let d1sync """
        f"manage this table's schema: `d1sync track {mirror.path} notes --manage-schema`"
    )
    mirror.remote.exec("ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'")  # the fix, run remotely
    mirror.worker.resume()
    assert mirror.drain().drained and mirror.exact("notes")


def test_a_table_dropped_and_created_again_gets_its_capture_back(mirror: Mirror) -> None:
    mirror.both(NOTES)
    mirror.track("notes")
    write(mirror, "INSERT INTO notes VALUES (?, ?)", [(1, "old"), (2, "old")])
    assert mirror.drain().drained
    mirror.both("DROP TABLE notes; " + NOTES)
    write(mirror, "INSERT INTO notes VALUES (?, ?)", [(3, "new"), (4, "new")])  # no trigger catches these
    assert mirror.drain().drained and mirror.exact("notes")
    assert "recreated locally" in str(mirror.worker.status().table_states["notes"].note)


def test_a_table_dropped_only_locally_pauses_with_the_choice_and_delete_remote_empties_it(mirror: Mirror) -> None:
    mirror.both(NOTES + "; " + OTHER)
    mirror.track("notes", "other")
    write(mirror, "INSERT INTO notes VALUES (?, ?)", [(1, "a"), (2, "b")])
    assert mirror.drain().drained
    mirror.app.exec("DROP TABLE notes; INSERT INTO other VALUES (1, 'flows')")
    report = mirror.drain()
    notes = mirror.worker.status().table_states["notes"]
    # Nothing of notes was pending, but its table waits for a choice: not drained, as `d1sync sync` says.
    assert not report.drained and str(report.error).startswith("notes: ") and mirror.exact("other")
    assert notes.state == "paused" and "no longer exists locally" in str(notes.reason)
    assert (
        "--delete-remote" in str(notes.fix) and mirror.remote.prepare("SELECT count(*) AS n FROM notes").first("n") == 2
    )
    from d1sync import Outbox

    with Outbox(mirror.path) as outbox:
        outbox.untrack("notes", delete_remote=True)
    assert mirror.drain().drained
    assert mirror.remote.prepare("SELECT count(*) AS n FROM notes").first("n") == 0
    assert "notes" not in mirror.worker.status().tables


def test_rename_column_drop_column_and_rename_table_never_wedge_and_other_tables_flow(mirror: Mirror) -> None:
    mirror.both("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT, c TEXT); " + OTHER)
    mirror.track("t", "other")
    write(mirror, "INSERT INTO t VALUES (?, ?, ?, ?)", [(i, "a", "b", "c") for i in range(50)])
    assert mirror.drain().drained
    mirror.both("ALTER TABLE t RENAME COLUMN b TO bee")
    mirror.app.exec("UPDATE t SET bee = 'B' WHERE id < 10; INSERT INTO other VALUES (1, 'x')")
    assert mirror.drain().drained and mirror.exact("t") and mirror.exact("other")
    mirror.both("ALTER TABLE t DROP COLUMN c")
    mirror.app.exec("UPDATE t SET a = 'A' WHERE id >= 40; INSERT INTO other VALUES (2, 'y')")
    assert mirror.drain().drained and mirror.exact("t") and mirror.exact("other")
    mirror.both("ALTER TABLE t RENAME TO renamed")
    mirror.app.exec("UPDATE renamed SET a = 'R' WHERE id = 5; INSERT INTO renamed VALUES (99, 'n', 'n')")
    assert mirror.drain().drained and mirror.exact("renamed") and mirror.exact("other")
    assert set(mirror.worker.status().tables) == {"renamed", "other"}


def test_a_key_that_changes_only_in_case_under_nocase_takes_its_new_spelling_remotely(mirror: Mirror) -> None:
    mirror.both("CREATE TABLE users (name TEXT COLLATE NOCASE PRIMARY KEY NOT NULL, score INTEGER)")
    mirror.track("users")
    write(mirror, "INSERT INTO users VALUES (?, ?)", [("alice", 1), ("bob", 2)])
    assert mirror.drain().drained
    mirror.app.exec("UPDATE users SET name = 'Alice' WHERE name = 'alice'")
    assert mirror.drain().drained and mirror.exact("users")
    assert mirror.remote.prepare("SELECT name FROM users ORDER BY score").raw() == [["Alice"], ["bob"]]


def test_rows_that_swap_a_unique_value_in_one_transaction_converge_without_dead_letters(
    mirror: Mirror, caplog: pytest.LogCaptureFixture
) -> None:
    mirror.both("CREATE TABLE seats (id INTEGER PRIMARY KEY, seat TEXT UNIQUE NOT NULL, who TEXT)")
    mirror.track("seats")
    write(mirror, "INSERT INTO seats VALUES (?, ?, ?)", [(1, "A1", "ann"), (2, "A2", "bo"), (3, "A3", "cy")])
    assert mirror.drain().drained
    with mirror.app.atomic() as conn:  # a three-way rotation, consistent only at commit
        conn.execute("UPDATE seats SET seat = 'tmp' WHERE id = 1")
        conn.execute("UPDATE seats SET seat = 'A1' WHERE id = 2")
        conn.execute("UPDATE seats SET seat = 'A2' WHERE id = 3")
        conn.execute("UPDATE seats SET seat = 'A3' WHERE id = 1")
    with caplog.at_level(logging.INFO, logger="d1sync.sync"):
        report = mirror.drain()
    assert report.drained and report.dead == 0 and mirror.exact("seats")
    assert "whose UNIQUE values moved among themselves" in caplog.text  # the swap itself, not a lucky order


def test_a_unique_swap_under_a_cascading_child_keeps_the_children(
    mirror: Mirror, caplog: pytest.LogCaptureFixture
) -> None:
    mirror.both(
        "CREATE TABLE slots (id INTEGER PRIMARY KEY, code TEXT UNIQUE); "
        "CREATE TABLE bookings (id INTEGER PRIMARY KEY, slot INTEGER REFERENCES slots (id) ON DELETE CASCADE)"
    )
    mirror.track("slots", "bookings")
    write(mirror, "INSERT INTO slots VALUES (?, ?)", [(1, "x"), (2, "y")])
    write(mirror, "INSERT INTO bookings VALUES (?, ?)", [(10, 1), (20, 2)])
    assert mirror.drain().drained
    with mirror.app.atomic() as conn:
        conn.execute("UPDATE slots SET code = NULL WHERE id = 1")
        conn.execute("UPDATE slots SET code = 'x' WHERE id = 2")
        conn.execute("UPDATE slots SET code = 'y' WHERE id = 1")
    with caplog.at_level(logging.INFO, logger="d1sync.sync"):
        report = mirror.drain()
    assert report.drained and report.dead == 0
    assert "whose UNIQUE values moved among themselves" in caplog.text
    assert mirror.exact("slots") and mirror.exact("bookings")
    assert mirror.remote.prepare("SELECT count(*) AS n FROM bookings").first("n") == 2


def test_re_tracking_a_table_recreated_while_capture_was_gone_sends_every_row_again(mirror: Mirror) -> None:
    """pandas' to_sql(if_exists="replace") and a hand-made DROP + CREATE lose the capture triggers with the
    table; what is written before ``track`` runs again is not captured, so re-tracking owes every row."""
    mirror.app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with mirror.app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "old") for i in range(50)])
    mirror.track("t")
    assert mirror.drain().drained and mirror.exact("t")
    mirror.app.exec("DROP TABLE t")
    mirror.app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with mirror.app.atomic() as conn:  # no capture on the new table: these writes leave no change row
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "new") for i in range(40)])
    mirror.track("t")
    mirror.drain()
    local, remote = mirror.rows("t")
    assert [r for r in remote if r[1] < 40] == local  # every row of the new table arrived (D1 keeps 40-49)


def test_re_tracking_with_more_columns_sends_their_values(mirror: Mirror) -> None:
    mirror.both("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    with mirror.app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, "a", f"b{i}") for i in range(30)])
    mirror.track("t", include=["a"])
    assert mirror.drain().drained
    assert not mirror.exact("t")  # b is not synced yet
    mirror.track("t")  # every column now
    assert mirror.drain().drained and mirror.exact("t")


def test_wait_synced_waits_for_the_worker_holding_the_lease_to_follow_a_migration(mirror: Mirror) -> None:
    """A migration leaves no change row of its own (a rebuild's copy is not captured): "synced" must still mean
    that the worker has followed it on D1, or `sync --wait` would return before D1 has the new column."""
    mirror.both("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    mirror.track("t")
    with mirror.app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "v") for i in range(20)])
    assert mirror.drain().drained  # the mirror's worker holds the lease from here on
    mirror.app.exec("ALTER TABLE t ADD COLUMN status TEXT NOT NULL DEFAULT 'active'")
    with SyncWorker(mirror.path, mirror.worker.target) as other:
        assert not other.wait_synced(timeout=0.5)  # the lease holder has not seen the migration yet
        mirror.drain()
        assert other.wait_synced(timeout=5)
    assert mirror.exact("t")
