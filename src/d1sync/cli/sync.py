"""``d1sync track/untrack/run/sync/status/dead``: the outbox and the sync worker from the shell."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from d1sync.database import Database
from d1sync.local import connect
from d1sync.outbox import Limits, Outbox, SyncResult, SyncWorker
from d1sync.outbox.status import prometheus_text, read_status

from ._common import console, fail, handle_errors, print_json
from ._target import Target, target_options

__all__ = ["COMMANDS"]

DB_ARG = click.argument("db", type=click.Path(dir_okay=False, exists=True))


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def _sync_target(local: str | None, emulator: str | None, remote: bool, database_id: str | None) -> Target:
    chosen = [flag for flag, on in (("--local", local), ("--emulator", emulator), ("--remote", remote)) if on]
    if len(chosen) > 1:
        fail(f"choose one target (got {' and '.join(chosen)})", "use --remote (default), --emulator URL or --local")
    # With no flag the target is real D1, configured from the environment.
    return Target(local=local, emulator=emulator, remote=not (local or emulator), database_id=database_id)


def _when(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command()
@DB_ARG
@click.argument("tables", nargs=-1, required=True)
@click.option("--include", metavar="COLS", help="Sync only these comma-separated columns (the key always syncs).")
@click.option("--exclude", metavar="COLS", help="Sync every column except these (comma-separated).")
@click.option("--version-column", metavar="COL", help="Last-writer-wins: never overwrite a newer remote version.")
@click.option("--no-backfill", is_flag=True, help="Do not queue the rows already in the table.")
def track(
    db: str,
    tables: tuple[str, ...],
    include: str | None,
    exclude: str | None,
    version_column: str | None,
    no_backfill: bool,
) -> None:
    """Capture every write to TABLES of DB in the outbox (installs triggers)."""
    with handle_errors(), Outbox(db) as outbox:
        specs = outbox.track(
            *tables,
            include=_columns(include),
            exclude=_columns(exclude),
            version_column=version_column,
            backfill_existing=not no_backfill,
        )
        pending = outbox.status().pending_changes
    for spec in specs:
        console.print(f"tracking [bold]{spec.name}[/bold] key ({', '.join(spec.key)}), {len(spec.columns)} columns")
    console.print(f"{pending:,} change(s) pending")


@click.command()
@DB_ARG
@click.argument("tables", nargs=-1, required=True)
@click.option("--drop-pending", is_flag=True, help="Also discard their unsent changes (otherwise dead-lettered).")
def untrack(db: str, tables: tuple[str, ...], drop_pending: bool) -> None:
    """Stop capturing writes to TABLES of DB (removes triggers)."""
    with handle_errors(), Outbox(db) as outbox:
        outbox.untrack(*tables, drop_pending=drop_pending)
    console.print(f"untracked {', '.join(tables)}")


def _open_target(target: Target) -> Database:
    with handle_errors():
        return target.open()


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def _configure_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("d1sync")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _serve_metrics(db: str, worker: SyncWorker, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") not in ("", "/metrics"):
                self.send_error(404)
                return
            conn = connect(db)
            try:
                status = read_status(conn)
            finally:
                conn.close()
            c = worker.counters
            body = prometheus_text(
                status, {"rows_sent": c.rows, "requests": c.requests, "retries": c.retries, "dead_lettered": c.dead}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes are not worth a log line each

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="d1sync-metrics", daemon=True).start()
    return server


def _limits(max_request_bytes: int, max_statements: int) -> Limits:
    try:
        return Limits(max_request_bytes=max_request_bytes, max_statements=max_statements)
    except ValueError as exc:
        fail(str(exc), exit_code=2)


_limit_options = [
    click.option(
        "--max-request-bytes", default=Limits().max_request_bytes, show_default=True, help="Byte budget per request."
    ),
    click.option(
        "--max-statements", default=Limits().max_statements, show_default=True, help="Statements per request."
    ),
]


def limit_options(func: Any) -> Any:
    for option in reversed(_limit_options):
        func = option(func)
    return func


@click.command()
@DB_ARG
@target_options
@limit_options
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
@click.option("--flush-timeout", default=10.0, show_default=True, help="Seconds for a last drain on shutdown.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Log line format."
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def run(
    db: str,
    local: str | None,
    emulator: str | None,
    remote: bool,
    database_id: str | None,
    max_request_bytes: int,
    max_statements: int,
    metrics_port: int | None,
    flush_timeout: float,
    log_format: str,
    verbose: bool,
) -> None:
    """Run the sync daemon for DB in the foreground (SIGINT/SIGTERM stop it gracefully).

    The target is real D1 (from the environment) unless --emulator or --local is given.
    """
    _configure_logging(log_format, verbose)
    target = _open_target(_sync_target(local, emulator, remote, database_id))
    log = logging.getLogger("d1sync.run")
    with handle_errors():
        worker = SyncWorker(db, target, limits=_limits(max_request_bytes, max_statements))
    server = _serve_metrics(db, worker, metrics_port) if metrics_port else None

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s: stopping after a last drain (up to %.0fs)", signal.Signals(signum).name, flush_timeout)
        worker.stop(flush_timeout, wait=False)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("syncing %s to %r (pending: %d)", db, target, worker.pending())
    try:
        worker.run()
    finally:
        if server is not None:
            server.shutdown()
        worker.close()
        target.close()
    log.info(
        "stopped; %d row(s) sent in %d request(s), %d pending",
        worker.counters.rows,
        worker.counters.requests,
        _pending(db),
    )


def _pending(db: str) -> int:
    conn = connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM _d1sync_changes").fetchone()[0])
    finally:
        conn.close()


@click.command(name="sync")
@DB_ARG
@target_options
@limit_options
@click.option("--timeout", "give_up", type=float, help="Give up after this many seconds (exit 1 if not drained).")
def sync_command(
    db: str,
    local: str | None,
    emulator: str | None,
    remote: bool,
    database_id: str | None,
    max_request_bytes: int,
    max_statements: int,
    give_up: float | None,
) -> None:
    """Drain DB's outbox until it is empty, with a progress bar, then exit.

    Exit codes: 0 drained; 1 stopped early (paused by an auth or schema error, or --timeout); 2 bad usage.
    """
    target = _open_target(_sync_target(local, emulator, remote, database_id))
    with handle_errors():
        worker = SyncWorker(db, target, limits=_limits(max_request_bytes, max_statements))
    total = worker.pending()
    started = time.monotonic()
    retries = 0
    result = SyncResult("idle")
    columns = [
        TextColumn("[bold]syncing"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} changes"),
        TextColumn("{task.fields[rate]:,.0f} rows/s"),
        TextColumn("{task.fields[requests]} requests"),
        TextColumn("{task.fields[retries]} retries"),
        TimeElapsedColumn(),
    ]
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("sync", total=max(total, 1), rate=0.0, requests=0, retries=0)

            def update() -> None:
                elapsed = max(time.monotonic() - started, 1e-6)
                progress.update(
                    task,
                    completed=total - worker.pending(),
                    rate=worker.counters.rows / elapsed,
                    requests=worker.counters.requests,
                    retries=retries,
                )

            worker.on_progress = lambda _: update()
            while True:
                with handle_errors():
                    result = worker.sync_once()
                update()
                if result.state == "paused":
                    break
                if give_up is not None and time.monotonic() - started > give_up:
                    break
                if result.state in ("backoff", "locked"):
                    retries += result.state == "backoff"
                    time.sleep(min(result.retry_in or 0.5, 5.0))
                    continue
                if not result.more and worker.pending() == 0:
                    break
    finally:
        worker.release_lease()
        worker.close()
        target.close()
    elapsed = time.monotonic() - started
    rows = worker.counters.rows
    console.print(
        f"sent {rows:,} row(s) in {worker.counters.requests} request(s), {elapsed:.1f}s "
        f"({rows / max(elapsed, 1e-6):,.0f} rows/s); dead letters this run: {worker.counters.dead}"
    )
    if result.state == "paused":
        fail(f"sync paused: {result.error}", "fix the cause, then run `d1sync sync` again")
    if _pending(db):
        fail(f"{_pending(db):,} change(s) still pending", "run `d1sync sync` again or check `d1sync status`")


@click.command()
@DB_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(db: str, as_json: bool) -> None:
    """Show DB's outbox: pending changes, oldest pending age, dead letters, last success/error, back-off."""
    with handle_errors():
        conn = connect(db)
        try:
            st = read_status(conn)
        except sqlite3.OperationalError:
            fail(f"{db} has no d1sync outbox", f"track tables first: d1sync track {db} TABLE")
        finally:
            conn.close()
    if as_json:
        print_json(st.to_dict())
        return
    table = Table(show_header=False, box=None)
    table.add_row("tables", ", ".join(st.tables) or "none")
    table.add_row("pending changes", f"{st.pending_changes:,} ({st.pending_keys:,} rows)")
    age = st.oldest_pending_age
    table.add_row("oldest pending", "-" if age is None else f"{age:,.1f}s ago")
    table.add_row("dead letters", f"{st.dead_letters:,}")
    table.add_row("last success", _when(st.last_success))
    if st.last_error:
        table.add_row("last error", f"{_when(st.last_error.get('at'))}: {st.last_error.get('message')}")
    table.add_row("back-off", f"{st.backoff_remaining:.1f}s" if st.backoff_remaining else "none")
    table.add_row("paused", st.paused or "no")
    if st.rows_per_second is not None:
        table.add_row("last pass", f"{st.rows_per_second:,.0f} rows/s")
    if st.rate_budget:
        budget = st.rate_budget
        table.add_row(
            "rate budget", f"{budget['available']:.0f} of {budget['rate']:.0f} requests per {budget['per']:.0f}s"
        )
    table.add_row("worker", st.lease_owner or "none running")
    console.print(table)


