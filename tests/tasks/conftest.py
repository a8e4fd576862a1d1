"""Fixtures for the task-queue tests: a fake clock and every Database backend the queue must run on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from d1sync.client import D1Client
from d1sync.database import Database
from d1sync.emulator.app import create_app
from d1sync.emulator.server import EmulatorServer
from d1sync.emulator.testing import SyncASGITransport
from d1sync.local import LocalDatabase

START = 1_700_000_000.0  # a realistic epoch: milliseconds near 1.7e12 exercise D1's REAL-bound numbers
TOKEN = "task-queue-test-token"


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


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One real emulator on a loopback socket; each test gets its own database in it."""
    with EmulatorServer(tmp_path_factory.mktemp("emulator"), token=TOKEN, auto_create=True) as server:
        yield server


@pytest.fixture(scope="session")
def emulator_transport(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncASGITransport]:
    """The emulator app in process, no socket."""
    app = create_app(tmp_path_factory.mktemp("emulator-app"), token=TOKEN, auto_create=True)
    transport = SyncASGITransport(app)
    yield transport
    transport.close()


@pytest.fixture(params=["local", "emulator", "emulator-socket"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same test body on a SQLite file, D1Client over the in-process emulator, and over a real socket."""
    database: Database
    if request.param == "local":
        database = LocalDatabase(tmp_path / "board.db")
    elif request.param == "emulator":
        transport = request.getfixturevalue("emulator_transport")
        database = D1Client(
            account_id="acct",
            database_id=str(uuid.uuid4()),
            api_token=TOKEN,
            base_url="http://emulator/client/v4",
            transport=transport,
        )
    else:
        server = request.getfixturevalue("emulator_server")
        database = D1Client(account_id="acct", database_id=str(uuid.uuid4()), api_token=TOKEN, base_url=server.api_base)
    yield database
    database.close()
