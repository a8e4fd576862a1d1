"""The demo: the main job end to end on the embedded emulator, with no credentials and no network.

An agent-conductor daemon's state (messages, executions, sessions) is written locally in small transactions
by a writer thread while the sync worker carries it to the emulator, which injects faults (5xx, 429,
timeouts, HTML 504 pages, and responses lost after the write was applied). At the end the remote must equal
the local file: :meth:`SyncWorker.verify` compares every row, value and type, and a content checksum of every
table, computed the same way on both sides, must agree too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from d1sync.database import Database
from d1sync.local import LocalDatabase
from d1sync.sql import quote_identifier
from d1sync.sqlite import remove_database

if TYPE_CHECKING:
    from d1sync.emulator.faults import FaultConfig
    from d1sync.sync import SyncWorker
    from d1sync.sync.compare.verify import VerifyReport

__all__ = ["DEMO_SCHEMA", "DemoConfig", "DemoReport", "run_demo", "table_checksum"]

DEMO_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY NOT NULL, platform TEXT NOT NULL, conversation_id TEXT NOT NULL, role TEXT NOT NULL,
    raw_text TEXT, summary TEXT, observed_at INTEGER NOT NULL, static_path TEXT, page_url TEXT,
    page_title TEXT, organization_id TEXT, created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation_id);
CREATE INDEX IF NOT EXISTS messages_platform_observed ON messages (platform, observed_at DESC);
CREATE TABLE IF NOT EXISTS executions (
    instruction_id TEXT PRIMARY KEY NOT NULL, message_id TEXT, target TEXT, tool TEXT, params TEXT, params_kind TEXT,
    result_ok INTEGER, result_data TEXT, result_summary TEXT, result_error TEXT, http_status INTEGER,
    executed_at INTEGER, static_path TEXT, created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_message ON executions (message_id);
CREATE INDEX IF NOT EXISTS executions_target_tool ON executions (target, tool);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY NOT NULL, platform TEXT NOT NULL, conversation_id TEXT NOT NULL, started_at INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL, message_count INTEGER NOT NULL DEFAULT 0,
    execution_count INTEGER NOT NULL DEFAULT 0, summary TEXT, static_path TEXT, created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_platform_activity ON sessions (platform, last_activity_at DESC);
"""

TABLES = {"messages": "id", "executions": "instruction_id", "sessions": "id"}


@dataclass
class DemoConfig:
    """Sizes and fault rates of the demo (the CLI exposes each as a flag)."""

    rows: int = 100_000
    error_rate: float = 0.03
    rate_limit_rate: float = 0.03
    timeout_rate: float = 0.01
    html_rate: float = 0.02
    lost_rate: float = 0.03
    seed: int = 7
    directory: Path | None = None


@dataclass
class DemoReport:
    migrations: int = 0
    rows_written: int = 0
    transactions: int = 0
    seconds: float = 0.0
    rows_sent: int = 0
    requests: int = 0
    retries: int = 0
    faults: dict[str, float] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    verify: VerifyReport | None = None
    """``SyncWorker.verify()`` after the run: every row, value and type compared."""

    @property
    def equal(self) -> bool:
        verified = self.verify is not None and self.verify.equal
        return verified and all(t["local"] == t["remote"] for t in self.tables.values())


def table_checksum(db: Database, table: str, key: str, page: int = 5_000) -> tuple[int, str]:
    """Row count and a SHA-256 of every row in key order, computed the same way on any Database."""
    digest = hashlib.sha256()
    count = 0
    last: Any = None
    q_table, q_key = quote_identifier(table), quote_identifier(key)
    while True:
        if last is None:
            stmt = db.prepare(f"SELECT * FROM {q_table} ORDER BY {q_key} LIMIT ?").bind(page)
        else:
            stmt = db.prepare(f"SELECT * FROM {q_table} WHERE {q_key} > ? ORDER BY {q_key} LIMIT ?").bind(last, page)
        columns, *rows = stmt.raw(column_names=True)
        for row in rows:
            digest.update(json.dumps(row, ensure_ascii=False).encode())
        count += len(rows)
        if len(rows) < page:
            return count, digest.hexdigest()[:12]
        last = rows[-1][columns.index(key)]


