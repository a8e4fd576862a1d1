"""Create the outbox's tables, and bring those of an earlier build up to today's layout in place, keeping
everything pending.

Two earlier layouts of the change log exist: ``(seq AUTOINCREMENT, tbl, key, op, payload, created_at)`` and
the same with a plain rowid and a ``'mark'`` row. Both hold table names and key texts; today's log holds table
ids and raw keys (see :mod:`d1sync.sync.store.log`). The upgrade, in one transaction:

* copies every pending row, in seq order, with its key text as it was (ops 3 and 4 say "JSON key");
* keeps the highest seq ever issued (a mark holds it), so no late acknowledgement can delete a new change;
* turns the rows' ``created_at`` into clock stamps, so the oldest pending age survives it;
* keeps indexes and triggers someone put on the log (an audit trigger, say), where they still apply;
* re-creates the capture triggers of every tracked table, which wrote the old columns.

Writers in other processes wait for the upgrade's write lock, then run the new triggers.

The outbox's own tables inside the application's SQLite file (:data:`SCHEMA`):

``_d1sync_changes``  the change log: one row per captured write, appended by triggers inside the writer's
                     transaction. Its layout, and what it guarantees, are :mod:`d1sync.sync.store.log`'s.
``_d1sync_table_ids`` a small integer id per table name that ever had changes (the log stores the id).
``_d1sync_clock``    when the worker first saw the log reach a seq (for "oldest pending age").
``_d1sync_pending``  a view of the change log as readers want it: table names, key texts, ``'upsert'`` or
                     ``'delete'``, and no mark.
``_d1sync_tables``   which tables are synced and how (key, columns, version column, mode).
``_d1sync_meta``     worker state that must survive restarts, one JSON value per key: the drain lease,
                     back-off, pause, last error, last pass, the learned request size. A new field is a new
                     key, so an earlier file needs no upgrade: a missing key reads as its default (and an
                     earlier build ignores keys it does not know). Read and written only as
                     :class:`~d1sync.sync.store.state.WorkerState`.
``_d1sync_dead``     dead letters: changes D1 refused permanently, with the error text.
``_d1sync_table_state`` per-table state, one JSON value per synced table
                     (:class:`~d1sync.sync.store.state.TableState`): a pause of that table with its reason and
                     fix, a re-send in progress, the remote schema as checked.
"""

from __future__ import annotations

import logging

from d1sync.errors import D1SyncError
from d1sync.sql import split_statements
from d1sync.sqlite import Connection
from d1sync.sync.codec import key_sql
from d1sync.sync.store.log import insert_mark, json_op_sql
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.triggers import install_triggers, remove_triggers, trigger_names

__all__ = ["SCHEMA", "ensure_schema", "upgrade"]

# The key column has no declared type, so it keeps each key value as the table held it (see d1sync.sync.store.log).
CHANGE_LOG = """
CREATE TABLE IF NOT EXISTS _d1sync_changes (
    seq     INTEGER PRIMARY KEY,
    tid     INTEGER NOT NULL,
    key             NOT NULL,
    op      INTEGER NOT NULL,
    payload TEXT
)"""

