"""Capture: triggers that append every write of a tracked table to the change log.

The triggers run inside the writer's own transaction, so a write and its change record commit or roll back
together: there is no window in which a committed write is not in the outbox. The change log records only
``(table, key, op)``; the worker reads the row's current state when it sends (state-based sync), which makes
every send idempotent and collapses repeated updates of one row into one upsert.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from d1sync.errors import ConfigError
from d1sync.outbox.codec import key_sql
from d1sync.outbox.log import DELETE, JSON_KEY, UPSERT, table_id
from d1sync.outbox.replica import skip_while_applying
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.wrangler import DEFAULT_MIGRATIONS_TABLE

__all__ = [
    "Column",
    "TableSpec",
    "all_columns",
    "backfill",
    "capture_of",
    "create_sql",
    "derive_spec",
    "inspect_table",
    "install_triggers",
    "load_specs",
    "remove_triggers",
    "save_spec",
    "table_columns",
    "trigger_names",
]

Mode = Literal["track", "enqueue", "purge"]


@dataclass(frozen=True)
class TableSpec:
    """How one table is synced.

    Attributes:
        name: the table name (the same locally and remotely).
        key: the key columns (primary key, or a UNIQUE index on NOT NULL columns).
        columns: the synced columns in order, key columns included.
        version_column: if set, a remote row is only overwritten by a row whose version is >= its own.
        parents: tracked tables this one references by foreign key (parents are upserted first).
        mode: ``track`` (triggers on a local table), ``enqueue`` (rows given to ``Outbox.enqueue``) or
            ``purge`` (untracked with ``delete_remote``: the worker deletes its remote rows, then forgets it).
        include, exclude: the column choice ``track`` was given, kept so that the columns can be derived again
            when the local table changes (None: every column).
        replicate: two-way: the worker also pulls the table's remote changes (``Outbox.replicate``), and its
            capture triggers skip the rows a pull applies.
    """

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    version_column: str | None = None
    parents: tuple[str, ...] = field(default_factory=tuple)
    mode: Mode = "track"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    replicate: bool = False

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
            include=tuple(data["include"]) if data.get("include") is not None else None,
            exclude=tuple(data["exclude"]) if data.get("exclude") is not None else None,
            replicate=bool(data.get("replicate", False)),
        )


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
    if table.startswith(("_d1sync_", "sqlite_", "_cf_")):
        raise ConfigError(f"table {table!r} is internal and cannot be tracked")
    if table == DEFAULT_MIGRATIONS_TABLE:  # each side's ledger records what was applied there
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
    same column choice, version column and direction (ConfigError if the table can no longer be synced)."""
    derived = inspect_table(
        conn,
        table or spec.name,
        include=spec.include,
        exclude=spec.exclude,
        version_column=spec.version_column,
        lenient=True,
    )
    return replace(derived, replicate=spec.replicate)


def trigger_names(table: str) -> tuple[str, str, str]:
    """The capture triggers' names for ``table`` (kept by SQLite when the table is renamed)."""
    return (f"_d1sync_{table}_ins", f"_d1sync_{table}_upd", f"_d1sync_{table}_del")


def capture_of(conn: Connection, table: str) -> tuple[int, set[str]]:
    """How many of ``table``'s capture triggers exist, and on which tables they sit now (a renamed table takes
    its triggers along)."""
    names = trigger_names(table)
    rows = conn.execute(
        "SELECT tbl_name FROM main.sqlite_master WHERE type = 'trigger' AND name IN (?, ?, ?)", names
    ).fetchall()
    return len(rows), {str(r[0]) for r in rows}


