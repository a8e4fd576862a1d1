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
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from d1sync.database import Database, Row, Statement
from d1sync.errors import SQLError, ValueEncodingError
from d1sync.modules import ModuleStore, validate_module_name
from d1sync.sql import quote_identifier
from d1sync.ulid import ULIDGenerator

__all__ = ["STATUSES", "Task", "TaskQueue"]

STATUSES = ("open", "claimed", "done", "failed", "dead")
"""Every status a task can have, in lifecycle order."""

_ADD_CHUNK = 200
_CLAIM_LOST = "d1sync: claim lost"  # the fence's error text; no quotes, SQLite echoes it inside '...'
_MAX_SHIFT = 30  # retry_delay * 2**30 is already beyond any sensible cap

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
    status: str
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
            status=row["status"],
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
        db: any Database, or a ModuleStore (its module name becomes ``name``).
        name: ``None`` for the table ``tasks``; ``"agents"`` for ``agents_tasks`` (lower-case identifier).
        clock: current time in epoch seconds (default ``time.time``); inject a fake one in tests.
        timeout: default lease length in seconds for tasks added without ``timeout``.
        max_attempts: default number of claims a task gets before it is ``dead``.
        retry_delay: the back-off after the first failed attempt, in seconds; doubled for each further
            attempt up to ``max_retry_delay``.
        max_retry_delay: the cap of the back-off, in seconds.
        create: create the table and indexes if missing (idempotent, one batch). Pass ``False`` when the
            schema comes from a migration (``queue.schema_sql()`` gives its text).

    Example::

        queue = TaskQueue(db, name="agents", clock=lambda: fake_now)
        queue.table        # "agents_tasks"
    """

    def __init__(
        self,
        db: Database | ModuleStore,
        name: str | None = None,
        *,
        clock: Clock = time.time,
        timeout: float = 300.0,
        max_attempts: int = 3,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        create: bool = True,
    ) -> None:
        if isinstance(db, ModuleStore):
            name = name if name is not None else db.name
            db = db.db
        if name is not None:
            validate_module_name(name)
        if timeout <= 0 or max_attempts < 1 or retry_delay < 0 or max_retry_delay < retry_delay:
            raise ValueError(
                "need timeout > 0, max_attempts >= 1 and 0 <= retry_delay <= max_retry_delay "
                f"(got {timeout}, {max_attempts}, {retry_delay}, {max_retry_delay})"
            )
        self.db = db
        self.name = name
        self.table = "tasks" if name is None else f"{name}_tasks"
        self.clock = clock
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._ulids = ULIDGenerator(clock)
        self._sql = _Queries(quote_identifier(self.table))
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
            if _CLAIM_LOST in exc.message:
                return False
            raise
        return True

    def fail(self, task_id: str, claim_id: str, *, error: str | None = None, retry: bool = True) -> bool:
        """Record a failed attempt. ``False`` (and no change) if the claim is stale.

        With ``retry`` and attempts left, the task is open again after a back-off of ``retry_delay *
        2**(attempts - 1)`` seconds (capped at ``max_retry_delay``); without attempts left it is ``dead``.
        ``retry=False`` marks it ``failed`` at once.
        """
        return self._fenced(
            self._sql.fail,
            retry,
            self.now_ms(),
            _ms(self.retry_delay),
            _ms(self.max_retry_delay),
            error,
            task_id,
            claim_id,
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


class _Queries:
    """The SQL of one queue. The table name is the only thing spliced in: validated, then quoted."""

    _COLUMNS = (
        "id, role, status, priority, payload, available_at, timeout_ms, attempts, max_attempts, created_at, updated_at"
    )

    def __init__(self, table: str) -> None:
        t = table
        self.t = t
        self.add = f"INSERT INTO {t} ({self._COLUMNS}) VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, 0, ?7, ?8, ?8)"
        self.heartbeat = (
            f"UPDATE {t} SET lease_until = ?1 + COALESCE(?2, timeout_ms), updated_at = ?1 "
            "WHERE id = ?3 AND claim_id = ?4 AND status = 'claimed' RETURNING id"
        )
        self.complete = (
            f"UPDATE {t} SET status = 'done', result = ?1, lease_until = NULL, updated_at = ?2, finished_at = ?2 "
            "WHERE id = ?3 AND claim_id = ?4 AND status = 'claimed' RETURNING id"
        )
        # A statement that fails unless the claim is current. json_extract refuses a path that does not
        # start with '$' and quotes it in its error on every SQLite version (so on D1 too), and CASE only
        # evaluates the marker path when the claim is gone: the error text tells a lost claim apart from a
        # follow-up's own failure. No schema object needed (a RAISE() trigger would be one).
        self.fence = (
            f"SELECT json_extract('{{}}', CASE WHEN EXISTS (SELECT 1 FROM {t} WHERE id = ?1 AND claim_id = ?2 "
            f"AND status = 'claimed') THEN '$' ELSE '{_CLAIM_LOST}' END) AS fence"
        )
        # ?1 retry flag, ?2 now, ?3 retry delay ms, ?4 cap ms. The back-off doubles per attempt: a shift,
        # because D1 may lack SQLite's math functions (pow).
        retrying = "?1 <> 0 AND attempts < max_attempts"
        self.fail = (
            f"UPDATE {t} SET "
            f"status = CASE WHEN ?1 = 0 THEN 'failed' WHEN attempts < max_attempts THEN 'open' ELSE 'dead' END, "
            f"available_at = CASE WHEN {retrying} "
            f"THEN ?2 + MIN(?3 * (1 << MIN(attempts - 1, {_MAX_SHIFT})), ?4) ELSE available_at END, "
            f"finished_at = CASE WHEN {retrying} THEN NULL ELSE ?2 END, "
            "error = ?5, lease_until = NULL, updated_at = ?2 "
            "WHERE id = ?6 AND claim_id = ?7 AND status = 'claimed' RETURNING id"
        )
        self.expire = (
            f"UPDATE {t} SET status = CASE WHEN attempts < max_attempts THEN 'open' ELSE 'dead' END, "
            "finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ?1 END, "
            "error = 'lease expired (claimed by ' || COALESCE(claimed_by, '?') || ')', "
            "lease_until = NULL, updated_at = ?1 "
            "WHERE status = 'claimed' AND lease_until <= ?1 RETURNING id"
        )
        self.get = f"SELECT * FROM {t} WHERE id = ?"

    def schema(self, table: str) -> list[str]:
        t = self.t
        statuses = ", ".join(f"'{s}'" for s in STATUSES)
        return [
            f"""CREATE TABLE IF NOT EXISTS {t} (
    id           TEXT PRIMARY KEY NOT NULL,
    role         TEXT,
    status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ({statuses})),
    priority     INTEGER NOT NULL DEFAULT 0,
    payload      TEXT NOT NULL,
    available_at INTEGER NOT NULL,
    timeout_ms   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    claim_id     TEXT,
    claimed_by   TEXT,
    claimed_at   INTEGER,
    lease_until  INTEGER,
    result       TEXT,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
)""",
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(table + '_claim')} "
            f"ON {t} (status, priority DESC, available_at, id)",
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(table + '_claim_role')} "
            f"ON {t} (status, role, priority DESC, available_at, id)",
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(table + '_lease')} ON {t} (status, lease_until)",
        ]

    def claim(self, *, by_id: bool, by_role: bool) -> str:
        # ?1 claim id, ?2 agent, ?3 now, ?4 lease ms or NULL, then the task id and/or role.
        # One UPDATE with the choice in a subquery: atomic on SQLite and on D1 (no interactive transactions).
        role = f" AND role = ?{6 if by_id else 5}" if by_role else ""
        if by_id:
            where = f"id = ?5 AND status = 'open' AND available_at <= ?3{role}"
        else:
            where = (
                f"id = (SELECT id FROM {self.t} WHERE status = 'open' AND available_at <= ?3{role} "
                "ORDER BY priority DESC, available_at, id LIMIT 1) AND status = 'open'"
            )
        return (
            f"UPDATE {self.t} SET status = 'claimed', claim_id = ?1, claimed_by = ?2, claimed_at = ?3, "
            "lease_until = ?3 + COALESCE(?4, timeout_ms), attempts = attempts + 1, updated_at = ?3 "
            f"WHERE {where} RETURNING *"
        )

    def list(self, *, by_status: bool, by_role: bool) -> str:
        clauses = [c for c, on in (("status = ?", by_status), ("role = ?", by_role)) if on]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return f"SELECT * FROM {self.t}{where} ORDER BY id LIMIT ?"

    def stats(self, *, by_role: bool) -> str:
        counts = ", ".join(f"SUM(status = '{s}') AS {quote_identifier(s)}" for s in STATUSES)
        where = " WHERE role = ?2" if by_role else ""
        return (
            f"SELECT {counts}, COUNT(*) AS total, "
            "SUM(status = 'open' AND available_at <= ?1) AS ready, "
            "SUM(status = 'claimed' AND lease_until <= ?1) AS expired "
            f"FROM {self.t}{where}"
        )