SCHEMA = f"""
{CHANGE_LOG};
CREATE TABLE IF NOT EXISTS _d1sync_table_ids (
    tid INTEGER PRIMARY KEY,
    tbl TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS _d1sync_clock (
    seq INTEGER PRIMARY KEY,
    at  INTEGER NOT NULL
);
CREATE VIEW IF NOT EXISTS _d1sync_pending (seq, tbl, key, op, payload) AS
    SELECT c.seq, i.tbl, CASE WHEN c.op > 2 THEN c.key ELSE {key_sql("c", ["key"])} END,
           CASE WHEN c.op IN (1, 3) THEN 'upsert' ELSE 'delete' END, c.payload
    FROM _d1sync_changes AS c JOIN _d1sync_table_ids AS i ON i.tid = c.tid;
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

log = logging.getLogger("d1sync.sync")


def ensure_schema(conn: Connection) -> None:
    """Create the outbox tables if missing, and upgrade those of an earlier build in place (idempotent; safe
    under concurrent callers)."""
    if not _has_schema(conn):
        upgrade(conn)


_OBJECTS = (
    "_d1sync_changes",
    "_d1sync_table_ids",
    "_d1sync_clock",
    "_d1sync_pending",
    "_d1sync_tables",
    "_d1sync_meta",
    "_d1sync_dead",
    "_d1sync_table_state",
)


def _has_schema(conn: Connection) -> bool:
    rows = conn.execute(
        f"SELECT name, sql FROM main.sqlite_master WHERE type IN ('table', 'view') "
        f"AND name IN ({', '.join('?' * len(_OBJECTS))})",
        _OBJECTS,
    ).fetchall()
    sql = {str(name): str(text) for name, text in rows}
    return len(rows) == len(_OBJECTS) and " tid " in sql["_d1sync_changes"] and "retrying" in sql["_d1sync_dead"]


def upgrade(conn: Connection) -> None:
    """Create the outbox's tables, upgrading an earlier build's (see the module docstring)."""
    with conn.atomic():
        columns = {str(r[1]) for r in conn.execute("SELECT * FROM pragma_table_info('_d1sync_dead')")}
        if columns and "retrying" not in columns:
            conn.execute("ALTER TABLE _d1sync_dead ADD COLUMN retrying INTEGER NOT NULL DEFAULT 0")
        old = _old_log_columns(conn)
        if old:
            _upgrade_log(conn, old)  # creates the tables once the old log is out of the way
            _reinstall_capture(conn)
        else:
            _create(conn)


def _create(conn: Connection) -> None:
    for statement in split_statements(SCHEMA):
        conn.execute(statement)


def _old_log_columns(conn: Connection) -> set[str]:
    """The columns of a change log of an earlier layout (empty: none, or today's)."""
    columns = {str(r[1]) for r in conn.execute("SELECT * FROM pragma_table_info('_d1sync_changes')")}
    return columns if columns and "tid" not in columns else set()


def _upgrade_log(conn: Connection, columns: set[str]) -> None:
    extras = conn.execute(
        "SELECT name, sql FROM main.sqlite_master WHERE tbl_name = '_d1sync_changes' "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    ).fetchall()
    issued = conn.execute("SELECT max(seq) FROM main._d1sync_changes").fetchone()[0] or 0
    if conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        counter = conn.execute("SELECT seq FROM main.sqlite_sequence WHERE name = '_d1sync_changes'").fetchone()
        issued = max(issued, int(counter[0]) if counter else 0)
    conn.execute("CREATE TEMP TABLE _d1sync_changes_old AS SELECT * FROM main._d1sync_changes")
    conn.execute("DROP TABLE main._d1sync_changes")
    _create(conn)
    live = "o.tbl <> '' AND o.op IN ('upsert', 'delete')"
    conn.execute(
        "INSERT INTO _d1sync_table_ids (tbl) SELECT o.tbl FROM temp._d1sync_changes_old AS o "
        f"WHERE {live} GROUP BY o.tbl ORDER BY min(o.seq) ON CONFLICT (tbl) DO NOTHING"
    )
    payload = "o.payload" if "payload" in columns else "NULL"
    conn.execute(
        f"INSERT INTO main._d1sync_changes (seq, tid, key, op, payload) "
        f"SELECT o.seq, i.tid, o.key, {json_op_sql('o.op')}, {payload} FROM temp._d1sync_changes_old AS o "
        "JOIN _d1sync_table_ids AS i ON i.tbl = o.tbl "
        f"WHERE {live} ORDER BY o.seq"
    )
    if "created_at" in columns:
        # One stamp per second of writes: the oldest pending age stays exact to the second.
        conn.execute(
            "INSERT INTO _d1sync_clock (seq, at) SELECT max(o.seq), max(o.created_at) "
            f"FROM temp._d1sync_changes_old AS o WHERE {live} AND o.created_at > 0 GROUP BY o.created_at / 1000 "
            "ON CONFLICT (seq) DO NOTHING"
        )
    conn.execute("DROP TABLE temp._d1sync_changes_old")
    if issued and not conn.execute("SELECT 1 FROM main._d1sync_changes WHERE seq = ?", (issued,)).fetchone():
        insert_mark(conn, issued)
    for name, sql in extras:
        try:
            conn.execute(sql)
        except D1SyncError as exc:
            log.warning("dropped %s on the change log while upgrading it: it no longer applies (%s)", name, exc)


def _reinstall_capture(conn: Connection) -> None:
    """New capture triggers for every tracked table, on whichever table its triggers sit now (a table renamed
    since the last pass keeps its triggers, which is how the worker notices the rename)."""
    for spec in load_specs(conn).values():
        if spec.mode != "track":
            continue
        names = trigger_names(spec.name)
        row = conn.execute(
            "SELECT tbl_name FROM main.sqlite_master WHERE type = 'trigger' AND name IN (?, ?, ?)", names
        ).fetchone()
        if row is None:
            continue  # the table is gone (the worker pauses it), or its capture was removed
        on = str(row[0])
        try:
            install_triggers(conn, spec, on=on)
        except D1SyncError as exc:  # a renamed table whose columns changed too: the worker re-sends it
            remove_triggers(conn, spec.name)
            log.warning("capture of %s (now %s) could not be upgraded, the worker re-sends it: %s", spec.name, on, exc)
