"""The outbox's own tables, inside the application's SQLite file, and small helpers around them.

``_d1sync_changes``  the change log: one row per captured write, appended by triggers inside the writer's
                     transaction (so a write and its change record commit or roll back together).
                     ``seq`` is AUTOINCREMENT: a seq is never reused, so an acknowledgement (a DELETE by
                     seq) can only ever remove the change rows it sent, even when it comes late (a worker
                     that lost its lease mid-send) or after ``untrack(drop_pending=True)`` emptied the log.
                     A plain rowid would be ~25% faster per tracked write, and would reuse the highest
                     deleted seq: that late DELETE would then drop another write's change. Not worth it.
``_d1sync_tables``   which tables are synced and how (key, columns, version column, mode).
``_d1sync_meta``     worker state that must survive restarts: the drain lease, back-off, last error/success.
``_d1sync_dead``     dead letters: changes D1 refused permanently, with the error text.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from d1sync.local import write_transaction

__all__ = ["SCHEMA", "ensure_schema", "get_meta", "holds_lease", "now_ms", "set_meta"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS _d1sync_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
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
    _upgrade_change_log(conn)


def _upgrade_change_log(conn: sqlite3.Connection) -> None:
    """Rebuild a change log made by an earlier build whose ``seq`` was a plain rowid (pending rows kept)."""
    if not _plain_rowid_log(conn):
        return
    with write_transaction(conn):
        if not _plain_rowid_log(conn):
            return  # another process upgraded it while we waited for the lock
        # Indexes or triggers someone put on the log (an audit trigger, say) go with DROP TABLE: keep them.
        extras = conn.execute(
            "SELECT sql FROM main.sqlite_master WHERE tbl_name = '_d1sync_changes' "
            "AND type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
        conn.execute("CREATE TEMP TABLE _d1sync_changes_old AS SELECT * FROM main._d1sync_changes")
        conn.execute("DROP TABLE main._d1sync_changes")
        conn.execute(SCHEMA.split(";")[0])
        conn.execute("INSERT INTO main._d1sync_changes SELECT * FROM temp._d1sync_changes_old ORDER BY seq")
        conn.execute("DROP TABLE temp._d1sync_changes_old")
        for (sql,) in extras:
            conn.execute(sql)


def _plain_rowid_log(conn: sqlite3.Connection) -> bool:
    query = "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = '_d1sync_changes'"
    row = conn.execute(query).fetchone()
    return row is not None and "AUTOINCREMENT" not in str(row[0]).upper()


def get_meta(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT v FROM _d1sync_meta WHERE k = ?", (key,)).fetchone()
    return default if row is None or row[0] is None else json.loads(row[0])


def holds_lease(conn: sqlite3.Connection, owner: str) -> bool:
    """True if ``owner`` (a worker's id) holds the drain lease, live or expired but not taken by another."""
    lease = get_meta(conn, "lease")
    return bool(lease) and lease["owner"] == owner


def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO _d1sync_meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        (key, json.dumps(value)),
    )
