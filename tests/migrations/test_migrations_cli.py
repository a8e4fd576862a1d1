"""`d1sync migrations create / list / apply` through click's CliRunner, on a file and on a real emulator."""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from d1sync.cli import cli
from d1sync.client import D1Client
from d1sync.emulator import TOKEN_ENV
from d1sync.emulator.server import EmulatorServer

from .conftest import TOKEN

WRANGLER_DB_ID = "11111111-1111-4111-8111-111111111111"  # database_id in fixtures/wrangler_project/wrangler.toml
_ENV = (
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_ACCOUNT_ID",
    "D1_ACCOUNT_ID",
    "D1_DATABASE_ID",
    "D1SYNC_API_BASE",
    TOKEN_ENV,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient credentials reach these tests."""
    for name in (*_ENV, "D1SYNC_MODULES_GLOB"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["migrations", *args], catch_exceptions=False)


def _fresh_database_id(project: Path) -> str:
    """Give the project's wrangler entry a new database id: tests share one emulator."""
    database_id = str(uuid.uuid4())
    config = project / "wrangler.toml"
    config.write_text(config.read_text().replace(WRANGLER_DB_ID, database_id))
    return database_id


def _ledger(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM d1_migrations ORDER BY id")]


# -- create ---------------------------------------------------------------------------------------------------


def test_create_writes_the_next_file_in_the_wrangler_folder_and_in_modules(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project / "migrations")  # the config is found in a parent folder
    result = run("create", "add email", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["name"] == "0003_add_email.sql"
    assert Path(created["path"]) == wrangler_project / "migrations" / "0003_add_email.sql"
    result = run("create", "orders", "--module", "trading")
    assert result.exit_code == 0
    assert "trading/0001_orders.sql" in result.stdout
    assert (wrangler_project / "modules" / "trading" / "migrations" / "0001_orders.sql").is_file()


# -- list / apply on a local file -----------------------------------------------------------------------------


def test_list_apply_list_on_a_local_file_with_check_exit_codes(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project)
    assert run("list", "--local", "app.db").exit_code == 1  # a missing file is refused, not created
    (wrangler_project / "app.db").touch()
    result = run("list", "--local", "app.db", "--json", "--check")
    assert result.exit_code == 3
    listed = json.loads(result.stdout)
    assert listed["pending"] == 2 and [m["state"] for m in listed["migrations"]] == ["pending", "pending"]

    result = run("apply", "--local", "app.db")
    assert result.exit_code == 0, result.output
    assert "applied 0001_create_users.sql" in result.stdout and "Applied 2 migration(s)" in result.stdout
    assert _ledger(wrangler_project / "app.db") == ["0001_create_users.sql", "0002_create_posts.sql"]

    result = run("list", "--local", "app.db", "--check")
    assert result.exit_code == 0 and "2 applied, 0 pending" in result.stdout
    result = run("apply", "--local", "app.db", "--json")
    assert json.loads(result.stdout)["applied"] == [] and result.exit_code == 0


def test_list_check_fails_on_a_file_edited_after_it_was_applied(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project)
    assert run("apply", "--local", "app.db").exit_code == 0
    (wrangler_project / "migrations" / "0002_create_posts.sql").write_text("CREATE TABLE posts (id);\n")
    result = run("list", "--local", "app.db", "--check")
    assert result.exit_code == 3
    assert "0002_create_posts.sql was edited after it was applied" in result.stderr
    assert json.loads(run("list", "--local", "app.db", "--json").stdout)["changed"] == ["0002_create_posts.sql"]


def test_dry_run_lists_what_would_run_and_writes_nothing(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project)
    result = run("apply", "--local", "app.db", "--dry-run", "--json")
    assert result.exit_code == 0
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and [p["name"] for p in plan["pending"]] == [
        "0001_create_users.sql",
        "0002_create_posts.sql",
    ]
    with closing(sqlite3.connect(wrangler_project / "app.db")) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_failed_migration_exits_1_naming_file_statement_and_error(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project)
    (wrangler_project / "migrations" / "0003_bad.sql").write_text("CREATE TABLE t (x);\nINSERT INTO t VALUES (1, 2);\n")
    result = run("apply", "--local", "app.db", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [a["name"] for a in report["applied"]] == ["0001_create_users.sql", "0002_create_posts.sql"]
    assert report["error"]["migration"] == "0003_bad.sql"
    assert (report["error"]["statement"], report["error"]["line"]) == (2, 2)
    assert "table t has 1 columns but 2 values were supplied" in report["error"]["message"]
    assert "Error: migration 0003_bad.sql failed at statement 2 of 2 (line 2)" in result.stderr
    assert "Try: fix the file and run apply again" in result.stderr
    assert _ledger(wrangler_project / "app.db") == ["0001_create_users.sql", "0002_create_posts.sql"]


def test_transaction_statements_exit_1_with_file_and_line(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project)
    (wrangler_project / "migrations" / "0003_tx.sql").write_text("BEGIN TRANSACTION;\nCREATE TABLE t (x);\nCOMMIT;\n")
    result = run("apply", "--local", "app.db")
    assert result.exit_code == 1
    assert f"{wrangler_project / 'migrations' / '0003_tx.sql'}:1: BEGIN is a transaction statement" in result.stderr
    assert not (wrangler_project / "app.db").exists() or _ledger_missing(wrangler_project / "app.db")


def _ledger_missing(path: Path) -> bool:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'd1_migrations'").fetchone() == (0,)


# -- usage and configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("apply", "--local", "a.db", "--remote"),
        ("apply", "--no-such-option"),
    ],
)
def test_usage_errors_exit_2(wrangler_project: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    monkeypatch.chdir(wrangler_project)
    assert run(*args).exit_code == 2


def test_several_databases_need_database_and_it_picks_dir_and_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wrangler.jsonc").write_text(
        """{
  // two databases
  "d1_databases": [
    {"binding": "DB", "database_id": "a", },
    {"binding": "LOGS", "database_name": "logs", "database_id": "b",
     "migrations_dir": "logs-sql", /* their own ledger */ "migrations_table": "logs_migrations"},
  ],
}"""
    )
    (tmp_path / "logs-sql").mkdir()
    (tmp_path / "logs-sql" / "0001_events.sql").write_text("CREATE TABLE events (id);")
    monkeypatch.chdir(tmp_path)
    result = run("apply", "--local", "app.db")
    assert result.exit_code == 2 and "several D1 databases" in result.stderr and "one of: DB, LOGS" in result.stderr
    assert run("apply", "--local", "app.db", "--database", "logs").exit_code == 0
    with closing(sqlite3.connect(tmp_path / "app.db")) as conn:
        assert conn.execute("SELECT name FROM logs_migrations").fetchall() == [("0001_events.sql",)]
    result = run("apply", "--local", "app.db", "--database", "nope")
    assert result.exit_code == 2 and "no D1 database with binding or database_name 'nope'" in result.stderr


def test_remote_without_credentials_says_what_is_missing(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project)
    result = run("list", "--remote")
    assert result.exit_code == 1 and "CLOUDFLARE_API_TOKEN" in result.stderr


def test_every_migrations_command_and_option_has_help() -> None:
    group = cli.get_command(click.Context(cli), "migrations")
    assert isinstance(group, click.Group) and group.help
    for command in group.commands.values():
        assert command.help, command.name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.opts}"


# -- the emulator over a real socket --------------------------------------------------------------------------


def test_apply_to_the_emulator_uses_the_wrangler_database_id(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch, emulator_server: EmulatorServer
) -> None:
    database_id = _fresh_database_id(wrangler_project)
    monkeypatch.chdir(wrangler_project)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    result = run("apply", "--emulator", emulator_server.url)
    assert result.exit_code == 0, result.output
    assert "Applied 2 migration(s) to emulator" in result.stdout
    with D1Client(account_id="x", database_id=database_id, api_token=TOKEN, base_url=emulator_server.api_base) as db:
        names = [r["name"] for r in db.prepare("SELECT name FROM d1_migrations ORDER BY id").all().results]
    assert names == ["0001_create_users.sql", "0002_create_posts.sql"]
    listed = json.loads(run("list", "--emulator", emulator_server.url, "--json").stdout)
    assert [m["drift"] for m in listed["migrations"]] == ["ok", "ok"]


def test_explicit_database_id_wins_on_the_emulator(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch, emulator_server: EmulatorServer
) -> None:
    monkeypatch.chdir(wrangler_project)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("D1_DATABASE_ID", "from-the-environment-loses-to-the-flag")
    chosen = str(uuid.uuid4())
    result = run("apply", "--emulator", emulator_server.url, "--database-id", chosen, "--json")
    assert result.exit_code == 0, result.output
    with D1Client(account_id="x", database_id=chosen, api_token=TOKEN, base_url=emulator_server.api_base) as db:
        assert db.prepare("SELECT count(*) AS n FROM d1_migrations").first("n") == 2


def test_remote_takes_account_and_database_from_wrangler_config(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch, emulator_server: EmulatorServer
) -> None:
    """--remote with only a token in the environment: the account and database id come from wrangler.toml."""
    database_id = _fresh_database_id(wrangler_project)
    config = wrangler_project / "wrangler.toml"
    config.write_text('account_id = "acct-from-wrangler"\n' + config.read_text())
    monkeypatch.chdir(wrangler_project)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    monkeypatch.setenv("D1SYNC_API_BASE", emulator_server.api_base)  # "remote" is the emulator: never real D1
    monkeypatch.setenv("D1_DATABASE_ID", str(uuid.uuid4()))  # an explicit --database beats the environment
    result = run("apply", "--remote", "--database", "wrproj-db", "--json")
    assert result.exit_code == 0, result.output
    assert [a["name"] for a in json.loads(result.stdout)["applied"]] == [
        "0001_create_users.sql",
        "0002_create_posts.sql",
    ]
    assert TOKEN not in result.output
    with D1Client(account_id="x", database_id=database_id, api_token=TOKEN, base_url=emulator_server.api_base) as db:
        assert db.prepare("SELECT count(*) AS n FROM d1_migrations").first("n") == 2


def test_unopenable_local_file_is_one_line_error_not_a_traceback(
    wrangler_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wrangler_project)
    result = run("apply", "--local", "no/such/folder/app.db")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot open no/such/folder/app.db: the file cannot be opened")
