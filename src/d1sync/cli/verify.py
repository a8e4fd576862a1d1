"""``d1sync verify``: prove the remote holds exactly DB's synced rows, or show which differ and repair them."""

from __future__ import annotations

import dataclasses
import shlex
import time
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from d1sync.sync import Outbox, SyncWorker, drain
from d1sync.sync.compare.verify import VerifyReport
from d1sync.sync.config import DEFAULT_PAGE

from ._common import DB_ARG, EXIT_USAGE, Command, console, err_console, fail, need_outbox, need_tracked, print_json
from ._target import open_target, target_options

__all__ = ["verify"]


class _Bar:
    """One progress line per table: rows compared out of its local count."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, table: str, done: int, total: int) -> None:
        if table not in self.tasks:
            self.tasks[table] = self.progress.add_task(table, total=max(total, 1))
        self.progress.update(self.tasks[table], completed=done, total=max(total, done, 1))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]verify {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} rows"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _render_schema(report: VerifyReport) -> None:
    """The schema differences, table by table, before the rows (each names its column)."""
    for diff in report.tables:
        if diff.schema:
            console.print(f"[red]{escape(diff.table)}: the schema on D1 differs[/red]")
            for difference in diff.schema:
                console.print(f"  {escape(diff.table)}: {escape(difference['message'])}")


def _render(report: VerifyReport) -> None:
    _render_schema(report)
    table = Table("table", "local", "remote", "missing", "extra", "different", "pending", "result")
    for diff in report.tables:
        result = (
            f"[yellow]skipped: {escape(diff.skipped)}[/yellow]"
            if diff.skipped
            else "[green]equal[/green]"
            if diff.equal
            else "[red]different[/red]"
        )
        counts = (diff.local_rows, diff.remote_rows, diff.missing, diff.extra, diff.different, diff.pending)
        table.add_row(diff.table, *(f"{n:,}" for n in counts), result)
    console.print(table)
    for diff in report.tables:
        for kind, keys in diff.samples.items():
            if keys:
                shown = ", ".join(escape(repr(k[0] if len(k) == 1 else tuple(k))) for k in keys)
                console.print(f"  {diff.table}: {kind} keys (first {len(keys)}): {shown}")
        for line in diff.columns:
            console.print(f"  {diff.table}: {escape(line)}")
        if diff.not_repaired:
            console.print(f"  [red]{diff.table}: --repair queued nothing: {escape(diff.not_repaired)}[/red]")
        if diff.dead:
            console.print(
                f"  {diff.table}: {diff.dead:,} of them are dead letters, refused by D1 for good "
                f"({escape(diff.dead_reason or '')}): --repair does not send them again"
            )
    console.print(
        f"compared {report.rows:,} row(s) in {report.requests:,} request(s), {report.seconds:.1f}s "
        f"({report.rows / max(report.seconds, 1e-6):,.0f} rows/s)"
    )


def _to_dict(report: VerifyReport, queued: int) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["equal"] = report.equal
    data["queued"] = queued
    for table, diff in zip(data["tables"], report.tables, strict=True):
        table["equal"] = diff.equal
    return data


@click.command(cls=Command)
@DB_ARG
@click.argument("tables", nargs=-1)
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (stdout); progress stays on stderr.")
@click.option("--repair", is_flag=True, help="Queue the local state of every missing or different row and sync it.")
@click.option("--delete-extra", is_flag=True, help="With --repair: also delete the rows only the remote has.")
@click.option(
    "--page",
    default=DEFAULT_PAGE,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows per request at most (fewer for large rows).",
)
@click.option(
    "--timeout", default=300.0, show_default=True, help="With --repair: seconds to wait for the repair to sync."
)
def verify(
    db: str,
    tables: tuple[str, ...],
    as_json: bool,
    repair: bool,
    delete_extra: bool,
    page: int,
    timeout: float,
    **target: Any,
) -> None:
    """Compare DB's synced TABLES (default: all) with the remote exactly: every row, value and type.

    Reads both sides in key order, a page per request, and reports per table the rows missing on the
    remote, extra there, and different (1, '1' and 1.0 are three values). Rows with a change still
    pending are in flight and left out.

    First it compares each table's schema on both sides and names every column whose declared type,
    nullability, default or key differs (and missing or extra columns, UNIQUE, CHECK, foreign keys,
    indexes); for the first different rows it names the columns that differ, with both values and types.

    --repair queues every missing or different row through the outbox, syncs, and verifies again;
    --delete-extra also deletes rows that exist only remotely (a Worker's, or a rewound restore's).
    --repair queues nothing for a table that is paused, or whose schema on D1 would refuse or change the
    rows (those would only become dead letters): it names the schema difference and exits 1 instead.
    Verifying never clears a pause.

    Exit codes: 0 equal; 1 different, in rows or schema (or a table could not be compared, or was not
    repaired); 2 bad usage.
    """
    shown = shlex.quote(db)
    if delete_extra and not repair:
        fail("--delete-extra only works with --repair", f"d1sync verify {shown} --repair --delete-extra", EXIT_USAGE)
    need_outbox(db)
    with Outbox(db) as outbox:
        need_tracked(db, tables, outbox.status().tables)
    remote = open_target(target, default="remote")
    queued = 0
    try:
        with SyncWorker(db, remote) as worker:
            # No resume here: comparing fixes nothing, so a pause stays until `resume`, `sync` or the worker's own
            # re-check finds its cause gone (status --check must not turn healthy while the fault remains).
            names = list(tables) or None
            with _progress() as progress:
                bar = _Bar(progress)
                report = worker.verify(names, page=page, repair=repair, delete_extra=delete_extra, on_progress=bar)
            queued = sum(diff.queued for diff in report.tables)
            if queued:
                if not as_json:
                    _render(report)
                    console.print(f"repair: queued {queued:,} row(s); syncing them")
                result = drain(worker, deadline=time.monotonic() + timeout)
                if not result.drained and worker.pending(flowing=True):  # a paused table's own changes wait
                    fail(
                        f"the repair did not sync: {result.error or result.state} ({result.pending:,} pending)",
                        f"see `d1sync status {shown}`; a running `d1sync run` sends the queued rows itself",
                    )
                first = {diff.table: diff.not_repaired for diff in report.tables}
                with _progress() as progress:
                    report = worker.verify(names, page=page, on_progress=_Bar(progress))
                for diff in report.tables:
                    diff.not_repaired = first.get(diff.table)
    finally:
        remote.close()
    if as_json:
        print_json(_to_dict(report, queued))
    else:
        _render(report)
    if not report.equal:
        _fail(report, shown, repair)


def _fail(report: VerifyReport, shown: str, repair: bool) -> None:
    """Exit 1 with the hint that fits what differs (``shown``: the file, shell-quoted)."""
    dead = sum(diff.dead for diff in report.tables)
    repairable = sum(diff.missing + diff.different + diff.extra for diff in report.tables) - dead
    unfit = [diff.table for diff in report.tables if diff.not_repaired]
    schema = [diff.table for diff in report.tables if diff.schema]
    if unfit or (schema and not repairable):
        named = [diff for diff in report.tables if diff.table in (unfit or schema)]
        fix = (
            f"`d1sync sync {shown}` makes D1's tables follow the local ones (d1sync manages their schema)"
            if all(diff.managed for diff in named)
            else f"make D1's table match the local one (the differences above), then `d1sync resume {shown}`"
        )
        fail(
            f"the remote differs from the local file; the schema of {', '.join(d.table for d in named)} on D1 differs",
            f"{fix}; then `d1sync verify {shown} --repair`",
        )
    if repairable and not repair:
        hint = f"d1sync verify {shown} --repair (add --delete-extra for rows only the remote has)"
    elif dead:
        hint = f"`d1sync dead {shown} list` says why D1 refused them; fix the rows, then `d1sync dead {shown} retry`"
    else:
        hint = None
    fail("the remote differs from the local file", hint)
