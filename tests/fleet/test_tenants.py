"""Which files are tenants, which tables they sync, and what their databases are called."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from d1sync import Outbox
from d1sync.errors import UsageError
from d1sync.fleet import database_name, discover, track_tables
from d1sync.fleet.naming import valid_name
from d1sync.migrations.runner import ledger_ddl

from .conftest import make_tenant


def test_discovery_takes_sqlite_files_matching_the_pattern_and_never_their_companions(tenants: Path) -> None:
    make_tenant(tenants / "b.db")
    make_tenant(tenants / "a.db")
    (tenants / "a.db-journal").write_bytes(b"SQLite format 3\x00")
    (tenants / "notes.txt").write_text("hello")
    (tenants / "fake.db").write_text("not a database at all")
    (tenants / "empty.db").write_bytes(b"")
    (tenants / "sub").mkdir()
    make_tenant(tenants / "sub" / "deep.db")
    found = discover(tenants)
    assert [p.name for p in found.tenants] == ["a.db", "b.db"]  # sorted; -wal/-shm exist too (WAL mode)
    assert list(found.rejected) == [tenants / "fake.db"]
    assert "not a SQLite database" in found.rejected[tenants / "fake.db"]


def test_a_pattern_of_star_still_skips_wal_shm_and_journal_files(tenants: Path) -> None:
    make_tenant(tenants / "a.sqlite")
    for suffix in ("-wal", "-shm", "-journal"):
        (tenants / f"a.sqlite{suffix}").write_bytes(b"SQLite format 3\x00")
    assert [p.name for p in discover(tenants, "*").tenants] == ["a.sqlite"]


def test_every_user_table_is_tracked_but_internal_ones_and_ledgers(tenants: Path) -> None:
    path = make_tenant(tenants / "t.db")
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY, name TEXT);"
            + ledger_ddl("app_migrations")  # wrangler's migrations_table, renamed
            + "CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB);"
            "CREATE TABLE users (id TEXT PRIMARY KEY NOT NULL, name TEXT);"
            "CREATE VIRTUAL TABLE docs USING fts5(body);"
        )
    tracking = track_tables(path)
    assert tracking.tables == ["notes", "users"] and tracking.warnings == {}
    assert sorted(Outbox(path).tables()) == ["notes", "users"]


def test_a_table_without_a_primary_key_is_skipped_with_a_warning_and_the_rest_tracked(tenants: Path) -> None:
    path = make_tenant(tenants / "t.db")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE log (at TEXT, line TEXT)")
    tracking = track_tables(path)
    assert tracking.tables == ["notes"]
    assert "no PRIMARY KEY" in tracking.warnings["log"]


def test_tables_option_tracks_only_those_and_warns_for_a_missing_one(tenants: Path) -> None:
    path = make_tenant(tenants / "t.db")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    tracking = track_tables(path, ["users", "nope"])
    assert tracking.tables == ["users"] and list(tracking.warnings) == ["nope"]


def test_a_table_created_later_is_tracked_on_the_next_call(tenants: Path) -> None:
    path = make_tenant(tenants / "t.db")
    assert track_tables(path).tables == ["notes"]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE later (id INTEGER PRIMARY KEY)")
    assert track_tables(path).tables == ["notes", "later"]


@pytest.mark.parametrize(
    ("file", "template", "expected"),
    [
        ("acme.db", "{stem}", "acme"),
        ("Acme Corp.db", "{stem}", "acme-corp"),
        ("user_42.sqlite", "{stem}", "user-42"),
        ("acme.db", "app-{stem}", "app-acme"),
        ("acme.db", "{name}", "acme-db"),
        ("__.db", "{stem}", None),
        ("ünïcode.db", "{stem}", "n-code"),
    ],
)
def test_names_are_lowercase_letters_digits_and_dashes(file: str, template: str, expected: str | None) -> None:
    name = database_name(Path("tenants") / file, template)
    assert valid_name(name)
    if expected is None:
        assert name.startswith("tenant-")
    else:
        assert name == expected


def test_a_long_name_is_cut_to_64_with_a_hash_that_keeps_two_apart() -> None:
    a = database_name(Path("x" * 80 + "a.db"))
    b = database_name(Path("x" * 80 + "b.db"))
    assert len(a) <= 64 and len(b) <= 64 and a != b and valid_name(a)


def test_a_template_with_an_unknown_field_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="stem"):
        database_name(Path("a.db"), "{tenant}")
