"""The command line tells the truth: one-line errors, hints that fit the invocation, exit codes, JSON, and
the conventions users know. In-process through CliRunner where that suffices; real subprocesses where
signals, terminals or exit codes of the process matter."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync import LocalDatabase, SyncConfig, SyncWorker
from d1sync.cli import COMMANDS, cli
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer

from ..support import TOKEN
from .conftest import SCHEMA, invoke


def one_error(result: Any) -> str:
    """The output has no traceback and exactly one ``Error:`` line (plus at most a ``Try:`` hint)."""
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


LEDGER = (
    "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, "
    "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
)
"""A wrangler migrations ledger: a remote that has one owns its schema (d1sync does not change it)."""


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A remote whose migrations gave notes a CHECK the local table lacks: row 7 is refused there."""
    path = tmp_path / "remote.db"
    with LocalDatabase(path) as db:
        db.exec(LEDGER + "; " + SCHEMA.replace("n INTEGER", "n INTEGER CHECK (n <> 7)"))
    return path


# -- every command -------------------------------------------------------------------------------------


def _all_commands() -> Iterator[list[str]]:
    for name in sorted(COMMANDS):
        yield [name]
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        for sub in getattr(command, "commands", {}):
            # `dead DB list`: the group's own argument comes first (any existing file parses).
            yield [name, __file__, sub] if name == "dead" else [name, sub]


