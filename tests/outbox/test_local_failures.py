"""Failures of the local file itself are told, not retried in silence: a full disk, on a real (tiny) disk."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.local import LocalDatabase
from d1sync.sync import Outbox, SyncConfig, SyncWorker

from ..conftest import Closer
from .conftest import snapshot


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB file system of its own (tmpfs), so the test can fill it; skipped where mounting is not allowed."""
    folder = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here ({mounted.stderr.decode().strip() or 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk holding ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_shows_in_status_backs_off_and_recovers(
    tiny_disk: Path, tmp_path: Path, closer: Closer[object]
) -> None:
    path = tiny_disk / "app.db"
    app = closer(LocalDatabase(path))
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    remote = closer(LocalDatabase(tmp_path / "remote.db"))
    remote.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with Outbox(path) as outbox:
        outbox.track("t")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 100) for i in range(200)])
    worker = closer(SyncWorker(path, remote, SyncConfig()))
    filler = fill(tiny_disk)

    first, second = worker.loop.safe_step(), worker.loop.safe_step()

    assert first.state == second.state == "backoff"
    assert first.retry_in is not None and second.retry_in is not None and second.retry_in > first.retry_in / 2
    status = worker.status()
    assert status.last_error is not None and "local file" in status.last_error["message"]
    assert "full" in status.last_error["message"] and status.disk_full and not status.healthy
    result = CliRunner().invoke(cli, ["status", str(path), "--check"])
    assert result.exit_code == 1 and "disk full" in result.output
    filler.unlink()
    assert worker.loop.safe_step().state in ("synced", "idle")
    assert worker.loop.local_failures == 0 and worker.pending() == 0
    assert snapshot(remote.connection, "t") == snapshot(app.connection, "t")
