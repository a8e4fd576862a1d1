"""Discovery of migration files, wrangler config parsing, and `create`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d1sync.errors import ConfigError
from d1sync.migrations import (
    MigrationSource,
    WranglerConfig,
    find_wrangler_config,
    load_wrangler_config,
    migration_number,
    strip_jsonc,
)


def _write(path: Path, text: str = "SELECT 1;\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- jsonc ------------------------------------------------------------------------------------------------


def test_strip_jsonc_removes_comments_and_trailing_commas_outside_strings() -> None:
    text = """{
      // a line comment, with "quotes" and a trailing comma,
      "url": "https://example.com/a//b", /* block, } */
      "glob": "modules/*/migrations/*.sql",
      "list": [1, 2, /* three */ ],
      "escaped": "a \\" // not a comment",
    }"""
    assert json.loads(strip_jsonc(text)) == {
        "url": "https://example.com/a//b",
        "glob": "modules/*/migrations/*.sql",
        "list": [1, 2],
        "escaped": 'a " // not a comment',
    }


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from(list('ab/*,"\\ ]}'))),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=8,
)


@given(_JSON)
def test_strip_jsonc_leaves_plain_json_unchanged_in_meaning(value: object) -> None:
    assert json.loads(strip_jsonc(json.dumps(value, indent=1))) == value


def test_strip_jsonc_keeps_line_numbers_for_error_messages() -> None:
    assert strip_jsonc('{/* a\nb\n*/ "x": 1}').count("\n") == 2


# -- wrangler config ---------------------------------------------------------------------------------------


def test_wrangler_toml_entries_resolve_migrations_dir_against_the_config_folder(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "wrangler.toml",
        """
name = "app"
account_id = "acc123"

[[d1_databases]]
binding = "DB"
database_name = "app-db"
database_id = "11111111-1111-4111-8111-111111111111"

