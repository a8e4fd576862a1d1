"""Planning: turn coalesced changes into D1 statements and pack them into requests.

Each statement carries many rows in ONE JSON text parameter (d1-contract §4, "Bulk writes through one JSON
parameter"), which sidesteps D1's 100-parameter limit and keeps every value exact::

    INSERT INTO "t" ("id", "a") SELECT value->>'$[0]', value->>'$[1]' FROM json_each(?) WHERE true
    ON CONFLICT ("id") DO UPDATE SET "a" = excluded."a"
    DELETE FROM "t" WHERE "id" IN (SELECT value->>'$[0]' FROM json_each(?))

Rows travel as JSON arrays in the table's column order (no repeated keys: about half the bytes of objects),
in the encoding of :mod:`~d1sync.sync.codec` (BLOBs and text holding NUL in object form).

A row whose JSON form passes D1's 2 MB value limit while its values fit it (1.1 MB of ``"``, which JSON doubles;
a 1.5 MB BLOB, whose hex is 3 MB) goes alone, in a request of its own: its small values in the JSON parameter
as usual, each big value in parameters of its own, text as itself and a BLOB as hex chunks of at most 2 MB
put together on D1 (``CAST(unhex(?2) || unhex(?3) AS BLOB)``). Only a row over D1's own limit is refused.

Order inside a request: deletes first (children before parents), then upserts (parents before children).
Every request starts with ``PRAGMA defer_foreign_keys = on`` so foreign keys are checked at commit, when the
remote holds the same consistent state as the local file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring

from d1sync.sql import quote_identifier
from d1sync.sync.codec import column_expr, decode_row, encode_row
from d1sync.sync.config import D1_MAX_VALUE_BYTES, Limits
from d1sync.sync.model import Change, Op, TableSpec, utf8_length

__all__ = [
    "D1_MAX_SQL_BYTES",
    "DEFER_FOREIGN_KEYS",
    "FENCE_BYTES",
    "Plan",
    "PlannedRequest",
    "PlannedStatement",
    "delete_sql",
    "on_conflict_sql",
    "plan",
    "topological_order",
    "upsert_sql",
]

D1_MAX_SQL_BYTES = 100_000
"""D1's limit on the length of one SQL statement."""
DEFER_FOREIGN_KEYS = "PRAGMA defer_foreign_keys = on"
FENCE_BYTES = 640
"""Bytes the fence adds to every request body (d1sync.sync.remote.fence_statements; a test holds it to them)."""
REQUEST_OVERHEAD = len(DEFER_FOREIGN_KEYS) + 32 + FENCE_BYTES
"""Bytes of a request body besides its planned statements: the envelope, the leading PRAGMA and the fence."""


@dataclass
class PlannedStatement:
    table: str
    op: Op
    sql: str
    param: str
    changes: list[Change]
    extra: tuple[str, ...] = ()
    """Parameters after the JSON one: the big values of an oversized row (see the module docstring)."""

    @property
    def params(self) -> tuple[str, ...]:
        return (self.param, *self.extra)

    @property
    def body_bytes(self) -> int:
        """The bytes this statement adds to a JSON request body (an upper bound)."""
        return _json_bytes(self.sql) + sum(_json_bytes(p) for p in self.params) + 32


@dataclass
class PlannedRequest:
    statements: list[PlannedStatement]

    @property
    def changes(self) -> list[Change]:
        return [c for s in self.statements for c in s.changes]

    @property
    def body_bytes(self) -> int:
        return sum(s.body_bytes for s in self.statements) + REQUEST_OVERHEAD

    @property
    def rows(self) -> int:
        return sum(len(s.changes) for s in self.statements)


@dataclass
class Plan:
    requests: list[PlannedRequest]
    rejected: list[tuple[Change, str]]
    """Changes that can never be sent (a row over D1's size limit), with the reason."""


def topological_order(specs: Mapping[str, TableSpec]) -> list[str]:
    """Table names with parents before children; cycles fall back to name order (FKs are deferred anyway)."""
    remaining = {name: {p for p in spec.parents if p in specs and p != name} for name, spec in specs.items()}
    order: list[str] = []
    while remaining:
        ready = sorted(n for n, parents in remaining.items() if not parents)
        if not ready:
            ready = [min(remaining)]
        for name in ready:
            order.append(name)
            del remaining[name]
        for parents in remaining.values():
            parents.difference_update(ready)
    return order


