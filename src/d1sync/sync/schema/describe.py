"""What a table is, read from any database in one request, and how two tables differ.

:func:`read_schemas` reads every user table (or the named ones) of a Database (a :class:`~d1sync.LocalDatabase`,
a :class:`~d1sync.D1Client`, the emulator) or of a local connection (d1sync's or :mod:`sqlite3`'s) with ONE ``SELECT``:
``sqlite_master`` joined to the table-valued pragmas D1's authorizer allows (``table_xinfo``, ``index_list``,
``index_info``, ``foreign_key_list``; d1-contract §3), each folded into JSON. What is not a user's table is
left out: SQLite's ``sqlite_*``, D1's ``_cf_*``, d1sync's ``_d1sync_*``, and FTS5 shadow tables.

:func:`compare_schemas` compares two :class:`TableSchema` column by column (missing or extra column,
declared type, NOT NULL, default, primary key), then UNIQUE, CHECK and foreign-key constraints, then indexes,
then what is left of the DDL (``WITHOUT ROWID``, ``STRICT``, collations...). Text is compared in the canonical
form of :mod:`~d1sync.sync.schema.ddl`, so blanks, quoting and keyword case never count.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from d1sync.database import Database
from d1sync.sql import quote_literal
from d1sync.sqlite import Connection
from d1sync.sync.schema import ddl
from d1sync.sync.store.state import PREFIX
from d1sync.wrangler import DEFAULT_MIGRATIONS_TABLE

__all__ = [
    "ColumnSchema",
    "ForeignKeySchema",
    "IndexSchema",
    "SchemaDifference",
    "TableSchema",
    "compare_schemas",
    "has_migrations_ledger",
    "is_migrations_ledger",
    "read_schemas",
]


@dataclass(frozen=True)
class ColumnSchema:
    """One column as ``PRAGMA table_xinfo`` tells it."""

    name: str
    type: str
    notnull: bool
    default: str | None
    pk: int
    """1-based position in the primary key, 0 if none."""
    hidden: int = 0
    """0 for an ordinary column; 2 or 3 for a generated one (virtual or stored), 1 for a virtual table's hidden."""


@dataclass(frozen=True)
class IndexSchema:
    """One index of a table: explicit (``CREATE INDEX``, with its ``sql``) or automatic (``sql`` None)."""

    name: str
    sql: str | None
    unique: bool
    columns: tuple[str, ...]
    """The indexed columns in order; an expression is ``<expr>``."""
    origin: str = "c"
    """``c`` for CREATE INDEX, ``u`` for a UNIQUE constraint, ``pk`` for a PRIMARY KEY constraint."""


@dataclass(frozen=True)
class ForeignKeySchema:
    """One foreign key of a table, as ``PRAGMA foreign_key_list`` tells it."""

    columns: tuple[str, ...]
    table: str
    """The parent table."""
    to: tuple[str | None, ...]
    """The parent's columns (None: its primary key)."""
    on_update: str = "NO ACTION"
    on_delete: str = "NO ACTION"
    match: str = "NONE"

    def __str__(self) -> str:
        to = ", ".join(c or "?" for c in self.to)
        return (
            f"({', '.join(self.columns)}) REFERENCES {self.table}({to}) "
            f"ON UPDATE {self.on_update} ON DELETE {self.on_delete}"
        )


@dataclass(frozen=True)
class TableSchema:
    """A table's schema: columns, DDL, indexes, and its constraints."""

    name: str
    columns: tuple[ColumnSchema, ...]
    sql: str
    indexes: tuple[IndexSchema, ...]
    foreign_keys: tuple[ForeignKeySchema, ...] = ()
    checks: tuple[str, ...] = ()
    """CHECK expressions in canonical form (:func:`~d1sync.sync.schema.ddl.checks`)."""
    options: tuple[str, ...] = ()
    """Canonical tokens after the column list: ``WITHOUT ROWID``, ``STRICT``."""
    definition: tuple[tuple[str, ...], ...] = field(default=())
    """The DDL's column definitions and table constraints in canonical tokens, the table name left out."""

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns' names in order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnSchema | None:
        """The column called ``name`` (case-insensitive, as SQLite compares names), or None."""
        low = name.lower()
        return next((c for c in self.columns if c.name.lower() == low), None)

    @property
    def key(self) -> tuple[str, ...]:
        """The primary key's columns in key order (empty for a rowid table without one)."""
        return tuple(c.name for c in sorted((c for c in self.columns if c.pk), key=lambda c: c.pk))

    @property
    def parents(self) -> tuple[str, ...]:
        """The tables this one references, in order, without duplicates (itself left out)."""
        out: list[str] = []
        for fk in self.foreign_keys:
            if fk.table.lower() != self.name.lower() and fk.table not in out:
                out.append(fk.table)
        return tuple(out)


