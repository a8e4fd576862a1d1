"""The file is what it was, against the emulator over a real socket: a request D1 applies late changes nothing
(the fence), a file restored from a backup pauses loudly until D1 is made equal to it or it is restored from
D1, and a file replaced under a running daemon is reopened."""

from __future__ import annotations

import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.client import D1Client
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.sync import Outbox, SyncConfig, clone, drain

from ..conftest import Closer
from .conftest import TOKEN, OpenWorker, emulator_client, emulator_file, open_file, snapshot

SCHEMA = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"
FAST = SyncConfig(pause_interval=0.0)


@pytest.fixture
def kv(tmp_path: Path, emulator: EmulatorServer, closer: Closer[Any]) -> tuple[Path, LocalDatabase, D1Client]:
    """A tracked ``kv`` table in app.db, the same table on the emulator, and a client to it."""
    client = closer(emulator_client(emulator))
    client.exec(SCHEMA)
    app = closer(LocalDatabase(tmp_path / "app.db"))
    app.exec(SCHEMA)
    with Outbox(tmp_path / "app.db") as outbox:
        outbox.track("kv")
    return tmp_path / "app.db", app, client


def remote_rows(server: EmulatorServer) -> list[tuple[Any, ...]]:
    with closing(open_file(emulator_file(server))) as conn:
        return snapshot(conn, "kv")


def local_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(open_file(path)) as conn:
        return snapshot(conn, "kv")


def test_a_request_d1_applies_late_changes_nothing(
    kv: tuple[Path, LocalDatabase, D1Client], emulator: EmulatorServer, open_worker: OpenWorker
) -> None:
    path, app, client = kv
    worker = open_worker(path, client, FAST)
    app.prepare("INSERT INTO kv VALUES (0, 'checks the remote schema first')").run()
    assert worker.sync_once().rows == 1
    app.prepare("INSERT INTO kv VALUES (1, 'old')").run()
    emulator.app.state.faults.configure(FaultConfig(late_rate=1.0, late_delay=3.0))  # after the newer batch
    assert worker.sync_once().error is not None  # dropped unanswered: nothing acknowledged
    emulator.app.state.faults.configure(None)
    app.prepare("UPDATE kv SET v = 'new' WHERE k = 1").run()
    drain(worker, sleep=time.sleep)
    assert remote_rows(emulator) == local_rows(path)
    assert client.prepare("SELECT v FROM kv WHERE k = 1").first("v") == "new"
    stats = emulator.app.state.faults.stats
    deadline = time.monotonic() + 30  # generous: the machine is shared
    while stats["late_applied"] + stats["late_refused"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = emulator.app.state.faults.stats
    assert (stats["late_applied"], stats["late_refused"]) == (0, 1)  # the old batch failed as a whole
    assert remote_rows(emulator) == local_rows(path)


def restore(backup: Path, path: Path) -> None:
    """Put the backup in the file's place, as a restore from a backup or a snapshot does."""
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, path)


def rewind(path: Path, app: LocalDatabase, client: D1Client, open_worker: OpenWorker, tmp_path: Path) -> Path:
    """Sync 100 rows, back the file up, write and sync more, close, and restore the backup."""
    with app.atomic() as conn:
        conn.executemany("INSERT INTO kv VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    with open_worker(path, client, FAST) as worker:
        drain(worker, sleep=time.sleep)
    backup = tmp_path / "backup.db"
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(backup)) as copy:
        source.backup(copy)
    with open_worker(path, client, FAST) as worker:
        with app.atomic() as conn:
            conn.executemany("INSERT INTO kv VALUES (?, ?)", [(i, f"v{i}") for i in range(100, 148)])
            conn.execute("UPDATE kv SET v = 'newer' WHERE k < 10")
        drain(worker, sleep=time.sleep)
    app.close()
    restore(backup, path)
    return backup


