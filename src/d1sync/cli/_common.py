"""What every command shares: one-line errors with a hint that fits the invocation, exit codes, logging
options, JSON output, and the two consoles (results on stdout; progress, logs and errors on stderr).

Every command is a :class:`Command`: it gets ``-v/--verbose``, ``-q/--quiet``, ``--log-level`` and
``--traceback``, and any error becomes one line (``Error: ...`` plus ``Try: ...``) and a non-zero exit, never
a traceback unless ``--traceback`` asks for one.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console

from d1sync.cli import global_options
from d1sync.errors import (
    ConfigError,
    D1SyncError,
    SQLError,
    TransientError,
    UsageError,
)

from ._hints import shown

__all__ = [
    "EXIT_DEAD_LETTERS",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_TEMPFAIL",
    "EXIT_USAGE",
    "DB_ARG",
    "CLIError",
    "Command",
    "Group",
    "console",
    "echo",
    "err_console",
    "fail",
    "hint_for",
    "need_file",
    "need_outbox",
    "need_tracked",
    "open_outbox",
    "parse_rate_limit",
    "print_json",
    "remember_target",
    "run_with_flags",
    "serve_on",
    "shown",
]

if TYPE_CHECKING:
    from rich.table import Table

    from d1sync.sync import Outbox
    from d1sync.sync.compare.verify import TableDiff

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DEAD_LETTERS = 3
"""``sync``: everything was sent, but D1 refused some rows for good (see ``d1sync dead``)."""
EXIT_TEMPFAIL = 75
"""``sync``: another worker holds the drain lease (EX_TEMPFAIL: try again later, or pass --wait)."""
EXIT_INTERRUPTED = 130

DB_ARG = click.argument("db", type=click.Path(dir_okay=False))
"""The DB argument: the command checks that the file exists (:func:`need_file`), exit 1 and a hint if not."""

console = Console(highlight=False, soft_wrap=True)
"""Results (tables, JSON, summaries): stdout."""
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Progress bars, logs, warnings and errors: stderr."""


class CLIError(click.ClickException):
    """A one-line error plus an optional ``Try:`` hint; exits with ``exit_code``.

    ``kind`` names the error in ``--json`` output (an errors.py class name, ``UsageError`` or ``Error``).
    Under ``--json`` it is also printed on stdout as ``{"error": {"type", "message", "hint"}}``.
    """

    def __init__(
        self, message: str, hint: str | None = None, exit_code: int = EXIT_FAILURE, kind: str | None = None
    ) -> None:
        super().__init__(" ".join(message.split()))
        self.hint = hint
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class
        self.kind = kind or ("UsageError" if exit_code == EXIT_USAGE else "Error")
        self.as_json = False

    def show(self, file: Any = None) -> None:
        if self.as_json:
            error = {"type": self.kind, "message": self.format_message(), "hint": self.hint}
            sys.stdout.write(json.dumps({"error": error}, ensure_ascii=False, indent=2) + "\n")
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.hint:
            click.echo(f"Try: {self.hint}", err=True)


def fail(message: str, hint: str | None = None, exit_code: int = EXIT_FAILURE) -> NoReturn:
    raise CLIError(message, hint, exit_code)


def need_file(path: str | os.PathLike[str]) -> None:
    """Refuse a file that does not exist (exit 1): commands that read never create the file they read."""
    if os.path.exists(path):
        return
    where = Path(path).absolute().parent
    if not where.is_dir():
        fail(f"no such file: {path} (no folder {where})", "check the path")
    names = sorted(p.name for p in where.iterdir() if p.suffix in _DB_SUFFIXES and p.is_file())
    close = difflib.get_close_matches(Path(path).name, names, n=1)
    hint = f"check the path: did you mean {where / close[0]}?" if close else f"check the path (in {where})"
    fail(f"no such file: {path}", hint)


_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")


