"""The SQL file an import carries: the current local state of every row a backlog touches, as idempotent SQL.

::

    PRAGMA defer_foreign_keys=TRUE;                  rows arrive table by table, not parents first
    <the fence: fail unless this send's number is above the file's position on D1, then record it>
    DELETE FROM "t" WHERE "id" IN (3, 9, ...);       keys pending with no local row, children's tables first
    INSERT INTO "t" ("id", ...) VALUES (...), (...)  keys with a row: its state now, parents' tables first
        ON CONFLICT ("id") DO UPDATE SET ...;        (the clause every batch upsert has: a repeat is harmless)

Everything is read in one snapshot of the file, streamed (memory stays bounded whatever the backlog's size):
the distinct pending keys of each table up to the highest seq issued then (:attr:`SeedFile.through`), joined
to the table's rows. Values are written exactly (:func:`~d1sync.sync.codec.sql_literal`: 64-bit integers,
BLOBs as hex, every REAL bit for bit, text with control characters as its UTF-8 bytes).

Some rows cannot travel as text: one whose statement alone would pass D1's 100,000 bytes of SQL, or whose text
is not valid UTF-8. They are left out and listed in :attr:`SeedFile.held`; the caller queues them again, and
batches carry them (with bound parameters, or as a dead letter that says why).

A file may not pass D1's limit for one import, 5 GB (:data:`MAX_IMPORT_BYTES`): writing stops there with
:class:`SeedTooLargeError`, and batches carry that backlog instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from d1sync.errors import UndecodableTextError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import column_expr, decode_row, has_undecodable_text, sql_literal
from d1sync.sync.model import TableSpec, utf8_length
from d1sync.sync.push.planner import on_conflict_sql, topological_order
from d1sync.sync.remote import fence_text
from d1sync.sync.store.log import issued_seq, pending_keys_sql

__all__ = ["MAX_IMPORT_BYTES", "SQL_TEXT_BYTES", "SeedFile", "SeedTooLargeError", "sql_statements", "write_seed"]

MAX_IMPORT_BYTES = 5_000_000_000
"""D1's largest imported file (``wrangler d1 execute --file``: 5 GB); a backlog needing more goes by batches."""


class SeedTooLargeError(Exception):
    """The backlog's import file would pass :data:`MAX_IMPORT_BYTES`: batches carry it."""


SQL_TEXT_BYTES = 90_000
"""A statement is closed once it passes this many bytes (D1 refuses statements over 100,000)."""


@dataclass
class SeedFile:
    """What :func:`write_seed` wrote: the tables, the highest seq it carries, and what it left to batches."""

    tables: list[str]
    through: int
    statements: int = 0
    rows: int = 0
    bytes: int = 0
    held: dict[str, list[str]] = field(default_factory=dict)
    """Key texts of rows left out (too big for one statement, or text that is not UTF-8), by table."""


def _joined(spec: TableSpec, through: int, *, present: bool) -> tuple[str, tuple[Any, ...]]:
    """The pending keys of ``spec``'s table with their row (``present``) or those without one."""
    keys, params = pending_keys_sql(spec.name, through)
    match = " AND ".join(f"t.{quote_identifier(c)} IS {column_expr(i, True, 'p.key')}" for i, c in enumerate(spec.key))
    table = quote_identifier(spec.name)
    if present:
        cols = ", ".join(f"t.{quote_identifier(c)}" for c in spec.columns)
        return f"SELECT p.key, {cols} FROM ({keys}) AS p JOIN {table} AS t ON {match}", params
    return f"SELECT p.key FROM ({keys}) AS p WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {match})", params


def sql_statements(head: str, tail: str, items: Iterator[str]) -> Iterator[tuple[str, int]]:
    """``head`` + items joined by commas + ``tail``, cut into statements of about :data:`SQL_TEXT_BYTES`
    (an item alone longer than that still goes, alone); each with how many items it holds."""
    chunk: list[str] = []
    size = 0
    for item in items:
        length = utf8_length(item) + 1
        if chunk and size + length > SQL_TEXT_BYTES:
            yield f"{head}{','.join(chunk)}{tail};\n", len(chunk)
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield f"{head}{','.join(chunk)}{tail};\n", len(chunk)


