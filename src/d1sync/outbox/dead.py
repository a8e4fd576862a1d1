"""Dead letters: changes D1 refused for good, kept with the error until someone retries or drops them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from d1sync.outbox.changes import Change, seq_param
from d1sync.outbox.codec import stored_text
from d1sync.outbox.schema import now_ms
from d1sync.sqlite import Connection

__all__ = ["DeadLetter", "dead_letter", "drop_dead", "list_dead", "retry_dead"]


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter. ``key`` and ``payload`` are in the change log's encoding; times are epoch ms."""

    id: int
    table: str
    key: str
    op: str
    payload: str | None
    error: str
    attempts: int
    first_failed_at: int
    last_failed_at: int


def dead_letter(conn: Connection, failures: Sequence[tuple[Change, str]]) -> int:
    """Move ``failures`` to ``_d1sync_dead`` with their error text, atomically with their acknowledgement.

    Only changes whose rows are still in the log become dead letters (another worker may have handled them
    meanwhile); returns how many did.
    """
    if not failures:
        return 0
    now = now_ms()
    with conn.atomic():
        cur = conn.execute(
            "DELETE FROM _d1sync_changes WHERE seq IN (SELECT value FROM json_each(?)) RETURNING seq",
            (seq_param(c for c, _ in failures),),
        )
        present = {row[0] for row in cur.fetchall()}
        moved = [(change, error) for change, error in failures if present.intersection(change.seqs)]
        for change, error in moved:
            conn.execute(
                "INSERT INTO _d1sync_dead (tbl, key, op, payload, error, attempts, first_failed_at, last_failed_at) "
                "VALUES (?, CAST(? AS TEXT), ?, CAST(? AS TEXT), ?, 1, ?, ?)",
                (change.table, stored_text(change.key), change.op, stored_text(change.data), error, now, now),
            )
    return len(moved)


def list_dead(conn: Connection, limit: int | None = None) -> list[DeadLetter]:
    rows, _ = conn.read(
        "SELECT id, tbl, key, op, payload, error, attempts, first_failed_at, last_failed_at "
        "FROM _d1sync_dead ORDER BY id LIMIT ?",
        (-1 if limit is None else limit,),
    )
    return [DeadLetter(*r) for r in rows]


def _ids_clause(ids: Sequence[int] | None) -> tuple[str, tuple[object, ...]]:
    if ids is None:
        return "", ()
    return " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)


def retry_dead(conn: Connection, ids: Sequence[int] | None = None) -> int:
    """Put dead letters back in the change log (``ids=None``: all). Tracked rows resend their current state."""
    where, params = _ids_clause(ids)
    now = now_ms()
    with conn.atomic():
        cur = conn.execute(
            f"INSERT INTO _d1sync_changes (tbl, key, op, payload, created_at) "
            f"SELECT tbl, key, op, payload, ? FROM _d1sync_dead{where} ORDER BY id",
            (now, *params),
        )
        conn.execute(f"DELETE FROM _d1sync_dead{where}", params)
    return cur.rowcount


def drop_dead(conn: Connection, ids: Sequence[int] | None = None) -> int:
    """Delete dead letters for good (``ids=None``: all)."""
    where, params = _ids_clause(ids)
    with conn.atomic():
        cur = conn.execute(f"DELETE FROM _d1sync_dead{where}", params)
    return cur.rowcount
