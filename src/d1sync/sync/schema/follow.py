"""D1's table follows the local one: one managed table brought to the local schema, step by step.

:func:`follow_table` runs at most a few steps, each one atomic D1 batch that opens with deferred foreign keys
and the push fence (a schema batch is a send like any other: one that D1 applies late, after newer sends,
fails as a whole), each logged at INFO with its SQL and recorded as the table's ``last_schema_change``:

1. the table missing on D1: created from the local DDL with its indexes and the local views that use it (and
   every row re-sent, if D1 had the table before);
2. renames SQLite reported locally (``RENAME TO``, ``RENAME COLUMN``): the same statements;
3. columns dropped, columns added in a form ``ADD COLUMN`` takes, indexes: the same statements;
4. anything else (or a step 3 that D1 refused): the rebuild of :mod:`~d1sync.sync.schema.plan`.

After each step but a creation the remote table is read again and compared; a table still different after
a rebuild is paused with the differences. Before a rebuild is sent, the re-send of the table and of every
tracked table that references it (recursively: dropping the old table runs their ON DELETE actions) is
recorded in the file, with the table marked unchecked, so a kill -9 between the batch and the next local
commit compares again (nothing left to do) and still re-sends. Children that are not tracked, remote
triggers the rebuild drops and remote views naming the table are warned about before it runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from d1sync.database import Database
from d1sync.errors import FileRewoundError, SQLError
from d1sync.sql import quote_literal
from d1sync.sqlite import Connection
from d1sync.sync.model import TableSpec
from d1sync.sync.remote import REWOUND, fence_statements
from d1sync.sync.schema.create import SchemaObject, create_statements, read_objects
from d1sync.sync.schema.describe import TableSchema, compare_schemas, read_schemas
from d1sync.sync.schema.plan import alter_statements, rebuild_statements, rename_statements
from d1sync.sync.store.state import PREFIX, TableState, load_table_states, next_send, save_table_state

__all__ = ["Followed", "follow_table", "lookup"]

log = logging.getLogger("d1sync.sync")

DEFER_FOREIGN_KEYS = "PRAGMA defer_foreign_keys = on"
_STEPS = 4
_REMOTE_TRIGGERS = (
    "SELECT name, tbl_name, sql FROM sqlite_master WHERE type IN ('trigger', 'view') AND sql IS NOT NULL "
    f"AND substr(name, 1, {len(PREFIX)}) <> {quote_literal(PREFIX)}"
)


@dataclass
class Followed:
    """How following one table ended: the table's new state, and whether D1's table equals the local one."""

    state: TableState
    equal: bool
    differences: list[str] = field(default_factory=list)


def lookup(schemas: Mapping[str, TableSchema], name: str) -> TableSchema | None:
    """``schemas[name]``, compared as SQLite compares names."""
    found = schemas.get(name)
    if found is not None:
        return found
    low = name.lower()
    return next((s for n, s in schemas.items() if n.lower() == low), None)


def _send(conn: Connection, target: Database, statements: list[str]) -> None:
    """One schema batch: deferred foreign keys, the fence, the statements."""
    identity, number = next_send(conn)
    batch = [target.prepare(DEFER_FOREIGN_KEYS)]
    batch += [target.prepare(sql).bind(*params) for sql, params in fence_statements(identity, number)]
    batch += [target.prepare(sql) for sql in statements]
    try:
        target.batch(batch)
    except SQLError as exc:
        if exc.fence == REWOUND:
            raise FileRewoundError(
                f"{conn.path} is older than what it already sent to D1 (restored from a backup?): D1 refused its "
                f"schema change #{number}. Make D1 equal to this file: d1sync verify {conn.path} --repair "
                "--delete-extra"
            ) from exc
        raise


def _record(table: str, action: str, statements: list[str], state: TableState, now: float) -> TableState:
    log.info("schema of %s on the remote: %s: %s", table, action, "; ".join(statements))
    change: dict[str, Any] = {"at": now, "action": action, "sql": statements}
    return replace(state, last_schema_change=change)


def _children(name: str, local: Mapping[str, TableSchema]) -> list[str]:
    """Every local table that references ``name`` by foreign key, recursively (not ``name`` itself)."""
    found: list[str] = []
    todo = [name.lower()]
    while todo:
        parent = todo.pop()
        for table, schema in sorted(local.items()):
            refers = any(fk.table.lower() == parent for fk in schema.foreign_keys)
            if refers and table.lower() != name.lower() and table not in found:
                found.append(table)
                todo.append(table.lower())
    return found


def _prepare_rebuild(
    conn: Connection,
    target: Database,
    name: str,
    specs: Mapping[str, TableSpec],
    remote: Mapping[str, TableSchema],
) -> list[tuple[str, str]]:
    """Warn about what the rebuild touches beyond the table, record the re-sends (table and tracked children)
    in the file before the batch goes, and return the local views naming the table (name, sql)."""
    local = read_schemas(conn)
    children = _children(name, local)
    for child in children:
        spec = specs.get(child)
        if spec is None or spec.mode != "track":
            log.warning(
                "rebuilding %s on the remote deletes or changes rows of %s there (ON DELETE actions of its foreign "
                "keys), and %s is not tracked: d1sync cannot send them again (track it to keep it exact)",
                name,
                child,
                child,
            )
    for table, schema in sorted(remote.items()):
        refers = any(fk.table.lower() == name.lower() for fk in schema.foreign_keys)
        if refers and lookup(local, table) is None:
            log.warning("rebuilding %s on the remote may change rows of the remote-only table %s", name, table)
    for other, table, _sql in (tuple(r) for r in target.prepare(_REMOTE_TRIGGERS).raw()):
        if str(table).lower() == name.lower() and lookup(local, str(other)) is None:
            log.warning("rebuilding %s on the remote drops its remote-only trigger or view %s", name, other)
    views = [o for o in read_objects(conn) if o.type == "view" and o.names([name])]
    existing = set(remote) | {name}
    kept = [(v.name, v.sql) for v in views if v.names(list(local)) <= existing]
    with conn.atomic():
        states = load_table_states(conn)
        for table in [name, *(c for c in children if c in specs and specs[c].mode == "track")]:
            state = states.get(table, TableState())
            save_table_state(conn, table, replace(state, resend_after="", schema=None))
    return kept


def _plan(
    local: TableSchema,
    remote_table: TableSchema | None,
    state: TableState,
    objects: list[SchemaObject],
    remote_names: list[str],
    rebuild: bool,
) -> tuple[str, list[str]]:
    """The next step for the table: (action, statements); ("", []) when D1's table already is the local one."""
    name = local.name
    if remote_table is None:
        return "create", create_statements(objects, [name], existing=remote_names)
    renames = rename_statements(name, state.renamed_from, state.renames, remote_table)
    if renames:
        return "rename", renames
    differences = compare_schemas(local, remote_table)
    if not differences:
        return "", []
    alter = None if rebuild else alter_statements(local, remote_table, differences)
    if alter:
        return "alter", alter
    return "rebuild", []


