"""Following local schema changes, one table at a time.

Applications evolve: ``ALTER TABLE ... ADD/DROP/RENAME COLUMN``, ``RENAME TO``, ``DROP`` + ``CREATE``. The
worker runs :func:`reconcile` whenever ``PRAGMA schema_version`` moved (and on its first pass), and follows
what it safely can:

==============================  ===========================================================================
local change                    what happens
==============================  ===========================================================================
ADD COLUMN                      the spec gains the column; once the remote has it, every row is sent again
DROP COLUMN                     the spec loses it (D1 keeps its values; they are no longer sent)
RENAME COLUMN                   the spec follows, and the rename is recorded for the remote (the column
                                marker, which SQLite rewrote, names the old and the new column); no re-send
RENAME TABLE                    capture moves to the new name, pending changes follow, every row is re-sent;
                                the old name is recorded for the remote
DROP + CREATE                   capture is installed again and every row re-sent; remote rows the new table
                                lacks are kept (a note says how to delete them)
DROP (not recreated)            that table pauses with the choice spelled out: untrack, or delete remotely
a different key                 that table pauses with the exact fix
==============================  ===========================================================================

What the remote table then does is :mod:`~d1sync.sync.schema`'s (a managed table follows) or the
preflight's pause (an unmanaged one). Whatever happens to one table, the others keep flowing.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass, field, replace

from d1sync.errors import ConfigError
from d1sync.sqlite import Connection
from d1sync.sync.capture import all_columns, derive_spec
from d1sync.sync.model import TableSpec
from d1sync.sync.store.dead import rename_dead
from d1sync.sync.store.log import rename_changes
from d1sync.sync.store.specs import forget_spec, load_specs, save_spec
from d1sync.sync.store.state import TableState, save_table_state
from d1sync.sync.store.triggers import capture_of, captured_columns, install_triggers, remove_triggers
from d1sync.sync.tables.pauses import pause, resume

__all__ = [
    "Reconciled",
    "reconcile",
]

log = logging.getLogger("d1sync.sync")


@dataclass
class Reconciled:
    """What :func:`reconcile` changed: spec names before and after, for the worker's caches."""

    changed: set[str] = field(default_factory=set)
    renamed: dict[str, str] = field(default_factory=dict)


def _db(conn: Connection) -> str:
    """The file as the fix should name it: the path it was opened with."""
    return shlex.quote(os.fspath(conn.path))


