"""``d1sync fleet run / sync / status / migrate``: a folder of tenant files, each synced to its own D1
database, by one process under one account budget (docs/fleet.md).

The account is the usual target (``--remote``, the default, or ``--emulator URL``); the database ids come
from the fleet: each tenant's is recorded in its file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from d1sync.client import RateLimiter
from d1sync.errors import ConfigError
from d1sync.fleet import Fleet, FleetStatus, MigrationRow, Placement, connector, migrate_fleet, read_fleet_status
from d1sync.fleet.engine import Connect
from d1sync.fleet.naming import DEFAULT_TEMPLATE, check_template
from d1sync.fleet.provision import place_of
from d1sync.fleet.tenants import DEFAULT_PATTERN, discover
from d1sync.migrations import MigrationSource
from d1sync.target import Target, resolve_target

from ._common import (
    EXIT_DEAD_LETTERS,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CLIError,
    Group,
    console,
    err_console,
    fail,
    parse_rate_limit,
    print_json,
    remember_target,
    serve_on,
    shown,
)

__all__ = ["account_options", "fleet", "fleet_from", "need_folder", "tenant_options"]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("d1sync.fleet")

DIR_ARG = click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))


def need_folder(folder: str) -> Path:
    """The tenant folder, or exit 1 with a hint when there is none."""
    path = Path(folder)
    if not path.is_dir():
        fail(f"no such folder: {folder}", "check the path: DIR is the folder that holds the tenant files")
    return path


def account_options(func: F) -> F:
    """``--emulator URL`` / ``--remote``: the account whose databases the tenants get (default: remote)."""
    func = click.option("--remote", is_flag=True, help="Real D1 (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID).")(func)
    return click.option("--emulator", metavar="URL", help="A d1sync emulator (token: $D1SYNC_EMULATOR_TOKEN).")(func)


def tenant_options(func: F) -> F:
    """Which files are tenants and which tables they sync."""
    func = click.option(
        "--tables", metavar="A,B", help="Sync only these tables of each tenant (default: every user table)."
    )(func)
    return click.option(
        "--pattern", default=DEFAULT_PATTERN, show_default=True, help="Which file names in DIR are tenants."
    )(func)


def budget_options(func: F) -> F:
    """The database name, placement, and the account budget."""
    options = [
        click.option(
            "--concurrency", type=click.IntRange(1, 64), default=4, show_default=True, help="Requests in flight."
        ),
        click.option(
            "--rate-limit",
            default="1200/300",
            show_default=True,
            metavar="N/SECONDS",
            help="The account budget this process spends (Cloudflare's: 1200/300, for all your tokens together).",
        ),
        click.option("--jurisdiction", type=click.Choice(["eu", "fedramp"]), help="Where new databases keep data."),
        click.option("--location-hint", metavar="HINT", help="Where new databases live (weur, enam, apac, ...)."),
        click.option(
            "--name",
            "name_template",
            default=DEFAULT_TEMPLATE,
            show_default=True,
            help="Database name template: {stem}, {name}, {folder}; made a valid D1 name (docs/fleet.md).",
        ),
    ]
    for option in options:
        func = option(func)
    return func


def account_target(emulator: str | None, remote: bool) -> Target:
    target = resolve_target(emulator=emulator, remote=remote, default="remote")
    remember_target(target)
    return target


@dataclass(frozen=True)
class _Settings:
    """What the options say: the account's clients on one shared limiter, and the tenants' settings."""

    connect: Connect
    limiter: RateLimiter
    tenants: dict[str, Any]


def _settings(options: dict[str, Any]) -> _Settings:
    try:
        check_template(options["name_template"])
    except ConfigError as exc:
        fail(str(exc), "use {stem}, {name} or {folder}, e.g. --name 'app-{stem}'", EXIT_USAGE)
    limiter = RateLimiter(*(parse_rate_limit(options["rate_limit"]) or (1200, 300.0)))
    target = account_target(options["emulator"], options["remote"])
    tables = [t.strip() for t in options["tables"].split(",") if t.strip()] if options["tables"] else None
    tenants = {
        "pattern": options["pattern"],
        "tables": tables,
        "name": options["name_template"],
        "placement": Placement(options["location_hint"], options["jurisdiction"]),
        "concurrency": options["concurrency"],
    }
    return _Settings(connector(target, limiter), limiter, tenants)


def fleet_from(folder: Path, options: dict[str, Any]) -> Fleet:
    """The Fleet the options describe (the account, the budget, the tenants)."""
    settings = _settings(options)
    return Fleet(folder, settings.connect, rate_limiter=settings.limiter, **settings.tenants)


@click.group(cls=Group)
def fleet() -> None:
    """Sync a folder of tenant files, each to its own D1 database, under one account budget.

    \b
    A tenant is a SQLite file in DIR matching --pattern. Its database is named from --name, created or
    adopted, and recorded in the file (a renamed file keeps it). docs/fleet.md explains the budget,
    fairness and migrations.
    """


@fleet.command("run")
@DIR_ARG
@account_options
@tenant_options
@budget_options
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics (Prometheus), /status.json and a status page / on 127.0.0.1:PORT (0: a free port).",
)
def run_command(folder: str, metrics_port: int | None, **options: Any) -> None:
    """Run the fleet daemon for DIR in the foreground; SIGINT/SIGTERM stop it after the passes in flight (a
    second one exits at once).

    New files are picked up within seconds; a vanished one is dropped (its database is kept). It applies
    no migration by itself (`fleet migrate` does).
    """
    path = need_folder(folder)
    with fleet_from(path, options) as running, contextlib.ExitStack() as serving:
        signalled = threading.Event()

        def stop(signum: int, frame: Any) -> None:
            if signalled.is_set():  # a second signal: now; what was not sent stays in each outbox
                os._exit(EXIT_INTERRUPTED)
            signalled.set()
            log.info("stopping after the passes in flight (again to exit now)")
            running.stop(timeout=0)  # run() returns after the round

        signal.signal(signal.SIGINT, stop)  # before the metrics port answers: a stop from then is graceful
        signal.signal(signal.SIGTERM, stop)
        if metrics_port is not None:
            from d1sync.fleet.web import FleetServer  # prometheus_client: only for --metrics-port

            server = serving.enter_context(serve_on(metrics_port, lambda p: FleetServer(running.status, port=p)))
            log.info("fleet status at %s (metrics: %smetrics)", server.url, server.url)
        limiter = running.rate_limiter
        assert limiter is not None
        log.info("fleet of %s: syncing (budget %d requests/%gs)", path, limiter.rate, limiter.per)
        running.run()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]fleet"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} tenants drained"),
        TextColumn("{task.fields[requests]} requests"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _drain(running: Fleet, timeout: float | None) -> FleetStatus:
    if not err_console.is_terminal or err_console.quiet:
        return running.drain(timeout)
    running.sweep()
    requests = 0
    with _progress() as progress:
        task = progress.add_task("fleet", total=len(running.engines), requests=0)

        def update(engine: Any, result: Any) -> None:
            nonlocal requests
            requests += result.requests
            waiting = running.schedule.waiting
            progress.update(task, completed=max(0, len(running.engines) - waiting), requests=requests)

        running.on_pass = update
        return running.drain(timeout)


def _not_drained(status: FleetStatus) -> list[str]:
    return [r.file for r in status.tenants if r.pending or r.paused or r.state == "failed"]  # a pause, even idle


@fleet.command("sync")
@DIR_ARG
@account_options
@tenant_options
@budget_options
@click.option("--timeout", "give_up", type=float, help="Give up after this many seconds (exit 1 if not drained).")
@click.option("--json", "as_json", is_flag=True, help="Print the fleet's status as JSON (as `fleet status --json`).")
def sync_command(folder: str, give_up: float | None, as_json: bool, **options: Any) -> None:
    """Drain every tenant of DIR once (binding new ones to their databases), then exit.

    Exit codes: 0 every tenant drained; 1 some tenant not drained (paused, failed, --timeout), named;
    2 bad usage; 3 drained, but D1 refused some rows for good; 130 interrupted.
    """
    path = need_folder(folder)
    try:
        with fleet_from(path, options) as running:
            status = _drain(running, give_up)
    except KeyboardInterrupt:
        raise CLIError("interrupted; unsent changes stay in each tenant's outbox", exit_code=EXIT_INTERRUPTED) from None
    _finish(status, as_json, folder)


def _finish(status: FleetStatus, as_json: bool, folder: str) -> None:
    stuck = _not_drained(status)
    status.totals["not_drained"] = stuck
    if as_json:
        print_json(status.to_dict())
    else:
        _render(status, warn=False)  # the fleet warned as it swept
    if stuck:
        rows = {r.file: r for r in status.tenants}
        why = "; ".join(f"{f}: {rows[f].last_error or rows[f].paused or f'{rows[f].pending} pending'}" for f in stuck)
        fail(f"{len(stuck)} tenant(s) not drained: {why}", f"`d1sync fleet status {shown(folder)}` shows each one")
    if status.totals["dead"]:
        dead = [r.file for r in status.tenants if r.dead]
        fail(
            f"D1 refused rows of {', '.join(dead)} for good ({status.totals['dead']} dead letter(s))",
            "; ".join(f"`d1sync dead {shown(os.path.join(folder, f))} list`" for f in dead) + " lists them",
            EXIT_DEAD_LETTERS,
        )


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size = int(size / 1000)
    return str(size)


def _render(status: FleetStatus, *, warn: bool = True) -> None:
    table = Table("file", "database", "state", "pending", "dead", "oldest", "size", "paused / error")
    for row in status.tenants:
        oldest = "" if row.oldest_pending_seconds is None else f"{row.oldest_pending_seconds:.0f}s"
        trouble = row.paused or row.last_error or "; ".join(f"{t}: {w}" for t, w in row.warnings.items())
        table.add_row(
            escape(row.file),
            escape(row.database_name or ""),
            row.state,
            f"{row.pending:,}",
            f"{row.dead:,}",
            oldest,
            _size(row.size_bytes),
            escape(trouble or ""),
        )
    totals = status.totals
    if status.tenants:
        console.print(table)
    console.print(
        f"{totals['tenants']} tenant(s): {totals['pending']:,} pending, {totals['dead']:,} dead letter(s), "
        f"{totals['paused']} paused, {totals['failed']} failed, {totals['missing']} missing"
    )
    for name in totals.get("not_tenants", []) if warn else ():
        err_console.print(f"[yellow]warning:[/yellow] {escape(name)} is not a SQLite database: not a tenant")


@fleet.command("status")
@DIR_ARG
@account_options
@click.option("--pattern", default=DEFAULT_PATTERN, show_default=True, help="Which file names in DIR are tenants.")
@click.option("--json", "as_json", is_flag=True, help='Print {"tenants": [...], "totals": {...}} as JSON.')
def status_command(folder: str, emulator: str | None, remote: bool, pattern: str, as_json: bool) -> None:
    """Show each tenant of DIR (its database, pending changes, dead letters, pause, size), then totals.

    Read from the files alone: no daemon needed, no request sent, nothing written. With --emulator or
    --remote, each file's binding to that account is shown (default: its most recent one).
    """
    path = need_folder(folder)
    place = None
    if emulator or remote:
        with connector(account_target(emulator, remote), None)(None) as account:
            place = place_of(account)
    status = read_fleet_status(path, pattern, place)
    if as_json:
        print_json(status.to_dict())
    else:
        _render(status)


def _migration_progress(total: int) -> tuple[Progress | None, Callable[[Any], None] | None]:
    if not err_console.is_terminal or err_console.quiet:
        return None, None
    progress = Progress(
        TextColumn("[bold]migrating"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} tenants"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = progress.add_task("migrate", total=total)
    return progress, lambda row: progress.advance(task)


@fleet.command("migrate")
@DIR_ARG
@account_options
@tenant_options
@budget_options
@click.option(
    "--migrations-dir",
    type=click.Path(file_okay=False),
    default="migrations",
    show_default=True,
    help="The wrangler-format migrations folder (NNNN_name.sql).",
)
@click.option(
    "--canary", type=click.IntRange(0), default=0, help="Migrate the first N tenants first; stop if one fails."
)
@click.option("--dry-run", is_flag=True, help="List what would run on each tenant; write nothing.")
@click.option("--stop-on-error", is_flag=True, help="Halt at the first failed tenant (default: the rest go on).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per tenant.")
def migrate_command(
    folder: str, migrations_dir: str, canary: int, dry_run: bool, stop_on_error: bool, as_json: bool, **options: Any
) -> None:
    """Apply the pending migrations to every tenant of DIR: its D1 database, then its file.

    \b
    Per tenant: take its sync lease, drain its outbox, apply to D1, apply locally, track new tables; each
    side keeps its d1_migrations ledger, so a re-run resumes where a crash or a failure stopped.
    Exit codes: 0 every tenant migrated or already current (and any --dry-run); 1 some tenant failed, or
    the canary stopped the run (each failure named); 2 bad usage.
    """
    path = need_folder(folder)
    source = Path(migrations_dir)
    if not source.is_dir():
        fail(f"no such migrations folder: {migrations_dir}", "pass --migrations-dir (default ./migrations)", EXIT_USAGE)
    files = MigrationSource(Path.cwd(), migrations_dir=source.resolve(), modules_glob=None).discover()
    settings = _settings(options)
    progress, advance = _migration_progress(len(discover(path, options["pattern"]).tenants))
    with progress or contextlib.nullcontext():
        rows = migrate_fleet(
            path,
            settings.connect,
            files,
            canary=canary,
            dry_run=dry_run,
            stop_on_error=stop_on_error,
            on_tenant=advance,
            **settings.tenants,
        )
    if as_json:
        print_json([row.to_dict() for row in rows])
    else:
        _render_migrations(rows, dry_run)
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        canary_failed = any(r.status == "failed" for r in rows[:canary])
        stopped = " (the canary stopped the run)" if canary_failed else ""
        names = "; ".join(f"{r.file}: {r.error}" for r in failed)
        fail(
            f"{len(failed)} tenant(s) failed{stopped}: {names}",
            f"fix them, then run `d1sync fleet migrate {shown(folder)}` again: it resumes",
        )


def _render_migrations(rows: list[MigrationRow], dry_run: bool) -> None:
    table = Table("file", "database", "status", "applied" if not dry_run else "would apply", "error")
    for row in rows:
        names = row.pending if dry_run else row.applied
        table.add_row(
            escape(row.file), row.database_id or "", row.status, escape(", ".join(names)), escape(row.error or "")
        )
    if rows:
        console.print(table)
    counts = {
        status: sum(1 for r in rows if r.status == status) for status in ("migrated", "current", "failed", "skipped")
    }
    what = "would migrate" if dry_run else "migrated"
    console.print(
        f"{what} {counts['migrated'] if not dry_run else counts['skipped']}, already current {counts['current']}, "
        f"failed {counts['failed']}" + ("" if dry_run else f", skipped {counts['skipped']}")
    )
