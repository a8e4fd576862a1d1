"""Which schema differences stop ``verify --repair`` (rows D1 would refuse or store otherwise), and the rule of
who owns D1's schema, kept equal to the worker's own."""

from __future__ import annotations

import itertools

import pytest

from d1sync.sync.compare.fit import _manages, affinity, blocks_repair
from d1sync.sync.model import TableSpec
from d1sync.sync.schema.describe import SchemaDifference
from d1sync.sync.tables.preflight import manages


def diff(aspect: str, local: str | None, remote: str | None, column: str | None = "c") -> SchemaDifference:
    return SchemaDifference("t", column, aspect, local, remote)


@pytest.mark.parametrize(
    ("difference", "blocks"),
    [
        (diff("column", "TEXT", None), True),  # a synced column D1 lacks: no such column
        (diff("column", None, "INTEGER NOT NULL"), True),  # only on D1, NOT NULL, no default: refused
        (diff("column", None, "INTEGER NOT NULL DEFAULT 0"), False),
        (diff("column", None, "TEXT"), False),
        (diff("type", "VARCHAR(20)", "INTEGER"), True),  # '700' would be stored as 700
        (diff("type", "VARCHAR(20)", "TEXT"), False),  # same affinity: stored as sent
        (diff("notnull", "nullable", "NOT NULL"), True),
        (diff("notnull", "NOT NULL", "nullable"), False),
        (diff("default", "'active'", None), False),
        (diff("primary key", "1", "0"), True),
        (diff("check", None, "CHECK (n > 0)", None), True),
        (diff("check", "CHECK (n > 0)", None, None), False),
        (diff("unique", None, "UNIQUE (a)", None), True),
        (diff("foreign key", None, "(p) REFERENCES parent(id)", None), True),
        (diff("index", "CREATE INDEX i ON t (a)", None, None), False),
        (diff("options", "", "STRICT", None), True),
        (diff("table", "present", None, None), True),
    ],
)
def test_a_difference_stops_a_repair_only_when_d1_would_refuse_or_change_the_rows(
    difference: SchemaDifference, blocks: bool
) -> None:
    assert blocks_repair(difference) is blocks


def test_affinity_follows_sqlites_rules() -> None:
    assert [affinity(t) for t in ("BIGINT", "VARCHAR(20)", "CLOB", "", "BLOB", "DOUBLE", "DECIMAL(10,2)")] == [
        "INTEGER",
        "TEXT",
        "TEXT",
        "BLOB",
        "BLOB",
        "REAL",
        "NUMERIC",
    ]


def test_who_owns_d1s_schema_is_decided_as_the_worker_decides_it() -> None:
    for manage, replicate, include, mode, ledger in itertools.product(
        (None, True, False), (False, True), (None, ("id",)), ("track", "enqueue"), (False, True)
    ):
        spec = TableSpec("t", ("id",), ("id",), manage_schema=manage, replicate=replicate, include=include, mode=mode)
        assert _manages(spec, ledger) == manages(spec, None, ledger), spec
