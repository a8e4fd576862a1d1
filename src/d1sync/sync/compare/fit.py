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
from d1sync.sync.schema.describe import (
    SchemaDifference,
    TableSchema,
    compare_schemas,
    has_migrations_ledger,
    read_schemas,
)
from d1sync.sync.schema.fit import affinity, blocks_repair

__all__ = ["SchemaCheck", "affinity", "blocks_repair", "schema_check"]


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


def _synced(difference: SchemaDifference, spec: TableSpec) -> bool:
    """Whether ``difference`` concerns what is synced: a column left out of a narrowed table is not."""
    if spec.include is None and spec.exclude is None:
        return True
    if difference.column is None:
        return difference.aspect not in ("constraint", "index")
    if difference.aspect == "column" and difference.local is None:
        return True  # only on D1
    return difference.column in spec.columns


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
    # Every table in the same request, for a migrations ledger of any name: with one, migrations own D1's schema
    # (d1sync manages none).
    remote = {name.lower(): schema for name, schema in read_schemas(target).items()}
    ledger = has_migrations_ledger(remote)
    return {
        spec.name: _check(
            spec, local.get(spec.name.lower()), remote.get(spec.name.lower()), spec.schema_managed(None, ledger)
        )
        for spec in specs
    }
