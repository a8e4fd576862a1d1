"""How keys and rows travel: one encoding, with its SQL half and its Python half side by side.

A key or a row is a compact JSON array of its values in column order. Two kinds of value cannot travel as
plain JSON through SQLite and take an *object form*:

* a BLOB as ``{"x": "<hex>"}`` (JSON has no bytes type; ``json_array()`` even refuses a BLOB);
* text holding a NUL character as ``{"t": "<hex of its UTF-8>"}`` (SQLite's JSON functions cut text at NUL);
* a REAL of extreme magnitude (below 2^-100 or from 2^100 on) as ``{"r": [m, e]}``, the value ``m * 2^e``
  with an odd integer ``m`` of at most 53 bits: SQLite 3.47 (D1's engine) reads such decimal text into a
  double one bit off about a third of the time, while ``m * pow(2, e)`` is exact for every finite double
  (``m`` and the power of two are both exact doubles, and so is their product). Between the bounds the
  shortest decimal text reads back exactly (no miss in a million samples per decade).

Everything else is plain JSON, and SQLite's JSON reader keeps 64-bit integers exact. The change log stores
keys in this form (one canonical text per key, written by the capture triggers with :func:`key_sql`); the
planner sends rows in it (:func:`encode_row`, read back on D1 by :func:`column_expr`).

Example::

    encode_row([1, b"\\x00\\xff", "a\\x00b"])   # ('[1,{"x":"00ff"},{"t":"610062"}]', frozenset({1, 2}))
    encode_row([1e-300, 0.5])                    # ('[{"r":[6032057205060441,-1049]},0.5]', frozenset({0}))
    decode_row('[1,{"x":"00ff"},{"t":"610062"}]')   # [1, b'\\x00\\xff', 'a\\x00b']
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from d1sync.sql import quote_identifier

__all__ = [
    "canonical_key_value",
    "column_expr",
    "decode_row",
    "encode_key",
    "encode_row",
    "exact_real",
    "has_undecodable_text",
    "key_sql",
    "sql_literal",
    "stored_text",
]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _compact_encoder() -> Callable[[object], str]:
    """``_ENCODER.encode``, with CPython's C encoder made once.

    ``JSONEncoder.encode`` builds a new C encoder on every call, which costs more than encoding a short row
    (3.7 µs against 1.4 µs for a bench row). The same arguments give the same text; rows are flat, so the
    circular-reference check (``markers``) is left out. Where the C encoder is missing, the plain method.
    """
    if c_make_encoder is None:
        return _ENCODER.encode
    make = c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(make(value, 0))


_encode = _compact_encoder()
_BINARY = frozenset({bytes, bytearray, memoryview})
_NO_SPECIAL: frozenset[int] = frozenset()
_SPECIAL_BY_KINDS: dict[tuple[type, ...], tuple[frozenset[int], tuple[int, ...]]] = {}
"""The BLOB indexes and the REAL indexes of a row, by the tuple of its values' types: a table's rows share a
few such tuples."""
_EXACT_LOW = 2.0**-100
_EXACT_HIGH = 2.0**100
"""REALs in [_EXACT_LOW, _EXACT_HIGH) travel as decimal text; the rest (but zero) in the exact form."""
_MAX_KINDS = 4096


# -- the Python half -------------------------------------------------------------------------------------


def encode_row(values: Sequence[object]) -> tuple[str, frozenset[int]]:
    """Encode one row (or key) as a compact JSON array; also return the indexes sent in object form.

    This runs once per synced row, so the common case stays in C: one look-up of where the row's BLOBs and
    REALs are (by the tuple of its types), a range check per REAL, and one call into a reused encoder.
    """
    row = values if isinstance(values, list | tuple) else list(values)
    kinds = tuple(map(type, row))
    found = _SPECIAL_BY_KINDS.get(kinds)
    if found is None:
        # BLOBs go in object form, found by exact type (what sqlite3 returns); the rare rest, a text with NUL
        # or a subclass of bytes, takes the careful path.
        blobs = frozenset(index for index, kind in enumerate(kinds) if kind in _BINARY)
        found = blobs, tuple(index for index, kind in enumerate(kinds) if kind is float)
        if len(_SPECIAL_BY_KINDS) < _MAX_KINDS:
            _SPECIAL_BY_KINDS[kinds] = found
    special, reals = found
    extreme = None
    for index in reals:
        if not _EXACT_LOW <= abs(row[index]) < _EXACT_HIGH:  # type: ignore[arg-type]
            extreme = [i for i in reals if not _EXACT_LOW <= abs(row[i]) < _EXACT_HIGH]  # type: ignore[arg-type]
            break
    if special or extreme:
        objects: list[object] = list(row)
        for index in special:
            objects[index] = {"x": objects[index].hex()}  # type: ignore[attr-defined]
        if extreme:
            exact = [i for i in extreme if _needs_exact_form(objects[i])]  # type: ignore[arg-type]
            for index in exact:
                objects[index] = {"r": exact_real(objects[index])}  # type: ignore[arg-type]
            special = special.union(exact)
    else:
        objects = row  # type: ignore[assignment]
    try:
        text = _encode(objects)
    except TypeError:
        return _encode_careful(row)
    if "\\u0000" in text:
        return _encode_careful(row)
    return text, special


def _needs_exact_form(value: float) -> bool:
    return value != 0.0 and math.isfinite(value)


def exact_real(value: float) -> list[int]:
    """``[m, e]`` with ``value == m * 2**e`` exactly, ``m`` odd (at most 53 bits) and ``-1074 <= e <= 971``.

    Example::

        exact_real(0.75)     # [3, -2]
        exact_real(2.0**100) # [1, 100]
    """
    numerator, denominator = value.as_integer_ratio()
    if denominator > 1:  # in lowest terms, so the numerator is odd
        return [numerator, 1 - denominator.bit_length()]
    zeros = (numerator & -numerator).bit_length() - 1
    return [numerator >> zeros, zeros]


def _encode_careful(row: Sequence[object]) -> tuple[str, frozenset[int]]:
    objects: list[object] = list(row)
    special = []
    for index, value in enumerate(objects):
        if isinstance(value, bytes | bytearray | memoryview):
            objects[index] = {"x": bytes(value).hex()}
        elif isinstance(value, str) and "\x00" in value:
            objects[index] = {"t": value.encode().hex()}
        elif isinstance(value, float) and not _EXACT_LOW <= abs(value) < _EXACT_HIGH and _needs_exact_form(value):
            objects[index] = {"r": exact_real(value)}
        else:
            continue
        special.append(index)
    return _encode(objects), frozenset(special)


def encode_key(values: Sequence[object]) -> str:
    """A key's canonical text, exactly as the capture triggers write it (:func:`key_sql`): REALs stay plain
    JSON numbers here, as SQLite's ``json_array()`` writes them."""
    objects: list[object] = []
    for value in map(canonical_key_value, values):
        if isinstance(value, bytes | bytearray | memoryview):
            objects.append({"x": bytes(value).hex()})
        elif isinstance(value, str) and "\x00" in value:
            objects.append({"t": value.encode().hex()})
        else:
            objects.append(value)
    return _encode(objects)


