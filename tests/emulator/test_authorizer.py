"""No API caller can make the emulator open or write a file outside its database: ATTACH, DETACH and VACUUM
are refused as D1 refuses them, while every statement d1sync itself sends still runs."""

from __future__ import annotations

import uuid
from pathlib import Path

import apsw
import pytest
from starlette.applications import Starlette

from d1sync.client import D1Client
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer
from d1sync.errors import SQLError

from ..support import TOKEN
from .conftest import Api

NOT_AUTHORIZED = "not authorized: SQLITE_AUTH"
VACUUM_REFUSED = "cannot VACUUM from within a transaction: SQLITE_ERROR"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the emulator's data folder, where no statement may create a file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def assert_refused(api: Api, body: dict[str, object], message: str) -> None:
    status, code, text = api.error(api.post(body))
    assert (status, code, text) == (400, 7500, message)


@pytest.mark.parametrize("form", ["ATTACH DATABASE '{path}' AS other", "attach '{path}' as other", "ATTACH ? AS other"])
def test_attach_is_refused_as_on_d1_and_creates_no_file(api: Api, outside: Path, form: str) -> None:
    target = outside / "attached.sqlite3"
    params = [str(target)] if "?" in form else []
    assert_refused(api, {"sql": form.format(path=target), "params": params}, NOT_AUTHORIZED)
    assert list(outside.iterdir()) == []


def test_attaching_an_in_memory_database_is_refused_too(api: Api) -> None:
    assert_refused(api, {"sql": "ATTACH ':memory:' AS scratch"}, NOT_AUTHORIZED)


@pytest.mark.parametrize("sql", ["DETACH DATABASE main", "DETACH temp", "detach other"])
def test_detach_is_refused_as_on_d1(api: Api, sql: str) -> None:
    assert_refused(api, {"sql": sql}, NOT_AUTHORIZED)


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("VACUUM INTO '{path}'", []),
        ("vacuum main into ?", ["{path}"]),
        ("/* backup */ VACUUM INTO '{path}'", []),
        ("VACUUM", []),
    ],
)
def test_vacuum_and_vacuum_into_are_refused_and_create_no_file(
    api: Api, outside: Path, sql: str, params: list[str]
) -> None:
    target = str(outside / "copy.sqlite3")
    body = {"sql": sql.format(path=target), "params": [p.format(path=target) for p in params]}
    assert_refused(api, body, VACUUM_REFUSED)
    assert list(outside.iterdir()) == []


def test_a_refused_attach_or_vacuum_rolls_back_the_whole_batch(api: Api, outside: Path) -> None:
    api.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    for refused in (f"ATTACH '{outside / 'a.sqlite3'}' AS a", f"VACUUM INTO '{outside / 'b.sqlite3'}'"):
        api.error(api.post({"batch": [{"sql": "INSERT INTO t (id) VALUES (1)"}, {"sql": refused}]}))
        api.error(api.sql(f"INSERT INTO t (id) VALUES (2); {refused}"))
    assert api.ok("SELECT count(*) AS n FROM t") == [{"n": 0}]
    assert list(outside.iterdir()) == []


def test_the_connection_itself_refuses_attach_and_vacuum_outside_a_transaction(app: Starlette, outside: Path) -> None:
    """Defence in depth: code that bypasses Engine.execute still cannot reach another file."""
    connection = app.state.engine.database(DEFAULT_DATABASE_ID).connection
    assert not connection.in_transaction
    for sql in (f"ATTACH '{outside / 'a.sqlite3'}' AS a", f"VACUUM INTO '{outside / 'b.sqlite3'}'"):
        with pytest.raises(apsw.AuthError):
            connection.execute(sql)
    assert list(outside.iterdir()) == []


def test_relative_paths_land_nowhere_either(
    api: Api, app: Starlette, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite resolves a relative ATTACH or VACUUM INTO path against the process's working directory."""
    monkeypatch.chdir(outside)
    api.error(api.sql("ATTACH 'sneaky.sqlite3' AS s"))
    api.error(api.sql("VACUUM INTO 'sneaky-copy.sqlite3'"))
    assert list(outside.iterdir()) == []
    assert {p.name for p in app.state.engine.data_dir.iterdir() if "sneaky" in p.name} == set()


def test_the_client_gets_a_sql_error_over_a_real_socket(emulator_server: EmulatorServer, tmp_path: Path) -> None:
    target = tmp_path / "over-socket.sqlite3"
    with D1Client(
        account_id="acct", database_id=str(uuid.uuid4()), api_token=TOKEN, base_url=emulator_server.api_base
    ) as client:
        with pytest.raises(SQLError) as info:
            client.prepare("ATTACH ? AS other").bind(str(target)).run()
    assert (info.value.code, info.value.status, info.value.message) == (7500, 400, NOT_AUTHORIZED)
    assert not target.exists()


def test_the_statements_d1sync_sends_still_run(api: Api) -> None:
    """The sync worker's PRAGMAs, json_each bulk writes with unhex, triggers and migrations' ledger reads."""
    api.ok("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    api.ok("CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent (id), data BLOB)")
    api.ok("CREATE TRIGGER child_touch AFTER INSERT ON child BEGIN SELECT 1; END")
    assert [r["name"] for r in api.ok("PRAGMA table_info(child)")] == ["id", "parent", "data"]
    upsert = (
        "INSERT INTO child (id, parent, data) SELECT value->>'$[0]', value->>'$[1]', unhex(value->>'$[2]') "
        "FROM json_each(?) WHERE true ON CONFLICT (id) DO UPDATE SET data = excluded.data"
    )
    response = api.post(
        {
            "batch": [
                {"sql": "PRAGMA defer_foreign_keys = on"},
                {"sql": upsert, "params": ['[[1, 7, "00ff"]]']},
                {"sql": "INSERT INTO parent (id) SELECT value FROM json_each(?)", "params": ["[7]"]},
            ]
        }
    )
    assert response.status_code == 200, response.text
    assert api.ok("SELECT hex(data) AS h FROM child") == [{"h": "00FF"}]
    assert api.ok("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)", "parent", "x") == [
        {"name": "parent"}
    ]
    # D1 lists tables but not databases: PRAGMA database_list is outside its allow-list.
    assert api.error(api.sql("SELECT name FROM pragma_database_list"))[2] == NOT_AUTHORIZED
    assert api.ok("SELECT name FROM pragma_table_list WHERE name = 'child'") == [{"name": "child"}]