def parse_rate_limit(text: str | None) -> tuple[int, float] | None:
    """``"1200/300"`` -> ``(1200, 300.0)``: at most N requests per SECONDS (``--rate-limit`` of ``emulator``
    and ``fleet``)."""
    if not text:
        return None
    requests, sep, seconds = text.partition("/")
    try:
        value = (int(requests), float(seconds) if sep else 1.0)
    except ValueError:
        value = (0, 0.0)
    if value[0] < 1 or value[1] <= 0:
        fail(f"invalid --rate-limit {text!r}", "write N/SECONDS, e.g. --rate-limit 1200/300", exit_code=EXIT_USAGE)
    return value


T = TypeVar("T")


def serve_on(port: int, start: Callable[[int], T]) -> T:
    """``start(port)`` (a server on 127.0.0.1), or exit 1 naming the busy port and the way out (``--metrics-port``)."""
    try:
        return start(port)
    except OSError as exc:
        fail(
            f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}",
            "choose another --metrics-port, or --metrics-port 0 for a free one",
        )


def need_outbox(db: str) -> None:
    """Refuse (exit 1) a file where nothing was ever tracked, reading it only: no outbox tables are created,
    and neither its journal mode nor an empty file changes."""
    from d1sync.outbox import Outbox

    need_file(db)
    if not Outbox.exists(db):
        fail(f"{db} has no outbox: nothing in it is tracked", f"d1sync track {shown(db)} TABLE")


def need_tracked(db: str, tables: Sequence[str], tracked: Sequence[str]) -> None:
    """Refuse (exit 1) names that are not synced tables of ``db``, suggesting the one that was meant."""
    for table in tables:
        if table not in tracked:
            close = difflib.get_close_matches(table, tracked, n=1)
            nothing = f"nothing is tracked: d1sync track {shown(db)} TABLE"
            listed = f"synced tables: {', '.join(tracked)}" if tracked else nothing
            fail(
                f"table {table!r} is not synced in {db}", f"did you mean {close[0]!r}? ({listed})" if close else listed
            )


def open_outbox(db: str) -> Outbox:
    """The :class:`~d1sync.sync.Outbox` of ``db`` for commands that only read or manage it: a file where
    nothing was ever tracked is an error, and gets no outbox tables created by asking."""
    from d1sync.sync import Outbox

    need_outbox(db)
    return Outbox(db)


def remember_target(target: Any) -> None:
    """Keep the command's resolved target, so error hints can name the flag and variable that apply."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta["d1sync.target"] = target


def hint_for(kind: str) -> str | None:
    """The hint for an error of class ``kind`` (a name in errors.py) that fits this invocation's target."""
    ctx = click.get_current_context(silent=True)
    target: Any = ctx.meta.get("d1sync.target") if ctx is not None else None
    emulator = target is not None and target.kind == "emulator"
    if kind == "AuthError":
        if emulator:
            return f"{target.token_variable} must equal the token the emulator was started with (--token)"
        return "check CLOUDFLARE_API_TOKEN (it needs D1 edit permission) and the account id"
    if kind == "DatabaseNotFoundError":
        if emulator:
            return "start the emulator with --auto-create, or pass --database-id of a database it has"
        return "check the database id (--database-id, D1_DATABASE_ID or wrangler.toml); `wrangler d1 list` shows them"
    if kind == "SchemaMismatchError":
        where = " --remote"
        if emulator and target.base_url:
            where = f" --emulator {target.base_url.removesuffix('/client/v4')}"
        elif target is not None and target.kind == "local":
            where = f" --local {target.path}"
        return f"apply the same migrations there: d1sync migrations apply{where}"
    if kind == "UnreachableError":
        if emulator:
            return "is `d1sync emulator` running there? Start it, or pass the --emulator URL it printed"
        if target is not None and target.kind == "remote":
            return "check the network, and D1SYNC_API_BASE if you set it"
        return None
    if kind == "RateLimitedError":
        return "wait a few minutes (Cloudflare locks an account out for 5 minutes) and run the command again"
    return None


_LOCAL_HINTS = {
    "SQLITE_FULL": "free space on the disk holding the file; nothing is lost, and syncing resumes by itself",
    "SQLITE_IOERR": "the disk failed to read or write the file: check the disk and the file system",
    "SQLITE_CORRUPT": "the file is damaged: restore it from a backup, or from D1 with `d1sync clone`",
    "SQLITE_READONLY": "the file or its folder is read-only here: d1sync writes its outbox into the file",
}
"""Hints for failures of a local file (an error with no HTTP status), by SQLite's result code."""


