"""Outbox.declare(): enqueued rows are stored in column order, so the order cannot change under stored changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from d1sync.client import D1Client
from d1sync.errors import ConfigError
from d1sync.outbox import Outbox, SyncWorker

from .remote_d1 import fresh_d1, reading

REMOTE = "CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, body TEXT, n INTEGER CHECK (n >= 0))"
COLUMNS = ["id", "kind", "body", "n"]


@pytest.fixture
def remote(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[D1Client, Path]]:
    with fresh_d1(request, tmp_path) as (client, path):
        client.exec(REMOTE)
        yield client, path


def remote_rows(path: Path) -> list[tuple[object, ...]]:
    with reading(path) as conn:
        return [tuple(r) for r in conn.execute("SELECT id, kind, body, n FROM events ORDER BY id")]


def test_declaring_again_with_the_same_key_and_columns_keeps_pending_changes_deliverable(
    tmp_path: Path, remote: tuple[D1Client, Path]
) -> None:
    client, remote_path = remote
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("events", key=["id"], columns=COLUMNS)
    outbox.enqueue("events", {"id": 1, "kind": "a", "body": "b", "n": 1})
    # The same declaration (a restart, say), even with another version column or parents, is fine.
    outbox.declare("events", key=["id"], columns=COLUMNS)
    outbox.declare("events", key=["id"], columns=COLUMNS, version_column="n", parents=["other"])
    assert outbox.tables()["events"].version_column == "n"
    assert outbox.status().pending_changes == 1
    with SyncWorker(outbox.path, client) as worker:
        worker.sync_once()
    assert remote_rows(remote_path) == [(1, "a", "b", 1)]


@pytest.mark.parametrize(
    ("key", "columns"),
    [(["id"], ["id", "body", "kind", "n"]), (["id"], ["id", "kind", "body"]), (["kind"], COLUMNS)],
    ids=["another order", "fewer columns", "another key"],
)
def test_changing_the_declaration_while_changes_are_pending_is_refused_with_the_way_out(
    tmp_path: Path, remote: tuple[D1Client, Path], key: list[str], columns: list[str]
) -> None:
    client, remote_path = remote
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("events", key=["id"], columns=COLUMNS)
    outbox.enqueue("events", {"id": 1, "kind": "k1", "body": "b1", "n": 1})
    outbox.delete("events", 2)
    # Another process holding its own Outbox sees the same refusal.
    other = Outbox(tmp_path / "app.db")
    with pytest.raises(ConfigError) as info:
        other.declare("events", key=key, columns=columns)
    message = str(info.value)
    assert "cannot declare 'events'" in message and "2 pending change(s)" in message
    assert "with key (id) and columns (id, kind, body, n)" in message
    assert f"columns ({', '.join(columns)})" in message
    assert f"`d1sync sync {tmp_path / 'app.db'}`" in message
    assert "Outbox.untrack('events', drop_pending=True)" in message
    assert "same key and columns is always fine" in message
    assert outbox.tables()["events"].columns == tuple(COLUMNS)
    assert outbox.status().pending_changes == 2

    # Sync first, then the new declaration is accepted and its rows arrive in their own column order.
    with SyncWorker(outbox.path, client) as worker:
        worker.sync_once()
        assert worker.pending() == 0
        other.declare("events", key=["id"], columns=["id", "body", "kind", "n"])
        other.enqueue("events", {"n": 3, "kind": "k3", "body": "b3", "id": 3})
        worker.sync_once()
    assert remote_rows(remote_path) == [(1, "k1", "b1", 1), (3, "k3", "b3", 3)]


def test_untrack_with_drop_pending_lets_the_table_be_declared_anew(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("events", key=["id"], columns=COLUMNS)
    outbox.enqueue("events", {"id": 1, "kind": "a", "body": "b", "n": 1})
    outbox.untrack("events", drop_pending=True)
    spec = outbox.declare("events", key=["id"], columns=["id", "n"])
    assert spec.columns == ("id", "n")


def test_dead_letters_recorded_in_the_old_order_block_a_new_one_until_dropped(
    tmp_path: Path, remote: tuple[D1Client, Path]
) -> None:
    client, _ = remote
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("events", key=["id"], columns=COLUMNS)
    outbox.enqueue("events", {"id": 1, "kind": "a", "body": "refused by the remote CHECK", "n": -1})
    with SyncWorker(outbox.path, client) as worker:
        assert worker.sync_once().dead == 1
    with pytest.raises(ConfigError) as info:
        outbox.declare("events", key=["id"], columns=["id", "n", "kind", "body"])
    message = str(info.value)
    assert "1 dead letter(s)" in message and "pending" not in message
    assert f"`d1sync dead {tmp_path / 'app.db'} retry|drop --id N`" in message
    # Retrying them would replay rows in the old column order under the new declaration: drop them first.
    assert outbox.drop_dead() == 1
    outbox.declare("events", key=["id"], columns=["id", "n", "kind", "body"])


def test_changes_left_by_an_untracked_table_block_a_new_declaration_until_dead_lettered_and_dropped(
    tmp_path: Path, remote: tuple[D1Client, Path]
) -> None:
    client, remote_path = remote
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("events", key=["id"], columns=COLUMNS)
    outbox.enqueue("events", {"id": 1, "kind": "a", "body": "b", "n": 1})
    outbox.untrack("events")  # the pending change stays (and is dead-lettered by the worker)
    with pytest.raises(ConfigError) as info:
        outbox.declare("events", key=["id"], columns=COLUMNS)
    message = str(info.value)
    assert "1 pending change(s)" in message and "untracked since" in message
    assert "Run the worker once" in message and f"`d1sync dead {tmp_path / 'app.db'} drop --id N`" in message
    with SyncWorker(outbox.path, client) as worker:
        assert worker.sync_once().dead == 1
    with pytest.raises(ConfigError, match=r"1 dead letter\(s\)"):
        outbox.declare("events", key=["id"], columns=COLUMNS)
    outbox.drop_dead()
    outbox.declare("events", key=["id"], columns=["id", "n"])
    assert remote_rows(remote_path) == []
