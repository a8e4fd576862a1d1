"""The codec: one encoding of keys and rows, whose SQL half and Python half agree on every value."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d1sync.outbox.codec import column_expr, decode_row, encode_key, encode_row, key_sql
from d1sync.sqlite import Connection

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(exclude_categories=["Cs"])),  # NUL and astral characters included
    st.binary(max_size=64),
)
rows = st.lists(values, min_size=1, max_size=6)


@pytest.fixture(scope="module")
def conn() -> Iterator[Connection]:
    with Connection(":memory:") as connection:
        yield connection


def _same(a: object, b: object) -> bool:
    """Equal values of equal SQLite storage classes (1 and 1.0 differ; -0.0 and 0.0 are one REAL)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(rows)
def test_python_decodes_what_python_encodes(row: list[object]) -> None:
    text, _ = encode_row(row)
    decoded = decode_row(text)
    assert all(_same(a, b) for a, b in zip(decoded, row, strict=True)), (row, text)


@settings(max_examples=300, deadline=None)
@given(rows)
def test_sql_rebuilds_every_value_python_encodes(conn: Connection, row: list[object]) -> None:
    text, special = encode_row(row)
    exprs = ", ".join(column_expr(i, i in special) for i in range(len(row)))
    rebuilt = conn.execute(f"SELECT {exprs} FROM json_each(?) WHERE true", (f"[{text}]",)).fetchone()
    assert all(_same(a, b) for a, b in zip(rebuilt, row, strict=True)), (row, text, rebuilt)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(), st.binary(max_size=32)), min_size=1, max_size=3))
def test_the_triggers_sql_writes_the_key_text_python_computes(conn: Connection, key: list[object]) -> None:
    columns = [f"k{i}" for i in range(len(key))]
    select = ", ".join(f"? AS {c}" for c in columns)
    sql_text = conn.execute(f"SELECT {key_sql('t', columns)} FROM (SELECT {select}) AS t", key).fetchone()[0]
    assert sql_text == encode_key(key)
    assert decode_row(sql_text) == key


def test_canonical_keys_make_equal_numbers_one_key() -> None:
    assert encode_key([1]) == encode_key([1.0]) == encode_key([True]) == "[1]"
    assert json.loads(encode_key([2**62])) == [2**62]
