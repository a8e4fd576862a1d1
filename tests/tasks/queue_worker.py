"""A claimant process for the concurrency and kill -9 tests (run as a script; tests import only CHAIN_STEPS).

    python queue_worker.py --local FILE --agent A --mode drain
    python queue_worker.py --api-base URL --database-id ID --agent A --mode hang --lease 60

Prints ``ready``, waits for ``go`` on stdin (so every process starts at once), then:
drain: claim and complete until nothing is left; prints one JSON line of what it claimed and completed.
drain-many: the same, 5 tasks per claim_many and their completions in one complete_many.
hang: claims one task, prints it as JSON, and sleeps until killed.
chain: like drain, for tasks ``{"chain": c, "step": s}``: each completion posts a row in ``handovers`` and
adds step s + 1 (up to ``CHAIN_STEPS``) in the same batch (``complete(then=...)``); prints a line per task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from d1sync.database import Database
from d1sync.local import LocalDatabase
from d1sync.tasks import TaskQueue

CHAIN_STEPS = 3


def open_db(args: argparse.Namespace) -> Database:
    if args.local:
        return LocalDatabase(args.local, busy_timeout=30.0)
    from d1sync.client import D1Client

    return D1Client(
        account_id="acct",
        database_id=args.database_id,
        api_token=os.environ["D1SYNC_EMULATOR_TOKEN"],
        base_url=args.api_base,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--local")
    parser.add_argument("--api-base")
    parser.add_argument("--database-id")
    parser.add_argument("--agent", required=True)
    parser.add_argument("--mode", choices=["drain", "drain-many", "hang", "chain"], required=True)
    parser.add_argument("--lease", type=float, default=60.0)
    args = parser.parse_args()
    db = open_db(args)
    queue = TaskQueue(db, create=False)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("expected go")
    if args.mode == "hang":
        task = queue.claim(args.agent, lease=args.lease)
        print(json.dumps(None if task is None else task.to_dict()), flush=True)
        while True:
            time.sleep(60)
    if args.mode == "chain":
        chain(db, queue, args.agent, args.lease)
        return
    if args.mode == "drain-many":
        drain_many(db, queue, args.agent, args.lease)
        return
    claims: list[list[str]] = []
    completed: list[str] = []
    stale = 0
    while (task := queue.claim(args.agent, lease=args.lease)) is not None:
        assert task.claim_id is not None
        claims.append([task.id, task.claim_id])
        if queue.complete(task.id, task.claim_id, result={"by": args.agent}):
            completed.append(task.id)
        else:
            stale += 1
    print(json.dumps({"agent": args.agent, "claims": claims, "completed": completed, "stale": stale}), flush=True)
    db.close()


def drain_many(db: Database, queue: TaskQueue, agent: str, lease: float) -> None:
    claims: list[list[str]] = []
    completed: list[str] = []
    stale = 0
    while tasks := queue.claim_many(agent, 5, lease=lease):
        items = [(task.id, task.claim_id or "", {"by": agent}) for task in tasks]
        claims += [[task.id, task.claim_id or ""] for task in tasks]
        for task, ok in zip(tasks, queue.complete_many(items), strict=True):
            if ok:
                completed.append(task.id)
            else:
                stale += 1
    print(json.dumps({"agent": agent, "claims": claims, "completed": completed, "stale": stale}), flush=True)
    db.close()


def chain(db: Database, queue: TaskQueue, agent: str, lease: float) -> None:
    completed = 0
    while (task := queue.claim(agent, lease=lease)) is not None:
        assert task.claim_id is not None
        step = task.payload["step"]
        then = [
            db.prepare("INSERT INTO handovers (chain, step, task_id, agent) VALUES (?, ?, ?, ?)").bind(
                task.payload["chain"], step, task.id, agent
            )
        ]
        if step < CHAIN_STEPS:
            then.append(queue.add_statement({"chain": task.payload["chain"], "step": step + 1})[1])
        if queue.complete(task.id, task.claim_id, result={"by": agent}, then=then):
            completed += 1
        print(task.id, flush=True)
    print(json.dumps({"agent": agent, "completed": completed}), flush=True)
    db.close()


if __name__ == "__main__":
    main()
