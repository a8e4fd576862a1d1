"""TaskQueue: an atomic task board on any Database (a SQLite file, the emulator or D1).

Producers :meth:`~TaskQueue.add` tasks; workers :meth:`~TaskQueue.claim` them (one statement, so two
claimants never get the same task, on SQLite or on D1 where there are no interactive transactions), renew the
lease with :meth:`~TaskQueue.heartbeat` and finish with :meth:`~TaskQueue.complete` or :meth:`~TaskQueue.fail`.
Both are fenced by the claim id: a claimant whose lease expired and whose task was claimed again gets
``False`` and changes nothing. ``complete(..., then=[...])`` applies follow-up statements (the next task, an
answer message) in the same atomic batch as the completion, and only if the claim is still current.
:meth:`~TaskQueue.expire` returns timed-out claims to ``open`` (or ``dead`` after ``max_attempts``)::

    queue = TaskQueue(LocalDatabase("board.db"))
    task_id = queue.add({"url": "https://example.com"}, role="fetcher", priority=5)
    task = queue.claim("agent-1", role="fetcher", lease=60)
    if task is not None:
        _, next_step = queue.add_statement({"parse": task.id}, role="parser")
        queue.complete(task.id, task.claim_id, result={"status": 200}, then=[next_step])

Statuses: ``open`` (waiting, possibly delayed), ``claimed``, ``done``, ``failed`` (the worker called
``fail(..., retry=False)``), ``dead`` (attempts exhausted). Times are stored as integer epoch milliseconds;
the API takes durations in seconds and ``clock`` returns epoch seconds (like ``time.time``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, cast

from d1sync.backoff import Backoff
from d1sync.database import Database, ModuleStore, Row, Statement, validate_module_name
from d1sync.errors import SQLError, ValueEncodingError
from d1sync.sql import quote_identifier
from d1sync.tasks.sql import CLAIM_FENCE, STATUSES, Queries
from d1sync.tasks.ulid import ULIDGenerator

__all__ = ["STATUSES", "Task", "TaskQueue", "TaskStatus"]

TaskStatus = Literal["open", "claimed", "done", "failed", "dead"]
"""A task's status (see :data:`STATUSES` for the lifecycle order)."""

_ADD_CHUNK = 200

