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

Every write is safe to send twice (client-chosen task and claim ids; completions and failures recognise
their own resend), so a response lost on the way back costs no attempt and no duplicate; batch with
:meth:`~TaskQueue.claim_many` and :meth:`~TaskQueue.complete_many` where requests are the cost (D1).

Statuses: ``open`` (waiting, possibly delayed), ``claimed``, ``done``, ``failed`` (the worker called
``fail(..., retry=False)``), ``dead`` (attempts exhausted). Times are stored as integer epoch milliseconds;
the API takes durations in seconds and ``clock`` returns epoch seconds (like ``time.time``).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime
from typing import Any

from d1sync.backoff import Backoff
from d1sync.database import Database, ModuleStore, Result, Row, Statement, validate_module_name
from d1sync.errors import SQLError
from d1sync.sql import quote_identifier
from d1sync.tasks.model import Task, TaskStatus, check_id, check_ids, dumps, ms
from d1sync.tasks.pending import Unanswered
from d1sync.tasks.sql import CLAIM_FENCE, DONE_FENCE, STATUSES, Queries
from d1sync.tasks.ulid import ULIDGenerator

__all__ = ["STATUSES", "Task", "TaskQueue", "TaskStatus"]

_ADD_CHUNK = 200
_COMPLETE_CHUNK = 200

