"""Outbox: the durable queue of writes inside the application's SQLite file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from d1sync.database import Database
from d1sync.errors import ConfigError, ValueEncodingError
from d1sync.sqlite import Connection, shown
from d1sync.sync.capture import all_columns, inspect_table
from d1sync.sync.codec import canonical_key_value, encode_key, encode_row
from d1sync.sync.model import TableSpec
from d1sync.sync.remote import capture_ddl, check_remote_tables
from d1sync.sync.status import Status, read_status
from d1sync.sync.store.dead import DeadLetter, dead_of, drop_dead, list_dead, retry_dead
from d1sync.sync.store.log import append_changes, delete_changes, pending_of, table_changes
from d1sync.sync.store.specs import forget_spec, load_specs, save_spec
from d1sync.sync.store.state import TableState, has_outbox, load_table_states, save_table_state
from d1sync.sync.store.triggers import backfill, capture_of, install_triggers, remove_triggers, trigger_names
from d1sync.sync.store.twoway import (
    PullTable,
    ensure_replica_schema,
    load_pull_tables,
    replica_identity,
    save_pull_table,
    save_replica,
)
from d1sync.sync.store.upgrade import ensure_schema
from d1sync.sync.tables.pauses import resume_all
from d1sync.values import encode_param

__all__ = ["Outbox"]


class Outbox:
    """The outbox of one SQLite file: which tables are synced, and what is waiting to go.

    Used as a context manager it holds one connection to the file for the whole block (the fast way to call
    :meth:`enqueue` many times); otherwise each call opens and closes its own, so a one-off such as
    ``Outbox("app.db").track("messages")`` leaves nothing open.

    Example::

        with Outbox("app.db") as outbox:
            outbox.track("messages", "sessions")      # capture every write from now on (and existing rows)
            outbox.declare("events", key=["id"], columns=["id", "kind", "body"])
            outbox.enqueue("events", {"id": 1, "kind": "boot", "body": "{}"})   # no local copy kept
            outbox.status().pending_keys

    Raises:
        SQLError: the file cannot be opened or is not a SQLite database.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._held: Connection | None = None
        self._depth = 0
        with self._connection() as conn:
            ensure_schema(conn)

    def __repr__(self) -> str:
        return f"Outbox({os.fspath(self.path)!r})"

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` holds an outbox (a table was tracked or declared there). Writes nothing.

        Raises:
            SQLError: ``path`` is missing or not a SQLite database.
        """
        with Connection(path, read_only=True) as conn:
            return has_outbox(conn)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The held connection inside ``with outbox:``; otherwise one opened and closed for this call."""
        if self._held is not None:
            yield self._held
            return
        with Connection(self.path, busy_timeout=self._busy_timeout) as conn:
            yield conn

    def close(self) -> None:
        """Close the connection held by ``with outbox:`` (calls after it open their own)."""
        held, self._held, self._depth = self._held, None, 0
        if held is not None:
            held.close()

    def __enter__(self) -> Outbox:
        if self._held is None:
            self._held = Connection(self.path, busy_timeout=self._busy_timeout)
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth <= 0:
            self.close()

    # -- tables ------------------------------------------------------------------------------------------

    def track(
        self,
        *tables: str,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        version_column: str | None = None,
        backfill_existing: bool = True,
        manage_schema: bool | None = None,
    ) -> list[TableSpec]:
        """Install capture triggers on ``tables`` (idempotent: re-tracking updates the column choice).

        Args:
            include: sync only these columns (the key is always included).
            exclude: sync all columns but these.
            version_column: last-writer-wins guard: a remote row is overwritten only by a row whose version
                is >= its own.
            backfill_existing: queue every existing row, so the remote receives what was there before.
            manage_schema: True: d1sync makes the remote tables' schema follow the local one (creates them,
                follows ALTER TABLE and rebuilds); False: it never changes it (a table D1 lacks, or that
                lacks a column, pauses with the fix); None: keep the table's earlier choice, else the default
                (managed, unless the remote has a migrations ledger). Stored with the table.

        Raises:
            ConfigError: a table is missing, has no usable key, or a named column does not exist.
        """
        if not tables:
            raise ConfigError("name at least one table to track")
        if include and exclude:
            raise ConfigError("give include or exclude, not both (include lists the columns to sync)")
        with self._connection() as conn, conn.atomic():
            specs = []
            known = load_specs(conn)
            for table in tables:
                spec = inspect_table(conn, table, include=include, exclude=exclude, version_column=version_column)
                if table in known and known[table].mode == "enqueue":
                    raise ConfigError(f"table {table!r} is declared for enqueue(); untrack it first")
                if table in known:  # re-tracking keeps it two-way, and its schema choice unless given
                    spec = replace(spec, replicate=known[table].replicate, manage_schema=known[table].manage_schema)
                if manage_schema is not None:
                    spec = replace(spec, manage_schema=manage_schema)
                captured = capture_of(conn, table)[0] == len(trigger_names(table))
                install_triggers(conn, spec, all_columns=all_columns(conn, table))
                save_spec(conn, spec)
                if backfill_existing and table not in known:
                    backfill(conn, spec)
                elif backfill_existing and _owes_resend(known[table], spec, captured):
                    _resend_all(conn, table)
                specs.append(spec)
        return specs

    def untrack(self, *tables: str, drop_pending: bool = False, delete_remote: bool = False) -> None:
        """Remove capture triggers. Pending changes stay (and are dead-lettered) unless ``drop_pending``.

        ``delete_remote`` also deletes every row of the tables on the remote: the worker does it on its next
        pass, then forgets the tables (pending changes are dropped: the remote rows go anyway). It is the
        choice offered when a tracked table was dropped locally.
        """
        with self._connection() as conn, conn.atomic():
            known = load_specs(conn)
            for table in tables:
                if table not in known:
                    raise ConfigError(f"table {table!r} is not synced; synced tables: {', '.join(known) or 'none'}")
            for table in tables:
                remove_triggers(conn, table)
                save_table_state(conn, table, None)
                if delete_remote:
                    save_spec(conn, replace(known[table], mode="purge"))
                else:
                    forget_spec(conn, table)
                if drop_pending or delete_remote:
                    delete_changes(conn, *table_changes(table))

    def replicate(
        self, *tables: str, target: Database | None = None, version_column: str | None = None
    ) -> list[TableSpec]:
        """Make ``tables`` two-way: the worker pulls their remote changes too (see docs/replication.md).

        Each table is tracked (an untracked one without a backfill: the remote holds the shared state) and
        owes a first resync, which makes it equal to the remote except for keys with a pending local change.
        With ``target``, the remote capture (change log, origin, triggers) is installed there, idempotently;
        without it, install it yourself from ``d1sync replicate --emit-migration DIR``.

        Example::

            with D1Client() as remote:
                Outbox("app.db").replicate("notes", target=remote)

        Raises:
            ConfigError: a table is missing locally or on ``target``, has no usable key, or is declared for
                enqueue(). D1Error: the remote refused the installation.
        """
        with self._connection() as conn:
            return _mark_replicated(conn, self.path, tables, version_column=version_column, target=target)

    def resume(self) -> None:
        """Clear every pause (the worker's and each table's) and the back-off, so the next pass tries at once.

        For after a fix: a cause that is still there pauses again at once, with its message.
        """
        with self._connection() as conn:
            resume_all(conn)

    def declare(
        self,
        table: str,
        *,
        key: Sequence[str],
        columns: Sequence[str],
        version_column: str | None = None,
        parents: Sequence[str] = (),
    ) -> TableSpec:
        """Declare a remote table fed by :meth:`enqueue`/:meth:`delete` (no local copy of its rows).

        Declaring again with the same key and columns is harmless. Changing them is refused while changes or
        dead letters of the table are stored: their payloads are in the earlier column order.

        Raises:
            ConfigError: the key or version column is not among ``columns``, the table is tracked with
                triggers, or its key or columns change while changes of it are stored.
        """
        missing = [c for c in key if c not in columns]
        if not key or missing:
            raise ConfigError(f"key column(s) {', '.join(missing) or '(none)'} must be among the declared columns")
        if version_column and version_column not in columns:
            raise ConfigError(f"version column {version_column!r} must be among the declared columns")
        spec = TableSpec(
            name=table,
            key=tuple(key),
            columns=tuple(columns),
            version_column=version_column,
            parents=tuple(parents),
            mode="enqueue",
        )
        # Checked and written in one write transaction, so no enqueue() can slip in between.
        with self._connection() as conn, conn.atomic():
            known = load_specs(conn).get(table)
            if known is not None and known.mode == "track":
                raise ConfigError(
                    f"table {table!r} is tracked with triggers; enqueue() is for tables with no local copy"
                )
            if known is None or (known.key, known.columns) != (spec.key, spec.columns):
                _refuse_stored_changes(conn, spec, known)
            save_spec(conn, spec)
        return spec

    def tables(self) -> dict[str, TableSpec]:
        """The synced tables, by name."""
        with self._connection() as conn:
            return load_specs(conn)

    @staticmethod
    def _check_value(table: str, column: str, value: object) -> None:
        """Apply the Database API's rules (:func:`~d1sync.values.encode_param`) to one value of ``column``."""
        try:
            encode_param(value)
        except ValueEncodingError as exc:
            reason = str(exc).removeprefix("value: ")
            raise ValueEncodingError(f"table {table!r}, column {column!r}: {reason}") from exc

    @classmethod
    def _key_values(cls, spec: TableSpec, key: object) -> list[object]:
        """The key's values, checked and in canonical form: a bool or an integral float becomes an int, so
        ``1``, ``1.0`` and ``True`` address one key (SQLite and D1 compare them equal)."""
        if isinstance(key, Mapping):
            missing = [c for c in spec.key if c not in key]
            if missing:
                raise ConfigError(f"key of {spec.name!r} is ({', '.join(spec.key)}); got {key!r}")
            values = [key[c] for c in spec.key]
        elif isinstance(key, tuple | list):
            values = list(key)
        else:
            values = [key]
        if len(values) != len(spec.key) or any(v is None for v in values):
            raise ConfigError(f"key of {spec.name!r} is ({', '.join(spec.key)}); got {key!r}")
        for column, value in zip(spec.key, values, strict=True):
            cls._check_value(spec.name, column, value)
        return [canonical_key_value(v) for v in values]

    def _append(self, table: str, build: Callable[[TableSpec], tuple[str, str, str | None]]) -> None:
        """Append one change to ``table``'s log: ``build`` gets the spec and returns (key, op, payload).

        The spec is read inside the write transaction, so a concurrent declare() cannot change the column
        order between the check and the write.
        """
        with self._connection() as conn, conn.atomic():
            key, op, payload = build(_enqueue_spec(conn, table))
            append_changes(conn, table, [(key, op, payload)])

    def enqueue(self, table: str, row: Mapping[str, Any]) -> None:
        """Queue an upsert of ``row`` (every declared column) to the declared ``table``.

        Values follow the Database API's rules: ``None``, ``bool``, ``int`` (64-bit), finite ``float``,
        ``str`` and ``bytes``. Key values are canonical: ``{"id": 1.0}`` and ``{"id": True}`` are key ``1``.

        Raises:
            ConfigError: ``table`` is not declared, or ``row`` lacks a declared column or has another one.
            ValueEncodingError: a value cannot be stored exactly (named by table and column); nothing is queued.
        """

        def build(spec: TableSpec) -> tuple[str, str, str | None]:
            unknown = [c for c in row if c not in spec.columns]
            missing = [c for c in spec.columns if c not in row]
            if unknown or missing:
                raise ConfigError(
                    f"row for {table!r} must have exactly the declared columns ({', '.join(spec.columns)})"
                    + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                    + (f"; missing: {', '.join(missing)}" if missing else "")
                )
            for column in spec.columns:
                self._check_value(table, column, row[column])
            key_values = dict(zip(spec.key, self._key_values(spec, row), strict=True))
            # The payload carries the canonical key too, so the row D1 stores is the one delete() addresses.
            data, _ = encode_row([key_values.get(c, row[c]) for c in spec.columns])
            return encode_key(list(key_values.values())), "upsert", data

        self._append(table, build)

    def delete(self, table: str, key: object) -> None:
        """Queue a delete of ``key`` (a value, a tuple for composite keys, or a mapping) from ``table``."""
        self._append(table, lambda spec: (encode_key(self._key_values(spec, key)), "delete", None))

    # -- state -------------------------------------------------------------------------------------------

    def status(self) -> Status:
        """The outbox's status (see :class:`~d1sync.sync.status.Status`)."""
        with self._connection() as conn:
            return read_status(conn)

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead letters, oldest first (at most ``limit``)."""
        with self._connection() as conn:
            return list_dead(conn, limit)

    def retry_dead(self, ids: Sequence[int] | None = None) -> int:
        """Requeue dead letters' rows (all not yet retrying when ``ids`` is None); returns how many.

        Each letter keeps its id, marked ``retrying``, until D1 acknowledges its row; refused again, it counts
        one more attempt. Raises ConfigError for an unknown id.
        """
        with self._connection() as conn:
            return retry_dead(conn, ids)

    def drop_dead(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters for good (all when ``ids`` is None); returns how many. ConfigError for an
        unknown id."""
        with self._connection() as conn:
            return drop_dead(conn, ids)


def _enqueue_spec(conn: Connection, table: str) -> TableSpec:
    spec = load_specs(conn).get(table)
    if spec is None or spec.mode != "enqueue":
        raise ConfigError(f"table {table!r} is not declared for enqueue(); call Outbox.declare({table!r}, ...)")
    return spec


def _refuse_stored_changes(conn: Connection, spec: TableSpec, known: TableSpec | None) -> None:
    """Raise if changes of ``spec.name`` are stored: each holds its row in the earlier column order."""
    table = spec.name
    pending = pending_of(conn, table)
    dead = dead_of(conn, table)
    if not pending and not dead:
        return
    db = shown(conn.path)
    stored = " and ".join(
        text for count, text in ((pending, f"{pending} pending change(s)"), (dead, f"{dead} dead letter(s)")) if count
    )
    if known is None:
        # No spec to untrack with drop_pending: the worker dead-letters changes of tables no longer synced.
        raise ConfigError(
            f"cannot declare {table!r}: {stored} of it were recorded under an earlier declaration that was "
            "untracked since, and their rows would be misread under a new one. Run the worker once "
            f"(`d1sync sync {db}`) to move pending ones to dead letters, drop those (`d1sync dead {db} list`, "
            f"then `d1sync dead {db} drop --id N`), then declare again"
        )
    steps = []
    if pending:
        steps.append(f"sync them first (`d1sync sync {db}`) or drop them: Outbox.untrack({table!r}, drop_pending=True)")
    if dead:
        steps.append(f"retry and sync the dead letters, or drop them (`d1sync dead {db} retry|drop --id N`)")
    raise ConfigError(
        f"cannot declare {table!r} with key ({', '.join(spec.key)}) and columns ({', '.join(spec.columns)}): "
        f"{stored} of it were recorded with key ({', '.join(known.key)}) and columns "
        f"({', '.join(known.columns)}), each holding its row in that column order, and would be misread. "
        f"To change the declaration, {'; '.join(steps)}; then declare again. Declaring again with the same "
        "key and columns is always fine"
    )


def _mark_replicated(
    conn: Connection,
    path: Path,
    tables: Sequence[str],
    *,
    version_column: str | None = None,
    target: Database | None = None,
) -> list[TableSpec]:
    """Make ``tables`` two-way: tracked (without a backfill: the remote is the shared state), their capture
    triggers skipping pulled rows, each owing a first resync; and, with ``target``, the remote capture
    installed there (all tables' triggers in one batch).

    Raises:
        ConfigError: a table is missing locally or remotely, has no usable key, or is declared for enqueue().
    """
    if not tables:
        raise ConfigError("name at least one table to replicate")
    ensure_schema(conn)
    ensure_replica_schema(conn)
    with conn.atomic():
        known = load_specs(conn)
        specs: list[TableSpec] = []
        for table in tables:
            old = known.get(table)
            if old is not None and old.mode != "track":
                raise ConfigError(f"table {table!r} is declared for enqueue(); only tracked tables can be replicated")
            column = version_column if version_column is not None else (old.version_column if old else None)
            include, exclude = (old.include, old.exclude) if old else (None, None)
            spec = inspect_table(conn, table, include=include, exclude=exclude, version_column=column)
            specs.append(replace(spec, replicate=True))
    if target is not None:
        check_remote_tables(target, specs)
        every = [s for s in load_specs(conn).values() if s.replicate and s.name not in tables] + specs
        target.batch([target.prepare(sql) for sql in capture_ddl(every)])
    with conn.atomic():
        known = load_specs(conn)
        pulls = load_pull_tables(conn)
        for spec in specs:
            install_triggers(conn, spec, all_columns=all_columns(conn, spec.name))
            save_spec(conn, spec)
            old = known.get(spec.name)
            if old is None or not old.replicate:
                # New to the pull: its rows may differ from the remote's in any way, so it is compared first.
                save_pull_table(conn, spec.name, replace(pulls.get(spec.name, PullTable()), resync=True))
        replicated = [s.name for s in load_specs(conn).values() if s.replicate]
        replica = replica_identity(conn, path, replicated)
        if target is not None and not replica.installed:
            save_replica(conn, replace(replica, installed=True))
    return specs


def _owes_resend(before: TableSpec, now: TableSpec, captured: bool) -> bool:
    """Whether re-tracking a known table must send every row again: its capture was missing (the table was
    recreated, e.g. by pandas' ``to_sql(if_exists="replace")``, and writes went uncaptured meanwhile), or
    it now syncs columns (or a key) it did not."""
    return not captured or bool(set(now.columns) - set(before.columns)) or now.key != before.key


def _resend_all(conn: Connection, table: str) -> None:
    """Queue every row of ``table`` again (chunk by chunk, as the worker re-sends) and check D1's table anew."""
    state = load_table_states(conn).get(table, TableState())
    save_table_state(conn, table, replace(state, resend_after="", remote_columns=None))
