"""Outbox: the durable queue of writes inside the application's SQLite file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from d1sync.errors import ConfigError
from d1sync.local import connect
from d1sync.outbox import wake
from d1sync.outbox.capture import (
    TableSpec,
    all_columns,
    backfill,
    inspect_table,
    install_triggers,
    load_specs,
    remove_triggers,
    save_spec,
)
from d1sync.outbox.changes import DeadLetter, drop_dead, list_dead, retry_dead
from d1sync.outbox.planner import encode_row
from d1sync.outbox.schema import ensure_schema, now_ms
from d1sync.outbox.status import Status, read_status

__all__ = ["Outbox"]


class Outbox:
    """The outbox of one SQLite file: which tables are synced, and what is waiting to go.

    Example::

        outbox = Outbox("app.db")
        outbox.track("messages", "sessions")          # capture every write from now on (and existing rows)
        outbox.declare("events", key=["id"], columns=["id", "kind", "body"])
        outbox.enqueue("events", {"id": 1, "kind": "boot", "body": "{}"})   # no local copy kept
        outbox.status().pending_keys
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._conn = connect(self.path, busy_timeout=busy_timeout)
        ensure_schema(self._conn)

    def __repr__(self) -> str:
        return f"Outbox({os.fspath(self.path)!r})"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql_calls: Sequence[tuple[str, Sequence[Any]]]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in sql_calls:
                self._conn.execute(sql, params)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        wake.notify(self.path)

    # -- tables ------------------------------------------------------------------------------------------

    def track(
        self,
        *tables: str,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        version_column: str | None = None,
        backfill_existing: bool = True,
    ) -> list[TableSpec]:
        """Install capture triggers on ``tables`` (idempotent: re-tracking updates the column choice).

        Args:
            include: sync only these columns (the key is always included).
            exclude: sync all columns but these.
            version_column: last-writer-wins guard: a remote row is overwritten only by a row whose version
                is >= its own.
            backfill_existing: queue every existing row, so the remote receives what was there before.

        Raises:
            ConfigError: a table is missing, has no usable key, or a named column does not exist.
        """
        if not tables:
            raise ConfigError("name at least one table to track")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            specs = []
            known = load_specs(conn)
            for table in tables:
                spec = inspect_table(conn, table, include=include, exclude=exclude, version_column=version_column)
                if table in known and known[table].mode == "enqueue":
                    raise ConfigError(f"table {table!r} is declared for enqueue(); untrack it first")
                install_triggers(conn, spec, all_columns=all_columns(conn, table))
                save_spec(conn, spec)
                if backfill_existing and table not in known:
                    backfill(conn, spec)
                specs.append(spec)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        wake.notify(self.path)
        return specs

    def untrack(self, *tables: str, drop_pending: bool = False) -> None:
        """Remove capture triggers. Pending changes stay (and are dead-lettered) unless ``drop_pending``."""
        calls: list[tuple[str, Sequence[Any]]] = []
        known = load_specs(self._conn)
        for table in tables:
            if table not in known:
                raise ConfigError(f"table {table!r} is not synced; synced tables: {', '.join(known) or 'none'}")
            calls.append(("DELETE FROM _d1sync_tables WHERE tbl = ?", (table,)))
            if drop_pending:
                calls.append(("DELETE FROM _d1sync_changes WHERE tbl = ?", (table,)))
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for table in tables:
                remove_triggers(self._conn, table)
            for sql, params in calls:
                self._conn.execute(sql, params)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def declare(
        self,
        table: str,
        *,
        key: Sequence[str],
        columns: Sequence[str],
        version_column: str | None = None,
        parents: Sequence[str] = (),
    ) -> TableSpec:
        """Declare a remote table fed by :meth:`enqueue`/:meth:`delete` (no local copy of its rows)."""
        missing = [c for c in key if c not in columns]
        if not key or missing:
            raise ConfigError(f"key column(s) {', '.join(missing) or '(none)'} must be among the declared columns")
        if version_column and version_column not in columns:
            raise ConfigError(f"version column {version_column!r} must be among the declared columns")
        known = load_specs(self._conn)
        if table in known and known[table].mode == "track":
            raise ConfigError(f"table {table!r} is tracked with triggers; enqueue() is for tables with no local copy")
        spec = TableSpec(
            name=table,
            key=tuple(key),
            columns=tuple(columns),
            version_column=version_column,
            parents=tuple(parents),
            mode="enqueue",
        )
        self._write([("INSERT OR REPLACE INTO _d1sync_tables (tbl, spec) VALUES (?, ?)", (table, spec.to_json()))])
        return spec

    def tables(self) -> dict[str, TableSpec]:
        """The synced tables, by name."""
        return load_specs(self._conn)

    def _enqueue_spec(self, table: str) -> TableSpec:
        spec = load_specs(self._conn).get(table)
        if spec is None or spec.mode != "enqueue":
            raise ConfigError(f"table {table!r} is not declared for enqueue(); call Outbox.declare({table!r}, ...)")
        return spec

    @staticmethod
    def _key_text(spec: TableSpec, key: object) -> str:
        if isinstance(key, Mapping):
            values = [key[c] for c in spec.key]
        elif isinstance(key, tuple | list):
            values = list(key)
        else:
            values = [key]
        if len(values) != len(spec.key) or any(v is None for v in values):
            raise ConfigError(f"key of {spec.name!r} is ({', '.join(spec.key)}); got {key!r}")
        return encode_row(values)[0]  # the same canonical form as rows (BLOB keys in object form)

    def enqueue(self, table: str, row: Mapping[str, Any]) -> None:
        """Queue an upsert of ``row`` (every declared column) to the declared ``table``."""
        spec = self._enqueue_spec(table)
        unknown = [c for c in row if c not in spec.columns]
        missing = [c for c in spec.columns if c not in row]
        if unknown or missing:
            raise ConfigError(
                f"row for {table!r} must have exactly the declared columns ({', '.join(spec.columns)})"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        key = self._key_text(spec, row)
        data, _ = encode_row([row[c] for c in spec.columns])
        self._write(
            [
                (
                    "INSERT INTO _d1sync_changes (tbl, key, op, payload, created_at) VALUES (?, ?, 'upsert', ?, ?)",
                    (table, key, data, now_ms()),
                )
            ]
        )

    def delete(self, table: str, key: object) -> None:
        """Queue a delete of ``key`` (a value, a tuple for composite keys, or a mapping) from ``table``."""
        spec = self._enqueue_spec(table)
        self._write(
            [
                (
                    "INSERT INTO _d1sync_changes (tbl, key, op, created_at) VALUES (?, ?, 'delete', ?)",
                    (table, self._key_text(spec, key), now_ms()),
                )
            ]
        )

    # -- state -------------------------------------------------------------------------------------------

    def status(self) -> Status:
        return read_status(self._conn)

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        return list_dead(self._conn, limit)

    def retry_dead(self, ids: Sequence[int] | None = None) -> int:
        """Requeue dead letters (all when ``ids`` is None); returns how many."""
        count = retry_dead(self._conn, ids)
        wake.notify(self.path)
        return count

    def drop_dead(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters for good (all when ``ids`` is None); returns how many."""
        return drop_dead(self._conn, ids)
