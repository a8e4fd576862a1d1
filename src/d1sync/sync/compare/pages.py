"""Keyset pages of a table's rows, read exactly: the same SQL on any Database (a local file, the emulator, D1).

Verify and clone read tables this way. A page is ``WHERE (key) > (cursor) ORDER BY key LIMIT n`` (never
OFFSET), with the cursor a key in the codec's JSON text (``?1``; None for the first page), ``?2`` the limit
and, for a ranged page, ``?3`` the last key it may reach. Each row comes as its key text, the types of its
values (``typeof``, one JSON array), and the values in a form JSON carries exactly: integers as text (D1's
JSON would round those beyond 2^53), BLOBs as hex, text and reals as they are (a real arrives as the shortest
decimal that reads back as the same double).

Expressions stay flat or balanced, never a chain as long as the table is wide: D1 refuses an expression
deeper than 100.
"""

from __future__ import annotations

import json
from typing import Any

from d1sync.sql import quote_identifier
from d1sync.sync.codec import column_expr, key_sql
from d1sync.sync.model import TableSpec

__all__ = [
    "ExactRow",
    "balanced_sum",
    "exact_columns",
    "key_columns",
    "keyset",
    "read_exact",
    "row_size",
    "select_exact",
]

ExactRow = tuple[str, tuple[Any, ...]]
"""(key text, the row's values as ``(typeof, exact value)`` pairs)."""


def key_columns(spec: TableSpec) -> str:
    """The key columns of the table aliased ``t``, in key order: ``t."a", t."b"``."""
    return ", ".join(f"t.{quote_identifier(c)}" for c in spec.key)


def keyset(spec: TableSpec, *, ranged: bool) -> tuple[str, str]:
    """(`` FROM ... WHERE ...``, `` ORDER BY ... LIMIT ?2``) of one page after the key ``?1`` (and up to the
    key ``?3`` when ``ranged``)."""
    keys = key_columns(spec)
    cursor = ", ".join(column_expr(i, True, "json(?1)") for i in range(len(spec.key)))
    where = f"(?1 IS NULL OR ({keys}) > ({cursor}))"
    if ranged:
        upper = ", ".join(column_expr(i, True, "json(?3)") for i in range(len(spec.key)))
        where += f" AND ({keys}) <= ({upper})"
    return f" FROM {quote_identifier(spec.name)} AS t WHERE {where}", f" ORDER BY {keys} LIMIT ?2"


def exact_columns(spec: TableSpec) -> str:
    """The select list of an exact row: the key text, the types (one JSON array), each value's exact form."""
    types = "json_array(" + ", ".join(f"typeof(t.{quote_identifier(c)})" for c in spec.columns) + ")"
    values = ", ".join(
        f"CASE typeof(t.{q}) WHEN 'integer' THEN CAST(t.{q} AS TEXT) WHEN 'blob' THEN hex(t.{q}) ELSE t.{q} END"
        for q in map(quote_identifier, spec.columns)
    )
    return f"{key_sql('t', spec.key)}, {types}, {values}"


def select_exact(spec: TableSpec, *, ranged: bool) -> str:
    """One page of exact rows (see the module docstring)."""
    source, order = keyset(spec, ranged=ranged)
    return f"SELECT {exact_columns(spec)}{source}{order}"


def balanced_sum(terms: list[str]) -> str:
    """``a + b + ...`` nested as a balanced tree: depth log2(n), not n."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return f"({balanced_sum(terms[:middle])} + {balanced_sum(terms[middle:])})"


def row_size(spec: TableSpec) -> str:
    """The bytes a row's values take as an exact row carries them (BLOBs doubled: they travel as hex)."""
    return balanced_sum(
        [
            f"coalesce(CASE typeof(t.{q}) WHEN 'blob' THEN 2 * length(t.{q}) ELSE length(CAST(t.{q} AS BLOB)) END, 0)"
            for q in map(quote_identifier, spec.columns)
        ]
    )


def read_exact(raw: list[Any]) -> ExactRow:
    """An exact row from one row of :func:`select_exact` (values back in their Python types)."""
    key, types, values = raw[0], json.loads(raw[1]), raw[2:]
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
    return str(key), tuple(zip(types, out, strict=True))
