"""examples/agents.py runs end to end on a SQLite file and on the emulator, so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from d1sync.emulator import TOKEN_ENV
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase

from .conftest import TOKEN

EXAMPLE = Path(__file__).parents[2] / "examples" / "agents.py"


def run_example(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args, "--threads", "4", "--json", "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def check_every_thread_ran_its_workflow(summary: dict[str, Any]) -> None:
    assert len(summary["threads"]) == 4
    for thread in summary["threads"]:
        messages = thread["messages"]
        assert [m["step"] for m in messages] == [0, 1, 2, 3]
        assert [m["role"] for m in messages] == ["user", "researcher", "writer", "reviewer"]
        assert all(m["agent_id"].startswith(m["role"]) for m in messages[1:])
        assert thread["result"] == messages[-1]["content"] and thread["result"].startswith("Approved")
    assert summary["tasks"]["done"] == summary["tasks"]["total"] == 12


def test_agents_example_on_a_local_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.db"
    check_every_thread_ran_its_workflow(run_example("--local", str(path)))
    with LocalDatabase(path) as db:
        assert db.prepare("SELECT count(*) AS n FROM agents").first("n") == 6
        assert db.prepare("SELECT count(*) AS n FROM messages").first("n") == 16


def test_agents_example_on_the_emulator(emulator_server: EmulatorServer) -> None:
    summary = run_example("--emulator", emulator_server.url, "--database-id", str(uuid.uuid4()), env={TOKEN_ENV: TOKEN})
    check_every_thread_ran_its_workflow(summary)


def test_agents_example_starts_its_own_emulator() -> None:
    check_every_thread_ran_its_workflow(run_example("--embedded"))
