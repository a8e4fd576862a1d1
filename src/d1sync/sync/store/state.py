"""The worker's typed state in the outbox's own tables, and the names d1sync gives what it keeps.

``_d1sync_meta`` holds what must survive restarts, one JSON value per key, read and written only as
:class:`WorkerState` (the drain lease, back-off, pause, last error, last pass); ``_d1sync_table_state`` one
JSON value per synced table (:class:`TableState`: a pause with its reason and fix, a re-send in progress, the
remote schema as checked). The tables themselves are created by :mod:`~d1sync.sync.store.upgrade`.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from d1sync.sqlite import Connection

__all__ = [
    "PREFIX",
    "NOW_MS_SQL",
    "has_outbox",
    "LastError",
    "LastPass",
    "Lease",
    "PauseCause",
    "RateBudget",
    "TableState",
    "WorkerState",
    "catch_up",
    "load_state",
    "load_table_states",
    "next_send",
    "now_ms",
    "save_state",
    "save_table_state",
    "schema_version",
]

PREFIX = "_d1sync_"
"""What every name d1sync keeps in a database starts with (tables, views, triggers), locally and on D1: code
that walks a database's tables skips these."""

# The SQL expression triggers use for "now" in epoch milliseconds (unixepoch('subsec') needs SQLite 3.42).
NOW_MS_SQL = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


def now_ms() -> int:
    return int(time.time() * 1000)


def schema_version(conn: Connection) -> int:
    """``PRAGMA schema_version``: moves with every DDL statement on the file (by any connection)."""
    return int(conn.execute("PRAGMA schema_version").fetchone()[0])


def has_outbox(conn: Connection) -> bool:
    """Whether the file holds an outbox (some table was tracked or declared there); reads only."""
    row = conn.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = '_d1sync_changes'")
    return row.fetchone() is not None


# -- typed worker state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """The single-drainer lease: which worker (``host:pid:nonce``) may send, until when, and since when it
    has held it (epoch seconds)."""

    owner: str
    expires: float
    since: float = 0.0


@dataclass(frozen=True)
class LastError:
    """The last failure the worker recorded."""

    at: float
    message: str
    kind: str
    code: int | None = None
    status: int | None = None


@dataclass(frozen=True)
class LastPass:
    """The last pass that delivered something: rows, requests, and how long it took."""

    rows: int
    requests: int
    seconds: float


@dataclass(frozen=True)
class RateBudget:
    """What the worker's rate limiter had left at its last success (for ``status`` in another process)."""

    available: float
    rate: float
    per: float


@dataclass(frozen=True)
class WorkerState:
    """Everything ``_d1sync_meta`` holds, typed. Times are epoch seconds."""

    lease: Lease | None = None
    failures: int = 0
    backoff_until: float = 0.0
    paused: str | None = None
    last_success: float | None = None
    last_error: LastError | None = None
    last_pass: LastPass | None = None
    rate_budget: RateBudget | None = None
    target: str | None = None
    """The target (its repr, never a token) the worker last synced to: pauses and remote checks belong to it."""
    log_mark: int | None = None
    """The seq of the change log's mark, if it has one (see :func:`delete_changes`)."""
    identity: str | None = None
    """This file's identity on D1's fence (see :mod:`d1sync.sync.remote`); made on the first send."""
    sent: int = 0
    """The number of the last send this file made (each push batch takes the next, committed before it goes)."""


_NESTED: dict[str, type[Any]] = {
    "lease": Lease,
    "last_error": LastError,
    "last_pass": LastPass,
    "rate_budget": RateBudget,
}
_FIELDS = {f.name for f in dataclasses.fields(WorkerState)}


def load_state(conn: Connection) -> WorkerState:
    """The worker state stored in the file (defaults for anything missing or unreadable)."""
    values: dict[str, Any] = {}
    for key, text in conn.execute("SELECT k, v FROM _d1sync_meta").fetchall():
        if key not in _FIELDS or text is None:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue  # a corrupt value must not stop the worker: the default stands in
        kind = _NESTED.get(key)
        if kind is not None:
            if not isinstance(value, dict):
                continue
            names = {f.name for f in dataclasses.fields(kind)}
            try:
                value = kind(**{k: v for k, v in value.items() if k in names})
            except TypeError:
                continue
        values[key] = value
    return WorkerState(**values)


