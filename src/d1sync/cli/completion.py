"""``d1sync completion SHELL``: print the shell completion script (click's own completion, for d1sync)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from ._common import Command, echo

__all__ = ["completion"]


@click.command(cls=Command)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    Install it, for example:
      d1sync completion bash > ~/.local/share/bash-completion/completions/d1sync
      d1sync completion zsh > "${fpath[1]}/_d1sync"
      d1sync completion fish > ~/.config/fish/completions/d1sync.fish
    """
    from d1sync.cli import cli

    kind = get_completion_class(shell)
    assert kind is not None  # click ships all three
    echo(kind(cli, {}, "d1sync", "_D1SYNC_COMPLETE").source())
