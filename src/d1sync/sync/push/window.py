"""The change log: read a window of pending changes, coalesced per key, and acknowledge what was sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import column_expr, encode_row, has_undecodable_text, key_sql
from d1sync.sync.model import Change, Op, TableSpec, seq_param
from d1sync.sync.store.lease import holds_lease
from d1sync.sync.store.log import (
    append_changes,
    delete_changes,
    issued_seq,
    keys_changed_after,
    keys_written_after,
    read_log,
    rows_through,
)
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import schema_version

__all__ = ["ReadAhead", "Window", "acknowledge", "read_window", "requeue"]

_KEYS_PER_QUERY = 5_000
_LOG_PAGE = 20_000
"""Change rows read per query while a window is filled."""
_MAX_SCAN_PER_KEY = 20
"""Change rows a window reads per key of its limit at most (it bounds a pass over a log of pure churn)."""
_BAD_ROW_TEXT = (
    "a text value of this row is not valid UTF-8, which D1 cannot store; "
    "fix the row locally (e.g. UPDATE with CAST(... AS BLOB)) and retry the dead letter"
)
_BAD_KEY_TEXT = "its key or payload is not valid UTF-8 text, which D1 cannot store"


@dataclass
class Window:
    """Coalesced changes read in one snapshot; ``full`` means more may be pending behind it."""

    changes: list[Change]
    orphans: list[Change]
    """Changes for tables that are no longer synced (they go to dead letters, never silently away)."""
    full: bool
    superseded: list[Change] = field(default_factory=list)
    """Keys left out because they change again beyond the window. Acknowledge them unsent: the later change
    sends the row's state then. Leaving them pending would pin the window in place for good."""
    specs: dict[str, TableSpec] = field(default_factory=dict)
    """The synced tables as of the window's snapshot (a table tracked a moment later is not an orphan)."""
    invalid: list[tuple[Change, str]] = field(default_factory=list)
    """Changes that can never be sent as they are (text that is not UTF-8), with the reason."""
    schema_version: int = -1
    """``PRAGMA schema_version`` in the window's snapshot: a window read ahead is used only if no DDL ran since
    the pass's preflight (which follows renames and new columns before anything is read)."""
    high: int = 0
    """The highest seq the window read (0 when it read none)."""
    top: int = 0
    """The highest seq issued when the window was read: a change row above it was written after."""


@dataclass(frozen=True)
class ReadAhead:
    """Where a window read while a request is in flight takes up (see :func:`read_window`)."""

    high: int
    """The highest seq of the window being delivered (:attr:`Window.high`)."""
    top: int
    """The highest seq issued when that window was read (:attr:`Window.top`)."""
    in_flight: Sequence[Change]
    """The changes of the request in flight: never read again."""
    held_back: Sequence[Change]
    """What that window holds back for the next one: still pending, not in flight."""


def _current_rows(
    conn: Connection, spec: TableSpec, keys: Sequence[str]
) -> Iterator[tuple[dict[str, tuple[object, ...]], bool]]:
    """The current local rows for ``keys`` (JSON key arrays), by key text, :data:`_KEYS_PER_QUERY` keys at a
    time (a big window never holds all its rows undecoded at once); with each chunk, whether some text was
    not UTF-8 (then :func:`~d1sync.sync.codec.has_undecodable_text` tells which rows)."""
    q = quote_identifier(spec.name)
    join = " AND ".join(f"t.{quote_identifier(c)} IS {column_expr(i, True, 'j.value')}" for i, c in enumerate(spec.key))
    cols = ", ".join(f"t.{quote_identifier(c)}" for c in spec.columns)
    sql = f"SELECT {key_sql('t', spec.key)}, {cols} FROM json_each(?) AS j JOIN {q} AS t ON {join}"
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        param = "[" + ",".join(keys[start : start + _KEYS_PER_QUERY]) + "]"
        rows, bad = conn.read(sql, (param,))
        yield {row[0]: tuple(row[1:]) for row in rows}, bad


def _defer_moving_keys(
    conn: Connection, specs: Mapping[str, TableSpec], latest: dict[tuple[str, str], Change], high: int
) -> list[Change]:
    """Leave out keys of foreign-key-related tables that change again beyond this window.

    State-based sync sends a row's *current* state. In a window cut from a longer log, the current state of a
    child may point at a parent whose change lies beyond the window, and D1 would refuse the child. Such keys
    wait for the window that holds their last change. Tables with no foreign keys need no such care.
    """
    related = {name for name, spec in specs.items() if spec.parents}
    related |= {parent for name in related for parent in specs[name].parents}
    if not related or not any(table in related for table, _ in latest):
        return []
    moving = keys_changed_after(conn, high, related)
    return [latest.pop((table, key)) for table, key in moving if (table, key) in latest]


