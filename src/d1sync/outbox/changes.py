"""The change log: read a window of pending changes, coalesce them, acknowledge them, dead-letter them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from d1sync.local import write_transaction
from d1sync.outbox.capture import TableSpec, key_json_sql, load_specs
from d1sync.outbox.planner import Change, column_expr, encode_row
from d1sync.outbox.schema import holds_lease, now_ms
from d1sync.sql import quote_identifier

__all__ = ["DeadLetter", "Window", "acknowledge", "dead_letter", "read_window", "requeue"]


@dataclass
class Window:
    """Coalesced changes read in one snapshot; ``full`` means more may be pending behind it."""

    changes: list[Change]
    orphans: list[Change]
    """Changes for tables that are no longer synced (they go to dead letters, never silently away)."""
    rows_read: int
    full: bool
    superseded: list[Change] = field(default_factory=list)
    """Keys left out because they change again beyond the window. Acknowledge them unsent: the later change
    sends the row's state then. Leaving them pending would pin the window in place for good."""
    specs: dict[str, TableSpec] = field(default_factory=dict)
    """The synced tables as of the window's snapshot (a table tracked a moment later is not an orphan)."""
    invalid: list[tuple[Change, str]] = field(default_factory=list)
    """Changes that can never be sent as they are (text that is not UTF-8), with the reason."""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    table: str
    key: str
    op: str
    payload: str | None
    error: str
    attempts: int
    first_failed_at: int
    last_failed_at: int