def follow_table(
    conn: Connection,
    target: Database,
    local: TableSchema,
    remote: dict[str, TableSchema],
    state: TableState,
    specs: Mapping[str, TableSpec],
    now: float | None = None,
) -> Followed:
    """Bring D1's table to ``local`` (see the module docstring); ``remote`` is every remote table as read
    this pass (updated in place). Raises D1Error for transient and whole-database failures."""
    now = time.time() if now is None else now
    name = local.name
    objects = read_objects(conn)
    rebuild = False
    renamed_from = state.renamed_from
    if renamed_from is not None and lookup(remote, name) is None and lookup(remote, renamed_from) is not None:
        remote_table: TableSchema | None = lookup(remote, renamed_from)
    else:
        remote_table = lookup(remote, name)
        state = replace(state, renamed_from=None)
    if state.renames and remote_table is not None:
        applicable = rename_statements(name, None, state.renames, remote_table)
        if len(applicable) < len(state.renames):  # D1 cannot rename them all: their values come by re-send
            state = replace(state, resend_after="", renames=())
            with conn.atomic():
                save_table_state(conn, name, state)
    for _ in range(_STEPS):
        action, statements = _plan(local, remote_table, state, objects, list(remote), rebuild)
        if not action:
            return Followed(replace(state, renames=(), renamed_from=None), True)
        if action == "rebuild":
            assert remote_table is not None
            views = _prepare_rebuild(conn, target, name, specs, remote)
            renames = state.renames
            statements = rebuild_statements(local, remote_table, renames=renames, views=views)
            state = replace(state, resend_after="")
        if action == "create" and (state.schema is not None or state.remote_columns is not None):
            # D1 had the table and lost it (dropped there): every row again, recorded before the batch goes.
            state = replace(state, resend_after="", schema=None)
            with conn.atomic():
                save_table_state(conn, name, state)
        try:
            _send(conn, target, statements)
        except SQLError as exc:
            if action != "alter":
                return Followed(state, False, [f"{action} of {name!r} on D1 failed: {exc.message}"])
            log.info("altering %s on the remote failed (%s): rebuilding it instead", name, exc.message)
            rebuild = True
            continue
        state = _record(name, action, statements, state, now)
        if action == "create":
            remote[name] = local  # made from the local DDL: the next table's views may name it
            return Followed(replace(state, renames=(), renamed_from=None), True)
        if action == "rename":
            state = replace(state, renames=(), renamed_from=None)
        fresh = read_schemas(target, [name])
        remote.pop(renamed_from or "", None)
        remote_table = lookup(fresh, name)
        if remote_table is not None:
            remote[remote_table.name] = remote_table
        if action == "rebuild":
            left = compare_schemas(local, remote_table)
            return Followed(replace(state, renames=()), not left, [str(d) for d in left])
    left = compare_schemas(local, remote_table)
    return Followed(state, not left, [str(d) for d in left])
