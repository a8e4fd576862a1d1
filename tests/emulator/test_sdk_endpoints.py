"""The official ``cloudflare`` SDK drives the emulator's import, export and Time Travel endpoints and parses
every answer with its own models (``DatabaseImportResponse``, ``DatabaseExportResponse``, ``time_travel``)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cloudflare import Cloudflare

from d1sync.client import D1Client
from d1sync.emulator import DEFAULT_DATABASE_ID, endpoints
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


def test_a_long_import_answers_active_and_is_followed_by_polls_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on D1, an import outlasting the call answers ``active`` with a bookmark; polls follow it (wrangler
    polls again at once), and an ingest sent again meanwhile follows the same import instead of a second one."""
    monkeypatch.setattr(endpoints, "IMPORT_HOLD", 0.1)  # answers long before the import of 30,000 rows ends
    rows_ = 30_000
    sql = ("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);\n" + "".join(
        f"INSERT INTO t VALUES ({i}, 'row {i}');\n" for i in range(rows_)
    )).encode()  # fmt: skip
    etag = hashlib.md5(sql, usedforsecurity=False).hexdigest()
    with EmulatorServer(tmp_path / "data", token=TOKEN) as server:
        sdk = Cloudflare(api_token=TOKEN, base_url=server.api_base, max_retries=0)
        database = sdk.d1.database
        init = database.import_(DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="init", etag=etag)
        assert init.upload_url and init.filename
        httpx.put(init.upload_url, content=sql).raise_for_status()
        ingest = {"account_id": ACCOUNT, "action": "ingest", "filename": init.filename, "etag": etag}
        started = database.import_(DEFAULT_DATABASE_ID, **ingest)  # type: ignore[arg-type]
        assert started.success is True and started.status == "active" and started.at_bookmark
        again = database.import_(DEFAULT_DATABASE_ID, **ingest)  # type: ignore[arg-type]
        assert again.status in ("active", "complete")
        deadline = time.monotonic() + 120
        polled = started
        while polled.status == "active":
            assert time.monotonic() < deadline, "the import never ended"
            polled = database.import_(
                DEFAULT_DATABASE_ID, account_id=ACCOUNT, action="poll", current_bookmark=polled.at_bookmark
            )
        assert polled.status == "complete" and polled.result is not None, polled
        assert polled.result.num_queries == rows_ + 1  # applied once: a second run would have failed on the keys
        assert rows(sdk, "SELECT count(*) AS n FROM t") == [{"n": rows_}]
        sdk.close()


def test_the_client_follows_an_import_that_outlasts_the_ingest_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "IMPORT_HOLD", 0.1)
    actions: list[str] = []

    class Seen(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/import"):
                actions.append(json.loads(request.content)["action"])
            return super().handle_request(request)

    with EmulatorServer(tmp_path / "data", token=TOKEN) as server:
        client = D1Client(
            account_id=ACCOUNT,
            database_id=DEFAULT_DATABASE_ID,
            api_token=TOKEN,
            base_url=server.api_base,
            transport=Seen(),
        )
        with client:
            stages: list[str] = []
            sql = "CREATE TABLE t (id INTEGER PRIMARY KEY);\n" + "".join(
                f"INSERT INTO t VALUES ({i});\n" for i in range(30_000)
            )
            result = client.import_sql(sql, poll_interval=0.05, on_progress=lambda h: stages.append(h.stage))
            assert result.num_queries == 30_001 and stages[-1] == "complete"
            assert actions[:2] == ["init", "ingest"] and set(actions[2:]) == {"poll"} and len(actions) > 2
            assert client.prepare("SELECT count(*) AS n FROM t").first("n") == 30_000
