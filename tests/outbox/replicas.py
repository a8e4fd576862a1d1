"""Helpers for the replication tests: replica files around one emulator, and exact comparisons."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

from d1sync.client import D1Client
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncConfig, SyncWorker, drain
from d1sync.sync.config import PullOptions

from .conftest import emulator_client, emulator_file, open_file, snapshot

SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, n INTEGER, data BLOB, score REAL, v INTEGER, any_)"
WRITES = """
CREATE TABLE writes (n INTEGER);
INSERT INTO writes VALUES (0);
CREATE TRIGGER count_ins AFTER INSERT ON items BEGIN UPDATE writes SET n = n + 1; END;
CREATE TRIGGER count_upd AFTER UPDATE ON items BEGIN UPDATE writes SET n = n + 1; END;
CREATE TRIGGER count_del AFTER DELETE ON items BEGIN UPDATE writes SET n = n + 1; END;
"""
"""Counts the rows written to ``items`` (a test's own trigger, not d1sync's)."""


class Replica:
    """One replica file: the application's database, an outbox marked two-way, a worker pulling at once."""

    def __init__(
        self,
        folder: Path,
        name: str,
        server: EmulatorServer,
        *,
        schema: str = SCHEMA,
        config: SyncConfig | None = None,
    ) -> None:
        self.path = folder / f"{name}.db"
        self.app = LocalDatabase(self.path)
        self.app.exec(schema)
        self.remote: D1Client = emulator_client(server)
        self.server = server
        self.worker = SyncWorker(self.path, self.remote, config or SyncConfig(pull_options=PullOptions(interval=0.0)))

    def replicate(self, *tables: str, **options: Any) -> None:
        Outbox(self.path).replicate(*tables, target=self.remote, **options)

    def sync(self) -> Any:
        """Push everything, then pull until caught up (what ``d1sync sync`` does)."""
        return drain(self.worker, max_passes=50, sleep=lambda s: None)

    def rows(self, table: str = "items") -> list[tuple[Any, ...]]:
        with closing(open_file(self.path)) as conn:
            return snapshot(conn, table)

    def changes(self) -> int:
        return int(self.app.prepare("SELECT count(*) FROM _d1sync_pending").raw()[0][0])

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.worker.close()
        self.remote.close()
        self.app.close()


def remote_rows(server: EmulatorServer, table: str = "items") -> list[tuple[Any, ...]]:
    with closing(open_file(emulator_file(server))) as conn:
        return snapshot(conn, table)


def remote_sql(server: EmulatorServer, sql: str, *params: Any) -> list[Any]:
    """Run SQL on the emulator's file directly (a person at the console, or a Worker's binding)."""
    with closing(open_file(emulator_file(server))) as conn:
        return conn.execute(sql, params).fetchall()