_NOISE = f"""substr(m.name, 1, 7) <> 'sqlite_' AND lower(substr(m.name, 1, 4)) <> '_cf_'
    AND substr(m.name, 1, {len(PREFIX)}) <> {quote_literal(PREFIX)}
    AND NOT EXISTS (SELECT 1 FROM pragma_table_list AS l WHERE l.name = m.name AND l.type = 'shadow')"""

_READ = f"""SELECT m.name AS name, m.sql AS sql,
  (SELECT json_group_array(json_array(c.name, c.type, c."notnull", c.dflt_value, c.pk, c.hidden))
     FROM pragma_table_xinfo(m.name) AS c) AS cols,
  (SELECT json_group_array(json_array(x.name, x."unique", x.origin,
            (SELECT s.sql FROM sqlite_master AS s WHERE s.type = 'index' AND s.name = x.name),
            (SELECT json_group_array(i.name) FROM pragma_index_info(x.name) AS i)))
     FROM pragma_index_list(m.name) AS x) AS idx,
  (SELECT json_group_array(json_array(f.id, f."table", f."from", f."to", f.on_update, f.on_delete, f."match"))
     FROM pragma_foreign_key_list(m.name) AS f) AS fks
FROM sqlite_master AS m
WHERE m.type = 'table' AND {_NOISE}
  AND (?1 IS NULL OR lower(m.name) IN (SELECT lower(value) FROM json_each(?1)))
ORDER BY m.name"""


def _rows(db: Database | Connection | sqlite3.Connection, names: str | None) -> list[tuple[Any, ...]]:
    if isinstance(db, sqlite3.Connection):  # ?1 is a named parameter to Python's sqlite3 (3.12 warns otherwise)
        return [tuple(r) for r in db.execute(_READ, {"1": names}).fetchall()]
    if not isinstance(db, Database):  # d1sync's Connection numbers ?NNN parameters itself
        return [tuple(r) for r in db.execute(_READ, (names,)).fetchall()]
    results = db.prepare(_READ).bind(names).all().results
    return [(r["name"], r["sql"], r["cols"], r["idx"], r["fks"]) for r in results]


def _foreign_keys(data: list[list[Any]]) -> tuple[ForeignKeySchema, ...]:
    grouped: dict[int, list[list[Any]]] = {}
    for row in data:
        grouped.setdefault(int(row[0]), []).append(row)
    out = []
    for _, rows in sorted(grouped.items()):
        first = rows[0]
        out.append(
            ForeignKeySchema(
                columns=tuple(str(r[2]) for r in rows),
                table=str(first[1]),
                to=tuple(None if r[3] is None else str(r[3]) for r in rows),
                on_update=str(first[4]),
                on_delete=str(first[5]),
                match=str(first[6]),
            )
        )
    return tuple(out)


def _table(name: str, sql: str | None, cols: str, idx: str, fks: str) -> TableSchema:
    columns = tuple(
        ColumnSchema(str(c[0]), str(c[1] or ""), bool(c[2]), None if c[3] is None else str(c[3]), int(c[4]), int(c[5]))
        for c in json.loads(cols)
    )
    indexes = tuple(
        sorted(
            (
                IndexSchema(str(i[0]), i[3], bool(i[1]), tuple("<expr>" if c is None else str(c) for c in i[4]), i[2])
                for i in json.loads(idx)
            ),
            key=lambda i: i.name,
        )
    )
    parts = ddl.table_parts(sql or "")
    return TableSchema(
        name=name,
        columns=columns,
        sql=sql or "",
        indexes=indexes,
        foreign_keys=_foreign_keys(json.loads(fks)),
        checks=ddl.checks(parts),
        options=parts.options,
        definition=parts.columns + parts.constraints,
    )


