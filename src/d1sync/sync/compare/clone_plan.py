"""The plan of a clone: which schema objects to copy, kept in the clone's own file so that a killed clone
carries on where it stopped.

A clone first reads the source's ``sqlite_master`` once and writes the plan into ``_d1sync_clone`` in the
new file, in the same transaction that creates the tables. Each table's row there holds how far it has been
copied (the key of the last committed page) and how it is copied:

* ``rows``: an ordinary table, its rows paged by key (the rowid, or the primary key of a WITHOUT ROWID table);
* ``fts``: an FTS5 table holding its own content, copied through the virtual table (rowid and columns), so
  SQLite rebuilds the index from the content as the rows arrive;
* ``rebuild``: an FTS5 table over another table's content, rebuilt from it once that table is copied;
* ``contentless``: an FTS5 table without content; nothing can rebuild it, so the clone says so;
* ``shadow``: an FTS5 shadow table, created by its virtual table and never copied itself.

Indexes, views and triggers are created after the rows (triggers must not fire on copied rows).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from d1sync.database import Database
from d1sync.errors import ConfigError
from d1sync.migrations.runner import CHECKSUM_TABLE
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.capture import table_columns
from d1sync.sync.model import TableSpec
from d1sync.sync.store.state import PREFIX

__all__ = [
    "STATE_TABLE",
    "PlanEntry",
    "create_plan",
    "has_plan",
    "load_plan",
    "read_source_schema",
    "select_objects",
    "table_spec",
]

STATE_TABLE = "_d1sync_clone"
Kind = Literal["rows", "fts", "rebuild", "contentless", "shadow", "index", "view", "trigger", "done"]

_STATE_DDL = f"""CREATE TABLE {STATE_TABLE} (
    ord    INTEGER PRIMARY KEY,
    type   TEXT NOT NULL,
    name   TEXT NOT NULL,
    tbl    TEXT NOT NULL,
    sql    TEXT,
    kind   TEXT NOT NULL,
    total  INTEGER NOT NULL DEFAULT 0,
    copied INTEGER NOT NULL DEFAULT 0,
    after  TEXT,
    done   INTEGER NOT NULL DEFAULT 0
)"""
_SKIPPED_PREFIXES = ("sqlite_", "_cf_", PREFIX)
"""SQLite's own objects, D1's internal tables, and d1sync's outbox and capture machinery are never cloned."""
_KEPT = frozenset({CHECKSUM_TABLE})
"""...except the migration checksums, which belong with ``d1_migrations`` (so `migrations list` agrees)."""
_USING = re.compile(r"\busing\s+(\w+)", re.IGNORECASE)
_CONTENT = re.compile(r"""\bcontent\s*=\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|([\w$]+))""", re.IGNORECASE)


@dataclass
class PlanEntry:
    """One schema object of the source, and how far its copy has come."""

    ord: int
    type: str
    name: str
    tbl: str
    sql: str | None
    kind: str
    total: int = 0
    copied: int = 0
    after: str | None = None
    done: bool = False


def _skipped(name: str) -> bool:
    return name.lower().startswith(_SKIPPED_PREFIXES) and name not in _KEPT


def read_source_schema(source: Database) -> tuple[list[tuple[str, str, str, str]], bool]:
    """The source's schema objects in creation order, ``(type, name, tbl_name, sql)``, and whether it has
    AUTOINCREMENT tables (``sqlite_sequence``). One request."""
    rows = source.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
    ).raw()
    sequence = any(str(r[1]) == "sqlite_sequence" for r in rows)
    kept = [(str(t), str(n), str(tb), str(s)) for t, n, tb, s in rows if not _skipped(str(n)) and not _skipped(str(tb))]
    return kept, sequence


def _fts_content(sql: str) -> str | None:
    """The ``content=`` option of an FTS5 table: None for its own content, '' for contentless."""
    found = _CONTENT.search(sql)
    if found is None:
        return None
    single, double, bare = found.groups()
    if single is not None:
        return single.replace("''", "'")
    if double is not None:
        return double.replace('""', '"')
    return bare


def select_objects(
    objects: list[tuple[str, str, str, str]], tables: Iterable[str] | None
) -> list[tuple[str, str, str, str]]:
    """The objects a ``--table`` selection keeps: those tables and views, their indexes and triggers, and the
    content tables of the FTS5 tables among them."""
    if tables is None:
        return objects
    wanted = set(tables)
    known = {name for kind, name, _, _ in objects if kind in ("table", "view")}
    unknown = sorted(wanted - known)
    if unknown:
        raise ConfigError(
            f"no table or view {', '.join(map(repr, unknown))} in the source; "
            f"it has: {', '.join(sorted(known)) or 'none'}"
        )
    for kind, name, _, sql in objects:
        if kind == "table" and name in wanted and _USING.search(sql.split("(", 1)[0]):
            content = _fts_content(sql)
            if content:
                wanted.add(content)
    shadows = {f"{n}_{s}" for n in wanted for s in ("data", "idx", "content", "docsize", "config")}
    return [o for o in objects if o[2] in wanted or o[1] in wanted or o[1] in shadows]


