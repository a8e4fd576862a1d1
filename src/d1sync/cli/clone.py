"""``d1sync clone``: copy a D1 database (or the emulator's, or another file's) into a new local SQLite file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from d1sync.errors import SQLError
from d1sync.sqlite import Connection
from d1sync.sync.compare.clone import CloneProgress, CloneReport
from d1sync.sync.compare.clone import clone as clone_database
from d1sync.sync.compare.clone_plan import has_plan
from d1sync.sync.config import DEFAULT_PAGE

from ._common import EXIT_USAGE, Command, console, diff_table, err_console, fail, print_json, shown
from ._target import target_from, target_options

__all__ = ["clone"]


class _Bar:
    """One progress line: the phase, the table (n of m), rows copied of all, rows/s and the time left."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.phase = ""

    def __call__(self, where: CloneProgress) -> None:
        label = f"{where.phase} {where.table} ({where.tables_done + 1}/{where.tables} tables)"
        if self.task is None or where.phase != self.phase:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(label, total=max(where.total_rows, 1))
            self.phase = where.phase
        self.progress.update(
            self.task, description=label, completed=where.rows, total=max(where.total_rows, where.rows, 1)
        )


class _Rate(ProgressColumn):
    """Rows per second, once rich has measured a speed."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} rows/s" if task.speed else "", style="dim")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} rows"),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # a bar is for people: none in logs and pipes
    )


def _render(report: CloneReport) -> None:
    console.print(diff_table(report.tables, "source rows"))
    for note in report.notes:
        console.print(f"[yellow]note: {escape(note)}[/yellow]")
    resumed = " (resumed)" if report.resumed else ""
    console.print(
        f"cloned {report.rows:,} row(s){resumed} into {escape(str(report.path))} in {report.requests:,} request(s), "
        f"{report.seconds:.1f}s ({report.rows / max(report.seconds, 1e-6):,.0f} rows/s); verified every table"
    )


def _refuse_occupied(file: str) -> None:
    """A FILE with data in it is replaced only with --force (an interrupted clone there is resumed)."""
    path = Path(file)
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with Connection(path, read_only=True) as conn:
            if has_plan(conn):
                return
    except SQLError:
        pass  # not a database: still not ours to overwrite
    fail(
        f"{file} exists and is not empty",
        "clone into a new or empty file, or pass --force to replace it (its contents are deleted)",
    )


@click.command("clone", cls=Command)
@click.argument("file", type=click.Path(dir_okay=False))
@target_options
@click.option("--table", "tables", multiple=True, metavar="T", help="Clone only this table or view (repeatable).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists and is not empty (its contents are deleted).")
@click.option(
    "--page",
    default=DEFAULT_PAGE,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows per request at most (fewer for large rows).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (stdout); progress stays on stderr.")
def clone(file: str, tables: tuple[str, ...], force: bool, page: int, as_json: bool, **target: Any) -> None:
    """Copy a D1 database (or the emulator's, or a file's) into the new SQLite file FILE, exactly.

    Copies tables, indexes, views and triggers (not D1's _cf_* tables), every row exactly (integers beyond
    2^53, BLOBs and REALs bit for bit), FTS5 tables rebuilt from their content, and d1_migrations, so
    `d1sync migrations list` agrees afterwards. Rows are read a page per request in key order; each page
    commits with its key, so after a crash the same command carries on from the last page. Ends with a
    verify of every table.

    \b
    Examples:
      d1sync clone --remote app.db
      d1sync clone --emulator http://127.0.0.1:8787 app.db --table users --table orders
      d1sync clone --local old.db new.db --force

    Exit codes: 0 cloned and equal; 1 failed or a table differs (the source changed meanwhile); 2 bad usage.
    """
    resolved = target_from(target, default="remote")
    if resolved.kind == "local":  # an existing file: target_from checked
        assert resolved.path is not None
        if os.path.abspath(resolved.path) == os.path.abspath(file):
            fail("the source and FILE are the same file", "clone into another path", EXIT_USAGE)
    if not force:
        _refuse_occupied(file)
    source = resolved.open()
    try:
        with _progress() as progress:
            bar = _Bar(progress)
            report = clone_database(source, file, tables=tables or None, force=force, page=page, on_progress=bar)
    finally:
        source.close()
    if as_json:
        data = dataclasses.asdict(report)
        data["path"] = str(report.path)
        data["equal"] = report.equal
        print_json(data)
    else:
        _render(report)
    if not report.equal:
        fail(
            "the clone differs from the source (it changed while being copied)",
            f"clone again: d1sync clone ... {shown(file)} --force",
        )