def create_sql(conn: Connection, table: str) -> str | None:
    """The ``CREATE TABLE`` statement of a local table, as SQLite keeps it."""
    row = conn.execute("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return str(row[0]) if row and row[0] else None


def _logged(spec: TableSpec, alias: str) -> tuple[str, int]:
    """How a capture trigger writes ``spec``'s key from row ``alias``, and what it adds to the op: the value
    itself for a one-column key, the codec's JSON text for a composite one (see d1sync.outbox.log)."""
    if len(spec.key) == 1:
        return f"{alias}.{quote_identifier(spec.key[0])}", 0
    return key_sql(alias, spec.key), JSON_KEY


def install_triggers(conn: Connection, spec: TableSpec, *, all_columns: Sequence[str], on: str | None = None) -> None:
    """(Re)create the three capture triggers of ``spec`` (on table ``on``, default ``spec.name``). Call inside
    a transaction.

    Each trigger appends one small row to the change log, with literals for the table id and the op and the
    key as the table holds it: all a tracked write costs (see d1sync.outbox.log).
    """
    q = quote_identifier(on or spec.name)
    tid = table_id(conn, spec.name)
    ins, upd, delete = (quote_identifier(n) for n in trigger_names(spec.name))
    remove_triggers(conn, spec.name)
    (new_key, form), (old_key, _) = _logged(spec, "NEW"), _logged(spec, "OLD")
    upsert, deleted = UPSERT + form, DELETE + form
    insert = "INSERT INTO _d1sync_changes (tid, key, op) VALUES ({tid}, {key}, {op})"
    # Only updates of synced columns matter; narrowing the trigger saves a change row for the others.
    of = ""
    if set(spec.columns) != set(all_columns):
        of = " OF " + ", ".join(quote_identifier(c) for c in spec.columns)
    # Keys compare exactly: byte for byte whatever the column's collation ('a' -> 'A' under NOCASE is a key
    # change), and by type (1 -> 1.0 in an untyped column is one too), as the key texts differ.
    # A replicated table's triggers skip the rows a pull applies (see d1sync.outbox.replica).
    when = skip_while_applying() if spec.replicate else ""
    key_changed = " OR ".join(
        f"OLD.{c} IS NOT NEW.{c} COLLATE BINARY OR typeof(OLD.{c}) IS NOT typeof(NEW.{c})"
        for c in map(quote_identifier, spec.key)
    )
    conn.execute(
        f"CREATE TRIGGER {ins} AFTER INSERT ON {q}{when} BEGIN "
        + insert.format(tid=tid, key=new_key, op=upsert)
        + "; END"
    )
    conn.execute(
        f"CREATE TRIGGER {upd} AFTER UPDATE{of} ON {q}{when} BEGIN "
        # A key change is a delete of the old key and an upsert of the new one.
        + f"INSERT INTO _d1sync_changes (tid, key, op) SELECT {tid}, {old_key}, {deleted} WHERE {key_changed}; "
        + insert.format(tid=tid, key=new_key, op=upsert)
        + "; END"
    )
    conn.execute(
        f"CREATE TRIGGER {delete} AFTER DELETE ON {q}{when} BEGIN "
        + insert.format(tid=tid, key=old_key, op=deleted)
        + "; END"
    )


def remove_triggers(conn: Connection, table: str) -> None:
    for name in trigger_names(table):
        conn.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(name)}")


def save_spec(conn: Connection, spec: TableSpec) -> None:
    conn.execute(
        "INSERT INTO _d1sync_tables (tbl, spec) VALUES (?, ?) ON CONFLICT (tbl) DO UPDATE SET spec = excluded.spec",
        (spec.name, spec.to_json()),
    )


def load_specs(conn: Connection) -> dict[str, TableSpec]:
    """Every synced table's spec, by name (the outbox schema must exist: see ``ensure_schema``)."""
    rows = conn.execute("SELECT tbl, spec FROM _d1sync_tables")
    return {str(t): TableSpec.from_json(str(s)) for t, s in rows}


def backfill(conn: Connection, spec: TableSpec) -> int:
    """Queue an upsert for every existing row of ``spec`` (so tracking a full table syncs its rows too)."""
    key, form = _logged(spec, "t")
    cur = conn.execute(
        f"INSERT INTO _d1sync_changes (tid, key, op) "
        f"SELECT {table_id(conn, spec.name)}, {key}, {UPSERT + form} FROM {quote_identifier(spec.name)} AS t"
    )
    return cur.rowcount
