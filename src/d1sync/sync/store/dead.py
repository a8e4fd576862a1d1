"""Dead letters: changes D1 refused for good, kept with the error until someone retries or drops them.

One letter per row (table and key): a row refused again updates its letter (same id, ``attempts`` + 1, the
latest error) instead of adding another. ``retry`` puts the row back in the outbox and marks its letter
``retrying``; the letter is resolved (deleted) once the row's state is acknowledged by D1 — after a retry,
or because the row was fixed locally and synced — and counts as dead again if D1 refuses it again.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from d1sync.errors import ConfigError
from d1sync.sqlite import Connection
from d1sync.sync.codec import decode_row, stored_text
from d1sync.sync.model import Change, seq_param
from d1sync.sync.store.log import delete_changes, json_op_sql
from d1sync.sync.store.state import now_ms

__all__ = [
    "DeadLetter",
    "dead_count",
    "dead_keys",
    "dead_letter",
    "dead_of",
    "drop_dead",
    "list_dead",
    "rename_dead",
    "resolve_dead",
    "retry_dead",
]


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter. ``key`` and ``payload`` are in the change log's encoding; times are epoch ms.

    ``retrying``: it was retried and its row is back in the outbox; resolved once D1 acknowledges the row.
    """

    id: int
    table: str
    key: str
    op: str
    payload: str | None
    error: str
    attempts: int
    first_failed_at: int
    last_failed_at: int
    retrying: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form every command prints: the key as its list of values, times as epoch seconds."""
        return {
            "id": self.id,
            "table": self.table,
            "key": _decoded(self.key),
            "op": self.op,
            "payload": None if self.payload is None else _decoded(self.payload),
            "error": self.error,
            "attempts": self.attempts,
            "first_failed_at": self.first_failed_at / 1000,
            "last_failed_at": self.last_failed_at / 1000,
            "retrying": self.retrying,
        }


def _decoded(text: str) -> Any:
    """A key or payload as JSON values; text that is not valid JSON (it held bytes that are not UTF-8) stays
    as it was stored."""
    try:
        return decode_row(text)
    except ValueError:
        return text


def dead_letter(conn: Connection, failures: Sequence[tuple[Change, str]]) -> int:
    """Move ``failures`` to ``_d1sync_dead`` with their error text, atomically with their acknowledgement.

    Only changes whose rows are still in the log become dead letters (another worker may have handled them
    meanwhile); returns how many did.
    """
    if not failures:
        return 0
    now = now_ms()
    with conn.atomic():
        present = set(
            delete_changes(conn, "seq IN (SELECT value FROM json_each(?))", (seq_param(c for c, _ in failures),))
        )
        moved = [(change, error) for change, error in failures if present.intersection(change.seqs)]
        for change, error in moved:
            values = (change.op, stored_text(change.data), error, now, change.table, stored_text(change.key))
            updated = conn.execute(
                "UPDATE _d1sync_dead SET op = ?, payload = CAST(? AS TEXT), error = ?, attempts = attempts + 1, "
                "last_failed_at = ?, retrying = 0 WHERE tbl = ? AND key = CAST(? AS TEXT)",
                values,
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO _d1sync_dead (tbl, key, op, payload, error, attempts, first_failed_at, "
                    "last_failed_at) VALUES (?, CAST(? AS TEXT), ?, CAST(? AS TEXT), ?, 1, ?, ?)",
                    (change.table, stored_text(change.key), change.op, stored_text(change.data), error, now, now),
                )
    return len(moved)


def resolve_dead(conn: Connection, changes: Sequence[Change]) -> int:
    """Delete the letters of rows whose state D1 just acknowledged (call inside the acknowledging transaction).

    Costs one indexed lookup per change, and nothing when there are no letters at all.
    """
    if not changes or conn.execute("SELECT NOT EXISTS (SELECT 1 FROM _d1sync_dead)").fetchone()[0]:
        return 0
    keys = json.dumps([[c.table, stored_text(c.key)] for c in changes])
    cur = conn.execute(
        "DELETE FROM _d1sync_dead WHERE (tbl, key) IN "
        "(SELECT value ->> 0, CAST(value ->> 1 AS TEXT) FROM json_each(?))",
        (keys,),
    )
    return cur.rowcount


def list_dead(conn: Connection, limit: int | None = None) -> list[DeadLetter]:
    """The dead letters, oldest first (at most ``limit``), retried ones included."""
    rows, _ = conn.read(
        "SELECT id, tbl, key, op, payload, error, attempts, first_failed_at, last_failed_at, retrying "
        "FROM _d1sync_dead ORDER BY id LIMIT ?",
        (-1 if limit is None else limit,),
    )
    return [DeadLetter(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9])) for r in rows]


def _check_ids(conn: Connection, ids: Sequence[int] | None) -> None:
    if ids is None:
        return
    known = {int(r[0]) for r in conn.execute(f"SELECT id FROM _d1sync_dead{_ids_clause(ids)[0]}", _ids_clause(ids)[1])}
    unknown = sorted(set(ids) - known)
    if unknown:
        raise ConfigError(
            f"no dead letter with id {', '.join(map(str, unknown))}; "
            f"`d1sync dead {shlex.quote(os.fspath(conn.path))} list` shows the ids there are"
        )


def _ids_clause(ids: Sequence[int] | None) -> tuple[str, tuple[object, ...]]:
    if ids is None:
        return "", ()
    return " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)


def retry_dead(conn: Connection, ids: Sequence[int] | None = None) -> int:
    """Put dead letters' rows back in the change log (``ids=None``: all not already retrying); tracked rows
    resend their current state. The letters stay, marked ``retrying``, until D1 acknowledges the row.

    Raises:
        ConfigError: an id in ``ids`` is not a dead letter (nothing is retried then).
    """
    where, params = _ids_clause(ids)
    with conn.atomic():
        _check_ids(conn, ids)
        where = where or " WHERE retrying = 0"
        # In SQL, not through Python: a letter's key may hold bytes that are not UTF-8, kept as they were.
        conn.execute(
            f"INSERT INTO _d1sync_table_ids (tbl) SELECT DISTINCT tbl FROM _d1sync_dead{where} "
            "ON CONFLICT (tbl) DO NOTHING",
            params,
        )
        retried = conn.execute(
            f"INSERT INTO _d1sync_changes (tid, key, op, payload) "
            f"SELECT i.tid, d.key, {json_op_sql('d.op')}, d.payload FROM _d1sync_dead AS d "
            f"JOIN _d1sync_table_ids AS i ON i.tbl = d.tbl{where} ORDER BY d.id",
            params,
        ).rowcount
        conn.execute(f"UPDATE _d1sync_dead SET retrying = 1{where}", params)
    return retried


def drop_dead(conn: Connection, ids: Sequence[int] | None = None) -> int:
    """Delete dead letters for good (``ids=None``: all).

    Raises:
        ConfigError: an id in ``ids`` is not a dead letter (nothing is dropped then).
    """
    where, params = _ids_clause(ids)
    with conn.atomic():
        _check_ids(conn, ids)
        cur = conn.execute(f"DELETE FROM _d1sync_dead{where}", params)
    return cur.rowcount


def dead_count(conn: Connection) -> int:
    """Dead letters not being retried (what ``status`` counts)."""
    return int(conn.execute("SELECT count(*) FROM _d1sync_dead WHERE retrying = 0").fetchone()[0])


def dead_keys(conn: Connection, table: str) -> dict[str, str]:
    """The keys of ``table``'s dead letters (retried ones included), each with D1's reason."""
    rows = conn.execute("SELECT key, error FROM _d1sync_dead WHERE tbl = ? ORDER BY id", (table,)).fetchall()
    return {str(key): str(error) for key, error in rows}


def dead_of(conn: Connection, table: str) -> int:
    """Dead letters of ``table``, retried ones included."""
    return int(conn.execute("SELECT count(*) FROM _d1sync_dead WHERE tbl = ?", (table,)).fetchone()[0])


def rename_dead(conn: Connection, old: str, new: str) -> None:
    """The letters of table ``old`` now name ``new`` (a local RENAME TABLE). Call inside a write transaction."""
    conn.execute("UPDATE _d1sync_dead SET tbl = ? WHERE tbl = ?", (new, old))
