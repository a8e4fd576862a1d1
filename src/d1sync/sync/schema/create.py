"""A file's tables, created in another database: for a new fleet tenant's database, and for a tracked table
that D1 lacks. One mechanism for both.

:func:`read_objects` reads the source's ``sqlite_master`` in one request, without SQLite's, D1's and
d1sync's own objects and without FTS5 shadow tables (their virtual table makes them). :func:`create_statements`
picks the tables (all, or the named ones), their indexes and the views among them, and orders them: tables
with parents before children (foreign keys), then indexes, then views in the order the source created
them. Every statement is made ``IF NOT EXISTS``, so a batch that ran but whose answer was lost can run again,
and a database that already has some of the tables keeps them (SQLite stores the DDL without the clause, so
the remote text stays the local one). Triggers are not copied: their effects reach D1 as synced rows, and
firing them there again would apply them twice.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from d1sync.database import Database
from d1sync.sql import quote_literal
from d1sync.sqlite import Connection
from d1sync.sync.schema import ddl
from d1sync.sync.store.state import PREFIX

__all__ = ["SchemaObject", "copy_schema", "create_statements", "read_objects", "schema_statements"]

_CREATE = re.compile(
    r"^\s*CREATE\s+(?P<kind>(?:UNIQUE\s+)?INDEX|(?:VIRTUAL\s+)?TABLE|VIEW)\s+(?P<rest>.*)$", re.IGNORECASE | re.DOTALL
)
_READ = f"""SELECT m.type, m.name, m.tbl_name, m.sql FROM sqlite_master AS m
WHERE m.sql IS NOT NULL AND m.type IN ('table', 'index', 'view')
  AND substr(m.name, 1, 7) <> 'sqlite_' AND lower(substr(m.name, 1, 4)) <> '_cf_'
  AND substr(m.name, 1, {len(PREFIX)}) <> {quote_literal(PREFIX)}
  AND substr(m.tbl_name, 1, {len(PREFIX)}) <> {quote_literal(PREFIX)}
  AND NOT EXISTS (SELECT 1 FROM pragma_table_list AS l WHERE l.name = m.name AND l.type = 'shadow')
ORDER BY m.rowid"""


@dataclass(frozen=True)
class SchemaObject:
    """One table, index or view of ``sqlite_master``."""

    type: str
    name: str
    table: str
    sql: str

    def names(self, tables: Iterable[str]) -> set[str]:
        """Which of ``tables`` this object's SQL names (a view's tables, a table's parents)."""
        words = set(ddl.tokens(self.sql))
        return {t for t in tables if t.upper() in words and t.lower() != self.name.lower()}


def read_objects(db: Database | Connection | sqlite3.Connection) -> list[SchemaObject]:
    """The source's tables, indexes and views in creation order (one request)."""
    if isinstance(db, Database):
        rows = db.prepare(_READ).raw()
    else:
        rows = [list(r) for r in db.execute(_READ).fetchall()]
    return [SchemaObject(str(t), str(n), str(tb), str(s)) for t, n, tb, s in rows]


def _if_not_exists(sql: str) -> str:
    found = _CREATE.match(sql)
    if found is None or found.group("rest").upper().startswith("IF NOT EXISTS"):
        return sql
    return f"CREATE {found.group('kind')} IF NOT EXISTS {found.group('rest')}"


def _parents_first(tables: list[SchemaObject]) -> list[SchemaObject]:
    names = [t.name for t in tables]
    by_name = {t.name: t for t in tables}
    order: list[SchemaObject] = []
    seen: set[str] = set()

    def visit(table: SchemaObject, path: tuple[str, ...]) -> None:
        if table.name in seen or table.name in path:
            return
        for parent in sorted(table.names(names)):  # a table's text names its parents after REFERENCES
            visit(by_name[parent], (*path, table.name))
        seen.add(table.name)
        order.append(table)

    for table in tables:
        visit(table, ())
    return order


def create_statements(
    objects: list[SchemaObject],
    tables: Iterable[str] | None = None,
    *,
    existing: Iterable[str] = (),
    if_not_exists: bool = True,
) -> list[str]:
    """The statements that create ``tables`` (all when None) with their indexes, then the views among them
    (each view whose tables are all created here or ``existing`` in the target), in dependency order
    (``IF NOT EXISTS`` unless ``if_not_exists`` is False: the local DDL as written)."""
    every_table = [o for o in objects if o.type == "table"]
    wanted = {t.name for t in every_table} if tables is None else {t.lower() for t in tables}
    chosen = [o for o in every_table if o.name in wanted or o.name.lower() in wanted]
    created = {o.name for o in chosen}
    available = created | set(existing)
    indexes = [o for o in objects if o.type == "index" and o.table in created]
    view_names = {o.name for o in objects if o.type == "view"}
    views: list[SchemaObject] = []
    for view in (o for o in objects if o.type == "view"):
        named = view.names([t.name for t in every_table] + list(view_names))
        if tables is not None and not named & (created | {v.name for v in views}):
            continue
        if named <= available | {v.name for v in views}:
            views.append(view)
    ordered = [o.sql for o in [*_parents_first(chosen), *indexes, *views]]
    return [_if_not_exists(sql) for sql in ordered] if if_not_exists else ordered


def schema_statements(source: Database, tables: Iterable[str] | None = None) -> list[str]:
    """The statements that give an empty database ``source``'s tables (all, or ``tables`` with their indexes
    and the views among them), indexes and views, in dependency order. One read of ``source``."""
    return create_statements(read_objects(source), tables)


def copy_schema(source: Database, target: Database, tables: Iterable[str] | None = None) -> int:
    """Create ``source``'s schema (:func:`schema_statements`) in ``target`` in one atomic batch; returns the
    number of statements (0: nothing to create, no request sent).

    Example::

        with LocalDatabase("tenant.db", wal=False) as local:
            copy_schema(local, D1Client(database_id=new_id))
    """
    statements = schema_statements(source, tables)
    if statements:
        target.batch([target.prepare(sql) for sql in statements], idempotent=True)
    return len(statements)