def save_state(conn: Connection, **changes: Any) -> None:
    """Write some fields of the worker state (``save_state(conn, failures=0, paused=None)``).

    Call it inside :meth:`Connection.atomic <d1sync.sqlite.Connection.atomic>` when it must agree with
    another read or write.
    """
    unknown = set(changes) - _FIELDS
    if unknown:
        raise TypeError(f"unknown worker state field(s): {', '.join(sorted(unknown))}")
    for key, value in changes.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        conn.execute(
            "INSERT INTO _d1sync_meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            (key, json.dumps(value)),
        )


def next_send(conn: Connection) -> tuple[str, int]:
    """This file's identity and the number of its next send, committed before the send goes: a number is
    never used twice, even if the process dies with the request in flight."""
    with conn.atomic():
        state = load_state(conn)
        identity = state.identity or uuid.uuid4().hex
        save_state(conn, identity=identity, sent=state.sent + 1)
    return identity, state.sent + 1


def catch_up(conn: Connection, position: int) -> None:
    """Make this file's next send number come after ``position`` (what D1 holds for it): the file is taken
    as the truth from now on (``verify --repair`` after the file went back in time)."""
    with conn.atomic():
        if load_state(conn).sent < position:
            save_state(conn, sent=position)


# -- per-table state ---------------------------------------------------------------------------------------

PauseCause = Literal["local", "remote", "refused"]


@dataclass(frozen=True)
class TableState:
    """What the worker knows about one synced table beyond its spec.

    Attributes:
        paused: why this table is paused (the others keep flowing), or None.
        cause: what paused it: ``local`` (the local table changed in a way the worker cannot follow),
            ``remote`` (the remote table lacks it or a column) or ``refused`` (D1 refused every row of it).
        fix: the exact step that resumes it (a remote ``ALTER TABLE``, a command), when there is one.
        paused_at: epoch seconds of the pause.
        resend_after: while every row of the table is being queued again (after ADD COLUMN, a recreated or
            renamed table, a repair), the key text after which the next chunk starts; ``""`` before the first.
            None when no re-send is in progress.
        remote_columns: the remote table's columns as last checked; None until checked (or after a change).
        note: something the user should know that needs no action now (e.g. remote rows a recreated local
            table no longer holds).
        schema: the fingerprint of the local table's schema as last found equal on the remote (a table whose
            remote schema d1sync manages); None until then, or after the local schema changed.
        schema_version: the file's ``PRAGMA schema_version`` when ``schema`` was last compared with the local
            table (the local table is read again only when it moved).
        renames: local ``RENAME COLUMN`` s (old, new) that the remote table has not followed yet, as SQLite
            reported them by rewriting the capture triggers.
        renamed_from: the table's earlier local name, while the remote table still has it.
        last_schema_change: the last schema action d1sync took on the remote for this table: ``at`` (epoch
            seconds), ``action`` (``create``, ``rename``, ``alter``, ``rebuild``) and ``sql`` (its statements).
    """

    paused: str | None = None
    cause: PauseCause | None = None
    fix: str | None = None
    paused_at: float | None = None
    resend_after: str | None = None
    remote_columns: tuple[str, ...] | None = None
    note: str | None = None
    schema: str | None = None
    schema_version: int | None = None
    renames: tuple[tuple[str, str], ...] = ()
    renamed_from: str | None = None
    last_schema_change: dict[str, Any] | None = None


def load_table_states(conn: Connection) -> dict[str, TableState]:
    """Every table's state, by name (tables without one have the default)."""
    names = {f.name for f in dataclasses.fields(TableState)}
    states: dict[str, TableState] = {}
    for table, text in conn.execute("SELECT tbl, v FROM _d1sync_table_state").fetchall():
        try:
            data = json.loads(text)
            if isinstance(data.get("remote_columns"), list):
                data["remote_columns"] = tuple(data["remote_columns"])
            data["renames"] = tuple((str(old), str(new)) for old, new in data.get("renames") or ())
            states[str(table)] = TableState(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError, AttributeError):
            continue  # a damaged state is the default state: the worker checks the table again
    return states


def save_table_state(conn: Connection, table: str, state: TableState | None) -> None:
    """Store ``table``'s state (None or the default state: forget it)."""
    if state is None or state == TableState():
        conn.execute("DELETE FROM _d1sync_table_state WHERE tbl = ?", (table,))
        return
    conn.execute(
        "INSERT INTO _d1sync_table_state (tbl, v) VALUES (?, ?) ON CONFLICT (tbl) DO UPDATE SET v = excluded.v",
        (table, json.dumps(dataclasses.asdict(state))),
    )
