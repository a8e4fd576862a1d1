"""read_schemas reads every table's schema in one request, the same from a local file and from the emulator
(D1's authorizer and all), and compare_schemas names each real difference and no noise."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync.database import Database, RawResult, Statement
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.sqlite import connect
from d1sync.sync.schema.create import create_statements, read_objects
from d1sync.sync.schema.describe import SchemaDifference, TableSchema, compare_schemas, read_schemas
from d1sync.sync.schema.plan import alter_statements

from .conftest import emulator_client

SCHEMA = """
CREATE TABLE parent (id INTEGER PRIMARY KEY, code TEXT UNIQUE);
CREATE TABLE "Child" (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE,
    score VARCHAR(20) NOT NULL DEFAULT '0' CHECK (score <> ''),
    note TEXT COLLATE NOCASE,
    UNIQUE (parent_id, score)
);
CREATE INDEX child_score ON "Child"(score) WHERE score > 0;
CREATE TABLE pair (a TEXT, b INTEGER, v BLOB, PRIMARY KEY (b, a)) WITHOUT ROWID;
CREATE VIEW child_view AS SELECT id, score FROM "Child";
"""


class Counting(Database):
    """A Database that counts the requests it forwards (a request is one ``batch_raw``)."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.requests = 0

    def batch_raw(self, statements: Any, *, idempotent: bool = False) -> list[RawResult]:
        self.requests += 1
        return self.inner.batch_raw(statements, idempotent=idempotent)

    def exec(self, sql: str) -> Any:
        return self.inner.exec(sql)

    def _execute(self, statement: Statement) -> Any:
        self.requests += 1
        return self.inner.prepare(statement.sql).bind(*statement.params).all()

    def _execute_raw(self, statement: Statement) -> RawResult:
        self.requests += 1
        return self.inner.batch_raw([self.inner.prepare(statement.sql).bind(*statement.params)])[0]


def _check_schema(schemas: dict[str, TableSchema]) -> None:
    assert sorted(schemas) == ["Child", "pair", "parent"]
    child = schemas["Child"]
    assert [(c.name, c.type, c.notnull, c.default, c.pk) for c in child.columns] == [
        ("id", "INTEGER", False, None, 1),
        ("parent_id", "INTEGER", False, None, 0),
        ("score", "VARCHAR(20)", True, "'0'", 0),
        ("note", "TEXT", False, None, 0),
    ]
    explicit = [i for i in child.indexes if i.sql is not None]
    automatic = [i for i in child.indexes if i.sql is None]
    assert [(i.name, i.unique, i.columns) for i in explicit] == [("child_score", False, ("score",))]
    assert [(i.unique, i.columns) for i in automatic] == [(True, ("parent_id", "score"))]
    assert [(fk.columns, fk.table, fk.to, fk.on_delete) for fk in child.foreign_keys] == [
        (("parent_id",), "parent", ("id",), "CASCADE")
    ]
    assert child.checks == ("SCORE: SCORE <> ''",)
    assert child.parents == ("parent",)
    assert schemas["pair"].key == ("b", "a") and schemas["pair"].options == ("WITHOUT", "ROWID")


def test_a_local_file_is_described_in_one_request(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "a.db") as db:
        db.exec(SCHEMA)
        counting = Counting(db)
        schemas = read_schemas(counting)
        assert counting.requests == 1
        _check_schema(schemas)
        assert sorted(read_schemas(db, ["child", "missing"])) == ["Child"]  # names as SQLite compares them


def test_the_emulator_is_described_in_one_request_through_d1s_authorizer(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    with emulator_client(emulator) as remote:
        remote.exec(SCHEMA)
        counting = Counting(remote)
        schemas = read_schemas(counting)
        assert counting.requests == 1
        _check_schema(schemas)
        with LocalDatabase(tmp_path / "a.db") as db:
            db.exec(SCHEMA)
            local = read_schemas(db)
        assert all(compare_schemas(local[n], schemas[n]) == [] for n in local)


def test_a_connection_is_described_like_a_database(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "a.db") as db:
        db.exec(SCHEMA)
    with closing(connect(tmp_path / "a.db")) as conn:  # a sqlite3 connection's own `with` does not close it
        _check_schema(read_schemas(conn))


def test_outbox_d1_and_sqlite_tables_are_not_user_tables(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "a.db") as db:
        db.exec(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);"
            "CREATE TABLE _d1sync_changes (seq INTEGER PRIMARY KEY);"
            "CREATE TABLE _cf_KV (key TEXT PRIMARY KEY);"
            "CREATE VIRTUAL TABLE docs USING fts5(body);"
            "INSERT INTO t (v) VALUES ('x');"
        )
        assert sorted(read_schemas(db)) == ["docs", "t"]  # no sqlite_sequence, no fts5 shadow tables


def test_blanks_quoting_case_and_comments_in_the_ddl_are_not_differences(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "a.db") as a, LocalDatabase(tmp_path / "b.db") as b:
        a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, score varchar ( 20 ) not null default 'x', CHECK (id > 0))")
        b.exec(
            'CREATE TABLE "T" (\n  "id" integer PRIMARY KEY, -- the key\n  [score] VARCHAR(20) NOT NULL'
            " DEFAULT 'x',\n  check(ID>0)\n)"
        )
        assert compare_schemas(read_schemas(a)["t"], read_schemas(b)["T"]) == []


