"""``d1sync query``: run SQL on a local file, the emulator or D1."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from d1sync.database import Result
from d1sync.sql import split_statements

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


def _read_sql(sql: str | None, file: str | None) -> str:
    """The SQL to run: the argument, ``-`` for standard input, or ``--file``'s contents."""
    if (sql is None) == (file is None):
        fail(
            "give the SQL as an argument (or - for stdin), or --file FILE, not both or neither",
            'd1sync query --local app.db "SELECT 1"  or  d1sync query --local app.db --file schema.sql',
            EXIT_USAGE,
        )
    if file is not None:
        try:
            with open(file, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {file}: {exc}", "pass a readable UTF-8 SQL file")
    assert sql is not None
    return sys.stdin.read() if sql == "-" else sql


def _open(target: dict[str, Any], *, d1_rules: bool) -> Any:
    """The target's Database; with ``d1_rules``, a local file under D1's authorizer and limits.

    A local file keeps its journal mode: query runs the SQL it is given and writes nothing else.
    """
    resolved = target_from(target)
    if resolved.kind != "local" or resolved.path is None:
        if d1_rules:
            fail("--d1-rules applies to --local files only", "the emulator and D1 apply them already", EXIT_USAGE)
        return resolved.open()
    from d1sync.local import LocalDatabase

    return LocalDatabase(resolved.path, d1_rules=d1_rules, wal=False)


@click.command(cls=Command)
@click.argument("sql", required=False)
@click.option("-f", "--file", type=click.Path(dir_okay=False), help="Run the statements of this SQL file.")
@click.option("-p", "--param", "params", multiple=True, help="Bind a parameter (repeatable, as text).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON instead of a table.")
@click.option(
    "--d1-rules",
    is_flag=True,
    help="With --local: apply D1's authorizer and limits to the file, so SQL D1 refuses fails here too.",
)
@target_options
def query(
    sql: str | None,
    file: str | None,
    params: tuple[str, ...],
    as_json: bool,
    d1_rules: bool,
    **target: Any,
) -> None:
    """Run SQL anywhere and print the rows.

    SQL is one statement or several (then run as one atomic batch, as `wrangler d1 execute --file` does),
    given as an argument, as - to read standard input, or with --file.

    \b
    Examples:
      d1sync query --local app.db "SELECT * FROM messages LIMIT 5"
      d1sync query --emulator http://127.0.0.1:8787 "SELECT 1 AS one" --json
      d1sync query --remote "SELECT count(*) FROM messages WHERE id > ?" -p 42
      d1sync query --local app.db --file migrations/0001_init.sql
      echo "SELECT 1" | d1sync query --local app.db -
      d1sync query --local app.db --d1-rules "PRAGMA user_version"   # refused, as on D1
    """
    text = _read_sql(sql, file)
    statements = split_statements(text)
    if not statements:
        fail("the SQL holds no statement (only comments or whitespace)", "give at least one statement", EXIT_USAGE)
    if params and len(statements) > 1:
        fail(f"-p binds one statement, but the SQL holds {len(statements)}", "run them one at a time", EXIT_USAGE)
    with _open(target, d1_rules=d1_rules) as db:
        if len(statements) == 1:
            results = [db.prepare(statements[0]).bind(*params).all()]
        else:
            results = db.batch([db.prepare(statement) for statement in statements])
    if as_json:
        shaped = [{"results": r.results, "meta": r.meta.to_dict()} for r in results]
        print_json(shaped[0] if len(shaped) == 1 else shaped)
    else:
        _render(results)
