"""docs/schema.md and these tests stay in step: every recipe on the page is run by a test here, and every
recipe block is one the runner knows how to run."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ..support import free_port
from .conftest import recipe, recipe_names, shell_block


def test_every_recipe_on_the_page_is_run_by_a_test() -> None:
    names = recipe_names()
    assert len(names) == len(set(names)) >= 5
    tests = "".join(p.read_text(encoding="utf-8") for p in Path(__file__).parent.glob("test_*.py"))
    unrun = [n for n in names if not re.search(rf"""["']{re.escape(n)}["']""", tests)]
    assert not unrun, f"recipes of docs/schema.md that no test runs: {unrun}"


def test_every_block_of_every_recipe_is_python_or_sh() -> None:
    for name in recipe_names():
        for block in recipe(name):
            assert block.lang in ("python", "sh"), (name, block.lang)
            assert block.file is None or block.lang == "python", (name, block.file)


def test_the_emulator_setup_on_the_page_points_the_recipes_commands_at_it(tmp_path: Path) -> None:
    """The page's way to try a recipe without an account works: its exports reach the emulator it starts."""
    port = free_port()  # the page's port 8787 may be taken here: the same lines on a free one
    setup = (
        shell_block("emulator")
        .replace(":8787/", f":{port}/")
        .replace("--auto-create &", f"--auto-create --port {port} --data-dir d1 -q &")
    )
    script = setup + textwrap.dedent(
        f"""
        python -c "import socket, time
        for _ in range(600):
            try: socket.create_connection(('127.0.0.1', {port})).close(); break
            except OSError: time.sleep(0.05)"
        python -c "import sqlite3; sqlite3.connect('app.db').executescript('CREATE TABLE t (id INTEGER PRIMARY KEY)')"
        d1sync track app.db t -q
        d1sync sync app.db -q
        d1sync verify app.db -q
        kill %1
        """
    )
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    log = tmp_path / "session.log"
    with log.open("w") as out:
        shell = subprocess.Popen(
            ["bash", "-e", "-c", script],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = shell.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the emulator, if a line failed before `kill %1`
                os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    assert code == 0, log.read_text()