class _Writer(threading.Thread):
    """Writes the daemon's state in small transactions, as a real agent daemon would."""

    def __init__(self, path: Path, rows: int, seed: int) -> None:
        super().__init__(name="demo-writer", daemon=True)
        self.db = LocalDatabase(path)
        self.rows = rows
        self.rng = random.Random(seed)
        self.written = 0
        self.transactions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:  # surfaced by the demo, never swallowed
            self.error = exc
        finally:
            self.db.close()

    def _write(self) -> None:
        rng = self.rng
        sessions: list[str] = []
        n = 0
        base = 1_790_000_000_000
        while self.written < self.rows:
            size = min(rng.randint(1, 20), self.rows - self.written)
            with self.db.atomic() as conn:
                for _ in range(size):
                    n += 1
                    now = base + n * 37
                    if not sessions or rng.random() < 0.02:
                        sid = f"s{len(sessions):06d}"
                        sessions.append(sid)
                        conn.execute(
                            "INSERT INTO sessions (id, platform, conversation_id, started_at, last_activity_at, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                            (sid, rng.choice(["slack", "web", "cli"]), f"c{len(sessions)}", now, now, now),
                        )
                    sid = rng.choice(sessions[-20:])
                    mid = f"m{n:08d}"
                    conn.execute(
                        "INSERT INTO messages (id, platform, conversation_id, role, raw_text, summary, observed_at, "
                        "page_url, created_at) VALUES (?, 'web', ?, ?, ?, ?, ?, ?, ?)",
                        (
                            mid,
                            sid,
                            rng.choice(["user", "assistant", "tool"]),
                            f"message {n} — ünïcödé ✓ " + "x" * rng.randint(0, 200),
                            f"summary {n}",
                            now,
                            f"https://example.invalid/p/{n}",
                            now,
                        ),
                    )
                    if rng.random() < 0.5:
                        ok = rng.random() < 0.9
                        conn.execute(
                            "INSERT INTO executions (instruction_id, message_id, target, tool, params, params_kind, "
                            "result_ok, result_summary, result_error, http_status, executed_at, created_at) "
                            "VALUES (?, ?, ?, ?, ?, 'json', ?, ?, ?, ?, ?, ?)",
                            (
                                f"i{n:08d}",
                                mid,
                                rng.choice(["browser", "shell", "api"]),
                                rng.choice(["click", "type", "fetch", "run"]),
                                json.dumps({"n": n, "big": 2**62 + n}),
                                int(ok),
                                "done" if ok else None,
                                None if ok else "timeout",
                                200 if ok else 504,
                                now,
                                now,
                            ),
                        )
                    # Hot rows: sessions are updated on every message (the outbox coalesces these).
                    conn.execute(
                        "UPDATE sessions SET last_activity_at = ?, message_count = message_count + 1 WHERE id = ?",
                        (now, sid),
                    )
                    self.written += 1
            self.transactions += 1


_NO_FAULTS = {"error_rate": 0, "rate_limit_rate": 0, "timeout_rate": 0, "html_rate": 0, "lost_response_rate": 0}


def _fault_config(config: DemoConfig) -> FaultConfig:
    from d1sync.emulator.faults import FaultConfig

    return FaultConfig(
        error_rate=config.error_rate,
        rate_limit_rate=config.rate_limit_rate,
        timeout_rate=config.timeout_rate,
        html_rate=config.html_rate,
        lost_response_rate=config.lost_rate,
        seed=config.seed,
        retry_after=1,
        timeout_delay=1.5,
    )


