"""Fixtures for every test: a clean environment, a fake clock, and one emulator in process and on a socket."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette

from d1sync.emulator.app import create_app
from d1sync.emulator.server import EmulatorServer
from d1sync.emulator.testing import SyncASGITransport

from .support import TOKEN, FakeClock

C = TypeVar("C")
Closer = Callable[[C], C]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Cloudflare or d1sync setting from the developer's shell reaches a test: nothing can hit real D1."""
    for name in list(os.environ):
        if name.startswith(("CLOUDFLARE_", "D1_", "D1SYNC_")):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def emulator_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starlette]:
    """One emulator app for the session, in process; tests use their own database ids in it."""
    app = create_app(tmp_path_factory.mktemp("emulator-app"), token=TOKEN, auto_create=True)
    yield app
    app.state.engine.close()


@pytest.fixture(scope="session")
def emulator_transport(emulator_app: Starlette) -> Iterator[SyncASGITransport]:
    """The session's in-process emulator as a sync httpx transport."""
    transport = SyncASGITransport(emulator_app)
    yield transport
    transport.close()


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One real emulator on a loopback socket for the session; tests use their own database ids in it."""
    with EmulatorServer(tmp_path_factory.mktemp("emulator-socket"), token=TOKEN, auto_create=True) as server:
        yield server


@pytest.fixture
def closer() -> Iterator[Callable[[Any], Any]]:
    """``closer(obj)`` returns ``obj`` and closes it when the test ends (databases, workers, outboxes)."""
    opened: list[Any] = []

    def keep(obj: Any) -> Any:
        opened.append(obj)
        return obj

    yield keep
    for obj in reversed(opened):
        obj.close()
