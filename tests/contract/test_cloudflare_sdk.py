"""The official ``cloudflare`` SDK, pointed at a real emulator socket, reads the emulator's answers.

This pins the emulator's wire format against the SDK's own models and request shapes (batch bodies
included). ``base_url`` points at loopback and an event hook refuses any other host, so nothing leaves
the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloudflare import APIStatusError, Cloudflare

from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer

TOKEN = "sdk-token"
ACCOUNT = "sdk-account"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "data", token=TOKEN) as srv:
        yield srv


@pytest.fixture
def sdk(server: EmulatorServer) -> Iterator[Cloudflare]:
    seen: list[str] = []

    def loopback_only(request: httpx.Request) -> None:
        seen.append(str(request.url))
        if request.url.host != "127.0.0.1":
            raise AssertionError(f"a request left loopback: {request.url}")

    http = httpx.Client(event_hooks={"request": [loopback_only]})
    client = Cloudflare(api_token=TOKEN, base_url=server.api_base, http_client=http, max_retries=0)
    yield client
    client.close()
    assert seen and all(url.startswith(server.api_base) for url in seen)


def test_sdk_query_single_statement_parses_rows_and_meta(sdk: Cloudflare) -> None:
    page = sdk.d1.database.query(DEFAULT_DATABASE_ID, account_id=ACCOUNT, sql="SELECT ? AS a, 2 AS b", params=["x"])
    [result] = page.result
    assert result.success is True
    assert result.results == [{"a": "x", "b": 2}]
    assert result.meta is not None and result.meta.changes == 0 and result.meta.served_by_primary is True
    assert result.meta.timings is not None and result.meta.timings.sql_duration_ms is not None


def test_sdk_query_batch_runs_in_order_and_atomically(sdk: Cloudflare) -> None:
    database = sdk.d1.database
    database.query(DEFAULT_DATABASE_ID, account_id=ACCOUNT, sql="CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    page = database.query(
        DEFAULT_DATABASE_ID,
        account_id=ACCOUNT,
        batch=[
            {"sql": "INSERT INTO t (v) VALUES (?)", "params": ["one"]},
            {"sql": "SELECT id, v FROM t"},
        ],
    )
    assert [r.results for r in page.result] == [[], [{"id": 1, "v": "one"}]]
    assert page.result[0].meta is not None and page.result[0].meta.last_row_id == 1
    with pytest.raises(APIStatusError) as caught:
        database.query(
            DEFAULT_DATABASE_ID,
            account_id=ACCOUNT,
            batch=[{"sql": "INSERT INTO t (v) VALUES ('two')"}, {"sql": "INSERT INTO nope VALUES (1)"}],
        )
    assert caught.value.status_code == 400
    assert "no such table: nope" in str(caught.value.body)
    rows = database.query(DEFAULT_DATABASE_ID, account_id=ACCOUNT, sql="SELECT count(*) AS n FROM t").result
    assert rows[0].results == [{"n": 1}]


def test_sdk_raw_single_and_batch_parse_columns_and_rows(sdk: Cloudflare) -> None:
    database = sdk.d1.database
    [single] = database.raw(DEFAULT_DATABASE_ID, account_id=ACCOUNT, sql="SELECT 1 AS a, 'b' AS b").result
    assert single.results is not None
    assert single.results.columns == ["a", "b"] and single.results.rows == [[1, "b"]]
    batch = database.raw(
        DEFAULT_DATABASE_ID,
        account_id=ACCOUNT,
        batch=[{"sql": "SELECT ? AS x", "params": ["p"]}, {"sql": "SELECT 1 AS y WHERE 0"}],
    ).result
    assert [(r.results.columns, r.results.rows) for r in batch if r.results] == [(["x"], [["p"]]), (["y"], [])]


def test_sdk_manages_databases(sdk: Cloudflare) -> None:
    created = sdk.d1.database.create(account_id=ACCOUNT, name="from-sdk")
    assert created.uuid and created.name == "from-sdk"
    names = {db.name for db in sdk.d1.database.list(account_id=ACCOUNT)}
    assert names == {"default", "from-sdk"}
    fetched = sdk.d1.database.get(created.uuid, account_id=ACCOUNT)
    assert fetched.uuid == created.uuid and fetched.num_tables == 0
    sdk.d1.database.delete(created.uuid, account_id=ACCOUNT)
    assert {db.name for db in sdk.d1.database.list(account_id=ACCOUNT)} == {"default"}


def test_sdk_sees_a_bad_token_as_authentication_error(server: EmulatorServer) -> None:
    from cloudflare import AuthenticationError

    with (
        Cloudflare(api_token="wrong", base_url=server.api_base, max_retries=0) as client,
        pytest.raises(AuthenticationError),
    ):
        client.d1.database.query(DEFAULT_DATABASE_ID, account_id=ACCOUNT, sql="SELECT 1")
