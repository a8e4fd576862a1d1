"""Fleet fixtures: a real emulator on a loopback socket (the account), tenant files, and fleets on it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync.backoff import Backoff
from d1sync.client import D1Client, RateLimiter, RetryPolicy
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.fleet import Fleet
from d1sync.fleet.engine import Connect

from ..outbox.conftest import open_file, snapshot
from ..support import TOKEN

NOTES = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"


def make_tenant(path: Path, rows: int = 5, *, schema: str = NOTES, start: int = 0) -> Path:
    """A tenant file with ``rows`` notes (plain sqlite3: the application knows nothing of d1sync)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(schema.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        conn.executemany(
            "INSERT INTO notes (id, body, n) VALUES (?, ?, ?)",
            [(i, f"{path.stem}-{i}", i) for i in range(start, start + rows)],
        )
    return path


def write(path: Path, sql: str, *params: Any) -> None:
    with closing(open_file(path)) as conn:
        conn.execute(sql, params)


def database_file(server: EmulatorServer, database_id: str) -> Path:
    path: Path = server.app.state.engine.path_for(database_id)
    return path


def equal(server: EmulatorServer, path: Path, database_id: str, table: str = "notes") -> bool:
    """Whether ``table`` of the tenant file equals its database's, row by row with storage classes."""
    with closing(open_file(path)) as local, closing(open_file(database_file(server, database_id))) as remote:
        try:
            return snapshot(local, table) == snapshot(remote, table)
        except sqlite3.OperationalError:  # the database has no such table yet
            return False


def database_names(server: EmulatorServer) -> list[str]:
    """The account's database names, but the emulator's own default database."""
    with connect_to(server)(None) as account:
        return sorted(str(d["name"]) for d in account.list_databases() if d["name"] != "default")


@pytest.fixture
def account(tmp_path: Path) -> Iterator[EmulatorServer]:
    """The account: a real emulator on a loopback socket that creates databases only when asked."""
    with EmulatorServer(tmp_path / "account", token=TOKEN, faults=FaultConfig(), auto_create=False) as server:
        yield server


def connect_to(server: EmulatorServer, limiter: RateLimiter | None = None, token: str = TOKEN) -> Connect:
    def connect(database_id: str | None) -> D1Client:
        return D1Client(
            account_id="acct",
            database_id=database_id,
            api_token=token,
            base_url=server.api_base,
            rate_limiter=limiter,
            retry=RetryPolicy(max_retries=1, backoff=Backoff(base=0.01, cap=0.05)),
            timeout=10.0,
        )

    return connect


MakeFleet = Callable[..., Fleet]


@pytest.fixture
def make_fleet(account: EmulatorServer, tmp_path: Path) -> Iterator[MakeFleet]:
    """``make_fleet(folder=..., connect=..., **options)``: a Fleet on the account, closed at teardown."""
    made: list[Fleet] = []

    def factory(folder: Path | None = None, connect: Connect | None = None, **options: Any) -> Fleet:
        fleet = Fleet(folder or tmp_path / "tenants", connect or connect_to(account), **options)
        made.append(fleet)
        return fleet

    yield factory
    for fleet in made:
        fleet.close()


@pytest.fixture
def tenants(tmp_path: Path) -> Path:
    folder = tmp_path / "tenants"
    folder.mkdir()
    return folder
