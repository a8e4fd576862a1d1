"""Every hint prints the real file path, shell-quoted, never a placeholder such as ``DB`` (issue 26, repro 4:
"`d1sync verify DB` compares them"): a hint is a command to paste as it is."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

from d1sync import LocalDatabase, Outbox

from .conftest import invoke

SRC = Path(__file__).resolve().parents[2] / "src" / "d1sync"
PLACEHOLDER = re.compile(r"d1sync (?:[a-z-]+ )*?(?:DB|FILE)\b")
NOT_KNOWN = {("cli/status.py", "d1sync dead DB ")}
"""``d1sync dead list`` without DB: the one hint whose file is not known (the command line lacks it)."""
DESCRIBED = {
    # Not hints: what a benchmark ran, and the exit codes' documentation (printed in --help and docs/cli.md).
    "bench/runner.py",
    "cli/_exits.py",
}


def _strings(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module that are neither docstrings nor ``help=`` texts."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            skip.update(id(sub) for sub in ast.walk(node.value))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def test_no_hint_in_the_source_names_the_file_with_a_placeholder() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in DESCRIBED:
            continue
        for node in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            if PLACEHOLDER.search(node.value) and (name, node.value) not in NOT_KNOWN:
                found.append(f"{name}:{node.lineno}: {node.value[:80]!r}")
    assert found == []


@pytest.fixture
def spaced(tmp_path: Path) -> Path:
    """A tracked file in a folder whose name a shell would split, with an empty table D1 lacks."""
    folder = tmp_path / "my files"
    folder.mkdir()
    path = folder / "app.db"
    with LocalDatabase(path) as db:
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    Outbox(path).track("t", manage_schema=False)
    return path


def test_sync_and_verify_hints_quote_the_path(spaced: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.db"
    LocalDatabase(remote).close()
    result = invoke("sync", str(spaced), "--local", str(remote))
    assert result.exit_code == 1
    assert f"`d1sync status {shlex.quote(str(spaced))}`" in result.stderr
    assert f"`d1sync sync {shlex.quote(str(spaced))}` again" in result.stderr
    result = invoke("verify", str(spaced), "--local", str(remote), "--delete-extra")
    assert result.exit_code == 2 and f"d1sync verify {shlex.quote(str(spaced))} --repair" in result.stderr


def test_an_unknown_dead_letter_id_names_the_file(spaced: Path) -> None:
    result = invoke("dead", str(spaced), "retry", "--id", "99")
    assert result.exit_code == 1
    assert f"`d1sync dead {shlex.quote(str(spaced))} list` shows the ids there are" in result.stderr
