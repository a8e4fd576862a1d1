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

Before any row, both sides' schemas are compared (:mod:`~d1sync.sync.compare.fit`, one request): every column
whose declared type, nullability, default or key differs is reported by name, and so are missing or extra
columns, constraints and indexes. A table D1 lacks, or whose synced columns D1 lacks, has no rows to compare.
For the first different keys, the columns that differ are named with both values and their types.

``repair`` queues the local state of every missing or different key through the normal outbox (state-based:
each sends its current row); ``delete_extra`` also queues the remote-only keys, which the worker then deletes
remotely (they are absent locally). It queues nothing for a table that is paused, or whose schema on D1 would
refuse or change the rows (:func:`~d1sync.sync.compare.fit.blocks_repair`): those rows would only come back
as dead letters. Verifying never clears a pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from d1sync.database import Database
from d1sync.errors import ConfigError, SQLError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import decode_row, key_sql
from d1sync.sync.compare.fit import SchemaCheck, schema_check
from d1sync.sync.compare.pages import ExactRow, keyset, read_exact, row_size, select_exact
from d1sync.sync.config import DEFAULT_PAGE
from d1sync.sync.model import TableSpec
from d1sync.sync.store.dead import dead_keys
from d1sync.sync.store.log import pending_keys_of
from d1sync.sync.store.state import has_outbox, load_table_states
from d1sync.sync.tables.resend import queue_keys

__all__ = ["TableDiff", "VerifyReport", "verify"]

PAGE_BYTES = 4_000_000
"""Pages hold fewer than ``page`` rows when their values pass this many bytes, so memory stays bounded."""
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
    dead: int = 0
    """Of the missing and different rows, those D1 refused for good (dead letters, with ``dead_reason``):
    ``repair`` does not queue them, since D1 would refuse them again; ``d1sync dead`` shows and retries them."""
    dead_reason: str | None = None
    schema: list[dict[str, Any]] = field(default_factory=list)
    """How D1's table differs from the local one, a difference each: ``column``, ``aspect`` (``column``,
    ``type``, ``notnull``, ``default``, ``primary key``, ``unique``, ``check``, ``foreign key``, ``index``...),
    ``local``, ``remote`` and ``message`` (which names the column)."""
    columns: list[str] = field(default_factory=list)
    """For the first different keys: which columns differ, with both values and their types
    (``key 3: score 700 (integer) locally, '700' (text) on D1``)."""
    not_repaired: str | None = None
    """Why ``repair`` queued nothing for this table (it is paused, or D1's schema would refuse the rows)."""
    managed: bool = False
    """d1sync owns this table's schema on D1 (``track --manage-schema``, the default without a migrations
    ledger): a ``sync`` makes D1's table follow the local one."""

    @property
    def equal(self) -> bool:
        return self.skipped is None and not self.schema and not (self.missing or self.extra or self.different)

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


class _Remote:
    """The remote side of one table's comparison, counting its requests."""

    def __init__(self, target: Database, spec: TableSpec) -> None:
        self.target = target
        self.spec = spec
        self.requests = 0

    def page(self, after: str | None, upto: str | None, limit: int) -> list[ExactRow]:
        sql = select_exact(self.spec, ranged=upto is not None)
        params: list[Any] = [after, limit] + ([upto] if upto is not None else [])
        self.requests += 1
        return [read_exact(r) for r in self.target.prepare(sql).bind(*params).raw()]

    def range(self, after: str | None, upto: str | None, limit: int) -> dict[str, tuple[Any, ...]]:
        """Every remote row after ``after`` and up to ``upto`` (all the rest when None), paged."""
        found: dict[str, tuple[Any, ...]] = {}
        while True:
            rows = self.page(after, upto, limit)
            found.update(rows)
            if len(rows) < limit:
                return found
            after = rows[-1][0]


def _sizes(spec: TableSpec) -> str:
    """The keys of one page after the key ``?1`` (at most ``?2``), each with its row's size in bytes as read."""
    source, order = keyset(spec, ranged=False)
    return f"SELECT {key_sql('t', spec.key)}, {row_size(spec)}{source}{order}"


