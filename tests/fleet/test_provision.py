"""Binding a tenant to one database: adopted or created, never twice, recorded in the file, with its schema."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator.server import EmulatorServer
from d1sync.errors import InvalidRequestError, NetworkError
from d1sync.fleet import Placement, bind, copy_schema, schema_statements
from d1sync.fleet.provision import place_of, read_binding
from d1sync.local import LocalDatabase

from ..support import TOKEN
from .conftest import database_file, database_names, make_tenant, open_file


class LosesCreateAnswers(httpx.BaseTransport):
    """A real socket transport that lets a database create through, then drops its answer (as a proxy or a
    network failure would): the database exists, the client never learns its id."""

    def __init__(self, times: int = 1) -> None:
        self.inner = httpx.HTTPTransport()
        self.times = times
        self.creates = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/d1/database"):
            self.creates += 1
            if self.times > 0:
                self.times -= 1
                response.read()
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def client(server: EmulatorServer, database_id: str | None = None, **options: object) -> D1Client:
    return D1Client(
        account_id="acct",
        database_id=database_id,
        api_token=TOKEN,
        base_url=server.api_base,
        retry=RetryPolicy(max_retries=0),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def clients(account: EmulatorServer) -> object:
    opened: list[D1Client] = []

    def make(database_id: str | None = None, **options: object) -> D1Client:
        made = client(account, database_id, **options)
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()


def test_a_new_tenant_gets_a_created_database_with_its_schema(account: EmulatorServer, tenants: Path, clients) -> None:
    path = make_tenant(tenants / "acme.db")
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "CREATE INDEX notes_n ON notes (n);"
            "CREATE VIEW big AS SELECT * FROM notes WHERE n > 2;"
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN SELECT 1; END;"
        )
    binding, how = bind(path, "acme", clients(), clients)
    assert how == "created" and binding.schema_ready and database_names(account) == ["acme"]
    with closing(open_file(database_file(account, binding.database_id))) as remote:
        objects = {(str(t), str(n)) for t, n in remote.execute("SELECT type, name FROM sqlite_master")}
        assert {("table", "notes"), ("index", "notes_n"), ("view", "big")} <= objects
        assert ("trigger", "t") not in objects
        assert remote.execute("SELECT count(*) FROM notes").fetchone()[0] == 0  # the schema, not the rows
    assert read_binding(path, place_of(clients())) == binding


def test_a_database_with_the_name_is_adopted_not_created(account: EmulatorServer, tenants: Path, clients) -> None:
    existing = clients().create_database("acme")
    binding, how = bind(make_tenant(tenants / "acme.db"), "acme", clients(), clients)
    assert how == "adopted" and binding.database_id == existing["uuid"] and database_names(account) == ["acme"]


def test_a_create_whose_answer_was_lost_makes_no_second_database(
    account: EmulatorServer, tenants: Path, clients
) -> None:
    lossy = LosesCreateAnswers()
    binding, how = bind(make_tenant(tenants / "acme.db"), "acme", clients(transport=lossy), clients)
    assert lossy.creates == 1 and database_names(account) == ["acme"]
    assert binding.database_id == clients().list_databases(name="acme")[0]["uuid"]


def test_a_lost_create_and_a_restart_still_make_one_database(account: EmulatorServer, tenants: Path, clients) -> None:
    """The create went through, its answer and the process were lost before the binding was recorded: the
    next start (a new bind) finds the database by name."""
    path = make_tenant(tenants / "acme.db")
    with pytest.raises(NetworkError):
        clients(transport=LosesCreateAnswers()).create_database("acme")  # the first life, killed here
    assert read_binding(path, place_of(clients())) is None
    binding, how = bind(path, "acme", clients(), clients)
    assert how == "adopted" and database_names(account) == ["acme"]


def test_the_binding_is_in_the_file_so_a_renamed_file_keeps_its_database(
    account: EmulatorServer, tenants: Path, clients
) -> None:
    path = make_tenant(tenants / "acme.db")
    first, _ = bind(path, "acme", clients(), clients)
    moved = path.rename(tenants / "renamed.db")
    again, how = bind(moved, "renamed", clients(), clients)
    assert how == "recorded" and again.database_id == first.database_id and database_names(account) == ["acme"]


def test_schema_statements_are_tables_then_indexes_then_views_each_if_not_exists(tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "s.db") as db:
        db.exec(
            "CREATE TABLE a (id INTEGER PRIMARY KEY);"
            "CREATE VIEW va AS SELECT * FROM a;"
            "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a (id));"
            "CREATE UNIQUE INDEX b_a ON b (a_id);"
            "CREATE VIEW vb AS SELECT * FROM b JOIN va ON va.id = b.a_id;"
        )
        statements = schema_statements(db)
        assert [s.split("(")[0].split(" AS ")[0].strip() for s in statements] == [
            "CREATE TABLE IF NOT EXISTS a",
            "CREATE TABLE IF NOT EXISTS b",
            "CREATE UNIQUE INDEX IF NOT EXISTS b_a ON b",
            "CREATE VIEW IF NOT EXISTS va",
            "CREATE VIEW IF NOT EXISTS vb",
        ]
        with LocalDatabase(tmp_path / "copy.db") as copy:
            assert copy_schema(db, copy) == 5
            assert copy_schema(db, copy) == 5  # again: harmless


def test_a_create_refused_as_a_duplicate_adopts_the_database_another_process_made(
    account: EmulatorServer, tenants: Path, clients
) -> None:
    """Between our look-up and our create, another process created the name: D1 (and the emulator) answer
    7502 "already exists", and the binding is that database, not an error and not a second one."""
    from d1sync.fleet.provision import _create_or_adopt

    theirs = clients().create_database("acme")
    with pytest.raises(InvalidRequestError, match="already exists"):
        clients().create_database("acme")  # what the emulator answers a second create
    made, how = _create_or_adopt(clients(), "acme", Placement())
    assert (made["uuid"], how) == (theirs["uuid"], "adopted") and database_names(account) == ["acme"]
