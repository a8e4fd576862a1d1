"""Does D1's table fit the local one? The schema half of verify, read before any row is compared.

:func:`schema_check` reads both sides' schemas (one local query, one request to the target) and compares each
synced table column by column with :func:`~d1sync.sync.schema.describe.compare_schemas`. Every difference is
reported, naming its column. Some differences also mean that rows sent as they are would be refused or changed
by D1 (a column missing there, a NOT NULL column only D1 has, another declared type, a constraint only D1
has): :func:`blocks_repair` says which, and ``verify --repair`` queues nothing for such a table, so following
its advice never dead-letters a backlog (issue 26).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from d1sync.database import Database
from d1sync.sqlite import Connection
from d1sync.sync.model import TableSpec
from d1sync.sync.schema.describe import SchemaDifference, TableSchema, compare_schemas, read_schemas
from d1sync.wrangler import DEFAULT_MIGRATIONS_TABLE

__all__ = ["SchemaCheck", "affinity", "blocks_repair", "schema_check"]

_SET_ASPECTS = ("unique", "check", "foreign key")
"""Constraints compared as sets: one only D1 has can refuse a row the local table accepts."""
_HARMLESS = ("index", "definition", "constraint")
"""Differences that never change what D1 accepts or stores (an index, a collation's text, a constraint's name)."""


@dataclass(frozen=True)
class SchemaCheck:
    """One table's schema comparison: the differences (as :class:`SchemaDifference`), and whether D1 lacks the
    table or a synced column (then its rows cannot even be read there)."""

    differences: tuple[SchemaDifference, ...] = ()
    missing_table: bool = False
    missing_columns: tuple[str, ...] = ()
    managed: bool = False
    """d1sync owns the table's schema on D1: the next ``sync`` makes it follow the local one."""

    def blocking(self) -> list[SchemaDifference]:
        """The differences that make a repair refused or pointless (see :func:`blocks_repair`)."""
        return [d for d in self.differences if blocks_repair(d)]

    def as_json(self) -> list[dict[str, Any]]:
        """The differences as plain data: ``column``, ``aspect``, ``local``, ``remote`` and ``message``."""
        return [
            {"column": d.column, "aspect": d.aspect, "local": d.local, "remote": d.remote, "message": str(d)}
            for d in self.differences
        ]


def blocks_repair(difference: SchemaDifference) -> bool:
    """Whether rows re-sent as they are would be refused by D1 or stored otherwise than locally.

    A synced column missing on D1, a column only D1 has that is NOT NULL without a default, another declared
    type (D1's affinity converts the value: ``'700'`` becomes ``700``), another primary key, NOT NULL only on
    D1, a generated column, ``STRICT``/``WITHOUT ROWID``, or a UNIQUE/CHECK/foreign key only D1 has. A default,
    an index, a type of the same affinity (``VARCHAR(20)`` and ``TEXT``), or a constraint only the local table
    has does not: D1 takes and stores every row as it is.
    """
    aspect = difference.aspect
    if aspect in _HARMLESS or aspect == "default":
        return False
    if aspect == "column":
        if difference.remote is None:
            return True  # a synced column D1 lacks: "no such column"
        shown = difference.remote.upper()
        return "NOT NULL" in shown and "DEFAULT" not in shown
    if aspect == "notnull":
        return difference.remote == "NOT NULL"
    if aspect in _SET_ASPECTS:
        return difference.remote is not None
    if aspect == "type":
        return affinity(difference.local or "") != affinity(difference.remote or "")
    return True  # table, primary key, generated, options


def affinity(declared: str) -> str:
    """SQLite's column affinity of a declared type (its rules, in their order): what a value sent becomes."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper.strip():
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _synced(difference: SchemaDifference, spec: TableSpec) -> bool:
    """Whether ``difference`` concerns what is synced: a column left out of a narrowed table is not."""
    if spec.include is None and spec.exclude is None:
        return True
    if difference.column is None:
        return difference.aspect not in ("constraint", "index")
    if difference.aspect == "column" and difference.local is None:
        return True  # only on D1
    return difference.column in spec.columns


def _manages(spec: TableSpec, ledger: bool) -> bool:
    """Whether d1sync owns ``spec``'s schema on D1: the rule of :func:`~d1sync.sync.tables.preflight.manages`
    (not imported: it would make the engine's import chain deeper than the architecture allows)."""
    if spec.mode != "track" or spec.replicate or spec.include is not None or spec.exclude is not None:
        return False
    return spec.manage_schema if spec.manage_schema is not None else not ledger


def _check(spec: TableSpec, local: TableSchema | None, remote: TableSchema | None, managed: bool) -> SchemaCheck:
    if local is None:  # not a table here (a view, or gone): the rows say the rest
        return SchemaCheck()
    if remote is None:
        return SchemaCheck(tuple(compare_schemas(local, None)), missing_table=True, managed=managed)
    found = tuple(d for d in compare_schemas(local, remote) if _synced(d, spec))
    missing = tuple(d.column for d in found if d.aspect == "column" and d.remote is None and d.column)
    return SchemaCheck(found, missing_columns=tuple(c for c in missing if c in spec.columns), managed=managed)


def schema_check(conn: Connection, target: Database, specs: list[TableSpec]) -> dict[str, SchemaCheck]:
    """Each of ``specs``' tables compared with the target's: one local query and ONE request to ``target``."""
    if not specs:
        return {}
    names = [spec.name for spec in specs]
    local = {name.lower(): schema for name, schema in read_schemas(conn, names).items()}
    # The migrations ledger in the same request: with one, migrations own D1's schema (d1sync manages none).
    remote = {name.lower(): schema for name, schema in read_schemas(target, [*names, DEFAULT_MIGRATIONS_TABLE]).items()}
    ledger = DEFAULT_MIGRATIONS_TABLE.lower() in remote
    return {
        spec.name: _check(spec, local.get(spec.name.lower()), remote.get(spec.name.lower()), _manages(spec, ledger))
        for spec in specs
    }