def is_migrations_ledger(table: TableSchema) -> bool:
    """Whether ``table`` is a migrations ledger: called ``d1_migrations``, or made with wrangler's (and
    d1sync's) ledger DDL under the name wrangler's ``migrations_table`` gives it."""
    return table.name.lower() == DEFAULT_MIGRATIONS_TABLE or ddl.made_as_ledger(table.definition)


def has_migrations_ledger(schemas: Mapping[str, TableSchema]) -> bool:
    """Whether ``schemas`` (a database's, from :func:`read_schemas`) hold a migrations ledger."""
    return any(is_migrations_ledger(table) for table in schemas.values())


def read_schemas(
    db: Database | Connection | sqlite3.Connection, tables: Iterable[str] | None = None
) -> dict[str, TableSchema]:
    """Every user table's schema (or the named tables' that exist), in ONE request to ``db``.

    Example::

        schemas = read_schemas(D1Client(database_id=...), ["notes"])
        schemas.get("notes")  # None: the table is missing
    """
    names = None if tables is None else json.dumps(list(tables))
    return {str(r[0]): _table(str(r[0]), r[1], r[2], r[3], r[4]) for r in _rows(db, names)}


_COLUMN_ASPECTS = {
    "type": "declared type",
    "notnull": "",
    "default": "default",
    "primary key": "primary key position",
    "generated": "generated",
    "definition": "definition",
}


@dataclass(frozen=True)
class SchemaDifference:
    """One way a table differs between the local file and D1.

    ``aspect`` is one of ``table`` (the table is missing on one side), ``column`` (a column is), ``type``,
    ``notnull``, ``default``, ``primary key``, ``generated``, ``definition`` (a column's; the rest of its
    DDL, such as a collation), ``unique``, ``check``, ``foreign key``, ``index`` (the table's), ``options``
    (``WITHOUT ROWID``, ``STRICT``) and ``constraint`` (a table constraint's other text). ``local`` and
    ``remote`` are each side's value, None where the thing is absent.
    """

    table: str
    column: str | None
    aspect: str
    local: str | None
    remote: str | None

    def __str__(self) -> str:
        if self.aspect == "table":
            where = "missing on D1" if self.remote is None else "only on D1"
            return f"table {self.table!r} is {where}"
        if self.aspect == "column":
            if self.remote is None:
                return f"column {self.column!r} ({self.local}) is missing on D1"
            return f"column {self.column!r} ({self.remote}) is only on D1"
        if self.column is not None:
            what = _COLUMN_ASPECTS.get(self.aspect, self.aspect)
            what = f"{what} " if what else ""
            return f"column {self.column!r}: {what}{_show(self.local)} locally, {_show(self.remote)} on D1"
        if self.local is None:
            return f"{self.aspect} {self.remote} is only on D1"
        if self.remote is None:
            return f"{self.aspect} {self.local} is missing on D1"
        return f"{self.aspect}: {self.local} locally, {self.remote} on D1"


def _show(value: str | None) -> str:
    return "none" if value is None else value


def _column_text(c: ColumnSchema) -> str:
    parts = [ddl.type_name(c.type) or "no type"]
    if c.notnull:
        parts.append("NOT NULL")
    if c.default is not None:
        parts.append(f"DEFAULT {c.default}")
    return " ".join(parts)


def _compare_columns(name: str, local: TableSchema, remote: TableSchema) -> list[SchemaDifference]:
    out: list[SchemaDifference] = []
    for col in local.columns:
        other = remote.column(col.name)
        if other is None:
            out.append(SchemaDifference(name, col.name, "column", _column_text(col), None))
            continue
        pairs = [
            ("type", ddl.type_name(col.type), ddl.type_name(other.type)),
            ("notnull", "NOT NULL" if col.notnull else "nullable", "NOT NULL" if other.notnull else "nullable"),
            ("default", ddl.normalize(col.default), ddl.normalize(other.default)),
            ("primary key", str(col.pk), str(other.pk)),
            ("generated", str(col.hidden), str(other.hidden)),
        ]
        for aspect, mine, theirs in pairs:
            if mine != theirs:
                shown = (col.default, other.default) if aspect == "default" else (mine, theirs)
                out.append(SchemaDifference(name, col.name, aspect, *shown))
    for col in remote.columns:
        if local.column(col.name) is None:
            out.append(SchemaDifference(name, col.name, "column", None, _column_text(col)))
    return out


