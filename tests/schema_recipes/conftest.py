"""The recipes of docs/schema.md, run as printed: their Python in process, their `d1sync` lines through the CLI.

A recipe is the text between ``<!-- recipe: NAME -->`` and ``<!-- /recipe -->`` in docs/schema.md. Its fenced
blocks run in order, in the test's own folder, against a fresh database of the session's emulator (reached
through the environment, as a user's shell reaches D1):

- ``python file=PATH``: the file is written (with empty ``__init__.py`` files in the packages it is in);
- ``python``: executed, in one namespace shared by every recipe of the test (so a later recipe uses the
  ``engine`` or ``df`` of an earlier one, as the page reads);
- ``sh``: each line is a command. ``d1sync ...`` runs the real CLI in process and ``python ...`` a real
  Python process. A ``# exit N`` comment gives the expected exit code (default 0). Any other line (the
  ``&`` and ``kill`` of a shell session) fails: such a block is run by bash instead (``shell_block``).
"""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer

from ..outbox.conftest import snapshot
from ..support import TOKEN

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
_RECIPE = re.compile(r"<!-- recipe: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /recipe -->", re.DOTALL)
_BLOCK = re.compile(r"^```(?P<lang>\w+)(?P<info>[^\n]*)\n(?P<code>.*?)^```$", re.DOTALL | re.MULTILINE)
_EXIT = re.compile(r"#\s*exit (\d+)")


@dataclass(frozen=True)
class Block:
    """One fenced block of a recipe: its language, the file it is (``file=PATH``), its text."""

    lang: str
    file: str | None
    code: str


def recipe_names() -> list[str]:
    """The names of docs/schema.md's recipes, in page order."""
    return [m["name"] for m in _RECIPE.finditer(DOC.read_text(encoding="utf-8"))]


def recipe(name: str) -> list[Block]:
    """The blocks of recipe ``name`` in docs/schema.md, in order."""
    found = {m["name"]: m["body"] for m in _RECIPE.finditer(DOC.read_text(encoding="utf-8"))}
    assert name in found, f"docs/schema.md has no recipe {name!r} (it has {sorted(found)})"
    blocks = []
    for m in _BLOCK.finditer(found[name]):
        attrs = dict(a.split("=", 1) for a in m["info"].split() if "=" in a)
        blocks.append(Block(m["lang"], attrs.get("file"), m["code"]))
    assert blocks, f"recipe {name!r} has no code block"
    return blocks


@dataclass
class Ran:
    """A command a recipe ran: its words, exit code and output (stdout and stderr)."""

    args: list[str]
    code: int
    output: str


@dataclass
class Remote:
    """A fresh database on the session's emulator, which the environment points every command at."""

    server: EmulatorServer
    database_id: str

    @property
    def path(self) -> Path:
        """The SQLite file behind the database (read it directly for exact comparisons)."""
        path: Path = self.server.app.state.engine.path_for(self.database_id)
        return path