def _from_object_form(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "x" in value:
            return bytes.fromhex(value["x"])
        if "t" in value:
            return bytes.fromhex(value["t"]).decode("utf-8", "surrogateescape")
        if "r" in value:
            mantissa, exponent = value["r"]
            return math.ldexp(float(mantissa), exponent)
    return value


def decode_row(text: str) -> list[Any]:
    """The values of a row or key encoded by :func:`encode_row` (or :func:`key_sql`)."""
    return [_from_object_form(v) for v in json.loads(text)]


def canonical_key_value(value: object) -> object:
    """One key value as SQLite compares it: a bool or an integral float is the int it equals, so ``1``,
    ``1.0`` and ``True`` address one key."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer() and -(2**63) <= value < 2**63:
        return int(value)
    return value


def has_undecodable_text(values: Iterable[object]) -> bool:
    """True if a text value was read with ``surrogateescape`` from bytes that are not UTF-8
    (see :meth:`Connection.read <d1sync.sqlite.Connection.read>`)."""
    for value in values:
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def printable(value: str) -> str:
    """Text fit for a log or a terminal: bytes that were not UTF-8 (read with ``surrogateescape``) show as
    ``\\xNN``; a lone surrogate would make a UTF-8 log handler fail."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def stored_text(value: str | None) -> str | bytes | None:
    """The text as SQLite held it: bytes that were not UTF-8 go back as they were (store with CAST AS TEXT)."""
    if value is None or not has_undecodable_text((value,)):
        return value
    return value.encode("utf-8", "surrogateescape")


# -- the SQL half ----------------------------------------------------------------------------------------


def key_sql(alias: str, key: Iterable[str]) -> str:
    """SQL rendering a row's key as :func:`encode_key` does, for triggers and queries on ``alias``."""
    parts = []
    for column in key:
        ref = f"{alias}.{quote_identifier(column)}"
        parts.append(
            f"CASE typeof({ref}) WHEN 'blob' THEN json_object('x', lower(hex({ref}))) "
            f"WHEN 'text' THEN CASE WHEN instr({ref}, char(0)) > 0 THEN json_object('t', lower(hex({ref}))) "
            f"ELSE {ref} END ELSE {ref} END"
        )
    return "json_array(" + ", ".join(parts) + ")"


def column_expr(index: int, special: bool, source: str = "value") -> str:
    """SQL reading element ``index`` of the JSON array ``source``, rebuilding object-form values when
    ``special`` (see the module docstring)."""
    path = f"'$[{index}]'"
    if not special:
        return f"{source}->>{path}"
    return (
        f"CASE json_type({source}, {path}) WHEN 'object' THEN coalesce("
        f"unhex(json_extract({source}, '$[{index}].x')), CAST(unhex(json_extract({source}, '$[{index}].t')) AS TEXT), "
        f"json_extract({source}, '$[{index}].r[0]') * pow(2.0, json_extract({source}, '$[{index}].r[1]'))) "
        f"ELSE {source}->>{path} END"
    )


def _real_literal(value: float) -> str:
    if value != value:  # NaN: SQLite stores it as NULL, so a file never holds one
        return "NULL"
    if math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    if value == 0.0 or _EXACT_LOW <= abs(value) < _EXACT_HIGH:
        return repr(value)
    mantissa, exponent = exact_real(value)
    return f"({mantissa} * pow(2.0, {exponent}))"


def _text_literal(text: str) -> str:
    if text.isprintable():
        return "'" + text.replace("'", "''") + "'"
    # Control characters (NUL, line breaks...) travel as their UTF-8 bytes: exact, and on one line.
    return f"CAST(x'{text.encode('utf-8', 'surrogatepass').hex()}' AS TEXT)"


def _blob_literal(value: bytes | bytearray | memoryview) -> str:
    return f"x'{bytes(value).hex()}'"


_LITERALS: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    float: _real_literal,
    str: _text_literal,
    bytes: _blob_literal,
    type(None): lambda _: "NULL",
}


def sql_literal(value: Any) -> str:
    """``value`` (as Python's sqlite3 reads it) as SQL text that SQLite reads back to the same value and type.

    Example::

        sql_literal("it's")          # "'it''s'"
        sql_literal("a\\x00b")        # "CAST(x'610062' AS TEXT)"
        sql_literal(2.0**-1074)      # '(1 * pow(2.0, -1074))'
    """
    write = _LITERALS.get(type(value))
    if write is not None:  # what sqlite3 reads: one dictionary lookup per value
        return write(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _real_literal(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _blob_literal(value)
    return _text_literal(str(value))
