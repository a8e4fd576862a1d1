"""Fixtures for the migration tests: every Database backend migrations must run on, and project folders."""

from __future__ import annotations

import shutil
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

TOKEN = "migrations-test-token"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One real emulator on a loopback socket; each test gets its own database id in it."""
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
        database = LocalDatabase(tmp_path / "app.db")
    elif request.param == "emulator":
        database = D1Client(
            account_id="acct",
            database_id=str(uuid.uuid4()),
            api_token=TOKEN,
            base_url="http://emulator/client/v4",
            transport=request.getfixturevalue("emulator_transport"),
        )
    else:
        server = request.getfixturevalue("emulator_server")
        database = D1Client(account_id="acct", database_id=str(uuid.uuid4()), api_token=TOKEN, base_url=server.api_base)
    yield database
    database.close()


@pytest.fixture
def wrangler_project(tmp_path: Path) -> Path:
    """A copy of the wrangler project whose first two migrations wrangler 4.86.0 applied (see fixtures/)."""
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "wrangler_project", project)
    return project
