"""Fixtures for the migration tests: every Database backend migrations must run on, and project folders."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from d1sync.database import Database

from ..support import BACKENDS, TOKEN, open_database

__all__ = ["TOKEN"]  # test modules import it from here

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same test body on a SQLite file, D1Client over the in-process emulator, and over a real socket."""
    database = open_database(request.param, tmp_path, request)
    yield database
    database.close()


@pytest.fixture
def wrangler_project(tmp_path: Path) -> Path:
    """A copy of the wrangler project whose first two migrations wrangler 4.86.0 applied (see fixtures/)."""
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "wrangler_project", project)
    return project
