"""Real processes on one board: 8 claimants drain 2,000 tasks exactly once (one or five per claim); a
claimant killed with kill -9 has its task recovered by expire() and finished by another; claimants killed
while handing over steps (complete(then=...)) never leave a chain done without its next step."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from d1sync.client import D1Client
from d1sync.database import Database
from d1sync.emulator import TOKEN_ENV
from d1sync.local import LocalDatabase
from d1sync.tasks import TaskQueue

from .conftest import TOKEN
from .queue_worker import CHAIN_STEPS

WORKER = Path(__file__).with_name("queue_worker.py")
PROCESSES = 8
TASKS = 2000
CHAINS = 150


def start_workers(target: list[str], agents: list[str], mode: str, env: dict[str, str] | None = None) -> list[Any]:
    """Start one worker per agent, wait until all are ready, then release them together."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *target, "--agent", agent, "--mode", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for agent in agents
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def finish(procs: list[Any], timeout: float = 60) -> list[dict[str, Any]]:
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def check_drained_exactly_once(
    queue: TaskQueue, ids: list[str], reports: list[dict[str, Any]], *, per_claim: int = 1
) -> None:
    claimed = [task_id for r in reports for task_id, _ in r["claims"]]
    claim_ids = [claim_id for r in reports for _, claim_id in r["claims"]]
    completed = [task_id for r in reports for task_id in r["completed"]]
    assert Counter(claimed).most_common(1)[0][1] == 1, "a task was claimed twice"
    assert Counter(claim_ids).most_common(1)[0][1] <= per_claim
    assert len(set(claim_ids)) >= len(claim_ids) / per_claim
    assert sorted(completed) == sorted(ids), "a task was lost or completed twice"
    assert sum(r["stale"] for r in reports) == 0
    assert sum(1 for r in reports if r["completed"]) >= 2, "the workers did not overlap"
    assert queue.stats()["done"] == TASKS
    by_agent = {task_id: r["agent"] for r in reports for task_id in r["completed"]}
    for task in queue.list(limit=TASKS):
        assert task.attempts == 1 and task.result == {"by": by_agent[task.id]} and task.claimed_by == by_agent[task.id]


@dataclass
class Board:
    """Where the worker processes and the test meet: a SQLite file, or a database in the emulator."""

    db: Database
    args: list[str]
    env: dict[str, str]


@pytest.fixture(params=["local", "emulator-socket"])
def board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Board]:
    if request.param == "local":
        path = tmp_path / "board.db"
        with LocalDatabase(path) as db:
            yield Board(db, ["--local", str(path)], {})
        return
    server = request.getfixturevalue("emulator_server")
    database_id = str(uuid.uuid4())
    with D1Client(account_id="acct", database_id=database_id, api_token=TOKEN, base_url=server.api_base) as client:
        args = ["--api-base", server.api_base, "--database-id", database_id]
        yield Board(client, args, {TOKEN_ENV: TOKEN})


def test_eight_processes_drain_the_board_exactly_once(board: Board) -> None:
    queue = TaskQueue(board.db)
    ids = queue.add_many(range(TASKS))
    procs = start_workers(board.args, [f"w{i}" for i in range(PROCESSES)], "drain", board.env)
    check_drained_exactly_once(queue, ids, finish(procs))


def test_eight_processes_claiming_five_at_a_time_drain_the_board_exactly_once(board: Board) -> None:
    queue = TaskQueue(board.db)
    ids = queue.add_many(range(TASKS))
    procs = start_workers(board.args, [f"w{i}" for i in range(PROCESSES)], "drain-many", board.env)
    check_drained_exactly_once(queue, ids, finish(procs), per_claim=5)


def test_a_claimant_killed_mid_task_is_recovered_by_expire(board: Board) -> None:
    queue = TaskQueue(board.db)
    task_id = queue.add({"job": "survive a crash"})
    [victim] = start_workers(board.args, ["victim"], "hang", board.env)
    claimed = json.loads(victim.stdout.readline())
    assert claimed["id"] == task_id and claimed["status"] == "claimed"
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    victim.stdin.close()
    victim.stdout.close()

    assert queue.expire() == 0  # the 60 s lease still runs: nobody may take it yet
    assert queue.claim("eager") is None
    later = TaskQueue(board.db, clock=lambda: time.time() + 61, create=False)
    assert later.expire() == 1

    reports = finish(start_workers(board.args, ["rescuer"], "drain", board.env))
    assert reports[0]["completed"] == [task_id]
    task = queue.get(task_id)
    assert task is not None
    assert (task.status, task.claimed_by, task.attempts, task.result) == ("done", "rescuer", 2, {"by": "rescuer"})
    assert not queue.complete(task_id, claimed["claim_id"], result="from beyond")
    assert queue.get(task_id).result == {"by": "rescuer"}  # type: ignore[union-attr]


def check_no_chain_is_stuck(db: Database, queue: TaskQueue) -> int:
    """Each done task has its hand-over row and (before the last step) its next step; returns how many are done."""
    tasks = queue.list(limit=CHAINS * CHAIN_STEPS + 1)
    by_step = {(t.payload["chain"], t.payload["step"]): t for t in tasks}
    assert len(by_step) == len(tasks), "a step was handed over twice"
    rows = db.prepare("SELECT chain, step, task_id FROM handovers").all().results
    handovers = {(row["chain"], row["step"]): row["task_id"] for row in rows}
    done = {key for key, task in by_step.items() if task.status == "done"}
    assert set(handovers) == done, "a task is done without its hand-over, or a hand-over without its task done"
    assert all(by_step[key].id == task_id for key, task_id in handovers.items())
    for chain, step in by_step:
        assert step == 1 or (chain, step - 1) in done
        if (chain, step) in done and step < CHAIN_STEPS:
            assert (chain, step + 1) in by_step, f"chain {chain} is stuck after step {step}"
    return len(done)


def test_claimants_killed_around_their_hand_overs_never_leave_a_chain_stuck(board: Board) -> None:
    board.db.exec(
        "CREATE TABLE handovers (chain INTEGER NOT NULL, step INTEGER NOT NULL, task_id TEXT NOT NULL, "
        "agent TEXT NOT NULL, PRIMARY KEY (chain, step))"
    )
    queue = TaskQueue(board.db)
    queue.add_many(({"chain": c, "step": 1} for c in range(CHAINS)), max_attempts=10)
    later = TaskQueue(board.db, clock=lambda: time.time() + 61, create=False)
    for round_ in range(3):
        [victim] = start_workers(board.args, [f"victim-{round_}"], "chain", board.env)
        for _ in range(5):
            assert victim.stdout.readline()  # in full swing: claiming, completing, handing over
        time.sleep(random.Random(round_).uniform(0, 0.05))
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        victim.stdin.close()
        victim.stdout.close()
        assert check_no_chain_is_stuck(board.db, queue) < CHAINS * CHAIN_STEPS, "the kill came too late"
        later.expire()  # a task the victim held goes back to open

    [report] = finish(start_workers(board.args, ["rescuer"], "chain", board.env))
    assert report["completed"] > 0
    assert check_no_chain_is_stuck(board.db, queue) == CHAINS * CHAIN_STEPS
    assert queue.stats()["done"] == queue.stats()["total"] == CHAINS * CHAIN_STEPS
