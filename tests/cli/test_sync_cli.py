"""The outbox commands through the real CLI: track, status, sync, dead, run (a real subprocess), demo."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from d1sync import LocalDatabase
from d1sync.cli import cli

from ..support import free_port

SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER CHECK (n >= 0))"


LEDGER = (
    "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, "
    "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
)
"""A wrangler migrations ledger: a remote that has one owns its schema (d1sync does not change it)."""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    app, remote = tmp_path / "app.db", tmp_path / "remote.db"
    with LocalDatabase(app) as db:
        db.exec(SCHEMA.replace(" CHECK (n >= 0)", ""))
        db.batch([db.prepare("INSERT INTO notes (body, n) VALUES (?, ?)").bind(f"note {i}", i - 2) for i in range(50)])
    with LocalDatabase(remote) as db:
        db.exec(LEDGER + "; " + SCHEMA)  # its migrations own its schema: the CHECK stays and refuses rows
    return app, remote


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_track_backfills_existing_rows_and_status_reports_them(files: tuple[Path, Path]) -> None:
    app, _ = files
    code, out = invoke("track", str(app), "notes")
    assert code == 0, out
    assert "tracking notes key (id)" in out
    code, out = invoke("status", str(app), "--json")
    status = json.loads(out)
    assert status["pending_changes"] == 50
    assert status["tables"] == ["notes"]


def test_track_refuses_a_table_without_a_key_with_one_line_and_exit_1(tmp_path: Path) -> None:
    app = tmp_path / "app.db"
    with LocalDatabase(app) as db:
        db.exec("CREATE TABLE logs (line TEXT)")
    code, out = invoke("track", str(app), "logs")
    assert code == 1
    error, hint = out.strip().splitlines()
    assert "has no PRIMARY KEY" in error and hint.startswith("Try: recreate it with a primary key")


def test_sync_drains_to_a_local_target_and_dead_letters_the_rows_the_target_refuses(files: tuple[Path, Path]) -> None:
    app, remote = files
    invoke("track", str(app), "notes")
    code, out = invoke("sync", str(app), "--local", str(remote))
    assert code == 3, out  # drained, but two rows were refused for good: a distinct, documented code
    assert "D1 refused 2 row(s) for good" in out
    with LocalDatabase(remote) as db:
        assert db.prepare("SELECT count(*) AS n FROM notes").first("n") == 48
    code, out = invoke("dead", str(app), "list", "--json")
    dead = json.loads(out)
    assert sorted(d["key"][0] for d in dead) == [1, 2]  # keys as JSON values, not JSON inside JSON
    assert all("CHECK constraint failed" in d["error"] for d in dead)
    code, out = invoke("dead", str(app))  # lists by default
    assert code == 0 and "CHECK" in out


def test_dead_retry_delivers_after_the_cause_is_fixed_and_drop_forgets(files: tuple[Path, Path]) -> None:
    app, remote = files
    invoke("track", str(app), "notes")
    invoke("sync", str(app), "--local", str(remote))
    with LocalDatabase(app) as db:
        db.prepare("UPDATE notes SET n = 0 WHERE id = 1").run()  # fixes one; a new change is captured
    code, out = invoke("dead", str(app), "retry", "--id", "1")
    assert code == 0 and "requeued 1" in out
    invoke("sync", str(app), "--local", str(remote))
    with LocalDatabase(remote) as db:
        assert db.prepare("SELECT n FROM notes WHERE id = 1").first("n") == 0
    code, out = invoke("dead", str(app), "drop", "--yes")
    assert code == 0 and "dropped 1" in out
    assert json.loads(invoke("status", str(app), "--json")[1])["dead_letters"] == 0


def test_sync_exits_1_with_a_hint_when_the_remote_schema_lacks_a_column(tmp_path: Path) -> None:
    app, remote = tmp_path / "app.db", tmp_path / "remote.db"
    with LocalDatabase(app) as db:
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
        db.prepare("INSERT INTO t VALUES (1, 'x', 'y')").run()
    with LocalDatabase(remote) as db:
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    invoke("track", str(app), "t", "--no-manage-schema")
    code, out = invoke("sync", str(app), "--local", str(remote))
    assert code == 1
    assert "lacks column(s) b" in out
    assert json.loads(invoke("status", str(app), "--json")[1])["pending_changes"] == 1


def test_untrack_removes_capture(files: tuple[Path, Path]) -> None:
    app, _ = files
    invoke("track", str(app), "notes", "--no-backfill")
    assert invoke("untrack", str(app), "notes")[0] == 0
    with LocalDatabase(app) as db:
        db.prepare("INSERT INTO notes (body, n) VALUES ('after', 1)").run()
    assert json.loads(invoke("status", str(app), "--json")[1])["pending_changes"] == 0


def test_run_daemon_syncs_new_writes_and_stops_gracefully_on_sigterm(files: tuple[Path, Path]) -> None:
    app, remote = files
    with LocalDatabase(app) as db:
        db.prepare("UPDATE notes SET n = 5 WHERE n < 0").run()
    invoke("track", str(app), "notes")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "d1sync.cli", "run", str(app), "--local", str(remote), "--log-format", "json"]
        + ["--metrics-port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        with LocalDatabase(remote) as db:
            while db.prepare("SELECT count(*) AS n FROM notes").first("n") < 50:
                assert time.monotonic() < deadline, "daemon did not sync the backlog"
                time.sleep(0.1)
            with LocalDatabase(app) as writer:
                writer.prepare("INSERT INTO notes (id, body, n) VALUES (1000, 'live', 1)").run()
            while db.prepare("SELECT count(*) AS n FROM notes WHERE id = 1000").first("n") == 0:
                assert time.monotonic() < deadline, "daemon did not pick up a write from another process"
                time.sleep(0.1)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        parsed = {family.name: family for family in text_string_to_metric_families(metrics)}
        assert parsed["d1sync_pending_changes"].type == "gauge"
        assert parsed["d1sync_rows_sent"].type == "counter"
        assert [(s.name, s.value) for s in parsed["d1sync_rows_sent"].samples] == [("d1sync_rows_sent_total", 51)]
        assert parsed["process_resident_memory_bytes"].samples[0].value > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("SIGTERM" in line["msg"] for line in lines)
    assert lines[-1]["msg"].startswith("stopped;")


def test_demo_proves_remote_equals_local_under_faults() -> None:
    code, out = invoke("demo", "--rows", "3000", "--seed", "3")
    assert code == 0, out
    assert "remote equals local" in out


def test_sync_to_the_emulator_then_status_shows_last_success_rate_and_budget(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from d1sync import D1Client
    from d1sync.emulator import DEFAULT_DATABASE_ID
    from d1sync.emulator.server import EmulatorServer

    app, _ = files
    invoke("track", str(app), "notes")
    with EmulatorServer(tmp_path / "emu", token="cli-token") as server:
        with D1Client(
            account_id="a", database_id=DEFAULT_DATABASE_ID, api_token="cli-token", base_url=server.api_base
        ) as remote:
            remote.exec(SCHEMA.replace(" CHECK (n >= 0)", ""))
            monkeypatch.setenv("D1SYNC_EMULATOR_TOKEN", "cli-token")
            code, out = invoke("sync", str(app), "--emulator", server.url)
            assert code == 0, out
            assert remote.prepare("SELECT count(*) AS n FROM notes").first("n") == 50
    assert "cli-token" not in out
    status = json.loads(invoke("status", str(app), "--json")[1])
    assert status["pending_changes"] == 0
    assert status["last_success"] is not None
    assert status["rows_per_second"] > 0
    assert status["rate_budget"] is None  # loopback emulators get no client-side rate limiter by default


def test_status_reports_the_rate_budget_left_by_the_workers_client(files: tuple[Path, Path], tmp_path: Path) -> None:
    from d1sync import D1Client, RateLimiter, SyncWorker
    from d1sync.emulator import DEFAULT_DATABASE_ID
    from d1sync.emulator.server import EmulatorServer

    app, _ = files
    invoke("track", str(app), "notes")
    limiter = RateLimiter(100, 3600.0)  # a token back every 36 s: none refills during the test
    with EmulatorServer(tmp_path / "emu", token="t") as server:
        with D1Client(
            account_id="a",
            database_id=DEFAULT_DATABASE_ID,
            api_token="t",
            base_url=server.api_base,
            rate_limiter=limiter,
        ) as remote:
            remote.exec(SCHEMA.replace(" CHECK (n >= 0)", ""))
            with SyncWorker(app, remote) as worker:
                assert worker.sync_once().rows == 50
    budget = json.loads(invoke("status", str(app), "--json")[1])["rate_budget"]
    assert budget["rate"] == 100 and budget["per"] == 3600.0
    assert 0 < budget["available"] < 100  # the exec, the schema check and the batch each took a token


def test_dead_list_shows_bytes_that_are_not_utf8_escaped_and_keeps_json_valid(files: tuple[Path, Path]) -> None:
    app, remote = files
    with LocalDatabase(app) as db:
        db.exec("UPDATE notes SET body = CAST(x'ff41' AS TEXT) WHERE id = 10")
    invoke("track", str(app), "notes")
    invoke("sync", str(app), "--local", str(remote))
    result = subprocess.run(
        [sys.executable, "-m", "d1sync", "dead", str(app), "list", "--json"], capture_output=True, check=True
    )
    letters = json.loads(result.stdout.decode("utf-8"))  # strict UTF-8: raises if raw bytes leaked
    bad = [d for d in letters if "not valid UTF-8" in d["error"]]
    assert [d["key"] for d in bad] == [[10]]


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("timeout", [["--timeout", "2"], []], ids=["--timeout", "default"])
def test_sync_at_a_target_that_never_answers_says_so_and_exits_1(
    app: Path, monkeypatch: pytest.MonkeyPatch, timeout: list[str]
) -> None:
    """Not "1 change(s) still pending" after retrying for ever: nothing answers there, and what to do."""
    monkeypatch.setattr("d1sync.cli.sync.NEVER_ANSWERED", 2.0)  # the default is 60 s: the same path, sooner
    url = _closed_url()
    result = CliRunner().invoke(
        cli, ["sync", str(app), "--emulator", url, *timeout], env={"D1SYNC_EMULATOR_TOKEN": "t0ken"}
    )
    assert result.exit_code == 1
    assert f"Error: nothing answers at {url} (connection refused)" in result.output
    assert "is `d1sync emulator` running there?" in result.output
    assert "SELECT" not in result.output and "json_array" not in result.output


@pytest.mark.parametrize(
    ("sig", "reachable", "code"),
    [(signal.SIGINT, True, 0), (signal.SIGINT, False, 130), (signal.SIGTERM, False, 1), (signal.SIGTERM, True, 0)],
    ids=["SIGINT-drained", "SIGINT-pending", "SIGTERM-pending", "SIGTERM-drained"],
)
def test_run_exits_by_what_it_left_unsent(files: tuple[Path, Path], sig: int, reachable: bool, code: int) -> None:
    """0 when the last drain sent everything; with changes left, 130 after Ctrl-C and 1 after SIGTERM."""
    app, remote = files
    with LocalDatabase(app) as db:
        db.prepare("UPDATE notes SET n = 5 WHERE n < 0").run()  # the remote's CHECK would refuse them
    invoke("track", str(app), "notes")
    target = ["--local", str(remote)] if reachable else ["--emulator", _closed_url()]
    # Unreachable: the flush gives up after 1 s. Reachable: a loaded machine gets 10 s before the watchdog.
    flush = "10" if reachable else "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "d1sync.cli", "run", str(app), *target, "--flush-timeout", flush],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "D1SYNC_EMULATOR_TOKEN": "t0ken"},
    )
    seen = ""
    try:
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while "syncing" not in seen:  # its signal handlers are in place once it says so
            assert time.monotonic() < deadline, f"daemon did not start: {seen}"
            if select.select([proc.stderr], [], [], 1.0)[0]:
                seen += proc.stderr.readline()
        if reachable:
            with LocalDatabase(remote) as db:
                while db.prepare("SELECT count(*) AS n FROM notes").first("n") < 50:
                    assert time.monotonic() < deadline, "daemon did not sync the backlog"
                    time.sleep(0.1)
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, seen + err
