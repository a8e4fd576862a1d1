"""The README's examples run as written (docs that cannot drift): its Python, and its queries to the emulator."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator.server import EmulatorServer

from .support import TOKEN

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
CONSOLE = "".join(re.findall(r"```console\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL))
QUERIES = [line for line in CONSOLE.splitlines() if line.startswith("d1sync query --emulator http://127.0.0.1:8787")]


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the environment is already clean (tests/conftest.py)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_readme_has_emulator_queries() -> None:
    assert QUERIES


@pytest.mark.parametrize("line", QUERIES)
def test_readme_emulator_query_answers(line: str, emulator_server: EmulatorServer) -> None:
    """Each query the README sends to the emulator answers, exactly as printed (D1 refuses some functions)."""
    args = shlex.split(line.replace("http://127.0.0.1:8787", emulator_server.url))[1:]
    result = CliRunner().invoke(cli, args, env={"D1SYNC_EMULATOR_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
