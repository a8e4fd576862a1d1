"""``d1sync status`` and ``d1sync dead``: what an outbox holds, read from the file alone."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from d1sync.sync import Outbox, Status
from d1sync.sync.codec import printable

from ._common import (
    DB_ARG,
    EXIT_DEAD_LETTERS,
    EXIT_FAILURE,
    EXIT_USAGE,
    Command,
    Group,
    console,
    fail,
    open_outbox,
    print_json,
    shown,
)

__all__ = ["dead", "status"]


def _when(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command(cls=Command)
@DB_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 0 only when healthy: 1 something is paused or failing, 3 dead letters (for health checks).",
)
def status(db: str, as_json: bool, check: bool) -> None:
    """Show DB's outbox: pending changes, dead letters, last success/error.

    Also the oldest pending age, the back-off, a pause and its reason, and the worker holding the lease.
    Healthy means nothing is paused, the last attempt did not fail, and there are no dead letters.
    """
    with open_outbox(db) as outbox:
        st = outbox.status()
    code, health = _health(st)
    if as_json:
        print_json({**st.to_dict(), "healthy": code == 0, "health": health})
    else:
        _print_status(st, health, db)
    if check and code:
        raise click.exceptions.Exit(code)


def _paused(st: Status) -> list[str]:
    """What is paused: the worker, the pull, each table."""
    paused = [f"the worker ({st.paused})"] if st.paused else []
    if st.replica is not None and st.replica.get("paused"):
        paused.append(f"the pull ({st.replica['paused']})")
    return paused + [name for name, ts in st.table_states.items() if ts.state == "paused"]


def _health(st: Status) -> tuple[int, str]:
    """The exit code of ``status --check`` and the word for it: a pause or a failing last attempt needs a fix
    (1); dead letters are changes D1 refused for good (3, as ``sync`` exits)."""
    if _paused(st):
        return EXIT_FAILURE, "paused"
    if st.disk_full:
        return EXIT_FAILURE, "disk full"
    failed_at = (st.last_error or {}).get("at")
    if failed_at is not None and (st.last_success is None or failed_at > st.last_success):
        return EXIT_FAILURE, "failing"
    if st.dead_letters:
        return EXIT_DEAD_LETTERS, "dead letters"
    return 0, "healthy"


_HEALTH_TEXT = {
    "healthy": "[green]healthy[/green]",
    "paused": "[red]paused: needs a fix (see below)[/red]",
    "failing": "[red]failing: the last attempt failed (see last error)[/red]",
    "disk full": "[red]disk full: free space on the disk holding the file (nothing is lost meanwhile)[/red]",
    "dead letters": "[red]dead letters: D1 refused changes for good (d1sync dead {db})[/red]",
}


def _request_size(size: dict[str, Any]) -> str:
    """``12.5 MB a request, about 140,000 rows (learned; D1 refused 16.7 MB)``."""
    text = f"{size['bytes'] / 1e6:,.1f} MB a request"
    if size.get("row_bytes"):
        text += f", about {size['bytes'] / size['row_bytes']:,.0f} rows"
    text += " (learned from D1's answers"
    return text + (f"; D1 refused {size['refused'] / 1e6:,.1f} MB)" if size.get("refused") else ")")


def _print_status(st: Status, health: str, db: str) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("health", _HEALTH_TEXT[health].replace("{db}", escape(shown(db))))
    table.add_row("pending changes", f"{st.pending_changes:,} ({st.pending_keys:,} rows)")
    age = st.oldest_pending_age
    table.add_row("oldest pending", "-" if age is None else f"{age:,.1f}s ago")
    table.add_row("dead letters", f"{st.dead_letters:,}")
    table.add_row("last success", _when(st.last_success))
    if st.last_error:
        table.add_row("last error", f"{_when(st.last_error.get('at'))}: {st.last_error.get('message')}")
    table.add_row("back-off", f"{st.backoff_remaining:.1f}s" if st.backoff_remaining else "none")
    table.add_row("paused", escape("; ".join(_paused(st))) or "no")
    if st.importing:
        imp = st.importing
        tables = escape(", ".join(imp["tables"]))
        since = _when(imp["started"])
        table.add_row("import", f"{imp['rows']:,} rows of {tables} through D1's import ({imp['stage']}, since {since})")
    if st.rows_per_second is not None:
        table.add_row("last pass", f"{st.rows_per_second:,.0f} rows/s")
    if st.request_size:
        table.add_row("request size", _request_size(st.request_size))
    if st.rate_budget:
        budget = st.rate_budget
        table.add_row(
            "rate budget", f"{budget['available']:.0f} of {budget['rate']:.0f} requests per {budget['per']:.0f}s"
        )
    table.add_row("worker", st.lease_owner or "none running")
    if st.replica is not None:
        replica = st.replica
        table.add_row(
            "replica", f"{replica['id']} at cursor {replica['cursor']:,}, last pull {_when(replica['last_pull'])}"
        )
        if replica["paused"]:
            table.add_row("pull paused", str(replica["paused"]))
    console.print(table)
    _print_tables(st)


_STATE_STYLE = {"synced": "green", "pending": "yellow", "paused": "red"}


def _print_tables(st: Status) -> None:
    """One line per synced table: its state, pending changes, and for a paused one the reason and fix."""
    if not st.table_states:
        console.print("no synced tables (see `d1sync track --help`)")
        return
    two_way = st.replica is not None
    table = Table("table", "state", "pending", *(("pull lag", "last pull") if two_way else ()), "detail")
    for name, ts in st.table_states.items():
        detail = ts.reason or ts.note or ""
        if ts.fix:
            detail += f"\nfix: {ts.fix}"
        if ts.resending:
            detail = (detail + "\n" if detail else "") + "re-sending every row"
        change = ts.last_schema_change
        schema = None
        if change:
            schema = f"schema {change.get('action')} on the remote {_when(change.get('at'))}: " + "; ".join(
                change.get("sql") or []
            )
        for extra in (ts.pull_note, "resync owed" if ts.resync else None, schema):
            if extra:
                detail = (detail + "\n" if detail else "") + extra
        style = _STATE_STYLE[ts.state]
        pull: tuple[str, ...] = ()
        if two_way:
            lag = "-" if ts.pull_lag is None else f"{ts.pull_lag:.2f}s"
            pull = (lag, _when(ts.last_pull)) if ts.replicated else ("push only", "")
        table.add_row(name, f"[{style}]{ts.state}[/{style}]", f"{ts.pending:,}", *pull, escape(detail))
    console.print(table)


class _DeadGroup(Group):
    """``dead DB ACTION``: an action named where DB goes (``dead list --help``) shows that action's help, or
    says that DB comes first."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands and not os.path.exists(args[0]):
            action = self.commands[args[0]]
            if any(arg in ctx.help_option_names for arg in args[1:]):
                action.make_context(args[0], ["--help"], parent=ctx)  # prints `d1sync dead DB list` help, exits
            fail(f"`{ctx.command_path} {args[0]}` needs DB first", f"d1sync dead DB {args[0]}", EXIT_USAGE)
        return super().parse_args(ctx, args)


