"""The public surface: one sorted front door, and help text on every command."""

from __future__ import annotations

import click
from click.testing import CliRunner

import d1sync
from d1sync.cli import cli


def test_all_is_sorted_and_every_name_exists() -> None:
    assert d1sync.__all__ == sorted(d1sync.__all__)
    for name in d1sync.__all__:
        assert hasattr(d1sync, name), name


def test_the_engines_former_home_still_exports_every_public_name_of_the_engine() -> None:
    import d1sync.outbox
    import d1sync.sync

    assert d1sync.outbox.__all__ == d1sync.sync.__all__ == sorted(d1sync.sync.__all__)
    for name in d1sync.sync.__all__:
        assert getattr(d1sync.outbox, name) is getattr(d1sync.sync, name), name


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append(((*prefix, name), command))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def test_every_command_and_option_has_help_text() -> None:
    commands = _commands(cli)
    assert {"demo", "query", "track", "sync", "run", "status", "dead"} <= {path[0] for path, _ in commands}
    for path, command in commands:
        assert command.help, f"`d1sync {' '.join(path)}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"`d1sync {' '.join(path)}` option {param.opts[0]} has no help text"
        result = CliRunner().invoke(cli, [*_argv(path), "--help"])
        assert result.exit_code == 0, result.output


def _argv(path: tuple[str, ...]) -> list[str]:
    """The command line reaching ``path``: a group's own arguments (``dead DB list``) get an existing file."""
    argv: list[str] = []
    group: click.Command = cli
    for i, name in enumerate(path):
        assert isinstance(group, click.Group)
        found = group.get_command(click.Context(group), name)
        assert found is not None
        group = found
        argv.append(name)
        if i < len(path) - 1:
            argv += [__file__ for p in group.params if isinstance(p, click.Argument)]
    return argv


def test_version_option_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert d1sync.__version__ in result.output


def test_the_types_users_hold_are_exported_from_the_front_door() -> None:
    for name in ("Status", "SyncResult", "DeadLetter", "TableSpec", "drain", "DrainReport", "RetryPolicy", "Backoff"):
        assert name in d1sync.__all__, name
    assert issubclass(d1sync.ModuleStore, d1sync.Database)


def test_the_lazy_command_list_matches_each_commands_own_help() -> None:
    from d1sync.cli import COMMANDS

    ctx = click.Context(cli)
    for name, (_, summary) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.help is not None, name
        first_paragraph = " ".join(command.help.split("\n\n")[0].split())
        assert summary == first_paragraph, f"COMMANDS[{name!r}] says {summary!r}; the command says {first_paragraph!r}"