def _local_page(conn: Connection, spec: TableSpec, after: str | None, page: int) -> tuple[list[Any], bool]:
    """The local rows after ``after``: at most ``page``, and fewer when their values would pass
    :data:`PAGE_BYTES` (their sizes are read first, so large rows never pile up in memory); (rows, more)."""
    found, _ = conn.read(_sizes(spec), (after, page))
    sizes = found.fetchall()
    if not sizes:
        return [], False
    last, total = len(sizes) - 1, 0
    for index, (_, size) in enumerate(sizes):
        total += int(size)
        if total >= PAGE_BYTES:
            last = index
            break
    rows, _ = conn.read(select_exact(spec, ranged=True), (after, page, sizes[last][0]))
    return rows.fetchall(), last < len(sizes) - 1 or len(sizes) == page


def _pending_keys(conn: Connection, table: str) -> set[str]:
    """Keys with a change pending locally; none in a file without an outbox (a clone being verified)."""
    if not has_outbox(conn):
        return set()
    return pending_keys_of(conn, table)


def _shown(kind: str, value: Any) -> str:
    """One exact value as a person reads it: ``700 (integer)``, ``'700' (text)``, ``X'00ff' (blob)``."""
    if kind == "null":
        return "NULL"
    if kind == "blob":
        text = f"X'{bytes(value)[:16].hex()}{'...' if len(value) > 16 else ''}'"
    elif kind == "text":
        text = repr(value if len(value) <= 40 else value[:40] + "...")
    else:
        text = repr(value)
    return f"{text} ({kind})"


def describe_difference(key: str, columns: tuple[str, ...], local: tuple[Any, ...], remote: tuple[Any, ...]) -> str:
    """Which columns of one key differ: ``key 3: score 700 (integer) locally, '700' (text) on D1``."""
    values = decode_row(key)
    shown = repr(values[0] if len(values) == 1 else tuple(values))
    parts = [
        f"{name} {_shown(*mine)} locally, {_shown(*theirs)} on D1"
        for name, mine, theirs in zip(columns, local, remote, strict=True)
        if mine != theirs
    ]
    return f"key {shown}: {'; '.join(parts)}"


def _compare(
    diff: TableDiff,
    local: dict[str, tuple[Any, ...]],
    remote: dict[str, tuple[Any, ...]],
    dead: dict[str, str],
    columns: tuple[str, ...] = (),
) -> list[str]:
    """Count one range's differences into ``diff``; the keys to repair (not the dead letters')."""
    repair: list[str] = []
    for key, row in local.items():
        if key in remote and remote[key] == row:
            continue
        if key in remote and columns and len(diff.columns) < _SAMPLES:
            diff.columns.append(describe_difference(key, columns, row, remote[key]))
        diff._note("missing" if key not in remote else "different", key)
        if key in dead:
            diff.dead += 1
            diff.dead_reason = diff.dead_reason or dead[key]
        else:
            repair.append(key)
    for key in remote.keys() - local.keys():
        diff._note("extra", key)
    return repair


Queue = Callable[[list[str]], int]
"""``queue(keys)``: queue the keys' local state through the outbox; returns how many."""


