"""Restore a local SQLite file into D1: an exact SQL dump (:mod:`~d1sync.restore.dump`) sent through D1's
import into a new or empty database, then verified (:mod:`~d1sync.restore.load`). See ``docs/restore.md``."""

from __future__ import annotations

from d1sync.restore.dump import iter_dump, open_plan, sql_literal, write_dump
from d1sync.restore.load import RestoreReport, restore

__all__ = ["RestoreReport", "iter_dump", "open_plan", "restore", "sql_literal", "write_dump"]
