"""Embedding the worker: start()/stop() in a thread, from_env(), asyncio, wait_synced(), and two processes
sharing one file, against the emulator over a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import d1sync
from d1sync import ConfigError, LocalDatabase, Outbox, SyncConfig, SyncWorker
from d1sync.database import Database, ExecResult, RawResult, Result, Statement
from d1sync.emulator.server import EmulatorServer

from ..support import TOKEN
from .conftest import Mirror, emulator_client
from .crash import Child

SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"
EXAMPLES = Path(__file__).parents[2] / "examples"


def remote_env(server: EmulatorServer, database_id: str | None = None) -> dict[str, str]:
    """The environment of an application configured for "D1": the remote kind, pointed at the emulator."""
    return {
        "D1SYNC_API_BASE": server.api_base,
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": "acct",
        "D1_DATABASE_ID": database_id or str(uuid.uuid4()),
    }


def write(path: Path, first: int, count: int) -> None:
    with LocalDatabase(path) as db, db.atomic() as conn:
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(i, f"note {i}") for i in range(first, first + count)])


# -- start / stop --------------------------------------------------------------------------------------


def test_start_and_stop_with_a_writer_end_exact(mirror: Mirror) -> None:
    mirror.both(SCHEMA)
    mirror.track("notes")
    mirror.worker.start(idle_interval=0.05)
    writer = threading.Thread(target=lambda: [write(mirror.path, i * 50, 50) for i in range(20)])
    writer.start()
    writer.join()
    mirror.worker.stop(flush_timeout=30)
    assert not mirror.worker.running
    assert mirror.worker.pending() == 0 and mirror.exact("notes")
    assert len(mirror.rows("notes")[1]) == 1000


def test_start_twice_is_an_error_and_the_context_stops_it(mirror: Mirror) -> None:
    mirror.both(SCHEMA)
    mirror.track("notes")
    with mirror.worker.start() as worker:
        with pytest.raises(ConfigError, match="already running"):
            worker.start()
        write(mirror.path, 0, 10)
        assert worker.wait_synced(timeout=30)
    assert not worker.running and worker.conn.closed


class Interrupting(Database):
    """Forwards to a Database, but the first batch raises KeyboardInterrupt: a BaseException the loop does
    not catch, which is what ends a loop thread (this cannot be produced otherwise on demand)."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.interrupted = False

    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return self.inner.batch_raw(statements, idempotent=idempotent)

    def exec(self, sql: str) -> ExecResult:
        return self.inner.exec(sql)

    def _execute(self, statement: Statement) -> Result:
        return self.inner._execute(statement)

    def _execute_raw(self, statement: Statement) -> RawResult:
        return self.inner._execute_raw(statement)


def test_a_crashed_loop_shows_in_status_and_starts_again(tmp_path: Path, emulator_server: EmulatorServer) -> None:
    client = emulator_client(emulator_server)
    try:
        client.exec(SCHEMA)
        app = tmp_path / "app.db"
        with LocalDatabase(app) as db:
            db.exec(SCHEMA)
        Outbox(app).track("notes")
        write(app, 0, 5)
        with SyncWorker(app, Interrupting(client)) as worker:
            worker.start(idle_interval=0.05)
            deadline = time.monotonic() + 30  # generous: the machine is shared
            while worker.running and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not worker.running
            assert "the sync loop crashed" in str((worker.status().last_error or {}).get("message"))
            worker.start(idle_interval=0.05)
            assert worker.wait_synced(timeout=30)
    finally:
        client.close()


# -- from_env ------------------------------------------------------------------------------------------


def test_from_env_returns_none_with_one_info_line_when_d1_is_not_configured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="d1sync"):
        assert d1sync.from_env(tmp_path / "app.db", env={}, cwd=tmp_path) is None
    assert [r.getMessage() for r in caplog.records if "not configured" in r.getMessage()] != []


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"CLOUDFLARE_API_TOKEN": "t" * 40}, "no D1 database id: set D1_DATABASE_ID"),
        ({"D1_DATABASE_ID": "db"}, "but no token: set CLOUDFLARE_API_TOKEN"),
        ({"CLOUDFLARE_API_TOKEN": "t" * 40, "D1_DATABASE_ID": "db"}, "no Cloudflare account id"),
        ({"CLOUDFLARE_ACCOUNT_ID": "acct"}, "set, but no CLOUDFLARE_API_TOKEN"),
    ],
    ids=["token only", "id only", "no account", "account only"],
)
def test_from_env_half_configured_names_what_is_missing(tmp_path: Path, env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError, match=missing) as caught:
        d1sync.from_env(tmp_path / "app.db", env=env, cwd=tmp_path)
    assert "t" * 40 not in str(caught.value)


