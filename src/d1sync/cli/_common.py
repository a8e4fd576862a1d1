"""What every command shares: one-line errors with a hint, JSON output, the rich console."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from rich.console import Console

from d1sync.errors import (
    AuthError,
    ConfigError,
    D1Error,
    D1SyncError,
    DatabaseNotFoundError,
    RateLimitedError,
    SQLError,
    TransientError,
)

__all__ = ["CLIError", "console", "err_console", "fail", "handle_errors", "print_json"]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class CLIError(click.ClickException):
    """A one-line error plus an optional ``Try:`` hint; exits with ``exit_code``."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.hint:
            click.echo(f"Try: {self.hint}", err=True)


def fail(message: str, hint: str | None = None, exit_code: int = 1) -> NoReturn:
    raise CLIError(message, hint, exit_code)


def _hint(exc: D1SyncError) -> str | None:
    if isinstance(exc, ConfigError):
        return "see `d1sync --help` and the README section 'Pointing d1sync at D1'"
    if isinstance(exc, AuthError):
        return "check CLOUDFLARE_API_TOKEN (it needs D1 edit permission) and the account id"
    if isinstance(exc, DatabaseNotFoundError):
        return "check the database id (D1_DATABASE_ID or --database-id); list them with the Cloudflare dashboard"
    if isinstance(exc, RateLimitedError):
        return "wait and run again; lower the request rate with --rate-limit"
    if isinstance(exc, TransientError):
        return "the failure may pass: run the command again"
    if isinstance(exc, SQLError):
        return "check the SQL against the table's schema"
    return None


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn library errors into one line with a hint and exit code 1 (never a traceback)."""
    try:
        yield
    except D1SyncError as exc:
        raise CLIError(str(exc), _hint(exc)) from exc
    except OSError as exc:
        raise CLIError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (bytes as hex, so any result is printable)."""

    def default(value: Any) -> Any:
        if isinstance(value, bytes | bytearray):
            return value.hex()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    sys.stdout.write(json.dumps(data, default=default, ensure_ascii=False, indent=2) + "\n")


def error_summary(exc: D1Error) -> dict[str, Any]:
    return {"error": exc.message, "code": exc.code, "status": exc.status, "retryable": exc.retryable}