def _current_rows(
    conn: sqlite3.Connection, spec: TableSpec, keys: Sequence[str]
) -> tuple[dict[str, tuple[object, ...]], bool]:
    """The current local rows for ``keys`` (JSON key arrays), by key text; and whether some text was not UTF-8
    (then :func:`_not_utf8` tells which rows)."""
    q = quote_identifier(spec.name)
    key_json = key_json_sql("t", spec.key)
    join = " AND ".join(f"t.{quote_identifier(c)} IS {column_expr(i, True, 'j.value')}" for i, c in enumerate(spec.key))
    cols = ", ".join(f"t.{quote_identifier(c)}" for c in spec.columns)
    sql = f"SELECT {key_json}, {cols} FROM json_each(?) AS j JOIN {q} AS t ON {join}"
    found: dict[str, tuple[object, ...]] = {}
    lenient = False
    for start in range(0, len(keys), 5_000):
        param = "[" + ",".join(keys[start : start + 5_000]) + "]"
        rows, bad = _fetch(conn, sql, (param,))
        lenient |= bad
        for row in rows:
            found[row[0]] = tuple(row[1:])
    return found, lenient


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> tuple[list[Any], bool]:
    """Run a query; if some text is not valid UTF-8, run it again decoding such bytes as lone surrogates.

    SQLite stores whatever bytes it is given as TEXT; Python refuses to decode them, and D1 (UTF-8 through
    and through) could not store them either. The fallback keeps one bad row from failing the whole window:
    :func:`_not_utf8` finds it afterwards and it is dead-lettered. Returns the rows and whether the fallback
    was needed: only then need the caller look for bad text, so the common case pays nothing.
    """
    try:
        return conn.execute(sql, params).fetchall(), False
    except sqlite3.OperationalError as exc:
        if "decode to UTF-8" not in str(exc):
            raise
    previous = conn.text_factory
    conn.text_factory = _lenient_text
    try:
        return conn.execute(sql, params).fetchall(), True
    finally:
        conn.text_factory = previous


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _not_utf8(values: Iterable[object]) -> bool:
    """True if a text value came through :func:`_lenient_text` with bytes that are not UTF-8."""
    for value in values:
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _defer_moving_keys(
    conn: sqlite3.Connection, specs: Mapping[str, TableSpec], latest: dict[tuple[str, str], Change], high: int
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
    moving, _ = _fetch(
        conn,
        "SELECT DISTINCT tbl, key FROM _d1sync_changes WHERE seq > ? AND tbl IN (SELECT value FROM json_each(?))",
        (high, json.dumps(sorted(related))),
    )
    deferred = [latest.pop((table, key)) for table, key in moving if (table, key) in latest]
    return deferred


def read_window(conn: sqlite3.Connection, limit: int) -> Window:
    """Read up to ``limit`` change rows, the synced tables' specs and their rows' current state, in one
    read transaction (one snapshot)."""
    conn.execute("BEGIN")
    try:
        specs = load_specs(conn)
        query = "SELECT seq, tbl, key, op, payload FROM _d1sync_changes ORDER BY seq LIMIT ?"
        rows, lenient_log = _fetch(conn, query, (limit,))
        latest: dict[tuple[str, str], Change] = {}
        for seq, table, key, op, payload in rows:
            change = latest.get((table, key))
            if change is None:
                change = latest[(table, key)] = Change(table, key, op)
            # Only the newest change of a key matters; every older row is acknowledged with it.
            change.op = op
            change.data = payload
            change.seqs.append(seq)
        full = len(rows) >= limit
        superseded = _defer_moving_keys(conn, specs, latest, high=rows[-1][0]) if full and rows else []
        changes: list[Change] = []
        orphans: list[Change] = []
        invalid: list[tuple[Change, str]] = []
        by_table: dict[str, list[Change]] = {}
        for change in latest.values():
            spec = specs.get(change.table)
            if spec is None:
                orphans.append(change)
            elif lenient_log and _not_utf8((change.key, change.data)):
                invalid.append((change, "its key or payload is not valid UTF-8 text, which D1 cannot store"))
            elif spec.mode == "enqueue":
                if change.op == "upsert" and change.data is not None:
                    values = json.loads(change.data)
                    change.blobs = frozenset(i for i, v in enumerate(values) if isinstance(v, dict))
                changes.append(change)
            else:
                by_table.setdefault(change.table, []).append(change)
        for table, pending in by_table.items():
            current, lenient_rows = _current_rows(conn, specs[table], [c.key for c in pending])
            for change in pending:
                row = current.get(change.key)
                # State-based: present now -> upsert its current state; absent now -> delete.
                if row is None:
                    change.op, change.data = "delete", None
                elif lenient_rows and _not_utf8(row):
                    invalid.append(
                        (
                            change,
                            "a text value of this row is not valid UTF-8, which D1 cannot store; "
                            "fix the row locally (e.g. UPDATE with CAST(... AS BLOB)) and retry the dead letter",
                        )
                    )
                    continue
                else:
                    change.op = "upsert"
                    change.data, change.blobs = encode_row(row)
                changes.append(change)
    finally:
        conn.execute("COMMIT")
    changes.sort(key=lambda c: c.seqs[-1])
    return Window(
        changes=changes,
        orphans=orphans,
        rows_read=len(rows),
        full=full,
        superseded=superseded,
        specs=specs,
        invalid=invalid,
    )


def _seq_param(changes: Iterable[Change]) -> str:
    return json.dumps([s for c in changes for s in c.seqs])


def acknowledge(conn: sqlite3.Connection, changes: Sequence[Change], *, owner: str | None = None) -> int | None:
    """Delete the change rows behind ``changes`` (newer changes to the same keys stay pending).

    With ``owner``, only while that worker still holds the drain lease: returns None (and deletes nothing)
    when another worker has held it since, because that worker may have sent these keys already.
    """
    with write_transaction(conn):
        if owner is not None and not holds_lease(conn, owner):
            return None
        cur = conn.execute(
            "DELETE FROM _d1sync_changes WHERE seq IN (SELECT value FROM json_each(?))", (_seq_param(changes),)
        )
    return cur.rowcount


def requeue(conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
    """Append a fresh change row for each of ``changes`` (tracked tables: their current state is sent again)."""
    if not changes:
        return
    now = now_ms()
    with write_transaction(conn):
        conn.executemany(
            "INSERT INTO _d1sync_changes (tbl, key, op, created_at) VALUES (?, ?, 'upsert', ?)",
            [(c.table, c.key, now) for c in changes],
        )


def dead_letter(conn: sqlite3.Connection, failures: Sequence[tuple[Change, str]]) -> int:
    """Move ``failures`` to ``_d1sync_dead`` with their error text, atomically with their acknowledgement.

    Only changes whose rows are still in the log become dead letters (another worker may have handled them
    meanwhile); returns how many did.
    """
    if not failures:
        return 0
    now = now_ms()
    with write_transaction(conn):
        cur = conn.execute(
            "DELETE FROM _d1sync_changes WHERE seq IN (SELECT value FROM json_each(?)) RETURNING seq",
            (_seq_param(c for c, _ in failures),),
        )
        present = {row[0] for row in cur.fetchall()}
        moved = [(change, error) for change, error in failures if present.intersection(change.seqs)]
        for change, error in moved:
            conn.execute(
                "INSERT INTO _d1sync_dead (tbl, key, op, payload, error, attempts, first_failed_at, last_failed_at) "
                "VALUES (?, CAST(? AS TEXT), ?, CAST(? AS TEXT), ?, 1, ?, ?)",
                (change.table, _original(change.key), change.op, _original(change.data), error, now, now),
            )
    return len(moved)


def _original(value: str | None) -> str | bytes | None:
    """The text as SQLite held it: bytes that were not UTF-8 go back as they were (stored with CAST AS TEXT)."""
    if value is None or not _not_utf8((value,)):
        return value
    return value.encode("utf-8", "surrogateescape")


def list_dead(conn: sqlite3.Connection, limit: int | None = None) -> list[DeadLetter]:
    rows, _ = _fetch(
        conn,
        "SELECT id, tbl, key, op, payload, error, attempts, first_failed_at, last_failed_at "
        "FROM _d1sync_dead ORDER BY id LIMIT ?",
        (-1 if limit is None else limit,),
    )
    return [DeadLetter(*r) for r in rows]


def _ids_clause(ids: Sequence[int] | None) -> tuple[str, tuple[object, ...]]:
    if ids is None:
        return "", ()
    return " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)


def retry_dead(conn: sqlite3.Connection, ids: Sequence[int] | None = None) -> int:
    """Put dead letters back in the change log (``ids=None``: all). Tracked rows resend their current state."""
    where, params = _ids_clause(ids)
    now = now_ms()
    with write_transaction(conn):
        cur = conn.execute(
            f"INSERT INTO _d1sync_changes (tbl, key, op, payload, created_at) "
            f"SELECT tbl, key, op, payload, ? FROM _d1sync_dead{where} ORDER BY id",
            (now, *params),
        )
        conn.execute(f"DELETE FROM _d1sync_dead{where}", params)
    return cur.rowcount


def drop_dead(conn: sqlite3.Connection, ids: Sequence[int] | None = None) -> int:
    """Delete dead letters for good (``ids=None``: all)."""
    where, params = _ids_clause(ids)
    with write_transaction(conn):
        cur = conn.execute(f"DELETE FROM _d1sync_dead{where}", params)
    return cur.rowcount