def test_from_env_configured_syncs_and_owns_its_client(tmp_path: Path, emulator_server: EmulatorServer) -> None:
    app = tmp_path / "app.db"
    with LocalDatabase(app) as db:
        db.exec(SCHEMA)
    Outbox(app).track("notes")
    database_id = str(uuid.uuid4())
    worker = d1sync.from_env(app, env=remote_env(emulator_server, database_id), cwd=tmp_path)
    assert worker is not None
    worker.target.exec(SCHEMA)
    write(app, 0, 100)
    with worker.start(idle_interval=0.05):
        assert worker.wait_synced(timeout=30)
    assert worker.conn.closed and worker.target._http.is_closed  # type: ignore[attr-defined]
    with emulator_client(emulator_server, database_id=database_id) as check:
        assert check.prepare("SELECT count(*) AS n FROM notes").first("n") == 100


# -- wait_synced ---------------------------------------------------------------------------------------


def test_wait_synced_is_true_after_a_drain_and_false_while_the_remote_is_down(tmp_path: Path) -> None:
    from d1sync.emulator.faults import FaultConfig

    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True) as server:
        mirror = Mirror(tmp_path, server, config=SyncConfig(poll_interval=0.02))
        try:
            mirror.both(SCHEMA)
            mirror.track("notes")
            write(mirror.path, 0, 50)
            assert mirror.worker.wait_synced(timeout=30) and mirror.exact("notes")
            server.app.state.faults.configure(FaultConfig(error_rate=1.0))  # every request answered 503
            write(mirror.path, 50, 10)
            assert mirror.worker.wait_synced(timeout=1.5) is False
            assert mirror.worker.pending() == 10
            server.app.state.faults.configure(None)
            mirror.worker.resume()
            assert mirror.worker.wait_synced(timeout=30) and mirror.exact("notes")
        finally:
            mirror.close()


# -- asyncio -------------------------------------------------------------------------------------------


def test_the_event_loop_keeps_running_while_a_large_drain_runs(mirror: Mirror) -> None:
    mirror.both(SCHEMA)
    mirror.track("notes")
    write(mirror.path, 0, 60_000)

    async def main() -> tuple[float, bool, int, float]:
        lags: list[float] = []
        started = time.monotonic()
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                before = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - before - 0.01)

        tick = asyncio.create_task(ticker())
        async with mirror.worker:
            synced = await mirror.worker.wait_synced_async(timeout=120)
        done.set()
        await tick
        return max(lags), synced, len(lags), time.monotonic() - started

    worst, synced, ticks, seconds = asyncio.run(main())
    assert synced and ticks > 10
    # Not a speed figure: a loop blocked by the drain would stall for the whole drain (seconds), not a part of
    # it (a loaded machine stretches both).
    assert worst < max(0.5, seconds / 3), (worst, seconds)


