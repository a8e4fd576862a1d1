"""Fixtures for the task-queue tests: a fake clock and every Database backend the queue must run on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from d1sync.database import Database

from ..support import BACKENDS, START, TOKEN, FakeClock, open_database

__all__ = ["START", "TOKEN", "FakeClock"]  # test modules import them from here


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same test body on a SQLite file, D1Client over the in-process emulator, and over a real socket."""
    database = open_database(request.param, tmp_path, request)
    yield database
    database.close()
