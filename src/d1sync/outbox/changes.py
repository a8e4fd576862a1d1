"""The change log: read a window of pending changes, coalesced per key, and acknowledge what was sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Literal

from d1sync.outbox.capture import TableSpec, load_specs
from d1sync.outbox.codec import column_expr, encode_row, has_undecodable_text, key_sql
from d1sync.outbox.lease import holds_lease
from d1sync.outbox.log import PENDING, append_changes, delete_changes
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection

__all__ = ["Change", "Op", "Window", "acknowledge", "read_window", "requeue", "seq_param"]

Op = Literal["upsert", "delete"]

_KEYS_PER_QUERY = 5_000
_BAD_ROW_TEXT = (
    "a text value of this row is not valid UTF-8, which D1 cannot store; "
    "fix the row locally (e.g. UPDATE with CAST(... AS BLOB)) and retry the dead letter"
)
_BAD_KEY_TEXT = "its key or payload is not valid UTF-8 text, which D1 cannot store"


@dataclass
class Change:
    """One coalesced change: the newest state of one key, and every change-log row it acknowledges."""

    table: str
    key: str
    op: Op
    data: str | None = None
    blobs: frozenset[int] = frozenset()
    """Indexes of values sent in object form (BLOBs, text with NUL); see :func:`~d1sync.outbox.codec.encode_row`."""
    seqs: list[int] = field(default_factory=list)

    @property
    def payload(self) -> str:
        return self.data if self.op == "upsert" and self.data is not None else self.key

    @property
    def size(self) -> int:
        """Bytes of the payload as UTF-8 (computed once: the planner asks several times per row)."""
        payload = self.payload
        if self._size_of is not payload:
            self._size_of, self._size = payload, len(payload.encode())
        return self._size

    _size_of: str | None = field(default=None, repr=False, compare=False)
    _size: int = field(default=0, repr=False, compare=False)


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


def _current_rows(conn: Connection, spec: TableSpec, keys: Sequence[str]) -> tuple[dict[str, tuple[object, ...]], bool]:
    """The current local rows for ``keys`` (JSON key arrays), by key text; and whether some text was not UTF-8
    (then :func:`~d1sync.outbox.codec.has_undecodable_text` tells which rows)."""
    q = quote_identifier(spec.name)
    join = " AND ".join(f"t.{quote_identifier(c)} IS {column_expr(i, True, 'j.value')}" for i, c in enumerate(spec.key))
    cols = ", ".join(f"t.{quote_identifier(c)}" for c in spec.columns)
    sql = f"SELECT {key_sql('t', spec.key)}, {cols} FROM json_each(?) AS j JOIN {q} AS t ON {join}"
    found: dict[str, tuple[object, ...]] = {}
    lenient = False
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        param = "[" + ",".join(keys[start : start + _KEYS_PER_QUERY]) + "]"
        rows, bad = conn.read(sql, (param,))
        lenient |= bad
        for row in rows:
            found[row[0]] = tuple(row[1:])
    return found, lenient


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
    moving, _ = conn.read(
        f"SELECT DISTINCT tbl, key FROM {PENDING} WHERE seq > ? AND tbl IN (SELECT value FROM json_each(?))",
        (high, json.dumps(sorted(related))),
    )
    return [latest.pop((table, key)) for table, key in moving if (table, key) in latest]


def _coalesce(rows: Iterable[tuple[int, str, str, Op, str | None]]) -> dict[tuple[str, str], Change]:
    """One Change per (table, key): only the newest matters; every older row is acknowledged with it."""
    latest: dict[tuple[str, str], Change] = {}
    for seq, table, key, op, payload in rows:
        change = latest.get((table, key))
        if change is None:
            latest[(table, key)] = Change(table, key, op, payload, seqs=[seq])
        else:
            change.op, change.data = op, payload
            change.seqs.append(seq)
    return latest


def _read_current_state(
    conn: Connection,
    specs: Mapping[str, TableSpec],
    tracked: list[Change],
    window: Window,
    known: Mapping[tuple[str, str], Change],
) -> None:
    """State-based: a tracked key present now is an upsert of its current state; absent now, a delete.

    A key in ``known`` with the very same change rows was read (and encoded) by an earlier window and not
    written since, or a newer change row would be in its place: that state is reused.
    """
    by_table: dict[str, list[Change]] = {}
    for change in tracked:
        before = known.get((change.table, change.key))
        if before is not None and before.seqs == change.seqs:
            change.op, change.data, change.blobs = before.op, before.data, before.blobs
            window.changes.append(change)
            continue
        by_table.setdefault(change.table, []).append(change)
    for table, pending in by_table.items():
        current, lenient = _current_rows(conn, specs[table], [c.key for c in pending])
        for change in pending:
            row = current.get(change.key)
            if row is None:
                change.op, change.data = "delete", None
            elif lenient and has_undecodable_text(row):
                window.invalid.append((change, _BAD_ROW_TEXT))
                continue
            else:
                change.op = "upsert"
                change.data, change.blobs = encode_row(row)
            window.changes.append(change)


def read_window(
    conn: Connection,
    limit: int,
    *,
    skip: Iterable[str] = (),
    exclude: Sequence[Change] = (),
    known: Sequence[Change] = (),
) -> Window:
    """Read up to ``limit`` change rows, the synced tables' specs and their rows' current state, in one
    read snapshot. Changes of the tables in ``skip`` (paused, or not checked this pass) stay pending and
    take no room in the window.

    For a window read ahead while a request is in flight: the change rows behind ``exclude`` (that request)
    are left out, so the window never holds what is being sent; ``known`` are changes of an earlier window
    of the same schema still pending (a held-back tail), whose row states are reused where no newer change
    row came (see :func:`_read_current_state`)."""
    conditions, params = [], []
    if skip:
        conditions.append("tbl NOT IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(sorted(skip)))
    if exclude:
        conditions.append("seq NOT IN (SELECT value FROM json_each(?))")
        params.append(seq_param(exclude))
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    query = f"SELECT seq, tbl, key, op, payload FROM {PENDING} {where}ORDER BY seq LIMIT ?"
    with conn.snapshot():
        version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
        specs = load_specs(conn)
        rows, lenient_log = conn.read(query, (*params, limit))
        log = rows.fetchall()
        latest = _coalesce(log)
        full = len(log) >= limit
        superseded = _defer_moving_keys(conn, specs, latest, high=log[-1][0]) if full and log else []
        window = Window(changes=[], orphans=[], full=full, superseded=superseded, specs=specs, schema_version=version)
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
        _read_current_state(conn, specs, tracked, window, {(c.table, c.key): c for c in known})
    window.changes.sort(key=lambda c: c.seqs[-1])
    return window


def seq_param(changes: Iterable[Change]) -> str:
    """The seqs behind ``changes`` as one JSON parameter."""
    return json.dumps([s for c in changes for s in c.seqs])


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
