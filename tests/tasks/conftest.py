"""Fixtures for the task-queue tests: a fake clock and every Database backend the queue must run on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from d1sync.database import Database
from d1sync.local import LocalDatabase

START = 1_700_000_000.0  # a realistic epoch: milliseconds near 1.7e12 exercise D1's REAL-bound numbers


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


BACKENDS = ["local"]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same test body on a SQLite file and on D1Client over the emulator."""
    database: Database = LocalDatabase(tmp_path / "board.db")
    yield database
    database.close()
