"""``d1sync migrations create / list / apply``: wrangler-compatible migrations on a file, the emulator or D1.

Exit codes: 0 success (``list`` shows pending ones and still exits 0), 1 failure (a migration failed or was
refused, bad configuration, database error), 2 usage error, 3 ``list --check`` found pending or edited files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from d1sync.database import Database
from d1sync.errors import MigrationFailedError, UnsafeMigrationError
from d1sync.migrations import (
    DEFAULT_MODULES_GLOB,
    AppliedMigration,
    MigrationPlan,
    MigrationSource,
    MigrationStatus,
    Migrator,
)
from d1sync.target import Target, wrangler_entry
from d1sync.wrangler import DEFAULT_MIGRATIONS_DIR, DEFAULT_MIGRATIONS_TABLE

from ._common import CLIError, Group, console, err_console, fail, print_json
from ._target import target_from, target_options

__all__ = ["migrations"]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CHECK_FAILED = 3


def folder_options(func: F) -> F:
    """Options locating the migration files (the wrangler config and entry come with the target options)."""
    options = [
        click.option(
            "--modules-glob",
            default=DEFAULT_MODULES_GLOB,
            show_default=True,
            envvar="D1SYNC_MODULES_GLOB",
            help="Module migration files, relative to the project folder; the '*' folder names the module "
            "(recorded as module/NNNN_name.sql). Empty to disable.",
        ),
        click.option(
            "--migrations-dir",
            type=click.Path(file_okay=False),
            help="The plain (wrangler) migrations folder. Default: migrations_dir from the wrangler config, "
            "else ./migrations.",
        ),
    ]
    for option in options:
        func = option(func)
    return func


def wrangler_options(func: F) -> F:
    """``--database``, ``-c/--config`` and ``--env``, for the command that needs no target (``create``)."""
    options = [
        click.option("--env", "wrangler_env", metavar="ENV", help="Use the d1_databases of [env.ENV]."),
        click.option(
            "-c",
            "--config",
            type=click.Path(dir_okay=False, exists=True),
            help="wrangler.toml / wrangler.json / wrangler.jsonc. Default: the nearest one from the current folder.",
        ),
        click.option(
            "--database",
            metavar="NAME",
            help="The [[d1_databases]] entry, by binding or database_name (needed when there are several).",
        ),
    ]
    for option in options:
        func = option(func)
    return func


@dataclass(frozen=True)
class _Project:
    source: MigrationSource
    table: str


def _project(options: dict[str, Any]) -> _Project:
    """Where the migrations live and which ledger they use, from the same wrangler entry as the target."""
    config, entry = wrangler_entry(options.get("config"), options.get("database"), options.get("wrangler_env"))
    root = config.root if config is not None else Path.cwd()
    folder = entry.migrations_dir if entry is not None else root / DEFAULT_MIGRATIONS_DIR
    if options.get("migrations_dir"):
        folder = Path(options["migrations_dir"]).resolve()
    table = entry.migrations_table if entry is not None else DEFAULT_MIGRATIONS_TABLE
    return _Project(MigrationSource(root, migrations_dir=folder, modules_glob=options.get("modules_glob")), table)


def _say(text: str, *, err: bool = False) -> None:
    """Print plain text (paths and names may hold '[', which rich would read as markup)."""
    (err_console if err else console).print(escape(text))


def _migrator(db: Database, project: _Project) -> Migrator:
    return Migrator(db, project.source.discover(), table=project.table)


@click.group(cls=Group)
def migrations() -> None:
    """wrangler-compatible migrations: same files, same d1_migrations ledger, same order.

    \b
    Reads wrangler.toml / wrangler.json(c) ([[d1_databases]]: database_id, migrations_dir,
    migrations_table). Module folders (modules/*/migrations/*.sql) share the ledger as module/NNNN_name.sql.
    Exit codes: 0 ok, 1 failure, 2 usage error, 3 `list --check` found pending or edited files.
    """


@migrations.command("create")
@click.argument("name")
@click.option("--module", "module", metavar="M", help="Create it in module M's folder (modules/M/migrations).")
@click.option("--json", "as_json", is_flag=True, help="Print the new file as JSON.")
@folder_options
@wrangler_options
def create_command(name: str, module: str | None, as_json: bool, **options: Any) -> None:
    """Create the next migration file NNNN_NAME.sql (highest number + 1), as wrangler does.

    \b
    Examples:
      d1sync migrations create "create users"
      d1sync migrations create orders --module trading
    """
    path = _project(options).source.create(name, module=module)
    ledger_name = f"{module}/{path.name}" if module else path.name
    if as_json:
        print_json({"name": ledger_name, "path": str(path)})
    else:
        console.print(escape(f"Created {ledger_name}: {path}"))


def _drift_cell(status: MigrationStatus) -> str:
    return {
        None: "",
        "ok": "[green]ok[/green]",
        "changed": "[red]CHANGED since applied[/red]",
        "unknown": "[dim]unknown (no checksum)[/dim]",
        "missing": "[yellow]file missing[/yellow]",
    }[status.drift]


def _status_json(status: MigrationStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "module": status.module,
        "state": status.state,
        "applied_at": status.applied_at,
        "drift": status.drift,
        "path": str(status.file.path) if status.file else None,
    }


@migrations.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the migrations as JSON.")
@click.option("--check", is_flag=True, help="Exit 3 when migrations are pending or applied files were edited.")
@folder_options
@target_options
def list_command(as_json: bool, check: bool, **options: Any) -> None:
    """List applied and pending migrations, flagging applied files edited since.

    Creates the ledger if missing, as `wrangler d1 migrations list` does.

    \b
    Examples:
      d1sync migrations list --local app.db
      d1sync migrations list --emulator http://127.0.0.1:8787 --json
      d1sync migrations list --remote --database DB --check
    """
    project = _project(options)
    target = target_from(options)
    with target.open(wal=False) as db:
        statuses = _migrator(db, project).status()
    pending = [s for s in statuses if s.state == "pending"]
    changed = [s for s in statuses if s.drift == "changed"]
    if as_json:
        print_json(
            {
                "target": target.describe(),
                "ledger": project.table,
                "migrations": [_status_json(s) for s in statuses],
                "pending": len(pending),
                "changed": [s.name for s in changed],
            }
        )
    else:
        _render_list(statuses, target, project)
    if check and (pending or changed):
        raise SystemExit(EXIT_CHECK_FAILED)


def _render_list(statuses: list[MigrationStatus], target: Target, project: _Project) -> None:
    if not statuses:
        _say(f"No migrations found (looked in {project.source.plain_dir} and {project.source.modules_glob}).")
        return
    table = Table(show_header=True, header_style="bold", title=escape(f"{project.table} on {target.describe()}"))
    for column in ("Name", "Status", "Applied at", "Checksum"):
        table.add_column(column)
    for s in statuses:
        state = "[green]applied[/green]" if s.state == "applied" else "[yellow]pending[/yellow]"
        table.add_row(escape(s.name), state, escape(s.applied_at or ""), _drift_cell(s))
    console.print(table)
    applied = sum(1 for s in statuses if s.state == "applied")
    console.print(f"{applied} applied, {len(statuses) - applied} pending")
    for s in statuses:
        if s.drift == "changed":
            _say(f"Warning: {s.name} was edited after it was applied (the database has the old version)", err=True)


def _confirm_remote(db: Any, project: Any, target: Target) -> None:
    """As wrangler does: on a terminal, ask before changing a real D1 database (``--yes`` skips it)."""
    pending = _migrator(db, project).pending()
    if not pending:
        return
    names = ", ".join(m.name for m in pending[:5]) + (", ..." if len(pending) > 5 else "")
    question = f"About to apply {len(pending)} migration(s) to {target.describe()}: {names}. Continue?"
    if not click.confirm(question, default=False, err=True):
        fail("nothing applied", "run it again and answer y, or pass --yes")


@migrations.command("apply")
@click.option("--dry-run", is_flag=True, help="Show what would run; write nothing (not even the ledger).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before applying to real D1 (asked only on a terminal).")
@folder_options
@target_options
def apply_command(dry_run: bool, as_json: bool, yes: bool, **options: Any) -> None:
    """Apply pending migrations in order, each with its ledger row as one atomic batch.

    Every pending file is checked first: BEGIN/COMMIT/ROLLBACK/SAVEPOINT statements (which fail on D1)
    stop the run before anything is written. The first failing migration is rolled back and stops the
    run; earlier ones stay applied. A --local file that does not exist is created, as wrangler does, and
    a note on stderr says so (not with --dry-run, which writes nothing).

    \b
    Examples:
      d1sync migrations apply --local app.db
      d1sync migrations apply --emulator http://127.0.0.1:8787 --dry-run
      d1sync migrations apply --remote --database DB --json
    """
    project = _project(options)
    target = target_from(options, missing="allow" if dry_run else "create")
    applied: list[AppliedMigration] = []
    plans: list[MigrationPlan] | None = None

    def on_start(plan: MigrationPlan) -> None:
        for table in plan.foreign_tables:
            err_console.print(
                escape(
                    f"Warning: {plan.file.name} creates {table!r}, outside module {plan.file.module!r}'s prefix "
                    f"{plan.file.module}_"
                )
            )

    def on_applied(done: AppliedMigration) -> None:
        applied.append(done)
        if not as_json:
            console.print(
                f"[green]applied[/green] {escape(done.name)} ({done.statements} statement(s), "
                f"{done.duration_ms:.0f} ms)"
            )

    with _open_for_apply(target, dry_run) as db:
        if target.kind == "remote" and not (dry_run or yes) and sys.stdin.isatty():
            _confirm_remote(db, project, target)
        try:
            report = _migrator(db, project).apply(dry_run=dry_run, on_start=on_start, on_applied=on_applied)
            plans = report.planned
        except UnsafeMigrationError as exc:
            _print_apply_json(as_json, target, plans, applied, dry_run, exc)
            raise CLIError(str(exc), "delete the transaction statements: each migration is already atomic") from exc
        except MigrationFailedError as exc:
            _print_apply_json(as_json, target, plans, applied, dry_run, exc)
            raise CLIError(str(exc), "fix the file and run apply again; it resumes at this migration") from exc
    if as_json:
        _print_apply_json(True, target, plans, applied, dry_run, None)
    elif dry_run:
        plans = plans or []
        if not plans:
            console.print(escape(f"No pending migrations on {target.describe()}."))
        for plan in plans:
            on_start(plan)
            _say(f"would apply {plan.file.name} ({len(plan.statements)} statement(s)) [{plan.file.path}]")
    elif not applied:
        console.print(escape(f"No pending migrations on {target.describe()}."))
    else:
        console.print(escape(f"Applied {len(applied)} migration(s) to {target.describe()}."))


def _open_for_apply(target: Target, dry_run: bool) -> Database:
    """The target's Database; a dry run on a missing --local file plans for an empty one and creates none."""
    if dry_run and target.kind == "local" and target.path is not None and not target.path.exists():
        from d1sync.local import LocalDatabase

        return LocalDatabase(":memory:")  # what would run on the new, empty file
    return target.open()


def _print_apply_json(
    as_json: bool,
    target: Target,
    plans: list[MigrationPlan] | None,
    applied: list[AppliedMigration],
    dry_run: bool,
    error: UnsafeMigrationError | MigrationFailedError | None,
) -> None:
    if not as_json:
        return
    payload: dict[str, Any] = {
        "target": target.describe(),
        "dry_run": dry_run,
        # None when the run stopped before planning finished (see "error").
        "pending": None
        if plans is None
        else [{"name": p.file.name, "statements": len(p.statements), "path": str(p.file.path)} for p in plans],
        "applied": [
            {"name": a.name, "statements": a.statements, "duration_ms": round(a.duration_ms, 3)} for a in applied
        ],
        "error": None,
    }
    if isinstance(error, UnsafeMigrationError):
        payload["error"] = {"migration": error.name, "path": str(error.path), "line": error.line, "message": str(error)}
    elif isinstance(error, MigrationFailedError):
        payload["error"] = {
            "migration": error.name,
            "path": str(error.path),
            "statement": error.statement_number,
            "line": error.line,
            "message": error.cause.message,
            "code": error.cause.code,
        }
    print_json(payload)
