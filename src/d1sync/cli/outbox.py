"""``d1sync track`` / ``untrack``: choose which tables of a file are captured in its outbox."""

from __future__ import annotations

import click

from d1sync.sync import Outbox

from ._common import (
    DB_ARG,
    EXIT_USAGE,
    Command,
    console,
    err_console,
    fail,
    need_file,
    need_tracked,
    open_outbox,
    print_json,
)

__all__ = ["resume", "track", "untrack"]


def _columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


@click.command(cls=Command)
@DB_ARG
@click.argument("tables", nargs=-1, required=True)
@click.option("--include", metavar="COLS", help="Sync only these comma-separated columns (the key always syncs).")
@click.option("--exclude", metavar="COLS", help="Sync every column except these (comma-separated).")
@click.option("--version-column", metavar="COL", help="Last-writer-wins: never overwrite a newer remote version.")
@click.option("--no-backfill", is_flag=True, help="Do not queue the rows already in the table.")
@click.option(
    "--manage-schema/--no-manage-schema",
    default=None,
    help="Let d1sync make D1's tables follow the local schema (create them, follow ALTER TABLE and rebuilds), "
    "or never touch it (the table pauses with the fix). Stored per table. Default: managed, unless the remote "
    "has a migrations ledger (d1_migrations, or wrangler's under another migrations_table).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the tracked tables and the pending count as JSON.")
def track(
    db: str,
    tables: tuple[str, ...],
    include: str | None,
    exclude: str | None,
    version_column: str | None,
    no_backfill: bool,
    manage_schema: bool | None,
    as_json: bool,
) -> None:
    """Capture every write to TABLES of DB in the outbox (installs triggers).

    The sync creates a table D1 lacks from the local DDL and follows local schema changes on D1 (ADD, DROP
    and RENAME COLUMN, index changes; any other change as the same rebuild SQLite does, then every row is
    sent again), unless --no-manage-schema, the remote has a migrations ledger, or the table is synced
    with --include/--exclude or both ways.
    """
    if include and exclude:
        fail("--include and --exclude cannot be combined", "list the columns to sync with --include", EXIT_USAGE)
    need_file(db)
    with Outbox(db) as outbox:
        specs = outbox.track(
            *tables,
            include=_columns(include),
            exclude=_columns(exclude),
            version_column=version_column,
            backfill_existing=not no_backfill,
            manage_schema=manage_schema,
        )
        pending = outbox.status().pending_changes
    if as_json:
        tracked = [{"table": s.name, "key": list(s.key), "columns": list(s.columns)} for s in specs]
        print_json({"tracked": tracked, "pending_changes": pending})
        return
    for spec in specs:
        console.print(f"tracking [bold]{spec.name}[/bold] key ({', '.join(spec.key)}), {len(spec.columns)} columns")
    console.print(f"{pending:,} change(s) pending")


@click.command(cls=Command)
@DB_ARG
@click.argument("tables", nargs=-1, required=True)
@click.option("--drop-pending", is_flag=True, help="Also discard their unsent changes (otherwise dead-lettered).")
@click.option(
    "--delete-remote",
    is_flag=True,
    help="Also delete every row of TABLES on the remote (on the next sync), e.g. after dropping them locally.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was untracked as JSON.")
def untrack(db: str, tables: tuple[str, ...], drop_pending: bool, delete_remote: bool, as_json: bool) -> None:
    """Stop capturing writes to TABLES of DB (removes triggers).

    Changes still pending for them are dead-lettered (see `d1sync dead`), or discarded with --drop-pending;
    a warning says how many. The remote rows stay unless --delete-remote: then the next `d1sync sync` (or
    the running daemon) deletes them and forgets the tables.
    """
    with open_outbox(db) as outbox:
        before = outbox.status().table_states
        need_tracked(db, tables, list(before))
        outbox.untrack(*tables, drop_pending=drop_pending, delete_remote=delete_remote)
    pending = {t: before[t].pending for t in tables if t in before and before[t].pending}
    if as_json:
        print_json({"untracked": list(tables), "pending_changes": pending, "delete_remote": delete_remote})
        return
    for table, count in pending.items():
        fate = "discarded" if drop_pending or delete_remote else "left to be dead-lettered by the next sync"
        err_console.print(f"[yellow]warning:[/yellow] {table} had {count:,} pending change(s), {fate}")
    if delete_remote:
        console.print(f"untracked {', '.join(tables)}; their remote rows are deleted on the next sync")
    else:
        console.print(f"untracked {', '.join(tables)}")


@click.command(cls=Command)
@DB_ARG
def resume(db: str) -> None:
    """Clear DB's pauses and back-off so the next sync tries at once (after a fix).

    A pause (a wrong token or database id, a table whose schema differs remotely) is re-checked on its own
    after a while; run this once the cause is fixed to skip the wait. A cause still there pauses again at
    once, with its message.
    """
    with open_outbox(db) as outbox:
        paused = outbox.status()
        outbox.resume()
    cleared = [f"the worker ({paused.paused})"] if paused.paused else []
    cleared += [f"{name} ({t.reason})" for name, t in paused.table_states.items() if t.state == "paused"]
    console.print(f"resumed: {'; '.join(cleared)}" if cleared else "nothing was paused")
