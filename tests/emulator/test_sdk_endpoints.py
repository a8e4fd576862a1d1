"""The official ``cloudflare`` SDK drives the emulator's import, export and Time Travel endpoints and parses
every answer with its own models (``DatabaseImportResponse``, ``DatabaseExportResponse``, ``time_travel``)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cloudflare import Cloudflare

from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer

TOKEN = "sdk-endpoints-token"
ACCOUNT = "sdk-account"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "data", token=TOKEN) as srv:
        yield srv


@pytest.fixture
def sdk(server: EmulatorServer) -> Iterator[Cloudflare]:
    client = Cloudflare(api_token=TOKEN, base_url=server.api_base, max_retries=0)
    yield client
    client.close()


def rows(sdk: Cloudflare, sql: str) -> list[object]:
    page = sdk.d1.database.query(DEFAULT_DATABASE_ID, account_id=ACCOUNT, sql=sql)
    return list(page.result[-1].results or [])


def test_import_init_upload_ingest_and_poll(sdk: Cloudflare) -> None:
    sql = b"CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT);\nINSERT INTO t (v) VALUES ('a'), ('b');\n"
    etag = hashlib.md5(sql, usedforsecurity=False).hexdigest()
    database = sdk.d1.database
    init = database.import_(DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="init", etag=etag)
    assert init.upload_url and init.filename
    put = httpx.put(init.upload_url, content=sql)  # no token: the URL is the credential, as R2's are
    assert put.status_code == 200 and put.headers["etag"] == f'"{etag}"'
    done = database.import_(DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="ingest", filename=init.filename, etag=etag)
    assert done.success is True and done.status == "complete"
    assert done.result is not None and done.result.num_queries == 2 and done.result.final_bookmark
    assert done.result.meta is not None and done.result.meta.rows_written == 2
    polled = database.import_(DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="poll", current_bookmark=done.at_bookmark)
    assert polled.status == "complete"
    assert rows(sdk, "SELECT count(*) AS n FROM t") == [{"n": 2}]
    again = database.import_(DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="init", etag=etag)
    assert again.upload_url is None and again.status == "complete"  # "File already uploaded. Processing."
    assert rows(sdk, "SELECT count(*) AS n FROM t") == [{"n": 4}]


def test_an_import_that_fails_applies_nothing_and_says_why(sdk: Cloudflare) -> None:
    sql = b"CREATE TABLE t (v);\nINSERT INTO nope VALUES (1);\n"
    etag = hashlib.md5(sql, usedforsecurity=False).hexdigest()
    init = sdk.d1.database.import_(DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="init", etag=etag)
    assert init.upload_url is not None
    httpx.put(init.upload_url, content=sql).raise_for_status()
    done = sdk.d1.database.import_(
        DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="ingest", filename=init.filename, etag=etag
    )
    assert done.success is False and done.status == "error" and done.error is not None
    assert done.error.startswith("no such table: nope")
    assert rows(sdk, "SELECT count(*) AS n FROM sqlite_master WHERE name = 't'") == [{"n": 0}]


def test_an_upload_url_needs_no_token_but_an_unknown_one_is_refused(server: EmulatorServer) -> None:
    assert httpx.put(f"{server.url}/d1-transfer/upload/{'0' * 32}", content=b"SELECT 1").status_code == 404
    assert httpx.get(f"{server.url}/d1-transfer/export/{'0' * 32}").status_code == 404


def test_export_gives_a_signed_url_to_the_dump(sdk: Cloudflare) -> None:
    rows(sdk, "CREATE TABLE t (v); INSERT INTO t VALUES ('x'); CREATE INDEX t_v ON t (v)")
    done = sdk.d1.database.export(
        DEFAULT_DATABASE_ID, account_id=ACCOUNT, output_format="polling", dump_options={"tables": ["t"]}
    )
    assert done.success is True and done.status == "complete" and done.at_bookmark
    assert done.result is not None and done.result.signed_url and done.result.filename
    dump = httpx.get(done.result.signed_url).text
    assert dump.splitlines() == [
        "PRAGMA defer_foreign_keys=TRUE;",
        "CREATE TABLE t (v);",
        "INSERT INTO \"t\" VALUES('x');",
    ]
    whole = sdk.d1.database.export(DEFAULT_DATABASE_ID, account_id=ACCOUNT, output_format="polling")
    assert whole.result is not None and whole.result.signed_url
    assert httpx.get(whole.result.signed_url).text.endswith("CREATE INDEX t_v ON t (v);")


def test_export_refuses_virtual_tables_as_d1_does(sdk: Cloudflare) -> None:
    rows(sdk, "CREATE VIRTUAL TABLE f USING fts5(a)")
    with pytest.raises(Exception, match="cannot export databases with Virtual Tables"):
        sdk.d1.database.export(DEFAULT_DATABASE_ID, account_id=ACCOUNT, output_format="polling")


def test_time_travel_by_bookmark_and_by_timestamp(sdk: Cloudflare) -> None:
    travel = sdk.d1.database.time_travel
    rows(sdk, "CREATE TABLE t (v); INSERT INTO t VALUES (1)")
    first = travel.get_bookmark(DEFAULT_DATABASE_ID, account_id=ACCOUNT)
    assert first.bookmark
    moment = datetime.now(UTC)
    time.sleep(0.01)
    rows(sdk, "INSERT INTO t VALUES (2)")
    at_moment = travel.get_bookmark(DEFAULT_DATABASE_ID, account_id=ACCOUNT, timestamp=moment)
    assert at_moment.bookmark == first.bookmark
    restored = travel.restore(DEFAULT_DATABASE_ID, account_id=ACCOUNT, timestamp=moment)
    assert restored.bookmark and restored.previous_bookmark and restored.message
    assert rows(sdk, "SELECT count(*) AS n FROM t") == [{"n": 1}]
    travel.restore(DEFAULT_DATABASE_ID, account_id=ACCOUNT, bookmark=restored.previous_bookmark)
    assert rows(sdk, "SELECT count(*) AS n FROM t") == [{"n": 2}]
    with pytest.raises(Exception, match="invalid bookmark"):
        travel.restore(DEFAULT_DATABASE_ID, account_id=ACCOUNT, bookmark="00000001-00000000-00000000-nope")
