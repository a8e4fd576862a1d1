"""DDL text as tokens: what a schema comparison needs from ``CREATE TABLE`` text beyond the pragmas.

SQLite keeps a table's DDL as written (plus its own edits for ``ALTER TABLE``), so two equal schemas can differ
in whitespace, quoting, comments and keyword case. :func:`tokens` reads the text the way SQLite's tokenizer
does and :func:`normalize` gives one canonical form: keywords and bare identifiers upper-cased, quoted
identifiers unquoted (and upper-cased, as SQLite compares names case-insensitively), literals kept verbatim.
:func:`table_parts` cuts a ``CREATE TABLE`` into column definitions, table constraints and table options, and
:func:`checks` finds the ``CHECK`` expressions of both kinds.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from d1sync.migrations.runner import ledger_ddl

__all__ = [
    "CONSTRAINT_START",
    "TableParts",
    "checks",
    "made_as_ledger",
    "normalize",
    "spans",
    "table_parts",
    "tokens",
    "type_name",
]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))
    |(?P<string>'(?:[^']|'')*')
    |(?P<quoted>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
    |(?P<blob>[xX]'[0-9a-fA-F]*')
    |(?P<number>(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+)
    |(?P<word>[A-Za-z_\x80-\U0010ffff][\w$\x80-\U0010ffff]*)
    |(?P<op>\|\||<<|>>|<=|>=|==|!=|<>|->>|->|.)
    """,
    re.VERBOSE | re.DOTALL,
)


def _unquote(text: str) -> str:
    if text[0] == "[":
        return text[1:-1]
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def spans(sql: str) -> list[tuple[str, int, int]]:
    """The tokens of ``sql`` in canonical form, each with where it starts and ends in ``sql``."""
    out: list[tuple[str, int, int]] = []
    for found in _TOKEN.finditer(sql):
        kind = found.lastgroup
        text = found.group()
        if kind == "space":
            continue
        if kind == "quoted":
            text = _unquote(text).upper()
        elif kind in ("word", "blob"):
            text = text.upper()
        out.append((text, found.start(), found.end()))
    return out


def tokens(sql: str) -> list[str]:
    """The tokens of ``sql`` in canonical form (see the module docstring); comments and blanks dropped."""
    return [t for t, _, _ in spans(sql)]


def normalize(sql: str | None) -> str | None:
    """One canonical text for ``sql``: equal for DDL that differs only in blanks, comments, quoting or case."""
    if sql is None:
        return None
    return " ".join(tokens(sql))


def type_name(declared: str) -> str:
    """A declared column type in canonical form: ``varchar ( 20 )`` -> ``VARCHAR(20)``."""
    out = ""
    for tok in tokens(declared):
        if out and out[-1] not in "(," and tok not in "(),":
            out += " "
        out += tok
    return out


@dataclass(frozen=True)
class TableParts:
    """A ``CREATE TABLE`` cut into its pieces, each a list of canonical tokens."""

    columns: tuple[tuple[str, ...], ...]
    """One token list per column definition, its (unquoted, upper-cased) name first."""
    constraints: tuple[tuple[str, ...], ...]
    """Table constraints (``PRIMARY KEY (...)``, ``UNIQUE (...)``, ``CHECK (...)``, ``FOREIGN KEY ...``)."""
    options: tuple[str, ...]
    """What follows the closing parenthesis: ``WITHOUT ROWID``, ``STRICT``."""
    texts: tuple[str, ...] = ()
    """Each column definition's text as written, in the order of ``columns`` (for ``ADD COLUMN``)."""


CONSTRAINT_START = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})


def table_parts(sql: str) -> TableParts:
    """Cut ``CREATE TABLE name (defs...) options`` into :class:`TableParts` (empty for ``AS SELECT`` or
    virtual tables)."""
    found = spans(sql)
    toks = [t for t, _, _ in found]
    try:
        start = toks.index("(")
    except ValueError:
        return TableParts((), (), ())
    items: list[list[int]] = [[]]
    depth = 0
    end = len(toks)
    for i in range(start + 1, len(toks)):
        tok = toks[i]
        if tok == "(":
            depth += 1
        elif tok == ")":
            if depth == 0:
                end = i
                break
            depth -= 1
        elif tok == "," and depth == 0:
            items.append([])
            continue
        items[-1].append(i)
    columns: list[tuple[str, ...]] = []
    texts: list[str] = []
    constraints: list[tuple[str, ...]] = []
    for item in items:
        if not item:
            continue
        words = tuple(toks[i] for i in item)
        if constraints or words[0] in CONSTRAINT_START:
            constraints.append(words)
        else:
            columns.append(words)
            texts.append(sql[found[item[0]][1] : found[item[-1]][2]])
    options = tuple(t for t in toks[end + 1 :] if t not in (",", ";"))
    return TableParts(tuple(columns), tuple(constraints), options, tuple(texts))


def _checks_in(item: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    i = 0
    while i < len(item):
        if item[i] == "CHECK" and i + 1 < len(item) and item[i + 1] == "(":
            depth = 0
            j = i + 1
            while j < len(item):
                depth += item[j] == "("
                depth -= item[j] == ")"
                if depth == 0:
                    break
                j += 1
            found.append(" ".join(item[i + 2 : j]))
            i = j
        i += 1
    return found


def checks(parts: TableParts) -> tuple[str, ...]:
    """Every ``CHECK`` expression of a table, canonical and sorted: the column ones prefixed with their
    column (``SCORE: SCORE > 0``), the table ones bare."""
    found: list[str] = []
    for column in parts.columns:
        found += [f"{column[0]}: {expr}" for expr in _checks_in(column[1:])]
    for constraint in parts.constraints:
        found += _checks_in(constraint)
    return tuple(sorted(found))


@functools.cache
def _ledger_definition() -> tuple[tuple[str, ...], ...]:
    parts = table_parts(ledger_ddl())
    return parts.columns + parts.constraints


def made_as_ledger(definition: tuple[tuple[str, ...], ...]) -> bool:
    """Whether a table's canonical definition (its :func:`table_parts` columns and constraints) is wrangler's
    (and d1sync's) migrations ledger DDL, whatever the table's name (wrangler's ``migrations_table``)."""
    return definition == _ledger_definition()
