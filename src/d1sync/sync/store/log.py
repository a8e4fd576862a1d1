"""The change log: what a captured write costs the writer, how readers see it, and how rows leave it.

Every tracked write runs a capture trigger that appends one row to ``_d1sync_changes``, inside the writer's
transaction. That row is all capture costs the writer, so it is as small and as cheap to build as it can be:

========  ===========================================================================================
seq       ``INTEGER PRIMARY KEY``: a plain rowid, so an append is max(seq) + 1 (no AUTOINCREMENT counter)
tid       the table, by its id in ``_d1sync_table_ids`` (a literal in the trigger; no text to compare)
key       a one-column key: the key value itself, as the table holds it (the column has no affinity, so
          integers stay integers, BLOBs stay bytes, text keeps its NUL characters). A composite key: the
          codec's JSON text of its values (:func:`d1sync.sync.codec.key_sql`).
op        ``1`` upsert / ``2`` delete with a raw key, ``3`` / ``4`` with a JSON key, ``0`` the mark
payload   the row of an enqueued upsert (codec JSON); NULL for captured writes (their state is read at send)
========  ===========================================================================================

No timestamp either: "oldest pending age" comes from ``_d1sync_clock``, where the worker notes, once per
pass, the highest seq it has seen (:func:`stamp`). The age of the oldest pending change is then known to
within one pass, without the writer paying for a clock read on every row.

Readers never decode that layout themselves: they read the view ``_d1sync_pending`` (:data:`PENDING`), which
gives each live row as ``(seq, tbl, key, op, payload)`` with the table's name, the key's canonical text (the
one :func:`~d1sync.sync.codec.encode_key` makes; a key written raw by a trigger and the same key written as
JSON by :func:`append_changes` read alike) and ``'upsert'`` or ``'delete'``.

**Seqs never repeat**, so an acknowledgement (a DELETE by seq) can only ever remove the change rows it sent,
even when it comes late (a worker that lost its lease mid-send) or after ``untrack(drop_pending=True)``
emptied the log. A plain rowid is max(seq) + 1, so it is enough never to delete the row holding the highest
seq: :func:`delete_changes` (every deletion goes through it) replaces that row by a *mark* (``tid = 0``,
``op = 0``) when it must go. The view leaves marks out (no table has id 0), and at most one exists.

Table ids are never deleted nor reused: a change row that outlives its table's spec (untracked with changes
pending) still names its table, and the worker dead-letters it by that name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from d1sync.sqlite import Connection, Rows
from d1sync.sync.model import Change, seq_param
from d1sync.sync.store.state import load_state, save_state

__all__ = [
    "DELETE",
    "JSON_KEY",
    "LIVE",
    "PENDING",
    "UPSERT",
    "acknowledge_through",
    "append_changes",
    "delete_changes",
    "has_pending",
    "insert_mark",
    "issued_seq",
    "json_op_sql",
    "keys_changed_after",
    "keys_written_after",
    "oldest_pending_at",
    "pending_count",
    "pending_keys",
    "pending_keys_of",
    "pending_keys_sql",
    "pending_of",
    "pending_per_table",
    "pending_tables_through",
    "pending_through",
    "read_log",
    "rename_changes",
    "rows_through",
    "stamp",
    "table_changes",
    "table_id",
]

UPSERT = 1
DELETE = 2
JSON_KEY = 2
"""Added to ``UPSERT`` or ``DELETE`` when the key is stored as the codec's JSON text instead of its value."""

PENDING = "_d1sync_pending"
"""The view every reader of the log uses: ``(seq, tbl, key, op, payload)``, live rows only."""

LIVE = "tid <> 0"
"""The SQL condition that leaves out the mark when ``_d1sync_changes`` is read directly (counts, seqs)."""

_OPS = {"upsert": UPSERT + JSON_KEY, "delete": DELETE + JSON_KEY}


