"""The target options every command shares, and their resolution through :func:`d1sync.target.resolve_target`.

``--local FILE``, ``--emulator URL`` or ``--remote``, plus ``--database-id``, ``--database NAME`` (the
wrangler entry), ``-c/--config`` (the wrangler file) and ``--env`` (a wrangler environment). Credentials
never come from the command line (it leaks into shell history and ``ps``): tokens are read from
``CLOUDFLARE_API_TOKEN`` (remote) or ``D1SYNC_EMULATOR_TOKEN`` (emulator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click
from rich.markup import escape

from d1sync.client.config import DEFAULT_EMULATOR_PORT, EMULATOR_TOKEN_ENV
from d1sync.target import Kind, Target, resolve_target

from ._common import err_console, need_file, remember_target

__all__ = ["TARGET_PARAMS", "open_target", "target_from", "target_options"]

F = TypeVar("F", bound=Callable[..., Any])

TARGET_PARAMS = ("local", "emulator", "remote", "database_id", "database", "config", "wrangler_env")
"""The names the target options pass to a command."""


def target_options(func: F) -> F:
    """Add the target options; the command receives them as keyword arguments (see :data:`TARGET_PARAMS`)."""
    options = [
        click.option(
            "--env", "wrangler_env", metavar="ENV", help="Use the d1_databases of [env.ENV] in wrangler.toml."
        ),
        click.option(
            "-c",
            "--config",
            type=click.Path(dir_okay=False, exists=True),
            help="The wrangler config (wrangler.toml/json/jsonc). Default: the nearest one from the current folder.",
        ),
        click.option(
            "--database",
            metavar="NAME",
            help="The [[d1_databases]] entry of wrangler.toml, by binding or database_name.",
        ),
        click.option(
            "--database-id",
            metavar="ID",
            help="The D1 database id (default: $D1_DATABASE_ID, then wrangler.toml, then d1sync.toml; "
            "with --emulator, then the emulator's default database).",
        ),
        click.option("--remote", is_flag=True, help="Real D1 (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID)."),
        click.option(
            "--emulator",
            metavar="URL",
            help=f"A d1sync emulator, e.g. http://127.0.0.1:{DEFAULT_EMULATOR_PORT} (token: ${EMULATOR_TOKEN_ENV}).",
        ),
        click.option("--local", metavar="FILE", type=click.Path(dir_okay=False), help="A local SQLite file."),
    ]
    for option in options:
        func = option(func)
    return func


def target_from(
    options: dict[str, Any], *, default: Kind | None = None, missing: Literal["refuse", "create", "allow"] = "refuse"
) -> Target:
    """Resolve the target from a command's target options (popped from ``options``).

    Under ``-v`` it prints where each setting came from. A wrong combination raises UsageError (exit 2). A
    ``--local`` file that does not exist is refused (exit 1), unless ``missing`` is ``"create"`` (a note says
    the command creates it, as `wrangler d1 migrations apply --local` does) or ``"allow"`` (the caller
    handles it).
    """
    given = {name: options.pop(name, None) for name in TARGET_PARAMS}
    target = resolve_target(
        local=given["local"],
        emulator=given["emulator"],
        remote=bool(given["remote"]),
        database_id=given["database_id"],
        database=given["database"],
        config=given["config"],
        wrangler_env=given["wrangler_env"],
        default=default,
    )
    remember_target(target)
    if target.kind == "local" and target.path is not None and not target.path.exists():
        if missing == "refuse":
            need_file(target.path)
        if missing == "create" and target.path.absolute().parent.is_dir():  # else opening it fails, naming the path
            err_console.print(f"created {escape(str(target.path))}: a new, empty SQLite database")
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("d1sync.verbose"):
        err_console.print(f"[dim]target: {escape(target.describe())}[/dim]")
        for line in target.explain():
            err_console.print(f"[dim]  {escape(line)}[/dim]")
    return target


def open_target(options: dict[str, Any], *, default: Kind | None = None, **client_options: Any) -> Any:
    """Resolve the target (:func:`target_from`: an existing ``--local`` file) and open its Database."""
    return target_from(options, default=default).open(**client_options)
