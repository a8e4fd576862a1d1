"""The remote side of every benchmark: the emulator on a real loopback socket, fresh databases, byte counts.

Each strategy gets its own database (created through the emulator's create-database endpoint), its own
client and its own rate limiter, so no strategy inherits another's tokens, rows or warm caches.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from d1sync.bench.data import COLUMNS, CREATE_TABLE, TABLE
from d1sync.client import D1Client, RateLimiter
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer

__all__ = ["BenchEmulator", "CountingTransport", "compare_with_remote", "pacing_limiter"]

ACCOUNT = "bench"


class CountingTransport(httpx.HTTPTransport):
    """An ordinary HTTP transport that counts the requests it sends and the bytes of their bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.bytes_sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.bytes_sent += len(request.content)
        return super().handle_request(request)


def pacing_limiter(requests_per_second: float) -> RateLimiter | None:
    """A client-side limiter sending at most ``requests_per_second``, evenly spaced, with no burst.

    ``RateLimiter(rate=1, per=1/r)`` holds one token refilled every ``1/r`` seconds: exactly ``r`` requests
    per second sustained. (``RateLimiter(rate=4, per=1)`` would sustain only 3/s: that class reserves a
    burst of ``rate // 40`` (at least 1) and refills only the rest, so no window ever sees more than ``rate``.)
    """
    if requests_per_second <= 0:
        return None
    return RateLimiter(rate=1, per=1.0 / requests_per_second)


class BenchEmulator:
    """One emulator server for a benchmark run, with the given round-trip latency injected per request.

    Example::

        with BenchEmulator(tmp, latency=0.05) as emu:
            database_id = emu.fresh_database("drain-a")
            client = emu.client(database_id, rate_limiter=pacing_limiter(4))
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, latency: float = 0.0) -> None:
        self.data_dir = Path(data_dir)
        self.token = secrets.token_hex(16)
        self.latency = latency
        self.server = EmulatorServer(
            self.data_dir, token=self.token, faults=FaultConfig(latency=latency) if latency else None
        )

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

    def client(
        self,
        database_id: str = DEFAULT_DATABASE_ID,
        *,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> D1Client:
        return D1Client(
            account_id=ACCOUNT,
            database_id=database_id,
            api_token=self.token,
            base_url=self.server.api_base,
            rate_limiter=rate_limiter,
            transport=transport,
        )

    def fresh_database(self, name: str) -> str:
        """Create a database holding the (empty) benchmark table; return its id."""
        with self.client() as admin:
            database_id = str(admin.create_database(f"{name}-{secrets.token_hex(4)}")["uuid"])
        with self.client(database_id) as client:
            client.exec(CREATE_TABLE)
        return database_id

    def database_path(self, database_id: str) -> Path:
        """The SQLite file behind a database (read it directly: no request is counted, no latency paid)."""
        path: Path = self.server.app.state.engine.path_for(database_id)
        return path


def compare_with_remote(local: str | os.PathLike[str], remote: str | os.PathLike[str]) -> tuple[int, int]:
    """(rows on the remote, remote rows that differ from the local row of the same id, types included)."""
    typed = ", ".join(f"{c}, typeof({c})" for c in COLUMNS)
    conn = sqlite3.connect(f"file:{os.fspath(local)}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS remote", (f"file:{os.fspath(remote)}?mode=ro",))
        count = int(conn.execute(f"SELECT count(*) FROM remote.{TABLE}").fetchone()[0])
        differing = conn.execute(
            f"SELECT count(*) FROM (SELECT {typed} FROM remote.{TABLE} EXCEPT SELECT {typed} FROM main.{TABLE})"
        ).fetchone()[0]
    finally:
        conn.close()
    return count, int(differing)
