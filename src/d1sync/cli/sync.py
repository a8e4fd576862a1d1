"""``d1sync run`` (the daemon) and ``d1sync sync`` (drain once): the sync worker from the shell.

Both are run by a person (or their service manager), so both re-check at once whatever paused the outbox:
a fix made since (a corrected token, a created table) takes effect on the first pass.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from d1sync.database import Database
from d1sync.errors import D1Error, UnreachableError
from d1sync.sync import DrainReport, Limits, SyncConfig, SyncWorker, drain
from d1sync.sync.config import DEFAULT_IMPORT_THRESHOLD, Via
from d1sync.sync.run.drain import with_paused_tables
from d1sync.sync.store.lease import describe_holder, live_holder

if TYPE_CHECKING:
    from d1sync.sync.metrics import MetricsServer

from ._common import (
    DB_ARG,
    EXIT_DEAD_LETTERS,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    CLIError,
    Command,
    configure_logging,
    console,
    err_console,
    fail,
    hint_for,
    need_outbox,
    print_json,
    serve_on,
    shown,
)
from ._target import open_target, target_options

__all__ = ["run", "sync"]
log = logging.getLogger("d1sync.run")


def _limits(max_request_bytes: int, max_statements: int) -> Limits:
    try:
        return Limits(max_request_bytes=max_request_bytes, max_statements=max_statements)
    except ValueError as exc:
        fail(str(exc), "see `d1sync sync --help` for the allowed ranges", exit_code=EXIT_USAGE)


def direction_options(func: Any) -> Any:
    """``--push-only`` / ``--pull-only`` (two-way tables go both ways by default)."""
    func = click.option("--pull-only", is_flag=True, help="Only pull two-way tables; local changes wait.")(func)
    return click.option("--push-only", is_flag=True, help="Only send local changes; pull nothing.")(func)


def via_option(func: Any) -> Any:
    """``--via auto|import|batch``: how a backlog travels (:attr:`SyncConfig.via`)."""
    return click.option(
        "--via",
        type=click.Choice(["auto", "import", "batch"]),
        default="auto",
        show_default=True,
        help=f"How a backlog travels: through D1's import (import; auto from {DEFAULT_IMPORT_THRESHOLD:,} "
        "distinct pending rows), or in requests of rows (batch).",
    )(func)


def schema_option(func: Any) -> Any:
    """``--manage-schema`` / ``--no-manage-schema`` for every synced table (default: each table's choice)."""
    return click.option(
        "--manage-schema/--no-manage-schema",
        default=None,
        help="Make D1's tables follow the local schema (create, ALTER, rebuild), or never touch it (pause with "
        "the fix instead), for every table. Default: each table's `track` choice, else managed unless the "
        "remote has a migrations ledger (d1_migrations, or wrangler's under another migrations_table).",
    )(func)


def _config(
    max_request_bytes: int, max_statements: int, via: str, manage_schema: bool | None, directions: dict[str, Any]
) -> SyncConfig:
    """The worker's configuration from the options ``run`` and ``sync`` share."""
    limits = _limits(max_request_bytes, max_statements)
    return SyncConfig(limits=limits, via=cast(Via, via), manage_schema=manage_schema, **directions)


def _directions(push_only: bool, pull_only: bool) -> dict[str, Any]:
    if push_only and pull_only:
        fail("--push-only and --pull-only exclude each other", "give at most one of them", exit_code=EXIT_USAGE)
    if pull_only:
        return {"push": False, "pull": True}
    return {"pull": False} if push_only else {}


def limit_options(func: Any) -> Any:
    options = [
        click.option(
            "--max-statements",
            default=Limits().max_statements,
            show_default=True,
            help="Statements per request at most (a ceiling: the request size adapts under it).",
        ),
        click.option(
            "--max-request-bytes",
            default=Limits().max_request_bytes,
            show_default=True,
            help=(
                "Bytes per request body at most: a ceiling. Requests grow while D1 answers fast and shrink "
                "near 5 s of execution, on a timeout or a too-big refusal; the learned size is remembered."
            ),
        ),
    ]
    for option in options:
        func = option(func)
    return func


def _metrics(db: str, worker: SyncWorker, port: int | None) -> MetricsServer | None:
    if port is None:
        return None
    from d1sync.sync.metrics import MetricsServer, worker_registry  # prometheus_client: only for --metrics-port

    return serve_on(port, lambda free: MetricsServer(worker_registry(db, worker.counters), port=free))


class _Shutdown:
    """SIGINT/SIGTERM: the first stops the loop after a last drain, honouring ``flush_timeout`` even if a
    request hangs (the process exits when the deadline passes); a second one exits at once. Changes not
    sent stay in the outbox either way."""

    def __init__(self, worker: SyncWorker, flush_timeout: float) -> None:
        self.worker = worker
        self.flush_timeout = flush_timeout
        self.signalled: int | None = None

    def exit_code(self, pending: int) -> int:
        """How ``run`` ends: 0 when the last drain sent everything; with changes left, 130 after Ctrl-C (as a
        shell expects of an interrupted command) and 1 after SIGTERM (a service manager's stop)."""
        if not pending:
            return 0
        return EXIT_INTERRUPTED if self.signalled == signal.SIGINT else EXIT_FAILURE

    def __call__(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signalled is not None:
            log.warning("received %s again: exiting now; unsent changes stay in the outbox", name)
            os._exit(EXIT_INTERRUPTED)
        self.signalled = signum
        log.info("received %s: stopping after a last drain (up to %gs; again to exit now)", name, self.flush_timeout)
        self.worker.stop(self.flush_timeout, wait=False)
        watchdog = threading.Timer(self.flush_timeout + 1.0, self._deadline)
        watchdog.daemon = True
        watchdog.start()

    def _deadline(self) -> None:
        log.warning("the flush deadline passed: exiting now; unsent changes stay in the outbox")
        os._exit(self.exit_code(pending=1))  # the flush did not finish: something is left


@click.command(cls=Command)
@DB_ARG
@target_options
@limit_options
@direction_options
@via_option
@schema_option
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT (0: any free port).",
)
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
    push_only: bool,
    pull_only: bool,
    via: str,
    manage_schema: bool | None,
    **target: Any,
) -> None:
    """Run the sync daemon for DB in the foreground (both ways for two-way tables).

    SIGINT/SIGTERM stop it after a last drain of at most --flush-timeout seconds; a second signal exits at
    once. The target is real D1 (from the environment) unless --emulator or --local is given. With -v it
    logs every acknowledged request (rows, bytes, ms) and every retry. Tables made two-way with `d1sync
    replicate` are also pulled, about once a second.
    """
    if log_format == "json":
        configure_logging(logging.getLevelName(logging.getLogger("d1sync").level), "json")
    directions = _directions(push_only, pull_only)
    need_outbox(db)
    remote = open_target(target, default="remote")
    try:
        worker = SyncWorker(db, remote, _config(max_request_bytes, max_statements, via, manage_schema, directions))
    except BaseException:
        remote.close()  # DB could not be opened: nothing else holds the target
        raise
    server = None
    try:
        shutdown = _Shutdown(worker, flush_timeout)
        signal.signal(signal.SIGINT, shutdown)  # before the metrics port answers: a stop from then is graceful
        signal.signal(signal.SIGTERM, shutdown)
        worker.resume()  # started by a person: what paused the outbox is checked again now
        server = _metrics(db, worker, metrics_port)
        metrics = f", metrics at {server.url}" if server else ""
        log.info("syncing %s to %r (pending: %d%s)", db, remote, worker.pending(), metrics)
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
    code = shutdown.exit_code(pending)
    if code:
        raise click.exceptions.Exit(code)


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


