"""Every command keeps the promises the command line makes as a whole: -q is quiet, exit codes are the
documented ones, and a command that only reads changes no file. The commands come from the click group
itself, so a new command is held to the same promises (it fails here until it has a recipe)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from d1sync import LocalDatabase, Outbox, SyncWorker, drain
from d1sync.cli import cli
from d1sync.cli._exits import exit_codes
from d1sync.tasks import TaskQueue

from ..support import TOKEN, free_port

SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every command and subcommand of ``group``, as ``"dead list"``; a group that runs on its own too."""
    found: list[str] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = (*prefix, name)
        if not isinstance(command, click.Group) or command.invoke_without_command:
            found.append(" ".join(path))
        if isinstance(command, click.Group):
            found += command_paths(command, path)
    return found


class Scene:
    """Real files for every command: ``app`` (tracked, synced to ``remote``), ``plain`` (a table nobody
    tracks, in rollback-journal mode), ``board`` (tasks t1 and t2, claimed as c1 and c2), and a project
    folder ``tmp`` with one migration, applied to ``remote``."""

    def __init__(self, tmp: Path, emulator: Any = None) -> None:
        self.tmp = tmp
        self._emulator = emulator
        self.tenants = tmp / "tenants"
        self.tenants.mkdir()
        with LocalDatabase(self.tenants / "tenant-a.db") as db:
            db.exec(SCHEMA)
            db.prepare("INSERT INTO notes VALUES (1, 'one')").run()
        (tmp / "fleet-migrations").mkdir()
        (tmp / "fleet-migrations" / "0001_tags.sql").write_text(
            "CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY);\n"
        )
        self.app, self.remote, self.plain, self.board = (tmp / n for n in ("app.db", "remote.db", "plain.db", "b.db"))
        (tmp / "migrations").mkdir()
        (tmp / "migrations" / "0001_init.sql").write_text(SCHEMA + ";\n")
        for path in (self.app, self.remote):
            with LocalDatabase(path) as db:
                db.exec(SCHEMA)
        with LocalDatabase(self.app) as db:
            db.batch([db.prepare("INSERT INTO notes VALUES (?, ?)").bind(i, f"n{i}") for i in range(5)])
        Outbox(self.app).track("notes")
        with LocalDatabase(self.remote) as target, SyncWorker(self.app, target) as worker:
            assert drain(worker).drained
        with closing(sqlite3.connect(self.plain)) as conn:
            conn.execute(SCHEMA)
        with LocalDatabase(self.board) as db:
            queue = TaskQueue(db, create=True)
            for task, claim in (("t1", "c1"), ("t2", "c2")):
                queue.add({"n": task}, task_id=task)
                assert queue.claim("agent", task_id=task, claim_id=claim) is not None

    def words(self, template: str) -> list[str]:
        names: dict[str, Any] = {
            "app": self.app,
            "remote": self.remote,
            "plain": self.plain,
            "board": self.board,
            "tmp": self.tmp,
            "tenants": self.tenants,
            "uniq": self.tmp.name,  # a new database's name, unique per test
        }
        if "{emulator}" in template:  # the session's emulator, started only for the commands that need one
            names["emulator"] = self._emulator()
        return [word.format(**names) for word in shlex.split(template)]


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Scene:
    monkeypatch.chdir(tmp_path)

    def emulator() -> str:
        monkeypatch.setenv("D1SYNC_EMULATOR_TOKEN", TOKEN)
        return str(request.getfixturevalue("emulator_server").url)

    return Scene(tmp_path, emulator)


