"""The outbox's own tables inside the application's SQLite file, and the worker's typed state.

``_d1sync_changes``  the change log: one row per captured write, appended by triggers inside the writer's
                     transaction (so a write and its change record commit or roll back together).
                     A seq is never reused, so an acknowledgement (a DELETE by seq) can only ever remove
                     the change rows it sent, even when it comes late (a worker that lost its lease
                     mid-send) or after ``untrack(drop_pending=True)`` emptied the log. Not with
                     AUTOINCREMENT, which costs every captured write an update of ``sqlite_sequence``: a
                     plain rowid is max(seq) + 1, so it is enough never to delete the row holding the
                     highest seq. :func:`delete_changes` (every deletion goes through it) replaces that
                     row by a *mark* (``tbl = ''``, ``op = 'mark'``) when it must go; readers skip marks
                     (:data:`LIVE`), and at most one exists.
``_d1sync_tables``   which tables are synced and how (key, columns, version column, mode).
``_d1sync_meta``     worker state that must survive restarts, one JSON value per key: the drain lease,
                     back-off, pause, last error, last pass. Read and written only as :class:`WorkerState`.
``_d1sync_dead``     dead letters: changes D1 refused permanently, with the error text.
``_d1sync_table_state`` per-table state, one JSON value per synced table (:class:`TableState`): a pause of
                     that table with its reason and fix, a re-send in progress, the remote schema as checked.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from d1sync.sqlite import Connection

__all__ = [
    "NOW_MS_SQL",
    "LIVE",
    "SCHEMA",
    "delete_changes",
    "has_outbox",
    "LastError",
    "LastPass",
    "Lease",
    "PauseCause",
    "RateBudget",
    "TableState",
    "WorkerState",
    "ensure_schema",
    "load_state",
    "load_table_states",
    "now_ms",
    "save_state",
    "save_table_state",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS _d1sync_changes (
    seq        INTEGER PRIMARY KEY,
    tbl        TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    op         TEXT    NOT NULL CHECK (op IN ('upsert', 'delete', 'mark')),
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
CREATE TABLE IF NOT EXISTS _d1sync_table_state (
    tbl TEXT PRIMARY KEY,
    v   TEXT NOT NULL
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
    last_failed_at  INTEGER NOT NULL,
    retrying        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS _d1sync_dead_key ON _d1sync_dead (tbl, key);
"""

# The SQL expression triggers use for "now" in epoch milliseconds (unixepoch('subsec') needs SQLite 3.42).
NOW_MS_SQL = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


def now_ms() -> int:
    return int(time.time() * 1000)


def ensure_schema(conn: Connection) -> None:
    """Create the outbox tables if missing (idempotent; safe under concurrent callers)."""
    if _has_schema(conn):
        return
    _upgrade_dead_letters(conn)
    conn.executescript(SCHEMA)
    _upgrade_change_log(conn)


def _upgrade_dead_letters(conn: Connection) -> None:
    """Give dead letters made by an earlier build their ``retrying`` flag (the index comes with SCHEMA)."""
    with conn.atomic():
        columns = {str(r[1]) for r in conn.execute("SELECT * FROM pragma_table_info('_d1sync_dead')")}
        if columns and "retrying" not in columns:
            conn.execute("ALTER TABLE _d1sync_dead ADD COLUMN retrying INTEGER NOT NULL DEFAULT 0")


def has_outbox(conn: Connection) -> bool:
    """Whether the file holds an outbox (some table was tracked or declared there); reads only."""
    row = conn.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = '_d1sync_changes'")
    return row.fetchone() is not None


def _has_schema(conn: Connection) -> bool:
    rows = conn.execute(
        "SELECT name, sql FROM main.sqlite_master WHERE type = 'table' AND name IN "
        "('_d1sync_changes', '_d1sync_tables', '_d1sync_meta', '_d1sync_dead', '_d1sync_table_state')"
    ).fetchall()
    sql = {str(name): str(text) for name, text in rows}
    return len(rows) == 5 and "'mark'" in sql["_d1sync_changes"] and "retrying" in sql["_d1sync_dead"]


