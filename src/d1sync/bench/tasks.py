"""Benchmark 6: task-queue throughput, claims plus completions per second, one task at a time or in batches.

Two boards, each measured with and without batching, side by side in one run:

- a SQLite file worked by 8 processes (``python -m d1sync.bench.tasks``, each its own connection), released
  together after they are all ready; the time runs from the first claim to the last completion;
- the emulator over a socket at the run's latency, with the run's request rate enforced client-side by one
  pacing limiter shared by every worker (the account's limit is per user, not per connection), for the run's
  time budget.

Each task costs one claim and one completion: ``claim`` + ``complete`` (2 requests per task), ``claim_many``
+ ``complete`` (1 + n per n tasks), or ``claim_many`` + ``complete_many`` (2 per n tasks). After each run the
board is checked: every completed task done once, in one attempt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from d1sync.bench.remote import BenchEmulator, CountingTransport, pacing_limiter
from d1sync.bench.report import Figure, Report
from d1sync.bench.settings import BenchSettings
from d1sync.database import Database
from d1sync.local import LocalDatabase
from d1sync.tasks import TaskQueue

__all__ = ["MODES", "TasksOutcome", "run_task_bench"]

BATCH = 10
"""Tasks per ``claim_many`` / ``complete_many`` in the batched modes."""
FILE_PROCESSES = 8
EMULATOR_WORKERS = 4
MODES = {
    "claim": "claim + complete, one task per request",
    "claim_many": f"claim_many({BATCH}) + one complete per task",
    "batched": f"claim_many({BATCH}) + complete_many",
}


@dataclass
class TasksOutcome:
    """One board worked in one mode: how many tasks were claimed and completed, in how long, in how many requests."""

    board: str
    mode: str
    workers: int
    tasks: int
    seconds: float
    requests: int | None
    exact: bool
    drained: bool

    @property
    def tasks_per_second(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tasks_per_second": self.tasks_per_second}


def work(queue: TaskQueue, agent: str, mode: str, deadline: float) -> tuple[int, int]:
    """Claim and complete until the board is empty or ``deadline`` (monotonic) passes: (completed, stale)."""
    done = stale = 0
    while time.monotonic() < deadline:
        if mode == "claim":
            task = queue.claim(agent, lease=600)
            tasks = [] if task is None else [task]
        else:
            tasks = queue.claim_many(agent, BATCH, lease=600)
        if not tasks:
            break
        items = [(task.id, task.claim_id or "", agent) for task in tasks]
        if mode == "batched":
            results = queue.complete_many(items)
        else:
            results = [queue.complete(task_id, claim_id, result=result) for task_id, claim_id, result in items]
        done += sum(results)
        stale += len(results) - sum(results)
    return done, stale


def _exact(db: Database, queue: TaskQueue, completed: int) -> bool:
    """Every completed task is done once, in one attempt, and nothing is left claimed."""
    row = (
        db.prepare(
            f"SELECT SUM(status = 'done') AS done, SUM(status = 'claimed') AS claimed, MAX(attempts) AS attempts "
            f"FROM {queue.table}"
        ).first()
        or {}
    )
    return int(row.get("done") or 0) == completed and not row.get("claimed") and int(row.get("attempts") or 0) <= 1


def run_file(workdir: Path, *, tasks: int, mode: str, processes: int = FILE_PROCESSES) -> TasksOutcome:
    """``processes`` child processes drain ``tasks`` tasks from one SQLite file in ``mode``."""
    path = workdir / f"tasks-{mode}.db"
    with LocalDatabase(path) as db:
        TaskQueue(db).add_many(range(tasks))
    command = [sys.executable, "-m", "d1sync.bench.tasks", os.fspath(path), mode]
    procs = [
        subprocess.Popen([*command, f"p{i}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for i in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a task-bench worker failed to start (exit {proc.wait()})")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a task-bench worker exited with {proc.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    completed = sum(r["done"] for r in reports)
    # CLOCK_MONOTONIC is system-wide on Linux: the children's readings compare.
    seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    with LocalDatabase(path) as db:
        exact = _exact(db, TaskQueue(db, create=False), completed) and not sum(r["stale"] for r in reports)
    return TasksOutcome("file", mode, processes, completed, seconds, None, exact, completed == tasks)


def run_emulator(
    emulator: BenchEmulator, *, tasks: int, mode: str, budget: float, requests_per_second: float
) -> TasksOutcome:
    """``EMULATOR_WORKERS`` threads, each with its own client, share one limiter and work one board for ``budget``."""
    with emulator.client() as admin:
        database_id = str(admin.create_database(f"tasks-{mode}-{os.getpid()}-{time.monotonic_ns()}")["uuid"])
    with emulator.client(database_id) as setup:
        TaskQueue(setup).add_many(range(tasks))
    limiter = pacing_limiter(requests_per_second)
    transports = [CountingTransport() for _ in range(EMULATOR_WORKERS)]
    counts: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    start = time.monotonic()
    deadline = start + budget

    def worker(i: int) -> None:
        try:
            with emulator.client(database_id, rate_limiter=limiter, transport=transports[i]) as db:
                counts.append(work(TaskQueue(db, create=False), f"w{i}", mode, deadline))
        except BaseException as exc:  # reported below, with the board left as it is
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(EMULATOR_WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - start
    if errors:
        raise RuntimeError(f"a task-bench worker failed: {errors[0]!r}")
    completed = sum(done for done, _ in counts)
    with emulator.client(database_id) as check:
        # Workers stopped by the deadline may still hold a claim they had not completed: count only done ones.
        done = int(check.prepare("SELECT count(*) AS n FROM tasks WHERE status = 'done'").first("n"))
        attempts = int(check.prepare("SELECT MAX(attempts) AS a FROM tasks").first("a") or 0)
    exact = done == completed and attempts <= 1 and not sum(stale for _, stale in counts)
    requests = sum(t.requests for t in transports)
    return TasksOutcome("emulator", mode, EMULATOR_WORKERS, completed, seconds, requests, exact, completed == tasks)


def run_task_bench(
    emulator: BenchEmulator, workdir: Path, settings: BenchSettings, report: Report, say: Callable[[str], None]
) -> None:
    """Both boards in every mode; the figures and details go into ``report``."""
    # Sized to the time budget: 20,000 tasks at the default 20 s, 5,000 for --quick.
    file_tasks = max(200, min(20_000, int(settings.budget * 1000)))
    outcomes = []
    for mode in ("claim", "batched"):
        say(f"tasks (file): {FILE_PROCESSES} processes drain {file_tasks:,} tasks, {MODES[mode]}")
        outcomes.append(run_file(workdir, tasks=file_tasks, mode=mode))
    # Enough tasks that no mode runs out within the budget (or the whole board is the figure).
    emulator_tasks = max(200, int(settings.budget * (settings.rate_limit or 200) * BATCH))
    for mode in MODES:
        say(f"tasks (emulator): {EMULATOR_WORKERS} workers for {settings.budget:g} s, {MODES[mode]}")
        outcomes.append(
            run_emulator(
                emulator,
                tasks=emulator_tasks,
                mode=mode,
                budget=settings.budget,
                requests_per_second=settings.rate_limit,
            )
        )
    report.details["tasks"] = [o.to_dict() for o in outcomes]
    _figures(report, settings, outcomes)


def _figures(report: Report, settings: BenchSettings, outcomes: list[TasksOutcome]) -> None:
    rate = f"{settings.rate_limit:g} req/s (one client-side pacing limiter)" if settings.rate_limit else "none"
    conditions = {
        "file": {
            "board": f"one SQLite file (WAL, synchronous=NORMAL), {FILE_PROCESSES} processes, each its own connection",
            "per_task": "one claim and one completion",
            "lease_s": 600,
        },
        "emulator": {
            "board": f"the emulator over a loopback socket, {EMULATOR_WORKERS} worker threads, each its own D1Client",
            "emulator_latency_ms": settings.latency_ms,
            "rate_limit": rate,
            "time_budget_s": settings.budget,
            "per_task": "one claim and one completion",
        },
    }
    by_key = {(o.board, o.mode): o for o in outcomes}
    for o in outcomes:
        per_request = f", {o.tasks / o.requests:,.1f} tasks/request" if o.requests else ""
        report.figures.append(
            Figure(
                key=f"tasks.{o.board}.{o.mode}.tasks_per_second",
                name=f"task queue on {'a file' if o.board == 'file' else 'the emulator'}: {MODES[o.mode]}",
                value=o.tasks_per_second,
                unit="tasks/s",
                conditions=conditions[o.board] | {"mode": MODES[o.mode], "workers": o.workers},
                measured=o.to_dict(),
                summary=f"{o.tasks:,} tasks claimed and completed in {o.seconds:,.1f} s by {o.workers} "
                f"{'processes' if o.board == 'file' else 'workers'}{per_request}"
                + (f"; {settings.latency_ms:g} ms latency, {rate}" if o.board == "emulator" else "")
                + ("" if o.exact else "; BOARD NOT EXACT"),
            )
        )
    for board, mode in (("file", "batched"), ("emulator", "claim_many"), ("emulator", "batched")):
        ours, base = by_key.get((board, mode)), by_key.get((board, "claim"))
        if ours is None or base is None or not base.tasks_per_second:
            continue
        report.figures.append(
            Figure(
                key=f"tasks.{board}.ratio.{mode}_vs_claim",
                name=f"task queue on {'a file' if board == 'file' else 'the emulator'}: {MODES[mode]} / one at a time",
                value=ours.tasks_per_second / base.tasks_per_second,
                unit="x",
                conditions=conditions[board],
                measured={"batched": ours.tasks_per_second, "one_at_a_time": base.tasks_per_second},
                summary="same board, workers" + (", latency and rate limit" if board == "emulator" else ""),
            )
        )


def _child() -> None:
    """One file worker: ``python -m d1sync.bench.tasks FILE MODE AGENT``; prints ready, waits for go."""
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("mode", choices=list(MODES))
    parser.add_argument("agent")
    args = parser.parse_args()
    with LocalDatabase(args.path, busy_timeout=60.0) as db:
        queue = TaskQueue(db, create=False)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            sys.exit("expected go")
        start = time.monotonic()
        done, stale = work(queue, args.agent, args.mode, float("inf"))
        end = time.monotonic()
    print(json.dumps({"done": done, "stale": stale, "start": start, "end": end}), flush=True)


if __name__ == "__main__":
    _child()
