"""Verify: prove that the remote holds exactly the local rows, values and types, or say which differ.

Both sides are read in pages, in key order, with keyset pagination (``WHERE key > cursor``, never OFFSET), so
memory stays bounded and a large table costs one local query and about one remote request per page. Each
page of local rows sets a key range; the remote rows of that range are read with the same SQL and compared by
key: *missing* (local only), *extra* (remote only), *different* (values or their types differ). Keys with a
change still pending are in flight and not counted.

Values are compared exactly. The remote sends each row's types (``typeof`` of every column), integers as text
(D1's JSON would round those beyond 2^53), BLOBs as hex, and text and reals as JSON, which carries both
exactly (a real arrives as the shortest decimal that reads back as the same double). So ``1``, ``'1'`` and
``1.0`` are three different values here, as they are in SQLite.

``repair`` queues the local state of every missing or different key through the normal outbox (state-based:
each sends its current row); ``delete_extra`` also queues the remote-only keys, which the worker then deletes
remotely (they are absent locally).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from d1sync.database import Database
from d1sync.errors import ConfigError, SQLError
from d1sync.outbox.capture import TableSpec
from d1sync.outbox.codec import column_expr, decode_row, key_sql
from d1sync.outbox.resend import queue_keys
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection

__all__ = ["DEFAULT_PAGE", "TableDiff", "VerifyReport", "verify"]

DEFAULT_PAGE = 2_000
"""Rows per page: about one remote request each (a few hundred KB of JSON for typical rows)."""
_SAMPLES = 10

Progress = Callable[[str, int, int], None]
"""``on_progress(table, rows compared in it so far, its local row count)``."""


@dataclass
class TableDiff:
    """How one table compares. Sample keys are the key values (a list per key)."""

    table: str
    local_rows: int = 0
    remote_rows: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    pending: int = 0
    """Keys with a change still pending locally: in flight, so not compared."""
    samples: dict[str, list[list[Any]]] = field(default_factory=lambda: {"missing": [], "extra": [], "different": []})
    skipped: str | None = None
    """Why the table was not compared (no local copy; missing on the remote), if it was not."""
    queued: int = 0
    """Keys queued by ``repair`` / ``delete_extra``."""

    @property
    def equal(self) -> bool:
        return self.skipped is None and not (self.missing or self.extra or self.different)

    def _note(self, kind: str, key: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.samples[kind]) < _SAMPLES:
            self.samples[kind].append(decode_row(key))


@dataclass
class VerifyReport:
    """The result of :func:`verify`: one :class:`TableDiff` per table, and what it cost."""

    tables: list[TableDiff]
    seconds: float = 0.0
    requests: int = 0
    rows: int = 0

    @property
    def equal(self) -> bool:
        """True when every table compared equal (tables without a local copy do not count)."""
        return all(t.equal or t.skipped == _NO_LOCAL_COPY for t in self.tables)


_NO_LOCAL_COPY = "no local copy: rows are given to enqueue()"


def _select(spec: TableSpec, *, ranged: bool) -> str:
    """One page of rows in key order, after the key ``?1`` (and up to the key ``?3`` when ``ranged``)."""
    t = quote_identifier(spec.name)
    keys = ", ".join(f"t.{quote_identifier(c)}" for c in spec.key)
    cursor = ", ".join(column_expr(i, True, "json(?1)") for i in range(len(spec.key)))
    upper = ", ".join(column_expr(i, True, "json(?3)") for i in range(len(spec.key)))
    types = " || ',' || ".join(f"typeof(t.{quote_identifier(c)})" for c in spec.columns)
    values = ", ".join(
        f"CASE typeof(t.{q}) WHEN 'integer' THEN CAST(t.{q} AS TEXT) WHEN 'blob' THEN hex(t.{q}) ELSE t.{q} END"
        for q in map(quote_identifier, spec.columns)
    )
    where = f"(?1 IS NULL OR ({keys}) > ({cursor}))"
    if ranged:
        where += f" AND ({keys}) <= ({upper})"
    return f"SELECT {key_sql('t', spec.key)}, {types}, {values} FROM {t} AS t WHERE {where} ORDER BY {keys} LIMIT ?2"


def _row(raw: list[Any]) -> tuple[str, tuple[Any, ...]]:
    """(key text, the row's values as exact Python values) from one row of :func:`_select`."""
    key, types, values = raw[0], str(raw[1]).split(","), raw[2:]
    out: list[Any] = []
    for kind, value in zip(types, values, strict=True):
        if kind == "integer":
            out.append(int(value))
        elif kind == "real":
            out.append(float(value))
        elif kind == "blob":
            out.append(bytes.fromhex(value))
        else:
            out.append(value)
    return str(key), tuple((kind, v) for kind, v in zip(types, out, strict=True))


class _Remote:
    """The remote side of one table's comparison, counting its requests."""

    def __init__(self, target: Database, spec: TableSpec) -> None:
        self.target = target
        self.spec = spec
        self.requests = 0

    def page(self, after: str | None, upto: str | None, limit: int) -> list[tuple[str, tuple[Any, ...]]]:
        sql = _select(self.spec, ranged=upto is not None)
        params: list[Any] = [after, limit] + ([upto] if upto is not None else [])
        self.requests += 1
        return [_row(r) for r in self.target.prepare(sql).bind(*params).raw()]

    def range(self, after: str | None, upto: str | None, limit: int) -> dict[str, tuple[Any, ...]]:
        """Every remote row after ``after`` and up to ``upto`` (all the rest when None), paged."""
        found: dict[str, tuple[Any, ...]] = {}
        while True:
            rows = self.page(after, upto, limit)
            found.update(rows)
            if len(rows) < limit:
                return found
            after = rows[-1][0]


def _pending_keys(conn: Connection, table: str) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT DISTINCT key FROM _d1sync_changes WHERE tbl = ?", (table,))}


def _compare(diff: TableDiff, local: dict[str, tuple[Any, ...]], remote: dict[str, tuple[Any, ...]]) -> list[str]:
    """Count one range's differences into ``diff``; the keys to repair."""
    repair: list[str] = []
    for key, row in local.items():
        if key not in remote:
            diff._note("missing", key)
            repair.append(key)
        elif remote[key] != row:
            diff._note("different", key)
            repair.append(key)
    for key in remote.keys() - local.keys():
        diff._note("extra", key)
    return repair


def _verify_table(
    conn: Connection, target: Database, spec: TableSpec, page: int, on_progress: Progress | None
) -> tuple[TableDiff, list[str], list[str], int]:
    """Compare one table; (its diff, keys to repair, remote-only keys, requests spent)."""
    diff = TableDiff(spec.name)
    remote = _Remote(target, spec)
    total = int(conn.execute(f"SELECT count(*) FROM {quote_identifier(spec.name)}").fetchone()[0])
    pending = _pending_keys(conn, spec.name)
    repair: list[str] = []
    extra: list[str] = []
    after: str | None = None
    while True:
        found, _ = conn.read(_select(spec, ranged=False), (after, page))
        rows = found.fetchall()
        local = dict(_row(list(r)) for r in rows)
        if not local:
            break
        upto = next(reversed(local))
        far = remote.range(after, upto, page)
        diff.local_rows += len(local)
        diff.remote_rows += len(far)
        for key in pending:
            local.pop(key, None)
            far.pop(key, None)
        repair += _compare(diff, local, far)
        extra += [k for k in far if k not in local]
        if on_progress is not None:
            on_progress(spec.name, diff.local_rows, total)
        after = upto
        if len(rows) < page:
            break
    # Past the last local key, every remote row is extra: counted page by page, never held all at once.
    while True:
        tail = dict(remote.page(after, None, page))
        diff.remote_rows += len(tail)
        for key in tail.keys() - pending:
            diff._note("extra", key)
            extra.append(key)
        if len(tail) < page:
            break
        after = next(reversed(tail))
    # A key that became pending while the table was read is in flight too: not a difference.
    late = _pending_keys(conn, spec.name) - pending
    diff.pending = len(pending | late)
    return diff, [k for k in repair if k not in late], [k for k in extra if k not in late], remote.requests


def verify(
    conn: Connection,
    target: Database,
    specs: dict[str, TableSpec],
    tables: Iterable[str] | None = None,
    *,
    page: int = DEFAULT_PAGE,
    repair: bool = False,
    delete_extra: bool = False,
    on_progress: Progress | None = None,
) -> VerifyReport:
    """Compare ``tables`` (default: every synced table) of the local file and ``target`` (module docstring).

    Raises:
        ConfigError: a named table is not synced. D1Error: the remote failed (after the client's retries).
    """
    names = sorted(specs) if tables is None else list(tables)
    unknown = [t for t in names if t not in specs]
    if unknown:
        raise ConfigError(f"not synced: {', '.join(unknown)}; synced tables: {', '.join(sorted(specs)) or 'none'}")
    started = time.monotonic()
    report = VerifyReport([])
    for name in names:
        spec = specs[name]
        if spec.mode != "track":
            report.tables.append(TableDiff(name, skipped=_NO_LOCAL_COPY))
            continue
        try:
            diff, to_repair, extra, requests = _verify_table(conn, target, spec, page, on_progress)
        except SQLError as exc:
            if exc.missing is None:
                raise
            report.tables.append(TableDiff(name, skipped=f"missing on the remote ({exc.message})"))
            continue
        report.requests += requests
        report.rows += diff.local_rows
        if repair:
            diff.queued = queue_keys(conn, name, to_repair + (extra if delete_extra else []))
        report.tables.append(diff)
    report.seconds = time.monotonic() - started
    return report