def _hint(exc: BaseException, ctx: click.Context) -> str | None:
    """A hint that fits the error *and* this invocation (its target, its flags)."""
    for kind in type(exc).__mro__:
        hint = hint_for(kind.__name__)
        if hint is not None:
            return hint
    if isinstance(exc, TransientError):
        return "the failure may pass: run the command again"
    if isinstance(exc, SQLError) and exc.result_code in _LOCAL_HINTS and exc.status is None:
        return _LOCAL_HINTS[exc.result_code]
    if isinstance(exc, SQLError) and exc.result_code == "SQLITE_FULL":
        return "D1's database is full (10 GB; 500 MB on the free plan): delete rows there or move tables to another"
    if isinstance(exc, SQLError) and exc.result_code in ("SQLITE_NOTADB", "SQLITE_CANTOPEN"):
        return "check the path: it must be a SQLite database file (or a new file in a folder that exists)"
    if isinstance(exc, SQLError):
        return "check the SQL against the table's schema"
    return None  # ConfigError, MigrationError and the rest: their messages already say what to change


_FLAGS = ("verbose", "quiet", "log_level", "traceback", "json")
"""The global flags: a group takes them before its subcommand, a command after its name; they add up."""


def _take_flags(ctx: click.Context) -> None:
    """Move this command's global flags from its parameters into ``ctx.meta`` (shared with its subcommands),
    where a flag given at any level stays on."""
    for name in _FLAGS:
        if name == "json" and not isinstance(ctx.command, click.Group):
            continue  # a command's own --json stays its parameter (as_json)
        value = ctx.params.pop(name, None)
        if value:
            ctx.meta[f"d1sync.{name}"] = value


def _settle(command: click.Command, ctx: click.Context) -> None:
    """Apply the global flags: the log level, and --json given before the subcommand."""
    if isinstance(command, Command):
        offers_json = any(p.name == "as_json" for p in command.params)
        if ctx.params.get("as_json"):
            ctx.meta["d1sync.json"] = True
        elif ctx.meta.get("d1sync.json"):
            if not offers_json:
                fail(
                    f"`{ctx.command_path}` has no --json", f"`{ctx.command_path} --help` lists its options", EXIT_USAGE
                )
            if "as_json" in ctx.params:
                ctx.params["as_json"] = True
    verbose = bool(ctx.meta.get("d1sync.verbose"))
    quiet = bool(ctx.meta.get("d1sync.quiet"))
    ctx.meta["d1sync.traceback"] = bool(ctx.meta.get("d1sync.traceback")) or verbose
    level = ctx.meta.get("d1sync.log_level")
    configure_logging(level or ("CRITICAL" if quiet else "DEBUG" if verbose else "INFO"))  # -q beats -v


def run_with_flags(command: click.Command, ctx: click.Context, call: Callable[[], Any]) -> Any:
    """Run ``call`` with the global flags applied: with -q nothing is printed but errors (and --json)."""
    _take_flags(ctx)
    quiet = console.quiet, err_console.quiet
    try:
        _guarded(lambda: _settle(command, ctx), ctx)
        if ctx.meta.get("d1sync.quiet"):
            console.quiet = err_console.quiet = True
        return _guarded(call, ctx)
    finally:
        console.quiet, err_console.quiet = quiet


