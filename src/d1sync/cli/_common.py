"""What every command shares: one-line errors with a hint that fits the invocation, exit codes, logging
options, JSON output, and the two consoles (results on stdout; progress, logs and errors on stderr).

Every command is a :class:`Command`: it gets ``-v/--verbose``, ``-q/--quiet``, ``--log-level`` and
``--traceback``, and any error becomes one line (``Error: ...`` plus ``Try: ...``) and a non-zero exit, never
a traceback unless ``--traceback`` asks for one.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console

from d1sync.errors import (
    D1SyncError,
    SQLError,
    TransientError,
    UsageError,
)

__all__ = [
    "EXIT_DEAD_LETTERS",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_TEMPFAIL",
    "EXIT_USAGE",
    "CLIError",
    "Command",
    "Group",
    "console",
    "err_console",
    "fail",
    "hint_for",
    "open_outbox",
    "print_json",
    "remember_target",
]

if TYPE_CHECKING:
    from d1sync.sync import Outbox

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DEAD_LETTERS = 3
"""``sync``: everything was sent, but D1 refused some rows for good (see ``d1sync dead``)."""
EXIT_TEMPFAIL = 75
"""``sync``: another worker holds the drain lease (EX_TEMPFAIL: try again later, or pass --wait)."""
EXIT_INTERRUPTED = 130

console = Console(highlight=False, soft_wrap=True)
"""Results (tables, JSON, summaries): stdout."""
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Progress bars, logs, warnings and errors: stderr."""


class CLIError(click.ClickException):
    """A one-line error plus an optional ``Try:`` hint; exits with ``exit_code``."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(" ".join(message.split()))
        self.hint = hint
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.hint:
            click.echo(f"Try: {self.hint}", err=True)


def fail(message: str, hint: str | None = None, exit_code: int = EXIT_FAILURE) -> NoReturn:
    raise CLIError(message, hint, exit_code)


def open_outbox(db: str) -> Outbox:
    """The :class:`~d1sync.sync.Outbox` of ``db`` for commands that only read or manage it: a file where
    nothing was ever tracked is an error, and gets no outbox tables created by asking."""
    from d1sync.sync import Outbox

    if not Outbox.exists(db):
        fail(f"{db} has no outbox: no table of it was ever tracked", f"d1sync track {db} TABLE...")
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


def _hint(exc: BaseException, ctx: click.Context) -> str | None:
    """A hint that fits the error *and* this invocation (its target, its flags)."""
    for kind in type(exc).__mro__:
        hint = hint_for(kind.__name__)
        if hint is not None:
            return hint
    if isinstance(exc, TransientError):
        return "the failure may pass: run the command again"
    if isinstance(exc, SQLError) and exc.result_code in ("SQLITE_NOTADB", "SQLITE_CANTOPEN"):
        return "check the path: it must be a SQLite database file (or a new file in a folder that exists)"
    if isinstance(exc, SQLError):
        return "check the SQL against the table's schema"
    return None  # ConfigError, MigrationError and the rest: their messages already say what to change


class Command(click.Command):
    """A click command with d1sync's logging options and error handling (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_common_options())

    def invoke(self, ctx: click.Context) -> Any:
        traceback = bool(ctx.params.pop("traceback", False))
        verbose = bool(ctx.params.pop("verbose", False))
        quiet = bool(ctx.params.pop("quiet", False))
        level = ctx.params.pop("log_level", None)
        ctx.meta["d1sync.verbose"] = verbose
        ctx.meta["d1sync.traceback"] = traceback or verbose
        configure_logging(level or ("DEBUG" if verbose else "ERROR" if quiet else "INFO"))
        ctx.meta["d1sync.quiet"] = quiet
        return _guarded(lambda: super(Command, self).invoke(ctx), ctx)


def _guarded(call: Callable[[], Any], ctx: click.Context) -> Any:
    """Run ``call``; any error becomes a one-line CLIError (unless --traceback asked for the stack)."""
    try:
        return call()
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        raise CLIError("interrupted", exit_code=EXIT_INTERRUPTED) from None
    except Exception as exc:
        if ctx.meta.get("d1sync.traceback"):
            raise
        raise _one_line(exc, ctx) from exc


def _one_line(exc: Exception, ctx: click.Context) -> CLIError:
    if isinstance(exc, UsageError):
        return CLIError(str(exc), exit_code=EXIT_USAGE)
    if isinstance(exc, D1SyncError):
        return CLIError(str(exc), _hint(exc, ctx))
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return CLIError(f"{exc.strerror or exc}{where}")
    return CLIError(
        f"internal error: {type(exc).__name__}: {exc}",
        f"run it again with --traceback and report the output at the d1sync issue tracker ({ctx.command_path})",
    )


class Group(click.Group):
    """A click group whose subcommands are :class:`Command` s (its own callback's errors are one line too)."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        return _guarded(lambda: super(Group, self).invoke(ctx), ctx)


def _common_options() -> list[click.Parameter]:
    return [
        click.Option(["-v", "--verbose"], is_flag=True, help="Debug logging; show where settings came from."),
        click.Option(["-q", "--quiet"], is_flag=True, help="Only errors on stderr."),
        click.Option(
            ["--log-level"],
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            help="Log level of d1sync's own logs (default INFO; -v DEBUG, -q ERROR).",
        ),
        click.Option(["--traceback"], is_flag=True, help="Show the full stack of an error (for bug reports)."),
    ]


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
    """Write ``data`` as JSON to stdout (bytes as hex, so any result is printable)."""

    def default(value: Any) -> Any:
        if isinstance(value, bytes | bytearray):
            return value.hex()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    sys.stdout.write(json.dumps(data, default=default, ensure_ascii=False, indent=2) + "\n")