def _migrate(workdir: Path, databases: tuple[Database, ...]) -> int:
    """One migration applied to both sides by the same code (both are Databases); returns the files applied."""
    from d1sync.migrations import MigrationSource, Migrator

    migrations = workdir / "migrations"
    migrations.mkdir(exist_ok=True)
    (migrations / "0001_agent_state.sql").write_text(DEMO_SCHEMA, encoding="utf-8")
    source = MigrationSource(workdir, migrations_dir=migrations, modules_glob=None)
    applied = 0
    for db in databases:
        applied = len(Migrator(db, source.discover()).apply().applied)
    return applied


def _write_while_syncing(
    worker: SyncWorker, writer: _Writer, report: DemoReport, on_tick: Callable[[dict[str, Any]], None] | None
) -> None:
    sync_thread = threading.Thread(target=worker.run, name="demo-sync", daemon=True)
    started = time.monotonic()
    writer.start()
    sync_thread.start()
    try:
        while writer.is_alive() or worker.pending():
            if writer.error is not None:
                raise writer.error
            if on_tick is not None:
                on_tick(
                    {
                        "written": writer.written,
                        "target": writer.rows,
                        "pending": worker.pending(),
                        "sent": worker.counters.rows,
                        "requests": worker.counters.requests,
                        "retries": worker.counters.retries,
                        "elapsed": time.monotonic() - started,
                    }
                )
            time.sleep(0.2)
        report.seconds = time.monotonic() - started
    finally:
        worker.stop(flush_timeout=5)
        sync_thread.join(10)
        writer.join(10)
    if writer.error is not None:
        raise writer.error
    report.rows_written, report.transactions = writer.written, writer.transactions
    report.rows_sent = worker.counters.rows
    report.requests = worker.counters.requests
    report.retries = worker.counters.retries


def run_demo(config: DemoConfig, *, on_tick: Callable[[dict[str, Any]], None] | None = None) -> DemoReport:
    """Run the demo and return its report (see the module docstring)."""
    from d1sync.backoff import Backoff
    from d1sync.client import D1Client, RetryPolicy
    from d1sync.emulator import DEFAULT_DATABASE_ID
    from d1sync.emulator.server import EmulatorServer
    from d1sync.sync import Outbox, SyncConfig, SyncWorker

    report = DemoReport()
    with tempfile.TemporaryDirectory(prefix="d1sync-demo-") as tmp, contextlib.ExitStack() as stack:
        workdir = config.directory or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        app_db = workdir / "app.db"
        remove_database(app_db)
        token = "demo-" + secrets.token_hex(8)
        faults = _fault_config(config)
        server = stack.enter_context(EmulatorServer(workdir / "emulator", token=token, faults=faults))

        def client(timeout: float) -> D1Client:
            return stack.enter_context(
                D1Client(
                    account_id="demo",
                    database_id=DEFAULT_DATABASE_ID,
                    api_token=token,
                    base_url=server.api_base,
                    timeout=timeout,
                    retry=RetryPolicy(),
                )
            )

        remote = client(1.0)  # the worker's: a held response (an injected timeout) is given up on after 1 s
        patient = client(30.0)  # the schema and the proof, without faults: a loaded machine cannot time them out
        local = stack.enter_context(LocalDatabase(app_db))
        server.app.state.faults.update(**_NO_FAULTS)  # the schema is created cleanly, then the faults begin
        report.migrations = _migrate(workdir, (local, patient))
        server.app.state.faults.configure(faults)
        server.app.state.faults.reset_stats()
        with Outbox(app_db) as outbox:
            outbox.track(*TABLES)
        worker = stack.enter_context(
            SyncWorker(
                app_db,
                remote,
                SyncConfig(backoff=Backoff(base=0.05, cap=1.0), pause_interval=1.0, seed=config.seed),
            )
        )
        _write_while_syncing(worker, _Writer(app_db, config.rows, config.seed), report, on_tick)
        report.faults = server.app.state.faults.stats
        # The proof: read both sides through the same API, without faults on the way back.
        server.app.state.faults.update(**_NO_FAULTS)
        report.verify = worker.verify()
        for table, key in TABLES.items():
            report.tables[table] = {
                "local": table_checksum(local, table, key),
                "remote": table_checksum(patient, table, key),
            }
    return report
