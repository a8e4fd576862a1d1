"""The task queue: an atomic task board on any Database (a SQLite file, the emulator or D1).

See :mod:`d1sync.tasks.queue` and ``docs/tasks.md``.
"""

from __future__ import annotations

from d1sync.tasks.queue import STATUSES, Task, TaskQueue, TaskStatus
from d1sync.tasks.ulid import ULIDGenerator, is_ulid, new_ulid, ulid_time_ms

__all__ = ["STATUSES", "Task", "TaskQueue", "TaskStatus", "ULIDGenerator", "is_ulid", "new_ulid", "ulid_time_ms"]
