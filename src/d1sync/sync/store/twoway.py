"""A replica's own state inside the application's SQLite file: who it is, how far it has pulled.

``_d1sync_replica``   one JSON value per key: ``replica`` (:class:`Replica`: the id its push batches write
                      as their origin, its cursor in the remote log, whether the remote capture was seen) and
                      ``table:<name>`` (:class:`PullTable`: last pull, lag, a resync owed).
``_d1sync_applying``  empty except inside the transaction that applies pulled rows. The capture triggers of
                      replicated tables skip while it holds a row, so pulled rows are never captured as local
                      changes (and never pushed back). No other connection ever sees the row: it is inserted
                      and deleted inside one write transaction.

The id belongs to the file where it was made (host and path): a file copied elsewhere gets a new id and
resyncs, so two files never share one origin (each would skip the other's writes as its own echoes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d1sync.sqlite import Connection

__all__ = [
    "APPLYING_TABLE",
    "clear_pull_pause",
    "PullTable",
    "Replica",
    "ensure_replica_schema",
    "has_replica_schema",
    "load_pull_tables",
    "load_replica",
    "push_origin",
    "replica_identity",
    "save_pull_table",
    "save_replica",
    "skip_while_applying",
    "start_applying",
    "stop_applying",
]

APPLYING_TABLE = "_d1sync_applying"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS _d1sync_replica (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {APPLYING_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1));
"""


@dataclass(frozen=True)
class Replica:
    """Who this file is among the replicas, and how far it has pulled.

    Attributes:
        id: the origin its push batches write remotely (unique per file).
        host, path: where the id was made; elsewhere the file takes a new id (see the module docstring).
        cursor: the last remote log entry applied here (its ``seq``).
        installed: the remote capture was seen, so push batches set the origin.
        last_pull: epoch seconds of the last pull that reached the remote.
        last_prune: epoch seconds of this replica's last prune of the remote log.
        paused: why pulls wait (the remote capture is missing), with ``paused_at``.
    """

    id: str
    host: str
    path: str
    cursor: int = 0
    installed: bool = False
    last_pull: float | None = None
    last_prune: float | None = None
    paused: str | None = None
    paused_at: float | None = None


@dataclass(frozen=True)
class PullTable:
    """What the pull knows about one replicated table.

    Attributes:
        last_pull: epoch seconds of the last pull that applied rows of it.
        lag: seconds from the remote commit to the local apply, for the newest entry the last pull applied.
        rows: rows applied (upserted or deleted) since the table was replicated.
        resync: the table must be compared with the remote and made equal (a new replica, a cursor behind the
            pruned log, remote triggers that were missing).
        capture_missing: the remote capture triggers of the table were missing at the last pull; its resync
            waits until they are back (``d1sync replicate DB TABLE`` installs them).
        note: rows that could not be applied, and why, if any.
    """

    last_pull: float | None = None
    lag: float | None = None
    rows: int = 0
    resync: bool = False
    capture_missing: bool = False
    note: str | None = None


def ensure_replica_schema(conn: Connection) -> None:
    """Create the replica tables if missing (idempotent)."""
    conn.executescript(_SCHEMA)


def has_replica_schema(conn: Connection) -> bool:
    row = conn.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = '_d1sync_replica'")
    return row.fetchone() is not None


def start_applying(conn: Connection) -> None:
    """Mark this write transaction as applying pulled rows: capture triggers skip until :func:`stop_applying`."""
    conn.execute(f"INSERT OR REPLACE INTO {APPLYING_TABLE} (id) VALUES (1)")


def stop_applying(conn: Connection) -> None:
    """End what :func:`start_applying` began (inside the same transaction: no other connection sees it)."""
    conn.execute(f"DELETE FROM {APPLYING_TABLE}")


def skip_while_applying() -> str:
    """The ``WHEN`` clause of a replicated table's capture triggers (see the module docstring)."""
    return f" WHEN NOT EXISTS (SELECT 1 FROM {APPLYING_TABLE})"


def _load(conn: Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT v FROM _d1sync_replica WHERE k = ?", (key,)).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _save(conn: Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO _d1sync_replica (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        (key, json.dumps(dataclasses.asdict(value))),
    )


def load_replica(conn: Connection) -> Replica | None:
    """The stored replica state, or None (never replicated, or unreadable)."""
    if not has_replica_schema(conn):
        return None
    data = _load(conn, "replica")
    names = {f.name for f in dataclasses.fields(Replica)}
    try:
        return Replica(**{k: v for k, v in (data or {}).items() if k in names}) if data else None
    except TypeError:
        return None


def push_origin(conn: Connection) -> str | None:
    """The origin a push batch sets remotely: this replica's id once the remote capture was seen, else None
    (push-only files send no origin statements at all)."""
    replica = load_replica(conn)
    return replica.id if replica is not None and replica.installed else None


def clear_pull_pause(conn: Connection) -> None:
    """Let the next pass pull even if pulls wait for a fix. Call inside a write transaction."""
    replica = load_replica(conn)
    if replica is not None and replica.paused:
        save_replica(conn, dataclasses.replace(replica, paused=None, paused_at=None))


def save_replica(conn: Connection, replica: Replica) -> None:
    _save(conn, "replica", replica)


def _here(path: Path) -> tuple[str, str]:
    return socket.gethostname(), os.path.realpath(path)


def replica_identity(conn: Connection, path: Path, tables: list[str]) -> Replica:
    """This file's replica state; a new id (every table of ``tables`` owing a resync) when it has none or was
    made on another host or path. Call inside a write transaction."""
    host, where = _here(path)
    replica = load_replica(conn)
    if replica is not None and (replica.host, replica.path) == (host, where):
        return replica
    replica = Replica(id=f"{host.split('.')[0][:24]}-{uuid.uuid4().hex[:12]}", host=host, path=where)
    save_replica(conn, replica)
    for table in tables:
        save_pull_table(conn, table, dataclasses.replace(load_pull_tables(conn).get(table, PullTable()), resync=True))
    return replica


def load_pull_tables(conn: Connection) -> dict[str, PullTable]:
    """Every replicated table's pull state, by name."""
    if not has_replica_schema(conn):
        return {}
    names = {f.name for f in dataclasses.fields(PullTable)}
    found: dict[str, PullTable] = {}
    for key, text in conn.execute("SELECT k, v FROM _d1sync_replica WHERE k LIKE 'table:%'").fetchall():
        try:
            data = json.loads(text)
            found[str(key)[6:]] = PullTable(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError, AttributeError):
            continue  # a damaged state is the default one
    return found


def save_pull_table(conn: Connection, table: str, state: PullTable) -> None:
    _save(conn, f"table:{table}", state)