def _summary(report: DrainReport) -> str:
    pulled = f"; pulled {report.pulled:,} row(s)" if report.pulled else ""
    return (
        f"sent {report.rows:,} row(s) in {report.requests} request(s), {report.seconds:.1f}s "
        f"({report.rows / max(report.seconds, 1e-6):,.0f} rows/s); dead letters this run: {report.dead}{pulled}"
    )


def _drain(worker: SyncWorker, give_up: float | None, report: DrainReport) -> DrainReport:
    """Drain with a progress bar on stderr; ``report`` is kept current so an interrupt can say what was sent."""
    total = worker.pending()
    started = time.monotonic()
    deadline = None if give_up is None else started + give_up

    def keep(running: DrainReport) -> None:
        for name in ("rows", "requests", "dead", "retries"):
            setattr(report, name, getattr(running, name))
        report.seconds = time.monotonic() - started

    if not total:
        return drain(worker, deadline=deadline, on_progress=keep)  # a re-send or a purge may still be due
    with _progress_bar() as progress:
        task = progress.add_task("sync", total=total, rate=0.0, requests=0, retries=0)

        def update(running: DrainReport) -> None:
            keep(running)
            done = max(0, total - worker.pending())
            progress.update(task, completed=done, rate=running.rows / max(report.seconds, 1e-6))
            progress.update(task, requests=running.requests, retries=running.retries)

        return drain(worker, deadline=deadline, on_progress=update)


def _wait_for_holder(worker: SyncWorker, db: str, give_up: float | None, as_json: bool, *, held: bool = False) -> None:
    """``sync --wait`` while another worker holds the lease: wait until it has sent what was committed.

    ``held``: the lease was found held during the drain (it may be free again by now: waiting still works,
    as :meth:`SyncWorker.wait_synced` sends itself whenever the lease is free).
    """
    lease = live_holder(worker.conn, worker.owner, time.time())
    if lease is None and not held:
        return
    who = describe_holder(lease) if lease is not None else "it has just let go"
    err_console.print(f"waiting for the worker holding the lease ({who}) to send the changes")
    if not worker.wait_synced(give_up):
        fail(f"{worker.pending():,} change(s) still pending after {give_up:g}s", f"see `d1sync status {shown(db)}`")
    if as_json:
        print_json({"state": "synced by the lease holder", "pending": worker.pending()})
    else:
        console.print("every change committed before this command was sent by the worker holding the lease")
    raise click.exceptions.Exit(0)