def json_op_sql(op: str) -> str:
    """SQL turning the op text ``op`` (``'upsert'`` or ``'delete'``) into the code of a row with a JSON key."""
    return f"CASE {op} WHEN 'upsert' THEN {_OPS['upsert']} ELSE {_OPS['delete']} END"


def table_id(conn: Connection, table: str) -> int:
    """The id of ``table`` in the change log, given to it on first use. Call inside a write transaction."""
    conn.execute("INSERT INTO _d1sync_table_ids (tbl) VALUES (?) ON CONFLICT (tbl) DO NOTHING", (table,))
    return int(conn.execute("SELECT tid FROM _d1sync_table_ids WHERE tbl = ?", (table,)).fetchone()[0])


def append_changes(conn: Connection, table: str, changes: Iterable[tuple[str, str, str | None]]) -> int:
    """Append ``(key text, 'upsert' or 'delete', payload)`` rows for ``table`` (key texts of the codec, as
    :func:`~d1sync.sync.codec.encode_key` makes them); how many. Call inside a write transaction."""
    tid = table_id(conn, table)
    return conn.executemany(
        "INSERT INTO _d1sync_changes (tid, key, op, payload) VALUES (?, ?, ?, ?)",
        ((tid, key, _OPS[op], payload) for key, op, payload in changes),
    )


def delete_changes(conn: Connection, where: str, params: Sequence[Any] = ()) -> list[int]:
    """Delete the change rows matching ``where`` (a condition on ``_d1sync_changes``; never the mark); the
    seqs deleted. Call it inside :meth:`Connection.atomic <d1sync.sqlite.Connection.atomic>`.

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
        conn.execute("DELETE FROM _d1sync_changes WHERE seq = ? AND tid = 0", (old,))
    insert_mark(conn, top)
    return deleted


def acknowledge_through(conn: Connection, tables: Sequence[str], through: int) -> int:
    """Delete every change row of ``tables`` up to seq ``through`` (what an import delivered); how many.
    :func:`delete_changes` without listing the seqs, which for millions of rows would cost more memory than
    the rows themselves. Call it inside :meth:`Connection.atomic <d1sync.sqlite.Connection.atomic>`."""
    top = conn.execute("SELECT max(seq) FROM _d1sync_changes").fetchone()[0]
    where = "seq <= ? AND tid IN (SELECT tid FROM _d1sync_table_ids WHERE tbl IN (SELECT value FROM json_each(?)))"
    params = (through, json.dumps(list(tables)))
    exists = f"SELECT EXISTS (SELECT 1 FROM _d1sync_changes WHERE seq = ? AND {where})"
    held = top is not None and bool(conn.execute(exists, (top, *params)).fetchone()[0])
    count = conn.execute(f"DELETE FROM _d1sync_changes WHERE {where} AND {LIVE}", params).rowcount
    if held:
        old = load_state(conn).log_mark
        if old is not None and old != top:
            conn.execute("DELETE FROM _d1sync_changes WHERE seq = ? AND tid = 0", (old,))
        insert_mark(conn, top)
    return int(count)


def pending_keys_sql(table: str, through: int) -> tuple[str, tuple[str, int]]:
    """A query of the distinct pending keys (codec key texts, as ``key``) of ``table`` up to seq ``through``,
    with its parameters: a subquery for a reader that joins them to the table's rows."""
    return f"SELECT DISTINCT key FROM {PENDING} WHERE tbl = ? AND seq <= ?", (table, through)


def insert_mark(conn: Connection, seq: int) -> None:
    """Hold ``seq`` in the log with a mark, so no later change gets it (see the module docstring)."""
    conn.execute("INSERT INTO _d1sync_changes (seq, tid, key, op) VALUES (?, 0, '', 0)", (seq,))
    save_state(conn, log_mark=seq)


def table_changes(table: str) -> tuple[str, tuple[str]]:
    """The :func:`delete_changes` condition for every change row of ``table``."""
    return "tid IN (SELECT tid FROM _d1sync_table_ids WHERE tbl = ?)", (table,)


