"""Helpers shared by the test folders: the test token, a fake clock, and every Database backend."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from d1sync.client import D1Client, RetryPolicy
from d1sync.database import Database
from d1sync.local import LocalDatabase

TOKEN = "d1sync-test-token"
"""The bearer token of every emulator the tests start (never a real credential)."""
IN_PROCESS_BASE = "http://emulator/client/v4"
"""The base URL used with an in-process transport (no socket, so the host is never resolved)."""
START = 1_700_000_000.0
"""A realistic epoch: milliseconds near 1.7e12 exercise D1's REAL-bound JSON numbers."""
BACKENDS = ["local", "emulator", "emulator-socket"]
"""The sync backends every part must run on: a SQLite file, D1Client in process, D1Client over a socket."""


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def open_database(kind: str, tmp_path: Path, request: pytest.FixtureRequest, **client: Any) -> Database:
    """A fresh, empty database of backend ``kind`` (see BACKENDS); remote ones get their own database id."""
    if kind == "local":
        return LocalDatabase(tmp_path / "local.db")
    common: dict[str, Any] = {"account_id": "acct", "database_id": str(uuid.uuid4()), "api_token": TOKEN, **client}
    if kind == "emulator":
        return D1Client(**common, base_url=IN_PROCESS_BASE, transport=request.getfixturevalue("emulator_transport"))
    if kind == "emulator-socket":
        return D1Client(**common, base_url=request.getfixturevalue("emulator_server").api_base)
    raise ValueError(f"unknown backend {kind!r}")


def client_at(base_url: str, database_id: str, *, token: str = TOKEN, **options: Any) -> D1Client:
    """A D1Client of the emulator at ``base_url`` (a server's ``api_base``, or :data:`IN_PROCESS_BASE` with a
    ``transport``), without retries unless ``retry`` says: a test sees every failure as it comes."""
    options.setdefault("retry", RetryPolicy(max_retries=0))
    return D1Client(account_id="acct", database_id=database_id, api_token=token, base_url=base_url, **options)


def race(threads: int, body: Callable[[int], None]) -> None:
    """Run ``body(i)`` in ``threads`` threads released together by a barrier, and wait for all of them."""
    start = threading.Barrier(threads)

    def run(i: int) -> None:
        start.wait()
        body(i)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def find_wrangler() -> str | None:
    """Real wrangler for the tests that run it: ``$D1SYNC_WRANGLER``, the copy ``make node-tools`` installs in
    ``.venv/node``, or one on PATH; None (those tests skip) when there is none."""
    import os
    import shutil
    from pathlib import Path

    installed = Path(__file__).resolve().parents[1] / ".venv" / "node" / "node_modules" / ".bin" / "wrangler"
    return os.environ.get("D1SYNC_WRANGLER") or (str(installed) if installed.exists() else shutil.which("wrangler"))


def free_port() -> int:
    """A loopback port free at the time of asking (a child process told to bind it may still lose it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