def upsert_sql(spec: TableSpec, blobs: frozenset[int] = frozenset(), apart: Mapping[int, str] | None = None) -> str:
    """The bulk upsert of ``spec``'s rows; ``apart`` gives, by column index, an expression that reads a value
    from parameters of its own instead of the JSON one (an oversized row's big values)."""
    table = quote_identifier(spec.name)
    cols = ", ".join(quote_identifier(c) for c in spec.columns)
    apart = apart or {}
    exprs = ", ".join(apart.get(i) or column_expr(i, i in blobs) for i in range(len(spec.columns)))
    # "WHERE true" resolves SQLite's parsing ambiguity between a SELECT's join and ON CONFLICT.
    rows = "?1" if apart else "?"  # numbered beside ?2, ?3...: a bare ? after them would count as the next
    return f"INSERT INTO {table} ({cols}) SELECT {exprs} FROM json_each({rows}) WHERE true {on_conflict_sql(spec)}"


def on_conflict_sql(spec: TableSpec) -> str:
    """The ``ON CONFLICT`` clause of every upsert of ``spec``'s rows: the row's state replaces the remote one
    (unless the remote row's version is newer, with a version column)."""
    table = quote_identifier(spec.name)
    sql = f"ON CONFLICT ({', '.join(quote_identifier(c) for c in spec.key)}) "
    updates = [c for c in spec.columns if c not in spec.key]
    if not updates:
        return sql + "DO NOTHING"
    sql += "DO UPDATE SET " + ", ".join(f"{quote_identifier(c)} = excluded.{quote_identifier(c)}" for c in updates)
    if spec.version_column:
        v = quote_identifier(spec.version_column)
        # Last writer wins: an older version never overwrites a newer remote row.
        sql += f" WHERE excluded.{v} >= {table}.{v} OR {table}.{v} IS NULL"
    return sql


def delete_sql(spec: TableSpec) -> str:
    table = quote_identifier(spec.name)
    # Keys may be in object form (a BLOB key, text with NUL): always decode them.
    exprs = ", ".join(column_expr(i, True) for i in range(len(spec.key)))
    if len(spec.key) == 1:
        return f"DELETE FROM {table} WHERE {quote_identifier(spec.key[0])} IN (SELECT {exprs} FROM json_each(?))"
    key = ", ".join(quote_identifier(c) for c in spec.key)
    return f"DELETE FROM {table} WHERE ({key}) IN (SELECT {exprs} FROM json_each(?))"


def _json_bytes(text: str) -> int:
    """Bytes of ``text`` as a JSON string in the UTF-8 request body (quotes, backslashes, controls escaped)."""
    return len(json.dumps(text, ensure_ascii=False).encode())


def _escaped_size(text: str) -> int:
    """Exact bytes of ``text`` inside the JSON parameter string of the request body (quotes excluded)."""
    return utf8_length(encode_basestring(text)) - 2


