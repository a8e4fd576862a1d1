"""``d1sync emulator``: serve a local D1 (the REST API over SQLite files), optionally with faults."""

from __future__ import annotations

import ipaddress
import os
import secrets
from typing import Any

import click

from d1sync.client.config import clean_token
from d1sync.emulator import (
    DEFAULT_DATABASE_ID,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_IMPORT,
    DEFAULT_PORT,
    TOKEN_ENV,
)
from d1sync.emulator.faults import FaultConfig

from ._common import EXIT_USAGE, Command, echo, fail, parse_rate_limit

__all__ = ["emulator", "parse_rate_limit"]

DEFAULT_DATA_DIR = os.path.join(".d1sync", "emulator")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import apsw

    from d1sync._version import __version__

    click.echo(f"d1sync emulator {__version__} (SQLite {apsw.sqlite_lib_version()}, apsw {apsw.apsw_version()})")
    ctx.exit()


@click.command(cls=Command)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the emulator's version and the SQLite version its engine runs, then exit.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port (0: pick a free one)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Folder of SQLite files, one per database id.",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    help="Bearer token clients must send (default: $D1SYNC_EMULATOR_TOKEN, else a random one is printed).",
)
@click.option("--auto-create", is_flag=True, help="Create unknown database ids on first use instead of 7404.")
@click.option(
    "--max-body",
    metavar="BYTES",
    type=click.IntRange(1),
    default=DEFAULT_MAX_BODY,
    show_default=True,
    envvar="D1SYNC_EMULATOR_MAX_BODY",
    show_envvar=True,
    help="Largest API request body read; a larger one is answered HTTP 413 (code 7400) unread.",
)
@click.option(
    "--max-import",
    metavar="BYTES",
    type=click.IntRange(1),
    default=DEFAULT_MAX_IMPORT,
    show_default=True,
    envvar="D1SYNC_EMULATOR_MAX_IMPORT",
    show_envvar=True,
    help="Largest import upload (D1's 5 GB for `d1 execute --file`); a larger one is answered HTTP 413.",
)
@click.option(
    "--max-duration",
    metavar="SECONDS",
    type=click.FloatRange(0.0, min_open=True),
    default=DEFAULT_MAX_DURATION,
    show_default=True,
    envvar="D1SYNC_EMULATOR_MAX_DURATION",
    show_envvar=True,
    help="Longest a /query or /raw request may run; a longer one is rolled back and answered D1's 7429 timeout.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(0.0),
    default=0.0,
    envvar="D1SYNC_FAULT_LATENCY_MS",
    show_envvar=True,
    help="Milliseconds added to every /query and /raw request.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    envvar="D1SYNC_FAULT_ERROR_RATE",
    show_envvar=True,
    help="Share of requests answered 503/500 (nothing applied).",
)
@click.option(
    "--rate-limit-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    envvar="D1SYNC_FAULT_RATE_LIMIT_RATE",
    show_envvar=True,
    help="Share of requests answered 429 / code 971 with retry-after (nothing applied).",
)
@click.option(
    "--timeout-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    envvar="D1SYNC_FAULT_TIMEOUT_RATE",
    show_envvar=True,
    help="Share of requests applied, then held --timeout-delay seconds and dropped.",
)
@click.option(
    "--timeout-delay",
    type=click.FloatRange(0.0),
    default=35.0,
    show_default=True,
    envvar="D1SYNC_FAULT_TIMEOUT_DELAY",
    show_envvar=True,
    help="Seconds a timed-out response is held (more than the client's timeout).",
)
@click.option(
    "--html-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    envvar="D1SYNC_FAULT_HTML_RATE",
    show_envvar=True,
    help="Share of requests answered 504 with an HTML page (nothing applied).",
)
@click.option(
    "--lost-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    envvar="D1SYNC_FAULT_LOST_RATE",
    show_envvar=True,
    help="Share of requests applied, then answered 502 HTML or dropped.",
)
@click.option(
    "--garbled-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    envvar="D1SYNC_FAULT_GARBLED_RATE",
    show_envvar=True,
    help="Share of requests answered 200 'success' with no proof: no result, null, too few, or a failed one"
    " (applied or not, a seeded coin).",
)
@click.option(
    "--late-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    envvar="D1SYNC_FAULT_LATE_RATE",
    show_envvar=True,
    help="Share of requests dropped unanswered, then applied --late-delay seconds later (after newer ones).",
)
@click.option(
    "--late-delay",
    type=click.FloatRange(0.0),
    default=2.0,
    show_default=True,
    envvar="D1SYNC_FAULT_LATE_DELAY",
    show_envvar=True,
    help="Seconds after which a --late-rate request is applied.",
)
@click.option(
    "--block-seconds",
    type=click.FloatRange(0.0),
    default=0.0,
    envvar="D1SYNC_EMULATOR_BLOCK_SECONDS",
    show_envvar=True,
    help="With --rate-limit: an overrun blocks every request this long (Cloudflare: 300).",
)
@click.option(
    "--rate-limit-headers/--no-rate-limit-headers",
    default=True,
    envvar="D1SYNC_EMULATOR_RATE_LIMIT_HEADERS",
    show_envvar=True,
    help="With --rate-limit: answers carry the account's count (x-ratelimit-*); without, clients see only 429s.",
)
@click.option(
    "--retry-after",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    envvar="D1SYNC_FAULT_RETRY_AFTER",
    show_envvar=True,
    help="Seconds sent in retry-after for injected 429s.",
)
@click.option("--seed", type=int, envvar="D1SYNC_FAULT_SEED", show_envvar=True, help="Seed for reproducible faults.")
@click.option(
    "--rate-limit",
    metavar="N/SECONDS",
    envvar="D1SYNC_EMULATOR_RATE_LIMIT",
    show_envvar=True,
    help="Enforce at most N requests per SECONDS (429 / 971 with retry-after), e.g. 1200/300 like Cloudflare.",
)
def emulator(
    host: str,
    port: int,
    data_dir: str,
    token: str | None,
    auto_create: bool,
    max_body: int,
    max_import: int,
    max_duration: float,
    rate_limit: str | None,
    **fault_options: Any,
) -> None:
    """Serve a local D1: the Cloudflare REST API over SQLite files.

    Faults can be injected on demand. Point any client at the printed API base (D1SYNC_API_BASE, or the
    official SDK's base_url).

    \b
    Examples:
      d1sync emulator --data-dir .d1 --auto-create
      d1sync emulator --max-body 10_000_000 --max-duration 0.5
      d1sync emulator --port 0 --error-rate 0.05 --lost-rate 0.02 --seed 7
      D1SYNC_FAULT_LATENCY_MS=50 d1sync emulator --rate-limit 1200/300
    """
    from d1sync.emulator.app import create_app
    from d1sync.emulator.server import StopOnSignals, bind_socket

    faults = _fault_config(fault_options)
    limit = parse_rate_limit(rate_limit)
    token = _token(token)
    if not _is_loopback(host):
        echo(f"Warning: binding {host}: the emulator is reachable from other machines (token-protected).", err=True)
    with StopOnSignals() as stop:  # from before the port answers: a signal then is a graceful stop
        try:
            app = create_app(
                data_dir,
                token=token,
                faults=faults,
                rate_limit=limit,
                auto_create=auto_create,
                max_body=max_body,
                max_import=max_import,
                max_duration=max_duration,
            )
            sock = bind_socket(host, port)
        except OSError as exc:
            fail(f"cannot start the emulator on {host}:{port}: {exc.strerror or exc}", "choose another --port")
        _banner(data_dir, host, sock.getsockname()[1], _describe(faults, limit) if faults.active or limit else "")
        try:
            stop.serve(app, sock)
        finally:
            sock.close()
            if faults.active or limit:
                echo("fault counters: " + ", ".join(f"{k}={v:g}" for k, v in app.state.faults.stats.items()))