@click.command(cls=Command)
@DB_ARG
@target_options
@limit_options
@direction_options
@via_option
@schema_option
@click.option("--timeout", "give_up", type=float, help="Give up after this many seconds (exit 1 if not drained).")
@click.option("--wait", is_flag=True, help="If `d1sync run` holds the lease, wait for it to send (else exit 75).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (progress stays on stderr).")
def sync(
    db: str,
    max_request_bytes: int,
    max_statements: int,
    give_up: float | None,
    wait: bool,
    as_json: bool,
    push_only: bool,
    pull_only: bool,
    via: str,
    manage_schema: bool | None,
    **target: Any,
) -> None:
    """Drain DB's outbox until it is empty, then pull two-way tables until caught up, then exit.

    Exit codes: 0 drained, and no table is paused; 1 stopped early (--timeout) or something waits for a fix
    (each paused table is named, even one with nothing pending); 2 bad usage; 3 drained, but D1 refused some
    rows for good (`d1sync dead DB`); 75 another worker holds the lease (pass --wait to wait for it);
    130 interrupted.
    """
    directions = _directions(push_only, pull_only)
    need_outbox(db)
    remote = open_target(target, default="remote")
    report = DrainReport()
    try:
        config = _config(max_request_bytes, max_statements, via, manage_schema, directions)
        with SyncWorker(db, remote, config) as worker:
            worker.resume()  # asked by a person: what paused the outbox is checked again now
            lease = live_holder(worker.conn, worker.owner, time.time())
            if lease is not None and not wait:
                fail(
                    f"another worker holds the lease of {db}: {describe_holder(lease)}; it is sending the changes",
                    f"`d1sync sync {shown(db)} --wait` waits for it; `d1sync status {shown(db)}` shows its progress",
                    EXIT_TEMPFAIL,
                )
            if wait:
                _wait_for_holder(worker, db, give_up, as_json)
            report = _drain(worker, give_up if give_up is not None else NEVER_ANSWERED, report)
            if report.pending and not report.requests and report.state not in ("paused", "locked"):
                _stop_if_unreachable(remote)  # a target that never answered: say so, do not retry for ever
            if give_up is None and report.pending and report.state not in ("paused", "locked"):
                report = _more(report, _drain(worker, None, DrainReport()))  # it answers: carry on as ever
            if wait and report.state == "locked" and report.pending:
                _wait_for_holder(worker, db, give_up, as_json, held=True)  # another worker took the lease meanwhile
            st = worker.status()  # the worker paused (not only tables): its last error's kind picks the hint
            kind = str(st.last_error.get("kind")) if st.paused and st.last_error else None
            report = with_paused_tables(report, st)  # the drain did; again after a wait for another worker
    except KeyboardInterrupt:
        err_console.print(_summary(report))
        raise CLIError("interrupted; unsent changes stay in the outbox", exit_code=EXIT_INTERRUPTED) from None
    finally:
        remote.close()
    _finish(db, report, as_json, kind, pull_only=pull_only)


NEVER_ANSWERED = 60.0
"""Seconds ``sync`` tries a target that has not answered at all before it checks whether anything listens."""


def _stop_if_unreachable(remote: Database) -> None:
    """Exit 1 with the cause when nothing answers at the target (it never did during the drain)."""
    try:
        remote.prepare("SELECT 1").raw()
    except UnreachableError as exc:
        fail(exc.message, hint_for("UnreachableError"))
    except D1Error:
        return  # it answers, with an error the drain reports on its own


def _more(first: DrainReport, then: DrainReport) -> DrainReport:
    """Two drains as one: the counts added, the state and what is left from the second."""
    for name in ("rows", "requests", "dead", "retries", "seconds", "pulled"):
        setattr(then, name, getattr(first, name) + getattr(then, name))
    return then


def _finish(db: str, report: DrainReport, as_json: bool, kind: str | None, *, pull_only: bool = False) -> None:
    where = shown(db)
    if as_json:
        print_json({**dataclasses.asdict(report), "drained": report.drained})
    elif report.rows or report.dead or report.pending or report.pulled:
        console.print(_summary(report))
    elif report.state not in ("paused", "locked"):  # a pause is not "nothing to sync": it says why below
        console.print("nothing to sync")
    if report.state == "locked" and report.pending:
        fail("another worker took the lease and is sending the changes", f"`d1sync sync {where} --wait`", EXIT_TEMPFAIL)
    if report.state == "paused":
        fix = hint_for(kind) if kind else None
        if fix is None:
            fix = f"`d1sync status {where}` shows each paused table and its fix"
        fail(f"sync paused: {report.error}", f"{fix}; then run `d1sync sync {where}` again")
    if report.pending and not pull_only:  # --pull-only leaves local changes for a later push on purpose
        fail(
            f"{report.pending:,} change(s) still pending",
            f"run `d1sync sync {where}` again or see `d1sync status {where}`",
        )
    if report.dead:
        fail(f"D1 refused {report.dead} row(s) for good", f"`d1sync dead {where}` lists them", EXIT_DEAD_LETTERS)
