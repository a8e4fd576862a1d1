"""Write docs/cli.md from the command line itself (every command, its flags, exit codes, JSON), or check it.

    python scripts/generate_cli_docs.py          # rewrite docs/cli.md
    python scripts/generate_cli_docs.py --check  # exit 1 if docs/cli.md differs from what would be written

The flags and help texts come from the click commands, so the page cannot drift from the code; exit codes and
JSON shapes are stated here, next to the command they belong to, and tests check them against the commands.
``make lint`` runs the check.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from pathlib import Path

import click

from d1sync.cli import COMMANDS, cli
from d1sync.cli._exits import exit_codes

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "cli.md"

JSON = {
    "status": '`{"healthy", "health", "pending_changes", "pending_keys", "oldest_pending_age", "dead_letters", '
    '"tables", "last_success", "last_error", "backoff_remaining", "paused", "lease_owner", "rows_per_second", '
    '"rate_budget", '
    '"table_states": {TABLE: {"state", "pending", "reason", "fix", "note", "resending"}}}`',
    "sync": '`{"state", "rows", "requests", "dead", "retries", "seconds", "pending", "error", "drained"}`',
    "verify": '`{"equal", "queued", "seconds", "requests", "rows", "tables": [{"table", "equal", "local_rows", '
    '"remote_rows", "missing", "extra", "different", "pending", "samples": {"missing", "extra", "different"}, '
    '"skipped", "queued"}]}` (sample keys are lists of key values)',
    "track": '`{"tracked": [{"table", "key", "columns"}], "pending_changes"}`',
    "untrack": '`{"untracked": [TABLE], "pending_changes": {TABLE: N}, "delete_remote"}`',
    "dead list": '`[{"id", "table", "key", "op", "payload", "error", "attempts", "first_failed_at", '
    '"last_failed_at", "retrying"}]` (key and payload as lists of values)',
    "dead retry": '`{"requeued": N}`',
    "dead drop": '`{"dropped": N}`',
    "query": '`{"results": [ROW], "meta": {...}}` for one statement; a list of those for several',
}
CONVENTIONS = """\
Every command:

- takes `-v/--verbose` (debug logs, and where each target setting came from), `-q/--quiet`, `--log-level
  LEVEL` and `--traceback` (the stack of an error, for bug reports), before or after its name
  (`d1sync -q status app.db`, `d1sync migrations -q list`, `d1sync dead app.db -q`), and so does `--json`
  where the command offers it;
- with `-q` prints nothing when it succeeds (the exit code is the answer) and only the error when it fails;
  with `--json`, stdout holds the JSON only, `-q` or not;
- writes results to stdout and progress bars, logs, warnings and errors to stderr;
- reports an error as one `Error: ...` line, usually followed by a `Try: ...` line that names the flag,
  variable or command that applies to this invocation, and exits non-zero (2 for bad usage); under `--json`
  the error is also printed on stdout as `{"error": {"type", "message", "hint"}}`;
- never creates or changes a file it only reads: a missing DB or `--local` file is refused (exit 1), but
  `migrations apply --local` (and `tasks add --local`) create a new one, and say so;
- prints times in JSON as epoch seconds, and keys as lists of their values.

Targets (`--local FILE`, `--emulator URL`, `--remote`, `--database-id`, `--database`, `-c/--config`,
`--env`) resolve the same way everywhere: flags, then the environment, then `wrangler.toml`, then
`d1sync.toml` / `[tool.d1sync]`. Tokens come only from the environment (`CLOUDFLARE_API_TOKEN`,
`D1SYNC_EMULATOR_TOKEN`), stripped of surrounding whitespace; one with a control character is refused.
"""


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        flags, text = record
        flags, text = flags.replace("|", "\\|"), text.replace("|", "\\|")
        rows.append(f"| `{flags}` | {text} |")
    return rows


def _section(path: list[str], command: click.Command, parent: click.Context) -> list[str]:
    name = " ".join(path)
    ctx = click.Context(command, info_name=path[-1], parent=parent)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"### `d1sync {name}`", "", f"`d1sync {name} {usage}`".replace("  ", " "), ""]
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        if paragraph.startswith("\b\n"):  # click's "keep these lines as they are": a code block here
            lines += ["```text", paragraph.removeprefix("\b\n"), "```", ""]
        else:
            lines += [paragraph, ""]
    options = _options(command, ctx)
    if options:
        lines += ["| option | |", "|---|---|", *options, ""]
    codes = "; ".join(f"{code} {meaning}" for code, meaning in sorted(exit_codes(name).items()))
    lines += [f"**Exit codes:** {codes}", ""]
    if name in JSON:
        lines += [f"**JSON** (`--json`): {JSON[name]}", ""]
    return lines


def render() -> str:
    root = click.Context(cli, info_name="d1sync")
    lines = [
        "# The command line",
        "",
        "<!-- Generated by scripts/generate_cli_docs.py from the commands themselves: do not edit. -->",
        "",
        CONVENTIONS,
        "## Commands",
        "",
        "| command | does |",
        "|---|---|",
        *(f"| [`{name}`](#d1sync-{name}) | {COMMANDS[name][1]} |" for name in sorted(COMMANDS)),
        "",
    ]
    for name in sorted(COMMANDS):
        command = cli.get_command(root, name)
        assert command is not None
        lines += _section([name], command, root)
        if isinstance(command, click.Group):
            group_ctx = click.Context(command, info_name=name, parent=root)
            for sub in sorted(command.commands):
                lines += _section([name, sub], command.commands[sub], group_ctx)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), "docs/cli.md", "generated", lineterm=""
            )
            print("\n".join(list(diff)[:40]))
            print("docs/cli.md is stale: run `make cli-docs`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