def rename_changes(conn: Connection, old: str, new: str) -> None:
    """Pending changes of table ``old`` now belong to ``new`` (a local RENAME TABLE). Call inside a write
    transaction."""
    conn.execute("UPDATE _d1sync_changes SET tid = ? WHERE tid = ?", (table_id(conn, new), table_id(conn, old)))


# -- windows -----------------------------------------------------------------------------------------------


def issued_seq(conn: Connection) -> int:
    """The highest seq issued so far (the mark's, when it holds it); 0 for a log never written."""
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM _d1sync_changes").fetchone()[0])


def read_log(
    conn: Connection, limit: int, skipped: str | None, *, after: int = 0, exclude: Sequence[Change] = ()
) -> tuple[Rows, bool]:
    """The next ``limit`` pending change rows ``(seq, tbl, key, op, payload)`` in seq order: after ``after``,
    not in the tables of ``skipped`` (a JSON array), not those of ``exclude``."""
    conditions = ["seq > ?"]
    params: list[object] = [after]
    if skipped is not None:
        conditions.append("tbl NOT IN (SELECT value FROM json_each(?))")
        params.append(skipped)
    if exclude:
        conditions.append("seq NOT IN (SELECT value FROM json_each(?))")
        params.append(seq_param(exclude))
    query = f"SELECT seq, tbl, key, op, payload FROM {PENDING} WHERE {' AND '.join(conditions)} ORDER BY seq LIMIT ?"
    return conn.read(query, (*params, limit))


