"""What a pass does before it reads the window, table by table, once local schema changes are followed
(:mod:`~d1sync.sync.tables.follow`): check the remote schema of the tables that need it in one request, and
follow it where d1sync manages it; feed re-sends; and delete the remote rows of tables untracked with
``delete_remote``.

Who owns a table's remote schema:

* d1sync (the table is *managed*) by default, for a table tracked one way with every column;
* migrations when the remote has a migrations ledger (``d1_migrations``, or wrangler's ledger under another
  ``migrations_table`` name: :func:`~d1sync.sync.schema.describe.has_migrations_ledger`), unless the table or
  the run says ``manage_schema=True``;
* the user, for ``manage_schema=False`` (``--no-manage-schema`` on ``track`` for one table, on ``run`` /
  ``sync`` for all), a two-way table (a Worker writes it too) and a table synced with include/exclude (its
  remote table is not the local one).

A table is checked when its local schema changed (its fingerprint, taken only when ``PRAGMA
schema_version`` moved), when it was never checked, when a local change re-derived its columns, and when a
pause for the remote schema is due for a re-check. A managed table follows (:mod:`~d1sync.sync.schema.follow`);
an unmanaged one pauses when D1 lacks it or a synced column, with the statements that fix it and the real path
of the file in the alternative; other differences of an unmanaged table are logged as a warning.

Each step touches one table at a time; a table that cannot go on is paused (or skipped for this pass on a
transient failure), and the others go on. Auth errors and a missing database are not about a table: they are
raised, and the worker pauses as a whole.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from d1sync.database import Database
from d1sync.errors import D1Error, SQLError, TransientError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection, shown
from d1sync.sync.model import TableSpec
from d1sync.sync.schema import ddl
from d1sync.sync.schema.create import SchemaObject, create_statements, read_objects
from d1sync.sync.schema.describe import (
    SchemaDifference,
    TableSchema,
    compare_schemas,
    has_migrations_ledger,
    read_schemas,
)
from d1sync.sync.schema.fit import refuses_every_row
from d1sync.sync.schema.follow import follow_table, lookup
from d1sync.sync.schema.plan import addable, creation_order, fingerprint, rebuild_statements, rename_statements
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


@dataclass
class SchemaCheck:
    """What the schema step of a pass left: tables to skip this pass, and whether to come back soon."""

    waiting: set[str] = field(default_factory=set)
    retry_soon: bool = False


def _fix_statements(
    local: TableSchema, remote: TableSchema | None, state: TableState, objects: list[SchemaObject]
) -> list[str]:
    """What makes an unmanaged remote table take the local rows: create it, rename what SQLite reported
    renamed, add the missing columns (or the rebuild, when ``ADD COLUMN`` cannot)."""
    if remote is None:
        return create_statements(objects, [local.name], if_not_exists=False)
    statements = rename_statements(local.name, state.renamed_from, state.renames, remote)
    renamed = {new.lower() for _, new in state.renames}
    parts = ddl.table_parts(local.sql)
    texts = {words[0]: (words, text) for words, text in zip(parts.columns, parts.texts, strict=True)}
    q = quote_identifier(local.name)
    for column in local.columns:
        if remote.column(column.name) is not None or column.name.lower() in renamed:
            continue
        words, text = texts.get(ddl.normalize(quote_identifier(column.name)) or "", ((), ""))
        if not text or not addable(words):
            return rebuild_statements(local, remote, renames=state.renames)
        statements.append(f"ALTER TABLE {q} ADD COLUMN {text}")
    return statements


def _unmanaged(
    conn: Connection,
    spec: TableSpec,
    local: TableSchema | None,
    remote: TableSchema | None,
    state: TableState,
    ledger: bool,
    now: float,
    old: TableSchema | None = None,
) -> TableState:
    """Check an unmanaged table: pause it while D1 lacks it or a synced column, with the exact fix (``old``:
    D1's table under the name the local table had before a rename)."""
    missing = [] if remote is None else [c for c in spec.columns if remote.column(c) is None]
    refusing = (
        [] if remote is None or local is None else [d for d in compare_schemas(local, remote) if refuses_every_row(d)]
    )
    if refusing and not missing:
        assert remote is not None
        return _refusing(conn, spec, refusing, state, ledger, now)
    if remote is not None and not missing:
        if local is not None:
            # Loud only when the local table changed and D1's did not follow; a known difference is DEBUG.
            changed = state.schema is not None and state.schema != fingerprint(local)
            for difference in compare_schemas(local, remote):
                log.log(
                    logging.WARNING if changed else logging.DEBUG,
                    "table %s differs on the remote (its schema is not managed by d1sync): %s",
                    spec.name,
                    difference,
                )
        done = replace(resume(state, "remote"), remote_columns=remote.column_names, renames=(), renamed_from=None)
        if state.renames:  # the owner made D1 fit, maybe without renaming: send the renamed columns' values
            done = replace(done, resend_after=state.resend_after or "")
        return done
    reason = (
        f"table {spec.name!r} is missing on the remote"
        if remote is None
        else f"table {spec.name!r} on the remote lacks column(s) {', '.join(missing)}"
    )
    if local is None:
        return replace(pause(state, "remote", reason, None, now), remote_columns=None)
    statements = _fix_statements(local, remote or old, state, read_objects(conn))
    where = "add a migration that runs" if ledger else "run on the remote"
    owner = " (its migrations ledger says migrations own its schema)" if ledger else ""
    fix = f"{where}{owner}: {'; '.join(statements)}" + _manage_hint(conn, spec)
    return replace(pause(state, "remote", reason, fix, now), remote_columns=None)


def _refusing(
    conn: Connection, spec: TableSpec, refusing: list[SchemaDifference], state: TableState, ledger: bool, now: float
) -> TableState:
    """Pause an unmanaged table whose D1 copy has NOT NULL columns without a default that the file lacks: D1
    would refuse every row (sent, each would become a dead letter)."""
    columns = [d.column or "" for d in refusing]
    q = quote_identifier(spec.name)
    drops = "; ".join(f"ALTER TABLE {q} DROP COLUMN {quote_identifier(c)}" for c in columns)
    where = "add a migration that runs" if ledger else "run on the remote"
    reason = (
        f"table {spec.name!r} on the remote has NOT NULL column(s) without a default that the local table lacks "
        f"({', '.join(columns)}): D1 would refuse every row"
    )
    resume = f"d1sync resume {shown(conn.path)}"
    fix = f"{where}: {drops}, or give them a default there, or add them locally; then `{resume}`"
    return replace(pause(state, "remote", reason, fix + _manage_hint(conn, spec), now), remote_columns=None)


def _manage_hint(conn: Connection, spec: TableSpec) -> str:
    """The other way out of an unmanaged table's pause, where d1sync can own its schema."""
    if not spec.schema_managed(True, False):  # two-way, or include/exclude: d1sync cannot own it
        return ""
    track = f"d1sync track {shown(conn.path)} {shlex.quote(spec.name)} --manage-schema"
    return f"; or let d1sync manage this table's schema: `{track}`"


def _needs_check(spec: TableSpec, state: TableState, fingerprint_now: str | None, now: float, interval: float) -> bool:
    if state.paused is not None:
        return state.cause == "remote" and recheck_due(state, now, interval)
    if state.remote_columns is None or any(c not in state.remote_columns for c in spec.columns):
        return True
    return spec.mode == "track" and fingerprint_now is not None and fingerprint_now != state.schema


def _local_schemas(
    conn: Connection, specs: Mapping[str, TableSpec], states: dict[str, TableState], version: int
) -> dict[str, TableSchema]:
    """The local schemas of the tracked tables whose file schema moved since they were last fingerprinted."""
    stale = [n for n, s in specs.items() if s.mode == "track" and states.get(n, TableState()).schema_version != version]
    return read_schemas(conn, stale) if stale else {}


def check_schemas(
    conn: Connection,
    target: Database,
    specs: Mapping[str, TableSpec],
    states: dict[str, TableState],
    *,
    manage: bool | None,
    version: int,
    now: float,
    pause_interval: float,
) -> SchemaCheck:
    """Check (and follow) the remote schema of the tables that need it; updates ``states`` in place and in
    the file. Raises D1Error for failures that are not about one table (auth, a missing database)."""
    result = SchemaCheck()
    local = _local_schemas(conn, specs, states, version)
    due = []
    for name, spec in sorted(specs.items()):
        if spec.mode == "purge":
            continue
        state = states.get(name, TableState())
        mine = lookup(local, name)
        current = fingerprint(mine) if mine is not None else state.schema
        if mine is not None and current == state.schema and state.schema_version != version:
            states[name] = replace(state, schema_version=version)  # the file changed, not this table
            with conn.atomic():
                save_table_state(conn, name, states[name])
        if _needs_check(spec, state, current, now, pause_interval):
            due.append(name)
    if not due:
        return result
    try:
        remote = read_schemas(target)
    except TransientError as exc:
        log.warning("remote schema check of %s failed, retried next pass: %s", ", ".join(due), exc)
        result.waiting.update(due)
        result.retry_soon = True
        return result
    ledger = has_migrations_ledger(remote)
    if any(specs[n].schema_managed(manage, ledger) for n in due):
        local.update(read_schemas(conn, [n for n in due if lookup(local, n) is None]))
    known = {n: schema for n in due if (schema := lookup(local, n)) is not None}
    due = creation_order(known) + [n for n in due if n not in known]  # parents before children
    for name in due:
        _check_one(conn, target, specs, states, name, lookup(local, name), remote, manage, ledger, version, now, result)
    states.update(load_table_states(conn))  # a rebuild recorded re-sends of other tables in the file
    return result


def _check_one(
    conn: Connection,
    target: Database,
    specs: Mapping[str, TableSpec],
    states: dict[str, TableState],
    name: str,
    local: TableSchema | None,
    remote: dict[str, TableSchema],
    manage: bool | None,
    ledger: bool,
    version: int,
    now: float,
    result: SchemaCheck,
) -> None:
    spec = specs[name]
    state = load_table_states(conn).get(name, TableState())  # an earlier table's rebuild may have changed it
    if local is None and spec.mode == "track":
        local = lookup(read_schemas(conn, [name]), name)
    if spec.schema_managed(manage, ledger) and local is not None:
        try:
            followed = follow_table(conn, target, local, remote, state, specs, now)
        except TransientError as exc:
            log.warning("following the schema of %s on the remote failed, retried next pass: %s", name, exc)
            result.waiting.add(name)
            result.retry_soon = True
            return
        state = followed.state
        if followed.equal:
            state = replace(resume(state, "remote"), remote_columns=local.column_names)
        else:
            reason = f"table {name!r} differs on the remote after d1sync followed it: {'; '.join(followed.differences)}"
            fix = (
                f"change the local table so that D1 can take it, or `d1sync track {shown(conn.path)} "
                f"{shlex.quote(name)} --no-manage-schema` and make D1's table fit by hand, then `d1sync resume "
                f"{shown(conn.path)}`"
            )
            # Cause "local": tried again after the next local DDL or a resume, not every pause_interval (a
            # rebuild that D1 refuses would re-send the table's children each time).
            state = replace(pause(state, "local", reason, fix, now), remote_columns=None)
    else:
        old = lookup(remote, state.renamed_from) if state.renamed_from else None
        state = _unmanaged(conn, spec, local, lookup(remote, name), state, ledger, now, old)
    if local is not None and state.paused is None:
        state = replace(state, schema=fingerprint(local), schema_version=version)
    states[name] = state
    with conn.atomic():
        save_table_state(conn, name, state)


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
