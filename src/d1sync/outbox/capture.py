"""Capture: triggers that append every write of a tracked table to the change log.

The triggers run inside the writer's own transaction, so a write and its change record commit or roll back
together: there is no window in which a committed write is not in the outbox. The change log records only
``(table, key, op)``; the worker reads the row's current state when it sends (state-based sync), which makes
every send idempotent and collapses repeated updates of one row into one upsert.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from d1sync.errors import ConfigError
from d1sync.outbox.schema import NOW_MS_SQL
from d1sync.sql import quote_identifier, quote_literal

__all__ = ["TableSpec", "inspect_table", "install_triggers", "load_specs", "remove_triggers", "save_spec"]

Mode = Literal["track", "enqueue"]


@dataclass(frozen=True)
class TableSpec:
    """How one table is synced.

    Attributes:
        name: the table name (the same locally and remotely).
        key: the key columns (primary key, or a UNIQUE index on NOT NULL columns).
        columns: the synced columns in order, key columns included.
        version_column: if set, a remote row is only overwritten by a row whose version is >= its own.
        parents: tracked tables this one references by foreign key (parents are upserted first).
        mode: ``track`` (triggers on a local table) or ``enqueue`` (rows given to ``Outbox.enqueue``).
    """

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    version_column: str | None = None
    parents: tuple[str, ...] = field(default_factory=tuple)
    mode: Mode = "track"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TableSpec:
        data = json.loads(text)
        return cls(
            name=data["name"],
            key=tuple(data["key"]),
            columns=tuple(data["columns"]),
            version_column=data.get("version_column"),
            parents=tuple(data.get("parents", ())),
            mode=data.get("mode", "track"),
        )


def _table_exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None


def _find_key(conn: sqlite3.Connection, table: str, info: list[tuple[object, ...]]) -> tuple[str, ...]:
    pk = sorted((int(str(r[5])), str(r[1])) for r in info if int(str(r[5])) > 0)
    if pk:
        return tuple(name for _, name in pk)
    notnull = {str(r[1]) for r in info if r[3]}
    q = quote_identifier(table)
    for index in conn.execute(f"PRAGMA index_list({q})").fetchall():
        # (seq, name, unique, origin, partial): a full UNIQUE index over NOT NULL columns identifies a row.
        if not index[2] or index[4]:
            continue
        cols = [str(r[2]) for r in conn.execute(f"PRAGMA index_info({quote_identifier(str(index[1]))})")]
        if cols and all(c in notnull for c in cols):
            return tuple(cols)
    raise ConfigError(
        f"table {table!r} has no PRIMARY KEY and no UNIQUE index on NOT NULL columns, so its rows cannot be "
        "identified on D1; recreate it with a primary key (or add CREATE UNIQUE INDEX on NOT NULL columns)"
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


def _is_rowid_alias(conn: sqlite3.Connection, table: str, key: tuple[str, ...], types: dict[str, str]) -> bool:
    # An INTEGER PRIMARY KEY is the rowid itself and has no index of its own. Every other primary key
    # (including the "INTEGER PRIMARY KEY DESC" quirk, and WITHOUT ROWID tables) is backed by an index.
    if len(key) != 1 or types[key[0]].upper() != "INTEGER":
        return False
    indexes = conn.execute(f"PRAGMA index_list({quote_identifier(table)})").fetchall()
    return not any(str(index[3]) == "pk" for index in indexes)


def _check_key(conn: sqlite3.Connection, table: str, info: list[tuple[object, ...]], key: tuple[str, ...]) -> None:
    """Refuse keys that cannot identify a row on D1 exactly: REAL columns and columns that allow NULL."""
    types = {str(r[1]): str(r[2] or "") for r in info}
    real = [c for c in key if _affinity(types[c]) == "REAL"]
    if real:
        # The change log holds keys as JSON text, and SQLite writes a REAL there with 15 significant digits:
        # 0.1 + 0.2 comes back as 0.3, so the worker would never find the row again (and send a delete).
        raise ConfigError(
            f"table {table!r} has key column(s) {', '.join(f'{c!r} ({types[c]})' for c in real)} with REAL "
            "affinity; floating-point keys cannot be matched exactly through the change log, so those rows "
            "would never sync. Use an INTEGER key (for example the value scaled to an integer) or a TEXT key"
        )
    notnull = {str(r[1]) for r in info if r[3]}
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
    conn: sqlite3.Connection,
    table: str,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    version_column: str | None = None,
) -> TableSpec:
    """Read ``table``'s schema and decide what to sync. Raises ConfigError with the reason if it cannot be."""
    if table.startswith(("_d1sync_", "sqlite_")):
        raise ConfigError(f"table {table!r} is internal and cannot be tracked")
    if not _table_exists(conn, table):
        raise ConfigError(f"no table {table!r} in the database; create it first (or check the spelling)")
    q = quote_identifier(table)
    info = [tuple(r) for r in conn.execute(f"PRAGMA table_info({q})").fetchall()]
    all_columns = [str(r[1]) for r in info]
    key = _find_key(conn, table, info)
    _check_key(conn, table, info, key)
    unknown = [c for c in [*(include or ()), *(exclude or ())] if c not in all_columns]
    if version_column and version_column not in all_columns:
        unknown.append(version_column)
    if unknown:
        raise ConfigError(f"table {table!r} has no column(s) {', '.join(map(repr, unknown))}")
    if include:
        wanted = set(include) | set(key) | ({version_column} if version_column else set())
        columns = [c for c in all_columns if c in wanted]
    else:
        columns = list(all_columns)
    if exclude:
        clash = [c for c in exclude if c in key or c == version_column]
        if clash:
            raise ConfigError(f"cannot exclude key or version column(s) {', '.join(map(repr, clash))} of {table!r}")
        columns = [c for c in columns if c not in exclude]
    parents = sorted({str(r[2]) for r in conn.execute(f"PRAGMA foreign_key_list({q})") if str(r[2]) != table})
    return TableSpec(name=table, key=key, columns=tuple(columns), version_column=version_column, parents=tuple(parents))


