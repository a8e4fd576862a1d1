"""The emulator's REST surface: envelope, meta, routes, auth and database management (d1-contract §1, §2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette

from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.engine import ApiError, Engine

from .conftest import ACCOUNTS, AUTH, TOKEN, Api, AppFactory, query_path

META_KEYS = {
    "changed_db",
    "changes",
    "duration",
    "last_row_id",
    "rows_read",
    "rows_written",
    "size_after",
    "served_by_region",
    "served_by_primary",
    "served_by_colo",
    "timings",
}
OTHER_ID = "6f1c2a52-9d2e-4c41-9a43-1f0f3c6b2d10"


def test_success_envelope_has_all_four_keys_and_d1_meta(api: Api) -> None:
    response = api.sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = api.sql("INSERT INTO t (v) VALUES (?)", "x").json()
    assert set(body) == {"result", "success", "errors", "messages"}
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    [element] = body["result"]
    assert element["success"] is True and element["results"] == []
    meta = element["meta"]
    assert META_KEYS <= set(meta)
    assert meta["changes"] == 1 and meta["last_row_id"] == 1 and meta["changed_db"] is True
    assert meta["rows_written"] == 1 and meta["size_after"] > 0
    assert isinstance(meta["timings"]["sql_duration_ms"], int | float)
    assert meta["served_by_primary"] is True and meta["served_by_region"] and meta["served_by_colo"]


def test_error_envelope_has_all_four_keys_and_null_result(api: Api) -> None:
    body = api.sql("SELECT * FROM missing").json()
    assert set(body) == {"result", "success", "errors", "messages"}
    assert body["result"] is None and body["success"] is False and body["messages"] == []


def test_query_rows_are_objects_and_raw_rows_are_arrays_with_columns(api: Api) -> None:
    api.ok("CREATE TABLE t (a INTEGER, b TEXT)")
    api.ok("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    assert api.ok("SELECT a, b FROM t ORDER BY a") == [{"a": 1, "b": "one"}, {"a": 2, "b": "two"}]
    raw = api.sql("SELECT a, b FROM t ORDER BY a", raw=True).json()["result"][0]["results"]
    assert raw == {"columns": ["a", "b"], "rows": [[1, "one"], [2, "two"]]}


def test_raw_keeps_column_names_on_an_empty_result(api: Api) -> None:
    api.ok("CREATE TABLE t (a INTEGER, b TEXT)")
    raw = api.sql("SELECT a, b FROM t", raw=True).json()["result"][0]["results"]
    assert raw == {"columns": ["a", "b"], "rows": []}


def test_several_statements_in_one_sql_give_one_result_each(api: Api) -> None:
    result = api.sql("SELECT 1 AS a; SELECT 2 AS b; SELECT 3 AS c").json()["result"]
    assert [r["results"] for r in result] == [[{"a": 1}], [{"b": 2}], [{"c": 3}]]


def test_batch_gives_one_result_per_statement_in_order(api: Api) -> None:
    body = {"batch": [{"sql": "SELECT ? AS x", "params": ["a"]}, {"sql": "SELECT 2 AS y"}]}
    result = api.post(body).json()["result"]
    assert [r["results"] for r in result] == [[{"x": "a"}], [{"y": 2}]]


def test_sql_error_is_7500_400_with_sqlite_text_and_suffix(api: Api) -> None:
    assert api.error(api.sql("SELECT * FROM missing")) == (400, 7500, "no such table: missing: SQLITE_ERROR")
    api.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    api.ok("INSERT INTO t VALUES (1)")
    status, code, message = api.error(api.sql("INSERT INTO t VALUES (1)"))
    # D1 names the extended code of constraint errors (d1-contract §3, "Error text").
    expected = "UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_PRIMARYKEY)"
    assert (status, code, message) == (400, 7500, expected)


def test_wrong_number_of_bindings_is_a_7500_sql_error(api: Api) -> None:
    status, code, message = api.error(api.sql("SELECT ?, ?", 1))
    assert (status, code) == (400, 7500) and "bindings" in message


@pytest.mark.parametrize(
    "database_id",
    ["not-a-uuid", "00000000000040008000000000000000", "%2e%2e", "{6f1c2a52-9d2e-4c41-9a43-1f0f3c6b2d10}"],
)
def test_a_database_id_that_is_not_a_uuid_is_7400(api: Api, database_id: str) -> None:
    response = api.http.post(f"{ACCOUNTS}/{database_id}/query", json={"sql": "SELECT 1"}, headers=AUTH)
    assert api.error(response)[:2] == (400, 7400)


@pytest.mark.parametrize("database_id", ["..%2F..%2Fescape", "%2e%2e%2f%2e%2e%2fescape"])
def test_a_traversal_attempt_in_the_id_never_reaches_a_file(api: Api, tmp_path: Path, database_id: str) -> None:
    body = {"sql": "CREATE TABLE pwned (x)"}
    response = api.http.post(f"{ACCOUNTS}/{database_id}/query", json=body, headers=AUTH)
    assert api.error(response)[:2] in ((400, 7400), (404, 7003))
    assert not list(tmp_path.rglob("escape*"))


def test_engine_never_derives_a_path_outside_the_data_folder(tmp_path: Path) -> None:
    with Engine(tmp_path / "data") as engine:
        for bad in ("../escape", "/etc/passwd", "00000000-0000-4000-8000-000000000000/../x"):
            with pytest.raises(ApiError) as caught:
                engine.path_for(bad)
            assert caught.value.code == 7400
        assert engine.path_for(OTHER_ID.upper()) == tmp_path / "data" / f"{OTHER_ID}.sqlite3"


def test_unknown_database_is_7404(api: Api) -> None:
    status, code, _ = api.error(api.post({"sql": "SELECT 1"}, database_id=OTHER_ID))
    assert (status, code) == (404, 7404)


def test_auto_create_makes_an_unknown_database_on_first_use(make_app: AppFactory, connect: Callable[..., Api]) -> None:
    api = connect(make_app(auto_create=True))
    response = api.post({"sql": "CREATE TABLE t (x)"}, database_id=OTHER_ID)
    assert response.status_code == 200
    listed = api.http.get(ACCOUNTS, headers=AUTH).json()["result"]
    assert {d["uuid"] for d in listed} == {DEFAULT_DATABASE_ID, OTHER_ID}


def test_unknown_route_is_7003_404(api: Api) -> None:
    for path in ("/client/v4/accounts/acct/d1/nothing", "/elsewhere", f"{query_path()}/more"):
        assert api.error(api.http.get(path, headers=AUTH))[:2] == (404, 7003)


def test_wrong_method_on_a_known_route_is_an_error_envelope(api: Api) -> None:
    status, code, _ = api.error(api.http.get(query_path(), headers=AUTH))
    assert (status, code) == (405, 7001)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
def test_missing_or_wrong_token_is_10000_401_on_every_route(api: Api, headers: dict[str, str]) -> None:
    for method, path in (("POST", query_path()), ("GET", ACCOUNTS), ("GET", "/nowhere")):
        response = api.http.request(method, path, json={"sql": "SELECT 1"}, headers=headers)
        assert api.error(response) == (401, 10000, "Authentication error")
        assert TOKEN not in response.text


def test_any_account_id_is_accepted(api: Api) -> None:
    path = f"/client/v4/accounts/another-account/d1/database/{DEFAULT_DATABASE_ID}/query"
    assert api.http.post(path, json={"sql": "SELECT 1"}, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"sql": 1}',
        b'{"batch": {"sql": "SELECT 1"}}',
        b'{"params": []}',
        b"[1]",
        b'{"sql": "SELECT ?", "params": [NaN]}',
    ],
)
def test_a_malformed_body_is_7400(api: Api, content: bytes) -> None:
    response = api.http.post(query_path(), content=content, headers={**AUTH, "content-type": "application/json"})
    assert api.error(response)[:2] == (400, 7400)


def test_create_list_get_and_delete_databases(api: Api) -> None:
    created = api.http.post(ACCOUNTS, json={"name": "shop"}, headers=AUTH).json()["result"]
    assert {"uuid", "name", "created_at", "version", "num_tables", "file_size"} <= set(created)
    assert created["name"] == "shop" and created["num_tables"] == 0
    uuid = created["uuid"]
    assert api.post({"sql": "CREATE TABLE items (id INTEGER PRIMARY KEY)"}, database_id=uuid).status_code == 200
    got = api.http.get(f"{ACCOUNTS}/{uuid}", headers=AUTH).json()["result"]
    assert got["uuid"] == uuid and got["num_tables"] == 1 and got["file_size"] > 0
    listed = api.http.get(ACCOUNTS, headers=AUTH).json()
    assert {d["name"] for d in listed["result"]} == {"default", "shop"}
    assert listed["result_info"]["total_count"] == 2
    by_name = api.http.get(ACCOUNTS, params={"name": "shop"}, headers=AUTH).json()["result"]
    assert [d["uuid"] for d in by_name] == [uuid]
    deleted = api.http.delete(f"{ACCOUNTS}/{uuid}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    assert api.error(api.http.get(f"{ACCOUNTS}/{uuid}", headers=AUTH))[:2] == (404, 7404)
    assert api.error(api.post({"sql": "SELECT 1"}, database_id=uuid))[:2] == (404, 7404)


def test_list_pages_through_databases(api: Api) -> None:
    for i in range(19):
        api.http.post(ACCOUNTS, json={"name": f"db{i}"}, headers=AUTH)
    pages = [
        api.http.get(ACCOUNTS, params={"page": p, "per_page": 10}, headers=AUTH).json()["result"] for p in (1, 2, 3)
    ]
    assert [len(p) for p in pages] == [10, 10, 0]
    assert len({d["uuid"] for p in pages for d in p}) == 20  # 19 and the default database


def test_creating_a_database_with_a_taken_name_is_an_error(api: Api) -> None:
    assert api.http.post(ACCOUNTS, json={"name": "twice"}, headers=AUTH).status_code == 200
    status, _, message = api.error(api.http.post(ACCOUNTS, json={"name": "twice"}, headers=AUTH))
    assert status == 400 and "twice" in message


def test_databases_and_their_rows_survive_a_restart(connect: Callable[..., Api], tmp_path: Path) -> None:
    from d1sync.emulator.app import create_app

    first = create_app(tmp_path / "persist", token=TOKEN)
    api = connect(first)
    uuid = api.http.post(ACCOUNTS, json={"name": "kept"}, headers=AUTH).json()["result"]["uuid"]
    api.ok("CREATE TABLE t (x)")
    api.ok("INSERT INTO t VALUES (42)")
    first.state.engine.close()
    second: Starlette = create_app(tmp_path / "persist", token=TOKEN)
    try:
        again = connect(second)
        assert again.ok("SELECT x FROM t") == [{"x": 42}]
        names = {d["uuid"]: d["name"] for d in again.http.get(ACCOUNTS, headers=AUTH).json()["result"]}
        assert names[uuid] == "kept"
    finally:
        second.state.engine.close()


def test_an_app_never_closed_closes_its_sqlite_connections_when_collected(tmp_path: Path) -> None:
    """An app served in-process (no lifespan) is often never closed. Collected, it closes its connections
    rather than leaving them to Python 3.13's "unclosed database" ResourceWarning, which the suite makes an
    error of whichever test is running when the collector finds them."""
    import gc
    import sys

    from d1sync.emulator.app import create_app

    unraisable: list[object] = []
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        app = create_app(tmp_path / "dropped", token=TOKEN)
        app.state.engine.database(DEFAULT_DATABASE_ID)
        del app
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert unraisable == []
