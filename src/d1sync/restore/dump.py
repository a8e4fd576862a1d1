"""An exact SQL dump of a local SQLite file: the text ``d1sync restore`` sends through D1's import.

::

    from d1sync.restore import write_dump

    with open("app.sql", "w", encoding="utf-8") as out:
        write_dump("app.db", out)

What it holds, in order (the plan is clone's: :mod:`d1sync.sync.compare.clone_plan`, so both directions agree on
what a database is made of):

* ``PRAGMA defer_foreign_keys=TRUE;`` (rows arrive in key order, not parents first; checked at the end);
* every table in creation order: ``CREATE TABLE``, and FTS5 tables as ``CREATE VIRTUAL TABLE`` (never their
  shadow tables); ``sqlite_*``, D1's ``_cf_*`` and d1sync's ``_d1sync_*`` are left out (``d1_migrations``
  is kept);
* each table's rows in key order, a multi-row ``INSERT`` per about 90 KB (under D1's 100 KB per statement),
  with the rowid itself for a table whose rowid is not a column, so rowids survive; an FTS5 table holding
  its own content gets its rows (SQLite builds the index from them); one over another table's content is
  rebuilt from it (``INSERT INTO f(f) VALUES('rebuild')``) once that table's rows are in;
* indexes, views and triggers after the rows (triggers never fire on restored rows), then AUTOINCREMENT
  counters.

Values are written exactly: NULL; integers as decimal (all 64 bits); TEXT quoted with ``''``, and TEXT with a
NUL, a line break or another control character as ``CAST(x'<UTF-8>' AS TEXT)`` (every statement stays on one
line, and no escape convention can change the text); BLOBs as ``x'<hex>'``; REALs as ``repr()`` between 2^-100
and 2^100, where SQLite reads that text back to the same double, and as ``(m * pow(2.0, e))`` outside (from
:func:`~d1sync.sync.codec.exact_real`: SQLite 3.47, D1's, reads such decimal text one bit off about a third
of the time), infinities as ``1e999``/``-1e999``. Rows are read with a cursor and written as they come, so
memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from d1sync.errors import ConfigError
from d1sync.local import LocalDatabase
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import sql_literal
from d1sync.sync.compare.clone_plan import PlanEntry, create_plan, read_source_schema, table_spec
from d1sync.sync.model import TableSpec
from d1sync.sync.push.seedfile import sql_statements

__all__ = ["DumpPlan", "iter_dump", "open_plan", "sql_literal", "write_dump"]

_TABLE_KINDS = ("rows", "fts", "rebuild", "contentless")


@dataclass
class DumpPlan:
    """The source file opened for reading, and clone's plan of its schema (tables created in ``shape``)."""

    source: LocalDatabase
    shape: Connection
    plan: list[PlanEntry]
    sequence: bool

    def tables(self) -> list[PlanEntry]:
        """The plan's tables and FTS5 tables (not shadows), in creation order."""
        return [e for e in self.plan if e.kind in _TABLE_KINDS]

    def copied(self) -> list[PlanEntry]:
        """The tables whose rows the dump carries (ordinary tables and FTS5 tables with their own content)."""
        return [e for e in self.plan if e.kind in ("rows", "fts")]

    def spec(self, entry: PlanEntry) -> TableSpec:
        """How ``entry``'s rows are read and written: its columns, and the rowid when it is not a column."""
        return table_spec(self.shape, entry)


@contextmanager
def open_plan(path: str | os.PathLike[str]) -> Iterator[DumpPlan]:
    """Open the SQLite file ``path`` and plan its dump with clone's plan (module docstring); the block runs in
    one read transaction of the file.

    Raises:
        ConfigError: no such file; a virtual table other than FTS5 (D1 allows no other).
    """
    if not Path(path).is_file():
        raise ConfigError(f"no such file: {path}")
    source = LocalDatabase(path, wal=False)  # wal=False: reading leaves the file's journal mode alone
    shape = Connection(":memory:")
    try:
        objects, sequence = read_source_schema(source)
        plan = create_plan(shape, source, objects, sequence)
        # One read transaction from here on: the rows dumped (and a restore's verify) see one state of the file,
        # however the application writes meanwhile.
        with source.connection.snapshot() as conn:
            conn.execute("SELECT count(*) FROM sqlite_master")  # SQLite takes the snapshot at the first read
            yield DumpPlan(source, shape, plan, sequence)
    finally:
        shape.close()
        source.close()


def _rows(dump: DumpPlan, entry: PlanEntry) -> Iterator[str]:
    spec = dump.spec(entry)
    columns = ", ".join(map(quote_identifier, spec.columns))
    head = f"INSERT INTO {quote_identifier(entry.name)} ({columns}) VALUES "
    order = ", ".join(map(quote_identifier, spec.key))
    cursor = dump.source.connection.raw.execute(
        f"SELECT {columns} FROM {quote_identifier(entry.name)} ORDER BY {order}"
    )
    values = ("(" + ",".join(sql_literal(v) for v in row) + ")" for row in cursor)
    for statement, _ in sql_statements(head, "", values):
        yield statement


def _counters(dump: DumpPlan) -> Iterator[str]:
    tables = {e.name for e in dump.plan if e.kind == "rows"}
    rows = dump.source.connection.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    for name, seq in rows:
        if name in tables:
            # The rows set the counter to their largest rowid; a larger one (rows deleted) is set here.
            literal, count = sql_literal(str(name)), int(seq)
            yield f"UPDATE sqlite_sequence SET seq = {count} WHERE name = {literal};\n"
            yield (
                f"INSERT INTO sqlite_sequence (name, seq) SELECT {literal}, {count} "
                f"WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = {literal});\n"
            )


def iter_dump(dump: DumpPlan) -> Iterator[str]:
    """The dump's statements, one per line, each ending in ``;`` and a newline (module docstring)."""
    yield "PRAGMA defer_foreign_keys=TRUE;\n"
    for entry in dump.tables():
        yield f"{entry.sql};\n"
    for entry in dump.copied():
        yield from _rows(dump, entry)
    for entry in dump.plan:
        if entry.kind == "rebuild":
            name = quote_identifier(entry.name)
            yield f"INSERT INTO {name} ({name}) VALUES ('rebuild');\n"
    for entry in dump.plan:
        if entry.kind in ("index", "view", "trigger") and entry.sql:
            yield f"{entry.sql};\n"
    if dump.sequence:
        yield from _counters(dump)


def write_dump(path: str | os.PathLike[str], out: IO[str]) -> int:
    """Write the exact SQL dump of the SQLite file ``path`` to ``out``; the number of statements written."""
    count = 0
    with open_plan(path) as dump:
        for statement in iter_dump(dump):
            out.write(statement)
            count += 1
    return count