def _table_exists(conn: Connection, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None


def _renames(
    spec: TableSpec, captured: tuple[str, ...] | None, columns: list[str], earlier: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """The column renames SQLite reported: the update trigger lists the synced columns, and RENAME COLUMN
    rewrote a name in that list in place. Added to the ``earlier`` ones not followed on D1 yet (a then b: a
    to c). A drop plus an add never shows here: DROP COLUMN leaves the list alone."""
    if captured is None or len(captured) != len(spec.columns):
        return earlier
    found = [
        (old, new)
        for old, new in zip(spec.columns, captured, strict=True)
        if old != new and new in columns and old not in columns
    ]
    if not found:
        return earlier
    merged = dict(earlier)
    for old, new in found:
        first = next((a for a, b in merged.items() if b == old), old)
        merged.pop(first, None)
        merged[first] = new
        log.info("column %s of %s was renamed locally to %s", old, spec.name, new)
    return tuple((a, b) for a, b in merged.items() if a != b)


def _follow(
    conn: Connection,
    spec: TableSpec,
    table: str,
    state: TableState,
    now: float,
    captured: tuple[str, ...] | None = None,
) -> TableState:
    """Bring ``spec`` in line with the local table ``table`` (its name, or the name it was renamed to);
    ``captured`` is what its update trigger listed before (see :func:`_renames`)."""
    state = replace(state, renames=_renames(spec, captured, all_columns(conn, table), state.renames))
    try:
        new = derive_spec(conn, spec, table)
    except ConfigError as exc:
        return pause(state, "local", f"table {table!r} can no longer be synced: {exc}", None, now)
    if new.key != spec.key:
        return pause(
            state,
            "local",
            f"the key of table {table!r} changed locally from ({', '.join(spec.key)}) to ({', '.join(new.key)})",
            f"give the remote table the same key, then `d1sync untrack {_db(conn)} {table}` and "
            f"`d1sync track {_db(conn)} {table}`",
            now,
        )
    new = replace(new, mode=spec.mode)
    count, _ = capture_of(conn, table)
    resend = state.resend_after
    if new.columns != spec.columns or count < 3 or table != spec.name or captured is None:
        install_triggers(conn, new, all_columns=all_columns(conn, table))
        save_spec(conn, new)
        # A column SQLite reported renamed keeps its values on D1 once renamed there too: not "added". Where
        # D1 cannot rename it (d1sync.sync.schema.follow), or an unmanaged table's owner made it fit some
        # other way (d1sync.sync.tables.preflight), the rows are sent again then.
        added = set(new.columns) - set(spec.columns) - {new_name for _, new_name in state.renames}
        if added or count < 3 or table != spec.name:
            resend = ""  # every row again: new columns' values, or writes made while capture was missing
    note = state.note
    if count == 0 and table == spec.name:
        note = (
            f"table {table!r} was recreated locally; rows D1 holds that the new table lacks were kept "
            f"(`d1sync verify {_db(conn)} {table} --repair --delete-extra` deletes them)"
        )
    # The local table is fine now; the remote is checked again for the columns the spec has now.
    base = resume(state, "local")
    return replace(base, resend_after=resend, remote_columns=None if new != spec else base.remote_columns, note=note)


def _rename(conn: Connection, spec: TableSpec, new_name: str, states: dict[str, TableState]) -> None:
    """Move capture, pending changes and the spec from ``spec.name`` to ``new_name``."""
    remove_triggers(conn, spec.name)  # they sit on the new table now, writing the old name
    rename_changes(conn, spec.name, new_name)
    rename_dead(conn, spec.name, new_name)
    forget_spec(conn, spec.name)
    save_table_state(conn, spec.name, None)
    save_spec(conn, replace(spec, name=new_name))
    moved = states.pop(spec.name, TableState())
    states[new_name] = replace(moved, renamed_from=moved.renamed_from or spec.name)
    log.info("table %s was renamed locally to %s: capture follows it", spec.name, new_name)


def reconcile(conn: Connection, specs: dict[str, TableSpec], states: dict[str, TableState], now: float) -> Reconciled:
    """Follow the local schema for every tracked table (see the module docstring), in one transaction.

    Updates ``specs`` and ``states`` in place (and in the file) and says what changed.
    """
    done = Reconciled()
    with conn.atomic():
        for name, spec in sorted(specs.items()):
            if spec.mode != "track":
                continue
            state = states.get(name, TableState())
            table = name
            captured = captured_columns(conn, name)  # before _rename removes the triggers
            if not _table_exists(conn, name):
                _, hosts = capture_of(conn, name)
                moved = sorted(h for h in hosts if h != name and _table_exists(conn, h) and h not in specs)
                if not moved:
                    fix = (
                        f"`d1sync untrack {_db(conn)} {name}` to stop syncing it and keep its rows on D1, or "
                        f"`d1sync untrack {_db(conn)} {name} --delete-remote` to delete them on D1 too"
                    )
                    new_state = pause(state, "local", f"table {name!r} no longer exists locally", fix, now)
                    if new_state != state:
                        states[name] = new_state
                        save_table_state(conn, name, new_state)
                        done.changed.add(name)
                    continue
                table = moved[0]
                _rename(conn, spec, table, states)
                spec = replace(spec, name=table)
                done.renamed[name] = table
                state = states[table]
            new_state = _follow(conn, spec, table, state, now, captured)
            if new_state != state or table != name:
                states[table] = new_state
                save_table_state(conn, table, new_state)
                done.changed.add(table)
    specs.clear()
    specs.update(load_specs(conn))
    return done
