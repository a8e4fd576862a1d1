"""A file's schema, copied to a database: what a new tenant database gets before its first row.

One function (:func:`copy_schema`) for one file and for a fleet: the tables, then their indexes, then the
views, each in the order the source created them (``sqlite_master`` as
:func:`~d1sync.sync.compare.clone_plan.read_source_schema` reads it, without SQLite's, D1's and d1sync's own
objects), in one atomic batch. Every statement is made ``IF NOT EXISTS``, so a copy that ran but whose
answer was lost can run again, and an adopted database that already has the tables keeps them. FTS5 shadow
tables are left to their virtual table. Triggers are not copied: their effects reach D1 as synced rows, and
firing them there again would apply them twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from d1sync.database import Database
from d1sync.sync.compare.clone_plan import read_source_schema, select_objects

__all__ = ["copy_schema", "schema_statements"]

_CREATE = re.compile(
    r"^\s*CREATE\s+(?P<kind>(?:UNIQUE\s+)?INDEX|(?:VIRTUAL\s+)?TABLE|VIEW)\s+(?P<rest>.*)$", re.IGNORECASE | re.DOTALL
)
_ORDER = {"table": 0, "index": 1, "view": 2}


def _if_not_exists(sql: str) -> str:
    found = _CREATE.match(sql)
    if found is None or found.group("rest").upper().startswith("IF NOT EXISTS"):
        return sql
    return f"CREATE {found.group('kind')} IF NOT EXISTS {found.group('rest')}"


def schema_statements(source: Database, tables: Iterable[str] | None = None) -> list[str]:
    """The statements that give an empty database ``source``'s tables (all, or ``tables`` with their indexes
    and the views among them), indexes and views, in dependency order. One read of ``source``."""
    objects, _ = read_source_schema(source)
    objects = select_objects(objects, None if tables is None else list(tables))
    shadows = {
        str(r["name"]) for r in source.prepare("SELECT name FROM pragma_table_list WHERE type = 'shadow'").all().results
    }
    kept = [(kind, name, sql) for kind, name, _, sql in objects if kind in _ORDER and name not in shadows]
    ordered = sorted(enumerate(kept), key=lambda item: (_ORDER[item[1][0]], item[0]))
    return [_if_not_exists(sql) for _, (_, _, sql) in ordered]


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
