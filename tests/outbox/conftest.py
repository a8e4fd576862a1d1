"""Helpers for the outbox tests: exact table snapshots, a fake clock, a recording target, the emulator."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from d1sync.client import D1Client, RetryPolicy
from d1sync.database import Database, ExecResult, RawResult, Result, Statement
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncWorker

from ..support import TOKEN, FakeClock

__all__ = ["TOKEN", "FakeClock"]  # test modules import them from here


def snapshot(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` ordered by all columns, each value with its storage class (BLOBs as hex).

    Two snapshots are equal only if the rows match exactly: same types, same integers (64-bit exact), same
    floats (Python compares them exactly), same text (NUL and astral characters included), same bytes.
    """
    q = '"' + table.replace('"', '""') + '"'
    columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({q})")]
    parts = []
    for c in columns:
        qc = '"' + c.replace('"', '""') + '"'
        parts.append(f"typeof({qc})")
        parts.append(f"CASE typeof({qc}) WHEN 'blob' THEN hex({qc}) WHEN 'text' THEN hex({qc}) ELSE {qc} END")
    order = ", ".join(str(i) for i in range(1, 2 * len(columns) + 1))
    return [tuple(r) for r in conn.execute(f"SELECT {', '.join(parts)} FROM {q} ORDER BY {order}")]


def open_file(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection (autocommit) for reading or writing a file behind d1sync's back."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def data_statements(batch: Sequence[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, tuple[Any, ...]]]:
    """A push batch without what every batch opens with (deferred foreign keys, the fence, the origin)."""
    return [(sql, params) for sql, params in batch if "_d1sync_" not in sql and not sql.startswith("PRAGMA")]


class RecordingTarget(Database):
    """A Database that forwards to another one and records every ``batch``: how many ran at once, and what.

    ``fail_when`` lets a test make a batch fail: it gets the statements and returns an exception (or None).
    """

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.batches: list[list[tuple[str, tuple[Any, ...]]]] = []
        self.fail_when: Any = None
        self.before_batch: Any = None

    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.before_batch is not None:
                self.before_batch(statements)
            # Give a concurrent sender every chance to overlap with this one.
            time.sleep(0.001)
            if self.fail_when is not None:
                error = self.fail_when(statements)
                if error is not None:
                    raise error
            inner = [self.inner.prepare(s.sql).bind(*s.params) for s in statements]
            results = self.inner.batch_raw(inner)
            with self._lock:
                self.batches.append([(s.sql, s.params) for s in statements])
            return results
        finally:
            with self._lock:
                self.active -= 1

    def exec(self, sql: str) -> ExecResult:
        return self.inner.exec(sql)

    def _execute(self, statement: Statement) -> Result:
        return self.inner.prepare(statement.sql).bind(*statement.params).all()

    def _execute_raw(self, statement: Statement) -> RawResult:
        inner = self.inner.prepare(statement.sql).bind(*statement.params)
        rows = inner.raw(column_names=True)
        return RawResult(list(rows[0]) if rows else [], [list(r) for r in rows[1:]])


@pytest.fixture
def local_pair(tmp_path: Path) -> Iterator[tuple[Path, LocalDatabase, LocalDatabase]]:
    """(app file path, the app's LocalDatabase, a LocalDatabase standing in for D1)."""
    app = LocalDatabase(tmp_path / "app.db")
    remote = LocalDatabase(tmp_path / "remote.db")
    yield tmp_path / "app.db", app, remote
    app.close()
    remote.close()


def emulator_file(server: EmulatorServer) -> Path:
    """The SQLite file behind the emulator's default database (read it directly for exact comparisons)."""
    path: Path = server.app.state.engine.path_for(DEFAULT_DATABASE_ID)
    return path


def emulator_client(
    server: EmulatorServer,
    *,
    token: str = TOKEN,
    timeout: float = 5.0,
    database_id: str = DEFAULT_DATABASE_ID,
    transport: httpx.BaseTransport | None = None,
) -> D1Client:
    return D1Client(
        account_id="a",
        database_id=database_id,
        api_token=token,
        base_url=server.api_base,
        retry=RetryPolicy(max_retries=0),
        timeout=timeout,
        transport=transport,
    )


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    """A real emulator on a loopback socket, no faults (tests may turn them on via ``app.state.faults``)."""
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, faults=FaultConfig(), auto_create=True) as server:
        yield server


OpenWorker = Callable[..., SyncWorker]
"""``open_worker(path, target, **options)``: a SyncWorker that the test's teardown closes."""


@pytest.fixture
def open_worker() -> Iterator[OpenWorker]:
    """Make SyncWorkers (same arguments as the class); every one is closed when the test ends."""
    workers: list[SyncWorker] = []

    def make(*args: Any, **kwargs: Any) -> SyncWorker:
        worker = SyncWorker(*args, **kwargs)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()


class Mirror:
    """A local file mirrored to the emulator over a real socket, for end-to-end convergence tests.

    ``both(sql)`` applies DDL to both sides (as users apply migrations); ``exact(table)`` compares the two
    SQLite files row by row with storage classes; ``drain()`` runs passes until nothing can move.
    """

    def __init__(self, tmp_path: Path, server: EmulatorServer, **worker_options: Any) -> None:
        self.path = tmp_path / "app.db"
        self.server = server
        self.app = LocalDatabase(self.path)
        self.remote = emulator_client(server)
        self.worker = SyncWorker(self.path, self.remote, **worker_options)

    def both(self, sql: str) -> None:
        self.app.exec(sql)
        self.remote.exec(sql)

    def track(self, *tables: str, **options: Any) -> None:
        with Outbox(self.path) as outbox:
            outbox.track(*tables, **options)

    def drain(self, passes: int = 50) -> Any:
        from d1sync.outbox import drain

        return drain(self.worker, max_passes=passes, sleep=lambda s: None)

    def rows(self, table: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(local snapshot, remote snapshot) of ``table``."""
        with closing(open_file(self.path)) as local, closing(open_file(emulator_file(self.server))) as remote:
            return snapshot(local, table), snapshot(remote, table)

    def exact(self, table: str) -> bool:
        local, remote = self.rows(table)
        return local == remote

    def close(self) -> None:
        self.worker.close()
        self.remote.close()
        self.app.close()


@pytest.fixture
def mirror(tmp_path: Path, emulator: EmulatorServer) -> Iterator[Mirror]:
    made = Mirror(tmp_path, emulator)
    yield made
    made.close()
