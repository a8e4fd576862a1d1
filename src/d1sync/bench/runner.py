"""Run the six benchmarks in one process, on one emulator over a loopback socket, and collect the figures."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from d1sync.bench.budget import run_budget_bench
from d1sync.bench.capture import CaptureOutcome, run_capture
from d1sync.bench.data import COLUMNS
from d1sync.bench.drain import DRAIN_LIMITS, STRATEGIES, DrainOutcome, run_drain
from d1sync.bench.latency import run_latency
from d1sync.bench.process import run_idle, run_memory, run_recovery
from d1sync.bench.remote import BenchEmulator
from d1sync.bench.report import Figure, Report
from d1sync.bench.settings import BENCHMARKS, QUICK, BenchSettings
from d1sync.bench.tasks import run_task_bench
from d1sync.errors import D1SyncError

__all__ = ["BENCHMARKS", "QUICK", "BenchSettings", "run_bench"]

MB = 1024 * 1024
Progress = Callable[[str], None]


def _rate_text(settings: BenchSettings) -> str:
    if not settings.rate_limit:
        return "no rate limit"
    return f"{settings.rate_limit:g} req/s (client-side RateLimiter, evenly spaced)"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} days"


def _size(count: int) -> str:
    return f"{count / MB:,.1f} MB" if count >= MB else f"{count / 1024:,.0f} KB"


def _drain_figures(report: Report, settings: BenchSettings, outcomes: list[DrainOutcome]) -> None:
    conditions = {
        "backlog_rows": settings.rows,
        "columns": len(COLUMNS),
        "emulator_latency_ms": settings.latency_ms,
        "rate_limit": _rate_text(settings),
        "rate_limit_enforced_by": "client-side d1sync.client.RateLimiter" if settings.rate_limit else None,
        "time_budget_s": settings.budget,
        "byte_budget_per_request": DRAIN_LIMITS.max_request_bytes,
        "transport": "D1Client over HTTP to the emulator on 127.0.0.1",
    }
    by_name = {o.strategy: o for o in outcomes}
    for o in outcomes:
        rate = o.rows_per_second
        projected = settings.rows / rate if rate else None
        measured = o.to_dict() | {"projected_drain_seconds": projected}
        done = f"drained in {o.seconds:,.1f} s" if o.drained else f"{o.rows:,} rows in the {settings.budget:g} s budget"
        summary = (
            f"{o.rows_per_request:,.0f} row(s)/request, {o.write_requests:,} requests, "
            f"{_size(o.bytes_sent)} sent; {done}"
            + ("" if o.drained or projected is None else f" (whole backlog: ~{_duration(projected)})")
            + ("" if o.verified else "; REMOTE MISMATCH")
        )
        report.figures.append(
            Figure(
                key=f"drain.{o.strategy}.rows_per_second",
                name=f"drain {o.label}",
                value=rate,
                unit="rows/s",
                conditions=conditions | {"strategy": o.label},
                measured=measured,
                summary=summary,
            )
        )
    ours = by_name.get("d1sync")
    for other in ("one_row", "multi_values"):
        theirs = by_name.get(other)
        if ours is None or theirs is None or not theirs.rows_per_second:
            continue
        report.figures.append(
            Figure(
                key=f"drain.ratio.d1sync_vs_{other}",
                name=f"drain rate (c) / {STRATEGIES[other].split(' ', 1)[0]}",
                value=ours.rows_per_second / theirs.rows_per_second,
                unit="x",
                conditions=conditions,
                measured={
                    "d1sync_rows_per_second": ours.rows_per_second,
                    "other_rows_per_second": theirs.rows_per_second,
                },
                summary=f"same backlog, emulator, client, latency and rate limit; {_rate_text(settings)}",
            )
        )


def _run_drain(emulator: BenchEmulator, workdir: Path, settings: BenchSettings, report: Report, say: Progress) -> None:
    outcomes = run_drain(
        emulator,
        workdir,
        rows=settings.rows,
        budget=settings.budget,
        requests_per_second=settings.rate_limit,
        progress=say,
    )
    report.details["drain"] = [o.to_dict() for o in outcomes]
    _drain_figures(report, settings, outcomes)


def _run_capture(workdir: Path, settings: BenchSettings, report: Report, say: Progress) -> None:
    sizes = ((1, settings.capture_transactions), (100, max(1, settings.capture_transactions // 10)))
    details = []
    for table in ("messages", "bench"):
        for per_tx, transactions in sizes:
            say(f"capture ({table}): {transactions:,} transactions of {per_tx} row(s), tracked and untracked")
            outcome = run_capture(workdir, transactions=transactions, rows_per_transaction=per_tx, table=table)
            details.append(outcome.to_dict())
            _capture_figures(report, outcome)
    report.details["capture"] = details


def _capture_figures(report: Report, outcome: CaptureOutcome) -> None:
    per_tx = outcome.rows_per_transaction
    described = (
        "the demo's messages table (TEXT key, 12 columns, 2 secondary indexes)"
        if outcome.table == "messages"
        else f"the bench table ({len(COLUMNS)} columns, no secondary index)"
    )
    conditions = {
        "table": described,
        "rows_per_transaction": per_tx,
        "transactions_per_table": outcome.transactions,
        "interleaved_rounds": outcome.rounds,
        "file_settings": "one file, WAL, synchronous=NORMAL (d1sync.local.connect), BEGIN IMMEDIATE",
        "operation": "INSERT of new rows",
    }
    label = ("single-row" if per_tx == 1 else f"{per_tx}-row") + f", {outcome.table}"
    key = f"capture.{outcome.table}.{'single-row' if per_tx == 1 else f'{per_tx}-row'}"
    summary = f"{outcome.transactions:,} transactions, {outcome.rounds} interleaved rounds"
    for kind, value in (("tracked", outcome.tracked_rows_per_second), ("untracked", outcome.plain_rows_per_second)):
        report.figures.append(
            Figure(
                key=f"{key}.{kind}_rows_per_second",
                name=f"writes, {label} transactions, {kind} table",
                value=value,
                unit="rows/s",
                conditions=conditions,
                measured=outcome.to_dict(),
                summary=summary,
            )
        )
    report.figures.append(
        Figure(
            key=f"{key}.ratio",
            name=f"capture overhead, {label} (tracked / untracked rate)",
            value=outcome.ratio,
            unit="x",
            conditions=conditions,
            measured=outcome.to_dict(),
            summary=f"same file and settings; capture adds {outcome.cost_us:.1f} µs per row",
        )
    )


def _run_latency(
    emulator: BenchEmulator, workdir: Path, settings: BenchSettings, report: Report, say: Progress
) -> None:
    say(f"latency: {settings.latency_samples} single-row commits, idle worker")
    outcome = run_latency(emulator, workdir, samples=settings.latency_samples)
    report.details["latency"] = outcome.to_dict()
    if outcome.samples < 200:
        report.notes.append(f"latency percentiles come from {outcome.samples} samples (fewer than 200)")
    conditions = {
        "samples": outcome.samples,
        "emulator_latency_ms": settings.latency_ms,
        "worker": "SyncWorker.run() in a thread of the writer's process, idle before each commit",
        "detection": f"PRAGMA data_version polled every {outcome.poll_interval * 1000:g} ms (the writer uses its "
        "own sqlite3 connection, as application code does)",
        "gather_floor_ms": outcome.min_interval * 1000,
        "rate_limit": "none (one small request per commit)",
        "visibility": "row readable in the emulator's SQLite file (polled every 0.5 ms, costs no request)",
    }
    poll_ms, floor_ms = outcome.poll_interval * 1000, outcome.min_interval * 1000
    for p, value in (("p50", outcome.p50), ("p95", outcome.p95), ("p99", outcome.p99)):
        report.figures.append(
            Figure(
                key=f"latency.{p}_ms",
                name=f"commit to visible on remote, {p}",
                value=value * 1000,
                unit="ms",
                conditions=conditions,
                measured=outcome.to_dict(),
                summary=f"{outcome.samples} single-row commits; emulator latency {settings.latency_ms:g} ms; idle "
                f"worker polls every {poll_ms:g} ms, then gathers {floor_ms:g} ms",
            )
        )


def _run_idle(emulator: BenchEmulator, workdir: Path, settings: BenchSettings, report: Report, say: Progress) -> None:
    say("idle: `d1sync run` sends a small backlog, then has nothing to do")
    outcome = run_idle(emulator, workdir, seconds=settings.idle_seconds, progress=say)
    report.details["idle"] = outcome.to_dict()
    report.figures.append(
        Figure(
            key="idle.cpu_percent",
            name="CPU of an idle `d1sync run`",
            value=outcome.cpu_percent,
            unit="% of a core",
            conditions={
                "command": "d1sync run DB --emulator URL --database-id ID (a child process, default intervals)",
                "watched_seconds": round(outcome.seconds, 1),
                "measured_by": "utime + stime from /proc/PID/stat, before and after",
                "before": f"it sent {outcome.rows_synced_first} rows and went idle",
                "emulator_latency_ms": settings.latency_ms,
            },
            measured=outcome.to_dict(),
            summary=f"{outcome.cpu_seconds:.2f} s of CPU in {outcome.seconds:.0f} s with nothing to send"
            + ("" if outcome.verified else "; REMOTE MISMATCH"),
        )
    )


def _run_memory(emulator: BenchEmulator, workdir: Path, settings: BenchSettings, report: Report, say: Progress) -> None:
    for via, key, path in (
        ("batch", "memory.peak_rss_mb", "batches"),
        ("import", "memory.import.peak_rss_mb", "D1's import"),
    ):
        outcome = run_memory(emulator, workdir, rows=settings.memory_rows, via=via, progress=say)
        report.details["memory" if via == "batch" else "memory_import"] = outcome.to_dict()
        report.figures.append(
            Figure(
                key=key,
                name=f"peak RSS of `d1sync sync --via {via}`",
                value=outcome.peak_rss_bytes / MB,
                unit="MB",
                conditions={
                    "backlog_rows": outcome.rows,
                    "command": f"d1sync sync DB --emulator URL --database-id ID --via {via} (a child process)",
                    "path": path,
                    "measured_by": "wait4() rusage ru_maxrss of the child",
                    "emulator_latency_ms": settings.latency_ms,
                    "rate_limit": "none (d1sync sync against an emulator URL)",
                },
                measured=outcome.to_dict(),
                summary=f"draining {outcome.rows:,} rows in {outcome.seconds:,.1f} s; the same command on an empty "
                f"outbox: {outcome.baseline_rss_bytes / MB:,.1f} MB"
                + ("" if outcome.verified else "; REMOTE MISMATCH"),
            )
        )


def _run_recovery(
    emulator: BenchEmulator, workdir: Path, settings: BenchSettings, report: Report, say: Progress
) -> None:
    outcome = run_recovery(emulator, workdir, rows=settings.recovery_rows, progress=say)
    report.details["recovery"] = outcome.to_dict()
    lease = outcome.lease_left_at_restart
    if lease and outcome.seconds_to_first_ack < lease:
        lease_text = f"the killed worker's lease ({lease:,.0f} s left) was taken over at once"
    elif lease:
        lease_text = f"the restart waited out the killed worker's lease ({lease:,.0f} s left)"
    else:
        lease_text = "no lease was left to wait for"
    report.figures.append(
        Figure(
            key="recovery.seconds_to_first_ack",
            name="restart after kill -9 to first acknowledged batch",
            value=outcome.seconds_to_first_ack,
            unit="s",
            conditions={
                "backlog_rows": outcome.rows,
                "command": "d1sync sync DB --emulator URL --database-id ID (a child process)",
                "kill": "SIGKILL 20 ms after the first run's first acknowledged batch (next request in flight)",
                "from": "spawn of the restarted process (interpreter start and imports included)",
                "to": "its first acknowledged batch (the oldest change rows leave the local change log)",
                "emulator_latency_ms": settings.latency_ms,
            },
            measured=outcome.to_dict(),
            summary=f"{outcome.rows:,}-row backlog, {outcome.acknowledged_before_kill:,} acknowledged before the "
            f"kill; {lease_text}; "
            + ("remote equals local after the drain" if outcome.verified else "REMOTE MISMATCH after the drain"),
        )
    )


def _run_fleet(workdir: Path, settings: BenchSettings, report: Report, say: Progress) -> None:
    from d1sync.bench.fleet_figures import run_fleet_bench  # its emulator and children only when asked for

    run_fleet_bench(workdir, settings, report, say)


def run_bench(
    settings: BenchSettings,
    *,
    workdir: str | Path | None = None,
    progress: Progress | None = None,
) -> Report:
    """Run the selected benchmarks and return the report (figures, details, machine, errors).

    A benchmark that fails is recorded in ``report.errors`` and the others still run.
    """
    say = progress or (lambda _: None)
    report = Report(command=settings.command, settings=dataclasses.asdict(settings))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="d1sync-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        with BenchEmulator(root / "emulator", latency=settings.latency_ms / 1000, own_process=True) as emulator:
            steps: dict[str, Callable[[], None]] = {
                "drain": lambda: _run_drain(emulator, root, settings, report, say),
                "capture": lambda: _run_capture(root, settings, report, say),
                "latency": lambda: _run_latency(emulator, root, settings, report, say),
                "idle": lambda: _run_idle(emulator, root, settings, report, say),
                "memory": lambda: _run_memory(emulator, root, settings, report, say),
                "recovery": lambda: _run_recovery(emulator, root, settings, report, say),
                "tasks": lambda: run_task_bench(emulator, root, settings, report, say),
                "budget": lambda: run_budget_bench(root, settings, report, say),
                "fleet": lambda: _run_fleet(root, settings, report, say),
            }
            for name in settings.benchmarks:
                try:
                    steps[name]()
                except (D1SyncError, OSError, RuntimeError) as exc:
                    report.errors[name] = f"{type(exc).__name__}: {exc}"
                    say(f"{name}: failed: {exc}")
    report.seconds = time.perf_counter() - started
    return report
