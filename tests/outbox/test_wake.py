"""Wake-ups: in-process writes wake a running loop; other processes' commits are seen via data_version."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncConfig, SyncWorker

from .conftest import OpenWorker, open_file

DDL = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"
GENEROUS = 20.0  # seconds; far below the loop's idle interval, so only a wake-up can explain a delivery


def eventually(check: Callable[[], bool], timeout: float = GENEROUS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def running(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], request: pytest.FixtureRequest, open_worker: OpenWorker
) -> Iterator[tuple[Path, LocalDatabase, LocalDatabase, SyncWorker]]:
    """A worker looping in a thread that would sleep a minute between passes if nothing woke it."""
    path, app, remote = local_pair
    app.exec(DDL)
    remote.exec(DDL)
    Outbox(path).track("notes")
    poll = getattr(request, "param", 60.0)
    worker = open_worker(path, remote, config=SyncConfig(poll_interval=poll))
    loop = threading.Thread(target=worker.run, kwargs={"idle_interval": 120.0})
    loop.start()
    # The first pass has run once the worker holds the lease; from then on it is waiting.
    assert eventually(lambda: Outbox(path).status().lease_owner == worker.owner)
    yield path, app, remote, worker
    worker.stop(flush_timeout=1.0)
    loop.join(timeout=30)
    assert not loop.is_alive()
    worker.close()


def remote_count(remote: LocalDatabase) -> int:
    return int(remote.prepare("SELECT count(*) AS n FROM notes").first("n"))


def test_a_write_through_local_database_wakes_the_running_loop(
    running: tuple[Path, LocalDatabase, LocalDatabase, SyncWorker],
) -> None:
    _, app, remote, _ = running
    time.sleep(0.2)  # let it settle into its long wait
    app.prepare("INSERT INTO notes VALUES (1, 'wake up')").run()
    assert eventually(lambda: remote_count(remote) == 1)
    app.prepare("INSERT INTO notes VALUES (2, 'again')").run()
    assert eventually(lambda: remote_count(remote) == 2)


@pytest.mark.parametrize("running", [0.05], indirect=True)
def test_a_commit_from_another_process_is_noticed_through_data_version(
    running: tuple[Path, LocalDatabase, LocalDatabase, SyncWorker],
) -> None:
    path, _, remote, _ = running
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "conn.execute(\"INSERT INTO notes VALUES (7, 'from another process')\")\n"
        "conn.commit()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    assert eventually(lambda: remote_count(remote) == 1)


def test_stop_flushes_what_is_pending_before_returning(
    running: tuple[Path, LocalDatabase, LocalDatabase, SyncWorker],
) -> None:
    path, _, remote, worker = running
    raw = open_file(path)  # a plain sqlite3 write: no in-process wake-up, and polling is a minute away
    raw.execute("INSERT INTO notes VALUES (3, 'last words')")
    raw.close()
    worker.stop(flush_timeout=5.0)
    assert remote_count(remote) == 1


def test_an_idle_loop_does_not_wake_itself(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    """The worker's own commits (the lease it takes every pass) must not count as new writes: an idle loop
    that woke itself would run a pass every few milliseconds and burn a CPU doing nothing."""
    path, app, remote = local_pair
    app.exec(DDL)
    remote.exec(DDL)
    Outbox(path).track("notes")
    worker = open_worker(path, remote)
    passes = []
    real = worker.sync_once

    def counted(now: float | None = None) -> object:
        passes.append(time.monotonic())
        return real(now)

    worker.sync_once = counted  # type: ignore[method-assign]
    with worker.start(idle_interval=60):
        time.sleep(1.0)
        idle = len(passes)
        app.exec("INSERT INTO notes VALUES (1, 'wakes it')")
        assert eventually(lambda: remote.prepare("SELECT count(*) AS n FROM notes").first("n") == 1)
    assert idle <= 2, f"{idle} passes in one idle second"


def test_a_stop_before_run_is_kept_and_a_later_run_goes_on(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    """A signal handler installed before ``run()`` may stop it before it starts: the run then makes only its
    last drain and returns, instead of forgetting the stop and running until the next signal. The stop is
    that run's: a run after it goes on until it is stopped again."""
    path, app, remote = local_pair
    app.exec(DDL)
    remote.exec(DDL)
    Outbox(path).track("notes")
    app.prepare("INSERT INTO notes VALUES (1, 'before the stop')").run()
    worker = open_worker(path, remote)
    worker.stop(flush_timeout=5.0, wait=False)
    ran = threading.Thread(target=worker.run, kwargs={"idle_interval": 120.0})
    ran.start()
    ran.join(timeout=30)
    assert not ran.is_alive() and remote_count(remote) == 1  # returned, after the last drain
    again = threading.Thread(target=worker.run, kwargs={"idle_interval": 120.0})
    again.start()
    app.prepare("INSERT INTO notes VALUES (2, 'while running')").run()
    assert eventually(lambda: remote_count(remote) == 2) and again.is_alive()
    worker.stop(flush_timeout=1.0)
    again.join(timeout=30)
    assert not again.is_alive()


def test_start_then_stop_at_once_ends_the_loop(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    """``start(); stop()`` must not lose the stop to a thread that has not reached its loop yet."""
    path, app, remote = local_pair
    app.exec(DDL)
    remote.exec(DDL)
    Outbox(path).track("notes")
    worker = open_worker(path, remote)
    for _ in range(20):
        worker.start(idle_interval=120.0)
        worker.stop(flush_timeout=1.0)
        assert not worker.running
