"""A task as the queue returns it, and the value helpers the queue's calls share."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from d1sync.errors import ValueEncodingError

__all__ = ["Task", "TaskStatus", "check_id", "check_ids", "dumps", "ms"]

TaskStatus = Literal["open", "claimed", "done", "failed", "dead"]
"""A task's status (see :data:`~d1sync.tasks.sql.STATUSES` for the lifecycle order)."""


def ms(seconds: float) -> int:
    """Seconds as integer milliseconds."""
    return round(seconds * 1000)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def dumps(value: Any, what: str) -> str:
    """``value`` as compact JSON text; a :class:`~d1sync.errors.ValueEncodingError` naming ``what`` if it cannot be."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueEncodingError(f"task {what} must be JSON-serialisable: {exc}") from exc


def check_id(value: Any, what: str) -> str:
    """``value`` if it is a non-empty string (a task, claim or agent id), else a ValueError naming ``what``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string (got {value!r})")
    return value


def check_ids(ids: Iterable[Any], count: int) -> list[str]:
    """``ids`` as a list if they are ``count`` different non-empty strings, else one precise ValueError."""
    checked = [check_id(task_id, "every id") for task_id in ids]
    if len(checked) != count:
        raise ValueError(f"got {len(checked)} ids for {count} payloads; give one id per payload")
    if len(set(checked)) != len(checked):
        raise ValueError("ids must all be different: a repeated id would add only one task")
    return checked


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
