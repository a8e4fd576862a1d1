"""Errors say what is wrong with a hint that fits (and as JSON under --json); status never contradicts itself;
a mistyped path creates nothing, while migrations apply --local creates the file it is given and says so."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from d1sync import LocalDatabase
from d1sync.migrations.runner import ledger_ddl

from .conftest import SCHEMA, invoke

LEDGER = (
    "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, "
    "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
)
"""A wrangler migrations ledger: a remote that has one owns its schema (d1sync does not change it)."""


def _remote(path: Path, schema: str | None) -> Path:
    """A remote whose schema its migrations own (a ledger), with ``schema``."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(LEDGER)
        if schema:
            conn.execute(schema)
    return path


# -- status ------------------------------------------------------------------------------------------------


def test_dead_letters_are_not_healthy_and_status_check_exits_3_as_sync_does(app: Path, tmp_path: Path) -> None:
    remote = _remote(tmp_path / "remote.db", SCHEMA.replace("n INTEGER", "n INTEGER CHECK (n <> 7)"))
    assert invoke("sync", str(app), "--local", str(remote)).exit_code == 3
    result = invoke("status", str(app), "--check")
    assert result.exit_code == 3
    assert "healthy" not in result.stdout.replace("dead letters", "") and "dead letters: D1 refused" in result.stdout
    data = json.loads(invoke("status", str(app), "--json").stdout)
    assert (data["healthy"], data["health"], data["dead_letters"]) == (False, "dead letters", 1)
    assert invoke("status", str(app)).exit_code == 0  # without --check it only shows


def test_a_paused_table_shows_paused_everywhere_and_status_check_exits_1(app: Path, tmp_path: Path) -> None:
    remote = _remote(tmp_path / "remote.db", "CREATE TABLE other (id INTEGER PRIMARY KEY)")  # no notes table
    assert invoke("sync", str(app), "--local", str(remote), "--timeout", "5").exit_code == 1
    result = invoke("status", str(app), "--check")
    assert result.exit_code == 1
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "paused: needs a fix" in rows["health"] and "notes" in rows["paused"] and "no" not in rows["paused"].split()
    data = json.loads(invoke("status", str(app), "--json").stdout)
    assert (data["healthy"], data["health"]) == (False, "paused")


def test_a_healthy_outbox_is_healthy(app: Path, tmp_path: Path) -> None:
    remote = _remote(tmp_path / "remote.db", SCHEMA)
    assert invoke("sync", str(app), "--local", str(remote)).exit_code == 0
    result = invoke("status", str(app), "--check")
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert result.exit_code == 0 and rows["health"][-1] == "healthy" and rows["paused"][-1] == "no"


# -- usage errors and hints --------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrangler.toml").write_text(
        'name = "w"\n[[d1_databases]]\nbinding = "DB"\ndatabase_name = "app"\ndatabase_id = "abc"\n'
    )
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "hint"),
    [(["--database", "nope"], "Try: --database one of: DB"), (["--env", "staging"], "Try: add [env.staging]")],
)
def test_an_unknown_database_or_environment_is_a_usage_error_with_the_choices(
    project: Path, flags: list[str], hint: str
) -> None:
    result = invoke("query", "--remote", *flags, "SELECT 1")
    assert result.exit_code == 2 and hint in result.stderr


def test_no_api_token_names_the_variable_and_the_other_targets(project: Path) -> None:
    result = invoke("query", "--remote", "SELECT 1")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: no Cloudflare API token",
        "Try: export CLOUDFLARE_API_TOKEN=<a token with D1 edit permission>, or choose --local FILE or --emulator URL",
    ]


def test_json_errors_are_json_on_stdout(project: Path) -> None:
    for args in (["query", "--remote", "SELECT 1", "--json"], ["--json", "status", "nope.db"]):
        result = invoke(*args)
        error = json.loads(result.stdout)["error"]
        assert result.exit_code == 1 and set(error) == {"type", "message", "hint"}
        assert error["hint"] and error["message"] in result.stderr
    result = invoke("query", "--remote", "--database", "nope", "SELECT 1", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["error"]["type"] == "UsageError"


def test_json_asked_of_a_command_without_it_is_a_usage_error() -> None:
    result = invoke("--json", "completion", "bash")
    assert result.exit_code == 2 and "`d1sync completion` has no --json" in result.stderr


def test_track_refuses_the_migrations_ledger_as_it_refuses_internal_tables(app: Path) -> None:
    with LocalDatabase(app) as db:
        db.exec("CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    result = invoke("track", str(app), "d1_migrations")
    assert result.exit_code == 1
    assert "'d1_migrations' is the migrations ledger and cannot be tracked" in result.stderr
    assert "Try: apply the migrations on each side" in result.stderr
    assert invoke("track", str(app), "sqlite_sequence").exit_code == 1
    with LocalDatabase(app) as db:  # wrangler's ledger under the name its migrations_table gives it
        db.exec(ledger_ddl("app_migrations"))
    result = invoke("track", str(app), "app_migrations")
    assert result.exit_code == 1 and "'app_migrations' is the migrations ledger" in result.stderr


def test_a_typo_in_untrack_names_the_table_meant(app: Path) -> None:
    result = invoke("untrack", str(app), "nots")
    assert result.exit_code == 1 and "Try: did you mean 'notes'?" in result.stderr


def test_emit_migration_names_the_target_it_was_given(app: Path, tmp_path: Path) -> None:
    folder = str(tmp_path / "two-way")
    result = invoke("replicate", str(app), "notes", "--emulator", "http://127.0.0.1:9", "--emit-migration", folder)
    assert result.exit_code == 0
    assert "migrations apply --emulator http://127.0.0.1:9" in result.stdout and "--remote" not in result.stdout


def test_dead_list_help_is_the_help_of_dead_db_list() -> None:
    result = invoke("dead", "list", "--help")
    assert result.exit_code == 0 and result.stdout.startswith("Usage: d1sync dead DB list")
    result = invoke("dead", "list")
    assert result.exit_code == 2 and "Try: d1sync dead DB list" in result.stderr


# -- files that do not exist -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["query", "--local", "{typo}", "SELECT 1"],
        ["migrations", "list", "--local", "{typo}"],
        ["tasks", "stats", "--local", "{typo}"],
        ["status", "{typo}"],
        ["track", "{typo}", "notes"],
        ["sync", "{typo}", "--local", "{app}"],
        ["verify", "{app}", "--local", "{typo}"],
    ],
    ids=lambda a: " ".join(w for w in a if "{" not in w),
)
def test_a_mistyped_path_creates_nothing_and_the_hint_names_the_file_meant(app: Path, args: list[str]) -> None:
    typo = app.with_name("apps.db")
    result = invoke(*(a.format(typo=typo, app=app) for a in args))
    assert result.exit_code == 1 and not typo.exists()
    assert result.stderr.splitlines() == [f"Error: no such file: {typo}", f"Try: check the path: did you mean {app}?"]


def test_migrations_apply_creates_a_new_local_file_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_init.sql").write_text(SCHEMA + ";\n")
    result = invoke("migrations", "apply", "--local", "new.db", "--dry-run")
    assert result.exit_code == 0 and "would apply 0001_init.sql" in result.stdout and not Path("new.db").exists()
    result = invoke("migrations", "apply", "--local", "new.db")
    assert result.exit_code == 0 and "created new.db: a new, empty SQLite database" in result.stderr
    assert "applied 0001_init.sql" in result.stdout
    assert invoke("migrations", "apply", "--local", "new.db").stderr == ""  # exists now: nothing to say
