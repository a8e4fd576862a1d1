"""The ``d1sync`` command line. Thin: parse options, call the library, render with rich.

Commands load lazily: :data:`COMMANDS` names each command's module and its one-line help, so ``d1sync --help``
lists them without importing any (the web server, the benchmarks and the HTTP client load only in the
commands that use them). A test checks that each line here matches the command's own help.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from d1sync._version import __version__

__all__ = ["COMMANDS", "cli", "global_options"]

COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("d1sync.cli.bench", "Measure d1sync on the embedded emulator over a real loopback socket."),
    "clone": (
        "d1sync.cli.clone",
        "Copy a D1 database (or the emulator's, or a file's) into the new SQLite file FILE, exactly.",
    ),
    "completion": ("d1sync.cli.completion", "Print the completion script for SHELL (bash, zsh or fish)."),
    "dead": ("d1sync.cli.status", "Inspect, retry or drop DB's dead letters (changes D1 refused permanently)."),
    "demo": ("d1sync.cli.demo", "Write an agent daemon's state locally while syncing it to the emulator under faults."),
    "emulator": ("d1sync.cli.emulator", "Serve a local D1: the Cloudflare REST API over SQLite files."),
    "fleet": (
        "d1sync.cli.fleet",
        "Sync a folder of tenant files, each to its own D1 database, under one account budget.",
    ),
    "migrations": (
        "d1sync.cli.migrations",
        "wrangler-compatible migrations: same files, same d1_migrations ledger, same order.",
    ),
    "query": ("d1sync.cli.query", "Run SQL anywhere and print the rows."),
    "replicate": (
        "d1sync.cli.replicate",
        "Make TABLES of DB two-way: `d1sync run` and `sync` also pull their remote changes.",
    ),
    "restore": (
        "d1sync.cli.restore",
        "Restore the SQLite file FILE into a new D1 database (or an empty one), exactly.",
    ),
    "resume": ("d1sync.cli.outbox", "Clear DB's pauses and back-off so the next sync tries at once (after a fix)."),
    "run": ("d1sync.cli.sync", "Run the sync daemon for DB in the foreground (both ways for two-way tables)."),
    "status": ("d1sync.cli.status", "Show DB's outbox: pending changes, dead letters, last success/error."),
    "sync": (
        "d1sync.cli.sync",
        "Drain DB's outbox until it is empty, then pull two-way tables until caught up, then exit.",
    ),
    "tasks": ("d1sync.cli.tasks", "An atomic task queue on a local file, the emulator or D1 (JSON output)."),
    "track": ("d1sync.cli.outbox", "Capture every write to TABLES of DB in the outbox (installs triggers)."),
    "untrack": ("d1sync.cli.outbox", "Stop capturing writes to TABLES of DB (removes triggers)."),
    "verify": (
        "d1sync.cli.verify",
        "Compare DB's synced TABLES (default: all) with the remote exactly: every row, value and type.",
    ),
}
"""Every command: its module (which defines a click command of the same name) and its one-line help."""


def global_options(*, group: bool = False) -> list[click.Parameter]:
    """The flags every command takes (after its name, or before it as a group's): -v, -q, --log-level,
    --traceback; a group also takes --json for the subcommands that offer it."""
    options: list[click.Parameter] = [
        click.Option(["-v", "--verbose"], is_flag=True, help="Debug logging; show where settings came from."),
        click.Option(
            ["-q", "--quiet"], is_flag=True, help="Print nothing but errors (and --json output); the exit code tells."
        ),
        click.Option(
            ["--log-level"],
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            help="Log level of d1sync's own logs (default INFO; -v DEBUG; -q none).",
        ),
        click.Option(["--traceback"], is_flag=True, help="Show the full stack of an error (for bug reports)."),
    ]
    if group:
        options.append(click.Option(["--json"], is_flag=True, help="JSON output, for subcommands that offer --json."))
    return options


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs (or its own help is asked for)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_options(group=True))

    def invoke(self, ctx: click.Context) -> Any:
        from ._common import run_with_flags  # not for --help, which stops before invoke

        return run_with_flags(self, ctx, lambda: super(LazyGroup, self).invoke(ctx))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry[0]), cmd_name.replace("-", "_"))
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="d1sync")
def cli() -> None:
    """d1sync: write to SQLite at local speed; a durable outbox carries every write to Cloudflare D1.

    Start with `d1sync demo`, which runs the whole job on the embedded emulator. Every command takes
    -v/--verbose, -q/--quiet, --log-level and --traceback, before or after its name (`d1sync -q status
    app.db` is `d1sync status app.db -q`), and so does --json where the command offers it.
    """
