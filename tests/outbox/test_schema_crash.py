"""kill -9 in the middle of a remote rebuild, then a restart: D1 is before or after it, never between, and
the mirror ends exact (the rebuilt table and the child its ON DELETE CASCADE emptied on D1)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from d1sync.client import D1Client
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncWorker, drain
from d1sync.sync.schema import ddl
from d1sync.sync.schema.describe import compare_schemas, read_schemas
from d1sync.sync.schema.plan import REBUILD_TABLE

from .conftest import TOKEN, emulator_client, emulator_file, open_file, snapshot
from .crash import Child

SCRIPT = Path(__file__).with_name("schema_process.py")
OLD = "CREATE TABLE parents (id INTEGER PRIMARY KEY, name TEXT, rank INTEGER)"
NEW = "CREATE TABLE parents (id INTEGER PRIMARY KEY, name TEXT, rank VARCHAR(20) NOT NULL DEFAULT '')"
KIDS = "CREATE TABLE kids (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents (id) ON DELETE CASCADE)"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["before", "inflight", "after"])
def test_a_kill_during_a_remote_rebuild_leaves_d1_before_or_after_and_ends_exact(
    tmp_path: Path, emulator: EmulatorServer, mode: str
) -> None:
    path = tmp_path / "app.db"
    with emulator_client(emulator) as remote:
        _kill_during_a_rebuild_and_restart(path, remote, emulator, mode)


def _kill_during_a_rebuild_and_restart(path: Path, remote: D1Client, emulator: EmulatorServer, mode: str) -> None:
    with LocalDatabase(path) as app:
        app.exec(f"{OLD}; {KIDS}")
        with app.atomic() as conn:
            conn.executemany("INSERT INTO parents VALUES (?, ?, ?)", [(i, f"p{i}", i) for i in range(300)])
            conn.executemany("INSERT INTO kids VALUES (?, ?)", [(i, i % 300) for i in range(900)])
    with Outbox(path) as outbox:
        outbox.track("parents", "kids")
    with SyncWorker(path, remote) as worker:
        assert drain(worker, sleep=lambda s: None).drained
    with closing(open_file(path)) as conn:  # the rebuild an ORM's migration does
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.executescript(
            f"BEGIN; {NEW.replace('TABLE parents', 'TABLE new_parents')}; "
            "INSERT INTO new_parents SELECT id, name, rank FROM parents; DROP TABLE parents; "
            "ALTER TABLE new_parents RENAME TO parents; UPDATE parents SET rank = 'r' || rank WHERE id % 3 = 0; COMMIT"
        )
    child = Child(str(path), emulator.api_base, TOKEN, mode, script=SCRIPT)
    child.wait_for("rebuilt" if mode == "after" else "rebuild")
    child.kill()

    tables = read_schemas(remote)
    assert REBUILD_TABLE not in tables  # no half: the batch is atomic
    on_d1 = ddl.normalize(tables["parents"].sql)
    assert on_d1 in (ddl.normalize(OLD), ddl.normalize(NEW))
    if mode == "before":
        assert on_d1 == ddl.normalize(OLD)
    if mode == "after":
        assert on_d1 == ddl.normalize(NEW)

    with SyncWorker(path, remote) as worker:  # the restart
        report = drain(worker, sleep=lambda s: None)
        assert report.drained and report.dead == 0
    with closing(open_file(path)) as local, closing(open_file(emulator_file(emulator))) as d1:
        for table in ("parents", "kids"):
            assert snapshot(local, table) == snapshot(d1, table), table
        assert d1.execute("SELECT count(*) FROM kids").fetchone()[0] == 900
    with LocalDatabase(path) as app:
        local_schema = read_schemas(app, ["parents"])["parents"]
    assert compare_schemas(local_schema, read_schemas(remote, ["parents"])["parents"]) == []
