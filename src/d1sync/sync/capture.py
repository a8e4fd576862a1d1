"""Capture: which tables can be tracked, and how (their key and columns, read from the local schema).

The capture triggers themselves are the store's (:mod:`d1sync.sync.store.triggers`): they write the change
log, whose layout only the store knows. They run inside the writer's own transaction, so a write and its
change record commit or roll back together: there is no window in which a committed write is not in the
outbox. The change log records only ``(table, key, op)``; the worker reads the row's current state when it
sends (state-based sync), which makes every send idempotent and collapses repeated updates of one row into
one upsert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from d1sync.errors import ConfigError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.model import TableSpec
from d1sync.sync.schema import ddl
from d1sync.sync.store.state import PREFIX
from d1sync.wrangler import DEFAULT_MIGRATIONS_TABLE

__all__ = ["Column", "all_columns", "create_sql", "derive_spec", "inspect_table", "table_columns"]


@dataclass(frozen=True)
class Column:
    """One column of a local table, as ``pragma_table_info`` describes it."""

    name: str
    type: str
    notnull: bool
    pk: int
    """1-based position in the primary key; 0 if not part of it."""


def table_columns(conn: Connection, table: str) -> list[Column]:
    """The columns of ``table`` in order (empty if there is no such table)."""
    rows = conn.execute('SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid', (table,))
    return [Column(str(name), str(kind or ""), bool(notnull), int(pk)) for name, kind, notnull, pk in rows]


def all_columns(conn: Connection, table: str) -> list[str]:
    return [c.name for c in table_columns(conn, table)]


def _table_exists(conn: Connection, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None


def _made_as_ledger(conn: Connection, table: str) -> bool:
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    parts = ddl.table_parts(row[0]) if row is not None and row[0] else None
    return parts is not None and ddl.made_as_ledger(parts.columns + parts.constraints)


def _find_key(conn: Connection, table: str, columns: list[Column]) -> tuple[str, ...]:
    pk = sorted((c.pk, c.name) for c in columns if c.pk > 0)
    if pk:
        return tuple(name for _, name in pk)
    notnull = {c.name for c in columns if c.notnull}
    indexes = conn.execute('SELECT name, "unique", partial FROM pragma_index_list(?) ORDER BY seq', (table,))
    for name, unique, partial in indexes.fetchall():
        # A full UNIQUE index over NOT NULL columns identifies a row.
        if not unique or partial:
            continue
        cols = [str(r[0]) for r in conn.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (name,))]
        if cols and all(c in notnull for c in cols):
            return tuple(cols)
    raise ConfigError(
        f"table {table!r} has no PRIMARY KEY and no UNIQUE index on NOT NULL columns, so its rows cannot be "
        "identified on D1",
        hint="recreate it with a primary key (or add CREATE UNIQUE INDEX on NOT NULL columns), then track it",
    )


def _affinity(declared_type: str) -> str:
    """SQLite's type affinity of a column declared ``declared_type`` (the rules of datatype3.html §3.1)."""
    t = declared_type.upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


def _is_rowid_alias(conn: Connection, table: str, key: tuple[str, ...], types: dict[str, str]) -> bool:
    # An INTEGER PRIMARY KEY is the rowid itself and has no index of its own. Every other primary key
    # (including the "INTEGER PRIMARY KEY DESC" quirk, and WITHOUT ROWID tables) is backed by an index.
    if len(key) != 1 or types[key[0]].upper() != "INTEGER":
        return False
    origins = conn.execute("SELECT origin FROM pragma_index_list(?)", (table,)).fetchall()
    return not any(str(origin) == "pk" for (origin,) in origins)


