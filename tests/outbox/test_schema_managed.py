"""D1's tables follow the local schema (d1sync manages the mirror's schema), through a real emulator socket.

Each test changes the schema only locally, as an application's migration tool would (plain ALTER TABLE, or
the create-copy-drop-rename rebuild Alembic and Django do on SQLite), drains, and ends by comparing both
schemas (read_schemas + compare_schemas) and both SQLite files row by row, storage classes included.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync.emulator.server import EmulatorServer
from d1sync.migrations.runner import ledger_ddl
from d1sync.outbox import Outbox, SyncConfig
from d1sync.sync.schema.describe import TableSchema, compare_schemas, is_migrations_ledger, read_schemas

from .conftest import Mirror, open_file

BOOKS = "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, pages INTEGER NOT NULL, score INTEGER)"


def write(mirror: Mirror, sql: str, rows: list[tuple[Any, ...]]) -> None:
    with mirror.app.atomic() as conn:
        conn.executemany(sql, rows)


def remote_table(mirror: Mirror, table: str) -> TableSchema | None:
    return read_schemas(mirror.remote, [table]).get(table)


def same_schema(mirror: Mirror, table: str) -> bool:
    local = read_schemas(mirror.app, [table]).get(table)
    return local is not None and compare_schemas(local, remote_table(mirror, table)) == []


def last_change(mirror: Mirror, table: str) -> dict[str, Any]:
    change = mirror.worker.status().table_states[table].last_schema_change
    assert change is not None
    return change


def rebuild(mirror: Mirror, table: str, ddl: str, columns: str, source: str | None = None) -> None:
    """The rebuild Alembic's batch mode and Django do on SQLite: foreign keys off, then in one transaction a
    new table, the rows copied, the old table dropped, the new one renamed."""
    with closing(open_file(mirror.path)) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.executescript(
            f"BEGIN; {ddl.replace(f'CREATE TABLE {table} ', f'CREATE TABLE _new_{table} ', 1)}; "
            f"INSERT INTO _new_{table} ({columns}) SELECT {source or columns} FROM {table}; "
            f"DROP TABLE {table}; ALTER TABLE _new_{table} RENAME TO {table}; COMMIT"
        )


def test_a_table_missing_on_d1_is_created_with_its_indexes_and_views(mirror: Mirror) -> None:
    mirror.app.exec(
        "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES authors (id), "
        "body TEXT DEFAULT '' CHECK (length(body) < 1000));"
        "CREATE INDEX posts_author ON posts (author_id);"
        "CREATE VIEW post_authors AS SELECT p.id, a.name FROM posts AS p JOIN authors AS a ON a.id = p.author_id;"
    )
    write(mirror, "INSERT INTO authors VALUES (?, ?)", [(1, "ann"), (2, "bob")])
    write(mirror, "INSERT INTO posts VALUES (?, ?, ?)", [(i, 1 + i % 2, f"p{i}") for i in range(50)])
    mirror.track("posts", "authors")
    report = mirror.drain()
    assert report.drained and mirror.exact("authors") and mirror.exact("posts")
    assert same_schema(mirror, "authors") and same_schema(mirror, "posts")
    views = mirror.remote.prepare("SELECT name FROM sqlite_master WHERE type = 'view'").raw()
    assert views == [["post_authors"]]
    assert mirror.remote.prepare("SELECT count(*) AS n FROM post_authors").first("n") == 50
    assert last_change(mirror, "posts")["action"] == "create"
    assert any("CREATE INDEX" in sql for sql in last_change(mirror, "posts")["sql"])


def test_add_and_drop_column_are_applied_on_d1_as_the_same_statements(mirror: Mirror) -> None:
    mirror.both(BOOKS)
    mirror.track("books")
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, i) for i in range(100)])
    assert mirror.drain().drained
    mirror.app.exec("ALTER TABLE books ADD COLUMN status TEXT NOT NULL DEFAULT 'active'")
    mirror.app.exec("UPDATE books SET status = 'gone' WHERE id < 10")
    assert mirror.drain().drained and mirror.exact("books") and same_schema(mirror, "books")
    assert last_change(mirror, "books") | {"at": 0} == {
        "at": 0,
        "action": "alter",
        "sql": ["""ALTER TABLE "books" ADD COLUMN status TEXT NOT NULL DEFAULT 'active'"""],
    }
    mirror.app.exec("CREATE INDEX books_status ON books (status); ALTER TABLE books DROP COLUMN score")
    assert mirror.drain().drained and mirror.exact("books") and same_schema(mirror, "books")
    assert last_change(mirror, "books")["sql"] == [
        'ALTER TABLE "books" DROP COLUMN "score"',
        "CREATE INDEX books_status ON books (status)",
    ]


def test_a_column_renamed_locally_is_renamed_on_d1_and_keeps_its_values(mirror: Mirror) -> None:
    mirror.both(BOOKS)
    mirror.track("books")
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, i) for i in range(100)])
    assert mirror.drain().drained
    mirror.app.exec("ALTER TABLE books RENAME COLUMN pages TO page_count")
    assert mirror.drain().drained and mirror.exact("books") and same_schema(mirror, "books")
    assert last_change(mirror, "books")["sql"] == ['ALTER TABLE "books" RENAME COLUMN "pages" TO "page_count"']


def test_a_type_change_is_rebuilt_on_d1_exactly(mirror: Mirror) -> None:
    mirror.both(BOOKS)
    mirror.track("books")
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, 700 + i) for i in range(248)])
    assert mirror.drain().drained
    new = "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, pages INTEGER NOT NULL, score VARCHAR(20))"
    rebuild(mirror, "books", new, "id, title, pages, score")
    report = mirror.drain()
    assert report.drained and report.dead == 0 and mirror.exact("books") and same_schema(mirror, "books")
    remote = remote_table(mirror, "books")
    assert remote is not None and remote.column("score").type == "VARCHAR(20)"  # type: ignore[union-attr]
    stored = mirror.remote.prepare("SELECT score, typeof(score) AS t FROM books WHERE id = 0").first()
    assert stored == {"score": "700", "t": "text"}
    assert last_change(mirror, "books")["action"] == "rebuild"


def test_a_drop_plus_an_add_is_never_taken_for_a_rename(mirror: Mirror) -> None:
    mirror.both("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, legacy_code TEXT)")
    mirror.track("accounts")
    write(mirror, "INSERT INTO accounts VALUES (?, ?, ?)", [(i, f"a{i}", f"L{i}") for i in range(200)])
    assert mirror.drain().drained
    mirror.app.exec(
        "ALTER TABLE accounts DROP COLUMN legacy_code; "
        "ALTER TABLE accounts ADD COLUMN status TEXT NOT NULL DEFAULT 'active'"
    )
    report = mirror.drain()
    assert report.drained and report.dead == 0 and mirror.exact("accounts") and same_schema(mirror, "accounts")
    status = remote_table(mirror, "accounts").column("status")  # type: ignore[union-attr]
    assert status is not None and (status.notnull, status.default) == (True, "'active'")
    assert not any("RENAME" in sql for sql in last_change(mirror, "accounts")["sql"])


def test_a_drop_plus_an_add_by_rebuild_is_rebuilt_with_the_new_columns_constraints(mirror: Mirror) -> None:
    mirror.both("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, legacy_code TEXT)")
    mirror.track("accounts")
    write(mirror, "INSERT INTO accounts VALUES (?, ?, ?)", [(i, f"a{i}", f"L{i}") for i in range(200)])
    assert mirror.drain().drained
    new = "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, status TEXT NOT NULL DEFAULT 'active')"
    rebuild(mirror, "accounts", new, "id, name")
    report = mirror.drain()
    assert report.drained and report.dead == 0 and mirror.exact("accounts") and same_schema(mirror, "accounts")
    assert not any("RENAME" in sql for sql in last_change(mirror, "accounts")["sql"])


@pytest.mark.parametrize("pass_between", [True, False])
def test_a_rename_then_a_rebuild_converges_with_no_dead_letters(mirror: Mirror, pass_between: bool) -> None:
    """Django: RenameField (ALTER TABLE RENAME COLUMN), then AddField (a rebuild), then AlterField."""
    mirror.both(BOOKS)
    mirror.track("books")
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, i) for i in range(300)])
    assert mirror.drain().drained
    mirror.app.exec("ALTER TABLE books RENAME COLUMN pages TO page_count")
    if pass_between:
        assert mirror.drain().drained
    new = (
        "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, page_count INTEGER NOT NULL, "
        "score INTEGER, isbn VARCHAR(13) NOT NULL DEFAULT '')"
    )
    rebuild(mirror, "books", new, "id, title, page_count, score")
    write(mirror, "UPDATE books SET isbn = ? WHERE id = ?", [(f"978{i:010d}", i) for i in range(0, 300, 7)])
    altered = new.replace("score INTEGER", "score REAL")
    rebuild(mirror, "books", altered, "id, title, page_count, score, isbn")
    report = mirror.drain()
    assert report.drained and report.dead == 0 and mirror.exact("books") and same_schema(mirror, "books")
    assert mirror.worker.status().dead_letters == 0


def test_a_child_with_on_delete_cascade_is_sent_again_after_its_parents_rebuild(
    mirror: Mirror, caplog: pytest.LogCaptureFixture
) -> None:
    mirror.both(
        "CREATE TABLE parents (id INTEGER PRIMARY KEY, name TEXT, rank INTEGER);"
        "CREATE TABLE kids (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents (id) ON DELETE CASCADE, "
        "v TEXT);"
        "CREATE TABLE grandkids (id INTEGER PRIMARY KEY, kid_id INTEGER REFERENCES kids (id) ON DELETE CASCADE);"
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents (id));"
    )
    mirror.track("parents", "kids", "grandkids", "notes")
    write(mirror, "INSERT INTO parents VALUES (?, ?, ?)", [(i, f"p{i}", i) for i in range(40)])
    write(mirror, "INSERT INTO kids VALUES (?, ?, ?)", [(i, i % 40, f"k{i}") for i in range(120)])
    write(mirror, "INSERT INTO grandkids VALUES (?, ?)", [(i, i % 120) for i in range(200)])
    write(mirror, "INSERT INTO notes VALUES (?, ?)", [(i, i % 40) for i in range(60)])
    assert mirror.drain().drained
    new = "CREATE TABLE parents (id INTEGER PRIMARY KEY, name TEXT, rank TEXT)"
    with caplog.at_level(logging.INFO, logger="d1sync"):
        rebuild(mirror, "parents", new, "id, name, rank")
        report = mirror.drain()
    assert report.drained and report.dead == 0
    for table in ("parents", "kids", "grandkids", "notes"):
        assert mirror.exact(table), table
    assert same_schema(mirror, "parents")
    assert any("rebuild" in r.getMessage() and "DROP TABLE" in r.getMessage() for r in caplog.records)


def test_an_untracked_child_is_warned_about_before_the_rebuild(
    mirror: Mirror, caplog: pytest.LogCaptureFixture
) -> None:
    mirror.both(
        "CREATE TABLE parents (id INTEGER PRIMARY KEY, rank INTEGER);"
        "CREATE TABLE kids (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents (id) ON DELETE CASCADE);"
    )
    mirror.track("parents")
    write(mirror, "INSERT INTO parents VALUES (?, ?)", [(1, 1)])
    assert mirror.drain().drained
    rebuild(mirror, "parents", "CREATE TABLE parents (id INTEGER PRIMARY KEY, rank TEXT)", "id, rank")
    with caplog.at_level(logging.WARNING, logger="d1sync"):
        assert mirror.drain().drained and mirror.exact("parents")
    assert any("kids is not tracked" in r.getMessage() for r in caplog.records)


def test_a_ledger_is_called_d1_migrations_or_made_by_wranglers_ddl_under_any_name(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "x.db")) as conn:
        conn.executescript(
            ledger_ddl() + ledger_ddl("custom") + ledger_ddl("odd name")
            + "CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT, applied_at TEXT);"  # the columns, not the DDL
        )  # fmt: skip
        found = {name: is_migrations_ledger(table) for name, table in read_schemas(conn).items()}
    assert found == {"d1_migrations": True, "custom": True, "odd name": True, "jobs": False}


LEDGERS = {
    "d1_migrations": "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY, name TEXT)",  # the name is enough
    "renamed": ledger_ddl("app_migrations"),  # wrangler's migrations_table: its DDL under another name
    "renamed, by hand": (
        'CREATE TABLE "Schema Log" (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE,'
        " applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
    ),
}


@pytest.mark.parametrize("ledger", sorted(LEDGERS))
def test_a_remote_with_a_migrations_ledger_keeps_its_schema_and_the_table_pauses_with_the_fix(
    mirror: Mirror, ledger: str
) -> None:
    mirror.remote.exec(LEDGERS[ledger])
    mirror.app.exec(BOOKS)
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(1, "t", 1, 1)])
    mirror.track("books")
    report = mirror.drain()
    assert report.state == "paused" and remote_table(mirror, "books") is None
    books = mirror.worker.status().table_states["books"]
    assert books.state == "paused" and "missing on the remote" in str(books.reason)
    assert "add a migration that runs" in str(books.fix) and "CREATE TABLE books" in str(books.fix)
    assert f"d1sync track {mirror.path} books --manage-schema" in str(books.fix)
    with Outbox(mirror.path) as outbox:
        outbox.track("books", manage_schema=True)  # the per-table choice wins over the ledger
    mirror.worker.resume()
    assert mirror.drain().drained and mirror.exact("books") and same_schema(mirror, "books")


def test_no_manage_schema_pauses_a_changed_table_with_the_fix_and_touches_nothing(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    mirror = Mirror(tmp_path, emulator, config=SyncConfig(manage_schema=False))
    try:
        mirror.both(BOOKS)
        mirror.track("books")
        write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(1, "t", 1, 1)])
        assert mirror.drain().drained
        mirror.app.exec("ALTER TABLE books RENAME COLUMN pages TO page_count")
        mirror.drain()
        books = mirror.worker.status().table_states["books"]
        assert books.state == "paused"
        assert books.fix is not None and books.fix.startswith(
            'run on the remote: ALTER TABLE "books" RENAME COLUMN "pages" TO "page_count"'
        )
        assert remote_table(mirror, "books").column("pages") is not None  # type: ignore[union-attr]
        assert books.last_schema_change is None
    finally:
        mirror.close()


def test_an_unmanaged_table_whose_d1_copy_refuses_every_row_pauses_and_dead_letters_nothing(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    mirror = Mirror(tmp_path, emulator, config=SyncConfig(manage_schema=False))
    try:
        mirror.app.exec(BOOKS)
        mirror.remote.exec(BOOKS.replace("score INTEGER)", "score INTEGER, isbn TEXT NOT NULL)"))
        mirror.track("books")
        write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(1, "t", 1, 1)])  # one row: no probes to compare
        report = mirror.drain()
        books = mirror.worker.status().table_states["books"]
        assert report.state == "paused" and books.state == "paused" and "refuse every row" in str(books.reason)
        assert 'ALTER TABLE "books" DROP COLUMN "isbn"' in str(books.fix) and f"resume {mirror.path}" in str(books.fix)
        assert mirror.worker.status().dead_letters == 0 and mirror.worker.pending() == 1
        mirror.remote.exec('ALTER TABLE "books" DROP COLUMN "isbn"')  # the owner follows the fix
        mirror.worker.resume()
        assert mirror.drain().drained and mirror.exact("books") and mirror.worker.status().dead_letters == 0
    finally:
        mirror.close()


def test_a_two_way_table_is_never_rebuilt(mirror: Mirror, caplog: pytest.LogCaptureFixture) -> None:
    mirror.both(BOOKS)
    with Outbox(mirror.path) as outbox:
        outbox.replicate("books", target=mirror.remote)
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, i) for i in range(20)])
    assert mirror.drain().drained
    before = mirror.remote.prepare("SELECT sql FROM sqlite_master WHERE name = 'books'").first("sql")
    new = "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, pages INTEGER NOT NULL, score TEXT)"
    with caplog.at_level(logging.WARNING, logger="d1sync"):
        rebuild(mirror, "books", new, "id, title, pages, score")
        mirror.drain()
    assert mirror.remote.prepare("SELECT sql FROM sqlite_master WHERE name = 'books'").first("sql") == before
    assert mirror.worker.status().table_states["books"].last_schema_change is None
    assert any("differs on the remote" in r.getMessage() for r in caplog.records)


def test_status_json_lists_the_last_schema_change_per_table(mirror: Mirror) -> None:
    mirror.app.exec(BOOKS)
    mirror.track("books")
    assert mirror.drain().drained
    data = json.loads(json.dumps(mirror.worker.status().to_dict()))
    change = data["table_states"]["books"]["last_schema_change"]
    assert change["action"] == "create" and change["sql"][0].startswith("CREATE TABLE IF NOT EXISTS books")


def test_a_table_renamed_locally_is_renamed_on_d1(mirror: Mirror) -> None:
    mirror.both(BOOKS)
    mirror.track("books")
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, i) for i in range(50)])
    assert mirror.drain().drained
    mirror.app.exec("ALTER TABLE books RENAME TO volumes; UPDATE volumes SET title = 'x' WHERE id < 5")
    assert mirror.drain().drained and mirror.exact("volumes") and same_schema(mirror, "volumes")
    assert remote_table(mirror, "books") is None
    assert last_change(mirror, "volumes")["sql"] == ['ALTER TABLE "books" RENAME TO "volumes"']


def test_a_table_dropped_on_d1_is_created_again_and_every_row_sent_again(mirror: Mirror) -> None:
    mirror.app.exec(BOOKS)
    mirror.track("books")
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, i) for i in range(80)])
    assert mirror.drain().drained and mirror.exact("books")
    mirror.remote.exec("DROP TABLE books")
    mirror.worker.resume()  # what `d1sync sync` does: the remote schema is checked again
    assert mirror.drain().drained and mirror.exact("books") and same_schema(mirror, "books")


def test_a_rebuild_d1_refuses_pauses_that_table_with_the_reason_and_leaves_d1_as_it_was(mirror: Mirror) -> None:
    mirror.both(
        "CREATE TABLE parents (id INTEGER PRIMARY KEY, rank INTEGER);"
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents (id));"
    )
    mirror.track("parents", "notes")
    write(mirror, "INSERT INTO parents VALUES (?, ?)", [(i, i) for i in range(10)])
    write(mirror, "INSERT INTO notes VALUES (?, ?)", [(i, i) for i in range(10)])
    assert mirror.drain().drained
    before = remote_table(mirror, "parents")
    # The new NOT NULL column's placeholder fails its CHECK, so no old row comes back into the new table,
    # and the notes referencing them make D1 refuse the batch at its commit.
    new = "CREATE TABLE parents (id INTEGER PRIMARY KEY, rank TEXT, code INTEGER NOT NULL CHECK (code > 0))"
    rebuild(mirror, "parents", new, "id, rank, code", "id, rank, id + 1")
    mirror.drain()
    parents = mirror.worker.status().table_states["parents"]
    assert parents.state == "paused" and "rebuild of 'parents' on D1 failed" in str(parents.reason)
    assert "FOREIGN KEY constraint failed" in str(parents.reason) and "--no-manage-schema" in str(parents.fix)
    assert remote_table(mirror, "parents") == before and mirror.exact("notes")
    assert parents.last_schema_change is None


def test_a_rename_d1_cannot_follow_as_a_rename_is_made_exact_by_sending_the_rows_again(mirror: Mirror) -> None:
    mirror.both(BOOKS)
    mirror.track("books", manage_schema=False)
    write(mirror, "INSERT INTO books VALUES (?, ?, ?, ?)", [(i, f"t{i}", i, i) for i in range(60)])
    assert mirror.drain().drained
    mirror.app.exec("ALTER TABLE books RENAME COLUMN pages TO page_count")
    mirror.drain()
    assert mirror.worker.status().table_states["books"].state == "paused"
    # Its owner makes D1 fit another way than the RENAME the fix says: the values arrive by re-send.
    mirror.remote.exec("ALTER TABLE books DROP COLUMN pages; ALTER TABLE books ADD COLUMN page_count INTEGER")
    mirror.worker.resume()
    assert mirror.drain().drained and mirror.exact("books")