@click.group(cls=_DeadGroup, invoke_without_command=True)
@DB_ARG
@click.pass_context
def dead(ctx: click.Context, db: str) -> None:
    """Inspect, retry or drop DB's dead letters (changes D1 refused permanently).

    Lists them by default.

    \b
    Examples:
      d1sync dead app.db                  # same as: d1sync dead app.db list
      d1sync dead app.db retry --id 3     # after fixing the cause
      d1sync dead app.db drop --yes
    """
    if ctx.invoked_subcommand is None:
        assert dead_list.callback is not None
        ctx.invoke(dead_list.callback, as_json=bool(ctx.meta.get("d1sync.json")))


def _dead_db() -> str:
    """The DB argument of ``dead DB ...`` (these commands only run under it, or as its default)."""
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None and "db" not in ctx.params:
        ctx = ctx.parent
    assert ctx is not None
    return str(ctx.params["db"])


def _dead_outbox() -> Outbox:
    return open_outbox(_dead_db())


@dead.command(name="list")
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON: keys as lists of values, times in seconds.")
def dead_list(limit: int = 50, as_json: bool = False) -> None:
    """List dead letters with their error."""
    with _dead_outbox() as outbox:
        letters = outbox.dead_letters(limit)
    if as_json:
        print_json([letter.to_dict() for letter in letters])
        return
    table = Table("id", "table", "key", "op", "attempts", "error", "last failed")
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.table,
            escape(printable(letter.key)),
            letter.op,
            str(letter.attempts) + (" (retrying)" if letter.retrying else ""),
            escape(letter.error),
            _when(letter.last_failed_at / 1000),
        )
    console.print(table if letters else "no dead letters")


@dead.command(name="retry")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable); default all.")
@click.option("--json", "as_json", is_flag=True, help='Print {"requeued": N} as JSON.')
def dead_retry(ids: tuple[int, ...], as_json: bool) -> None:
    """Put dead letters back in the outbox (after fixing the cause); the worker resends them.

    Each letter keeps its id and is marked retrying until D1 acknowledges its row; refused again, its
    attempts count goes up. An unknown --id is an error (exit 1) and nothing is requeued.
    """
    with _dead_outbox() as outbox:
        count = outbox.retry_dead(list(ids) or None)
    if as_json:
        print_json({"requeued": count})
    else:
        console.print(f"requeued {count} dead letter(s)")


@dead.command(name="drop")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable); default all.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help='Print {"dropped": N} as JSON.')
def dead_drop(ids: tuple[int, ...], yes: bool, as_json: bool) -> None:
    """Delete dead letters for good. An unknown --id is an error (exit 1) and nothing is dropped."""
    db = _dead_db()
    with _dead_outbox() as outbox:
        if not yes:
            click.confirm(f"Drop {'these' if ids else 'ALL'} dead letters of {Path(db).name} for good?", abort=True)
        count = outbox.drop_dead(list(ids) or None)
    if as_json:
        print_json({"dropped": count})
    else:
        console.print(f"dropped {count} dead letter(s)")
