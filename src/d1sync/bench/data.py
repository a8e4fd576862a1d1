"""The benchmark backlog: one table of 8 columns of mixed types, generated deterministically in SQL.

Every strategy drains a copy of the same file, so all three see byte-identical data. The values cover what
D1 makes awkward: REAL amounts, BLOB payloads (hex + ``unhex()`` on the wire), integers beyond 2**53 (they
must travel as text), NULLs, quotes and non-ASCII text (they inflate JSON escaping).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from d1sync.sqlite import connect
from d1sync.sync import Outbox

__all__ = ["COLUMNS", "CREATE_TABLE", "TABLE", "create_table", "fill_rows", "make_backlog"]

TABLE = "bench_rows"
COLUMNS = ("id", "account", "amount", "quantity", "active", "payload", "created_at", "note")

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id         INTEGER PRIMARY KEY,
    account    TEXT    NOT NULL,
    amount     REAL    NOT NULL,
    quantity   INTEGER NOT NULL,
    active     INTEGER NOT NULL,
    payload    BLOB,
    created_at INTEGER NOT NULL,
    note       TEXT
)"""

# Deterministic "random-looking" values from the row number: multiplicative hashing, no RNG state.
# Every 97th quantity is beyond 2**53 (exact only as text on the wire); every other note is NULL.
_ROW_EXPRESSIONS = """
    i,
    'acct-' || printf('%06d', (i * 7919) % 1000000),
    ((i * 2654435761) % 10000000) / 100.0,
    CASE WHEN i % 97 = 0 THEN 9007199254740993 + i ELSE (i * 40503) % 1000000 END,
    i % 2,
    unhex(printf('%08x%08x', (i * 2654435761) % 4294967296, (i * 40503 + 17) % 4294967296)),
    1700000000000 + i * 1000,
    CASE WHEN i % 2 = 0 THEN NULL ELSE 'note ' || i || ': "quoted", café, ' || substr('abcdefghij', 1 + i % 10) END
"""


def create_table(conn: sqlite3.Connection, table: str = TABLE) -> None:
    """Create the benchmark table (named ``table``; the schema is always the same)."""
    conn.execute(CREATE_TABLE.replace(f"EXISTS {TABLE} ", f'EXISTS "{table}" '))


def fill_rows(conn: sqlite3.Connection, first: int, count: int, table: str = TABLE) -> None:
    """Insert rows ``first .. first + count - 1`` in one transaction (triggers, if any, capture them)."""
    if count <= 0:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
            f'INSERT INTO "{table}" ({", ".join(COLUMNS)}) SELECT {_ROW_EXPRESSIONS} FROM s',
            (first, first + count - 1),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def make_backlog(path: str | os.PathLike[str], rows: int) -> Path:
    """Create ``path`` with the benchmark table tracked by an Outbox and ``rows`` captured, unsent writes."""
    path = Path(path)
    conn = connect(path)
    try:
        create_table(conn)
        with Outbox(path) as outbox:
            outbox.track(TABLE)
        fill_rows(conn, 1, rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path
