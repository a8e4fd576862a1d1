"""``d1sync query``: run SQL on a local file, the emulator or D1."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from d1sync.database import Result

from ._common import EXIT_USAGE, Command, console, fail, print_json
from ._target import target_from, target_options

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
@click.option(
    "--d1-rules",
    is_flag=True,
    help="With --local: apply D1's authorizer and limits to the file, so SQL D1 refuses fails here too.",
)
@target_options
def query(
    sql: str,
    params: tuple[str, ...],
    as_json: bool,
    d1_rules: bool,
    **target: Any,
) -> None:
    """Run SQL anywhere and print the rows.

    \b
    Examples:
      d1sync query --local app.db "SELECT * FROM messages LIMIT 5"
      d1sync query --emulator http://127.0.0.1:8787 "SELECT 1 AS one" --json
      d1sync query --remote "SELECT count(*) FROM messages" -p 42
      d1sync query --local app.db --d1-rules "PRAGMA user_version"   # refused, as on D1
    """
    resolved = target_from(target)
    if d1_rules and resolved.kind != "local":
        fail("--d1-rules applies to --local files only", "the emulator and D1 apply them already", exit_code=EXIT_USAGE)
    if d1_rules:
        from d1sync.local import LocalDatabase

        assert resolved.path is not None
        database: Any = LocalDatabase(resolved.path, d1_rules=True)
    else:
        database = resolved.open()
    with database as db:
        result = db.prepare(sql).bind(*params).all()
    if as_json:
        print_json({"results": result.results, "meta": result.meta.to_dict()})
    else:
        _render([result])
