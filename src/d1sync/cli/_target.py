"""Where a command runs: ``--local FILE``, ``--emulator URL`` or ``--remote`` (real D1).

Credentials never come from the command line (it leaks into shell history and ``ps``): the token is read
from ``CLOUDFLARE_API_TOKEN`` (remote) or ``D1SYNC_EMULATOR_TOKEN`` (emulator, falling back to
``CLOUDFLARE_API_TOKEN``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from d1sync.database import Database
from d1sync.emulator import DEFAULT_DATABASE_ID, DEFAULT_PORT, TOKEN_ENV

from ._common import fail

__all__ = ["Target", "emulator_api_base", "make_target", "target_options"]

F = TypeVar("F", bound=Callable[..., Any])


def emulator_api_base(url: str) -> str:
    """``http://127.0.0.1:8787`` -> ``http://127.0.0.1:8787/client/v4`` (kept if already there)."""
    url = url.rstrip("/")
    return url if url.endswith("/client/v4") else f"{url}/client/v4"


@dataclass(frozen=True)
class Target:
    """A parsed target choice; :meth:`open` gives the Database."""

    local: str | None = None
    emulator: str | None = None
    remote: bool = False
    database_id: str | None = None
    account_id: str | None = None  # e.g. from wrangler config; None -> the environment

    @property
    def description(self) -> str:
        if self.local:
            return f"local file {self.local}"
        if self.emulator:
            return f"emulator {self.emulator}"
        return "remote D1"

    def open(self) -> Database:
        if self.local:
            from d1sync.local import LocalDatabase

            return LocalDatabase(self.local)
        from d1sync.client import D1Client

        if self.emulator:
            token = os.environ.get(TOKEN_ENV) or os.environ.get("CLOUDFLARE_API_TOKEN")
            if not token:
                fail(
                    f"no token for the emulator at {self.emulator}",
                    f"export {TOKEN_ENV}=<the token the emulator was started with>",
                )
            return D1Client(
                account_id=os.environ.get("CLOUDFLARE_ACCOUNT_ID") or "emulator",
                database_id=self.database_id or DEFAULT_DATABASE_ID,
                api_token=token,
                base_url=emulator_api_base(self.emulator),
            )
        return D1Client(account_id=self.account_id, database_id=self.database_id)


def target_options(func: F) -> F:
    """Add ``--local/--emulator/--remote/--database-id`` and pass ``target: Target`` to the command."""

    options = [
        click.option(
            "--database-id",
            envvar="D1_DATABASE_ID",
            help="D1 database id (default: $D1_DATABASE_ID; with --emulator, the emulator's default database).",
        ),
        click.option("--remote", is_flag=True, help="Run against real D1 (credentials from the environment)."),
        click.option(
            "--emulator",
            metavar="URL",
            help=f"Run against a d1sync emulator, e.g. http://127.0.0.1:{DEFAULT_PORT} (token: ${TOKEN_ENV}).",
        ),
        click.option(
            "--local",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="Run against a local SQLite file.",
        ),
    ]
    for option in options:
        func = option(func)
    return func


def make_target(local: str | None, emulator: str | None, remote: bool, database_id: str | None) -> Target:
    """Validate that exactly one target was chosen."""
    chosen = [name for name, on in (("--local", local), ("--emulator", emulator), ("--remote", remote)) if on]
    if len(chosen) != 1:
        fail(
            "choose exactly one target" + (f" (got {' and '.join(chosen)})" if chosen else ""),
            "add --local FILE, --emulator URL or --remote",
            exit_code=2,
        )
    return Target(local=local, emulator=emulator, remote=remote, database_id=database_id)
