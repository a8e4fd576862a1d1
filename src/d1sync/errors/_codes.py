"""SQLite's result codes and the texts D1 wraps them in: the vocabulary :mod:`d1sync.errors` classifies with.

Nothing here raises; :mod:`d1sync.errors` turns these readings into its exception tree. Only this package
reads error message text.
"""

from __future__ import annotations

import re

# Primary result codes (the low byte of every extended code), https://sqlite.org/rescode.html.
_PRIMARY = {
    1: "SQLITE_ERROR", 2: "SQLITE_INTERNAL", 3: "SQLITE_PERM", 4: "SQLITE_ABORT", 5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED", 7: "SQLITE_NOMEM", 8: "SQLITE_READONLY", 9: "SQLITE_INTERRUPT", 10: "SQLITE_IOERR",
    11: "SQLITE_CORRUPT", 12: "SQLITE_NOTFOUND", 13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN", 15: "SQLITE_PROTOCOL",
    16: "SQLITE_EMPTY", 17: "SQLITE_SCHEMA", 18: "SQLITE_TOOBIG", 19: "SQLITE_CONSTRAINT", 20: "SQLITE_MISMATCH",
    21: "SQLITE_MISUSE", 22: "SQLITE_NOLFS", 23: "SQLITE_AUTH", 24: "SQLITE_FORMAT", 25: "SQLITE_RANGE",
    26: "SQLITE_NOTADB", 27: "SQLITE_NOTICE", 28: "SQLITE_WARNING",
}  # fmt: skip
# Python's sqlite3 names extended codes from its own list, which lacks some (SQLITE_CONSTRAINT_DATATYPE
# reads "unknown"): the constraint family is the one d1sync branches on, so it is named here.
_CONSTRAINT_EXTENDED = {
    275: "SQLITE_CONSTRAINT_CHECK", 531: "SQLITE_CONSTRAINT_COMMITHOOK", 787: "SQLITE_CONSTRAINT_FOREIGNKEY",
    1043: "SQLITE_CONSTRAINT_FUNCTION", 1299: "SQLITE_CONSTRAINT_NOTNULL", 1555: "SQLITE_CONSTRAINT_PRIMARYKEY",
    1811: "SQLITE_CONSTRAINT_TRIGGER", 2067: "SQLITE_CONSTRAINT_UNIQUE", 2323: "SQLITE_CONSTRAINT_VTAB",
    2579: "SQLITE_CONSTRAINT_ROWID", 2835: "SQLITE_CONSTRAINT_PINNED", 3091: "SQLITE_CONSTRAINT_DATATYPE",
}  # fmt: skip
_CONSTRAINT_KINDS = {
    "SQLITE_CONSTRAINT_UNIQUE": "UNIQUE",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "PRIMARY KEY",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "FOREIGN KEY",
    "SQLITE_CONSTRAINT_NOTNULL": "NOT NULL",
    "SQLITE_CONSTRAINT_CHECK": "CHECK",
    "SQLITE_CONSTRAINT_DATATYPE": "DATATYPE",
    "SQLITE_CONSTRAINT_TRIGGER": "TRIGGER",
}
# D1 often sends only the primary code; SQLite's own message then tells the constraint apart.
_CONSTRAINT_TEXTS = (
    ("UNIQUE constraint failed", "UNIQUE"),
    ("FOREIGN KEY constraint failed", "FOREIGN KEY"),
    ("NOT NULL constraint failed", "NOT NULL"),
    ("CHECK constraint failed", "CHECK"),
    ("cannot store ", "DATATYPE"),  # STRICT tables: "cannot store TEXT value in INTEGER column t.a"
)
_ROW_LEVEL_CODES = frozenset({"SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_TOOBIG", "SQLITE_RANGE"})
_CODE_SUFFIX = re.compile(r"\b(SQLITE_[A-Z]+(?:_[A-Z]+)*)\b(?:\s*\(extended:\s*(SQLITE_[A-Z_]+)\))?")
_NO_SUCH = re.compile(r"no such (table|column): ([^\s:,]+)")
_MALFORMED_JSON = "malformed JSON"

FENCE_MARKER = "d1sync-fence:"
"""Text a d1sync fence statement puts in its own error (see :func:`d1sync.sql.fence_sql`)."""
_FENCE = re.compile(re.escape(FENCE_MARKER) + r"([A-Za-z0-9_.-]+)")


def _primary_of(name: str) -> str:
    return "_".join(name.split("_")[:2])


def parse_result_code(message: str) -> tuple[str | None, str | None]:
    """SQLite's ``(primary, extended)`` result code names from D1's message suffix, or ``(None, None)``.

    D1 ends SQLite's text with ``: SQLITE_ERROR``, and constraint errors with ``: SQLITE_CONSTRAINT
    (extended: SQLITE_CONSTRAINT_UNIQUE)``. The last code named wins (the suffix follows SQLite's text).

    Example::

        parse_result_code("UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)")
        # ('SQLITE_CONSTRAINT', 'SQLITE_CONSTRAINT_UNIQUE')
    """
    matches = list(_CODE_SUFFIX.finditer(message))
    if not matches:
        return None, None
    name, extended = matches[-1].group(1), matches[-1].group(2)
    if extended is None and name.count("_") > 1:
        name, extended = _primary_of(name), name
    return name, extended


# -- the D1Error family ------------------------------------------------------------------------------------
