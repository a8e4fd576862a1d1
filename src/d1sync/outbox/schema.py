"""The outbox's own tables, inside the application's SQLite file, and small helpers around them.

``_d1sync_changes``  the change log: one row per captured write, appended by triggers inside the writer's
                     transaction (so a write and its change record commit or roll back together).
                     ``seq`` is a plain rowid, not AUTOINCREMENT (which costs a sqlite_sequence write per
                     captured row, ~30% of a tracked write): a seq can be reused only after the worker
                     deleted it, and an in-flight window's rows stay until acknowledged, so rows written
                     meanwhile always get higher seqs than the window's.
``_d1sync_tables``   which tables are synced and how (key, columns, version column, mode).
``_d1sync_meta``     worker state that must survive restarts: the drain lease, back-off, last error/success.
``_d1sync_dead``     dead letters: changes D1 refused permanently, with the error text.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

__all__ = ["SCHEMA", "ensure_schema", "get_meta", "now_ms", "set_meta"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS _d1sync_changes (
    seq        INTEGER PRIMARY KEY,
    tbl        TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    op         TEXT    NOT NULL CHECK (op IN ('upsert', 'delete')),
    payload    TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _d1sync_tables (
    tbl  TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _d1sync_meta (
    k TEXT PRIMARY KEY,
    v TEXT
);
CREATE TABLE IF NOT EXISTS _d1sync_dead (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl             TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    op              TEXT    NOT NULL,
    payload         TEXT,
    error           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 1,
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL
);
"""

# The SQL expression triggers use for "now" in epoch milliseconds (unixepoch('subsec') needs SQLite 3.42).
NOW_MS_SQL = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


def now_ms() -> int:
    return int(time.time() * 1000)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the outbox tables if missing (idempotent; safe under concurrent callers)."""
    conn.executescript(SCHEMA)


def get_meta(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT v FROM _d1sync_meta WHERE k = ?", (key,)).fetchone()
    return default if row is None or row[0] is None else json.loads(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO _d1sync_meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        (key, json.dumps(value)),
    )
