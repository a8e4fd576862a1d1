"""``d1sync tasks`` through click's CliRunner: JSON out, fenced claims, one-line errors, every target."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.cli.tasks import tasks
from d1sync.emulator import TOKEN_ENV
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase

from .conftest import TOKEN


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """Invoke ``d1sync tasks ...``; returns the exit code, the parsed JSON stdout (or None) and stderr."""
    result = CliRunner().invoke(cli, ["tasks", *args], input=stdin, env=env, catch_exceptions=False)
    data = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, data, result.stderr


@pytest.fixture
def board(tmp_path: Path) -> list[str]:
    return ["--local", str(tmp_path / "board.db")]


def test_add_claim_complete_round_trip_in_json(board: list[str]) -> None:
    code, added, _ = run("add", '{"url": "https://example.com"}', "--role", "fetcher", "--priority", "2", *board)
    assert code == 0
    code, task, _ = run("claim", "agent-1", "--role", "fetcher", "--lease", "30", *board)
    assert code == 0
    assert (task["id"], task["payload"], task["claimed_by"], task["priority"]) == (
        added["id"],
        {"url": "https://example.com"},
        "agent-1",
        2,
    )
    assert task["lease_until"] - task["claimed_at"] == 30_000
    code, done, _ = run("complete", task["id"], task["claim_id"], "--result", '{"status": 200}', *board)
    assert (code, done) == (0, {"id": task["id"], "status": "done"})
    code, got, _ = run("get", task["id"], *board)
    assert got["status"] == "done" and got["result"] == {"status": 200}
    code, nothing, _ = run("claim", "agent-1", *board)
    assert (code, nothing) == (0, None)


def test_reruns_with_the_same_ids_add_claim_and_complete_once(board: list[str]) -> None:
    """What a script does after a timeout: run the same command again; nothing happens twice."""
    assert run("add", '"x"', "--id", "job-1", *board)[1] == {"id": "job-1"}
    assert run("add", '"y"', "--id", "job-1", *board)[1] == {"id": "job-1"}
    run("add", '"z"', *board)
    _, first, _ = run("claim", "a", "--claim-id", "c-1", *board)
    _, again, _ = run("claim", "a", "--claim-id", "c-1", *board)
    assert first == again and (first["id"], first["claim_id"], first["attempts"]) == ("job-1", "c-1", 1)
    for _ in range(2):
        code, done, _ = run("complete", "job-1", "c-1", "--result", '{"ok": 1}', *board)
        assert (code, done) == (0, {"id": "job-1", "status": "done"})
    _, stats, _ = run("stats", *board)
    assert (stats["total"], stats["done"], stats["open"]) == (2, 1, 1)


def test_a_stale_complete_is_refused_with_a_hint_and_exit_1(board: list[str]) -> None:
    run("add", "1", *board)
    _, task, _ = run("claim", "a", *board)
    assert run("complete", task["id"], task["claim_id"], *board)[0] == 0
    code, _, err = run("complete", task["id"], task["claim_id"], "--result", '"again"', *board)
    assert code == 1
    assert "is not current" in err and "Try:" in err
    assert run("heartbeat", task["id"], task["claim_id"], *board)[0] == 1


def test_fail_retries_then_dead_and_no_retry_fails_at_once(board: list[str]) -> None:
    run("add", '"flaky"', "--max-attempts", "2", *board)
    _, task, _ = run("claim", "a", *board)
    code, out, _ = run("fail", task["id"], task["claim_id"], "--error", "boom", *board)
    assert code == 0 and out["status"] == "open"
    with LocalDatabase(board[1]) as db:
        db.prepare("UPDATE tasks SET available_at = 0").run()  # skip the back-off
    _, task, _ = run("claim", "a", *board)
    code, out, _ = run("fail", task["id"], task["claim_id"], *board)
    assert out["status"] == "dead"
    run("add", '"bad"', *board)
    _, task, _ = run("claim", "a", *board)
    code, out, _ = run("fail", task["id"], task["claim_id"], "--no-retry", "--error", "bad input", *board)
    assert out["status"] == "failed"
    _, stats, _ = run("stats", *board)
    assert (stats["dead"], stats["failed"], stats["total"]) == (1, 1, 2)


def test_expire_reports_how_many_leases_ran_out(board: list[str]) -> None:
    for n in range(3):
        run("add", str(n), *board)
    _, task, _ = run("claim", "a", *board)
    run("claim", "b", *board)
    assert run("expire", *board)[1] == {"expired": 0}
    with LocalDatabase(board[1]) as db:
        db.prepare("UPDATE tasks SET lease_until = 0 WHERE id = ?").bind(task["id"]).run()
    assert run("expire", *board)[1] == {"expired": 1}
    _, stats, _ = run("stats", *board)
    assert (stats["open"], stats["claimed"]) == (2, 1)


def test_list_filters_and_stats_by_role(board: list[str]) -> None:
    run("add", '"w1"', "--role", "writer", *board)
    run("add", '"r1"', "--role", "reviewer", "--delay", "3600", *board)
    run("add", '"w2"', "--role", "writer", *board)
    _, rows, _ = run("list", "--role", "writer", *board)
    assert [r["payload"] for r in rows] == ["w1", "w2"]
    _, rows, _ = run("list", "--status", "open", "--limit", "1", *board)
    assert [r["payload"] for r in rows] == ["w1"]
    _, stats, _ = run("stats", "--role", "reviewer", *board)
    assert (stats["total"], stats["ready"]) == (1, 0)


def test_payload_from_stdin_and_as_text(board: list[str]) -> None:
    _, added, _ = run("add", "-", *board, stdin='{"from": "stdin"}')
    _, plain, _ = run("add", "--text", "not json", *board)
    assert run("get", added["id"], *board)[1]["payload"] == {"from": "stdin"}
    assert run("get", plain["id"], *board)[1]["payload"] == "not json"


def test_named_queue_uses_its_own_table(board: list[str]) -> None:
    run("add", "1", "--queue", "agents", *board)
    with LocalDatabase(board[1]) as db:
        assert db.prepare("SELECT count(*) AS n FROM agents_tasks").first("n") == 1
    code, _, err = run("stats", *board)
    assert code == 1 and "no task table 'tasks'" in err
    assert run("stats", "--queue", "agents", *board)[1]["total"] == 1
    code, _, err = run("stats", "--queue", "Bad-Name", *board)
    assert code == 1 and "invalid module name" in err


def test_bad_input_gets_one_line_and_a_hint(board: list[str]) -> None:
    code, _, err = run("add", "{not json", *board)
    assert code == 1 and "PAYLOAD is not valid JSON" in err and "Try:" in err
    code, _, err = run("get", "01ARZ3NDEKTSV4RRFFQ69G5FAV", *board)
    assert code == 1 and f"no such file: {board[1]}" in err and "Try: check the path" in err  # reading creates none
    run("add", "1", *board)
    code, _, err = run("get", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--queue", "x", *board)
    assert code == 1 and "no task table" in err
    code, _, err = run("get", "01ARZ3NDEKTSV4RRFFQ69G5FAV", *board)
    assert code == 1 and "no task 01ARZ3NDEKTSV4RRFFQ69G5FAV" in err
    code, _, err = run("stats")
    assert code == 2 and "choose a target" in err


def test_the_same_commands_work_against_the_emulator(emulator_server: EmulatorServer) -> None:
    target = ["--emulator", emulator_server.url, "--database-id", str(uuid.uuid4())]
    env = {TOKEN_ENV: TOKEN}
    _, added, _ = run("add", '{"n": 1}', "--role", "r", *target, env=env)
    _, task, _ = run("claim", "agent", "--role", "r", *target, env=env)
    assert task["id"] == added["id"] and task["payload"] == {"n": 1}
    assert run("heartbeat", task["id"], task["claim_id"], "--lease", "60", *target, env=env)[0] == 0
    assert run("complete", task["id"], task["claim_id"], "--result", "true", *target, env=env)[0] == 0
    _, stats, _ = run("stats", *target, env=env)
    assert (stats["done"], stats["total"]) == (1, 1)


def test_every_tasks_command_and_option_has_help() -> None:
    assert tasks.help
    for name, command in tasks.commands.items():
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.name}"
