"""Benchmark 8: the request budget: requests per million rows, fixed size, adaptive size and import, in one run.

What limits a REST user of D1 is the account's budget of 1,200 requests per 5 minutes (4 a second), not
bandwidth. The first three paths drain a copy of the same backlog into databases of one emulator with the same
latency and a low execution limit (so that the adaptive path finds a limit, as it would find D1's 30 s):

* ``fixed``: today's fixed size, 2,000,000 bytes a request (``Limits(max_request_bytes=2_000_000,
  adaptive=False)``), the operating point of earlier releases;
* ``adaptive``: d1sync's default limits: requests start at 2 MB, grow while the emulator answers fast and
  shrink when it stops one at its execution limit (:mod:`d1sync.sync.push.sizing`);
* ``import``: the backlog through D1's import (``via="import"``, :mod:`d1sync.sync.push.seeder`);
* ``adaptive_d1``: the adaptive path again, on a second emulator enforcing D1's own 30 s limit, which the
  sizer (aiming at 5 s) never meets: the operating point on D1, where the ceilings and the window's key cap
  bound a request, not the execution limit.

Every API request sent counts, the refused ones included (they spend the budget too); the import's uploads to
its signed URL are not API requests and are counted apart. Budget-seconds per million
rows is what a million rows costs of the account's budget at 4 requests a second. No rate limit is applied:
the budget is computed from the count, so the run is not four minutes of waiting.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from d1sync.bench.data import COLUMNS, make_backlog
from d1sync.bench.remote import BenchEmulator, CountingTransport, compare_with_remote
from d1sync.bench.report import Figure, Report
from d1sync.bench.settings import BenchSettings
from d1sync.errors import ConfigError
from d1sync.sqlite import Connection
from d1sync.sync import Limits, SyncConfig, SyncWorker
from d1sync.sync.config import Via
from d1sync.sync.store.state import load_state

__all__ = [
    "BUDGET_RATE",
    "D1_EXECUTION_LIMIT",
    "EXECUTION_LIMIT",
    "PATHS",
    "BudgetOutcome",
    "run_budget",
    "run_budget_bench",
]

BUDGET_RATE = 4.0
"""The account's sustained budget: 1,200 requests per 300 s."""
EXECUTION_LIMIT = 1.0
"""Seconds the benchmark's emulator lets one request run (D1's is 30 s): low enough for the adaptive size to
meet it on a backlog of a million rows (its biggest requests, 16.7 MB, take about that long)."""

PATHS: dict[str, tuple[str, Limits, Via]] = {
    "fixed": (
        "fixed size, 2,000,000 bytes a request (earlier releases)",
        Limits(max_request_bytes=2_000_000, adaptive=False),
        "batch",
    ),
    "adaptive": ("adaptive size (default limits: start 2 MB, ceiling 32 MB, target 5 s)", Limits(), "batch"),
    "import": ("D1's import (via=import)", Limits(), "import"),
    "adaptive_d1": ("adaptive size at D1's own 30 s execution limit", Limits(), "batch"),
}
D1_EXECUTION_LIMIT = 30.0
"""D1's execution limit: the ``adaptive_d1`` path runs on an emulator that enforces it, where the sizer never
meets it and requests grow to the ceiling (the operating point on D1)."""
LIMIT_OF = {"adaptive_d1": D1_EXECUTION_LIMIT}
"""The execution limit of each path's emulator (EXECUTION_LIMIT unless named here)."""


@dataclass
class BudgetOutcome:
    """What one path did with the backlog."""

    path: str
    label: str
    rows: int
    """The backlog's rows."""
    acknowledged: int
    """Rows acknowledged by batches (the import's rows are acknowledged with it)."""
    requests: int
    """Every API request sent to the emulator, refused ones included (uploads to a signed URL apart)."""
    uploads: int
    """Uploads to the signed URL of D1's import (not API requests)."""
    write_requests: int
    """Requests that were acknowledged (each carried rows)."""
    seconds: float
    drained: bool
    learned_bytes: int | None
    remote_rows: int
    remote_mismatches: int

    @property
    def requests_per_million(self) -> float:
        return self.requests * 1_000_000 / self.rows if self.rows else 0.0

    @property
    def rows_per_request(self) -> float:
        carried = self.write_requests or self.requests  # an import carries its rows in no batch
        return self.rows / carried if carried else 0.0

    @property
    def budget_seconds_per_million(self) -> float:
        return self.requests_per_million / BUDGET_RATE

    @property
    def verified(self) -> bool:
        return self.drained and self.remote_rows == self.rows and self.remote_mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "requests_per_million": self.requests_per_million,
            "rows_per_request": self.rows_per_request,
            "budget_seconds_per_million": self.budget_seconds_per_million,
            "verified": self.verified,
        }


