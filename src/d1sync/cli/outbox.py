"""``d1sync track`` / ``untrack``: choose which tables of a file are captured in its outbox."""

from __future__ import annotations

import click

from d1sync.outbox import Outbox

from ._common import Command, console

__all__ = ["track", "untrack"]

DB_ARG = click.argument("db", type=click.Path(dir_okay=False, exists=True))


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


@click.command(cls=Command)
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
    with Outbox(db) as outbox:
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


@click.command(cls=Command)
@DB_ARG
@click.argument("tables", nargs=-1, required=True)
@click.option("--drop-pending", is_flag=True, help="Also discard their unsent changes (otherwise dead-lettered).")
def untrack(db: str, tables: tuple[str, ...], drop_pending: bool) -> None:
    """Stop capturing writes to TABLES of DB (removes triggers)."""
    with Outbox(db) as outbox:
        outbox.untrack(*tables, drop_pending=drop_pending)
    console.print(f"untracked {', '.join(tables)}")