def keys_written_after(conn: Connection, seq: int, limit: int) -> set[tuple[str, str]] | None:
    """The keys with a change row written after ``seq``; None when there are more than ``limit`` such rows
    (not worth reading them all)."""
    rows, _ = conn.read(f"SELECT tbl, key FROM {PENDING} WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit + 1))
    found = rows.fetchall()
    return None if len(found) > limit else {(table, key) for table, key in found}


def keys_changed_after(conn: Connection, seq: int, tables: Iterable[str]) -> list[tuple[str, str]]:
    """The distinct ``(table, key)`` of ``tables`` with a pending change after ``seq``."""
    moving, _ = conn.read(
        f"SELECT DISTINCT tbl, key FROM {PENDING} WHERE seq > ? AND tbl IN (SELECT value FROM json_each(?))",
        (seq, json.dumps(sorted(tables))),
    )
    return [(str(table), key) for table, key in moving]


def rows_through(conn: Connection, seq: int, skipped: str | None) -> int:
    """How many change rows (the mark aside) lie at or below ``seq``, leaving out the tables of ``skipped``
    (a JSON array)."""
    tables = "SELECT tid FROM _d1sync_table_ids"
    params: list[object] = [seq]
    if skipped is not None:
        tables += " WHERE tbl NOT IN (SELECT value FROM json_each(?))"
        params.append(skipped)
    query = f"SELECT count(*) FROM _d1sync_changes WHERE seq <= ? AND tid IN ({tables})"
    return int(conn.execute(query, params).fetchone()[0])


# -- counts ------------------------------------------------------------------------------------------------


def pending_count(conn: Connection, *, skip: Iterable[str] = ()) -> int:
    """Change-log rows not yet acknowledged (leaving out the tables in ``skip``)."""
    tables = sorted(skip)
    if not tables:
        return int(conn.execute(f"SELECT count(*) FROM _d1sync_changes WHERE {LIVE}").fetchone()[0])
    sql = (
        f"SELECT count(*) FROM _d1sync_changes WHERE {LIVE} AND tid NOT IN "
        "(SELECT tid FROM _d1sync_table_ids WHERE tbl IN (SELECT value FROM json_each(?)))"
    )
    return int(conn.execute(sql, (json.dumps(tables),)).fetchone()[0])


def pending_keys(conn: Connection) -> int:
    """Distinct ``(table, key)`` with a pending change."""
    return int(conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {PENDING} GROUP BY tbl, key)").fetchone()[0])


def pending_per_table(conn: Connection) -> dict[str, int]:
    """Pending change rows by table name (tables with none are absent)."""
    return {str(t): int(n) for t, n in conn.execute(f"SELECT tbl, count(*) FROM {PENDING} GROUP BY tbl").fetchall()}


def pending_of(conn: Connection, table: str) -> int:
    """Pending change rows of ``table``."""
    return int(conn.execute(f"SELECT count(*) FROM {PENDING} WHERE tbl = ?", (table,)).fetchone()[0])


def pending_keys_of(conn: Connection, table: str, keys: Sequence[str] | None = None) -> set[str]:
    """The key texts of ``table`` with a pending change (only among ``keys``, when given)."""
    if keys is None:
        rows = conn.execute(f"SELECT DISTINCT key FROM {PENDING} WHERE tbl = ?", (table,))
    else:
        sql = f"SELECT DISTINCT key FROM {PENDING} WHERE tbl = ? AND key IN (SELECT value FROM json_each(?))"
        rows = conn.execute(sql, (table, json.dumps(list(keys))))
    return {str(r[0]) for r in rows}


def pending_tables_through(conn: Connection, seq: int) -> set[str]:
    """The tables with a change row at or below ``seq`` still pending."""
    return {str(t) for (t,) in conn.execute(f"SELECT DISTINCT tbl FROM {PENDING} WHERE seq <= ?", (seq,)).fetchall()}


def has_pending(conn: Connection) -> bool:
    """Whether any change row is pending (one index probe, however long the log)."""
    return _oldest_seq(conn) is not None


def pending_through(conn: Connection, seq: int) -> bool:
    """Whether a change row at or below ``seq`` is still pending (read-your-writes waits on it)."""
    sql = f"SELECT EXISTS (SELECT 1 FROM _d1sync_changes WHERE seq <= ? AND {LIVE})"
    return bool(conn.execute(sql, (seq,)).fetchone()[0])


# -- the clock ---------------------------------------------------------------------------------------------


def _newest_seq(conn: Connection) -> int | None:
    row = conn.execute(f"SELECT seq FROM _d1sync_changes WHERE {LIVE} ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def _oldest_seq(conn: Connection) -> int | None:
    row = conn.execute(f"SELECT seq FROM _d1sync_changes WHERE {LIVE} ORDER BY seq LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def stamp(conn: Connection, at_ms: int) -> bool:
    """Note that every change now in the log was written by ``at_ms`` (epoch ms); whether it wrote a stamp.

    The worker calls it once per pass. It writes only when the log has grown since the last stamp, and then
    also forgets the stamps no pending change needs any more.
    """
    newest = _newest_seq(conn)
    last = conn.execute("SELECT max(seq) FROM _d1sync_clock").fetchone()[0]
    if newest is None or (last is not None and newest <= last):
        return False
    with conn.atomic():
        newest = _newest_seq(conn)
        if newest is None:
            return False
        oldest = _oldest_seq(conn)
        conn.execute("DELETE FROM _d1sync_clock WHERE seq < ?", (oldest,))
        conn.execute(
            "INSERT INTO _d1sync_clock (seq, at) VALUES (?, ?) ON CONFLICT (seq) DO NOTHING", (newest, int(at_ms))
        )
    return True


def oldest_pending_at(conn: Connection) -> tuple[bool, int | None]:
    """Whether changes are pending, and when the oldest was first seen by a worker (epoch ms; None if no
    worker has stamped the log since it was written)."""
    oldest = _oldest_seq(conn)
    if oldest is None:
        return False, None
    row = conn.execute("SELECT at FROM _d1sync_clock WHERE seq >= ? ORDER BY seq LIMIT 1", (oldest,)).fetchone()
    return True, None if row is None else int(row[0])
