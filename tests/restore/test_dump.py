"""The exact SQL dump of a local file: dumped, imported into the emulator through D1's import, every value is
identical (storage class and bits), random double bit patterns included; the schema and FTS5 tables survive."""

from __future__ import annotations

import io
import math
import random
import sqlite3
import struct
from contextlib import closing
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d1sync.emulator.server import EmulatorServer
from d1sync.restore import iter_dump, open_plan, sql_literal, write_dump

from .conftest import client_of, emulator_path, snapshot

EXTREMES: list[Any] = [
    None, 0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 0.0, -0.0, 1.0, -2.5, 0.1, 1e308, -1e-308, 5e-324, 2.0**-1074,
    2.0**-100, 2.0**100, 1.7976931348623157e308, math.inf, -math.inf, "", "it's", "a\x00b", "line\nbreak\r\n",
    "\u2028 é 😀", "\\n stays", b"", b"\x00\xff", "NULL",
]  # fmt: skip


def make_file(path: Path, rows: list[list[Any]]) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE v (a, b, c)")  # no affinity: every value keeps its storage class
        conn.executemany("INSERT INTO v VALUES (?, ?, ?)", rows)


def restored(server: EmulatorServer, source: Path, name: str) -> Path:
    """Dump ``source``, import the dump into a new emulator database; the file behind that database."""
    out = io.StringIO()
    write_dump(source, out)
    with client_of(server) as d1:
        database_id = str(d1.create_database(name)["uuid"])
        with d1.for_database(database_id) as db:
            db.import_sql(out.getvalue())
    return emulator_path(server, database_id)


def random_double(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if not math.isnan(value):  # SQLite stores NaN as NULL
            return value


def test_every_value_survives_bit_for_bit_extremes_and_random_doubles(tmp_path: Path, server: EmulatorServer) -> None:
    rng = random.Random(28)
    values = EXTREMES + [random_double(rng) for _ in range(3000)] + [rng.getrandbits(64) - 2**63 for _ in range(300)]
    rows = [[values[i], values[(i + 1) % len(values)], values[(i * 7) % len(values)]] for i in range(len(values))]
    make_file(tmp_path / "app.db", rows)
    copy = restored(server, tmp_path / "app.db", "values")
    assert snapshot(copy, "v") == snapshot(tmp_path / "app.db", "v")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(
            st.none()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False)
            | st.text()
            | st.binary(max_size=64),
            min_size=3,
            max_size=3,
        ),
        max_size=40,
    )
)
def test_property_dump_then_import_gives_identical_values(
    tmp_path_factory: Any, server: EmulatorServer, rows: list[list[Any]]
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    make_file(folder / "app.db", rows)
    copy = restored(server, folder / "app.db", folder.name)
    assert snapshot(copy, "v") == snapshot(folder / "app.db", "v")


def test_schema_rowids_fts5_and_counters_survive(tmp_path: Path, server: EmulatorServer) -> None:
    source = tmp_path / "app.db"
    with closing(sqlite3.connect(source)) as conn, conn:
        conn.executescript(
            """
            CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);
            CREATE TABLE posts (user_id INTEGER REFERENCES users(id), body TEXT);  -- rowids, not a key
            CREATE TABLE tags (k TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;
            CREATE INDEX posts_user ON posts (user_id);
            CREATE VIEW busy AS SELECT user_id, count(*) AS n FROM posts GROUP BY user_id;
            CREATE VIRTUAL TABLE notes USING fts5 (title, body);
            CREATE VIRTUAL TABLE posts_fts USING fts5 (body, content='posts', content_rowid='rowid');
            CREATE TRIGGER posts_ai AFTER INSERT ON posts BEGIN
              INSERT INTO posts_fts (rowid, body) VALUES (new.rowid, new.body);
            END;
            CREATE TABLE _d1sync_private (x);
            """
        )
        conn.executemany("INSERT INTO users (name) VALUES (?)", [("ann",), ("bob",), ("cy",)])
        conn.execute("DELETE FROM users WHERE name = 'cy'")  # the counter stays at 3
        conn.executemany(
            "INSERT INTO posts (rowid, user_id, body) VALUES (?, ?, ?)", [(5, 2, "hello world"), (9, 1, "x")]
        )
        conn.execute("INSERT INTO tags VALUES ('a', 1), ('b', 2)")
        conn.execute("INSERT INTO notes (rowid, title, body) VALUES (7, 'fts', 'full text search'), (8, 'two', 'more')")
    copy = restored(server, source, "schema")
    for table in ("users", "posts", "notes"):
        assert snapshot(copy, table) == snapshot(source, table), table
    assert snapshot(copy, "tags", "*") == snapshot(source, "tags", "*")
    with closing(sqlite3.connect(copy)) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"posts_user", "busy", "posts_ai", "notes", "posts_fts"} <= names and "_d1sync_private" not in names
        assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'users'").fetchone() == (3,)
        assert conn.execute("SELECT rowid FROM notes WHERE notes MATCH 'search'").fetchall() == [(7,)]
        assert conn.execute("SELECT rowid FROM posts_fts WHERE posts_fts MATCH 'hello'").fetchall() == [(5,)]
        assert conn.execute("SELECT * FROM busy ORDER BY user_id").fetchall() == [(1, 1), (2, 1)]


def test_literals_are_exact_and_stay_on_one_line() -> None:
    assert sql_literal("it's") == "'it''s'"
    assert sql_literal("a\nb") == "CAST(x'610a62' AS TEXT)"
    assert sql_literal(2.0**-1074) == "(1 * pow(2.0, -1074))"
    assert sql_literal(0.1) == "0.1" and sql_literal(-math.inf) == "-1e999"
    assert sql_literal(b"\x00") == "x'00'" and sql_literal(None) == "NULL" and sql_literal(-(2**63)) == str(-(2**63))


def test_statements_stay_under_d1s_100_kb_counted_in_bytes(tmp_path: Path) -> None:
    make_file(tmp_path / "app.db", [["😀" * 1000, i, None] for i in range(300)])  # 4,000 bytes a row
    out = io.StringIO()
    write_dump(tmp_path / "app.db", out)
    inserts = [line for line in out.getvalue().splitlines() if line.startswith("INSERT")]
    assert len(inserts) > 1 and all(len(line.encode()) <= 100_000 for line in inserts)


def test_the_dump_reads_one_state_of_the_file_while_the_application_writes(tmp_path: Path) -> None:
    make_file(tmp_path / "app.db", [[1, 2, 3]])
    with closing(sqlite3.connect(tmp_path / "app.db", isolation_level=None)) as app:
        app.execute("PRAGMA journal_mode = WAL")
        with open_plan(tmp_path / "app.db") as dump:
            app.execute("INSERT INTO v VALUES (4, 5, 6)")  # committed while the dump runs
            text = "".join(iter_dump(dump))
    assert "(1,1,2,3)" in text and "4,5,6" not in text  # rowid first