@dataclass
class Kitchen:
    """Runs recipes in ``folder`` against ``remote``, keeping one Python namespace for all of them."""

    folder: Path
    remote: Remote
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__recipe__"})
    ran: list[Ran] = field(default_factory=list)
    daemon: subprocess.Popen[str] | None = None
    """``d1sync run app.db`` once :meth:`start_daemon` started it: the recipe's ``d1sync sync`` lines then
    wait for it (``--wait``) instead of sending themselves."""

    @property
    def db(self) -> Path:
        return self.folder / "app.db"

    def run(self, name: str) -> list[Ran]:
        """Run every block of recipe ``name``; a command whose exit code is not the expected one fails."""
        ran: list[Ran] = []
        for block in recipe(name):
            ran.extend(self.run_block(name, block))
        return ran

    def run_block(self, name: str, block: Block) -> list[Ran]:
        """Run one block of recipe ``name``: write its file, execute its Python, or run its commands."""
        if block.file is not None:
            self._write(block.file, block.code)
        elif block.lang == "python":
            exec(compile(block.code, f"docs/schema.md <{name}>", "exec", dont_inherit=True), self.namespace)
        elif block.lang == "sh":
            return [self.command(line) for line in block.code.splitlines() if line.split("#")[0].strip()]
        else:
            raise AssertionError(f"recipe {name!r}: no way to run a {block.lang!r} block")
        return []

    def command(self, line: str) -> Ran:
        """Run one line of a ``sh`` block and check its exit code against its ``# exit N`` comment."""
        text, _, comment = line.partition("#")
        expected = int(m[1]) if (m := _EXIT.search("#" + comment)) else 0
        args = shlex.split(text)
        if self.daemon is not None and args[:2] == ["d1sync", "sync"]:
            args.append("--wait")
        if args[0] == "d1sync":
            result = CliRunner().invoke(cli, args[1:], catch_exceptions=False, prog_name="d1sync")
            ran = Ran(args, result.exit_code, result.output)
        elif args[0] == "python":
            proc = subprocess.run([sys.executable, *args[1:]], cwd=self.folder, capture_output=True, text=True)
            ran = Ran(args, proc.returncode, proc.stdout + proc.stderr)
        else:
            raise AssertionError(f"{line!r} is for a shell: run its block with bash")
        self.ran.append(ran)
        assert ran.code == expected, f"`{text.strip()}` exited {ran.code}, not {expected}:\n{ran.output}"
        return ran

    def start_daemon(self) -> None:
        """Start ``d1sync run app.db`` in a real process, as a user runs the daemon beside the application, and
        return once it holds the drain lease (so it, not a later ``sync``, sends what comes next)."""
        command = [sys.executable, "-m", "d1sync", "run", "app.db"]
        self.daemon = subprocess.Popen(
            command, cwd=self.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 60
        while not json.loads(self.command("d1sync status app.db --json").output)["lease_owner"]:
            assert self.daemon.poll() is None, f"d1sync run exited {self.daemon.returncode}"
            assert time.monotonic() < deadline, "d1sync run did not take the drain lease within 60 s"
            time.sleep(0.05)

    def stop_daemon(self) -> tuple[int, str]:
        """Stop the daemon with SIGTERM (a last drain): its exit code (0: nothing left to send) and its log."""
        assert self.daemon is not None
        daemon, self.daemon = self.daemon, None
        daemon.terminate()
        try:
            output, _ = daemon.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            output, _ = daemon.communicate()
        return daemon.returncode, output

    def _write(self, name: str, text: str) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        package = path.parent
        while package != self.folder:
            (package / "__init__.py").touch()
            package = package.parent


def shell_block(name: str) -> str:
    """The one ``sh`` block of recipe ``name`` that is a shell session (run it with bash)."""
    blocks = [b.code for b in recipe(name) if b.lang == "sh"]
    assert len(blocks) == 1, f"recipe {name!r} should have one sh block, it has {len(blocks)}"
    return blocks[0]


@pytest.fixture
def remote(emulator_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Remote:
    """A new database on the session's emulator, set in the environment as a user sets real D1's."""
    made = Remote(emulator_server, str(uuid.uuid4()))
    monkeypatch.setenv("D1SYNC_API_BASE", emulator_server.api_base)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acct")
    monkeypatch.setenv("D1_DATABASE_ID", made.database_id)
    return made


@pytest.fixture
def kitchen(tmp_path: Path, remote: Remote, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kitchen]:
    """A recipe runner in an empty folder (the current directory while the test runs)."""
    folder = tmp_path / "recipe"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))  # a recipe's own modules (Django's app) import from here
    made = Kitchen(folder, remote)
    yield made
    if made.daemon is not None:
        made.stop_daemon()
    for name in ("engine",):  # close what the recipes opened, so the files are free
        engine = made.namespace.get(name)
        if engine is not None:
            engine.dispose()
    con = made.namespace.get("con")
    if isinstance(con, sqlite3.Connection):
        con.close()


def schema_of(conn: sqlite3.Connection, table: str) -> dict[str, Any]:
    """What a table declares: columns (name, type, NOT NULL, default, key position), indexes, foreign keys."""
    q = '"' + table.replace('"', '""') + '"'
    columns = [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({q})")]
    indexes = []
    for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({q})"):
        iq = '"' + str(name).replace('"', '""') + '"'
        cols = [r[2] for r in conn.execute(f"PRAGMA index_info({iq})")]
        # Automatic indexes are named after their table's creation order; what they index is what counts.
        indexes.append((None if str(name).startswith("sqlite_autoindex") else name, unique, origin, partial, cols))
    fks = sorted(tuple(r[2:]) for r in conn.execute(f"PRAGMA foreign_key_list({q})"))
    return {"columns": columns, "indexes": sorted(indexes, key=repr), "foreign_keys": fks}


def assert_exact(local: Path, remote: Path, *tables: str) -> None:
    """Each table declares the same schema on both sides and holds the same rows, values and storage classes."""
    with closing(sqlite3.connect(local)) as mine, closing(sqlite3.connect(remote)) as theirs:
        for table in tables:
            assert schema_of(theirs, table) == schema_of(mine, table), f"{table}: the declared schemas differ"
            here, there = snapshot(mine, table), snapshot(theirs, table)
            assert here, f"{table}: no rows locally (the recipe wrote none?)"
            assert there == here, f"{table}: {len(set(here) ^ set(there))} row(s) differ"
