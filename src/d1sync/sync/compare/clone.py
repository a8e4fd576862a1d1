"""Clone: copy a D1 database (or the emulator's, or another SQLite file's) into a new local SQLite file.

::

    from d1sync import D1Client, clone

    with D1Client() as remote:
        report = clone(remote, "app.db")      # schema, rows, FTS5 indexes, d1_migrations; then a verify
    report.equal                              # True: every table compared equal, value by value

How it works:

* **Schema.** The source's ``sqlite_master`` is read once; tables are created first, indexes, views and
  triggers only after the rows (so triggers never fire on copied rows). ``_cf_*`` (D1's own),
  ``sqlite_*`` and d1sync's own ``_d1sync_*`` machinery are skipped; ``d1_migrations`` (and d1sync's
  migration checksums) are kept, so ``migrations list`` agrees afterwards.
* **Rows, exactly.** Each table is read in key order, a page per request, with keyset pagination
  (``WHERE key > last key``, never OFFSET), through the same SQL and row decoding as ``verify``: integers
  travel as text (D1's JSON would round those beyond 2^53), BLOBs as hex, REALs as the shortest decimal that
  reads back as the same double. A page holds at most ``page`` rows and stops at ``page_bytes`` of values:
  the remote measures the rows' sizes before it sends them, so one request never carries more than about
  ``page_bytes`` however large the rows are, and memory stays bounded.
* **FTS5.** A table with its own content is copied through the virtual table, so SQLite builds the index
  from the content; one over another table's content is rebuilt from it; a contentless one cannot be
  rebuilt, and the report says so.
* **Resumable.** The plan and each table's last copied key live in ``_d1sync_clone`` in the new file, and
  every page commits together with its key: after a kill -9, running the same clone again carries on from
  the last committed page. The table is dropped once the final verify has run.
* **Rate-limited** by the client's limiter, like every request d1sync sends.

D1 has no read transaction across requests: rows written to the source while it is cloned may or may not
be in the copy, and the final verify reports them as differences.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d1sync.database import Database
from d1sync.errors import ConfigError, SQLError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection, remove_database
from d1sync.sync.compare.clone_plan import (
    STATE_TABLE,
    PlanEntry,
    create_plan,
    has_plan,
    load_plan,
    read_source_schema,
    select_objects,
    table_spec,
)
from d1sync.sync.compare.pages import exact_columns, key_columns, keyset, read_exact, row_size
from d1sync.sync.compare.verify import PAGE_BYTES, TableDiff, verify_table
from d1sync.sync.config import DEFAULT_PAGE
from d1sync.sync.model import TableSpec

__all__ = ["CloneProgress", "CloneReport", "clone"]

_COPIED = ("rows", "fts")


@dataclass(frozen=True)
class CloneProgress:
    """Where a clone is: ``phase`` is ``copy`` or ``verify``; ``rows`` of ``total_rows`` done in that phase."""

    phase: str
    table: str
    tables_done: int
    tables: int
    rows: int
    total_rows: int


@dataclass
class CloneReport:
    """What :func:`clone` did: the verify of every copied table, and what the copy cost."""

    path: Path
    tables: list[TableDiff]
    rows: int = 0
    """Rows copied by this run (a resumed clone counts only the rest)."""
    requests: int = 0
    seconds: float = 0.0
    resumed: bool = False
    notes: list[str] = field(default_factory=list)
    """What could not be copied, and why (a contentless FTS5 table)."""

    @property
    def equal(self) -> bool:
        """True when every copied table compared equal with the source."""
        return all(t.equal for t in self.tables)


def page_sql(spec: TableSpec) -> str:
    """One page of ``spec``'s rows after the key ``?1``: at most ``?2`` rows, and only as many as fit in ``?3``
    bytes of values (always at least one). Each row is an exact row (:mod:`~d1sync.sync.compare.pages`) plus one
    last column, the count of rows (up to ``?2``) that were left after the key, which says whether the table
    has more."""
    source, order = keyset(spec, ranged=False)
    keys = key_columns(spec)
    aliases = [f"k{i}" for i in range(len(spec.key))]
    named = ", ".join(aliases)
    head = (
        f"SELECT {', '.join(f't.{quote_identifier(c)} AS {a}' for c, a in zip(spec.key, aliases, strict=True))}, "
        f"{row_size(spec)} + 16 AS size{source}{order}"
    )
    sized = f"SELECT {named}, size, sum(size) OVER (ORDER BY {named} ROWS UNBOUNDED PRECEDING) AS running FROM head"
    descending = ", ".join(a + " DESC" for a in aliases)
    upto = f"SELECT {named} FROM sized WHERE running - size < ?3 ORDER BY {descending} LIMIT 1"
    return (
        f"WITH head AS ({head}), sized AS ({sized}), upto AS ({upto}) "
        f"SELECT {exact_columns(spec)}, (SELECT count(*) FROM head){source} AND ({keys}) <= (SELECT {named} FROM upto)"
        f"{order}"
    )


class _Copy:
    """One run of a clone: the source, the file, the plan, and the requests spent."""

    def __init__(self, source: Database, conn: Connection, plan: list[PlanEntry], on_progress: Any) -> None:
        self.source = source
        self.conn = conn
        self.plan = plan
        self.on_progress = on_progress
        self.requests = 0
        self.rows = 0
        self.copied = [e for e in plan if e.kind in _COPIED]
        self.total = sum(max(e.total, e.copied) for e in self.copied)

    def _report(self, phase: str, table: str, rows: int, tables_done: int) -> None:
        if self.on_progress is not None:
            total = max(self.total, rows)
            self.on_progress(CloneProgress(phase, table, tables_done, len(self.copied), rows, total))

    def copy_table(self, entry: PlanEntry, page: int, page_bytes: int, index: int) -> None:
        """Copy ``entry``'s rows from its last committed page on; each page commits with its key."""
        spec = table_spec(self.conn, entry)
        sql = page_sql(spec)
        names = ", ".join(map(quote_identifier, spec.columns))
        marks = ", ".join("?" for _ in spec.columns)
        insert = f"INSERT INTO {quote_identifier(entry.name)} ({names}) VALUES ({marks})"
        while not entry.done:
            found = self.source.prepare(sql).bind(entry.after, page, page_bytes).raw()
            self.requests += 1
            rows = [read_exact(list(r[:-1])) for r in found]
            ahead = int(found[0][-1]) if found else 0
            with self.conn.atomic():
                if rows:
                    self.conn.executemany(insert, [tuple(v for _, v in values) for _, values in rows])
                    entry.after = rows[-1][0]
                entry.copied += len(rows)
                entry.done = not rows or (ahead < page and len(rows) == ahead)
                self.conn.execute(
                    f"UPDATE {STATE_TABLE} SET after = ?, copied = ?, done = ? WHERE ord = ?",
                    (entry.after, entry.copied, int(entry.done), entry.ord),
                )
            self.rows += len(rows)
            self._report("copy", entry.name, sum(e.copied for e in self.copied), index)

    def finish(self, sequence: bool) -> None:
        """Indexes, views and triggers, FTS5 rebuilds and AUTOINCREMENT counters, in one transaction."""
        tables = {e.name for e in self.plan if e.kind == "rows"}
        counters: list[list[Any]] = []
        if sequence:
            counters = [r for r in self.source.prepare("SELECT name, seq FROM sqlite_sequence").raw() if r[0] in tables]
            self.requests += 1
        with self.conn.atomic():
            for entry in self.plan:
                if entry.kind in ("index", "view", "trigger") and entry.sql:
                    self.conn.execute(entry.sql)
            for entry in self.plan:
                if entry.kind == "rebuild":
                    q = quote_identifier(entry.name)
                    self.conn.execute(f"INSERT INTO {q} ({q}) VALUES ('rebuild')")
            for name, seq in counters:
                updated = self.conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (int(seq), name))
                if updated.rowcount == 0:
                    self.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, int(seq)))
            self.conn.execute(f"UPDATE {STATE_TABLE} SET done = 1 WHERE ord = -1")

    def verify(self, page: int) -> list[TableDiff]:
        """Compare every copied table with the source, exactly (verify's machinery)."""
        diffs: list[TableDiff] = []
        before = 0
        for index, entry in enumerate(self.copied):

            def progress(table: str, done: int, total: int, index: int = index, before: int = before) -> None:
                self._report("verify", table, before + done, index)

            spec = table_spec(self.conn, entry)
            diff, requests = verify_table(self.conn, self.source, spec, page, progress, None, False)
            self.requests += requests
            before += diff.local_rows
            diffs.append(diff)
        return diffs