SUCCEEDS: dict[str, str] = {
    "bench": "bench --only capture --capture-transactions 20 --json {tmp}/bench.json",
    "clone": "clone --local {remote} {tmp}/copy.db",
    "completion": "completion bash",
    "dead": "dead {app}",
    "dead drop": "dead {app} drop --yes",
    "dead list": "dead {app} list",
    "dead retry": "dead {app} retry",
    "demo": "demo --rows 20 --dir {tmp}/demo",
    "emulator": "",  # a server until stopped: LISTENERS, test_emulator_and_run_are_quiet_until_stopped
    "fleet migrate": "fleet migrate {tenants} --emulator {emulator} --migrations-dir {tmp}/fleet-migrations",
    "fleet run": "",  # a daemon until stopped: LISTENERS, tests/fleet/test_fleet_cli.py
    "fleet status": "fleet status {tenants}",
    "fleet sync": "fleet sync {tenants} --emulator {emulator}",
    "migrations apply": "migrations apply --local {tmp}/new.db",
    "migrations create": "migrations create second",
    "migrations list": "migrations list --local {remote}",
    "query": "query --local {app} 'SELECT count(*) FROM notes'",
    "replicate": "replicate {app} notes --emit-migration {tmp}/two-way",
    "restore": "restore --emulator {emulator} {app} --to {uniq}",
    "resume": "resume {app}",
    "run": "",  # a daemon until stopped: LISTENERS, test_emulator_and_run_are_quiet_until_stopped
    "status": "status {app} --check",
    "sync": "sync {app} --local {remote}",
    "tasks add": "tasks add --local {board} {{}}",
    "tasks claim": "tasks claim --local {board} agent",
    "tasks complete": "tasks complete --local {board} t1 c1",
    "tasks expire": "tasks expire --local {board}",
    "tasks fail": "tasks fail --local {board} t2 c2",
    "tasks get": "tasks get --local {board} t1",
    "tasks heartbeat": "tasks heartbeat --local {board} t1 c1",
    "tasks list": "tasks list --local {board}",
    "tasks stats": "tasks stats --local {board}",
    "track": "track {plain} notes",
    "untrack": "untrack {app} notes",
    "verify": "verify {app} --local {remote}",
}
"""A successful run of every command (in the scene)."""


def invoke(words: list[str]) -> Any:
    # The token of the session's emulator, for the commands that need D1 (restore); only while one runs.
    return CliRunner(env={"D1SYNC_EMULATOR_TOKEN": TOKEN}).invoke(cli, words, catch_exceptions=False)


def test_every_command_has_a_recipe_here() -> None:
    assert sorted(SUCCEEDS) == sorted(command_paths())


def _runnable() -> list[str]:
    return [path for path in command_paths() if SUCCEEDS.get(path)]


