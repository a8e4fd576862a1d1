"""``python -m d1sync.cli``: the same as the ``d1sync`` command."""

from d1sync.cli import cli

cli()
