"""Rows whose secondary UNIQUE values move among themselves (``a.u = 2, b.u = 1`` in one local transaction).

SQLite, and so D1, checks a UNIQUE constraint row by row, never at the end of a statement or a batch, so
upserting the new states one after another always clashes with an old one. Sent together in one atomic
request, they can arrive:

* as a delete of their old remote rows and an insert of their new states, when no other table refers to this
  one with ``ON DELETE CASCADE``, ``SET NULL``, ``SET DEFAULT`` or ``RESTRICT`` (a delete would take rows of
  those tables with it, or be refused; foreign keys are checked at commit, when the rows are back);
* otherwise by first setting the table's UNIQUE columns to NULL in those rows, then upserting, when all of
  those columns allow NULL (several NULLs never clash).

Anything else cannot be sent atomically, and the rows are dead-lettered with their refusal.
"""

from __future__ import annotations

from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.capture import table_columns
from d1sync.sync.codec import column_expr
from d1sync.sync.config import Limits
from d1sync.sync.model import Change, TableSpec
from d1sync.sync.push.planner import PlannedRequest, PlannedStatement, delete_sql, plan

__all__ = ["swap_request"]

_BLOCKING_ACTIONS = ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT")


def _deletes_reach_other_tables(conn: Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM main.sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS f "
        """WHERE m.type = 'table' AND f."table" = ? AND upper(f.on_delete) IN (?, ?, ?, ?) LIMIT 1""",
        (table, *_BLOCKING_ACTIONS),
    ).fetchone()
    return row is not None


def _unique_columns(conn: Connection, table: str, key: tuple[str, ...]) -> list[str] | None:
    """The columns of the table's UNIQUE indexes besides its key; None if one of them is NOT NULL."""
    columns: list[str] = []
    indexes = conn.execute('SELECT name, origin FROM pragma_index_list(?) WHERE "unique"', (table,)).fetchall()
    for name, origin in indexes:
        if origin == "pk":
            continue
        columns += [str(r[0]) for r in conn.execute("SELECT name FROM pragma_index_info(?)", (name,)) if r[0]]
    notnull = {c.name for c in table_columns(conn, table) if c.notnull}
    wanted = [c for c in dict.fromkeys(columns) if c not in key]
    return None if any(c in notnull for c in wanted) else wanted


def _clear_sql(spec: TableSpec, columns: list[str]) -> str:
    table = quote_identifier(spec.name)
    sets = ", ".join(f"{quote_identifier(c)} = NULL" for c in columns)
    exprs = ", ".join(column_expr(i, True) for i in range(len(spec.key)))
    keys = ", ".join(quote_identifier(c) for c in spec.key)
    target = keys if len(spec.key) == 1 else f"({keys})"
    return f"UPDATE {table} SET {sets} WHERE {target} IN (SELECT {exprs} FROM json_each(?))"


def swap_request(conn: Connection, spec: TableSpec, changes: list[Change], limits: Limits) -> PlannedRequest | None:
    """One atomic request carrying ``changes`` past their clashes with each other, or None if there is none
    (see the module docstring)."""
    upserts = plan(changes, {spec.name: spec}, limits).requests
    if len(upserts) != 1 or any(c.op != "upsert" for c in changes):
        return None  # too large for one request, or not only new states: no atomic swap
    keys = "[" + ",".join(c.key for c in changes) + "]"
    if not _deletes_reach_other_tables(conn, spec.name):
        first = PlannedStatement(spec.name, "delete", delete_sql(spec), keys, [])
    else:
        columns = _unique_columns(conn, spec.name, spec.key)
        if not columns:
            return None
        first = PlannedStatement(spec.name, "upsert", _clear_sql(spec, columns), keys, [])
    return PlannedRequest([first, *upserts[0].statements])
