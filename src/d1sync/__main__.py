"""``python -m d1sync``: the same as the ``d1sync`` command."""

from d1sync.cli import cli

cli(prog_name="d1sync")
