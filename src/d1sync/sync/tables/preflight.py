"""What a pass does before it reads the window, table by table, once local schema changes are followed
(:mod:`~d1sync.sync.tables.follow`): check the remote schema, feed re-sends, and delete the remote rows of
tables untracked with ``delete_remote``.

Each step touches one table at a time; a table that cannot go on is paused (or skipped for this pass on a
transient failure), and the others go on. Auth errors and a missing database are not about a table: they are
raised, and the worker pauses as a whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from d1sync.database import Database
from d1sync.errors import D1Error, SQLError, TransientError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.capture import create_sql, table_columns
from d1sync.sync.model import TableSpec
from d1sync.sync.store.specs import forget_spec, load_specs
from d1sync.sync.store.state import TableState, load_table_states, save_table_state, schema_version
from d1sync.sync.tables.pauses import pause, recheck_due, resume
from d1sync.sync.tables.resend import queue_chunk

__all__ = ["Preflight", "assume_remote_matches", "preflight"]

log = logging.getLogger("d1sync.sync")


@dataclass
class Preflight:
    """The tables as the pass sees them, and those whose changes wait (paused, or unchecked this time)."""

    specs: dict[str, TableSpec]
    states: dict[str, TableState]
    waiting: set[str] = field(default_factory=set)
    schema_version: int = -1
    retry_soon: bool = False
    """A table was skipped for a transient failure: the next pass should come soon, not on the next write."""
    resending: bool = False
    """A table's re-send has chunks left to queue: there is more to send even when nothing is pending."""

    @property
    def paused(self) -> dict[str, str]:
        """The paused tables and why."""
        return {name: state.paused for name, state in self.states.items() if state.paused and name in self.specs}


def _column_sql(conn: Connection, table: str, column: str) -> str:
    """``"c" TYPE [NOT NULL] [DEFAULT x]`` for a remote ``ALTER TABLE ... ADD COLUMN``."""
    for c in table_columns(conn, table):
        if c.name == column:
            row = conn.execute("SELECT dflt_value FROM pragma_table_info(?) WHERE name = ?", (table, column)).fetchone()
            parts = [quote_identifier(c.name), c.type]
            if c.notnull and row and row[0] is not None:
                parts.append("NOT NULL")
            if row and row[0] is not None:
                parts.append(f"DEFAULT {row[0]}")
            return " ".join(p for p in parts if p)
    return quote_identifier(column)


def _remote_fix(conn: Connection, spec: TableSpec, remote: list[str]) -> tuple[str, str]:
    """The reason a table's remote schema does not fit, and the statements that make it fit."""
    q = quote_identifier(spec.name)
    if not remote:
        ddl = create_sql(conn, spec.name) or f"CREATE TABLE {q} (...)"
        return f"table {spec.name!r} is missing on the remote", f"run on the remote: {ddl}"
    missing = [c for c in spec.columns if c not in remote]
    gone = [c for c in remote if c not in spec.columns and c not in [x.name for x in table_columns(conn, spec.name)]]
    if len(missing) == 1 and len(gone) == 1:
        fix = f"ALTER TABLE {q} RENAME COLUMN {quote_identifier(gone[0])} TO {quote_identifier(missing[0])}"
    else:
        fix = "; ".join(f"ALTER TABLE {q} ADD COLUMN {_column_sql(conn, spec.name, c)}" for c in missing)
    return f"table {spec.name!r} on the remote lacks column(s) {', '.join(missing)}", f"run on the remote: {fix}"


def _check_remote(target: Database, conn: Connection, spec: TableSpec, state: TableState, now: float) -> TableState:
    """``state`` after reading the remote table's columns (raises on transient, auth and database errors)."""
    rows = target.prepare(f"PRAGMA table_info({quote_identifier(spec.name)})").all().results
    remote = [str(r["name"]) for r in rows]
    if not remote or any(c not in remote for c in spec.columns):
        reason, fix = _remote_fix(conn, spec, remote)
        return replace(pause(state, "remote", reason, fix, now), remote_columns=None)
    return replace(resume(state, "remote"), remote_columns=tuple(remote))


def assume_remote_matches(conn: Connection) -> None:
    """Record every synced table's remote columns as its local ones, where nothing was checked yet: the
    remote tables were just created from this file's DDL. Call inside a write transaction."""
    states = load_table_states(conn)
    for name, spec in load_specs(conn).items():
        state = states.get(name, TableState())
        if state.remote_columns is None and state.paused is None:
            save_table_state(conn, name, replace(state, remote_columns=spec.columns))


def _needs_check(spec: TableSpec, state: TableState, now: float, interval: float) -> bool:
    if state.paused is not None:
        return state.cause == "remote" and recheck_due(state, now, interval)
    return state.remote_columns is None or any(c not in state.remote_columns for c in spec.columns)


def preflight(
    conn: Connection,
    target: Database,
    *,
    now: float,
    check_schema: bool,
    pause_interval: float,
    chunk: int,
) -> Preflight:
    """Prepare a pass (see the module docstring). Raises D1Error for failures that are not about one table."""
    version = schema_version(conn)  # read first: DDL after it is followed next pass
    specs = load_specs(conn)
    states = load_table_states(conn)
    result = Preflight(specs, states, schema_version=version)
    for name, spec in sorted(specs.items()):
        state = states.get(name, TableState())
        if state.paused is not None and state.cause == "refused" and recheck_due(state, now, pause_interval):
            state = resume(state)  # try the table again: the refusal may have been fixed remotely
        if check_schema and spec.mode != "purge" and _needs_check(spec, state, now, pause_interval):
            try:
                state = _check_remote(target, conn, spec, state, now)
            except TransientError as exc:
                log.warning("remote schema check of %s failed, retried next pass: %s", name, exc)
                result.waiting.add(name)
                result.retry_soon = True
        if spec.mode == "purge" and state.paused is None and name not in result.waiting:
            state = _purge(conn, target, spec, state, now, result)
        elif state.paused is None and state.resend_after is not None and name not in result.waiting:
            state = queue_chunk(conn, spec, state, chunk)
            result.resending |= state.resend_after is not None
        if state != states.get(name, TableState()):
            states[name] = state
            with conn.atomic():
                save_table_state(conn, name, state)
        if state.paused is not None:
            result.waiting.add(name)
    return result


def _purge(
    conn: Connection, target: Database, spec: TableSpec, state: TableState, now: float, result: Preflight
) -> TableState:
    """Delete every remote row of a table untracked with ``delete_remote``, then forget the table."""
    try:
        target.batch([target.prepare(f"DELETE FROM {quote_identifier(spec.name)}")])
    except TransientError as exc:
        log.warning("deleting the remote rows of %s failed, retried next pass: %s", spec.name, exc)
        result.waiting.add(spec.name)
        result.retry_soon = True
        return state
    except SQLError as exc:
        if exc.missing != ("table", spec.name):
            return pause(
                state, "refused", f"deleting the remote rows of {spec.name!r} failed: {exc.message}", None, now
            )
    except D1Error:
        raise
    with conn.atomic():
        forget_spec(conn, spec.name, mode="purge")
        save_table_state(conn, spec.name, None)
    log.info("deleted the remote rows of %s, untracked with delete_remote", spec.name)
    result.specs.pop(spec.name, None)
    result.states.pop(spec.name, None)
    return TableState()
