"""SQL text helpers every part shares: quoting, statement splitting, and fences.

Values are always bound; identifiers go through :func:`quote_identifier` and come from the schema (a table's
own columns, a validated name), never from row data; quoting makes any name safe to splice, including ones
with quotes, spaces or keywords.

Splitting reads SQL the way SQLite does. A ``;`` ends a statement only outside quotes (``'...'``, ``"..."``,
`````...`````, ``[...]``), outside comments (``-- ...`` and ``/* ... */``) and outside trigger bodies
(``CREATE TRIGGER ... BEGIN ... END;``). Trigger bodies are recognised by SQLite's own tokenizer
(:func:`sqlite3.complete_statement`), so a ``;`` inside ``BEGIN ... END`` never splits. CRLF line endings are
normalised; a missing final ``;`` is fine. D1 re-splits a multi-statement request on the server and gets
exactly these cases wrong (d1-contract §5), which is why d1sync splits on the client and sends each
statement on its own.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from d1sync.errors import FENCE_MARKER

__all__ = [
    "SplitStatement",
    "fence_sql",
    "first_keyword",
    "has_placeholder",
    "is_transaction_control",
    "quote_identifier",
    "quote_literal",
    "split_statements",
    "split_with_lines",
    "unquote_identifier",
    "update_of",
]


def quote_identifier(name: str) -> str:
    """Quote an identifier: ``a"b`` -> ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal, for DDL that cannot take parameters (trigger bodies): ``it's`` -> ``'it''s'``."""
    return "'" + text.replace("'", "''") + "'"


def fence_sql(name: str, *, unless: str | None = None) -> str:
    """A ``SELECT`` that fails on purpose, with an error whose :attr:`~d1sync.errors.SQLError.fence` is ``name``.

    With ``unless`` (an SQL condition, which may use bound parameters), it fails only when the condition is
    false. D1 has no ``BEGIN``, so a batch cannot branch: a fence that fails rolls the whole batch back, on
    every backend, and its error tells that failure apart from any other statement's. ``json_extract``
    refuses a path that does not start with ``$`` and quotes the path in its error, on every SQLite version;
    ``CASE`` only evaluates the marker path when the condition fails. No schema object is needed (a
    ``RAISE()`` trigger would be one).

    Example::

        fence_sql("claim", unless="EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND claim_id = ?2)")
    """
    marker = quote_literal(FENCE_MARKER + name)
    path = marker if unless is None else f"CASE WHEN {unless} THEN '$' ELSE {marker} END"
    return f"SELECT json_extract('{{}}', {path}) AS fence"


@dataclass(frozen=True, slots=True)
class SplitStatement:
    """One statement: its text (no trailing ``;``, leading comments removed) and its 1-based first line."""

    sql: str
    line: int


def split_with_lines(text: str) -> list[SplitStatement]:
    """Split ``text`` into statements, each with the line it starts on."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[SplitStatement] = []
    n = len(text)
    i = 0
    start = 0  # start of the current statement's text (after leading blanks/comments)
    has_code = False  # has the current statement any token yet?
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            if not has_code:
                start = i
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            if not has_code:
                start = i
            continue
        if c.isspace():
            i += 1
            if not has_code:
                start = i
            continue
        if c in "'\"`[":
            close = "]" if c == "[" else c
            j = i + 1
            while True:
                j = text.find(close, j)
                if j < 0:
                    j = n
                    break
                # A doubled quote is an escaped quote inside the literal.
                if close != "]" and text.startswith(close * 2, j):
                    j += 2
                    continue
                j += 1
                break
            has_code = True
            i = j
            continue
        if c == ";":
            if has_code:
                candidate = text[start : i + 1]
                # Inside a trigger body SQLite says the statement is not complete yet.
                if not sqlite3.complete_statement(candidate):
                    i += 1
                    continue
                out.append(SplitStatement(text[start:i].rstrip(), text.count("\n", 0, start) + 1))
            i += 1
            start = i
            has_code = False
            continue
        has_code = True
        i += 1
    if has_code:
        out.append(SplitStatement(text[start:].rstrip(), text.count("\n", 0, start) + 1))
    return out


def split_statements(text: str) -> list[str]:
    """Split ``text`` into statement strings (see the module docstring for the rules)."""
    return [s.sql for s in split_with_lines(text)]


_KEYWORD = re.compile(r"[A-Za-z_]+")


def first_keyword(sql: str) -> str:
    """The first keyword of one statement from :func:`split_statements`, upper-cased ("" if none)."""
    m = _KEYWORD.match(sql.lstrip())
    return m.group(0).upper() if m else ""


_TRANSACTION_KEYWORDS = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"})


def is_transaction_control(sql: str) -> bool:
    """True for ``BEGIN``/``COMMIT``/``END``/``ROLLBACK``/``SAVEPOINT``/``RELEASE`` (refused by D1)."""
    return first_keyword(sql) in _TRANSACTION_KEYWORDS


# Quoted text and comments may hold "?" harmlessly; what remains is searched for placeholders.
_QUOTED_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|$)", re.S)
_PLACEHOLDER = re.compile(r"\?|(?<![\w$])[:@$][A-Za-z_]")


def has_placeholder(sql: str) -> bool:
    """True if ``sql`` has a parameter placeholder (``?``, ``?NNN``, ``:name``, ``@name``, ``$name``) outside
    quotes and comments. D1 allows parameters on a multi-statement text only when no earlier statement has one.
    """
    return bool(_PLACEHOLDER.search(_QUOTED_OR_COMMENT.sub(" ", sql)))


_IDENT = r'"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*'
_UPDATE_OF = re.compile(rf"\bUPDATE\s+OF\s+((?:{_IDENT})(?:\s*,\s*(?:{_IDENT}))*)\s+ON\b", re.IGNORECASE)


def unquote_identifier(text: str) -> str:
    """An identifier as SQLite reads it: ``"a""b"`` -> ``a"b``, ``[x y]`` -> ``x y``, ``abc`` -> ``abc``."""
    if text[:1] == "[":
        return text[1:-1]
    if text[:1] in ('"', "`") and len(text) >= 2:
        return text[1:-1].replace(text[0] * 2, text[0])
    return text


def update_of(trigger_sql: str) -> tuple[str, ...] | None:
    """The columns of a ``CREATE TRIGGER ... UPDATE OF a, b ON t`` (None: the trigger lists none)."""
    found = _UPDATE_OF.search(trigger_sql)
    if found is None:
        return None
    return tuple(unquote_identifier(m.group()) for m in re.finditer(_IDENT, found.group(1)))
