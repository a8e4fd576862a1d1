"""A sync worker in its own process, for the crash and multi-process tests (not collected by pytest).

Usage:
    python worker_process.py run APP_DB API_BASE TOKEN LEASE_TTL
        SyncWorker(...).run() against the emulator; prints "progress <rows>" after every delivered request.
    python worker_process.py send APP_DB API_BASE TOKEN LEASE_TTL
        Like run, but prints "send" before every push request and "sent" once it is acknowledged, so a test
        can aim its kill -9 at a request in flight.
    python worker_process.py embed APP_DB
        d1sync.from_env(APP_DB).start(), as an application embeds it (D1 from the environment); prints
        "started", then runs until killed.
    python worker_process.py contend APP_DB REMOTE_DB LOG SECONDS
        sync_once() in a loop for SECONDS against a SQLite file, handing the lease back after every pass;
        appends "<pid> <start_ns> <end_ns>" to LOG for every batch it sends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from d1sync.backoff import Backoff
from d1sync.client import D1Client, RetryPolicy
from d1sync.database import Database, ExecResult, RawResult, Result, Statement
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.local import LocalDatabase
from d1sync.outbox import Limits, SyncConfig, SyncResult, SyncWorker

CRASH_LIMITS = Limits(max_value_bytes=2_000, max_request_bytes=4_500, max_statements=2)


class AnnouncingClient(D1Client):
    """A D1Client that says on stdout when a push request leaves and when its answer came back."""

    def batch(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[Result]:
        print("send", flush=True)
        results = super().batch(statements, idempotent=idempotent)
        print("sent", flush=True)
        return results


def run(app_db: str, api_base: str, token: str, lease_ttl: float, *, announce: bool = False) -> None:
    client = (AnnouncingClient if announce else D1Client)(
        account_id="a",
        database_id=DEFAULT_DATABASE_ID,
        api_token=token,
        base_url=api_base,
        retry=RetryPolicy(max_retries=0),
        timeout=5,
    )

    def progress(result: SyncResult) -> None:
        print(f"progress {result.rows}", flush=True)

    backoff = Backoff(base=0.05, cap=1.0) if announce else Backoff()
    worker = SyncWorker(
        app_db,
        client,
        config=SyncConfig(limits=CRASH_LIMITS, window=2_000, lease_ttl=lease_ttl, pause_interval=0.2, backoff=backoff),
        on_progress=progress,
    )
    print("started", flush=True)
    worker.run(idle_interval=0.05)


class TimedTarget(Database):
    """Forwards to a LocalDatabase and logs when each batch starts and ends (monotonic ns, system-wide)."""

    def __init__(self, inner: LocalDatabase, log_path: str) -> None:
        self.inner = inner
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed at process exit

    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        start = time.monotonic_ns()
        time.sleep(0.002)  # widen the window in which an overlapping sender would show
        results = self.inner.batch_raw([self.inner.prepare(s.sql).bind(*s.params) for s in statements])
        self.log.write(f"{os.getpid()} {start} {time.monotonic_ns()}\n")
        return results

    def exec(self, sql: str) -> ExecResult:
        return self.inner.exec(sql)

    def _execute(self, statement: Statement) -> Result:
        return self.inner.prepare(statement.sql).bind(*statement.params).all()

    def _execute_raw(self, statement: Statement) -> RawResult:
        rows = self.inner.prepare(statement.sql).bind(*statement.params).raw(column_names=True)
        return RawResult(list(rows[0]) if rows else [], [list(r) for r in rows[1:]])


def contend(app_db: str, remote_db: str, log_path: str, seconds: float) -> None:
    worker = SyncWorker(app_db, TimedTarget(LocalDatabase(remote_db), log_path), config=SyncConfig(limits=CRASH_LIMITS))
    print("started", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.sync_once()
        worker.release_lease()
        time.sleep(0.003)


def embed(app_db: str) -> None:
    import d1sync

    worker = d1sync.from_env(app_db, config=SyncConfig(lease_ttl=1.0, poll_interval=0.02))
    assert worker is not None, "D1 is not configured in this process's environment"
    worker.start(idle_interval=0.05)
    print("started", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "embed":
        embed(args[0])
        sys.exit(0)
    if mode in ("run", "send"):
        run(args[0], args[1], args[2], float(args[3]), announce=mode == "send")
    else:
        contend(args[0], args[1], args[2], float(args[3]))