def _virtual_kind(name: str, sql: str) -> str:
    using = _USING.search(sql.split("(", 1)[0])
    module = using.group(1).lower() if using else ""
    if module != "fts5":
        raise ConfigError(
            f"virtual table {name!r} uses the {module or 'unknown'} module, which clone cannot copy "
            "(D1 itself allows only FTS5); clone the other tables with --table"
        )
    content = _fts_content(sql)
    return "fts" if content is None else "contentless" if content == "" else "rebuild"


def create_plan(
    conn: Connection, source: Database, objects: list[tuple[str, str, str, str]], sequence: bool
) -> list[PlanEntry]:
    """Create the tables among ``objects`` (from :func:`read_source_schema` and :func:`select_objects`) in the
    empty file ``conn``, and store the plan that copies them (with ``sequence``: whether ``sqlite_sequence``
    is copied at the end). Tables and plan are created in one transaction."""
    plan: list[PlanEntry] = []
    with conn.atomic():
        conn.execute(_STATE_DDL)
        for ord_, (kind, name, tbl, sql) in enumerate(objects):
            if kind == "table" and sql.upper().startswith("CREATE VIRTUAL"):
                conn.execute(sql)
                plan.append(PlanEntry(ord_, kind, name, tbl, sql, _virtual_kind(name, sql)))
        shadows = {str(r[0]) for r in conn.execute("SELECT name FROM pragma_table_list WHERE type = 'shadow'")}
        for ord_, (kind, name, tbl, sql) in enumerate(objects):
            if kind == "table" and not sql.upper().startswith("CREATE VIRTUAL"):
                if name not in shadows:
                    conn.execute(sql)
                plan.append(PlanEntry(ord_, kind, name, tbl, sql, "shadow" if name in shadows else "rows"))
            elif kind in ("index", "view", "trigger"):
                plan.append(PlanEntry(ord_, kind, name, tbl, sql, kind))
        copied = [e for e in plan if e.kind in ("rows", "fts")]
        if copied:
            counts = source.batch([source.prepare(f"SELECT count(*) FROM {quote_identifier(e.name)}") for e in copied])
            for entry, result in zip(copied, counts, strict=True):
                entry.total = int(next(iter(result.results[0].values())))
        plan.sort(key=lambda e: e.ord)
        conn.executemany(
            f"INSERT INTO {STATE_TABLE} (ord, type, name, tbl, sql, kind, total) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.ord, e.type, e.name, e.tbl, e.sql, e.kind, e.total) for e in plan],
        )
        conn.execute(
            f"INSERT INTO {STATE_TABLE} (ord, type, name, tbl, sql, kind) VALUES (-1, 'meta', '', '', ?, 'meta')",
            ("sequence" if sequence else "",),
        )
    return plan


def load_plan(conn: Connection) -> tuple[list[PlanEntry], bool, bool]:
    """The stored plan of an interrupted clone; (plan, whether sqlite_sequence is copied, whether the schema
    and data are complete and only the verify remains)."""
    rows = conn.execute(
        f"SELECT ord, type, name, tbl, sql, kind, total, copied, after, done FROM {STATE_TABLE} ORDER BY ord"
    ).fetchall()
    meta = [r for r in rows if r[5] == "meta"]
    plan = [
        PlanEntry(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], str(r[5]), int(r[6]), int(r[7]), r[8], bool(r[9]))
        for r in rows
        if r[5] != "meta"
    ]
    sequence = bool(meta and meta[0][4] == "sequence")
    finished = bool(meta and meta[0][9])
    return plan, sequence, finished


def has_plan(conn: Connection) -> bool:
    """Whether the file holds an interrupted clone."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (STATE_TABLE,))
    return found.fetchone() is not None


def table_spec(conn: Connection, entry: PlanEntry) -> TableSpec:
    """How one copied table is read and written, from its local copy: keyed by the rowid (an INTEGER PRIMARY
    KEY is the rowid itself), by the primary key of a WITHOUT ROWID table; FTS5 tables by their rowid."""
    columns = table_columns(conn, entry.name)
    names = [c.name for c in columns]
    listed = conn.execute("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", (entry.name,))
    row = listed.fetchone()
    if row is not None and int(row[0]):
        key = tuple(c.name for c in sorted((c for c in columns if c.pk), key=lambda c: c.pk))
        return TableSpec(entry.name, key, tuple(names))
    pk = [c for c in columns if c.pk]
    if entry.kind == "rows" and len(pk) == 1 and pk[0].type.upper() == "INTEGER":
        origins = conn.execute("SELECT origin FROM pragma_index_list(?)", (entry.name,)).fetchall()
        if not any(str(o) == "pk" for (o,) in origins):
            return TableSpec(entry.name, (pk[0].name,), tuple(names))
    alias = next((a for a in ("rowid", "_rowid_", "oid") if a not in names), None)
    if alias is None:
        raise ConfigError(
            f"table {entry.name!r} has columns named rowid, _rowid_ and oid, so its rows cannot be read in "
            "rowid order; clone the other tables with --table"
        )
    return TableSpec(entry.name, (alias,), (alias, *names))
