"""``d1sync run`` (the daemon) and ``d1sync sync`` (drain once): the sync worker from the shell."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from d1sync.outbox import DrainReport, Limits, SyncWorker, drain
from d1sync.outbox.metrics import MetricsServer, metrics_text

from ._common import EXIT_USAGE, Command, configure_logging, console, err_console, fail
from ._target import open_target, target_options

__all__ = ["run", "sync"]

DB_ARG = click.argument("db", type=click.Path(dir_okay=False, exists=True))


def _limits(max_request_bytes: int, max_statements: int) -> Limits:
    try:
        return Limits(max_request_bytes=max_request_bytes, max_statements=max_statements)
    except ValueError as exc:
        fail(str(exc), "see `d1sync sync --help` for the allowed ranges", exit_code=EXIT_USAGE)


def limit_options(func: Any) -> Any:
    options = [
        click.option(
            "--max-statements", default=Limits().max_statements, show_default=True, help="Statements per request."
        ),
        click.option(
            "--max-request-bytes",
            default=Limits().max_request_bytes,
            show_default=True,
            help="Byte budget per request.",
        ),
    ]
    for option in options:
        func = option(func)
    return func


@click.command(cls=Command)
@DB_ARG
@target_options
@limit_options
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
@click.option("--flush-timeout", default=10.0, show_default=True, help="Seconds for a last drain on shutdown.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Log line format."
)
def run(
    db: str,
    max_request_bytes: int,
    max_statements: int,
    metrics_port: int | None,
    flush_timeout: float,
    log_format: str,
    **target: Any,
) -> None:
    """Run the sync daemon for DB in the foreground.

    SIGINT/SIGTERM stop it gracefully after a last drain. The target is real D1 (from the environment)
    unless --emulator or --local is given.
    """
    if log_format == "json":
        configure_logging(logging.getLevelName(logging.getLogger("d1sync").level), "json")
    remote = open_target(target, default="remote")
    log = logging.getLogger("d1sync.run")
    worker = SyncWorker(db, remote, limits=_limits(max_request_bytes, max_statements))
    server = MetricsServer(lambda: metrics_text(db, worker.counters), port=metrics_port) if metrics_port else None

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s: stopping after a last drain (up to %.0fs)", signal.Signals(signum).name, flush_timeout)
        worker.stop(flush_timeout, wait=False)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("syncing %s to %r (pending: %d)", db, remote, worker.pending())
    try:
        worker.run()
        pending = worker.pending()
    finally:
        if server is not None:
            server.close()
        worker.close()
        remote.close()
    log.info(
        "stopped; %d row(s) sent in %d request(s), %d pending", worker.counters.rows, worker.counters.requests, pending
    )


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]syncing"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} changes"),
        TextColumn("{task.fields[rate]:,.0f} rows/s"),
        TextColumn("{task.fields[requests]} requests"),
        TextColumn("{task.fields[retries]} retries"),
        TimeElapsedColumn(),
        console=err_console,
    )


@click.command(cls=Command)
@DB_ARG
@target_options
@limit_options
@click.option("--timeout", "give_up", type=float, help="Give up after this many seconds (exit 1 if not drained).")
def sync(db: str, max_request_bytes: int, max_statements: int, give_up: float | None, **target: Any) -> None:
    """Drain DB's outbox until it is empty, with a progress bar, then exit.

    Exit codes: 0 drained; 1 stopped early (paused by an auth or schema error, or --timeout); 2 bad usage.
    """
    remote = open_target(target, default="remote")
    try:
        with SyncWorker(db, remote, limits=_limits(max_request_bytes, max_statements)) as worker:
            total = worker.pending()
            started = time.monotonic()
            with _progress_bar() as progress:
                task = progress.add_task("sync", total=max(total, 1), rate=0.0, requests=0, retries=0)

                def update(report: DrainReport) -> None:
                    elapsed = max(time.monotonic() - started, 1e-6)
                    done = total - worker.pending()
                    progress.update(task, completed=done, rate=report.rows / elapsed, requests=report.requests)
                    progress.update(task, retries=report.retries)

                deadline = None if give_up is None else started + give_up
                report = drain(worker, deadline=deadline, on_progress=update)
    finally:
        remote.close()
    console.print(
        f"sent {report.rows:,} row(s) in {report.requests} request(s), {report.seconds:.1f}s "
        f"({report.rows / max(report.seconds, 1e-6):,.0f} rows/s); dead letters this run: {report.dead}"
    )
    if report.state == "paused":
        fail(f"sync paused: {report.error}", "fix the cause, then run `d1sync sync` again")
    if report.pending:
        fail(f"{report.pending:,} change(s) still pending", "run `d1sync sync` again or check `d1sync status`")