def _sets(name: str, aspect: str, mine: Iterable[str], theirs: Iterable[str]) -> list[SchemaDifference]:
    """The items on one side only, compared case-insensitively (as SQLite compares names)."""
    a = {x.upper(): x for x in mine}
    b = {x.upper(): x for x in theirs}
    return [SchemaDifference(name, None, aspect, a[x], None) for x in sorted(a.keys() - b.keys())] + [
        SchemaDifference(name, None, aspect, None, b[x]) for x in sorted(b.keys() - a.keys())
    ]


def _uniques(t: TableSchema) -> list[str]:
    return [f"UNIQUE ({', '.join(i.columns)})" for i in t.indexes if i.origin == "u"]


def _fks(t: TableSchema) -> list[str]:
    return [str(fk) for fk in t.foreign_keys]


def _compare_indexes(name: str, local: TableSchema, remote: TableSchema) -> list[SchemaDifference]:
    mine = {i.name.lower(): i for i in local.indexes if i.origin == "c"}
    theirs = {i.name.lower(): i for i in remote.indexes if i.origin == "c"}
    out: list[SchemaDifference] = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if a is not None and b is not None and ddl.normalize(a.sql) == ddl.normalize(b.sql):
            continue
        mine_text = None if a is None else a.sql or a.name
        theirs_text = None if b is None else b.sql or b.name
        out.append(SchemaDifference(name, None, "index", mine_text, theirs_text))
    return out


def _definitions(t: TableSchema) -> tuple[dict[str, str], list[str]]:
    columns = {d[0]: " ".join(d) for d in t.definition if d and d[0] not in ddl.CONSTRAINT_START}
    constraints = [" ".join(d) for d in t.definition if d and d[0] in ddl.CONSTRAINT_START]
    return columns, constraints


def _compare_rest(name: str, local: TableSchema, remote: TableSchema) -> list[SchemaDifference]:
    """What the structured comparison cannot see (collations, AUTOINCREMENT, constraint names...)."""
    out: list[SchemaDifference] = []
    if local.options != remote.options:
        out.append(SchemaDifference(name, None, "options", " ".join(local.options), " ".join(remote.options)))
    mine, mine_constraints = _definitions(local)
    theirs, theirs_constraints = _definitions(remote)
    for col, text in mine.items():
        if col in theirs and theirs[col] != text:
            shown = local.column(col)
            out.append(SchemaDifference(name, shown.name if shown else col, "definition", text, theirs[col]))
    return out + _sets(name, "constraint", mine_constraints, theirs_constraints)


def compare_schemas(local: TableSchema | None, remote: TableSchema | None) -> list[SchemaDifference]:
    """How ``remote`` differs from ``local``: column by column (missing or extra column, declared type, NOT
    NULL, default, primary key), then UNIQUE, CHECK and foreign-key constraints, then indexes. The DDL's
    remaining text (options, collations, constraint names) is compared only when all of that agrees. Empty:
    the same.

    Example::

        for difference in compare_schemas(local["notes"], remote.get("notes")):
            print(difference)   # column 'score': declared type VARCHAR(20) locally, INTEGER on D1
    """
    if local is None and remote is None:
        return []
    if local is None or remote is None:
        name = (remote if local is None else local).name  # type: ignore[union-attr]
        return [
            SchemaDifference(
                name, None, "table", None if local is None else "present", None if remote is None else "present"
            )
        ]
    name = local.name
    out = _compare_columns(name, local, remote)
    out += _sets(name, "unique", _uniques(local), _uniques(remote))
    out += _sets(name, "check", local.checks, remote.checks)
    out += _sets(name, "foreign key", _fks(local), _fks(remote))
    out += _compare_indexes(name, local, remote)
    return out or _compare_rest(name, local, remote)