class _Packer:
    """Fills requests in planned order: statements are cut where the current request runs out of room, not
    only at the per-statement value limit, so every request but the last of a plan is full."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.requests: list[PlannedRequest] = []
        self.current: list[PlannedStatement] = []
        self.used = REQUEST_OVERHEAD

    def room(self) -> int:
        return self.limits.max_request_bytes - self.used

    def close(self) -> None:
        if self.current:
            self.requests.append(PlannedRequest(self.current))
            self.current, self.used = [], REQUEST_OVERHEAD

    def add(self, statement: PlannedStatement) -> None:
        self.current.append(statement)
        self.used += statement.body_bytes
        if len(self.current) >= self.limits.max_statements:
            self.close()

    def pack(self, spec: TableSpec, op: Op, changes: list[Change]) -> None:
        limits = self.limits
        # Rows share the request with the envelope and this statement's SQL (longest with every column
        # read as a possible object: wide tables make it several KB).
        longest = upsert_sql(spec, frozenset(range(len(spec.columns)))) if op == "upsert" else delete_sql(spec)
        sql_cost = _json_bytes(longest) + 32 + 4
        chunk: list[Change] = []
        value_bytes = 2  # the enclosing brackets
        body_bytes = 0
        special: set[int] = set()

        def flush() -> None:
            nonlocal chunk, value_bytes, body_bytes, special
            if chunk:
                param = "[" + ",".join(c.payload for c in chunk) + "]"
                sql = upsert_sql(spec, frozenset(special)) if op == "upsert" else delete_sql(spec)
                self.add(PlannedStatement(spec.name, op, sql, param, chunk))
            chunk, value_bytes, body_bytes, special = [], 2, 0, set()

        for change in changes:
            size = change.size + 1
            escaped = _escaped_size(change.payload) + 1
            if chunk and (value_bytes + size > limits.max_value_bytes or body_bytes + escaped > self.room() - sql_cost):
                flush()
            if not chunk and self.current and escaped > self.room() - sql_cost:
                self.close()  # not even one row fits beside what the request holds: start the next one
            chunk.append(change)
            value_bytes += size
            body_bytes += escaped
            special |= change.blobs
        flush()


_CHUNK = D1_MAX_VALUE_BYTES - 2
"""Hex characters in one parameter of a big BLOB (an even number, under D1's value limit)."""
_KEEP = 16_000
"""A value whose JSON form is larger goes apart from an oversized row's JSON parameter: with at most 100
columns, what stays is under 2 MB however its text escapes."""


def _json_size(value: str | bytes) -> int:
    """Bytes of ``value`` in the row's JSON: escaped text, or a BLOB's hex."""
    return 2 * len(value) if isinstance(value, bytes) else _escaped_size(value)


def _oversized(spec: TableSpec, change: Change) -> PlannedStatement | str:
    """The statement of a row too big for the JSON parameter, or why D1 would refuse it whatever its form."""
    values = decode_row(change.payload)
    stored = sum(len(v) if isinstance(v, bytes) else utf8_length(v) if isinstance(v, str) else 8 for v in values)
    if stored > D1_MAX_VALUE_BYTES:
        return f"row is {stored:,} bytes; D1 refuses rows and values over {D1_MAX_VALUE_BYTES:,} bytes"
    small: list[object] = list(values)
    apart: dict[int, str] = {}
    extra: list[str] = []
    for index, value in enumerate(values):
        if not isinstance(value, str | bytes) or _json_size(value) <= _KEEP:
            continue
        small[index] = None
        if isinstance(value, str) and "\x00" not in value:
            extra.append(value)
            apart[index] = f"?{len(extra) + 1}"
            continue
        hexed = value.hex() if isinstance(value, bytes) else value.encode().hex()
        first = len(extra) + 2
        extra += [hexed[i : i + _CHUNK] for i in range(0, len(hexed), _CHUNK)]
        pieces = " || ".join(f"unhex(?{n})" for n in range(first, len(extra) + 2))
        apart[index] = f"CAST({pieces} AS {'BLOB' if isinstance(value, bytes) else 'TEXT'})"
    text, special = encode_row(small)
    sql = upsert_sql(spec, special, apart)
    return PlannedStatement(spec.name, "upsert", sql, f"[{text}]", [change], tuple(extra))


def plan(changes: Sequence[Change], specs: Mapping[str, TableSpec], limits: Limits | None = None) -> Plan:
    """Plan ``changes`` into requests that fit ``limits`` (see the module docstring for the order)."""
    limits = limits or Limits()
    rejected: list[tuple[Change, str]] = []
    alone: list[PlannedStatement] = []
    by_table: dict[tuple[str, Op], list[Change]] = {}
    for change in changes:
        if change.size + 2 > D1_MAX_VALUE_BYTES:
            if change.op != "upsert":  # a key that big: nothing to split
                reason = f"key is {change.size:,} bytes; D1 refuses values over {D1_MAX_VALUE_BYTES:,} bytes"
                rejected.append((change, reason))
                continue
            planned = _oversized(specs[change.table], change)
            if isinstance(planned, str):
                rejected.append((change, planned))
            else:
                alone.append(planned)
            continue
        by_table.setdefault((change.table, change.op), []).append(change)
    order = topological_order({name: specs[name] for name, _ in by_table})
    packer = _Packer(limits)
    for name in reversed(order):
        packer.pack(specs[name], "delete", by_table.get((name, "delete"), []))
    for name in order:
        packer.pack(specs[name], "upsert", by_table.get((name, "upsert"), []))
    packer.close()
    # An oversized row goes in a request of its own, after the rest: its body may pass max_request_bytes
    # (D1 documents no body limit; only the values count).
    requests = packer.requests + [PlannedRequest([statement]) for statement in alone]
    return Plan(requests, rejected)
