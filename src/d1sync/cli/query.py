"""``d1sync query``: run SQL on a local file, the emulator or D1."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from d1sync.database import Result

from ._common import Command, console, print_json
from ._target import open_target, target_options

__all__ = ["query"]


def _render(results: list[Result]) -> None:
    for result in results:
        rows = result.results
        if rows:
            table = Table(show_header=True, header_style="bold")
            for column in rows[0]:
                table.add_column(column)
            for row in rows:
                table.add_row(*(_cell(v) for v in row.values()))
            console.print(table)
        meta = result.meta
        console.print(
            f"[dim]{len(rows)} row(s), {meta.changes} change(s), last_row_id {meta.last_row_id}, "
            f"{meta.duration:.1f} ms[/dim]"
        )


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]NULL[/dim]"
    if isinstance(value, bytes):
        return f"x'{value.hex()}'"
    return str(value).replace("[", r"\[")


@click.command(cls=Command)
@click.argument("sql")
@click.option("-p", "--param", "params", multiple=True, help="Bind a parameter (repeatable, as text).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON instead of a table.")
@target_options
def query(
    sql: str,
    params: tuple[str, ...],
    as_json: bool,
    **target: Any,
) -> None:
    """Run SQL anywhere and print the rows.

    \b
    Examples:
      d1sync query --local app.db "SELECT * FROM messages LIMIT 5"
      d1sync query --emulator http://127.0.0.1:8787 "SELECT 1 AS one" --json
      d1sync query --remote "SELECT count(*) FROM messages" -p 42
    """
    with open_target(target) as db:
        result = db.prepare(sql).bind(*params).all()
    if as_json:
        print_json({"results": result.results, "meta": result.meta.to_dict()})
    else:
        _render([result])
