"""What to run on D1 so that a table's schema becomes the local one: pure planning, no I/O.

Given the local and remote :class:`~d1sync.sync.schema.describe.TableSchema` (and the renames SQLite
reported locally), each function returns the statements of one step, in the order they must run:

* :func:`rename_statements`: ``RENAME TO`` / ``RENAME COLUMN``, where SQLite reported exactly that locally
  (never guessed from a drop plus an add);
* :func:`alter_statements`: ``DROP INDEX`` / ``DROP COLUMN`` / ``ADD COLUMN`` / ``CREATE INDEX``, when the
  difference is only columns dropped, columns added at the end in a form ``ADD COLUMN`` takes, and indexes;
  None when anything else differs;
* :func:`rebuild_statements`: the table made anew from the local DDL, the rows kept (see below).

The rebuild differs from SQLite's 12 steps in one place, because D1 enforces foreign keys and a batch cannot
turn them off: the old rows are moved aside (``CREATE TABLE _d1sync_rebuild AS SELECT``), the old table is
dropped, the new one is created under its own name from the local DDL as written, and the rows come back
into it. With ``PRAGMA defer_foreign_keys`` on, a child's reference to the dropped table is an open violation
until its parent row is inserted again, which closes it; renaming a new table over the old name instead
would leave it open and fail the batch. No ``ALTER TABLE ... RENAME`` is needed, so views naming the table
keep working. Dropping the old table still runs its ON DELETE actions (CASCADE, SET NULL) in child tables:
the caller re-sends those children.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from d1sync.sql import quote_identifier
from d1sync.sync.schema import ddl
from d1sync.sync.store.state import PREFIX

if TYPE_CHECKING:
    from d1sync.sync.schema.describe import SchemaDifference, TableSchema

__all__ = [
    "REBUILD_TABLE",
    "addable",
    "alter_statements",
    "creation_order",
    "fingerprint",
    "rebuild_statements",
    "rename_statements",
    "view_tables",
]

REBUILD_TABLE = f"{PREFIX}rebuild"
"""Where a rebuild keeps the old rows for the length of its batch (gone when the batch commits)."""

_CURRENT = frozenset({"CURRENT_TIME", "CURRENT_DATE", "CURRENT_TIMESTAMP"})


def fingerprint(table: TableSchema) -> str:
    """A short digest of a table's schema (DDL and explicit indexes, in canonical form): it changes exactly
    when the schema to mirror changes."""
    indexes = sorted(ddl.normalize(i.sql) or "" for i in table.indexes if i.sql)
    text = json.dumps([ddl.normalize(table.sql), indexes])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def view_tables(sql: str, tables: Iterable[str]) -> set[str]:
    """Which of ``tables`` a view's SQL names (compared as SQLite compares names)."""
    words = set(ddl.tokens(sql))
    return {t for t in tables if t.upper() in words}


def creation_order(tables: Mapping[str, TableSchema]) -> list[str]:
    """``tables``' names with parents before children (foreign keys), otherwise by name."""
    order: list[str] = []
    seen: set[str] = set()
    lowered = {name.lower(): name for name in tables}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name in path:
            return
        for parent in tables[name].parents:
            found = lowered.get(parent.lower())
            if found is not None:
                visit(found, (*path, name))
        seen.add(name)
        order.append(name)

    for name in sorted(tables):
        visit(name, ())
    return order


def rename_statements(
    table: str, renamed_from: str | None, renames: Sequence[tuple[str, str]], remote: TableSchema | None
) -> list[str]:
    """The renames SQLite reported locally that the remote table has not made yet (it has the old name and
    not the new one)."""
    out: list[str] = []
    if remote is not None and renamed_from is not None and remote.name.lower() == renamed_from.lower():
        out.append(f"ALTER TABLE {quote_identifier(renamed_from)} RENAME TO {quote_identifier(table)}")
    if remote is None:
        return out
    q = quote_identifier(table)
    for old, new in renames:
        if remote.column(old) is not None and remote.column(new) is None:
            out.append(f"ALTER TABLE {q} RENAME COLUMN {quote_identifier(old)} TO {quote_identifier(new)}")
    return out


def addable(words: tuple[str, ...]) -> bool:
    """Whether SQLite's ``ADD COLUMN`` takes a column definition (canonical tokens, name first)."""
    rest = set(words[1:])
    if rest & {"PRIMARY", "UNIQUE", "STORED"}:
        return False
    default: str | None = None
    if "DEFAULT" in words:
        at = words.index("DEFAULT")
        default = words[at + 1] if at + 1 < len(words) else None
        if default == "(" or default in _CURRENT:
            return False
    if "NOT" in words and words[words.index("NOT") + 1 : words.index("NOT") + 2] == ("NULL",):
        if default is None or default == "NULL":
            return False
    return not ("REFERENCES" in rest and default not in (None, "NULL"))