def verify_table(
    conn: Connection,
    target: Database,
    spec: TableSpec,
    page: int,
    on_progress: Progress | None,
    queue: Queue | None,
    delete_extra: bool,
) -> tuple[TableDiff, int]:
    """Compare one table, queuing repairs page by page when ``queue`` is given; (its diff, requests spent)."""
    diff = TableDiff(spec.name)
    remote = _Remote(target, spec)
    total = int(conn.execute(f"SELECT count(*) FROM {quote_identifier(spec.name)}").fetchone()[0])
    pending = _pending_keys(conn, spec.name)
    dead = dead_keys(conn, spec.name) if has_outbox(conn) else {}
    after: str | None = None
    more = True
    while more:
        rows, more = _local_page(conn, spec, after, page)
        if not rows:
            break
        local = dict(read_exact(list(r)) for r in rows)
        upto = next(reversed(local))
        far = remote.range(after, upto, len(rows) + 1)  # +1: an equal range takes one request
        diff.local_rows += len(local)
        diff.remote_rows += len(far)
        for key in pending:
            local.pop(key, None)
            far.pop(key, None)
        repair = _compare(diff, local, far, dead, spec.columns)
        if delete_extra:
            repair += [k for k in far if k not in local]
        if queue is not None and repair:
            diff.queued += queue(repair)
        if on_progress is not None:
            on_progress(spec.name, diff.local_rows, total)
        after = upto
    # Past the last local key, every remote row is extra: counted page by page, never held all at once.
    while True:
        tail = dict(remote.page(after, None, page))
        diff.remote_rows += len(tail)
        extra = [key for key in tail if key not in pending]
        for key in extra:
            diff._note("extra", key)
        if queue is not None and delete_extra and extra:
            diff.queued += queue(extra)
        if len(tail) < page:
            break
        after = next(reversed(tail))
    diff.pending = len(pending)
    return diff, remote.requests


def _unfit(check: SchemaCheck, paused: str | None) -> str | None:
    """Why ``repair`` must queue nothing for a table, if it must."""
    if paused is not None:
        return f"the table is paused ({paused}): its rows wait for that fix, and verifying does not clear it"
    blocking = check.blocking()
    if blocking:
        shown = "; ".join(map(str, blocking))
        return f"D1's table would refuse or change the rows: {shown}"
    return None


def _without_rows(name: str, check: SchemaCheck) -> TableDiff | None:
    """The diff of a table whose rows cannot be read on D1 (the table, or a synced column, is missing)."""
    if check.missing_table:
        return TableDiff(name, skipped="missing on the remote", schema=check.as_json(), managed=check.managed)
    if check.missing_columns:
        lacks = ", ".join(check.missing_columns)
        skipped = f"D1's table lacks column(s) {lacks}: rows not compared"
        return TableDiff(name, skipped=skipped, schema=check.as_json(), managed=check.managed)
    return None


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
    """Compare ``tables`` (default: every synced table) of the local file and ``target`` (module docstring):
    first their schemas, then their rows.

    Raises:
        ConfigError: a named table is not synced. D1Error: the remote failed (after the client's retries).
    """
    names = sorted(specs) if tables is None else list(tables)
    unknown = [t for t in names if t not in specs]
    if unknown:
        raise ConfigError(f"not synced: {', '.join(unknown)}; synced tables: {', '.join(sorted(specs)) or 'none'}")
    started = time.monotonic()
    report = VerifyReport([])
    tracked = [specs[name] for name in names if specs[name].mode == "track"]
    checks = schema_check(conn, target, tracked)
    report.requests += 1 if tracked else 0
    states = load_table_states(conn) if has_outbox(conn) else {}
    for name in names:
        spec = specs[name]
        if spec.mode != "track":
            report.tables.append(TableDiff(name, skipped=_NO_LOCAL_COPY))
            continue
        check = checks.get(name, SchemaCheck())
        unread = _without_rows(name, check)
        if unread is not None:
            unread.not_repaired = _unfit(check, states[name].paused if name in states else None) if repair else None
            report.tables.append(unread)
            continue
        unfit = _unfit(check, states[name].paused if name in states else None) if repair else None
        queue = (lambda keys, table=name: queue_keys(conn, table, keys)) if repair and unfit is None else None
        try:
            diff, requests = verify_table(conn, target, spec, page, on_progress, queue, delete_extra)
        except SQLError as exc:
            if exc.missing is None:
                raise
            report.tables.append(TableDiff(name, skipped=f"missing on the remote ({exc.message})"))
            continue
        diff.schema, diff.not_repaired, diff.managed = check.as_json(), unfit, check.managed
        report.requests += requests
        report.rows += diff.local_rows
        report.tables.append(diff)
    report.seconds = time.monotonic() - started
    return report