def _fits(text: str, spare: int) -> bool:
    return utf8_length(text) + spare <= SQL_TEXT_BYTES


class _Writer:
    def __init__(self, conn: Connection, out: IO[str], seed: SeedFile, *, lenient: bool) -> None:
        self.conn, self.out, self.seed, self.lenient = conn, out, seed, lenient

    def hold(self, table: str, key: str) -> None:
        self.seed.held.setdefault(table, []).append(key)

    def emit(self, statements: Iterator[tuple[str, int]]) -> None:
        for text, count in statements:
            self.out.write(text)
            self.seed.statements += 1
            self.seed.rows += count
            self.seed.bytes += utf8_length(text)
            if self.seed.bytes > MAX_IMPORT_BYTES:
                raise SeedTooLargeError(f"the import file passed D1's limit of {MAX_IMPORT_BYTES:,} bytes")

    def deletes(self, spec: TableSpec) -> None:
        head = f"DELETE FROM {quote_identifier(spec.name)} WHERE "
        if len(spec.key) == 1:
            head, tail = f"{head}{quote_identifier(spec.key[0])} IN (", ")"
        else:
            head, tail = f"{head}({', '.join(map(quote_identifier, spec.key))}) IN (VALUES ", ")"
        self.emit(sql_statements(head, tail, self._delete_items(spec, single=len(spec.key) == 1)))

    def _delete_items(self, spec: TableSpec, *, single: bool) -> Iterator[str]:
        for (key,) in self.conn.stream(*_joined(spec, self.seed.through, present=False), lenient=self.lenient):
            values = decode_row(key)
            if self.lenient and has_undecodable_text(values):
                self.hold(spec.name, key)
                continue
            text = ",".join(map(sql_literal, values))
            yield text if single else f"({text})"

    def upserts(self, spec: TableSpec) -> None:
        cols = ", ".join(map(quote_identifier, spec.columns))
        head, tail = f"INSERT INTO {quote_identifier(spec.name)} ({cols}) VALUES ", f" {on_conflict_sql(spec)}"
        spare = utf8_length(head) + utf8_length(tail) + 2
        self.emit(sql_statements(head, tail, self._rows(spec, spare)))

    def _rows(self, spec: TableSpec, spare: int) -> Iterator[str]:
        for key, *values in self.conn.stream(*_joined(spec, self.seed.through, present=True), lenient=self.lenient):
            text = "(" + ",".join(map(sql_literal, values)) + ")"
            if (self.lenient and has_undecodable_text(values)) or not _fits(text, spare):
                self.hold(spec.name, key)
                continue
            yield text


def write_seed(
    conn: Connection, specs: Mapping[str, TableSpec], out: IO[str], *, identity: str, number: int
) -> SeedFile:
    """Write the import of the pending changes of ``specs``' tables to ``out`` (see the module docstring), for
    the file ``identity``'s send ``number`` on D1's fence; what it holds. ``out`` must be seekable: text that
    is not UTF-8 is rare, so rows are read strictly first and, if some turns up, written again leniently."""
    try:
        return _write(conn, specs, out, identity=identity, number=number, lenient=False)
    except UndecodableTextError:
        out.seek(0)
        out.truncate()
        return _write(conn, specs, out, identity=identity, number=number, lenient=True)


def _write(
    conn: Connection, specs: Mapping[str, TableSpec], out: IO[str], *, identity: str, number: int, lenient: bool
) -> SeedFile:
    with conn.snapshot():
        seed = SeedFile(sorted(specs), issued_seq(conn))
        writer = _Writer(conn, out, seed, lenient=lenient)
        out.write("PRAGMA defer_foreign_keys=TRUE;\n")
        for statement in fence_text(identity, number):
            out.write(f"{statement};\n")
        order = topological_order(specs)
        for name in reversed(order):
            writer.deletes(specs[name])
        for name in order:
            writer.upserts(specs[name])
    return seed