def _trigger_names(table: str) -> tuple[str, str, str]:
    return (f"_d1sync_{table}_ins", f"_d1sync_{table}_upd", f"_d1sync_{table}_del")


def key_json_sql(alias: str, key: Iterable[str]) -> str:
    """SQL rendering a row's key as the JSON array the change log stores (one canonical text per key).

    BLOB keys and text keys holding NUL take the object form of :func:`~d1sync.outbox.planner.encode_row`:
    ``json_array()`` refuses BLOBs (which would fail the application's own write) and JSON cuts text at NUL.
    """
    parts = []
    for column in key:
        ref = f"{alias}.{quote_identifier(column)}"
        parts.append(
            f"CASE typeof({ref}) WHEN 'blob' THEN json_object('x', lower(hex({ref}))) "
            f"WHEN 'text' THEN CASE WHEN instr({ref}, char(0)) > 0 THEN json_object('t', lower(hex({ref}))) "
            f"ELSE {ref} END ELSE {ref} END"
        )
    return "json_array(" + ", ".join(parts) + ")"


def install_triggers(conn: sqlite3.Connection, spec: TableSpec, *, all_columns: Sequence[str]) -> None:
    """(Re)create the three capture triggers of ``spec``. Call inside a transaction."""
    q = quote_identifier(spec.name)
    tbl = quote_literal(spec.name)
    ins, upd, delete = (quote_identifier(n) for n in _trigger_names(spec.name))
    remove_triggers(conn, spec.name)
    insert = f"INSERT INTO _d1sync_changes (tbl, key, op, created_at) VALUES ({tbl}, {{key}}, {{op}}, {NOW_MS_SQL})"
    new_key, old_key = key_json_sql("NEW", spec.key), key_json_sql("OLD", spec.key)
    # Only updates of synced columns matter; narrowing the trigger saves a change row for the others.
    of = ""
    if set(spec.columns) != set(all_columns):
        of = " OF " + ", ".join(quote_identifier(c) for c in spec.columns)
    key_changed = " OR ".join(f"OLD.{quote_identifier(c)} IS NOT NEW.{quote_identifier(c)}" for c in spec.key)
    conn.execute(
        f"CREATE TRIGGER {ins} AFTER INSERT ON {q} BEGIN " + insert.format(key=new_key, op="'upsert'") + "; END"
    )
    conn.execute(
        f"CREATE TRIGGER {upd} AFTER UPDATE{of} ON {q} BEGIN "
        # A key change is a delete of the old key and an upsert of the new one.
        + f"INSERT INTO _d1sync_changes (tbl, key, op, created_at) SELECT {tbl}, {old_key}, 'delete', {NOW_MS_SQL} "
        + f"WHERE {key_changed}; "
        + insert.format(key=new_key, op="'upsert'")
        + "; END"
    )
    conn.execute(
        f"CREATE TRIGGER {delete} AFTER DELETE ON {q} BEGIN " + insert.format(key=old_key, op="'delete'") + "; END"
    )


def remove_triggers(conn: sqlite3.Connection, table: str) -> None:
    for name in _trigger_names(table):
        conn.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(name)}")


def save_spec(conn: sqlite3.Connection, spec: TableSpec) -> None:
    conn.execute(
        "INSERT INTO _d1sync_tables (tbl, spec) VALUES (?, ?) ON CONFLICT (tbl) DO UPDATE SET spec = excluded.spec",
        (spec.name, spec.to_json()),
    )


def load_specs(conn: sqlite3.Connection) -> dict[str, TableSpec]:
    """Every synced table's spec, by name (the outbox schema must exist: see ``ensure_schema``)."""
    return {str(t): TableSpec.from_json(str(s)) for t, s in conn.execute("SELECT tbl, spec FROM _d1sync_tables")}


def all_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({quote_identifier(table)})")]


def backfill(conn: sqlite3.Connection, spec: TableSpec) -> int:
    """Queue an upsert for every existing row of ``spec`` (so tracking a full table syncs its rows too)."""
    cur = conn.execute(
        f"INSERT INTO _d1sync_changes (tbl, key, op, created_at) "
        f"SELECT {quote_literal(spec.name)}, {key_json_sql('t', spec.key)}, 'upsert', {NOW_MS_SQL} "
        f"FROM {quote_identifier(spec.name)} AS t"
    )
    return cur.rowcount
