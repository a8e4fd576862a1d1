"""Applying pulled remote rows to the local file: one transaction, the conflict rule, foreign-key order.

A pull hands over, per key, the remote row as it is now (or None: the remote no longer has it). The apply:

* runs in one write transaction, together with the new cursor, so a crash leaves all of it or none;
* is never captured: the transaction holds a row in ``_d1sync_applying``, which the capture triggers of
  replicated tables skip on (:mod:`~d1sync.sync.store.twoway`);
* keeps the local state of a key with a change pending ("last push wins": that change is pushed next). With a
  ``version_column`` the higher version wins on both sides: a remote row with a higher version is applied
  even over a pending change (whose push D1's version guard would refuse anyway); a local row with a higher
  version stays and is queued to be pushed, so the remote gets it too. Equal versions fall back to the rule
  without a version;
* deletes children before parents and upserts parents before children, with foreign keys checked at the
  commit. A row the local file refuses (a foreign key to a parent deleted locally, a UNIQUE value a pending
  local row holds) is left out and reported, never silently dropped: the rest is applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from d1sync.errors import SQLError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import column_expr, key_sql
from d1sync.sync.model import TableSpec
from d1sync.sync.push.planner import delete_sql, topological_order
from d1sync.sync.store.lease import holds_lease
from d1sync.sync.store.log import pending_keys_of
from d1sync.sync.store.twoway import (
    PullTable,
    load_pull_tables,
    load_replica,
    save_pull_table,
    save_replica,
    start_applying,
    stop_applying,
)
from d1sync.sync.tables.resend import queue_keys

__all__ = ["Applied", "Pulled", "apply_pulled", "upsert_local_sql"]

log = logging.getLogger("d1sync.pull")

Decision = Literal["apply", "keep", "push"]


@dataclass
class Pulled:
    """One key's remote state: ``row`` holds the values in the spec's column order (None: gone remotely).
    ``at`` is when the remote committed it (epoch seconds), if known."""

    table: str
    key: str
    row: tuple[Any, ...] | None
    at: float | None = None


@dataclass
class Applied:
    """What one apply did."""

    upserted: int = 0
    deleted: int = 0
    kept_local: int = 0
    """Keys whose local state won (a pending change, or a higher local version)."""
    pushed_back: int = 0
    """Keys whose local version was higher and were queued to be pushed."""
    failed: list[tuple[Pulled, str]] = field(default_factory=list)
    """Rows the local file refused, with its message."""
    lag: dict[str, float] = field(default_factory=dict)
    """Per table, seconds from the newest applied entry's remote commit to this apply."""

    @property
    def rows(self) -> int:
        return self.upserted + self.deleted