Clock = Callable[[], float]


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
        self._unanswered = Unanswered()
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
        return ms(self.clock())

    def add_statement(
        self,
        payload: Any,
        *,
        task_id: str | None = None,
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
            start = ms(available_at.timestamp())
        elif available_at is not None:
            start = ms(available_at)
        else:
            start = now + ms(delay or 0.0)
        task_id = self._ulids.new() if task_id is None else check_id(task_id, "task_id")
        statement = self.db.prepare(self._sql.add).bind(
            task_id, role, priority, dumps(payload, "payload"), start, ms(timeout), max_attempts, now
        )
        return task_id, statement

    def add(
        self,
        payload: Any,
        *,
        task_id: str | None = None,
        role: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        available_at: float | datetime | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Add a task and return its id (a ULID, or ``task_id``).

        Adding is idempotent: the id is chosen here, not by the database, and an id that exists already adds
        nothing (the task keeps its first payload). So the client resends an add whose response was lost,
        and calling ``add`` again with the same arguments after it raised adds the task at most once.

        Args:
            payload: any JSON-serialisable value.
            task_id: your own id for the task (any non-empty text), to make adds idempotent across processes;
                default: a new ULID.
            role: the kind of worker that should take it (``claim(role=...)``); ``None`` for any.
            priority: higher is claimed first.
            delay: seconds before it can be claimed. Or ``available_at``: epoch seconds or a datetime.
            timeout: lease length in seconds when claimed without ``lease`` (default: the queue's).
            max_attempts: claims before it is ``dead`` (default: the queue's).
        """
        options = {
            "role": role,
            "priority": priority,
            "delay": delay,
            "available_at": available_at,
            "timeout": timeout,
            "max_attempts": max_attempts,
        }
        return self.add_many([payload], ids=None if task_id is None else [check_id(task_id, "task_id")], **options)[0]

    def add_many(self, payloads: Iterable[Any], *, ids: Sequence[str] | None = None, **options: Any) -> list[str]:
        """Add many tasks with the same options (those of :meth:`add`), 200 per atomic batch; returns their ids.

        Every batch is idempotent (client-chosen ids, ``ON CONFLICT DO NOTHING``), so the client resends one
        whose response was lost. If the call still raises partway, some batches are in: call ``add_many``
        again with the same payloads and options (the queue reuses the ids it chose) or the same ``ids``,
        and only the missing tasks are added.

        Args:
            payloads: JSON-serialisable values.
            ids: your own ids, one per payload and all different; default: new ULIDs.
        """
        payloads = list(payloads)
        if ids is not None:
            ids = check_ids(ids, len(payloads))
        texts = [dumps(payload, "payload") for payload in payloads]
        key: Hashable = ("add", hashlib.sha256("\x00".join(texts).encode()).hexdigest(), repr(sorted(options.items())))
        if ids is None:
            ids = self._unanswered.take(key) or [self._ulids.new() for _ in payloads]
        statements = [self.add_statement(p, task_id=i, **options)[1] for p, i in zip(payloads, ids, strict=True)]
        added = 0
        try:
            for start in range(0, len(statements), _ADD_CHUNK):
                self._write(statements[start : start + _ADD_CHUNK])
                added = min(len(statements), start + _ADD_CHUNK)
        except BaseException as exc:
            self._unanswered.keep(key, ids)
            if added:
                exc.add_note(
                    f"{added} of {len(ids)} tasks were added before this error; add_many with the same payloads "
                    "and options (or ids) adds only the others"
                )
            raise
        return list(ids)

    # -- working -------------------------------------------------------------------------------------------

    def claim(
        self,
        agent_id: str,
        *,
        task_id: str | None = None,
        role: str | None = None,
        lease: float | None = None,
        claim_id: str | None = None,
    ) -> Task | None:
        """Claim the next available task (or the task ``task_id``) for ``agent_id``, atomically.

        The next task is the open one with the highest priority, then the earliest ``available_at``, then
        the oldest id; with ``role`` only tasks of that role qualify. Returns the claimed task, whose
        ``claim_id`` fences :meth:`complete`/:meth:`fail`/:meth:`heartbeat`, or ``None`` when nothing is
        available. ``lease`` (seconds) overrides the task's own timeout.

        A lost response costs nothing: the claim id is chosen here and sent with the claim, and a claim id
        that already holds a task claims nothing more and returns that task. The client resends the claim
        itself; if the call raised anyway, calling ``claim`` again with the same arguments reuses the claim
        id. Pass ``claim_id`` (any non-empty text, unique per claim) to retry across processes.
        """
        tasks = self._claim(agent_id, 1, task_id=task_id, role=role, lease=lease, claim_id=claim_id)
        return tasks[0] if tasks else None

    def claim_many(
        self,
        agent_id: str,
        count: int,
        *,
        role: str | None = None,
        lease: float | None = None,
        claim_id: str | None = None,
    ) -> list[Task]:
        """Claim up to ``count`` available tasks in one atomic request, in claim order (see :meth:`claim`).

        The tasks share one ``claim_id``; each is fenced on its own (``complete(task.id, task.claim_id)``),
        expires on its own and counts one attempt. One request instead of ``count`` is what a D1 board
        under the account's rate limit needs (``docs/tasks.md`` has the figures); finish them together with
        :meth:`complete_many`. A lost response costs nothing, as for :meth:`claim`.

        Example::

            tasks = queue.claim_many("agent-1", 10, lease=120)
            done = queue.complete_many([(t.id, t.claim_id, work(t.payload)) for t in tasks])
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an int >= 1 (got {count!r})")
        return self._claim(agent_id, count, task_id=None, role=role, lease=lease, claim_id=claim_id)

    def _claim(
        self,
        agent_id: str,
        count: int,
        *,
        task_id: str | None,
        role: str | None,
        lease: float | None,
        claim_id: str | None,
    ) -> list[Task]:
        if lease is not None and lease <= 0:
            raise ValueError(f"lease must be > 0 seconds (got {lease})")
        check_id(agent_id, "agent_id")
        key: Hashable = ("claim", agent_id, count, task_id, role, lease)
        if claim_id is not None:
            check_id(claim_id, "claim_id")
        else:
            claim_id = self._unanswered.take(key) or self._ulids.new()
        params: list[Any] = [claim_id, agent_id, self.now_ms(), None if lease is None else ms(lease), count]
        params += [p for p in (task_id, role) if p is not None]
        sql = self._sql.claim(by_id=task_id is not None, by_role=role is not None)
        claim = self.db.prepare(sql).bind(*params)
        try:
            _, held = self._write([claim, self.db.prepare(self._sql.claimed).bind(claim_id)])
        except BaseException:
            self._unanswered.keep(key, claim_id)
            raise
        return [Task.from_row(row) for row in held.results]

    def heartbeat(self, task_id: str, claim_id: str, *, lease: float | None = None) -> bool:
        """Extend a claim's lease to now + ``lease`` seconds (default: the task's timeout).

        Returns ``False`` if the claim is no longer current (the task expired and was claimed again, or was
        finished); then stop working on it. A resend after a lost response sets the same lease.
        """
        if lease is not None and lease <= 0:
            raise ValueError(f"lease must be > 0 seconds (got {lease})")
        lease_ms = None if lease is None else ms(lease)
        return self._fenced(self._sql.heartbeat, self.now_ms(), lease_ms, task_id, claim_id)

    def complete(self, task_id: str, claim_id: str, *, result: Any = None, then: Iterable[Statement] = ()) -> bool:
        """Mark the task done with a JSON-serialisable ``result``. ``False`` (and no change) if the claim is stale.

        ``then`` holds follow-up statements (the next step's task from :meth:`add_statement`, a message, a
        status update) that run in one atomic batch with the completion, after it, and only if the claim
        is current: a stale claimant gets ``False`` and none of them take effect. If a follow-up fails, the
        whole batch rolls back, the task stays claimed, and the error (a :class:`~d1sync.errors.SQLError`)
        is raised.

        A lost response never turns a completion into ``False``: the client resends the call, which
        recognises its own completion (same claim, result and time) and answers ``True`` without running
        ``then`` twice. If the call raised anyway, call it again with the same result: the queue reuses the
        time it sent.

        Example::

            _, review = queue.add_statement({"draft": draft}, role="reviewer")
            post = db.prepare("INSERT INTO messages (thread_id, content) VALUES (?, ?)").bind(thread, draft)
            if not queue.complete(task.id, task.claim_id, result={"draft": draft}, then=[post, review]):
                ...  # the claim was lost: another agent owns the task now; nothing was posted
        """
        follow_up = list(then)
        if not follow_up:
            return self.complete_many([(task_id, claim_id, result)])[0]
        result_json = dumps(result, "result")
        key: Hashable = ("complete", task_id, claim_id, result_json)
        now = self._unanswered.take(key) or self.now_ms()
        # D1 has no BEGIN, so a batch cannot branch on the claim: the fence statements fail when the claim is
        # stale or this call already committed, which rolls back the whole batch on every backend.
        batch = [
            self.db.prepare(self._sql.fence).bind(task_id, claim_id, now, result_json),
            self.db.prepare(self._sql.done_fence).bind(task_id, claim_id),
            self.db.prepare(self._sql.complete).bind(result_json, now, task_id, claim_id),
            *follow_up,
        ]
        try:
            self._write(batch)
        except SQLError as exc:
            if exc.fence in (CLAIM_FENCE, DONE_FENCE):
                return exc.fence == DONE_FENCE
            raise
        except BaseException:
            self._unanswered.keep(key, now)
            raise
        return True

    def complete_many(self, items: Iterable[tuple[str, str, Any]]) -> list[bool]:
        """Complete many claimed tasks, each ``(task_id, claim_id, result)``, 200 per request; one bool each.

        Each completion is fenced on its own, exactly as :meth:`complete` without ``then``: a stale one gets
        ``False`` and changes nothing, the others go through. Each batch is idempotent, and a resend after
        a lost response answers ``True`` for the completions it recognises as its own.
        """
        work = [(task_id, claim_id, dumps(result, "result")) for task_id, claim_id, result in items]
        keys: list[Hashable] = [("complete", *item) for item in work]
        fresh = self.now_ms()
        nows = [self._unanswered.take(key) or fresh for key in keys]
        done: list[bool] = []
        try:
            for start in range(0, len(work), _COMPLETE_CHUNK):
                chunk = zip(work[start : start + _COMPLETE_CHUNK], nows[start:], strict=False)
                statements = [
                    self.db.prepare(self._sql.complete).bind(result, now, task_id, claim_id)
                    for (task_id, claim_id, result), now in chunk
                ]
                done += [bool(r.results) for r in self._write(statements)]
        except BaseException:
            for key, now in list(zip(keys, nows, strict=True))[len(done) :]:
                self._unanswered.keep(key, now)
            raise
        return done

    def fail(self, task_id: str, claim_id: str, *, error: str | None = None, retry: bool = True) -> bool:
        """Record a failed attempt. ``False`` (and no change) if the claim is stale.

        With ``retry`` and attempts left, the task is open again after the queue's back-off: a random 50-100 %
        of ``min(cap, base * 2**(attempts - 1))`` seconds; without attempts left it is ``dead``.
        ``retry=False`` marks it ``failed`` at once. A resend after a lost response recognises its own
        failure and answers ``True`` again; so does calling ``fail`` again with the same arguments after it raised.
        """
        key: Hashable = ("fail", task_id, claim_id, error, bool(retry))
        now, jitter = self._unanswered.take(key) or (self.now_ms(), self.backoff.jitter(self._rng))
        backoff = ms(self.backoff.base), ms(self.backoff.cap)
        try:
            return self._fenced(self._sql.fail, retry, now, *backoff, error, task_id, claim_id, jitter)
        except BaseException:
            self._unanswered.keep(key, (now, jitter))
            raise

    def _write(self, statements: list[Statement]) -> list[Result]:
        # Every write of the queue is safe to apply twice, so a remote client may resend it.
        return self.db.batch(statements, idempotent=True)

    def _fenced(self, sql: str, *params: Any) -> bool:
        [result] = self._write([self.db.prepare(sql).bind(*params)])
        return bool(result.results)

    def expire(self) -> int:
        """Return every claim whose lease has run out to ``open`` (or ``dead`` when attempts are used up).

        Returns how many claims expired. Call it from any worker or a timer: it is one idempotent statement
        (a resend after a lost response expires nothing more, and may count fewer).
        """
        [result] = self._write([self.db.prepare(self._sql.expire).bind(self.now_ms())])
        return len(result.results)

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
