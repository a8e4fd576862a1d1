"""Fixtures for restore tests: the emulator on a real socket, a client of it, and exact table snapshots."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync.client import D1Client
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer

from ..support import TOKEN, client_at


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "emulator", token=TOKEN) as srv:
        yield srv


def client_of(server: EmulatorServer, database_id: str = DEFAULT_DATABASE_ID) -> D1Client:
    return client_at(server.api_base, database_id)


def exact(value: Any) -> Any:
    """A value with its storage class made visible: a REAL as its 64 bits, TEXT and BLOB told apart."""
    if isinstance(value, float):
        return ("real", struct.pack("<d", value).hex())
    if isinstance(value, bytes):
        return ("blob", value.hex())
    if isinstance(value, str):
        return ("text", value.encode("utf-8", "surrogatepass").hex())
    return (type(value).__name__, value)


def snapshot(path: Path, table: str, columns: str = "rowid, *") -> list[tuple[Any, ...]]:
    """Every row of ``table`` in ``path`` (rowid first), each value exact (:func:`exact`), by the first column."""
    with closing(sqlite3.connect(path)) as conn:
        q = '"' + table.replace('"', '""') + '"'
        return [tuple(exact(v) for v in row) for row in conn.execute(f"SELECT {columns} FROM {q} ORDER BY 1")]


def emulator_path(server: EmulatorServer, database_id: str) -> Path:
    path: Path = server.app.state.engine.path_for(database_id)
    return path