def _run_example(script: str, *args: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-X", "dev", str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    # asyncio's debug mode (-X dev) reports any callback that held the loop for 100 ms or more. A loaded machine
    # can stretch a thread's start that long; a drain run on the loop would hold it for seconds.
    held = [float(s) for s in re.findall(r"Executing <.*?> took (\d+(?:\.\d+)?) seconds", done.stderr)]
    assert len(held) == done.stderr.count("Executing <"), done.stderr  # every report read
    assert all(seconds < 0.5 for seconds in held), done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_bot_example_syncs_everything_without_blocking_its_loop(
    tmp_path: Path, emulator_server: EmulatorServer
) -> None:
    database_id = str(uuid.uuid4())
    with emulator_client(emulator_server, database_id=database_id) as client:
        client.exec(
            "CREATE TABLE messages (id TEXT PRIMARY KEY NOT NULL, conversation TEXT NOT NULL, role TEXT NOT NULL,"
            " text TEXT NOT NULL, at REAL NOT NULL)"
        )
    env = remote_env(emulator_server, database_id)
    summary = _run_example("bot.py", "--db", str(tmp_path / "bot.db"), "--conversations", "4", env=env, cwd=tmp_path)
    assert summary == {"written": 320, "synced": True, "pending": 0, "dead": 0}


def test_the_bot_example_runs_locally_when_d1_is_not_configured(tmp_path: Path) -> None:
    summary = _run_example("bot.py", "--db", str(tmp_path / "bot.db"), env={}, cwd=tmp_path)
    assert summary == {"written": 400, "synced": False}


def test_the_fastapi_example_starts_the_worker_with_the_app(
    tmp_path: Path, emulator_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    import httpx
    import uvicorn

    database_id = str(uuid.uuid4())
    for name, value in remote_env(emulator_server, database_id).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DB", str(tmp_path / "notes.db"))
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLES / "fastapi_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with emulator_client(emulator_server, database_id=database_id) as client:
        client.exec(module.SCHEMA)
    # The app under uvicorn on a real socket: its lifespan starts the worker and, at shutdown, stops it.
    server = uvicorn.Server(uvicorn.Config(module.app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            answers = [http.post("/notes?wait=true", json={"text": f"note {i}"}).json() for i in range(5)]
            assert all(a["on_d1"] is True for a in answers)
            assert http.get("/sync").json() == {"configured": True, "healthy": True, "pending": 0}
    finally:
        server.should_exit = True
        thread.join(30)
    assert module.app.state.worker.conn.closed  # the lifespan stopped and closed it
    with emulator_client(emulator_server, database_id=database_id) as check:
        assert check.prepare("SELECT count(*) AS n FROM notes").first("n") == 5


# -- two processes on one file -------------------------------------------------------------------------


def test_two_processes_share_a_file_one_sends_and_the_other_takes_over_when_it_dies(
    tmp_path: Path, emulator_server: EmulatorServer
) -> None:
    database_id = str(uuid.uuid4())
    env = remote_env(emulator_server, database_id)
    app = tmp_path / "app.db"
    with LocalDatabase(app) as db:
        db.exec(SCHEMA)
    Outbox(app).track("notes")
    client = emulator_client(emulator_server, database_id=database_id)
    remote = client
    remote.exec(SCHEMA)
    os.environ.update(env)
    try:
        first, second = Child("embed", str(app)), Child("embed", str(app))
    finally:
        for name in env:
            os.environ.pop(name)
    try:
        first.wait_for("started")
        second.wait_for("started")
        write(app, 0, 100)
        holder = _wait_for_count(remote, 100, app)
        survivor = second if holder == first.proc.pid else first
        (first if survivor is second else second).kill()
        write(app, 100, 100)
        assert _wait_for_count(remote, 200, app) == survivor.proc.pid
    finally:
        first.kill()
        second.kill()
        client.close()


def _wait_for_count(remote: Any, count: int, app: Path) -> int:
    """Wait until the remote has ``count`` notes; the pid of the worker holding the lease then."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if remote.prepare("SELECT count(*) AS n FROM notes").first("n") == count:
            owner = Outbox(app).status().lease_owner or ""
            if owner:
                return int(owner.split(":")[-2])
        time.sleep(0.1)
    raise AssertionError(f"the remote never reached {count} notes; {Outbox(app).status()}")


def test_wait_synced_ends_at_once_with_the_pause_that_holds_the_changes(mirror: Mirror) -> None:
    """A table missing on D1 cannot clear by itself: waiting ends with its name and fix, not a timeout."""
    mirror.app.exec("CREATE TABLE audit (id INTEGER PRIMARY KEY, line TEXT)")  # local only
    mirror.track("audit", manage_schema=False)
    mirror.app.prepare("INSERT INTO audit VALUES (1, 'x')").run()
    started = time.monotonic()
    with mirror.worker.start(idle_interval=0.05), pytest.raises(d1sync.SyncPausedError) as caught:
        mirror.worker.wait_synced(timeout=60)
    assert time.monotonic() - started < 30
    error = caught.value
    assert error.table == "audit" and "missing on the remote" in error.reason
    assert error.fix is not None and "CREATE TABLE audit" in error.fix


def test_an_embedded_workers_pause_reaches_stderr_with_no_logging_configured(
    tmp_path: Path, emulator_server: EmulatorServer
) -> None:
    """As under uvicorn's default configuration: nothing set up for d1sync, yet the pause is seen."""
    script = f"""
import d1sync
from d1sync import D1Client, LocalDatabase, Outbox, SyncWorker
app = LocalDatabase({str(tmp_path / "app.db")!r})
app.exec("CREATE TABLE audit (id INTEGER PRIMARY KEY, line TEXT)")
Outbox({str(tmp_path / "app.db")!r}).track("audit", manage_schema=False)
app.prepare("INSERT INTO audit VALUES (1, 'x')").run()
client = D1Client(account_id="a", database_id={str(uuid.uuid4())!r}, api_token={TOKEN!r},
                  base_url={emulator_server.api_base!r})
with SyncWorker({str(tmp_path / "app.db")!r}, client) as worker, worker.start(idle_interval=0.05):
    try:
        worker.wait_synced(timeout=30)
    except d1sync.SyncPausedError as exc:
        print("paused:", exc.table)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert "paused: audit" in done.stdout, done.stderr
    assert "d1sync ERROR: sync of one table paused: table 'audit' is missing on the remote" in done.stderr