@pytest.mark.parametrize("words", list(_all_commands()), ids=lambda w: " ".join(x for x in w if x != __file__))
def test_every_command_has_help(words: list[str]) -> None:
    result = invoke(*words, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


JUNK_DB_COMMANDS = [
    ["status", "{db}"],
    ["status", "{db}", "--json"],
    ["track", "{db}", "t"],
    ["untrack", "{db}", "t"],
    ["resume", "{db}"],
    ["dead", "{db}"],
    ["dead", "{db}", "retry"],
    ["sync", "{db}", "--local", "{other}"],
    ["verify", "{db}", "--local", "{other}"],
    ["run", "{db}", "--local", "{other}"],
    ["query", "--local", "{db}", "SELECT 1"],
    ["migrations", "list", "--local", "{db}"],
    ["tasks", "list", "--local", "{db}"],
]


@pytest.mark.parametrize("words", JUNK_DB_COMMANDS, ids=lambda w: " ".join(w[:2]))
def test_a_file_that_is_not_a_database_is_one_error_line_and_a_non_zero_exit(tmp_path: Path, words: list[str]) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("hi\n")
    args = [w.format(db=junk, other=tmp_path / "other.db") for w in words]
    result = invoke(*args)
    assert result.exit_code not in (0, None), result.output
    assert "not a SQLite database" in one_error(result)


# -- errors and hints ----------------------------------------------------------------------------------


def test_a_busy_metrics_port_is_one_line_naming_the_way_out(app: Path, remote: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("run", str(app), "--local", str(remote), "--metrics-port", str(port))
    assert result.exit_code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in one_error(result)
    assert "--metrics-port 0" in result.output


def test_demo_refuses_a_rate_out_of_range_as_usage() -> None:
    result = invoke("demo", "--error-rate", "2")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_wrong_emulator_token_gets_the_emulator_hint(app: Path, emulator_server: EmulatorServer) -> None:
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    result = invoke("sync", str(app), *target, env={"D1SYNC_EMULATOR_TOKEN": "wrong-token-for-this-emulator"})
    assert result.exit_code == 1
    assert "D1SYNC_EMULATOR_TOKEN must equal the token the emulator was started with" in result.output
    assert "CLOUDFLARE_API_TOKEN" not in result.output and "wrong-token-for-this-emulator" not in result.output


def test_a_pause_is_re_checked_at_once_when_a_person_runs_sync_with_the_fix(app: Path, tmp_path: Path) -> None:
    with EmulatorServer(tmp_path / "emulator", token=TOKEN) as server:  # no auto-create: unknown ids are 7404
        env = {"D1SYNC_EMULATOR_TOKEN": TOKEN}
        result = invoke("sync", str(app), "--emulator", server.url, "--database-id", str(uuid.uuid4()), env=env)
        assert result.exit_code == 1 and "--auto-create" in result.output  # the emulator's hint, not wrangler's
        invoke("query", "--emulator", server.url, SCHEMA, env=env)  # the default database exists
        # The right target, within a timeout far below the 30 s re-check interval: no stale 7404.
        result = invoke("sync", str(app), "--emulator", server.url, "--timeout", "10", env=env)
        assert result.exit_code == 0, result.output
        assert "sent 20 row(s)" in result.output


# -- the lease -----------------------------------------------------------------------------------------


def test_sync_while_another_worker_holds_the_lease_says_who_and_exits_75(app: Path, remote: Path) -> None:
    with LocalDatabase(remote) as target, SyncWorker(app, target, config=SyncConfig(lease_ttl=60)) as holder:
        assert holder.acquire_lease(time.time())
        started = time.monotonic()
        result = invoke("sync", str(app), "--local", str(remote))
        assert time.monotonic() - started < 5  # it says so at once instead of hanging
        assert result.exit_code == 75
        assert f"pid {os.getpid()} on {socket.gethostname()}" in one_error(result) and "since" in result.output
        assert "--wait" in result.output
        # --wait with a holder that sends nothing: the timeout is an error, never a silent success.
        result = invoke("sync", str(app), "--local", str(remote), "--wait", "--timeout", "0.5")
        assert result.exit_code == 1 and "still pending" in result.output


def test_sync_wait_returns_once_the_running_worker_has_sent_everything(app: Path, remote: Path) -> None:
    target = LocalDatabase(remote)
    with SyncWorker(app, target).start(idle_interval=0.05) as daemon:
        result = invoke("sync", str(app), "--local", str(remote), "--wait", "--timeout", "30")
        assert result.exit_code in (0, 3), result.output
        assert daemon.running
    target.close()
    with closing(sqlite3.connect(remote)) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 19  # 7 is refused


# -- dead letters --------------------------------------------------------------------------------------


def test_dead_letters_keep_their_id_count_attempts_and_resolve_when_the_row_syncs(app: Path, remote: Path) -> None:
    result = invoke("sync", str(app), "--local", str(remote))
    assert result.exit_code == 3 and "D1 refused 1 row(s) for good" in result.output  # documented code 3
    [letter] = json.loads(invoke("dead", str(app), "list", "--json").stdout)
    assert letter["key"] == [7] and letter["attempts"] == 1
    assert isinstance(letter["last_failed_at"], float) and abs(letter["last_failed_at"] - time.time()) < 600
    # Retried without a fix: the same letter, one more attempt.
    assert json.loads(invoke("dead", str(app), "retry", "--json").stdout) == {"requeued": 1}
    assert invoke("sync", str(app), "--local", str(remote)).exit_code == 3
    [again] = json.loads(invoke("dead", str(app), "list", "--json").stdout)
    assert (again["id"], again["attempts"], again["retrying"]) == (letter["id"], 2, False)
    # Fixed locally: the row syncs and its stale letter goes.
    with LocalDatabase(app) as db:
        db.prepare("UPDATE notes SET n = 70 WHERE id = 7").run()
    assert invoke("sync", str(app), "--local", str(remote)).exit_code == 0
    assert json.loads(invoke("dead", str(app), "list", "--json").stdout) == []


def test_an_unknown_dead_letter_id_is_an_error_and_nothing_is_touched(app: Path, remote: Path) -> None:
    invoke("sync", str(app), "--local", str(remote))
    for action in ("retry", "drop"):
        result = invoke("dead", str(app), action, "--id", "999", "--yes" if action == "drop" else "--json")
        assert result.exit_code == 1 and "no dead letter with id 999" in one_error(result)
    assert len(json.loads(invoke("dead", str(app), "list", "--json").stdout)) == 1


def test_commands_on_a_file_never_tracked_create_no_tables(tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").connection.close()
    for args in (["dead", str(plain)], ["status", str(plain)], ["resume", str(plain)]):
        result = invoke(*args)
        assert result.exit_code == 1 and "has no outbox" in one_error(result)
    with closing(sqlite3.connect(plain)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    assert names == ["t"]


# -- small conventions ---------------------------------------------------------------------------------


def test_json_on_track_untrack_and_sync(tmp_path: Path, remote: Path) -> None:
    path = tmp_path / "j.db"
    with LocalDatabase(path) as db:
        db.exec(SCHEMA)
        db.prepare("INSERT INTO notes VALUES (1, 'a', 1)").run()
    tracked = json.loads(invoke("track", str(path), "notes", "--json").stdout)
    assert tracked == {
        "tracked": [{"table": "notes", "key": ["id"], "columns": ["id", "body", "n"]}],
        "pending_changes": 1,
    }
    synced = json.loads(invoke("sync", str(path), "--local", str(remote), "--json").stdout)
    assert (synced["rows"], synced["pending"], synced["drained"]) == (1, 0, True)
    assert invoke("sync", str(path), "--local", str(remote)).output.strip() == "nothing to sync"
    with LocalDatabase(path) as db:
        db.prepare("INSERT INTO notes VALUES (2, 'b', 2)").run()
    result = invoke("untrack", str(path), "notes", "--json")
    assert json.loads(result.stdout) == {
        "untracked": ["notes"],
        "pending_changes": {"notes": 1},
        "delete_remote": False,
    }


def test_untrack_warns_about_pending_changes(app: Path) -> None:
    result = invoke("untrack", str(app), "notes")
    assert result.exit_code == 0 and "warning: notes had 20 pending change(s)" in result.stderr


def test_track_refuses_include_with_exclude_as_usage(app: Path) -> None:
    result = invoke("track", str(app), "notes", "--include", "body", "--exclude", "n")
    assert result.exit_code == 2 and "cannot be combined" in one_error(result)


def test_query_reads_a_file_or_stdin_and_runs_several_statements_as_one_batch(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    db.touch()  # an empty file is an empty database; a missing one is refused
    sql = tmp_path / "init.sql"
    sql.write_text(
        SCHEMA + ";\nINSERT INTO notes VALUES (1, 'x', 1);\n-- a comment\nSELECT count(*) AS n FROM notes;\n"
    )
    result = invoke("query", "--local", str(db), "--file", str(sql), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[-1]["results"] == [{"n": 1}]
    result = invoke("query", "--local", str(db), "-", "--json", input="SELECT body FROM notes")
    assert json.loads(result.stdout)["results"] == [{"body": "x"}]
    result = invoke("query", "--local", str(db), "--json", input="-- nothing\n")
    assert result.exit_code == 2


def test_a_wrangler_toml_without_d1_databases_blocks_neither_create_nor_local(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrangler.toml").write_text('name = "worker"\nmain = "src/index.js"\n')
    assert invoke("migrations", "create", "init").exit_code == 0
    assert invoke("migrations", "apply", "--local", "app.db").exit_code == 0
    assert invoke("query", "--local", "app.db", "SELECT 1").exit_code == 0


def test_an_emulator_url_without_a_scheme_is_accepted(emulator_server: EmulatorServer) -> None:
    bare = emulator_server.url.removeprefix("http://")
    result = invoke("query", "--emulator", bare, "SELECT 1 AS one", "--json", env={"D1SYNC_EMULATOR_TOKEN": TOKEN})
    assert result.exit_code == 0 and json.loads(result.stdout)["results"] == [{"one": 1}]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = invoke("completion", shell)
    assert result.exit_code == 0 and "_D1SYNC_COMPLETE" in result.output


# -- tokens with stray characters ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["\r", "\n", "\r\n"], ids=["CR", "LF", "CRLF"])
def test_a_token_with_a_trailing_newline_is_cleaned_and_never_printed(
    app: Path, emulator_server: EmulatorServer, suffix: str
) -> None:
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    env = {"D1SYNC_EMULATOR_TOKEN": TOKEN + suffix}
    assert invoke("query", *target, SCHEMA, env=env).exit_code == 0
    outputs = [invoke("sync", str(app), *target, "-v", env=env), invoke("status", str(app), "--json", env=env)]
    assert all(r.exit_code == 0 for r in outputs), [r.output for r in outputs]
    for result in outputs:
        assert TOKEN not in result.output and repr(TOKEN + suffix)[1:-1] not in result.output


def test_a_token_with_a_nul_is_refused_without_showing_it(emulator_server: EmulatorServer) -> None:
    # An environment variable cannot hold a NUL, but a token read from a file and passed in can.
    from d1sync import ConfigError, D1Client

    with pytest.raises(ConfigError) as caught:
        D1Client(account_id="a", database_id="d", api_token=TOKEN + "\x00", base_url=emulator_server.api_base)
    assert "holds a control character (U+0000" in str(caught.value) and TOKEN not in str(caught.value)


def test_a_token_beyond_ascii_is_one_line_saying_it_is_not_valid(emulator_server: EmulatorServer) -> None:
    token = "caf\u00e9-" + TOKEN
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    result = invoke("query", *target, "SELECT 1", env={"D1SYNC_EMULATOR_TOKEN": token})
    assert result.exit_code not in (0, None)
    line = one_error(result)
    assert "is not valid" in line and "D1SYNC_EMULATOR_TOKEN" in line
    assert "internal error" not in result.output and "UnicodeEncodeError" not in result.output
    assert TOKEN not in result.output


# -- signals and exit codes of the process -------------------------------------------------------------


def _spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "d1sync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    """An emulator that holds every query for 8 s: a request is always in flight when the signal comes."""
    with EmulatorServer(tmp_path / "slow", token=TOKEN, auto_create=True, faults=FaultConfig(latency=8.0)) as server:
        yield server


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 20) -> str:
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    assert text in seen, seen
    return seen


def _wait_for_a_held_request(server: EmulatorServer, timeout: float = 60) -> None:
    """Until the emulator holds a request of the process under test (however slowly it started)."""
    deadline = time.monotonic() + timeout
    while server.app.state.faults.stats["requests"] < 1:
        assert time.monotonic() < deadline, "the process never sent a request"
        time.sleep(0.05)
    time.sleep(0.2)


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()  # reap it and close its pipes


def test_run_honours_the_flush_deadline_and_a_second_signal_exits_at_once(
    app: Path, slow_emulator: EmulatorServer
) -> None:
    env = {"D1SYNC_EMULATOR_TOKEN": TOKEN}
    args = ["run", str(app), "--emulator", slow_emulator.url, "--flush-timeout", "2", "--metrics-port", "0"]
    first = _spawn(*args, "-v", env=env)
    try:
        seen = _wait_for(first, "metrics at http://127.0.0.1:")
        assert "metrics at http://127.0.0.1:0/" not in seen  # port 0 picked a real port and says which
        _wait_for_a_held_request(slow_emulator)
        started = time.monotonic()
        first.send_signal(2)
        first.wait(timeout=8)  # the 8 s request does not hold it past --flush-timeout (2 s) + 1 s
        assert time.monotonic() - started < 7  # the deadline (3 s) plus a loaded machine's exit; not the 8 s
    finally:
        _end(first)
    second = _spawn(*args, env=env)
    try:
        _wait_for(second, "metrics at")
        second.send_signal(2)
        time.sleep(0.3)
        second.send_signal(2)
        assert second.wait(timeout=5) == 130
    finally:
        _end(second)


def test_ctrl_c_on_sync_exits_130_and_says_what_was_sent(app: Path, slow_emulator: EmulatorServer) -> None:
    proc = _spawn("sync", str(app), "--emulator", slow_emulator.url, env={"D1SYNC_EMULATOR_TOKEN": TOKEN})
    try:
        _wait_for_a_held_request(slow_emulator)  # imported, resolved, and waiting on the held request
        proc.send_signal(2)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130
        assert "sent 0 row(s)" in err and "interrupted" in err and "Traceback" not in err
    finally:
        _end(proc)


def test_migrations_apply_to_real_d1_asks_on_a_terminal_and_yes_skips_it(
    tmp_path: Path, emulator_server: EmulatorServer
) -> None:
    import pty

    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_init.sql").write_text(SCHEMA + ";\n")
    remote_env = {  # "real D1" as far as the command knows: the remote kind, pointed at the emulator
        "D1SYNC_API_BASE": emulator_server.api_base,
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": "acct",
        "D1_DATABASE_ID": str(uuid.uuid4()),
    }
    args = [sys.executable, "-m", "d1sync", "migrations", "apply", "--remote"]
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            args,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, **remote_env},
        )
        os.write(primary, b"n\n")
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 1 and "About to apply 1 migration(s)" in err and "nothing applied" in err
    done = subprocess.run(
        [*args, "--yes"], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **remote_env}
    )
    assert done.returncode == 0 and "applied 0001_init.sql" in done.stdout