def _coalesce(
    rows: Iterable[tuple[int, str, str, Op, str | None]], carried: Iterable[Change] = ()
) -> dict[tuple[str, str], Change]:
    """One Change per (table, key): only the newest matters; every older row is acknowledged with it.

    ``carried`` are changes of an earlier window whose rows all come before ``rows`` (copied, not changed).
    """
    latest = {(c.table, c.key): Change(c.table, c.key, c.op, c.data, c.blobs, c.seqs) for c in carried}
    repeated: dict[tuple[str, str], list[int]] = {}
    for seq, table, key, op, payload in rows:
        change = latest.get((table, key))
        if change is None:
            latest[(table, key)] = Change(table, key, op, payload, seqs=(seq,))
            continue
        change.op, change.data = op, payload
        seqs = repeated.get((table, key))
        if seqs is None:
            seqs = repeated[(table, key)] = list(change.seqs)
        seqs.append(seq)
    for table_key, seqs in repeated.items():
        latest[table_key].seqs = tuple(seqs)
    return latest


def _read_current_state(
    conn: Connection,
    specs: Mapping[str, TableSpec],
    tracked: list[Change],
    window: Window,
    known: Mapping[tuple[str, str], Change],
    written: Container[tuple[str, str]],
) -> None:
    """State-based: a tracked key present now is an upsert of its current state; absent now, a delete.

    A key in ``known`` (read and encoded by an earlier window, of a table whose every change is logged) with
    the very same change rows is reused when it is not in ``written`` (the keys written since that window
    was read): its state is still current.
    """
    by_table: dict[str, list[Change]] = {}
    for change in tracked:
        before = known.get((change.table, change.key))
        if before is not None and before.seqs == change.seqs and (change.table, change.key) not in written:
            change.op, change.data, change.blobs = before.op, before.data, before.blobs
            window.changes.append(change)
            continue
        by_table.setdefault(change.table, []).append(change)
    for table, pending in by_table.items():
        chunks = _current_rows(conn, specs[table], [c.key for c in pending])
        for start, (current, lenient) in zip(range(0, len(pending), _KEYS_PER_QUERY), chunks, strict=True):
            for change in pending[start : start + _KEYS_PER_QUERY]:
                row = current.get(change.key)
                if row is None:
                    change.op, change.data, change.blobs = "delete", None, frozenset()
                elif lenient and has_undecodable_text(row):
                    window.invalid.append((change, _BAD_ROW_TEXT))
                    continue
                else:
                    change.op = "upsert"
                    change.data, change.blobs = encode_row(row)
                window.changes.append(change)


def read_window(conn: Connection, limit: int, *, skip: Iterable[str] = (), ahead: ReadAhead | None = None) -> Window:
    """Read the change rows of up to ``limit`` distinct keys (each coalesced to its newest change, see
    :func:`_read_keys`), the synced tables' specs and their rows' current state, in one read snapshot.
    Changes of the tables in ``skip`` (paused, or not checked this pass) stay pending and take no room in
    the window.

    With ``ahead``, the window is read while a request of the window before is in flight: it never holds a
    change row in flight, and it takes up that window's held-back changes as they are (their rows' states
    are reused where their keys were not written since, see :func:`_read_current_state`) with the rows
    after its highest seq. When some other pending row lies below that seq (not expected; a row is never lost for
    it), the rows in flight are left out by seq instead.
    """
    skipped = json.dumps(sorted(skip)) if skip else None
    carried: Sequence[Change] = ()
    with conn.snapshot():
        version = schema_version(conn)
        top = issued_seq(conn)
        specs = load_specs(conn)
        if ahead is None:
            log, lenient_log, full = _read_keys(conn, limit, skipped)
        elif _only_these_below(conn, ahead, skipped):
            carried = ahead.held_back
            held = {(c.table, c.key) for c in carried}
            log, lenient_log, full = _read_keys(conn, limit, skipped, after=ahead.high, known=held)
        else:
            log, lenient_log, full = _read_keys(conn, limit, skipped, exclude=ahead.in_flight)
        latest = _coalesce(log, carried)
        high = log[-1][0] if log else max((c.seqs[-1] for c in carried), default=0)
        superseded = _defer_moving_keys(conn, specs, latest, high=high) if full and latest else []
        window = Window(
            changes=[],
            orphans=[],
            full=full,
            superseded=superseded,
            specs=specs,
            schema_version=version,
            high=high,
            top=top,
        )
        tracked: list[Change] = []
        for change in latest.values():
            spec = specs.get(change.table)
            if spec is None:
                window.orphans.append(change)
            elif lenient_log and has_undecodable_text((change.key, change.data)):
                window.invalid.append((change, _BAD_KEY_TEXT))
            elif spec.mode == "enqueue":
                if change.op == "upsert" and change.data is not None:
                    values = json.loads(change.data)
                    change.blobs = frozenset(i for i, v in enumerate(values) if isinstance(v, dict))
                window.changes.append(change)
            else:
                tracked.append(change)
        known: dict[tuple[str, str], Change] = {}
        written: Container[tuple[str, str]] = ()
        if ahead is not None and ahead.held_back:
            since = keys_written_after(conn, ahead.top, limit)
            if since is not None:  # else so much was written that no earlier state is reused
                logged = {t for t in {c.table for c in ahead.held_back} if _always_logged(conn, specs.get(t))}
                known, written = {(c.table, c.key): c for c in ahead.held_back if c.table in logged}, since
        _read_current_state(conn, specs, tracked, window, known, written)
    window.changes.sort(key=lambda c: c.seqs[-1])
    return window


