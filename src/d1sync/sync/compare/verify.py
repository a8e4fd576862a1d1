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
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import decode_row, key_sql
from d1sync.sync.compare.pages import ExactRow, keyset, read_exact, row_size, select_exact
from d1sync.sync.config import DEFAULT_PAGE
from d1sync.sync.model import TableSpec
from d1sync.sync.store.dead import dead_keys
from d1sync.sync.store.log import pending_keys_of
from d1sync.sync.store.state import has_outbox
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


def _compare(
    diff: TableDiff, local: dict[str, tuple[Any, ...]], remote: dict[str, tuple[Any, ...]], dead: dict[str, str]
) -> list[str]:
    """Count one range's differences into ``diff``; the keys to repair (not the dead letters')."""
    repair: list[str] = []
    for key, row in local.items():
        if key in remote and remote[key] == row:
            continue
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
        repair = _compare(diff, local, far, dead)
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
        queue = (lambda keys, table=name: queue_keys(conn, table, keys)) if repair else None
        try:
            diff, requests = verify_table(conn, target, spec, page, on_progress, queue, delete_extra)
        except SQLError as exc:
            if exc.missing is None:
                raise
            report.tables.append(TableDiff(name, skipped=f"missing on the remote ({exc.message})"))
            continue
        report.requests += requests
        report.rows += diff.local_rows
        report.tables.append(diff)
    report.seconds = time.monotonic() - started
    return report
