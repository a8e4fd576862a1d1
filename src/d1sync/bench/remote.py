"""The remote side of every benchmark: the emulator on a real loopback socket, fresh databases, byte counts.

Each strategy gets its own database (created through the emulator's create-database endpoint), its own
client and its own rate limiter, so no strategy inherits another's tokens, rows or warm caches.

``d1sync bench`` runs the emulator in a process of its own, as D1 is a service of its own: served from the
benchmark's process, the emulator's parsing and applying would take turns with the client on one
interpreter lock, and server time would be counted as client time.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from d1sync.bench.data import COLUMNS, CREATE_TABLE, TABLE
from d1sync.client import D1Client, RateLimiter
from d1sync.emulator import DEFAULT_DATABASE_ID, DEFAULT_MAX_BODY, DEFAULT_MAX_DURATION, TOKEN_ENV
from d1sync.emulator.app import API_PREFIX
from d1sync.emulator.endpoints import TRANSFER_PREFIX
from d1sync.emulator.engine import database_file
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.errors import ConfigError

__all__ = ["BenchEmulator", "CountingTransport", "compare_with_remote", "pacing_limiter"]

ACCOUNT = "bench"
_START_TIMEOUT = 60.0


class CountingTransport(httpx.HTTPTransport):
    """An ordinary HTTP transport that counts the API requests it sends and the bytes of their bodies, and
    apart from them the uploads to the signed URLs D1's import gives (they are not API requests)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.bytes_sent = 0
        self.uploads = 0
        self.upload_bytes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(TRANSFER_PREFIX):
            self.uploads += 1
            self.upload_bytes += int(request.headers.get("content-length") or 0)
        else:
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
    """One emulator for a benchmark run, with the given round-trip latency injected per request.

    Args:
        data_dir: the emulator's folder of database files.
        latency: seconds added to every query request.
        own_process: serve it from a child process (``d1sync emulator``), as ``d1sync bench`` does; else from
            a thread of this process, where ``server`` gives the app (its faults can change while it runs).
        max_duration: seconds one request may run (the emulator's execution limit; None: D1's 30 s).
        max_body: the largest API request body it reads, in bytes (None: its 100 MB default); an import's
            upload is bounded by D1's 5 GB instead.

    Example::

        with BenchEmulator(tmp, latency=0.05, own_process=True) as emu:
            database_id = emu.fresh_database("drain-a")
            client = emu.client(database_id, rate_limiter=pacing_limiter(4))
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        latency: float = 0.0,
        own_process: bool = False,
        max_duration: float | None = None,
        max_body: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.token = secrets.token_hex(16)
        self.latency = latency
        self.max_duration = max_duration
        self.max_body = max_body
        self._process: subprocess.Popen[bytes] | None = None
        self._server: EmulatorServer | None = None
        if not own_process:
            faults = FaultConfig(latency=latency) if latency else None
            self._server = EmulatorServer(
                self.data_dir,
                token=self.token,
                faults=faults,
                max_duration=DEFAULT_MAX_DURATION if max_duration is None else max_duration,
                max_body=DEFAULT_MAX_BODY if max_body is None else max_body,
            )
        self._api_base = ""

    @property
    def server(self) -> EmulatorServer:
        """The in-process server (its ``app.state.faults`` can change while it runs)."""
        if self._server is None:
            raise ConfigError("this benchmark emulator runs in a process of its own: it has no in-process server")
        return self._server

    def __enter__(self) -> Self:
        if self._server is not None:
            self._api_base = self._server.start().api_base
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "emulator.log"
        command = [sys.executable, "-m", "d1sync", "emulator", "--port", "0", "--data-dir", str(self.data_dir)]
        if self.latency:
            command += ["--latency-ms", f"{self.latency * 1000:g}"]
        if self.max_duration is not None:
            command += ["--max-duration", f"{self.max_duration:g}"]
        if self.max_body is not None:
            command += ["--max-body", str(self.max_body)]
        # The token goes through the environment, never the command line (which `ps` shows to everyone).
        env = {**os.environ, TOKEN_ENV: self.token}
        with log.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._api_base:
            lines = log.read_text(errors="replace").splitlines()
            self._api_base = next((line.split()[-1] for line in lines if line.startswith("API base:")), "")
            if self._api_base:
                break
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise ConfigError(f"the benchmark's emulator did not start; it printed:\n{chr(10).join(lines[-20:])}")
            time.sleep(0.02)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.stop()
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def url(self) -> str:
        return self._api_base.removesuffix(API_PREFIX)

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
            base_url=self._api_base,
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
        return database_file(self.data_dir, database_id)


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
