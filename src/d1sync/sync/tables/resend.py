"""Queuing rows again: a whole table in key-ordered chunks (resumable), or a list of keys.

After ADD COLUMN, a recreated or renamed table, or a repair, rows that D1 already holds must be sent again.
Each pass queues the next chunk of a table's keys (keyset pagination in key order, after the key the last
chunk ended on) together with the new cursor, in one transaction, so a crash resumes where it stopped and the
change log never holds more than a chunk of re-sends at a time. State-based sync does the rest: each queued
key sends the row's current state, or a delete if it is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import decode_row, key_sql
from d1sync.sync.model import TableSpec
from d1sync.sync.store.log import append_changes
from d1sync.sync.store.state import TableState, save_table_state

__all__ = ["queue_chunk", "queue_keys"]


def queue_chunk(conn: Connection, spec: TableSpec, state: TableState, limit: int) -> TableState:
    """Queue the next ``limit`` keys of ``spec``'s table after ``state.resend_after``; the new state (its
    ``resend_after`` is None once the table is done). Call with no transaction open."""
    if state.resend_after is None:
        return state
    table = quote_identifier(spec.name)
    keys = ", ".join(f"t.{quote_identifier(c)}" for c in spec.key)
    where, params = "", ()
    if state.resend_after:
        after = decode_row(state.resend_after)
        where = f"WHERE ({keys}) > ({', '.join('?' * len(after))})"
        params = tuple(after)
    select = f"SELECT {key_sql('t', spec.key)} AS k FROM {table} AS t {where} ORDER BY {keys} LIMIT {int(limit)}"
    with conn.atomic():
        chunk = [str(r[0]) for r in conn.execute(select, params).fetchall()]
        append_changes(conn, spec.name, [(k, "upsert", None) for k in chunk])
        new = replace(state, resend_after=chunk[-1] if len(chunk) >= limit else None)
        save_table_state(conn, spec.name, new)
    return new


def queue_keys(conn: Connection, table: str, keys: Iterable[str]) -> int:
    """Queue an upsert of each key (key texts of the codec): its current state, or a delete if it is gone."""
    rows = [(key, "upsert", None) for key in keys]
    if not rows:
        return 0
    with conn.atomic():
        return append_changes(conn, table, rows)