def _drain(
    path: Path, emulator: BenchEmulator, database_id: str, limits: Limits, via: Via
) -> tuple[int, int, CountingTransport, bool]:
    """(rows acknowledged, write requests, what was sent, drained) of one worker draining ``path``."""
    transport = CountingTransport()
    with emulator.client(database_id, transport=transport) as client:
        with SyncWorker(path, client, SyncConfig(limits=limits, via=via)) as worker:
            for _ in range(10_000):
                result = worker.sync_once()
                if result.state == "paused":
                    raise ConfigError(f"the {limits} path paused: {result.error}")
                if result.state == "backoff":
                    time.sleep(result.retry_in or 0.1)
                if not result.more and worker.pending() == 0:
                    break
            drained = worker.pending() == 0
            return worker.counters.rows, worker.counters.requests, transport, drained


def run_budget(
    emulator: BenchEmulator,
    workdir: Path,
    *,
    rows: int,
    paths: Sequence[str] = tuple(PATHS),
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> list[BudgetOutcome]:
    """Drain a backlog of ``rows`` rows along each path (see the module docstring)."""
    template = make_backlog(workdir / "budget-template.db", rows)
    outcomes = []
    for name in paths:
        label, limits, via = PATHS[name]
        if progress:
            progress(f"budget: {label}, {rows:,} rows")
        local = workdir / f"budget-{name}.db"
        shutil.copyfile(template, local)
        database_id = emulator.fresh_database(f"budget-{name}")
        started = clock()
        acked, writes, sent, drained = _drain(local, emulator, database_id, limits, via)
        seconds = clock() - started
        with Connection(local) as conn:
            learned = load_state(conn).request_size
        remote_rows, mismatches = compare_with_remote(local, emulator.database_path(database_id))
        outcomes.append(
            BudgetOutcome(
                path=name,
                label=label,
                rows=rows,
                acknowledged=acked,
                requests=sent.requests,
                uploads=sent.uploads,
                write_requests=writes,
                seconds=seconds,
                drained=drained,
                learned_bytes=learned.bytes if learned else None,
                remote_rows=remote_rows,
                remote_mismatches=mismatches,
            )
        )
        local.unlink()
    template.unlink()
    return outcomes


def run_budget_bench(workdir: Path, settings: BenchSettings, report: Report, say: Callable[[str], None]) -> None:
    """The budget benchmark on an emulator of its own (the execution limit), with its figures."""
    latency = settings.latency_ms / 1000
    outcomes: list[BudgetOutcome] = []
    for limit in sorted({LIMIT_OF.get(path, EXECUTION_LIMIT) for path in PATHS}):
        paths = [path for path in PATHS if LIMIT_OF.get(path, EXECUTION_LIMIT) == limit]
        data = workdir / f"budget-emulator-{limit:g}s"
        with BenchEmulator(data, latency=latency, own_process=True, max_duration=limit) as emulator:
            outcomes += run_budget(emulator, workdir, rows=settings.budget_rows, paths=paths, progress=say)
    report.details["budget"] = [o.to_dict() for o in outcomes]
    conditions = {
        "backlog_rows": settings.budget_rows,
        "columns": len(COLUMNS),
        "emulator_latency_ms": settings.latency_ms,
        "budget_rate": f"{BUDGET_RATE:g} requests/s (1,200 per 300 s), computed from the count, not enforced",
        "transport": "D1Client over HTTP to the emulator (a child process) on 127.0.0.1",
    }
    for o in outcomes:
        conditions["emulator_execution_limit_s"] = LIMIT_OF.get(o.path, EXECUTION_LIMIT)
        learned = f"; learned size {o.learned_bytes / 1e6:,.1f} MB" if o.learned_bytes else ""
        learned += f"; {o.uploads} upload(s) to the signed URL, not API requests" if o.uploads else ""
        summary = (
            f"{o.requests:,} requests ({o.write_requests:,} carried rows), {o.rows_per_request:,.0f} rows/request, "
            f"{o.budget_seconds_per_million:,.1f} budget-s per million rows; drained in {o.seconds:,.1f} s"
            + learned
            + ("" if o.verified else "; NOT DRAINED OR REMOTE MISMATCH")
        )
        for key, value, unit in (
            ("requests_per_million_rows", o.requests_per_million, "requests"),
            ("rows_per_request", o.rows_per_request, "rows"),
            ("budget_seconds_per_million_rows", o.budget_seconds_per_million, "s"),
            ("seconds", o.seconds, "s"),
        ):
            report.figures.append(
                Figure(
                    key=f"budget.{o.path}.{key}",
                    name=f"{key.replace('_', ' ')}, {o.label}",
                    value=value,
                    unit=unit,
                    conditions=conditions | {"path": o.label},
                    measured=o.to_dict(),
                    summary=summary,
                )
            )
