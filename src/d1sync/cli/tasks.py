"""``d1sync tasks``: the task queue from the shell, on a local file, the emulator or D1. Output is JSON.

Exit codes: 0 success (``claim`` prints ``null`` when nothing is available), 1 failure (a stale claim, a
missing task table, a database error), 2 usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click

from d1sync.errors import SQLError
from d1sync.tasks import STATUSES, TaskQueue

from ._common import Group, fail, print_json
from ._target import target_from, target_options

__all__ = ["tasks"]

F = TypeVar("F", bound=Callable[..., Any])


def board_options(func: F) -> F:
    """``--queue`` plus the target options (``--local/--emulator/--remote/--database-id``)."""
    func = target_options(func)
    func = click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=_note_json,
        help="Print the JSON result even with -q (it is always JSON).",
    )(func)
    return click.option(
        "--queue",
        "queue_name",
        metavar="NAME",
        help="Queue name: table NAME_tasks (default: the table 'tasks').",
    )(func)


def _note_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["d1sync.json"] = True


@contextmanager
def open_queue(queue_name: str | None, *, create: bool = False, **options: Any) -> Iterator[TaskQueue]:
    """The queue on the target; ``create``: the board (and a missing --local file) is made if needed, in WAL
    mode for concurrent agents. Otherwise a local file must exist and keeps its journal mode."""
    target = target_from(options, missing="create" if create else "refuse")
    with target.open(wal=create) as db:
        queue = TaskQueue(db, name=queue_name, create=create)
        try:
            yield queue
        except SQLError as exc:
            if exc.missing != ("table", queue.table):
                raise
            fail(
                f"no task table {queue.table!r} in {target.describe()}",
                "add a task first (d1sync tasks add ...), or check --queue and the target",
            )


def parse_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc}", 'quote it for the shell, e.g. \'{"url": "..."}\', or use --text')


@click.group(cls=Group)
def tasks() -> None:
    """An atomic task queue on a local file, the emulator or D1 (JSON output).

    \b
    Examples:
      d1sync tasks add --local board.db '{"url": "https://example.com"}' --role fetcher
      d1sync tasks claim --local board.db agent-1 --role fetcher --lease 60
      d1sync tasks complete --local board.db TASK_ID CLAIM_ID --result '{"status": 200}'
      d1sync tasks stats --emulator http://127.0.0.1:8787
    """


@tasks.command()
@click.argument("payload")
@click.option("--text", "as_text", is_flag=True, help="Store PAYLOAD as a JSON string instead of parsing it.")
@click.option("--role", help="The kind of worker that should take it (claim --role).")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher is claimed first.")
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds before it can be claimed.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Lease length in seconds.")
@click.option("--max-attempts", type=click.IntRange(min=1), help="Claims before the task is dead.")
@click.option("--id", "task_id", help="The task's id (default: a new ULID); adding an existing id adds nothing.")
@board_options
def add(
    payload: str,
    as_text: bool,
    task_id: str | None,
    role: str | None,
    priority: int,
    delay: float | None,
    timeout: float | None,
    max_attempts: int | None,
    queue_name: str | None,
    **target: Any,
) -> None:
    """Add a task with PAYLOAD (JSON text, or - for stdin); prints its id. Safe to rerun with the same --id."""
    value = payload if as_text else parse_json(payload, "PAYLOAD")
    with open_queue(queue_name, create=True, **target) as queue:
        added = queue.add(
            value,
            task_id=task_id,
            role=role,
            priority=priority,
            delay=delay,
            timeout=timeout,
            max_attempts=max_attempts,
        )
    print_json({"id": added})


@tasks.command()
@click.argument("agent_id")
@click.option("--role", help="Only claim a task of this role.")
@click.option("--task-id", help="Claim this task (if it is open and available).")
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), help="Lease in seconds (default: task's).")
@click.option(
    "--claim-id",
    help="Your own claim id (default: a new ULID). Rerun with the same id after an error: it returns the task "
    "it claimed instead of claiming another.",
)
@board_options
def claim(
    agent_id: str,
    role: str | None,
    task_id: str | None,
    lease: float | None,
    claim_id: str | None,
    queue_name: str | None,
    **target: Any,
) -> None:
    """Claim the next available task for AGENT_ID; prints it (with its claim_id) or null."""
    with open_queue(queue_name, **target) as queue:
        task = queue.claim(agent_id, task_id=task_id, role=role, lease=lease, claim_id=claim_id)
    print_json(None if task is None else task.to_dict())


def stale(task_id: str) -> NoReturn:
    fail(
        f"claim on task {task_id} is not current: the task was finished, expired or claimed again",
        f"d1sync tasks get {task_id} ... shows its state",
    )


@tasks.command()
@click.argument("task_id")
@click.argument("claim_id")
@click.option("--result", "result_text", help="The result as JSON text (or - for stdin).")
@board_options
def complete(task_id: str, claim_id: str, result_text: str | None, queue_name: str | None, **target: Any) -> None:
    """Mark TASK_ID done, if CLAIM_ID is still its current claim (rerunning it with the same result is safe)."""
    result = None if result_text is None else parse_json(result_text, "--result")
    with open_queue(queue_name, **target) as queue:
        ok = queue.complete(task_id, claim_id, result=result)
        # A rerun after an error whose first run went through: done by this claim with this result.
        task = None if ok else queue.get(task_id)
    if not ok and not (task and (task.status, task.claim_id, task.result) == ("done", claim_id, result)):
        stale(task_id)
    print_json({"id": task_id, "status": "done"})


@tasks.command("fail")
@click.argument("task_id")
@click.argument("claim_id")
@click.option("--error", "error_text", help="What went wrong.")
@click.option("--no-retry", is_flag=True, help="Mark the task failed now instead of retrying it.")
@board_options
def fail_(
    task_id: str, claim_id: str, error_text: str | None, no_retry: bool, queue_name: str | None, **target: Any
) -> None:
    """Record a failed attempt of TASK_ID: retried after a back-off, dead when out of attempts."""
    with open_queue(queue_name, **target) as queue:
        ok = queue.fail(task_id, claim_id, error=error_text, retry=not no_retry)
        task = queue.get(task_id) if ok else None
    if task is None:
        stale(task_id)
    else:
        print_json({"id": task_id, "status": task.status, "available_at": task.available_at})


@tasks.command()
@click.argument("task_id")
@click.argument("claim_id")
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), help="New lease from now, in seconds.")
@board_options
def heartbeat(task_id: str, claim_id: str, lease: float | None, queue_name: str | None, **target: Any) -> None:
    """Extend the lease of CLAIM_ID on TASK_ID."""
    with open_queue(queue_name, **target) as queue:
        ok = queue.heartbeat(task_id, claim_id, lease=lease)
    if not ok:
        stale(task_id)
    print_json({"id": task_id, "status": "claimed"})


@tasks.command()
@board_options
def expire(queue_name: str | None, **target: Any) -> None:
    """Return claims whose lease ran out to open (or dead); prints how many."""
    with open_queue(queue_name, **target) as queue:
        print_json({"expired": queue.expire()})


@tasks.command()
@click.argument("task_id")
@board_options
def get(task_id: str, queue_name: str | None, **target: Any) -> None:
    """Print one task, or fail if there is none."""
    with open_queue(queue_name, **target) as queue:
        task = queue.get(task_id)
    if task is None:
        fail(f"no task {task_id}", "d1sync tasks list ... shows the tasks")
    print_json(task.to_dict())


@tasks.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks with this status.")
@click.option("--role", help="Only tasks of this role.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@board_options
def list_(status: str | None, role: str | None, limit: int, queue_name: str | None, **target: Any) -> None:
    """List tasks, oldest first."""
    with open_queue(queue_name, **target) as queue:
        print_json([task.to_dict() for task in queue.list(status=status, role=role, limit=limit)])


@tasks.command()
@click.option("--role", help="Only count tasks of this role.")
@board_options
def stats(role: str | None, queue_name: str | None, **target: Any) -> None:
    """Count tasks by status, plus ready (claimable now) and expired (waiting for expire)."""
    with open_queue(queue_name, **target) as queue:
        print_json(queue.stats(role=role))