Clock = Callable[[], float]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueEncodingError(f"task {what} must be JSON-serialisable: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Task:
    """One row of the board, with ``payload`` and ``result`` decoded from JSON. Times are epoch ms.

    ``claim_id``/``claimed_by``/``claimed_at`` describe the latest claim; ``lease_until`` is set only while
    the task is ``claimed``.
    """

    id: str
    status: TaskStatus
    payload: Any
    role: str | None
    priority: int
    available_at: int
    timeout_ms: int
    attempts: int
    max_attempts: int
    claim_id: str | None
    claimed_by: str | None
    claimed_at: int | None
    lease_until: int | None
    result: Any
    error: str | None
    created_at: int
    updated_at: int
    finished_at: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        """Build from a row of the task table (integers may arrive as floats from D1's JSON)."""
        result = row["result"]
        return cls(
            id=row["id"],
            status=cast(TaskStatus, row["status"]),
            payload=json.loads(row["payload"]),
            role=row["role"],
            priority=int(row["priority"]),
            available_at=int(row["available_at"]),
            timeout_ms=int(row["timeout_ms"]),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            claim_id=row["claim_id"],
            claimed_by=row["claimed_by"],
            claimed_at=_int_or_none(row["claimed_at"]),
            lease_until=_int_or_none(row["lease_until"]),
            result=None if result is None else json.loads(result),
            error=row["error"],
            created_at=int(row["created_at"]),
            updated_at=int(row["updated_at"]),
            finished_at=_int_or_none(row["finished_at"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The task as a JSON-ready dict."""
        return asdict(self)


class TaskQueue:
    """An atomic task queue in one table of ``db``. See the module docstring for the lifecycle.

    Args:
        db: any Database; a ModuleStore's module name becomes the default ``name``.
        name: ``None`` for the table ``tasks``; ``"agents"`` for ``agents_tasks`` (lower-case identifier).
        clock: current time in epoch seconds (default ``time.time``); inject a fake one in tests.
        timeout: default lease length in seconds for tasks added without ``timeout``.
        max_attempts: default number of claims a task gets before it is ``dead``.
        backoff: how long a failed task waits before it can be claimed again: the shared
            :class:`~d1sync.backoff.Backoff` (default: 1 s doubling per attempt up to 300 s, each wait a
            random 50-100 % of that ceiling, so tasks that failed together do not all come back together).
        rng: the jitter's random source (seed it in tests).
        create: create the table and indexes if missing (idempotent, one batch). Pass ``False`` when the
            schema comes from a migration (``queue.schema_sql()`` gives its text).

    Example::

        queue = TaskQueue(db, name="agents", clock=lambda: fake_now)
        queue.table        # "agents_tasks"
    """

    def __init__(
        self,
        db: Database,
        name: str | None = None,
        *,
        clock: Clock = time.time,
        timeout: float = 300.0,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        create: bool = True,
    ) -> None:
        if isinstance(db, ModuleStore) and name is None:
            name = db.name
        if name is not None:
            validate_module_name(name)
        if timeout <= 0 or max_attempts < 1:
            raise ValueError(f"need timeout > 0 and max_attempts >= 1 (got {timeout}, {max_attempts})")
        self.db = db
        self.name = name
        self.table = "tasks" if name is None else f"{name}_tasks"
        self.clock = clock
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff(base=1.0, cap=300.0)
        self._rng = rng or random.Random()
        self._ulids = ULIDGenerator(clock)
        self._sql = Queries(quote_identifier(self.table))
        if create:
            self.create()

    def __repr__(self) -> str:
        return f"TaskQueue({self.table!r}, db={self.db!r})"

    # -- schema --------------------------------------------------------------------------------------------

    def schema_sql(self) -> list[str]:
        """The statements that create this queue's table and indexes (``IF NOT EXISTS``), for a migration."""
        return self._sql.schema(self.table)

    def create(self) -> None:
        """Create the table and indexes if they do not exist, atomically."""
        self.db.batch([self.db.prepare(sql) for sql in self.schema_sql()])

    # -- producing -----------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The queue clock's current time in epoch milliseconds."""
        return _ms(self.clock())

    def add_statement(
        self,
        payload: Any,
        *,
        role: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        available_at: float | datetime | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> tuple[str, Statement]:
        """The INSERT that :meth:`add` would run, with the new task's id.

        Put it in your own ``db.batch([...])`` to create a task atomically with other rows (a thread and its
        first message, say). Arguments as for :meth:`add`.
        """
        if delay is not None and available_at is not None:
            raise ValueError("give delay or available_at, not both")
        if delay is not None and delay < 0:
            raise ValueError(f"delay must be >= 0 (got {delay})")
        timeout = self.timeout if timeout is None else timeout
        max_attempts = self.max_attempts if max_attempts is None else max_attempts
        if timeout <= 0 or max_attempts < 1:
            raise ValueError(f"need timeout > 0 and max_attempts >= 1 (got {timeout}, {max_attempts})")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError(f"priority must be an int (got {priority!r})")
        now = self.now_ms()
        if isinstance(available_at, datetime):
            start = _ms(available_at.timestamp())
        elif available_at is not None:
            start = _ms(available_at)
        else:
            start = now + _ms(delay or 0.0)
        task_id = self._ulids.new()
        statement = self.db.prepare(self._sql.add).bind(
            task_id, role, priority, _dumps(payload, "payload"), start, _ms(timeout), max_attempts, now
        )
        return task_id, statement

    def add(
        self,
        payload: Any,
        *,
        role: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        available_at: float | datetime | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Add a task and return its id (a ULID).

        Args:
            payload: any JSON-serialisable value.
            role: the kind of worker that should take it (``claim(role=...)``); ``None`` for any.
            priority: higher is claimed first.
            delay: seconds before it can be claimed. Or ``available_at``: epoch seconds or a datetime.
            timeout: lease length in seconds when claimed without ``lease`` (default: the queue's).
            max_attempts: claims before it is ``dead`` (default: the queue's).
        """
        task_id, statement = self.add_statement(
            payload,
            role=role,
            priority=priority,
            delay=delay,
            available_at=available_at,
            timeout=timeout,
            max_attempts=max_attempts,
        )
        statement.run()
        return task_id

    def add_many(self, payloads: Iterable[Any], **options: Any) -> list[str]:
        """Add many tasks with the same options, a few hundred per atomic batch; returns their ids in order."""
        ids: list[str] = []
        chunk: list[Statement] = []
        for payload in payloads:
            task_id, statement = self.add_statement(payload, **options)
            ids.append(task_id)
            chunk.append(statement)
            if len(chunk) == _ADD_CHUNK:
                self.db.batch(chunk)
                chunk = []
        if chunk:
            self.db.batch(chunk)
        return ids

    # -- working -------------------------------------------------------------------------------------------

    def claim(
        self,
        agent_id: str,
        *,
        task_id: str | None = None,
        role: str | None = None,
        lease: float | None = None,
    ) -> Task | None:
        """Claim the next available task (or the task ``task_id``) for ``agent_id``, atomically.

        The next task is the open one with the highest priority, then the earliest ``available_at``, then
        the oldest id; with ``role`` only tasks of that role qualify. Returns the claimed task, whose
        ``claim_id`` fences :meth:`complete`/:meth:`fail`/:meth:`heartbeat`, or ``None`` when nothing is
        available. ``lease`` (seconds) overrides the task's own timeout.
        """
        if lease is not None and lease <= 0:
            raise ValueError(f"lease must be > 0 seconds (got {lease})")
        claim_id = self._ulids.new()
        params: list[Any] = [claim_id, agent_id, self.now_ms(), None if lease is None else _ms(lease)]
        if task_id is not None:
            params.append(task_id)
        if role is not None:
            params.append(role)
        sql = self._sql.claim(by_id=task_id is not None, by_role=role is not None)
        found: Row | None = self.db.prepare(sql).bind(*params).first()
        return None if found is None else Task.from_row(found)

    def heartbeat(self, task_id: str, claim_id: str, *, lease: float | None = None) -> bool:
        """Extend a claim's lease to now + ``lease`` seconds (default: the task's timeout).

        Returns ``False`` if the claim is no longer current (the task expired and was claimed again, or was
        finished); then stop working on it.
        """
        if lease is not None and lease <= 0:
            raise ValueError(f"lease must be > 0 seconds (got {lease})")
        lease_ms = None if lease is None else _ms(lease)
        return self._fenced(self._sql.heartbeat, self.now_ms(), lease_ms, task_id, claim_id)

    def complete(self, task_id: str, claim_id: str, *, result: Any = None, then: Iterable[Statement] = ()) -> bool:
        """Mark the task done with a JSON-serialisable ``result``. ``False`` (and no change) if the claim is stale.

        ``then`` holds follow-up statements (the next step's task from :meth:`add_statement`, a message, a
        status update) that run in one atomic batch with the completion, after it, and only if the claim
        is current: a stale claimant gets ``False`` and none of them take effect. If a follow-up fails, the
        whole batch rolls back, the task stays claimed, and the error (a :class:`~d1sync.errors.SQLError`)
        is raised.

        Example::

            _, review = queue.add_statement({"draft": draft}, role="reviewer")
            post = db.prepare("INSERT INTO messages (thread_id, content) VALUES (?, ?)").bind(thread, draft)
            if not queue.complete(task.id, task.claim_id, result={"draft": draft}, then=[post, review]):
                ...  # the claim was lost: another agent owns the task now; nothing was posted
        """
        now, result_json = self.now_ms(), _dumps(result, "result")
        follow_up = list(then)
        if not follow_up:
            return self._fenced(self._sql.complete, result_json, now, task_id, claim_id)
        # D1 has no BEGIN, so a batch cannot branch on the claim: the fence statement fails when the claim
        # is stale, which rolls back the whole batch (completion and follow-ups) on every backend.
        batch = [
            self.db.prepare(self._sql.fence).bind(task_id, claim_id),
            self.db.prepare(self._sql.complete).bind(result_json, now, task_id, claim_id),
            *follow_up,
        ]
        try:
            self.db.batch(batch)
        except SQLError as exc:
            if exc.fence == CLAIM_FENCE:
                return False
            raise
        return True

    def fail(self, task_id: str, claim_id: str, *, error: str | None = None, retry: bool = True) -> bool:
        """Record a failed attempt. ``False`` (and no change) if the claim is stale.

        With ``retry`` and attempts left, the task is open again after the queue's back-off: a random 50-100 %
        of ``min(cap, base * 2**(attempts - 1))`` seconds; without attempts left it is ``dead``.
        ``retry=False`` marks it ``failed`` at once.
        """
        return self._fenced(
            self._sql.fail,
            retry,
            self.now_ms(),
            _ms(self.backoff.base),
            _ms(self.backoff.cap),
            error,
            task_id,
            claim_id,
            self.backoff.jitter(self._rng),
        )

    def _fenced(self, sql: str, *params: Any) -> bool:
        return self.db.prepare(sql).bind(*params).first() is not None

    def expire(self) -> int:
        """Return every claim whose lease has run out to ``open`` (or ``dead`` when attempts are used up).

        Returns how many claims expired. Call it from any worker or a timer: it is one idempotent statement.
        """
        return len(self.db.prepare(self._sql.expire).bind(self.now_ms()).all().results)

    # -- reading -------------------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        """The task ``task_id``, or ``None``."""
        row: Row | None = self.db.prepare(self._sql.get).bind(task_id).first()
        return None if row is None else Task.from_row(row)

    def list(self, *, status: str | None = None, role: str | None = None, limit: int = 100) -> list[Task]:
        """Tasks, oldest first, optionally of one ``status`` and/or ``role``."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1 (got {limit})")
        params = [p for p in (status, role) if p is not None]
        sql = self._sql.list(by_status=status is not None, by_role=role is not None)
        rows = self.db.prepare(sql).bind(*params, limit).all().results
        return [Task.from_row(row) for row in rows]

    def stats(self, *, role: str | None = None) -> dict[str, int]:
        """Counts by status plus ``total``, ``ready`` (open and available now) and ``expired`` (claims past
        their lease, waiting for :meth:`expire`); optionally for one ``role``."""
        params: list[Any] = [self.now_ms()]
        if role is not None:
            params.append(role)
        row: Row | None = self.db.prepare(self._sql.stats(by_role=role is not None)).bind(*params).first()
        assert row is not None  # an aggregate without GROUP BY always yields one row
        return {key: int(value or 0) for key, value in row.items()}
