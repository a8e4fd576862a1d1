"""The capture triggers: what a tracked write appends to the change log, and the store's half of tracking.

Each trigger appends one small row to ``_d1sync_changes`` inside the writer's transaction, with literals for
the table id and the op and the key as the table holds it (the layout is :mod:`d1sync.sync.store.log`'s).
A replicated table's triggers skip the rows a pull applies: they ask the store's apply marker
(:func:`~d1sync.sync.store.twoway.skip_while_applying`), never the pull itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from d1sync.sql import quote_identifier, update_of
from d1sync.sqlite import Connection
from d1sync.sync.codec import key_sql
from d1sync.sync.model import TableSpec
from d1sync.sync.store.log import DELETE, JSON_KEY, UPSERT, table_id
from d1sync.sync.store.state import PREFIX
from d1sync.sync.store.twoway import skip_while_applying

__all__ = [
    "backfill",
    "capture_of",
    "captured_columns",
    "install_triggers",
    "marker_name",
    "remove_triggers",
    "trigger_names",
]


def trigger_names(table: str) -> tuple[str, str, str]:
    """The capture triggers' names for ``table`` (kept by SQLite when the table is renamed)."""
    return (f"{PREFIX}{table}_ins", f"{PREFIX}{table}_upd", f"{PREFIX}{table}_del")


def capture_of(conn: Connection, table: str) -> tuple[int, set[str]]:
    """How many of ``table``'s capture triggers exist, and on which tables they sit now (a renamed table takes
    its triggers along)."""
    names = trigger_names(table)
    rows = conn.execute(
        "SELECT tbl_name FROM main.sqlite_master WHERE type = 'trigger' AND name IN (?, ?, ?)", names
    ).fetchall()
    return len(rows), {str(r[0]) for r in rows}


def captured_columns(conn: Connection, table: str) -> tuple[str, ...] | None:
    """The synced columns of ``table`` as its column marker lists them now (SQLite rewrites them on ``RENAME
    COLUMN``); None without a marker (a table rebuilt locally, or tracked by an earlier release)."""
    row = conn.execute(
        "SELECT sql FROM main.sqlite_master WHERE type = 'trigger' AND name = ?", (marker_name(table),)
    ).fetchone()
    return None if row is None or row[0] is None else update_of(str(row[0]))


def _logged(spec: TableSpec, alias: str) -> tuple[str, int]:
    """How a capture trigger writes ``spec``'s key from row ``alias``, and what it adds to the op: the value
    itself for a one-column key, the codec's JSON text for a composite one (see d1sync.sync.store.log)."""
    if len(spec.key) == 1:
        return f"{alias}.{quote_identifier(spec.key[0])}", 0
    return key_sql(alias, spec.key), JSON_KEY


def install_triggers(
    conn: Connection, spec: TableSpec, *, all_columns: Sequence[str] | None = None, on: str | None = None
) -> None:
    """(Re)create the three capture triggers of ``spec`` (on table ``on``, default ``spec.name``, whose columns
    are ``all_columns``: read from the table when not given), and its column marker. Call inside a transaction.

    Each trigger appends one small row to the change log, with literals for the table id and the op and the
    key as the table holds it: all a tracked write costs (see d1sync.sync.store.log).
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
    if all_columns is None:
        all_columns = [str(r[0]) for r in conn.execute("SELECT name FROM pragma_table_info(?)", (on or spec.name,))]
    listed = " OF " + ", ".join(quote_identifier(c) for c in spec.columns)
    if set(spec.columns) != set(all_columns):
        of = listed
    # Keys compare exactly: byte for byte whatever the column's collation ('a' -> 'A' under NOCASE is a key
    # change), and by type (1 -> 1.0 in an untyped column is one too), as the key texts differ.
    # A replicated table's triggers skip the rows a pull applies (the store's apply marker).
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
    # The marker never runs (WHEN 0); it lists the synced columns, which SQLite rewrites on RENAME COLUMN and
    # leaves alone on DROP COLUMN: how a rename is told apart from a drop plus an add. A list on the capture
    # trigger itself would stop it from seeing updates of a column added before the worker follows it.
    marker = quote_identifier(marker_name(spec.name))
    conn.execute(f"CREATE TRIGGER {marker} AFTER UPDATE{listed} ON {q} WHEN 0 BEGIN SELECT 0; END")


def marker_name(table: str) -> str:
    """The name of ``table``'s column marker (see :func:`captured_columns`)."""
    return f"{PREFIX}{table}_cols"


def remove_triggers(conn: Connection, table: str) -> None:
    for name in (*trigger_names(table), marker_name(table)):
        conn.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(name)}")


def backfill(conn: Connection, spec: TableSpec) -> int:
    """Queue an upsert for every existing row of ``spec`` (so tracking a full table syncs its rows too)."""
    key, form = _logged(spec, "t")
    cur = conn.execute(
        f"INSERT INTO _d1sync_changes (tid, key, op) "
        f"SELECT {table_id(conn, spec.name)}, {key}, {UPSERT + form} FROM {quote_identifier(spec.name)} AS t"
    )
    return cur.rowcount