def _index_changes(local: TableSchema, remote: TableSchema) -> tuple[list[str], list[str]]:
    """(DROP INDEX statements, CREATE INDEX statements) that make the remote's explicit indexes the local's."""
    mine = {i.name.lower(): i for i in local.indexes if i.origin == "c" and i.sql}
    theirs = {i.name.lower(): i for i in remote.indexes if i.origin == "c"}
    drops, creates = [], []
    for key, index in theirs.items():
        if key not in mine or ddl.normalize(mine[key].sql) != ddl.normalize(index.sql):
            drops.append(f"DROP INDEX IF EXISTS {quote_identifier(index.name)}")
    for key, index in mine.items():
        if key not in theirs or ddl.normalize(theirs[key].sql) != ddl.normalize(index.sql):
            creates.append(str(index.sql))
    return drops, creates


def alter_statements(
    local: TableSchema, remote: TableSchema, differences: Sequence[SchemaDifference]
) -> list[str] | None:
    """The ``ALTER TABLE`` and index statements that make ``remote`` equal to ``local`` (whose differences
    :func:`~d1sync.sync.schema.describe.compare_schemas` found), or None when only a rebuild can (anything but
    dropped columns, added columns and indexes differs)."""
    if any(d.aspect not in ("column", "index") for d in differences):
        return None
    local_names = [c.name.lower() for c in local.columns]
    kept = [c.name.lower() for c in remote.columns if c.name.lower() in local_names]
    if local_names[: len(kept)] != kept:  # ADD COLUMN appends: a new column anywhere else is a rebuild
        return None
    parts = ddl.table_parts(local.sql)
    texts = {words[0]: text for words, text in zip(parts.columns, parts.texts, strict=True)}
    words_of = {words[0]: words for words in parts.columns}
    q = quote_identifier(local.name)
    dropped = [c.name for c in remote.columns if local.column(c.name) is None]
    added = [c for c in local.columns if remote.column(c.name) is None]
    adds = []
    for column in added:
        key = ddl.normalize(quote_identifier(column.name)) or ""
        if key not in texts or column.hidden or not addable(words_of[key]):
            return None
        adds.append(f"ALTER TABLE {q} ADD COLUMN {texts[key]}")
    drops, creates = _index_changes(local, remote)
    columns = [f"ALTER TABLE {q} DROP COLUMN {quote_identifier(name)}" for name in dropped]
    return drops + columns + adds + creates


def _placeholder(declared: str) -> str:
    """A value for a NOT NULL column the old rows lack, until the re-send brings the real one."""
    t = declared.upper()
    if "INT" in t or "REAL" in t or "FLOA" in t or "DOUB" in t or "NUM" in t or "DEC" in t or "BOOL" in t:
        return "0"
    if "BLOB" in t:
        return "x''"
    return "''"


def _copy(local: TableSchema, remote: TableSchema, renames: Sequence[tuple[str, str]]) -> str | None:
    """The ``INSERT`` that brings the old rows back into the new table (None: they cannot be matched by key)."""
    old_name = {new.lower(): old for old, new in renames}
    targets, sources = [], []
    for column in local.columns:
        if column.hidden:
            continue
        found = remote.column(column.name)
        if found is None and column.name.lower() in old_name:
            found = remote.column(old_name[column.name.lower()])
        if found is not None and not found.hidden:
            sources.append(quote_identifier(found.name))
        elif column.pk:
            return None  # a key column the old rows lack: the re-send brings every row
        elif column.notnull and column.default is None:
            sources.append(_placeholder(column.type))
        else:
            continue
        targets.append(quote_identifier(column.name))
    if not targets:
        return None
    return (
        f"INSERT OR IGNORE INTO {quote_identifier(local.name)} ({', '.join(targets)}) "
        f"SELECT {', '.join(sources)} FROM {quote_identifier(REBUILD_TABLE)}"
    )


def rebuild_statements(
    local: TableSchema,
    remote: TableSchema,
    *,
    renames: Sequence[tuple[str, str]] = (),
    views: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The rebuild (see the module docstring) as statements for one atomic batch, after ``PRAGMA
    defer_foreign_keys = on``. ``views`` are the local views (name, sql) naming the table, made again from the
    local SQL."""
    aside = quote_identifier(REBUILD_TABLE)
    statements = [
        f"DROP TABLE IF EXISTS {aside}",
        f"CREATE TABLE {aside} AS SELECT * FROM {quote_identifier(remote.name)}",
        f"DROP TABLE {quote_identifier(remote.name)}",
        local.sql,
    ]
    copy = _copy(local, remote, renames)
    statements += [copy] if copy else []
    statements.append(f"DROP TABLE {aside}")
    statements += [str(i.sql) for i in local.indexes if i.origin == "c" and i.sql]
    for name, sql in views:
        statements += [f"DROP VIEW IF EXISTS {quote_identifier(name)}", sql]
    return statements
