"""``d1sync replicate``: make tables two-way (install the remote capture), emit it as a migration, prune."""

from __future__ import annotations

from typing import Any

import click

from d1sync.sync import Outbox
from d1sync.sync.config import DEFAULT_RETENTION
from d1sync.sync.remote import prune, write_migration

from ._common import DB_ARG, EXIT_USAGE, Command, console, fail, need_file, print_json, shown
from ._target import open_target, target_options

__all__ = ["replicate"]


def _target_flags(target: dict[str, Any]) -> str:
    """The target flags as given (the migration goes where the tables sync), or --remote, the default."""
    if target.get("emulator"):
        return f"--emulator {target['emulator']}"
    if target.get("local"):
        return f"--local {target['local']}"
    return "--remote"


@click.command(cls=Command)
@DB_ARG
@click.argument("tables", nargs=-1)
@target_options
@click.option("--version-column", metavar="COL", help="The higher version wins on both sides (else last push wins).")
@click.option(
    "--emit-migration",
    "migrations_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Write the remote DDL as the next migration file in DIR instead of installing it.",
)
@click.option("--prune", "do_prune", is_flag=True, help="Delete the remote log entries every live replica has passed.")
@click.option(
    "--retention",
    default=DEFAULT_RETENTION / 86_400,
    show_default=True,
    metavar="DAYS",
    help="With --prune: a replica silent longer than this no longer holds the log back.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def replicate(
    db: str,
    tables: tuple[str, ...],
    version_column: str | None,
    migrations_dir: str | None,
    do_prune: bool,
    retention: float,
    as_json: bool,
    **target: Any,
) -> None:
    """Make TABLES of DB two-way: `d1sync run` and `sync` also pull their remote changes.

    Installs on the remote, idempotently, the change log `_d1sync_log`, its capture triggers and the origin
    row each push batch sets (or, with --emit-migration DIR, writes them as a migration file for wrangler).
    Each table then resyncs once: it is made equal to the remote, but for rows with a pending local change.
    Remote triggers double D1's rows written for these tables (docs/replication.md).
    """
    if not tables and not do_prune:
        fail("name the tables to replicate, or pass --prune", "`d1sync replicate app.db notes`", EXIT_USAGE)
    if retention < 0:
        fail("--retention must be at least 0 days", "the default is 7", EXIT_USAGE)
    if migrations_dir is not None and (do_prune or not tables):
        fail(
            "--emit-migration writes a file for TABLES and talks to no remote",
            f"`d1sync replicate {shown(db)} TABLE... --emit-migration DIR`; prune in a separate call",
            EXIT_USAGE,
        )
    need_file(db)
    done: dict[str, Any] = {}
    if migrations_dir is not None:
        specs = Outbox(db).replicate(*tables, version_column=version_column)
        path = write_migration(migrations_dir, specs)
        done["migration"] = str(path)
        done["replicated"] = [s.name for s in specs]
        if not as_json:
            where = _target_flags(target)
            run = f"d1sync run {shown(db)} {where}"
            console.print(f"wrote {path}; apply it (`d1sync migrations apply {where}`), then `{run}`")
    else:
        remote = open_target(target, default="remote")
        try:
            if tables:
                specs = Outbox(db).replicate(*tables, target=remote, version_column=version_column)
                done["replicated"] = [s.name for s in specs]
                if not as_json:
                    for spec in specs:
                        console.print(f"replicating [bold]{spec.name}[/bold] both ways (remote capture installed)")
            if do_prune:
                done["pruned"] = prune(remote, retention=retention * 86_400)
                if not as_json:
                    console.print(f"pruned {done['pruned']:,} remote log entries every live replica has passed")
        finally:
            remote.close()
    if as_json:
        print_json(done)
