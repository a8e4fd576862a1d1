"""The stage of the fleet benchmarks: an emulator that counts every request it answers, tenant files, the
``d1sync fleet`` child process, and arrival stamps in the databases.

The emulator is served from a thread of the benchmark's process (so a middleware can count every request,
the creates and listings included, and every 429); the measured daemon is a child process of its own.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import sys
import time
import urllib.request
from collections import Counter
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d1sync.bench.process import SyncProcess
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.errors import D1SyncError

__all__ = ["ARRIVALS", "CountingEmulator", "FleetChild", "fleet_command", "make_tenants", "stamp_arrivals"]

NOTES = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)"
ARRIVALS = "_bench_arrivals"
"""A table of the benchmark's own in each database: when each note arrived (the emulator's clock)."""
_DATABASE_PATH = re.compile(r"/d1/database/([0-9a-f-]{36})(/|$)")


class _Count:
    """ASGI middleware: counts each request (``requests``, by ``kind``, by database) and each 429."""

    def __init__(self, app: ASGIApp, counts: Counter[str]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = str(scope["path"]), str(scope["method"])
        found = _DATABASE_PATH.search(path)
        kind = "query" if path.endswith(("/query", "/raw")) else "create" if method == "POST" else "other"
        kind = "list" if found is None and method == "GET" else kind
        self.counts["requests"] += 1
        self.counts[f"kind:{kind}"] += 1
        if found is not None:
            self.counts[f"db:{found.group(1)}"] += 1

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 429:
                self.counts["429"] += 1
            await send(message)

        await self.app(scope, receive, counted)


class CountingEmulator:
    """An emulator (``latency`` seconds per query) that counts every request it answers in :attr:`counts`."""

    def __init__(self, data_dir: Path, *, latency: float) -> None:
        self.token = secrets.token_hex(16)
        self.counts: Counter[str] = Counter()
        self.server = EmulatorServer(data_dir, token=self.token, faults=FaultConfig(latency=latency))
        self.server.app.add_middleware(_Count, counts=self.counts)
        self.latency = latency

    def __enter__(self) -> Self:
        self.server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def rate_limit(self, limit: tuple[int, float] | None, *, headers: bool = True) -> None:
        """Enforce the account budget ``(requests, seconds)`` from now on (None: none); with ``headers``
        False, answers carry no ``x-ratelimit-*`` count and clients learn of the limit only from 429s."""
        faults = self.server.app.state.faults
        faults.set_rate_limit(limit)
        faults.update(rate_limit_headers=headers)

    def databases(self) -> dict[str, str]:
        """Each database's name to its id, read from the emulator itself (no request)."""
        return {str(d["name"]): str(d["uuid"]) for d in self.server.app.state.engine.list_databases()}

    def path(self, database_id: str) -> Path:
        found: Path = self.server.app.state.engine.path_for(database_id)
        return found

    def rows(self, database_id: str, table: str = "notes") -> int:
        """Rows of ``table`` in a database, read from its file (no request)."""
        with closing(sqlite3.connect(f"file:{self.path(database_id)}?mode=ro", uri=True, timeout=30)) as conn:
            try:
                return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            except sqlite3.OperationalError:
                return 0


def make_tenants(folder: Path, count: int, rows: int, *, prefix: str = "t") -> list[Path]:
    """``count`` tenant files of ``rows`` notes each, as an application leaves them (no d1sync table)."""
    folder.mkdir(parents=True, exist_ok=True)
    template = folder.parent / f"{folder.name}-template.sqlite"
    template.unlink(missing_ok=True)
    with closing(sqlite3.connect(template, isolation_level=None)) as conn:
        conn.execute(NOTES)
        conn.executemany("INSERT INTO notes VALUES (?, ?, ?)", [(i, f"note {i} " + "x" * 80, i) for i in range(rows)])
    paths = [folder / f"{prefix}{i:04}.db" for i in range(count)]
    for path in paths:
        shutil.copyfile(template, path)
    template.unlink()
    return paths


def stamp_arrivals(path: Path) -> None:
    """Make a database note when each new note arrives (``unixepoch('subsec')``, the emulator's clock)."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {ARRIVALS} (id INTEGER PRIMARY KEY, at REAL NOT NULL)")
        conn.execute(
            f"CREATE TRIGGER IF NOT EXISTS {ARRIVALS}_stamp AFTER INSERT ON notes BEGIN "
            f"INSERT OR IGNORE INTO {ARRIVALS} VALUES (new.id, unixepoch('subsec')); END"
        )


def arrivals(path: Path) -> dict[int, float]:
    """Each note's arrival time in a stamped database."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
        return {int(i): float(at) for i, at in conn.execute(f"SELECT id, at FROM {ARRIVALS}")}


def fleet_command(command: str, folder: Path, emulator: CountingEmulator, *options: str) -> list[str]:
    """``d1sync fleet COMMAND DIR --emulator URL -q ...``, run by this interpreter."""
    head = [sys.executable, "-m", "d1sync.cli", "fleet", command, os.fspath(folder), "--emulator", emulator.url]
    return [*head, "-q", *options]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FleetChild:
    """A ``d1sync fleet run`` child serving ``/status.json`` on a port of its own."""

    def __init__(self, folder: Path, emulator: CountingEmulator, log: Path, *options: str) -> None:
        self.port = _free_port()
        command = fleet_command("run", folder, emulator) + ["--metrics-port", str(self.port), *options]
        self.child = SyncProcess(command, emulator.token, log)
        self.pid = self.child.proc.pid

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status.json", timeout=60) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data

    def wait_settled(self, tenants: int, timeout: float) -> None:
        """Until the daemon shows ``tenants`` tenants, each past its first pass with nothing pending."""
        deadline = time.monotonic() + timeout
        while True:
            if self.child.poll():
                raise D1SyncError(f"`d1sync fleet run` exited: {self.child.stderr_tail()}")
            try:
                rows = self.status()["tenants"]
            except OSError:
                rows = []
            if len(rows) == tenants and all(r["state"] != "new" and not r["pending"] for r in rows):
                return
            if time.monotonic() > deadline:
                raise D1SyncError(f"`d1sync fleet run` did not settle within {timeout:.0f} s")
            time.sleep(3.0)  # each look costs the daemon a status of every tenant: not too often

    def close(self) -> None:
        self.child.close()
