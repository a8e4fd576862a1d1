"""What a pass does before it reads the window, table by table, once local schema changes are followed
(:mod:`~d1sync.sync.tables.follow`): check (and follow) the remote schema
(:mod:`~d1sync.sync.tables.schemas`), feed re-sends, and delete the remote rows of tables untracked with
``delete_remote``.

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
from d1sync.sync.model import TableSpec
from d1sync.sync.schema.describe import read_schemas
from d1sync.sync.schema.plan import fingerprint
from d1sync.sync.store.specs import forget_spec, load_specs
from d1sync.sync.store.state import TableState, load_table_states, save_table_state, schema_version
from d1sync.sync.tables.pauses import pause, recheck_due, resume
from d1sync.sync.tables.resend import queue_chunk
from d1sync.sync.tables.schemas import check_schemas

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


def assume_remote_matches(conn: Connection) -> None:
    """Record every synced table's remote schema as its local one, where nothing was checked yet: the
    remote tables were just created from this file's DDL. Call inside a write transaction."""
    states = load_table_states(conn)
    version = schema_version(conn)
    specs = load_specs(conn)
    local = read_schemas(conn, list(specs))
    for name, spec in specs.items():
        state = states.get(name, TableState())
        if state.remote_columns is None and state.paused is None:
            mine = local.get(name)
            checked = replace(state, remote_columns=spec.columns)
            if mine is not None:
                checked = replace(checked, schema=fingerprint(mine), schema_version=version)
            save_table_state(conn, name, checked)


def preflight(
    conn: Connection,
    target: Database,
    *,
    now: float,
    check_schema: bool,
    pause_interval: float,
    chunk: int,
    manage_schema: bool | None = None,
) -> Preflight:
    """Prepare a pass (see the module docstring). Raises D1Error for failures that are not about one table."""
    version = schema_version(conn)  # read first: DDL after it is followed next pass
    specs = load_specs(conn)
    states = load_table_states(conn)
    result = Preflight(specs, states, schema_version=version)
    if check_schema:
        checked = check_schemas(
            conn, target, specs, states, manage=manage_schema, version=version, now=now, pause_interval=pause_interval
        )
        result.waiting |= checked.waiting
        result.retry_soon |= checked.retry_soon
    for name, spec in sorted(specs.items()):
        state = states.get(name, TableState())
        if state.paused is not None and state.cause == "refused" and recheck_due(state, now, pause_interval):
            state = resume(state)  # try the table again: the refusal may have been fixed remotely
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