@pytest.mark.parametrize(
    ("way_out", "checked_when"), [("repair", "opened"), ("clone", "opened"), ("repair", "sending")]
)
def test_a_file_restored_from_a_backup_pauses_loudly_and_both_ways_out_converge(
    kv: tuple[Path, LocalDatabase, D1Client],
    emulator: EmulatorServer,
    open_worker: OpenWorker,
    tmp_path: Path,
    closer: Closer[Any],
    way_out: str,
    checked_when: str,
) -> None:
    """``sending``: as a fleet's tenant, checked only once it has changes to send (it has one here)."""
    path, app, client = kv
    rewind(path, app, client, open_worker, tmp_path)
    app = closer(LocalDatabase(path))
    app.prepare("INSERT INTO kv VALUES (500, 'written after the restore')").run()
    worker = open_worker(path, client, FAST)
    worker.position_check_waits_for_changes = checked_when == "sending"

    result = worker.sync_once()

    assert result.state == "paused" and result.error is not None
    assert f"{path} is older than what it already sent to D1 (restored from a backup?)" in result.error
    assert worker.pending() == 1 and len(remote_rows(emulator)) == 148  # nothing sent, nothing dropped
    status = worker.status()
    assert status.paused is not None and not status.healthy
    if way_out == "repair":
        report = worker.verify(repair=True, delete_extra=True)
        assert not report.equal
        drain(worker, sleep=time.sleep)
        assert remote_rows(emulator) == local_rows(path)
        assert worker.verify().equal and worker.status().paused is None
    else:
        restored = tmp_path / "restored.db"
        clone(client, restored)
        assert local_rows(restored) == remote_rows(emulator)


def test_sync_on_a_rewound_file_exits_1_naming_both_ways_out(
    kv: tuple[Path, LocalDatabase, D1Client], emulator: EmulatorServer, open_worker: OpenWorker, tmp_path: Path
) -> None:
    path, app, client = kv
    rewind(path, app, client, open_worker, tmp_path)
    env = {"D1SYNC_EMULATOR_TOKEN": TOKEN}
    result = CliRunner().invoke(cli, ["sync", str(path), "--emulator", emulator.url, "--timeout", "5"], env=env)
    assert result.exit_code == 1, result.output
    assert "older than what it already sent" in result.output
    assert "--repair --delete-extra" in result.output and "d1sync clone" in result.output


def test_the_fence_adds_no_request_and_a_restarted_worker_keeps_counting(
    kv: tuple[Path, LocalDatabase, D1Client], open_worker: OpenWorker
) -> None:
    path, app, client = kv
    for n in range(3):
        app.prepare("INSERT INTO kv VALUES (?, 'x')").bind(n).run()
        with open_worker(path, client) as worker:
            assert worker.sync_once().requests == 1
    position = client.prepare("SELECT seq FROM _d1sync_fence").raw()
    assert position == [[3]]


def test_a_file_replaced_under_a_running_daemon_is_reopened_and_synced(
    kv: tuple[Path, LocalDatabase, D1Client],
    emulator: EmulatorServer,
    open_worker: OpenWorker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Remove app.db, -wal and -shm, and move a copy into place while ``run`` runs: the daemon notices the new
    file (another inode), says so, and syncs what is written to it."""
    path, app, client = kv
    app.prepare("INSERT INTO kv VALUES (1, 'before')").run()
    worker = open_worker(path, client, SyncConfig(poll_interval=0.02, min_interval=0.0))
    drain(worker, sleep=time.sleep)
    copy = tmp_path / "copy.db"
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    app.close()
    with worker.start(idle_interval=0.05):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        copy.replace(path)
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.executemany("INSERT INTO kv VALUES (?, 'after')", [(i,) for i in range(100, 200)])
        deadline = time.monotonic() + 25
        while (worker.pending() or len(remote_rows(emulator)) < 101) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.pending() == 0
    assert remote_rows(emulator) == local_rows(path) and len(local_rows(path)) == 101
    assert any("was replaced by another file while the worker ran" in r.getMessage() for r in caplog.records)
