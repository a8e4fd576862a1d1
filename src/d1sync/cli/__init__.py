"""The ``d1sync`` command line. Thin: parse options, call the library, render with rich.

Each command group lives in its own module here and exposes ``COMMANDS``, a list of click commands; the
group below collects them, so adding a command never means editing a shared registry.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

from d1sync._version import __version__

__all__ = ["cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="d1sync")
def cli() -> None:
    """d1sync: write to SQLite at local speed; a durable outbox carries every write to Cloudflare D1.

    Start with `d1sync demo`, which runs the whole job on the embedded emulator.
    """


def _register() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()
