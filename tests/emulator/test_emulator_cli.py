"""``d1sync emulator``: a real subprocess serving the API, plus option handling through click's CliRunner."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.cli.emulator import _is_loopback, parse_rate_limit
from d1sync.emulator import DEFAULT_DATABASE_ID, TOKEN_ENV
from d1sync.emulator.app import create_app
from d1sync.errors import ConfigError

from .conftest import start


def test_the_command_serves_the_api_and_stops_cleanly_on_sigterm(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    proc, lines, api_base = start(
        ["--data-dir", str(tmp_path / "data"), "--error-rate", "0"],
        {TOKEN_ENV: "cli-token", "D1SYNC_FAULT_HTML_RATE": "1", "D1SYNC_FAULT_SEED": "4"},
    )
    processes.append(proc)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/client/v4", api_base)
    assert any(DEFAULT_DATABASE_ID in line for line in lines)
    assert not any("cli-token" in line for line in lines)
    with httpx.Client(base_url=api_base, headers={"Authorization": "Bearer cli-token"}) as http:
        listed = http.get("/accounts/a/d1/database").json()["result"]
        assert [d["uuid"] for d in listed] == [DEFAULT_DATABASE_ID]
        html = http.post(f"/accounts/a/d1/database/{DEFAULT_DATABASE_ID}/query", json={"sql": "SELECT 1"})
        assert html.status_code == 504  # D1SYNC_FAULT_HTML_RATE from the environment
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "html_504=1" in out
    assert "cli-token" not in out + err


def test_without_a_token_one_is_generated_and_printed_once(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    proc, lines, api_base = start(["--data-dir", str(tmp_path / "data")], {})
    processes.append(proc)
    exports = [line for line in lines if f"export {TOKEN_ENV}=" in line]
    assert len(exports) == 1
    token = exports[0].split("=", 1)[1]
    assert len(token) >= 24
    with httpx.Client(base_url=api_base) as http:
        assert http.get("/accounts/a/d1/database", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert http.get("/accounts/a/d1/database").status_code == 401
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert token not in out


def test_an_invalid_rate_limit_is_one_line_with_a_hint(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["emulator", "--data-dir", str(tmp_path), "--token", "t", "--rate-limit", "x/y"])
    assert result.exit_code == 2
    assert "invalid --rate-limit" in result.output and "Try: write N/SECONDS" in result.output


def test_a_token_beyond_ascii_is_refused_in_one_line_without_showing_it(tmp_path: Path) -> None:
    secret = "s\u00e9cret-emulator-token"
    result = CliRunner().invoke(cli, ["emulator", "--data-dir", str(tmp_path), "--port", "0", "--token", secret])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is not valid" in errors[0] and "--token" in errors[0], result.output
    assert secret not in result.output and "Traceback" not in result.output


def test_the_app_refuses_a_token_no_client_could_send(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not ASCII"):
        create_app(tmp_path, token="t\u00f6ken")


def test_fault_rates_adding_up_to_more_than_one_are_refused(tmp_path: Path) -> None:
    args = ["emulator", "--data-dir", str(tmp_path), "--token", "t", "--error-rate", "0.7", "--lost-rate", "0.7"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "must not exceed 1" in result.output


def test_every_option_has_help_text_and_names_its_environment_variable() -> None:
    result = CliRunner().invoke(cli, ["emulator", "--help"])
    assert result.exit_code == 0
    command = cli.get_command(click.Context(cli), "emulator")
    assert command is not None
    for param in command.params:
        assert getattr(param, "help", None), param.name
    for env in ("D1SYNC_FAULT_LATENCY_MS", "D1SYNC_FAULT_ERROR_RATE", "D1SYNC_FAULT_LOST_RATE", TOKEN_ENV):
        assert env in result.output


def test_rate_limits_parse_as_requests_per_seconds() -> None:
    assert parse_rate_limit("1200/300") == (1200, 300.0)
    assert parse_rate_limit("5") == (5, 1.0)
    assert parse_rate_limit(None) is None


def test_only_loopback_addresses_count_as_loopback() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.4") and not _is_loopback("example.com")


def test_emulator_version_names_the_sqlite_its_engine_runs() -> None:
    from click.testing import CliRunner

    from d1sync.cli import cli

    done = CliRunner().invoke(cli, ["emulator", "--version"])
    assert done.exit_code == 0
    assert "SQLite 3.47.0" in done.output and "apsw 3.47.0.0" in done.output
