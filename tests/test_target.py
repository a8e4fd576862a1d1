"""One target resolver for every command: flags, then the environment, then wrangler's config, then d1sync's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.emulator import DEFAULT_DATABASE_ID, TOKEN_ENV, EmulatorServer
from d1sync.errors import ConfigError, UsageError
from d1sync.target import load_project_config, resolve_target

from .support import TOKEN

WRANGLER = """
account_id = "acct-wrangler"
[[d1_databases]]
binding = "DB"
database_id = "11111111-1111-4111-8111-111111111111"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "wrangler.toml").write_text(WRANGLER)
    return tmp_path


def env(**values: str) -> dict[str, str]:
    return {"CLOUDFLARE_API_TOKEN": "tok-123456789", **values}


def test_flags_beat_the_environment_which_beats_wrangler_which_beats_d1sync_toml(project: Path) -> None:
    (project / "d1sync.toml").write_text('database_id = "from-d1sync-toml"\naccount_id = "acct-toml"\n')
    base = resolve_target(remote=True, env=env(), cwd=project)
    assert (base.database_id, base.account_id) == ("11111111-1111-4111-8111-111111111111", "acct-wrangler")
    assert base.sources["database_id"] == "wrangler.toml [[d1_databases]] DB"
    from_env = resolve_target(remote=True, env=env(D1_DATABASE_ID="from-env", CLOUDFLARE_ACCOUNT_ID="a"), cwd=project)
    assert (from_env.database_id, from_env.sources["database_id"]) == ("from-env", "D1_DATABASE_ID")
    flag = resolve_target(remote=True, database_id="from-flag", env=env(D1_DATABASE_ID="from-env"), cwd=project)
    assert (flag.database_id, flag.sources["database_id"]) == ("from-flag", "--database-id")
    (project / "wrangler.toml").unlink()
    toml_only = resolve_target(remote=True, env=env(), cwd=project)
    assert (toml_only.database_id, toml_only.account_id) == ("from-d1sync-toml", "acct-toml")
    assert toml_only.sources["database_id"] == "d1sync.toml"


def test_an_entry_chosen_with_database_beats_the_environment(project: Path) -> None:
    target = resolve_target(remote=True, database="DB", env=env(D1_DATABASE_ID="from-env"), cwd=project)
    assert target.database_id == "11111111-1111-4111-8111-111111111111"


def test_pyproject_tool_d1sync_is_read_and_tokens_in_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.d1sync]\ndatabase_id = "pp"\n')
    assert load_project_config(tmp_path).values == {"database_id": "pp"}
    assert resolve_target(remote=True, env=env(CLOUDFLARE_ACCOUNT_ID="a"), cwd=tmp_path).database_id == "pp"
    (tmp_path / "d1sync.toml").write_text('api_token = "secret-value"\n')
    with pytest.raises(ConfigError, match="not read from files") as info:
        load_project_config(tmp_path)
    assert "secret-value" not in str(info.value)
    (tmp_path / "d1sync.toml").write_text('databse_id = "typo"\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_project_config(tmp_path)


def test_the_emulator_defaults_to_its_own_database_and_takes_an_address_without_a_scheme(tmp_path: Path) -> None:
    target = resolve_target(emulator="127.0.0.1:8787", env={TOKEN_ENV: "t"}, cwd=tmp_path)
    assert target.base_url == "http://127.0.0.1:8787/client/v4"
    assert (target.database_id, target.api_token) == (DEFAULT_DATABASE_ID, "t")
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        resolve_target(emulator="http://127.0.0.1:8787", env={}, cwd=tmp_path)


def test_choosing_no_target_or_two_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="choose a target"):
        resolve_target(env={}, cwd=tmp_path)
    with pytest.raises(UsageError, match="--local and --remote"):
        resolve_target(local="a.db", remote=True, env={}, cwd=tmp_path)
    assert resolve_target(env=env(CLOUDFLARE_ACCOUNT_ID="a"), cwd=tmp_path, default="remote").kind == "remote"


def test_several_wrangler_databases_need_a_choice(tmp_path: Path) -> None:
    (tmp_path / "wrangler.toml").write_text(WRANGLER + '[[d1_databases]]\nbinding = "LOGS"\ndatabase_id = "x"\n')
    with pytest.raises(UsageError, match="several D1 databases"):
        resolve_target(remote=True, env=env(), cwd=tmp_path)


def test_a_wrangler_config_without_d1_blocks_nothing(tmp_path: Path) -> None:
    (tmp_path / "wrangler.toml").write_text('name = "worker"\n')
    target = resolve_target(remote=True, env=env(CLOUDFLARE_ACCOUNT_ID="a", D1_DATABASE_ID="d"), cwd=tmp_path)
    assert target.database_id == "d"


def test_emulator_picks_the_same_database_in_query_and_migrations(
    project: Path, monkeypatch: pytest.MonkeyPatch, emulator_server: EmulatorServer
) -> None:
    """The wrangler entry's database, created on the emulator by migrations, is the one query reads."""
    monkeypatch.chdir(project)
    (project / "migrations").mkdir()
    (project / "migrations" / "0001_notes.sql").write_text("CREATE TABLE notes (id INTEGER PRIMARY KEY);")
    runner = CliRunner()
    environment = {TOKEN_ENV: TOKEN}
    applied = runner.invoke(cli, ["migrations", "apply", "--emulator", emulator_server.url], env=environment)
    assert applied.exit_code == 0, applied.output
    sql = "SELECT name FROM sqlite_master WHERE name = 'notes'"
    found = runner.invoke(cli, ["query", "--emulator", emulator_server.url, "--json", sql], env=environment)
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["results"] == [{"name": "notes"}]


def test_verbose_says_where_each_setting_came_from_and_never_shows_the_token(
    project: Path, monkeypatch: pytest.MonkeyPatch, emulator_server: EmulatorServer
) -> None:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(
        cli, ["query", "-v", "--emulator", emulator_server.url, "SELECT 1 AS one"], env={TOKEN_ENV: TOKEN}
    )
    assert result.exit_code == 0, result.output
    assert "database_id: wrangler.toml [[d1_databases]] DB" in result.stderr
    assert f"token: {TOKEN_ENV}" in result.stderr and TOKEN not in result.output
