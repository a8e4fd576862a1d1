"""The synced tables: which tables the outbox syncs, and how (their :class:`~d1sync.sync.model.TableSpec`),
kept in ``_d1sync_tables``."""

from __future__ import annotations

from d1sync.sqlite import Connection
from d1sync.sync.model import TableSpec

__all__ = ["forget_spec", "load_specs", "save_spec"]


def save_spec(conn: Connection, spec: TableSpec) -> None:
    conn.execute(
        "INSERT INTO _d1sync_tables (tbl, spec) VALUES (?, ?) ON CONFLICT (tbl) DO UPDATE SET spec = excluded.spec",
        (spec.name, spec.to_json()),
    )


def load_specs(conn: Connection) -> dict[str, TableSpec]:
    """Every synced table's spec, by name (the outbox schema must exist: see ``ensure_schema``)."""
    rows = conn.execute("SELECT tbl, spec FROM _d1sync_tables")
    return {str(t): TableSpec.from_json(str(s)) for t, s in rows}


def forget_spec(conn: Connection, table: str, *, mode: str | None = None) -> None:
    """Stop syncing ``table`` (only if its spec has ``mode``, when given). Call inside a write transaction."""
    if mode is None:
        conn.execute("DELETE FROM _d1sync_tables WHERE tbl = ?", (table,))
    else:
        conn.execute("DELETE FROM _d1sync_tables WHERE tbl = ? AND json_extract(spec, '$.mode') = ?", (table, mode))