def _fault_config(options: dict[str, Any]) -> FaultConfig:
    """The fault options as a FaultConfig (the flags' names where they differ from its fields)."""
    renamed = {"latency_ms": "latency", "lost_rate": "lost_response_rate"}
    fields = {renamed.get(name, name): value for name, value in options.items()}
    fields["latency"] /= 1000
    try:
        return FaultConfig(**fields)
    except ValueError as exc:
        fail(str(exc), "lower the fault rates so they add up to at most 1", exit_code=EXIT_USAGE)


def _token(given: str | None) -> str:
    """The token clients must send: the one given, or a new one that is printed (so -q needs one given)."""
    token = clean_token(given, "--token / $" + TOKEN_ENV) if given is not None else None
    if token:
        return token
    if click.get_current_context().meta.get("d1sync.quiet"):
        fail(
            "-q would hide the generated token that clients need",
            f"give one: --token or ${TOKEN_ENV} (then -q prints nothing)",
            EXIT_USAGE,
        )
    token = secrets.token_urlsafe(24)
    # The only place a token is ever printed: it was generated here and the user needs it.
    echo(f"No token given; generated one. Clients need:\n  export {TOKEN_ENV}={token}")
    return token


def _banner(data_dir: str, host: str, port: int, faults: str) -> None:
    """Where the emulator serves, how to reach it, and the faults it injects (if any)."""
    import apsw

    shown = f"[{host}]" if ":" in host else host
    echo(f"d1sync emulator serving {os.path.abspath(data_dir)} (SQLite {apsw.sqlite_lib_version()})")
    echo(f"API base:            http://{shown}:{port}/client/v4")
    echo(f"default database id: {DEFAULT_DATABASE_ID}")
    echo(f"query it:            d1sync query --emulator http://{shown}:{port} 'SELECT 1'")
    if faults:
        echo(f"faults: {faults}")


def _describe(faults: FaultConfig, limit: tuple[int, float] | None) -> str:
    parts = [
        f"{name}={value:g}"
        for name, value in (
            ("latency_ms", faults.latency * 1000),
            ("error_rate", faults.error_rate),
            ("rate_limit_rate", faults.rate_limit_rate),
            ("timeout_rate", faults.timeout_rate),
            ("html_rate", faults.html_rate),
            ("lost_rate", faults.lost_response_rate),
            ("garbled_rate", faults.garbled_rate),
            ("late_rate", faults.late_rate),
            ("block_seconds", faults.block_seconds),
        )
        if value
    ]
    if faults.seed is not None:
        parts.append(f"seed={faults.seed}")
    if limit:
        parts.append(f"rate_limit={limit[0]}/{limit[1]:g}s")
        if not faults.rate_limit_headers:
            parts.append("no rate-limit headers")
    return ", ".join(parts)