def _interrupted(path: Path) -> bool:
    """Whether ``path`` holds an interrupted clone (and so may be resumed without ``force``)."""
    try:
        with Connection(path) as conn:
            return has_plan(conn)
    except SQLError:
        return False


def _check_file(path: Path, force: bool) -> bool:
    """Whether to resume an interrupted clone in ``path``; refuses a non-empty file without ``force``."""
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the path of the new database file")
    if not path.exists() or path.stat().st_size == 0:
        return False
    if force:
        return False
    if _interrupted(path):
        return True
    raise ConfigError(
        f"{path} exists and is not empty; clone into a new or empty file, or pass --force (force=True) to "
        "replace it (its contents are deleted)"
    )


def _same_selection(path: Path, plan: list[PlanEntry], tables: Iterable[str] | None) -> None:
    """A resumed clone carries on with its own plan: refuse a ``tables`` choice that plan does not hold."""
    planned = {e.name for e in plan if e.type in ("table", "view")}
    missing = sorted(set(tables or ()) - planned)
    if missing:
        raise ConfigError(
            f"{path} holds an interrupted clone without {', '.join(map(repr, missing))}; run it again with its "
            "own --table choice to finish it, or pass --force to start over"
        )


def clone(
    source: Database,
    path: str | os.PathLike[str],
    *,
    tables: Iterable[str] | None = None,
    force: bool = False,
    page: int = DEFAULT_PAGE,
    page_bytes: int = PAGE_BYTES,
    on_progress: Callable[[CloneProgress], None] | None = None,
) -> CloneReport:
    """Copy ``source`` (any Database: D1, the emulator, a local file) into the SQLite file ``path``.

    Copies the schema (tables, indexes, views, triggers), every row exactly, FTS5 tables (rebuilt from their
    content) and ``d1_migrations``, then verifies every table (module docstring). ``tables`` limits it to
    those tables and views (with their indexes and triggers). An interrupted clone in ``path`` is resumed
    from its last committed page.

    Raises:
        ConfigError: ``path`` exists and is not empty (pass ``force=True`` to replace it); a named table does
            not exist; a virtual table other than FTS5. D1Error: the source failed (after the client's retries),
            e.g. DatabaseNotFoundError.
    """
    if page < 1 or page_bytes < 1:
        raise ConfigError(f"page ({page}) and page_bytes ({page_bytes}) must be at least 1")
    path = Path(path)
    started = time.monotonic()
    resumed = _check_file(path, force)
    objects: list[tuple[str, str, str, str]] = []
    sequence = False
    if not resumed:
        # The source is read before the file is touched: a missing database leaves nothing behind.
        objects, sequence = read_source_schema(source)
        objects = select_objects(objects, tables)
        if force:
            remove_database(path)
    with Connection(path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")  # rows arrive in key order, not parents first
        finished = False
        if resumed:
            plan, sequence, finished = load_plan(conn)
            _same_selection(path, plan, tables)
        else:
            plan = create_plan(conn, source, objects, sequence)
        run = _Copy(source, conn, plan, on_progress)
        run.requests += 0 if resumed else 2
        if not finished:
            for index, entry in enumerate(run.copied):
                run.copy_table(entry, page, page_bytes, index)
            run.finish(sequence)
        diffs = run.verify(page)
        with conn.atomic():
            conn.execute(f"DROP TABLE {STATE_TABLE}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    notes = [
        f"{e.name}: a contentless FTS5 table holds no content to rebuild its index from; it is created empty"
        for e in plan
        if e.kind == "contentless"
    ]
    return CloneReport(path, diffs, run.rows, run.requests, time.monotonic() - started, resumed, notes)
