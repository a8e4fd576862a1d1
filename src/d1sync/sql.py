"""SQL text helpers every part shares. Values are always bound; identifiers go through here.

Identifiers come from the schema (a table's own columns, a validated name), never from row data; quoting
them makes any name safe to splice, including ones with quotes, spaces or keywords.
"""

from __future__ import annotations

__all__ = ["quote_identifier", "quote_literal"]


def quote_identifier(name: str) -> str:
    """Quote an identifier: ``a"b`` -> ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a string literal, for DDL that cannot take parameters (trigger bodies): ``it's`` -> ``'it''s'``."""
    return "'" + text.replace("'", "''") + "'"