def upsert_local_sql(spec: TableSpec) -> str:
    """``INSERT ... VALUES (?, ...) ON CONFLICT (key) DO UPDATE`` of ``spec``'s columns (other local columns
    keep their values)."""
    table = quote_identifier(spec.name)
    cols = ", ".join(map(quote_identifier, spec.columns))
    marks = ", ".join("?" for _ in spec.columns)
    key = ", ".join(map(quote_identifier, spec.key))
    updates = [quote_identifier(c) for c in spec.columns if c not in spec.key]
    sql = f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO "
    return sql + ("UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updates) if updates else "NOTHING")


def _rank(value: Any) -> tuple[int, Any]:
    """SQLite's order of values: NULL, numbers, text, BLOBs."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


def _local_versions(conn: Connection, spec: TableSpec, keys: list[str]) -> dict[str, Any]:
    assert spec.version_column is not None
    join = " AND ".join(f"t.{quote_identifier(c)} IS {column_expr(i, True, 'j.value')}" for i, c in enumerate(spec.key))
    sql = (
        f"SELECT {key_sql('t', spec.key)}, t.{quote_identifier(spec.version_column)} FROM json_each(?) AS j "
        f"JOIN {quote_identifier(spec.name)} AS t ON {join}"
    )
    return {str(r[0]): r[1] for r in conn.execute(sql, ("[" + ",".join(keys) + "]",))}


def _decide(spec: TableSpec, rows: list[Pulled], conn: Connection) -> dict[str, Decision]:
    keys = [p.key for p in rows]
    pending = pending_keys_of(conn, spec.name, keys)
    decisions: dict[str, Decision] = {}
    versions = _local_versions(conn, spec, keys) if spec.version_column else {}
    index = spec.columns.index(spec.version_column) if spec.version_column else -1
    for p in rows:
        if p.row is not None and p.key in versions:
            remote, local = _rank(p.row[index]), _rank(versions[p.key])
            if remote > local:
                decisions[p.key] = "apply"
                continue
            if remote < local:
                decisions[p.key] = "keep" if p.key in pending else "push"
                continue
        decisions[p.key] = "keep" if p.key in pending else "apply"
    return decisions


def _write(conn: Connection, sql: str, params: list[tuple[Any, ...]], rows: list[Pulled], applied: Applied) -> int:
    """Run ``sql`` for every params tuple, all at once; if the file refuses one, row by row, leaving out (and
    reporting) the refused ones. Returns how many went in."""
    if not params:
        return 0
    try:
        with conn.atomic():
            conn.executemany(sql, params)
        return len(params)
    except SQLError as exc:
        if exc.constraint is None:
            raise
    done = 0
    for one, pulled in zip(params, rows, strict=True):
        try:
            with conn.atomic():
                conn.execute(sql, one)
            done += 1
        except SQLError as exc:
            if exc.constraint is None:
                raise
            applied.failed.append((pulled, exc.message))
    return done


def _apply_all(
    conn: Connection, specs: Mapping[str, TableSpec], by_table: dict[str, list[Pulled]], applied: Applied
) -> None:
    order = topological_order({name: specs[name] for name in by_table})
    chosen: dict[str, list[Pulled]] = {}
    for name in order:
        decisions = _decide(specs[name], by_table[name], conn)
        chosen[name] = [p for p in by_table[name] if decisions[p.key] == "apply"]
        applied.kept_local += sum(1 for d in decisions.values() if d != "apply")
        push = [k for k, d in decisions.items() if d == "push"]
        if push:
            applied.pushed_back += queue_keys(conn, name, push)
    for name in reversed(order):  # children first
        gone = [p for p in chosen[name] if p.row is None]
        applied.deleted += _write(conn, delete_sql(specs[name]), [(f"[{p.key}]",) for p in gone], gone, applied)
    for name in order:  # parents first
        kept = [p for p in chosen[name] if p.row is not None]
        params = [tuple(p.row) for p in kept if p.row is not None]
        applied.upserted += _write(conn, upsert_local_sql(specs[name]), params, kept, applied)
    for name in order:
        times = [p.at for p in chosen[name] if p.at is not None]
        if times:
            applied.lag[name] = max(times)


def apply_pulled(
    conn: Connection,
    specs: Mapping[str, TableSpec],
    pulled: Sequence[Pulled],
    *,
    owner: str | None,
    now: float,
    cursor: int | None = None,
) -> Applied | None:
    """Apply ``pulled`` in one transaction (module docstring), with ``cursor`` as the replica's new cursor.

    None, and nothing applied, when ``owner`` no longer holds the drain lease (another worker pulls now).
    """
    by_table: dict[str, list[Pulled]] = {}
    for p in pulled:
        if p.table in specs:
            by_table.setdefault(p.table, []).append(p)
    try:
        return _transaction(conn, specs, by_table, owner=owner, now=now, cursor=cursor, deferred=True)
    except SQLError as exc:
        if exc.constraint != "FOREIGN KEY":
            raise
        # A pulled row points at a parent the local file deleted (its delete is pending): check each row
        # as it goes instead, so only such rows are left out.
        return _transaction(conn, specs, by_table, owner=owner, now=now, cursor=cursor, deferred=False)


def _transaction(
    conn: Connection,
    specs: Mapping[str, TableSpec],
    by_table: dict[str, list[Pulled]],
    *,
    owner: str | None,
    now: float,
    cursor: int | None,
    deferred: bool,
) -> Applied | None:
    applied = Applied()
    with conn.atomic():
        if owner is not None and not holds_lease(conn, owner):
            return None
        if deferred:
            conn.execute("PRAGMA defer_foreign_keys = ON")
        start_applying(conn)
        _apply_all(conn, specs, by_table, applied)
        stop_applying(conn)
        replica = load_replica(conn)
        if replica is not None and cursor is not None and cursor > replica.cursor:
            save_replica(conn, replace(replica, cursor=cursor))
        states = load_pull_tables(conn)
        for name, rows in by_table.items():
            state = states.get(name, PullTable())
            newest = applied.lag.get(name)
            lag = round(max(0.0, now - newest), 3) if newest is not None else state.lag
            done = len(rows) - sum(1 for p, _ in applied.failed if p.table == name)
            save_pull_table(conn, name, replace(state, last_pull=now, lag=lag, rows=state.rows + done))
    for pulled, reason in applied.failed:
        log.warning("could not apply the remote row of %s key %s locally: %s", pulled.table, pulled.key, reason)
    applied.lag = {name: round(max(0.0, now - at), 3) for name, at in applied.lag.items()}
    return applied