def _read_keys(
    conn: Connection,
    limit: int,
    skipped: str | None,
    *,
    after: int = 0,
    exclude: Sequence[Change] = (),
    known: Iterable[tuple[str, str]] = (),
) -> tuple[list[tuple[int, str, str, Op, str | None]], bool, bool]:
    """The pending change rows in seq order up to the first row of a key beyond ``limit`` distinct keys
    (``known`` keys count among them), at most :data:`_MAX_SCAN_PER_KEY` rows a key; and whether some text
    was not UTF-8, and whether rows are left beyond (the window is full).

    A window counts keys, not change rows: a key changed a hundred times is one row to send, so requests
    follow rows, not churn.
    """
    keys = set(known)
    taken: list[tuple[int, str, str, Op, str | None]] = []
    lenient = False
    most = max(limit, 1_000) * _MAX_SCAN_PER_KEY
    while True:
        options: dict[str, Any] = {"after": after} if after else {}
        if exclude:
            options["exclude"] = exclude
        page, bad = read_log(conn, _LOG_PAGE, skipped, **options)
        lenient |= bad
        rows = page.fetchall()
        for row in rows:
            key = (row[1], row[2])
            if key not in keys:
                if len(keys) >= limit:
                    return taken, lenient, True
                keys.add(key)
            taken.append(row)
        if len(rows) < _LOG_PAGE:
            return taken, lenient, False
        if len(taken) >= most:
            return taken, lenient, True
        after = rows[-1][0]


def _always_logged(conn: Connection, spec: TableSpec | None) -> bool:
    """Whether every change to a row of this table writes a change row for its key, so that a key with none
    since a window was read still has the state that window read. Not so for a two-way table (a pull applies
    rows without capture), nor for a table with a UNIQUE index besides its key: ``INSERT OR REPLACE`` removes
    the row holding a clashing value without a change row (unless ``recursive_triggers`` is on)."""
    if spec is None or spec.replicate:
        return False
    unique = conn.execute('SELECT name FROM pragma_index_list(?) WHERE "unique"', (spec.name,)).fetchall()
    for (index,) in unique:
        columns = {row[0] for row in conn.execute("SELECT name FROM pragma_index_info(?)", (index,)).fetchall()}
        if columns != set(spec.key):
            return False
    return True


def _row_count(changes: Iterable[Change]) -> int:
    return sum(len(c.seqs) for c in changes)


def _only_these_below(conn: Connection, ahead: ReadAhead, skipped: str | None) -> bool:
    """Whether the pending rows up to ``ahead.high`` (but those of the skipped tables) are exactly the rows in
    flight and held back, as they are after a plain delivery (the rest of that window was acknowledged or
    dead-lettered before its requests went). Seqs only grow, so nothing written since lies below."""
    return rows_through(conn, ahead.high, skipped) == _row_count(ahead.in_flight) + _row_count(ahead.held_back)


def acknowledge(
    conn: Connection,
    changes: Sequence[Change],
    *,
    owner: str | None = None,
    then: Callable[[Connection, Sequence[Change]], object] | None = None,
) -> int | None:
    """Delete the change rows behind ``changes`` (newer changes to the same keys stay pending).

    With ``owner``, only while that worker still holds the drain lease: returns None (and deletes nothing)
    when another worker has held it since, because that worker may have sent these keys already. ``then``
    runs in the same transaction (the worker resolves the rows' dead letters with it).
    """
    with conn.atomic():
        if owner is not None and not holds_lease(conn, owner):
            return None
        deleted = delete_changes(conn, "seq IN (SELECT value FROM json_each(?))", (seq_param(changes),))
        if then is not None:
            then(conn, changes)
    return len(deleted)


def requeue(conn: Connection, changes: Sequence[Change]) -> None:
    """Append a fresh change row for each of ``changes`` (tracked tables: their current state is sent again)."""
    if not changes:
        return
    with conn.atomic():
        for table, run in groupby(changes, key=lambda c: c.table):  # in order: runs of one table
            append_changes(conn, table, [(c.key, "upsert", None) for c in run])