@click.group(invoke_without_command=True)
@DB_ARG
@click.pass_context
def dead(ctx: click.Context, db: str) -> None:
    """Inspect, retry or drop DB's dead letters (changes D1 refused permanently); lists them by default.

    \b
    Examples:
      d1sync dead app.db                  # same as: d1sync dead app.db list
      d1sync dead app.db retry --id 3     # after fixing the cause
      d1sync dead app.db drop --yes
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(dead_list)


def _printable(value: str) -> str:
    """Text that held bytes which are not UTF-8 (kept exactly in the dead letter) shows them as ``\\xNN``."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _dead_db() -> str:
    parent = click.get_current_context().parent
    assert parent is not None  # these commands only run under `dead DB`
    return str(parent.params["db"])


@dead.command(name="list")
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def dead_list(limit: int = 50, as_json: bool = False) -> None:
    """List dead letters with their error."""
    with handle_errors(), Outbox(_dead_db()) as outbox:
        letters = outbox.dead_letters(limit)
    if as_json:
        print_json([{k: _printable(v) if isinstance(v, str) else v for k, v in vars(d).items()} for d in letters])
        return
    table = Table("id", "table", "key", "op", "error", "failed")
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.table,
            _printable(letter.key),
            letter.op,
            letter.error,
            _when(letter.last_failed_at / 1000),
        )
    console.print(table if letters else "no dead letters")


@dead.command(name="retry")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable); default all.")
def dead_retry(ids: tuple[int, ...]) -> None:
    """Put dead letters back in the outbox (after fixing the cause); the worker resends them."""
    with handle_errors(), Outbox(_dead_db()) as outbox:
        count = outbox.retry_dead(list(ids) or None)
    console.print(f"requeued {count} dead letter(s)")


@dead.command(name="drop")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable); default all.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_drop(ids: tuple[int, ...], yes: bool) -> None:
    """Delete dead letters for good."""
    db = _dead_db()
    if not yes:
        click.confirm(f"Drop {'these' if ids else 'ALL'} dead letters of {Path(db).name} for good?", abort=True)
    with handle_errors(), Outbox(db) as outbox:
        count = outbox.drop_dead(list(ids) or None)
    console.print(f"dropped {count} dead letter(s)")


COMMANDS = [track, untrack, run, sync_command, status, dead]
