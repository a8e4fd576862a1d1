"""Every Database backend behind one fixture, so one test body pins the contract for all of them.

Backends: ``LocalDatabase`` on a file; ``D1Client`` over the in-process emulator and over a real emulator
socket; ``AsyncD1Client`` over ``httpx.ASGITransport`` and over the socket (driven through a small sync
bridge, so the bodies stay one). Each test gets a fresh database (the emulators auto-create a new UUID).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from d1sync.client import AsyncD1Client, D1Client, RetryPolicy
from d1sync.database import AsyncDatabase, AsyncStatement, Database, ExecResult, RawResult, Result, Statement
from d1sync.emulator.testing import SyncASGITransport
from d1sync.local import LocalDatabase

from ..support import IN_PROCESS_BASE, TOKEN

BACKENDS = ["local", "client-inprocess", "client-socket", "async-inprocess", "async-socket"]
REMOTE_BACKENDS = BACKENDS[1:]

T = TypeVar("T")


class AsyncBridge(Database):
    """Drive an AsyncDatabase from synchronous test bodies, on one event loop in a daemon thread."""

    def __init__(self, adb: AsyncDatabase, loop: asyncio.AbstractEventLoop) -> None:
        self.adb = adb
        self._loop = loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def _async(self, statement: Statement) -> AsyncStatement:
        return self.adb.prepare(statement.sql).bind(*statement.params)

    def _execute(self, statement: Statement) -> Result:
        return self._run(self._async(statement).all())

    def _execute_raw(self, statement: Statement) -> RawResult:
        return self._run(self.adb._execute_raw(self._async(statement)))

    def batch(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[Result]:
        return self._run(self.adb.batch([self._async(s) for s in statements], idempotent=idempotent))

    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        return self._run(self.adb.batch_raw([self._async(s) for s in statements], idempotent=idempotent))

    def exec(self, sql: str) -> ExecResult:
        return self._run(self.adb.exec(sql))

    def close(self) -> None:
        self._run(self.adb.aclose())


@pytest.fixture(scope="session")
def event_loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="contract-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def open_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Database:
    database_id = str(uuid.uuid4())
    common: dict[str, Any] = {"account_id": "acct", "database_id": database_id, "api_token": TOKEN}
    common["retry"] = RetryPolicy(max_retries=0)
    if kind == "local":
        return LocalDatabase(tmp_path / "contract.db")
    if kind == "client-inprocess":
        app = request.getfixturevalue("emulator_app")
        return D1Client(**common, base_url=IN_PROCESS_BASE, transport=SyncASGITransport(app))
    if kind == "client-socket":
        srv = request.getfixturevalue("emulator_server")
        return D1Client(**common, base_url=srv.api_base)
    loop = request.getfixturevalue("event_loop_thread")
    if kind == "async-inprocess":
        app = request.getfixturevalue("emulator_app")
        adb = AsyncD1Client(**common, base_url=IN_PROCESS_BASE, transport=httpx.ASGITransport(app=app))
    elif kind == "async-socket":
        srv = request.getfixturevalue("emulator_server")
        adb = AsyncD1Client(**common, base_url=srv.api_base)
    else:
        raise ValueError(kind)
    return AsyncBridge(adb, loop)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = open_backend(request.param, tmp_path, request)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(params=REMOTE_BACKENDS)
def remote_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = open_backend(request.param, tmp_path, request)
    try:
        yield database
    finally:
        database.close()