LIVE = "tbl <> ''"
"""The SQL condition that leaves out the log's mark (see the module docstring): every reader adds it."""


def delete_changes(conn: Connection, where: str, params: Sequence[Any] = ()) -> list[int]:
    """Delete the change rows matching ``where`` (never the mark); the seqs deleted. Call it inside
    :meth:`Connection.atomic <d1sync.sqlite.Connection.atomic>`.

    If the row holding the highest seq goes, a mark takes its seq, so the next captured write gets a higher
    one; the previous mark, if any, is no longer needed then and goes (its seq is kept in the worker state,
    so finding it costs one lookup, not a scan of the log).
    """
    top = conn.execute("SELECT max(seq) FROM _d1sync_changes").fetchone()[0]
    deleted = [
        int(r[0]) for r in conn.execute(f"DELETE FROM _d1sync_changes WHERE ({where}) AND {LIVE} RETURNING seq", params)
    ]
    if top is None or not deleted or top not in deleted:
        return deleted
    old = load_state(conn).log_mark
    if old is not None and old != top:
        conn.execute("DELETE FROM _d1sync_changes WHERE seq = ? AND tbl = ''", (old,))
    conn.execute("INSERT INTO _d1sync_changes (seq, tbl, key, op, created_at) VALUES (?, '', '', 'mark', 0)", (top,))
    save_state(conn, log_mark=top)
    return deleted


def _upgrade_change_log(conn: Connection) -> None:
    """Rebuild a change log made by an earlier build (AUTOINCREMENT, or a plain rowid without marks) into
    today's, keeping its pending rows and its highest seq ever issued."""
    if not _old_log(conn):
        return
    with conn.atomic():
        if not _old_log(conn):
            return  # another process upgraded it while we waited for the lock
        # Indexes or triggers someone put on the log (an audit trigger, say) go with DROP TABLE: keep them.
        extras = conn.execute(
            "SELECT sql FROM main.sqlite_master WHERE tbl_name = '_d1sync_changes' "
            "AND type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
        issued = conn.execute("SELECT max(seq) FROM main._d1sync_changes").fetchone()[0] or 0
        if conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            counter = conn.execute("SELECT seq FROM main.sqlite_sequence WHERE name = '_d1sync_changes'").fetchone()
            issued = max(issued, int(counter[0]) if counter else 0)
        conn.execute("CREATE TEMP TABLE _d1sync_changes_old AS SELECT * FROM main._d1sync_changes")
        conn.execute("DROP TABLE main._d1sync_changes")
        conn.execute(SCHEMA.split(";")[0])
        conn.execute("INSERT INTO main._d1sync_changes SELECT * FROM temp._d1sync_changes_old ORDER BY seq")
        conn.execute("DROP TABLE temp._d1sync_changes_old")
        if issued and not conn.execute("SELECT 1 FROM main._d1sync_changes WHERE seq = ?", (issued,)).fetchone():
            conn.execute("INSERT INTO main._d1sync_changes VALUES (?, '', '', 'mark', NULL, 0)", (issued,))
            save_state(conn, log_mark=issued)
        for (sql,) in extras:
            conn.execute(sql)


def _old_log(conn: Connection) -> bool:
    query = "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = '_d1sync_changes'"
    row = conn.execute(query).fetchone()
    return row is not None and "'mark'" not in str(row[0])


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
    """

    paused: str | None = None
    cause: PauseCause | None = None
    fix: str | None = None
    paused_at: float | None = None
    resend_after: str | None = None
    remote_columns: tuple[str, ...] | None = None
    note: str | None = None


def load_table_states(conn: Connection) -> dict[str, TableState]:
    """Every table's state, by name (tables without one have the default)."""
    names = {f.name for f in dataclasses.fields(TableState)}
    states: dict[str, TableState] = {}
    for table, text in conn.execute("SELECT tbl, v FROM _d1sync_table_state").fetchall():
        try:
            data = json.loads(text)
            if isinstance(data.get("remote_columns"), list):
                data["remote_columns"] = tuple(data["remote_columns"])
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
