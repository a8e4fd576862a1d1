"""``d1sync restore``: a local SQLite file into a new (or an empty) D1 database, through D1's import."""

from __future__ import annotations

import dataclasses
from typing import Any

import click
from rich.markup import escape

from d1sync.client import D1Client
from d1sync.errors import D1SyncError
from d1sync.restore import RestoreReport
from d1sync.restore import restore as restore_file

from ._common import EXIT_USAGE, Command, console, diff_table, fail, need_file, print_json, shown
from ._target import target_from, target_options

__all__ = ["restore"]


def _render(file: str, report: RestoreReport) -> None:
    console.print(diff_table(report.tables, "in D1"))
    for note in report.notes:
        console.print(f"[yellow]note: {escape(note)}[/yellow]")
    where = f"the new database {escape(report.name or '')}" if report.created else "the database"
    console.print(
        f"restored {escape(file)} into {where} in {report.seconds:.1f}s: {report.statements:,} statement(s) "
        f"imported; verified every table"
    )
    console.print(f"database_id = {report.database_id}")


@click.command("restore", cls=Command)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--to", "name", metavar="NAME", help="Create a new D1 database called NAME and restore into it.")
@click.option("--into", metavar="ID", help="Restore into the existing database ID, which must be empty.")
@click.option(
    "--location-hint",
    metavar="HINT",
    help="Where D1 places a new database (wnam, enam, weur, eeur, apac, oc).",
)
@click.option(
    "--jurisdiction",
    type=click.Choice(["eu", "fedramp", "us"]),
    help="Keep a new database's data in this jurisdiction.",
)
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (stdout).")
def restore(
    file: str,
    name: str | None,
    into: str | None,
    location_hint: str | None,
    jurisdiction: str | None,
    as_json: bool,
    **target: Any,
) -> None:
    """Restore the SQLite file FILE into a new D1 database (or an empty one), exactly.

    Sends FILE's schema and rows through D1's import (the path `wrangler d1 execute --file` takes: a few API
    requests, the file itself outside the request budget): tables, indexes, views, triggers, FTS5 tables
    with their content, every value exact (integers beyond 2^53, BLOBs, REALs bit for bit). D1 runs the
    import as one transaction and is briefly unavailable meanwhile. Ends with a verify of every table and
    prints the database id. With `d1sync clone` (D1 to a file), a backup and restore that works on FTS5.

    \b
    Examples:
      d1sync restore --remote app.db --to app-restored --location-hint weur
      d1sync restore --remote app.db --into 0f1e...-... (an empty database)
      d1sync restore --emulator http://127.0.0.1:8787 app.db --to app

    Exit codes: 0 restored and equal; 1 failed or a table differs; 2 bad usage.
    """
    if (name is None) == (into is None):
        fail(
            "give --to NAME (a new database) or --into ID (an empty one)",
            f"d1sync restore {shown(file)} --to NAME",
            EXIT_USAGE,
        )
    resolved = target_from(target, default="remote", missing="allow")
    if resolved.kind == "local":
        fail(
            "restore sends FILE to D1 or the emulator, not to a local file",
            "choose --remote or --emulator URL",
            EXIT_USAGE,
        )
    need_file(file)
    created: list[str] = []
    client = D1Client(
        account_id=resolved.account_id,
        database_id=into,
        api_token=resolved.api_token,
        base_url=resolved.base_url,
    )
    try:
        report = restore_file(
            file,
            client,
            name=name,
            into=into,
            location_hint=location_hint,
            jurisdiction=jurisdiction,
            on_created=created.append,
        )
    except D1SyncError as exc:
        if not created:
            raise
        fail(
            f"{exc} (the new database {created[0]} is left behind, empty if the import failed)",
            f"fix the cause, then restore into it: d1sync restore {shown(file)} --into {created[0]}",
        )
    finally:
        client.close()
    if as_json:
        data = dataclasses.asdict(report)
        data["equal"] = report.equal
        print_json(data)
    else:
        _render(file, report)
    if not report.equal:
        fail(
            f"the restored database {report.database_id} differs from {file}",
            f"compare them: d1sync clone ... --database-id {report.database_id} copy.db",
        )