def _differences(local_ddl: str, remote_ddl: str, tmp_path: Path) -> list[str]:
    with LocalDatabase(tmp_path / "l.db") as a, LocalDatabase(tmp_path / "r.db") as b:
        a.exec(local_ddl)
        b.exec(remote_ddl)
        return [str(d) for d in compare_schemas(read_schemas(a).get("t"), read_schemas(b).get("t"))]


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, score VARCHAR(20))",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, score INTEGER)",
            ["column 'score': declared type VARCHAR(20) locally, INTEGER on D1"],
        ),
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT NOT NULL DEFAULT 'active')",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT)",
            [
                "column 'status': NOT NULL locally, nullable on D1",
                "column 'status': default 'active' locally, none on D1",
            ],
        ),
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, b TEXT)",
            ["column 'a' (TEXT) is missing on D1", "column 'b' (TEXT) is only on D1"],
        ),
        (
            "CREATE TABLE t (a TEXT, b TEXT, PRIMARY KEY (a, b))",
            "CREATE TABLE t (a TEXT PRIMARY KEY, b TEXT)",
            ["column 'b': primary key position 2 locally, 0 on D1"],
        ),
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT UNIQUE CHECK (a <> ''))",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            ["unique UNIQUE (a) is missing on D1", "check A: A <> '' is missing on D1"],
        ),
        (
            "CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE t (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p);",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, p INTEGER)",
            ["foreign key (p) REFERENCES p(?) ON UPDATE NO ACTION ON DELETE NO ACTION is missing on D1"],
        ),
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT); CREATE INDEX t_a ON t(a)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT); CREATE INDEX t_a ON t(a DESC)",
            ["index: CREATE INDEX t_a ON t(a) locally, CREATE INDEX t_a ON t(a DESC) on D1"],
        ),
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT COLLATE NOCASE)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            ["column 'a': definition A TEXT COLLATE NOCASE locally, A TEXT on D1"],
        ),
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            "CREATE TABLE other (id INTEGER PRIMARY KEY)",
            ["table 't' is missing on D1"],
        ),
    ],
)
def test_each_kind_of_difference_is_named(local: str, remote: str, expected: list[str], tmp_path: Path) -> None:
    assert _differences(local, remote, tmp_path) == expected


def test_a_difference_keeps_each_sides_value() -> None:
    difference = SchemaDifference("t", "score", "type", "VARCHAR(20)", "INTEGER")
    assert (difference.local, difference.remote) == ("VARCHAR(20)", "INTEGER")


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        (  # added at the end in a form ADD COLUMN takes: the same statement
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT NOT NULL DEFAULT 'x')",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            ["ALTER TABLE \"t\" ADD COLUMN b TEXT NOT NULL DEFAULT 'x'"],
        ),
        (  # NOT NULL without a default: ADD COLUMN cannot
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT NOT NULL)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            None,
        ),
        (  # UNIQUE, or a CURRENT_TIMESTAMP default: ADD COLUMN cannot
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT UNIQUE)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            None,
        ),
        (
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT DEFAULT CURRENT_TIMESTAMP)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            None,
        ),
        (  # a column added anywhere but at the end is a rebuild
            "CREATE TABLE t (id INTEGER PRIMARY KEY, b TEXT, a TEXT)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)",
            None,
        ),
        (  # dropped, and an index made: the same statements, indexes dropped first and created last
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT); CREATE INDEX t_a ON t (a)",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, gone TEXT); CREATE INDEX t_gone ON t (gone)",
            ['DROP INDEX IF EXISTS "t_gone"', 'ALTER TABLE "t" DROP COLUMN "gone"', "CREATE INDEX t_a ON t (a)"],
        ),
        (  # a type: a rebuild
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a VARCHAR(20))",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER)",
            None,
        ),
    ],
)
def test_alter_statements_are_the_same_statements_or_none_for_a_rebuild(
    local: str, remote: str, expected: list[str] | None, tmp_path: Path
) -> None:
    with LocalDatabase(tmp_path / "l.db") as a, LocalDatabase(tmp_path / "r.db") as b:
        a.exec(local)
        b.exec(remote)
        mine, theirs = read_schemas(a)["t"], read_schemas(b)["t"]
    assert alter_statements(mine, theirs, compare_schemas(mine, theirs)) == expected


def test_creation_statements_put_parents_first_and_views_once_their_tables_exist(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "a.db") as db:
        db.exec(
            "CREATE TABLE kid (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent (id));"
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE VIEW both_ AS SELECT * FROM kid JOIN parent ON parent.id = kid.p;"
            "CREATE INDEX kid_p ON kid (p);"
        )
        objects = read_objects(db)
    assert [s.split(" (")[0] for s in create_statements(objects, ["kid", "parent"])] == [
        "CREATE TABLE IF NOT EXISTS parent",
        "CREATE TABLE IF NOT EXISTS kid",
        "CREATE INDEX IF NOT EXISTS kid_p ON kid",
        "CREATE VIEW IF NOT EXISTS both_ AS SELECT * FROM kid JOIN parent ON parent.id = kid.p",
    ]
    assert [s.split(" (")[0] for s in create_statements(objects, ["kid"])] == [
        "CREATE TABLE IF NOT EXISTS kid",
        "CREATE INDEX IF NOT EXISTS kid_p ON kid",
    ]
