"""verify compares local and remote exactly (values and their types), pages with keys, and repairs through
the outbox; run against a real emulator socket."""

from __future__ import annotations

import pytest

from .conftest import Mirror

SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, v ANY, b BLOB); CREATE TABLE other (k TEXT PRIMARY KEY NOT NULL)"


@pytest.fixture
def synced(mirror: Mirror) -> Mirror:
    mirror.both(SCHEMA)
    mirror.track("t", "other")
    with mirror.app.atomic() as conn:
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(i, [i, f"text {i}", i / 4, 2**62 + i, None][i % 5], bytes([i % 256]) * 3) for i in range(1, 1201)],
        )
        conn.executemany("INSERT INTO other VALUES (?)", [(f"k{i}",) for i in range(30)])
    assert mirror.drain().drained
    return mirror


def test_equal_tables_verify_equal_in_pages(synced: Mirror) -> None:
    report = synced.worker.verify(page=100)
    assert report.equal and [t.table for t in report.tables] == ["other", "t"]
    t = next(d for d in report.tables if d.table == "t")
    assert (t.local_rows, t.remote_rows, t.missing, t.extra, t.different) == (1200, 1200, 0, 0, 0)
    assert report.requests >= 12  # paged: about one remote request per 100 rows, never the whole table at once


def test_pages_shrink_for_large_rows_so_memory_stays_bounded(synced: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    from d1sync.sync.compare import verify

    synced.remote.exec("UPDATE t SET b = zeroblob(20000) WHERE id > 1000")
    synced.app.exec("UPDATE t SET b = zeroblob(20000) WHERE id > 1000")
    assert synced.drain().drained
    monkeypatch.setattr(verify, "PAGE_BYTES", 400_000)  # 10 rows of 40,000 hex digits each
    report = synced.worker.verify(["t"])
    assert report.equal
    # 1000 small rows in one page, then the 200 large ones 10 to a page.
    assert 20 <= report.requests <= 25, report.requests


@pytest.mark.parametrize(
    "remote_value", ["'1'", "1.0", "2"], ids=["text instead of integer", "real instead of integer", "value"]
)
def test_a_changed_value_or_type_is_found_and_repair_converges(synced: Mirror, remote_value: str) -> None:
    # Row 1 holds the integer 1 locally.
    synced.remote.prepare(f"UPDATE t SET v = {remote_value} WHERE id = 1").run()
    report = synced.worker.verify(["t"])
    diff = report.tables[0]
    assert not report.equal and (diff.different, diff.missing, diff.extra) == (1, 0, 0)
    assert diff.samples["different"] == [[1]]
    synced.worker.verify(["t"], repair=True)
    assert synced.drain().drained and synced.worker.verify().equal and synced.exact("t")


def test_a_missing_and_an_extra_row_are_found_and_delete_extra_removes_the_extra(synced: Mirror) -> None:
    synced.remote.exec("DELETE FROM t WHERE id = 600; INSERT INTO t VALUES (5000, 'only remote', NULL)")
    diff = synced.worker.verify(["t"], page=250).tables[0]
    assert (diff.missing, diff.extra, diff.different) == (1, 1, 0)
    assert diff.samples == {"missing": [[600]], "extra": [[5000]], "different": []}
    synced.worker.verify(["t"], repair=True)  # repairs the missing row; the extra one is only reported
    synced.drain()
    assert (synced.worker.verify(["t"]).tables[0].extra, synced.exact("t")) == (1, False)
    synced.worker.verify(["t"], repair=True, delete_extra=True)
    assert synced.drain().drained and synced.worker.verify().equal and synced.exact("t")


def test_a_remote_rewound_to_an_earlier_state_is_caught_and_repaired(synced: Mirror) -> None:
    """As a D1 Time Travel restore does: later writes vanish remotely, earlier values come back."""
    synced.app.exec("UPDATE t SET v = 'later' WHERE id <= 40; INSERT INTO t VALUES (9000, 'new', NULL)")
    assert synced.drain().drained
    synced.remote.exec("UPDATE t SET v = 'earlier' WHERE id <= 40; DELETE FROM t WHERE id = 9000")  # the rewind
    diff = synced.worker.verify(["t"]).tables[0]
    assert (diff.different, diff.missing) == (40, 1)
    synced.worker.verify(repair=True)
    assert synced.drain().drained and synced.worker.verify().equal and synced.exact("t")


def test_keys_with_pending_changes_are_in_flight_not_differences(synced: Mirror) -> None:
    synced.app.exec("UPDATE t SET v = 'not sent yet' WHERE id = 3")
    diff = synced.worker.verify(["t"]).tables[0]
    assert diff.equal and diff.pending == 1


def test_a_table_missing_on_the_remote_is_reported_not_raised(synced: Mirror) -> None:
    synced.remote.exec("DROP TABLE other")
    report = synced.worker.verify()
    other = next(d for d in report.tables if d.table == "other")
    assert not report.equal and other.skipped is not None and "missing on the remote" in other.skipped


def test_verify_compares_the_local_table_as_it_is_now_before_a_worker_followed_its_migration(synced: Mirror) -> None:
    """The stored spec still names the dropped column until the worker's next pass; verify reads the file as it
    is and names each difference by column, instead of failing on the column that is gone."""
    synced.app.exec("ALTER TABLE t DROP COLUMN b")
    synced.app.exec("ALTER TABLE t ADD COLUMN status TEXT NOT NULL DEFAULT 'active'")
    report = synced.worker.verify(["t"])
    (t,) = report.tables
    named = {d["column"] for d in t.schema}
    assert not report.equal and {"b", "status"} <= named, t.schema
    assert t.skipped is not None and "lacks column(s) status" in t.skipped
