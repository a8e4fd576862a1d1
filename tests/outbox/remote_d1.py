"""A fresh database on the session's in-process emulator, with the SQLite file behind it for exact reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest

from d1sync.client import D1Client, RetryPolicy

from ..support import open_database
from .conftest import open_file


@contextmanager
def fresh_d1(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[D1Client, Path]]:
    """(a D1Client on its own new database in the emulator, the path of that database's SQLite file)."""
    client = cast(D1Client, open_database("emulator", tmp_path, request, retry=RetryPolicy(max_retries=0)))
    engine = request.getfixturevalue("emulator_app").state.engine
    try:
        yield client, engine.path_for(client.database_id)
    finally:
        client.close()


@contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to a database file, closed afterwards."""
    conn = open_file(path)
    try:
        yield conn
    finally:
        conn.close()
