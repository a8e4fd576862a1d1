"""Which schema differences change what D1 does with a row: refuse it, or store it otherwise than locally.

Pure functions over :class:`~d1sync.sync.schema.describe.SchemaDifference`, shared by the worker (an unmanaged
table whose D1 copy refuses every row pauses) and by ``verify --repair`` (which queues nothing that D1 would
refuse or change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the worker's import chain stays short
    from d1sync.sync.schema.describe import SchemaDifference

__all__ = ["affinity", "blocks_repair", "refuses_every_row"]

_SET_ASPECTS = ("unique", "check", "foreign key")
"""Constraints compared as sets: one only D1 has can refuse a row the local table accepts."""
_HARMLESS = ("index", "definition", "constraint")
"""Differences that never change what D1 accepts or stores (an index, a collation's text, a constraint's name)."""


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
    if aspect == "column":  # a synced column D1 lacks ("no such column"), or one only D1 has
        return difference.remote is None or refuses_every_row(difference)
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


def refuses_every_row(difference: SchemaDifference) -> bool:
    """Whether D1 refuses every row sent as the local table has it: a column only D1 has, NOT NULL without a
    default (an upsert names only the local columns, so that one is NULL)."""
    if difference.aspect != "column" or difference.local is not None or difference.remote is None:
        return False
    shown = difference.remote.upper()
    return "NOT NULL" in shown and "DEFAULT" not in shown
