"""``LocalDatabase(path, d1_rules=True)`` and ``d1sync query --local --d1-rules`` apply D1's authorizer and
limits to a local file, so what D1 refuses fails locally too; the default stays plain SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.errors import SQLError
from d1sync.local import TRANSACTION_MESSAGE, LocalDatabase

REFUSED = [
    ("PRAGMA user_version", "not authorized: SQLITE_AUTH"),
    ("PRAGMA journal_mode", "not authorized: SQLITE_AUTH"),
    ("PRAGMA integrity_check", "not authorized: SQLITE_AUTH"),
    ("SELECT power(2, 3)", "not authorized to use function: power: SQLITE_ERROR"),
    ("SELECT sqlite_version()", "not authorized to use function: sqlite_version: SQLITE_ERROR"),
    ("CREATE TEMP TABLE x (a)", "not authorized: SQLITE_AUTH"),
    ("CREATE VIRTUAL TABLE r USING rtree(id, a, b)", "not authorized: SQLITE_AUTH"),
    ("CREATE TABLE _cf_x (a)", "not authorized: SQLITE_AUTH"),
    ("ATTACH ':memory:' AS m", "not authorized: SQLITE_AUTH"),
    ("VACUUM", "cannot VACUUM from within a transaction: SQLITE_ERROR"),
    ("BEGIN", TRANSACTION_MESSAGE),
    ("SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6",
     "too many terms in compound SELECT: SQLITE_ERROR"),
    ("SELECT 'x' LIKE '" + "a" * 51 + "'", "LIKE or GLOB pattern too complex: SQLITE_ERROR"),
    (f"CREATE TABLE w ({', '.join(f'c{i}' for i in range(101))})", "too many columns on w: SQLITE_ERROR"),
    ("SELECT " + " + ".join(["1"] * 101), "Expression tree is too large (maximum depth 100): SQLITE_ERROR"),
]  # fmt: skip


@pytest.fixture
def ruled(tmp_path: Path) -> Iterator[LocalDatabase]:
    with LocalDatabase(tmp_path / "app.db", d1_rules=True) as db:
        yield db


@pytest.mark.parametrize(("sql", "message"), REFUSED, ids=[sql[:40] for sql, _ in REFUSED])
def test_with_d1_rules_what_d1_refuses_fails_locally(ruled: LocalDatabase, sql: str, message: str) -> None:
    with pytest.raises(SQLError) as info:
        ruled.prepare(sql).all()
    assert info.value.message == message


@pytest.mark.parametrize("sql", [sql for sql, _ in REFUSED if not sql.startswith(("BEGIN", "VACUUM"))])
def test_without_d1_rules_a_local_file_is_plain_sqlite(tmp_path: Path, sql: str) -> None:
    with LocalDatabase(tmp_path / "plain.db") as db:
        db.prepare(sql).all()


def test_with_d1_rules_what_d1_allows_still_runs(ruled: LocalDatabase) -> None:
    ruled.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t (v)")
    ruled.prepare("INSERT INTO t (v) SELECT value FROM json_each(?)").bind('["a", "b"]').run()
    assert ruled.prepare("PRAGMA table_info(t)").all().results[1]["name"] == "v"
    assert ruled.prepare("PRAGMA foreign_keys").first("foreign_keys") == 1
    assert ruled.prepare("SELECT pow(2, 3) AS p, ceil(1.5) AS c, log(100) AS l").first() == {
        "p": 8.0,
        "c": 2.0,
        "l": 2.0,
    }
    assert ruled.prepare("SELECT count(*) AS n FROM t").first("n") == 2
    assert ruled.batch([ruled.prepare("PRAGMA defer_foreign_keys = on"), ruled.prepare("SELECT 1 AS one")])[1].results
    # d1sync's own reads on the connection are not the caller's SQL: they still run.
    assert ruled.connection.execute("PRAGMA page_count").fetchone()[0] > 0


def test_query_local_d1_rules_refuses_what_d1_refuses(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    (tmp_path / "app.db").touch()  # query reads an existing file: an empty one is an empty database
    plain = CliRunner().invoke(cli, ["query", "--local", path, "--json", "PRAGMA user_version"])
    assert plain.exit_code == 0, plain.output
    ruled = CliRunner().invoke(cli, ["query", "--local", path, "--d1-rules", "PRAGMA user_version"])
    assert ruled.exit_code != 0 and "not authorized: SQLITE_AUTH" in ruled.output


def test_d1_rules_is_for_local_files_only(tmp_path: Path) -> None:
    args = ["query", "--emulator", "http://127.0.0.1:9", "--d1-rules", "SELECT 1"]
    done = CliRunner().invoke(cli, args, env={"D1SYNC_EMULATOR_TOKEN": "t"})
    assert done.exit_code == 2 and "--d1-rules" in done.output