class Command(click.Command):
    """A click command with d1sync's logging options and error handling (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_options())

    def invoke(self, ctx: click.Context) -> Any:
        return run_with_flags(self, ctx, lambda: super(Command, self).invoke(ctx))


def _guarded(call: Callable[[], Any], ctx: click.Context) -> Any:
    """Run ``call``; any error becomes a one-line CLIError (unless --traceback asked for the stack)."""
    try:
        return call()
    except CLIError as exc:
        exc.as_json = _error_as_json(ctx)
        raise
    except click.UsageError as exc:
        if not ctx.meta.get("d1sync.json"):
            raise
        usage = CLIError(exc.format_message(), f"`{ctx.command_path} --help`", EXIT_USAGE)
        usage.as_json = True
        raise usage from exc
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        raise CLIError("interrupted", exit_code=EXIT_INTERRUPTED) from None
    except Exception as exc:
        if ctx.meta.get("d1sync.traceback"):
            raise
        error = _one_line(exc, ctx)
        error.as_json = _error_as_json(ctx)
        raise error from exc


def _error_as_json(ctx: click.Context) -> bool:
    """Under --json an error is JSON on stdout too, unless the command printed its JSON (which says it)."""
    return bool(ctx.meta.get("d1sync.json")) and not ctx.meta.get("d1sync.printed")


def _one_line(exc: Exception, ctx: click.Context) -> CLIError:
    if isinstance(exc, ConfigError) and exc.hint:  # the error knows its fix
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURE
        return CLIError(exc.message, exc.hint, code, kind=type(exc).__name__)
    if isinstance(exc, UsageError):
        return CLIError(str(exc), _hint(exc, ctx), EXIT_USAGE)
    if isinstance(exc, D1SyncError):
        return CLIError(str(exc), _hint(exc, ctx), kind=type(exc).__name__)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return CLIError(f"{exc.strerror or exc}{where}", kind="OSError")
    return CLIError(
        f"internal error: {type(exc).__name__}: {exc}",
        f"run it again with --traceback and report the output at the d1sync issue tracker ({ctx.command_path})",
        kind="InternalError",
    )


class Group(click.Group):
    """A click group whose subcommands are :class:`Command` s (its own callback's errors are one line too).

    It takes the global flags too, so ``d1sync -q status`` and ``d1sync migrations -q list`` work.
    """

    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_options(group=True))

    def invoke(self, ctx: click.Context) -> Any:
        return run_with_flags(self, ctx, lambda: super(Group, self).invoke(ctx))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """A group with arguments of its own (``dead DB``) also takes the global flags between those and the
        subcommand (``dead app.db -q``): click would read them as the subcommand's name."""
        positional = sum(1 for p in self.params if isinstance(p, click.Argument))
        if positional and len(args) > positional and not any(a.startswith("-") for a in args[:positional]):
            valued = {o for p in self.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts}
            flags = {o for p in self.params if isinstance(p, click.Option) for o in p.opts} - {"--help", "-h"}
            rest, moved = args[positional:], list[str]()
            while rest and rest[0].split("=")[0] in flags:
                take = 2 if rest[0] in valued else 1
                moved, rest = moved + rest[:take], rest[take:]
            args = moved + args[:positional] + rest
        return super().parse_args(ctx, args)


def echo(text: str, *, err: bool = False) -> None:
    """Print plain text (no rich markup), unless -q."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.meta.get("d1sync.quiet"):
        click.echo(text, err=err)


class JSONFormatter(logging.Formatter):
    """One JSON object per log line: ts, level, logger, msg."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (click's test runner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """StreamHandler.__init__ sets it; ignored, since the property always answers sys.stderr."""


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send d1sync's logs to stderr at ``level``, as text or JSON lines."""
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("d1sync")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (bytes as hex, so any result is printable); under -q only if --json
    was given."""

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("d1sync.quiet") and not ctx.meta.get("d1sync.json"):
        return  # -q without --json: the exit code is the answer

    if ctx is not None:
        ctx.meta["d1sync.printed"] = True

    def default(value: Any) -> Any:
        if isinstance(value, bytes | bytearray):
            return value.hex()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    sys.stdout.write(json.dumps(data, default=default, ensure_ascii=False, indent=2) + "\n")


def diff_table(diffs: Sequence[TableDiff], other: str) -> Table:
    """The verify of copied tables (clone, restore): rows here, rows on the ``other`` side, equal or how not."""
    from rich.table import Table

    table = Table("table", "rows", other, "result")
    for diff in diffs:
        result = "[green]equal[/green]" if diff.equal else f"[red]different[/red] ({diff.missing} missing, "
        if not diff.equal:
            result += f"{diff.extra} extra, {diff.different} different)"
        table.add_row(diff.table, f"{diff.local_rows:,}", f"{diff.remote_rows:,}", result)
    return table
