"""Fixtures for emulator tests: the app in process (httpx over SyncASGITransport) and on a real socket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from d1sync.emulator import DEFAULT_DATABASE_ID, TOKEN_ENV
from d1sync.emulator.app import create_app
from d1sync.emulator.testing import SyncASGITransport

TOKEN = "emulator-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACCOUNTS = "/client/v4/accounts/acct/d1/database"


def query_path(database_id: str = DEFAULT_DATABASE_ID, *, raw: bool = False) -> str:
    return f"{ACCOUNTS}/{database_id}/{'raw' if raw else 'query'}"


class Api:
    """A thin helper over an httpx.Client pointed at the emulator."""

    def __init__(self, http: httpx.Client, app: Starlette) -> None:
        self.http = http
        self.app = app

    def post(self, body: Any, *, raw: bool = False, database_id: str = DEFAULT_DATABASE_ID) -> httpx.Response:
        return self.http.post(query_path(database_id, raw=raw), json=body, headers=AUTH)

    def sql(self, sql: str, *params: Any, raw: bool = False) -> httpx.Response:
        body: dict[str, Any] = {"sql": sql}
        if params:
            body["params"] = list(params)
        return self.post(body, raw=raw)

    def ok(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Run ``sql`` and return the last statement's rows, asserting success."""
        response = self.sql(sql, *params)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["result"][-1]["results"]
        return rows

    def error(self, response: httpx.Response) -> tuple[int, int, str]:
        body = response.json()
        assert body["success"] is False and body["result"] is None
        [error] = body["errors"]
        return response.status_code, error["code"], error["message"]


AppFactory = Callable[..., Starlette]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    apps: list[Starlette] = []

    def factory(**kwargs: Any) -> Starlette:
        app = create_app(tmp_path / f"data{len(apps)}", token=TOKEN, **kwargs)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.state.engine.close()


@pytest.fixture
def connect() -> Iterator[Callable[[Starlette], Api]]:
    clients: list[httpx.Client] = []

    def factory(app: Starlette) -> Api:
        http = httpx.Client(transport=SyncASGITransport(app), base_url="http://emulator")
        clients.append(http)
        return Api(http, app)

    yield factory
    for http in clients:
        http.close()


@pytest.fixture
def app(make_app: AppFactory) -> Starlette:
    return make_app()


@pytest.fixture
def api(app: Starlette, connect: Callable[[Starlette], Api]) -> Api:
    return connect(app)


# -- `d1sync emulator` as a real process ----------------------------------------------------------------------

FAULT_ENV = [name for name in os.environ if name.startswith("D1SYNC_FAULT_")] + [
    TOKEN_ENV,
    "D1SYNC_EMULATOR_RATE_LIMIT",
    "D1SYNC_EMULATOR_MAX_BODY",
    "D1SYNC_EMULATOR_MAX_DURATION",
]


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str], str]:
    """Start ``d1sync emulator``; return the process, the lines printed before serving, and the API base."""
    clean = {k: v for k, v in os.environ.items() if k not in FAULT_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from d1sync.cli import cli; cli()", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **env},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("default database id:"):
            [api_base] = [entry.split()[-1] for entry in lines if entry.startswith("API base:")]
            return proc, lines, api_base
    proc.communicate(timeout=10)
    raise AssertionError(f"the emulator did not start: {lines} {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # reap it and close its pipes
