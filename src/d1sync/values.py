"""Python <-> D1 value encoding (d1-contract §4).

D1's REST API carries parameters and results as JSON, and JSON numbers pass through JavaScript doubles on
Cloudflare's side. So:

* ``None`` -> ``null``; ``bool`` -> ``1``/``0``; ``float`` -> a JSON number (NaN and infinities refused).
* ``int`` within +-(2**53 - 1) -> a JSON number. Beyond that (up to the 64-bit range) it is sent as its
  decimal **string**: SQLite's type affinity stores it as an exact INTEGER in an INTEGER column. In an
  expression with no affinity (``SELECT ? + 1``) it stays TEXT: write ``CAST(? AS INTEGER)`` there.
* ``bytes`` -> upper-case hex text. REST has no BLOB parameter type, so write ``unhex(?)`` in SQL to store
  a BLOB. Every backend (``LocalDatabase`` too) does the same, so one piece of SQL works everywhere.

Reading back from D1, integers beyond +-2**53 have already been rounded to doubles by D1. d1sync never makes
that loss silent: :func:`decode_json` turns such numbers into ``float`` (an exact-looking ``int`` would
lie). Read big integer columns as ``CAST(col AS TEXT)`` and convert with ``int()``. BLOBs arrive as arrays of
byte values and are returned as ``bytes``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from d1sync.errors import ValueEncodingError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_SAFE_INT",
    "Param",
    "decode_json",
    "decode_row_value",
    "encode_param",
    "encode_params",
]

MAX_SAFE_INT = 2**53 - 1
"""The largest integer a JavaScript double holds exactly."""
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

Param = None | bool | int | float | str | bytes
"""What may be bound to a ``?`` placeholder."""

JSONParam = None | int | float | str


def encode_param(value: object, *, index: int | None = None) -> JSONParam:
    """Encode one bound value for D1 (see the module docstring for the rules).

    Raises:
        ValueEncodingError: for NaN/infinity, integers outside 64 bits, text that is not valid Unicode (lone
            surrogates), or unsupported types.
    """
    where = f"parameter {index}" if index is not None else "value"
    if value is None:
        return value
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueEncodingError(
                    f"{where}: text holds a lone surrogate ({value[exc.start]!r} at index {exc.start}), which is not "
                    "UTF-8 and cannot be stored in D1; decode the source bytes with errors='replace', or bind bytes"
                ) from None
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        if INT64_MIN <= value <= INT64_MAX:
            # A JSON number would be rounded to a double on the way; a decimal string is exact and SQLite's
            # INTEGER affinity converts it back.
            return str(value)
        raise ValueEncodingError(
            f"{where}: integer {value} does not fit SQLite's 64-bit INTEGER; store it as TEXT (str(value))"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueEncodingError(f"{where}: {value!r} cannot be stored in D1; use NULL or a sentinel")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex().upper()
    raise ValueEncodingError(
        f"{where}: cannot bind a value of type {type(value).__name__}; "
        "use None, bool, int, float, str or bytes (json.dumps() structured data first)"
    )


def encode_params(params: Iterable[object]) -> list[JSONParam]:
    """Encode a parameter list with :func:`encode_param`, naming the 1-based index on error."""
    return [encode_param(p, index=i) for i, p in enumerate(params, start=1)]


def _parse_int(text: str) -> int | float:
    value = int(text)
    if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        return value
    # D1 has already rounded this through a double: say so by returning a float.
    return float(value)


def decode_json(text: str | bytes) -> Any:
    """Parse a D1 response body; integers beyond +-2**53 become ``float`` (they were rounded upstream)."""
    return json.loads(text, parse_int=_parse_int)


def decode_row_value(value: Any) -> Any:
    """Turn one result value from D1's JSON into Python: arrays of byte values become ``bytes``."""
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in value):
        return bytes(value)
    return value