[[d1_databases]]
binding = "ANALYTICS"
database_name = "analytics"
database_id = "22222222-2222-4222-8222-222222222222"
migrations_dir = "db/analytics"
migrations_table = "analytics_migrations"
""",
    )
    loaded = load_wrangler_config(config)
    assert loaded.account_id == "acc123"
    db, analytics = loaded.databases
    assert db.migrations_dir == tmp_path / "migrations" and db.migrations_table == "d1_migrations"
    assert analytics.migrations_dir == tmp_path / "db/analytics"
    assert analytics.migrations_table == "analytics_migrations"
    assert loaded.select("analytics") is analytics and loaded.select("ANALYTICS") is analytics
    with pytest.raises(ConfigError, match="several D1 databases"):
        loaded.select(None)
    with pytest.raises(ConfigError, match="no D1 database .*'nope'"):
        loaded.select("nope")


def test_wrangler_jsonc_with_comments_and_trailing_commas_is_read(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "wrangler.jsonc",
        """{
  // the worker
  "name": "app",
  "d1_databases": [
    {
      "binding": "DB", // the binding
      "database_name": "app-db",
      "database_id": "33333333-3333-4333-8333-333333333333",
      /* a custom folder */
      "migrations_dir": "sql/",
    },
  ],
}""",
    )
    entry = load_wrangler_config(config).select(None)
    assert entry.database_id == "33333333-3333-4333-8333-333333333333"
    assert entry.migrations_dir == tmp_path / "sql"


def test_wrangler_env_section_has_its_own_databases(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "wrangler.json",
        json.dumps(
            {
                "d1_databases": [{"binding": "DB", "database_id": "prod"}],
                "env": {"staging": {"d1_databases": [{"binding": "DB", "database_id": "staging"}]}},
            }
        ),
    )
    assert load_wrangler_config(config).select("DB").database_id == "prod"
    assert load_wrangler_config(config, env="staging").select("DB").database_id == "staging"
    with pytest.raises(ConfigError, match="no environment 'qa'"):
        load_wrangler_config(config, env="qa")


def test_malformed_config_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    bad_toml = _write(tmp_path / "wrangler.toml", "[[d1_databases]\nbinding = 'DB'")
    with pytest.raises(ConfigError, match="wrangler.toml is not valid toml"):
        load_wrangler_config(bad_toml)
    bad_entry = _write(tmp_path / "x" / "wrangler.json", '{"d1_databases": [{"binding": 5}]}')
    with pytest.raises(ConfigError, match=r"d1_databases\[0\]: binding must be a non-empty string"):
        load_wrangler_config(bad_entry)


def test_config_is_found_in_parent_folders_preferring_json_over_toml_as_wrangler(tmp_path: Path) -> None:
    nested = tmp_path / "src" / "deep"
    _write(nested / "wrangler.toml", "")
    assert find_wrangler_config(nested) == nested / "wrangler.toml"
    _write(tmp_path / "wrangler.jsonc", "{}")
    # wrangler's findWranglerConfig: wrangler.json, then .jsonc, then .toml, each searched up the tree.
    assert find_wrangler_config(nested) == tmp_path / "wrangler.jsonc"
    _write(tmp_path / "src" / "wrangler.json", "{}")
    assert find_wrangler_config(nested) == tmp_path / "src" / "wrangler.json"
    assert find_wrangler_config(tmp_path) == tmp_path / "wrangler.jsonc"


def test_defaults_without_config_use_migrations_folder_and_d1_migrations(tmp_path: Path) -> None:
    entry = WranglerConfig.defaults(tmp_path).select(None)
    assert entry.migrations_dir == tmp_path / "migrations"
    assert entry.migrations_table == "d1_migrations" and entry.database_id is None


# -- discovery and order ---------------------------------------------------------------------------------


def test_plain_folder_is_ordered_by_number_not_text_and_records_plain_names(tmp_path: Path) -> None:
    for name in ("10_late.sql", "0002_b.sql", "0001_a.sql", "0002_a.sql", "notes.txt"):
        _write(tmp_path / "migrations" / name)
    files = MigrationSource(tmp_path, migrations_dir=Path("migrations")).discover()
    assert [f.name for f in files] == ["0001_a.sql", "0002_a.sql", "0002_b.sql", "10_late.sql"]
    assert [f.number for f in files] == [1, 2, 2, 10] and all(f.module is None for f in files)


def test_modules_come_after_the_plain_folder_each_in_number_order(tmp_path: Path) -> None:
    _write(tmp_path / "migrations" / "0001_shared.sql")
    for path in (
        "trading/migrations/0002_fills.sql",
        "trading/migrations/0001_orders.sql",
        "billing/migrations/0001_x.sql",
    ):
        _write(tmp_path / "modules" / path)
    files = MigrationSource(tmp_path, migrations_dir=Path("migrations")).discover()
    assert [f.name for f in files] == [
        "0001_shared.sql",
        "billing/0001_x.sql",
        "trading/0001_orders.sql",
        "trading/0002_fills.sql",
    ]
    assert files[-1].module == "trading"


def test_custom_modules_glob_names_the_module_by_its_star_folder(tmp_path: Path) -> None:
    _write(tmp_path / "apps" / "chat" / "sql" / "0001_init.sql")
    files = MigrationSource(tmp_path, modules_glob="apps/*/sql/*.sql").discover()
    assert [(f.name, f.module) for f in files] == [("chat/0001_init.sql", "chat")]


def test_file_without_number_and_bad_module_folder_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "migrations" / "seed.sql")
    with pytest.raises(ConfigError, match="does not start with a number"):
        MigrationSource(tmp_path, migrations_dir=Path("migrations")).discover()
    _write(tmp_path / "modules" / "Bad-Name" / "migrations" / "0001_x.sql")
    with pytest.raises(ConfigError, match="invalid module name 'Bad-Name'"):
        MigrationSource(tmp_path).discover()


def test_checksum_ignores_line_endings_and_bom(tmp_path: Path) -> None:
    lf = _write(tmp_path / "migrations" / "0001_a.sql", "CREATE TABLE a (x);\n")
    (tmp_path / "migrations" / "0002_a.sql").write_bytes(b"\xef\xbb\xbfCREATE TABLE a (x);\r\n")
    first, second = MigrationSource(tmp_path, migrations_dir=Path("migrations")).discover()
    assert first.path == lf and first.checksum() == second.checksum()
    assert second.read() == "CREATE TABLE a (x);\n"


@pytest.mark.parametrize(("name", "number"), [("0001_a.sql", 1), ("12_b_c.sql", 12), ("0003.sql", 3)])
def test_migration_number_is_the_integer_before_the_first_underscore(name: str, number: int) -> None:
    assert migration_number(name) == number


# -- create ---------------------------------------------------------------------------------------------------


def test_create_numbers_after_the_highest_and_writes_wranglers_comment_line(tmp_path: Path) -> None:
    source = MigrationSource(tmp_path, migrations_dir=Path("migrations"))
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    first = source.create("create users", now=when)
    assert first.name == "0001_create_users.sql"
    assert first.read_text() == "-- Migration number: 0001 \t 2026-01-02T03:04:05.678Z\n"
    _write(tmp_path / "migrations" / "0041_gap.sql")
    assert source.create("next", now=when).name == "0042_next.sql"


def test_create_in_a_module_uses_that_modules_folder_and_own_numbering(tmp_path: Path) -> None:
    source = MigrationSource(tmp_path, migrations_dir=Path("migrations"))
    _write(tmp_path / "migrations" / "0007_shared.sql")
    path = source.create("orders", module="trading")
    assert path == tmp_path / "modules" / "trading" / "migrations" / "0001_orders.sql"
    assert [f.name for f in source.discover()] == ["0007_shared.sql", "trading/0001_orders.sql"]
    with pytest.raises(ConfigError, match="invalid module name"):
        source.create("x", module="Trading")