@pytest.mark.parametrize("path", _runnable())
def test_with_q_a_command_that_succeeds_prints_nothing_at_all(scene: Scene, path: str) -> None:
    result = invoke([*scene.words(SUCCEEDS[path]), "-q"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("path", _runnable())
def test_a_command_exits_with_its_documented_codes(scene: Scene, path: str) -> None:
    """0 for its recipe, 2 for a flag it does not have, and (every code) one the docs state."""
    words = scene.words(SUCCEEDS[path])
    assert invoke(words).exit_code == 0
    codes = exit_codes(path)
    result = invoke([*words, "--no-such-flag"])
    assert result.exit_code == 2 and 2 in codes
    assert {0, 1, 2} <= set(codes), codes


def test_sync_exits_1_and_names_a_paused_table_even_with_nothing_pending(scene: Scene) -> None:
    """The documented 1 for a pause holds when the paused table has no change to send (issue 26, repro 1):
    an empty tracked table missing on the remote is not synced, and `status --check` says so too."""
    lone = scene.tmp / "lone.db"
    with LocalDatabase(lone) as db:
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    Outbox(lone).track("t", manage_schema=False)  # D1's schema is not d1sync's to make: t pauses
    result = invoke(["sync", str(lone), "--local", str(scene.remote), "-q"])
    assert result.exit_code == 1 and 1 in exit_codes("sync") and "paused" in exit_codes("sync")[1]
    error, hint = result.stderr.strip().splitlines()
    assert "t: table 't' is missing on the remote" in error and "CREATE TABLE t" in error
    assert hint.startswith("Try: ") and "d1sync status" in hint
    result = invoke(["sync", str(lone), "--local", str(scene.remote), "--json", "-q"])
    assert result.exit_code == 1 and json.loads(result.stdout)["state"] == "paused"
    assert invoke(["status", str(lone), "--check", "-q"]).exit_code == 1


def _offers_json(path: str) -> bool:
    command: click.Command | None = cli
    for name in path.split():
        assert isinstance(command, click.Group)
        command = command.get_command(click.Context(command), name)
    assert command is not None
    return any(param.name == "as_json" for param in command.params)


@pytest.mark.parametrize("path", [path for path in _runnable() if _offers_json(path)])
@pytest.mark.parametrize("where", ["after", "before"])
def test_with_json_stdout_holds_only_the_json_q_or_not(scene: Scene, path: str, where: str) -> None:
    words = scene.words(SUCCEEDS[path])
    words = ["--json", "-q", *words] if where == "before" else [*words, "--json", "-q"]
    result = invoke(words)
    assert result.exit_code == 0 and result.stderr == "", result.output
    json.loads(result.stdout)


GLOBAL_FLAGS_BEFORE = [
    "-q status {app}",
    "-q -v --traceback status {app}",
    "--json status {app}",
    "migrations -q list --local {remote}",
    "migrations --json list --local {remote}",
    "tasks -q stats --local {board}",
    "dead {app} -q",
    "dead {app} -q list",
    "dead {app} --json",
    "-v -q sync {app} --local {remote}",
]


@pytest.mark.parametrize("template", GLOBAL_FLAGS_BEFORE)
def test_global_flags_work_before_the_subcommand_too(scene: Scene, template: str) -> None:
    result = invoke(scene.words(template))
    assert result.exit_code == 0 and result.stderr == "", result.output
    if "--json" in template:
        json.loads(result.stdout)
    else:
        assert result.stdout == ""


FAILS: dict[str, str] = {
    "sync": "sync {plain} --local {remote}",
    "run": "run {plain} --local {remote}",
    "verify": "verify {app} nots --local {remote}",
    "status": "status {tmp}/nope.db",
    "query": "query --local {tmp}/nope.db 'SELECT 1'",
    "migrations list": "migrations list --local {tmp}/nope.db",
    "tasks stats": "tasks stats --local {tmp}/nope.db",
    "dead": "dead {plain}",
    "untrack": "untrack {app} nots",
    "track": "track {app} d1_migrations",
    "clone": "clone --local {remote} {app}",
    "restore": "restore --emulator {emulator} {tmp}/nope.db --to nope",
    "fleet status": "fleet status {tmp}/nope",
}
"""A failure of each kind of command: exit 1, one error line and a Try: hint, and with -q only that."""


@pytest.mark.parametrize("path", sorted(FAILS))
def test_a_failure_is_exit_1_with_a_hint_and_under_q_prints_only_the_error(scene: Scene, path: str) -> None:
    result = invoke([*scene.words(FAILS[path]), "-q"])
    assert result.exit_code == 1 and 1 in exit_codes(path)
    assert result.stdout == ""
    error, hint = result.stderr.strip().splitlines()
    assert error.startswith("Error: ") and hint.startswith("Try: ")


def _until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _answers(port: int) -> bool:
    """Something listens on ``port``. Not a connection to itself: with nobody listening, Linux may pick the
    target as the probe's own port and connect the socket to itself (a TCP simultaneous open)."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0 and probe.getsockname() != probe.getpeername()


def _stop_quietly(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "d1sync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_emulator_and_run_are_quiet_until_stopped(scene: Scene) -> None:
    port = free_port()
    server_env = {"D1SYNC_EMULATOR_TOKEN": TOKEN}
    server = _spawn("emulator", "--port", str(port), "--data-dir", str(scene.tmp / "emu"), "-q")
    try:
        _until(lambda: server.poll() is not None or _answers(port))
    finally:
        code, out, err = _stop_quietly(server)
    assert code == 2 and "-q would hide the generated token" in err  # no token: -q refuses to hide it
    server = _spawn("emulator", "--port", str(port), "--data-dir", str(scene.tmp / "emu"), "-q", env=server_env)
    try:
        _until(lambda: _answers(port))
    finally:
        assert _stop_quietly(server) == (0, "", "")
    with LocalDatabase(scene.app) as db:
        db.prepare("INSERT INTO notes VALUES (99, 'late')").run()
    daemon = _spawn("run", str(scene.app), "--local", str(scene.remote), "-q")
    try:

        def arrived() -> bool:
            with closing(sqlite3.connect(scene.remote)) as conn:
                return bool(conn.execute("SELECT count(*) FROM notes WHERE id = 99").fetchone()[0])

        _until(arrived)
    finally:
        assert _stop_quietly(daemon) == (0, "", "")


# -- commands that read change nothing -------------------------------------------------------------------

READERS: list[tuple[str, str]] = [
    ("status", "status {db}"),
    ("status", "status {db} --json"),
    ("dead", "dead {db}"),
    ("dead list", "dead {db} list"),
    ("dead retry", "dead {db} retry"),
    ("dead drop", "dead {db} drop --yes"),
    ("resume", "resume {db}"),
    ("untrack", "untrack {db} notes"),
    ("verify", "verify {db} --local {remote}"),
    ("sync", "sync {db} --local {remote}"),
    ("run", "run {db} --local {remote}"),
    ("query", "query --local {db} 'SELECT 1'"),
    ("query", "query --local {db} 'SELECT 1' --json"),
    ("tasks stats", "tasks stats --local {db}"),
    ("tasks list", "tasks list --local {db}"),
    ("tasks get", "tasks get --local {db} t1"),
]
"""Commands that only read DB (or, for sync and run, refuse a file where nothing is tracked)."""


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture(params=["missing", "empty", "untracked"])
def unread(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A file a reader is pointed at: missing, empty (0 bytes), or a rollback-journal database with a table
    no one tracks."""
    folder = tmp_path / "files"
    folder.mkdir()
    path = folder / "app.db"
    if request.param == "empty":
        path.touch()
    elif request.param == "untracked":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute(SCHEMA)
            conn.execute("INSERT INTO notes VALUES (1, 'a')")
            conn.commit()
    yield path


@pytest.mark.parametrize(("path", "template"), READERS, ids=[t for _, t in READERS])
def test_a_command_that_reads_changes_no_file_it_is_pointed_at(
    unread: Path, tmp_path: Path, path: str, template: str
) -> None:
    remote = tmp_path / "remote.db"
    with closing(sqlite3.connect(remote)) as conn:
        conn.execute(SCHEMA)
    before, remote_before = _files(unread.parent), remote.read_bytes()
    result = invoke(shlex.split(template.format(db=unread, remote=remote)))
    assert _files(unread.parent) == before, result.output
    assert remote.read_bytes() == remote_before
    assert result.exit_code in exit_codes(path), result.output
    if not before:
        assert result.exit_code == 1 and f"no such file: {unread}" in result.stderr
        assert "Try: check the path" in result.stderr
    elif path.split()[0] in ("sync", "run", "verify", "status", "dead", "resume", "untrack"):
        assert result.exit_code == 1, result.output
        assert f"{unread} has no outbox: nothing in it is tracked" in result.stderr
        assert f"Try: d1sync track {unread} TABLE" in result.stderr


def test_status_does_not_switch_a_rollback_journal_database_to_wal(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(SCHEMA)
    invoke(["status", str(path)])
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


LISTENERS: dict[str, str] = {
    "emulator": "emulator --port {port} --data-dir {tmp}/emu -q",
    "run": "run {app} --local {remote} --metrics-port {port} -q",
    "fleet run": "fleet run {tenants} --emulator {emulator} --metrics-port {port} -q",
}
"""The commands that serve a port until stopped."""


@pytest.mark.parametrize("path", sorted(LISTENERS))
def test_a_signal_as_soon_as_the_port_answers_is_a_graceful_stop(scene: Scene, path: str) -> None:
    """A supervisor may stop a service the moment its port answers: the handlers are in place by then, so
    SIGTERM is a graceful stop (exit 0, nothing printed under -q), never a death by the signal."""
    port = free_port()
    words = [word.replace("{port}", str(port)) for word in scene.words(LISTENERS[path].replace("{port}", "{{port}}"))]
    proc = _spawn(*words, env={"D1SYNC_EMULATOR_TOKEN": TOKEN})
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not _answers(port):  # as tight as a supervisor can be
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.0005)
    finally:
        assert _stop_quietly(proc) == (0, "", "")
