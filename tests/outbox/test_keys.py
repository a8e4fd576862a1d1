"""Keys a tracked table may use: exact, never NULL. REAL and nullable key columns are refused up front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from d1sync.errors import ConfigError
from d1sync.local import LocalDatabase
from d1sync.outbox import Outbox, SyncWorker

from ..conftest import Closer
from .conftest import open_file, snapshot
from .remote_d1 import fresh_d1, reading


def triggers(path: Path) -> list[str]:
    with reading(path) as conn:
        return [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]


@pytest.mark.parametrize(
    ("ddl", "named"),
    [
        ("CREATE TABLE t (k REAL PRIMARY KEY NOT NULL, v TEXT)", "'k' (REAL)"),
        ("CREATE TABLE t (k DOUBLE PRECISION NOT NULL PRIMARY KEY, v TEXT)", "'k' (DOUBLE PRECISION)"),
        ("CREATE TABLE t (k REAL PRIMARY KEY, v ANY) STRICT", "'k' (REAL)"),
        ("CREATE TABLE t (a INTEGER NOT NULL, k float NOT NULL, v TEXT, PRIMARY KEY (a, k))", "'k' (float)"),
        ("CREATE TABLE t (k FLOAT NOT NULL, v TEXT); CREATE UNIQUE INDEX t_k ON t (k)", "'k' (FLOAT)"),
    ],
)
def test_key_columns_with_real_affinity_are_refused_naming_the_column_and_the_fix(
    tmp_path: Path, ddl: str, named: str
) -> None:
    path = tmp_path / "app.db"
    with LocalDatabase(path) as db:
        db.exec(ddl)
    outbox = Outbox(path)
    with pytest.raises(ConfigError) as info:
        outbox.track("t")
    message = str(info.value)
    assert "'t'" in message and named in message and "REAL affinity" in message
    assert "never sync" in message and "INTEGER key" in message
    assert outbox.tables() == {}
    assert triggers(path) == []


@pytest.mark.parametrize(
    ("ddl", "key", "named"),
    [
        ("CREATE TABLE t (k TEXT PRIMARY KEY, b TEXT)", "k", '"k" TEXT NOT NULL'),
        ("CREATE TABLE t (k PRIMARY KEY, b TEXT)", "k", '"k" NOT NULL'),
        ("CREATE TABLE t (k INT PRIMARY KEY, b TEXT)", "k", '"k" INT NOT NULL'),
        # SQLite's quirk: "INTEGER PRIMARY KEY DESC" is not a rowid alias, so it takes NULL like any other.
        ("CREATE TABLE t (k INTEGER PRIMARY KEY DESC, b TEXT)", "k", '"k" INTEGER NOT NULL'),
        ("CREATE TABLE t (a INTEGER, b TEXT NOT NULL, PRIMARY KEY (a, b))", "a", '"a" INTEGER NOT NULL'),
    ],
)
def test_primary_key_columns_that_allow_null_are_refused_with_the_declaration_to_use(
    tmp_path: Path, ddl: str, key: str, named: str, closer: Closer[Any]
) -> None:
    path = tmp_path / "app.db"
    app = closer(LocalDatabase(path))
    app.exec(ddl)
    # Why: SQLite really stores several rows with a NULL key there, and D1 could not tell them apart.
    app.exec(f"INSERT INTO t ({key}, b) VALUES (NULL, 'x'); INSERT INTO t ({key}, b) VALUES (NULL, 'x')")
    assert app.prepare(f"SELECT count(*) AS n FROM t WHERE {key} IS NULL").first("n") == 2
    outbox = Outbox(path)
    with pytest.raises(ConfigError) as info:
        outbox.track("t")
    message = str(info.value)
    assert "'t'" in message and f"'{key}'" in message and "allow NULL" in message
    assert f"declare them NOT NULL ({named})" in message
    assert "'b'" not in message  # only the nullable column is named
    assert outbox.tables() == {}
    assert triggers(path) == []


ACCEPTED = {
    "rowid alias": "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)",
    "rowid alias, table constraint DESC": "CREATE TABLE t (k integer, v TEXT, PRIMARY KEY (k DESC))",
    "text NOT NULL": "CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v TEXT)",
    "composite NOT NULL": "CREATE TABLE t (k TEXT NOT NULL, n INTEGER NOT NULL, v TEXT, PRIMARY KEY (k, n))",
    "WITHOUT ROWID": "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID",
    "STRICT": "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) STRICT",
    "unique index": "CREATE TABLE t (k BLOB NOT NULL, v TEXT); CREATE UNIQUE INDEX t_k ON t (k)",
    "untyped NOT NULL": "CREATE TABLE t (k PRIMARY KEY NOT NULL, v TEXT)",
}


@pytest.mark.parametrize("ddl", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_keys_that_are_never_null_are_accepted_and_sync_exactly_to_the_emulator(
    tmp_path: Path, request: pytest.FixtureRequest, ddl: str, closer: Closer[Any]
) -> None:
    path = tmp_path / "app.db"
    app = closer(LocalDatabase(path))
    app.exec(ddl)
    [spec] = Outbox(path).track("t")
    keys = [(7, "seven"), (8, "eight"), (9, "nine")]
    if "k BLOB" in ddl:
        keys = [(b"\x00\x07", "seven"), (b"\x08", "eight"), (b"", "nine")]
    elif "TEXT" in ddl.split(",")[0]:
        keys = [("seven", "seven"), ("nul\x00key", "eight"), ("😀", "nine")]
    with app.atomic() as conn:
        for k, v in keys:
            columns = "(k, n, v)" if len(spec.key) == 2 else "(k, v)"
            values = (k, 1, v) if len(spec.key) == 2 else (k, v)
            conn.execute(f"INSERT INTO t {columns} VALUES ({', '.join('?' * len(values))})", values)
        conn.execute("UPDATE t SET v = 'changed' WHERE k = ?", (keys[0][0],))
        conn.execute("DELETE FROM t WHERE k = ?", (keys[1][0],))
    with fresh_d1(request, tmp_path) as (client, remote_path):
        client.exec(ddl)
        with SyncWorker(path, client) as worker:
            assert worker.sync_once().state == "synced"
            assert worker.pending() == 0
        with reading(remote_path) as remote:
            assert snapshot(remote, "t") == snapshot(app.connection, "t")
            assert len(snapshot(remote, "t")) == 2


def test_real_values_in_an_untyped_key_column_sync_when_fifteen_digits_hold_them_exactly(
    tmp_path: Path, request: pytest.FixtureRequest, closer: Closer[Any]
) -> None:
    """Only REAL *affinity* is refused; an untyped (or NUMERIC, or INT) key column may still hold REAL values.
    Those that 15 significant digits represent exactly (0.5, 2.25, 1e-3, 1e300) work like any other key."""
    ddl = "CREATE TABLE t (k PRIMARY KEY NOT NULL, v TEXT)"
    path = tmp_path / "app.db"
    app = closer(LocalDatabase(path))
    app.exec(ddl)
    Outbox(path).track("t")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(0.5, "a"), (2.25, "b"), (1e-3, "c"), (1e300, "d"), (3, "e")])
        conn.execute("UPDATE t SET v = 'changed' WHERE k = 0.5")
        conn.execute("DELETE FROM t WHERE k = 2.25")
    with fresh_d1(request, tmp_path) as (client, remote_path):
        client.exec(ddl)
        client.exec("INSERT INTO t VALUES (2.25, 'stale remote copy')")
        with SyncWorker(path, client) as worker:
            worker.sync_once()
            assert worker.pending() == 0
        with reading(remote_path) as remote:
            assert snapshot(remote, "t") == snapshot(app.connection, "t")
            assert [r[0] for r in remote.execute("SELECT typeof(k) FROM t ORDER BY k")] == [
                "real",
                "real",
                "integer",
                "real",
            ]


def test_a_real_key_value_needing_seventeen_digits_in_an_untyped_column_is_the_documented_limit(
    tmp_path: Path, request: pytest.FixtureRequest, closer: Closer[Any]
) -> None:
    """docs/sync.md ("Keys"): the change log renders a REAL key with SQLite's JSON functions (15 significant
    digits); a value they do not render exactly (0.1 + 0.2) is not found again and never reaches D1."""
    ddl = "CREATE TABLE t (k PRIMARY KEY NOT NULL, v TEXT)"
    path = tmp_path / "app.db"
    app = closer(LocalDatabase(path))
    app.exec(ddl)
    Outbox(path).track("t")
    app.prepare("INSERT INTO t VALUES (?, 'x')").bind(0.1 + 0.2).run()
    probe = open_file(path)
    exact = probe.execute("SELECT json_array(?) ->> '$[0]' = ?", (0.1 + 0.2, 0.1 + 0.2)).fetchone()[0] == 1
    probe.close()
    with fresh_d1(request, tmp_path) as (client, remote_path):
        client.exec(ddl)
        with SyncWorker(path, client) as worker:
            worker.sync_once()
            assert worker.pending() == 0
        with reading(remote_path) as remote:
            arrived = snapshot(remote, "t") == snapshot(app.connection, "t")
    # On SQLite versions whose JSON functions render doubles exactly the row arrives, and the limit is gone.
    assert arrived == exact
