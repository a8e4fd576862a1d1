"""Agents coordinating through threads, messages and a task board (d1sync's TaskQueue).

A conductor opens a few conversation threads. Each thread runs a three-step workflow: a researcher, a writer
and a reviewer, each a separate agent (a Python thread with its own database connection) that claims tasks by
role, reads the thread's messages, and completes its task in one atomic batch with its answer (the next
message) and the next step's task for the next role. The board is one database: a local SQLite file, the
d1sync emulator, or D1 itself.

    python examples/agents.py --local /tmp/agents.db
    python examples/agents.py --emulator http://127.0.0.1:8787      # token from $D1SYNC_EMULATOR_TOKEN
    python examples/agents.py --embedded                            # starts its own emulator
    python examples/agents.py --local /tmp/agents.db --json         # a machine-readable summary
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from d1sync import Database, LocalDatabase
from d1sync.emulator import DEFAULT_DATABASE_ID, TOKEN_ENV
from d1sync.tasks import TaskQueue
from d1sync.tasks.ulid import new_ulid

WORKFLOW = ["researcher", "writer", "reviewer"]  # step 1, 2, 3; step 0 is the initiator's request
TOPICS = ["autumn rain", "a quiet harbour", "the first snow", "an old lighthouse", "morning tea"]

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS agents (
        id TEXT PRIMARY KEY, token_hash TEXT NOT NULL, created_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS threads (
        id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, initiator TEXT NOT NULL,
        result TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, thread_id TEXT NOT NULL REFERENCES threads (id),
        role TEXT NOT NULL, content TEXT NOT NULL, meta TEXT, step INTEGER NOT NULL, agent_id TEXT,
        created_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS messages_thread_step ON messages (thread_id, step)",
]


def now_ms() -> int:
    return int(time.time() * 1000)


# -- the work each role does (deterministic stand-ins for a model call) -------------------------------------


def research(topic: str, history: list[dict[str, Any]]) -> str:
    words = topic.split()
    return f"Notes on {topic}: {len(words)} word(s); key image '{words[-1]}'; season and stillness suit it."


def write(topic: str, history: list[dict[str, Any]]) -> str:
    key = history[-1]["content"].split("key image '")[1].split("'")[0]
    return f"{topic.capitalize()} / the {key} holds its breath / nothing else stirs"


def review(topic: str, history: list[dict[str, Any]]) -> str:
    draft = history[-1]["content"]
    return f"Approved ({len(draft.split('/'))} lines): {draft}"


WORK: dict[str, Callable[[str, list[dict[str, Any]]], str]] = {
    "researcher": research,
    "writer": write,
    "reviewer": review,
}


# -- the board ----------------------------------------------------------------------------------------------


def open_thread(db: Database, queue: TaskQueue, topic: str, initiator: str) -> str:
    """Create a thread, its request (step 0) and the first task in one atomic batch."""
    thread_id, now = new_ulid(), now_ms()
    _, first_task = queue.add_statement({"thread_id": thread_id, "step": 1, "topic": topic}, role=WORKFLOW[0])
    db.batch(
        [
            db.prepare(
                "INSERT INTO threads (id, workflow, status, initiator, created_at, updated_at) "
                "VALUES (?, 'haiku', 'running', ?, ?, ?)"
            ).bind(thread_id, initiator, now, now),
            db.prepare(
                "INSERT INTO messages (thread_id, role, content, step, agent_id, created_at) "
                "VALUES (?, 'user', ?, 0, ?, ?)"
            ).bind(thread_id, f"Write a haiku about {topic}.", initiator, now),
            first_task,
        ]
    )
    return thread_id


def run_agent(open_db: Callable[[], Database], agent_id: str, role: str, stop: threading.Event) -> None:
    """Claim tasks of ``role`` until told to stop: read the thread, answer, hand over the next step."""
    with open_db() as db:
        queue = TaskQueue(db, create=False)
        while not stop.is_set():
            task = queue.claim(agent_id, role=role, lease=30)
            if task is None:
                stop.wait(0.02)
                continue
            assert task.claim_id is not None
            thread_id, step, topic = task.payload["thread_id"], task.payload["step"], task.payload["topic"]
            history = (
                db.prepare("SELECT role, content, step FROM messages WHERE thread_id = ? ORDER BY step, id")
                .bind(thread_id)
                .all()
                .results
            )
            answer = WORK[role](topic, history)
            now = now_ms()
            hand_over = [
                db.prepare(
                    "INSERT INTO messages (thread_id, role, content, meta, step, agent_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)"
                ).bind(thread_id, role, answer, json.dumps({"task_id": task.id}), step, agent_id, now)
            ]
            if step < len(WORKFLOW):
                payload = {"thread_id": thread_id, "step": step + 1, "topic": topic}
                hand_over.append(queue.add_statement(payload, role=WORKFLOW[step])[1])
            else:
                hand_over.append(
                    db.prepare("UPDATE threads SET status = 'done', result = ?, updated_at = ? WHERE id = ?").bind(
                        answer, now, thread_id
                    )
                )
            # One atomic batch: the task is done exactly when its answer is posted and the next step handed
            # over, so a crash leaves either both or neither (the lease then expires and another agent redoes
            # the step). An agent that lost its claim gets False and posts nothing.
            queue.complete(task.id, task.claim_id, result={"answer": answer}, then=hand_over)


def run(open_db: Callable[[], Database], *, threads: int, agents_per_role: int, timeout: float) -> dict[str, Any]:
    """Set up the board, run the agents until every thread is done, and summarise."""
    with open_db() as db:
        db.batch([db.prepare(sql) for sql in SCHEMA])
        queue = TaskQueue(db)
        agents = [(f"{role}-{i + 1}", role) for role in WORKFLOW for i in range(agents_per_role)]
        db.batch(
            [
                db.prepare("INSERT OR IGNORE INTO agents (id, token_hash, created_at) VALUES (?, ?, ?)").bind(
                    agent_id, hashlib.sha256(secrets.token_bytes(16)).hexdigest(), now_ms()
                )
                for agent_id, _ in agents
            ]
        )
        opened = [open_thread(db, queue, TOPICS[i % len(TOPICS)], "conductor") for i in range(threads)]

        stop = threading.Event()
        workers = [
            threading.Thread(target=run_agent, args=(open_db, agent_id, role, stop), name=agent_id)
            for agent_id, role in agents
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                queue.expire()  # the conductor sweeps leases of agents that died mid-task
                marks = ", ".join("?" * len(opened))
                running = db.prepare(
                    f"SELECT count(*) AS n FROM threads WHERE status <> 'done' AND id IN ({marks})"
                ).bind(*opened)
                if running.first("n") == 0:
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"threads still running after {timeout} s: {queue.stats()}")
        finally:
            stop.set()
            for worker in workers:
                worker.join()

        transcripts = []
        for thread_id in opened:
            rows = (
                db.prepare("SELECT step, role, agent_id, content FROM messages WHERE thread_id = ? ORDER BY step")
                .bind(thread_id)
                .all()
                .results
            )
            result = db.prepare("SELECT result FROM threads WHERE id = ?").bind(thread_id).first("result")
            transcripts.append({"thread_id": thread_id, "result": result, "messages": rows})
        return {"threads": transcripts, "tasks": queue.stats()}


@contextmanager
def embedded_emulator() -> Iterator[str]:
    """Start a d1sync emulator in a temporary folder; yields its URL and sets the token variable."""
    from d1sync.emulator.server import EmulatorServer

    token = secrets.token_urlsafe(16)
    os.environ[TOKEN_ENV] = token
    with tempfile.TemporaryDirectory() as data_dir, EmulatorServer(data_dir, token=token) as server:
        yield server.url


def connector(args: argparse.Namespace, emulator_url: str | None) -> Callable[[], Database]:
    if args.local:
        return lambda: LocalDatabase(args.local)
    from d1sync.client import D1Client

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise SystemExit(f"set {TOKEN_ENV} to the emulator's token")
    return lambda: D1Client(
        account_id="agents-example",
        database_id=args.database_id,
        api_token=token,
        base_url=f"{emulator_url}/client/v4",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", metavar="FILE", help="a SQLite file for the board")
    where.add_argument("--emulator", metavar="URL", help="a running d1sync emulator")
    where.add_argument("--embedded", action="store_true", help="start an emulator for this run")
    parser.add_argument("--database-id", default=DEFAULT_DATABASE_ID, help="the emulator database id")
    parser.add_argument("--threads", type=int, default=3, help="conversation threads to run")
    parser.add_argument("--agents-per-role", type=int, default=2, help="agents for each role")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()

    with embedded_emulator() if args.embedded else _nothing(args.emulator) as url:
        summary = run(
            connector(args, url), threads=args.threads, agents_per_role=args.agents_per_role, timeout=args.timeout
        )
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    for thread in summary["threads"]:
        print(f"thread {thread['thread_id']}")
        for message in thread["messages"]:
            print(f"  [{message['step']}] {message['agent_id']:<13} {message['content']}")
    print(f"tasks: {summary['tasks']}")


@contextmanager
def _nothing(url: str | None) -> Iterator[str | None]:
    yield url.rstrip("/") if url else None


if __name__ == "__main__":
    main()
