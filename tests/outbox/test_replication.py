"""Two-way tables: remote capture, the pull pass, echo suppression and the conflict rules, on the emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from d1sync.emulator.server import EmulatorServer

from .replicas import WRITES, Replica, remote_rows, remote_sql

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