def _check_key(conn: Connection, table: str, columns: list[Column], key: tuple[str, ...]) -> None:
    """Refuse keys that cannot identify a row on D1 exactly: REAL columns and columns that allow NULL."""
    types = {c.name: c.type for c in columns}
    real = [c for c in key if _affinity(types[c]) == "REAL"]
    if real:
        # The change log holds keys as JSON text, and SQLite writes a REAL there with 15 significant digits:
        # 0.1 + 0.2 comes back as 0.3, so the worker would never find the row again (and send a delete).
        raise ConfigError(
            f"table {table!r} has key column(s) {', '.join(f'{c!r} ({types[c]})' for c in real)} with REAL "
            "affinity; floating-point keys cannot be matched exactly through the change log, so those rows "
            "would never sync. Use an INTEGER key (for example the value scaled to an integer) or a TEXT key"
        )
    notnull = {c.name for c in columns if c.notnull}
    nullable = [c for c in key if c not in notnull]
    if nullable and not _is_rowid_alias(conn, table, key, types):
        # SQLite's legacy quirk: a PRIMARY KEY that is not INTEGER PRIMARY KEY accepts NULL, many times over.
        example = ", ".join(" ".join(filter(None, [quote_identifier(c), types[c], "NOT NULL"])) for c in nullable)
        raise ConfigError(
            f"table {table!r} has primary key column(s) {', '.join(map(repr, nullable))} that allow NULL "
            "(SQLite accepts NULL in any PRIMARY KEY but INTEGER PRIMARY KEY), and rows with a NULL key cannot "
            f"be identified on D1; declare them NOT NULL ({example}). SQLite cannot add NOT NULL to an "
            "existing column: create the table anew with it, copy the rows over, drop the old one and rename"
        )


def inspect_table(
    conn: Connection,
    table: str,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    version_column: str | None = None,
    lenient: bool = False,
) -> TableSpec:
    """Read ``table``'s schema and decide what to sync. Raises ConfigError with the reason if it cannot be.

    ``lenient`` drops included or excluded columns the table no longer has (re-deriving a spec after a local
    ``DROP COLUMN``) instead of refusing them.
    """
    if table.startswith((PREFIX, "sqlite_", "_cf_")):
        raise ConfigError(f"table {table!r} is internal and cannot be tracked")
    if table == DEFAULT_MIGRATIONS_TABLE or _made_as_ledger(conn, table):  # each side's records what it applied
        raise ConfigError(
            f"table {table!r} is the migrations ledger and cannot be tracked: the local one would overwrite the "
            "remote's",
            hint="apply the migrations on each side instead (d1sync migrations apply)",
        )
    if not _table_exists(conn, table):
        raise ConfigError(f"no table {table!r} in the database; create it first (or check the spelling)")
    info = table_columns(conn, table)
    names = [c.name for c in info]
    key = _find_key(conn, table, info)
    _check_key(conn, table, info, key)
    if lenient:
        include = [c for c in include or () if c in names] or None
        exclude = [c for c in exclude or () if c in names] or None
    unknown = [c for c in [*(include or ()), *(exclude or ())] if c not in names]
    if version_column and version_column not in names:
        unknown.append(version_column)
    if unknown:
        raise ConfigError(f"table {table!r} has no column(s) {', '.join(map(repr, unknown))}")
    if include:
        wanted = set(include) | set(key) | ({version_column} if version_column else set())
        columns = [c for c in names if c in wanted]
    else:
        columns = list(names)
    if exclude:
        clash = [c for c in exclude if c in key or c == version_column]
        if clash:
            raise ConfigError(f"cannot exclude key or version column(s) {', '.join(map(repr, clash))} of {table!r}")
        columns = [c for c in columns if c not in exclude]
    referenced = conn.execute('SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)', (table,)).fetchall()
    parents = sorted({str(name) for (name,) in referenced if str(name) != table})
    return TableSpec(
        name=table,
        key=key,
        columns=tuple(columns),
        version_column=version_column,
        parents=tuple(parents),
        include=tuple(include) if include else None,
        exclude=tuple(exclude) if exclude else None,
    )


def derive_spec(conn: Connection, spec: TableSpec, table: str | None = None) -> TableSpec:
    """``spec`` derived again from the local table ``table`` (default: its own name) as it is now, with the
    same column choice, version column, direction and schema choice (ConfigError if the table can no longer be
    synced)."""
    derived = inspect_table(
        conn,
        table or spec.name,
        include=spec.include,
        exclude=spec.exclude,
        version_column=spec.version_column,
        lenient=True,
    )
    return replace(derived, replicate=spec.replicate, manage_schema=spec.manage_schema)


def create_sql(conn: Connection, table: str) -> str | None:
    """The ``CREATE TABLE`` statement of a local table, as SQLite keeps it."""
    row = conn.execute("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return str(row[0]) if row and row[0] else None
