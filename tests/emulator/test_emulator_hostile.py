"""Hostile input over a real socket: odd database ids, bodies that are not what a route expects, odd query
strings and transfer URLs. Every answer is D1's JSON envelope with a 4xx status, never a plain-text 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.app import _Envelopes, create_app
from d1sync.emulator.server import EmulatorServer
from d1sync.emulator.testing import SyncASGITransport

from .conftest import AUTH, TOKEN

ACCOUNTS = "/accounts/acct/d1/database"
DB = f"{ACCOUNTS}/{DEFAULT_DATABASE_ID}"

# (method, path under the database) of every route that names a database.
DATABASE_ROUTES = [
    ("POST", "/query"),
    ("POST", "/raw"),
    ("GET", ""),
    ("DELETE", ""),
    ("POST", "/import"),
    ("POST", "/export"),
    ("GET", "/time_travel/bookmark"),
    ("POST", "/time_travel/restore"),
]
# Every route that reads a JSON body.
BODY_ROUTES = [f"{DB}/query", f"{DB}/raw", f"{DB}/import", f"{DB}/export", ACCOUNTS]

ODD_IDS = {
    "trailing newline": DEFAULT_DATABASE_ID + "%0A",
    "trailing NUL": DEFAULT_DATABASE_ID + "%00",
    "trailing space": DEFAULT_DATABASE_ID + "%20",
    "NUL": "%00",
    "newline": "%0A",
    "very long": "a" * 5000,
    "unicode": "%C3%A9" * 36,
    "invalid UTF-8": "%FF%FE",
    "braces": "{" + DEFAULT_DATABASE_ID + "}",
    "urn": "urn:uuid:" + DEFAULT_DATABASE_ID,
    "dot dot": "%2E%2E",
}
DEEP = 100_000
ODD_BODIES: dict[str, bytes] = {
    "not JSON": b"hello",
    "invalid UTF-8": b'{"sql": "\xff"}',
    "NaN": b'{"sql": "SELECT ?", "params": [NaN]}',
    "arrays nested 100k deep": b"[" * DEEP + b"]" * DEEP,
    "objects nested 100k deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "a param nested 900 deep": b'{"sql": "SELECT ?", "params": [' + b"[" * 900 + b"]" * 900 + b"]}",
    "an integer of 5000 digits": b'{"sql": "SELECT ?", "params": [' + b"9" * 5000 + b"]}",
    "an integer of 4000 digits": b'{"sql": "SELECT ?", "params": [' + b"9" * 4000 + b"]}",
    "a number beyond a double": b'{"sql": "SELECT ?", "params": [1e999]}',
    "a list": b"[]",
    "a string": b'"SELECT 1"',
    "null": b"null",
    "sql not a string": b'{"sql": 1}',
    "batch not a list": b'{"batch": {"sql": "SELECT 1"}}',
    "batch of numbers": b'{"batch": [1]}',
    "params an object": b'{"sql": "SELECT ?", "params": {"a": 1}}',
    "name an object": b'{"name": {"a": 1}}',
    "name a lone surrogate": b'{"name": "\\ud800"}',
    "action a list": b'{"action": ["init"]}',
    "etag an object": b'{"action": "init", "etag": {"a": 1}}',
    "a filename reaching out": b'{"action": "ingest", "filename": "../../x", "etag": "y"}',
    "dump options a list": b'{"dump_options": [1]}',
    "tables a string": b'{"dump_options": {"tables": "t"}}',
}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        EmulatorServer(tmp_path_factory.mktemp("hostile") / "data", token=TOKEN) as server,
        httpx.Client(base_url=server.api_base, headers=AUTH, timeout=30.0) as client,
    ):
        yield client


@pytest.fixture(autouse=True)
def no_internal_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No request of this module may reach the emulator's last-resort handler (it logs at ERROR)."""
    with caplog.at_level(logging.ERROR, logger="d1sync.emulator"):
        yield
    assert [r.getMessage() for r in caplog.records if r.name == "d1sync.emulator"] == []


def refused(response: httpx.Response) -> tuple[int, int, str]:
    """(HTTP status, D1 code, message) of an error envelope with a 4xx status (asserting both)."""
    assert response.headers["content-type"] == "application/json", response.text[:200]
    body: dict[str, Any] = response.json()
    assert set(body) == {"result", "success", "errors", "messages"}, body
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    [error] = body["errors"]
    assert 400 <= response.status_code < 500, body
    assert "Traceback" not in error["message"]
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize("odd_id", ODD_IDS.values(), ids=ODD_IDS.keys())
@pytest.mark.parametrize(("method", "suffix"), DATABASE_ROUTES, ids=[f"{m} {s or '/'}" for m, s in DATABASE_ROUTES])
def test_an_odd_database_id_is_a_7400_envelope_on_every_route(
    http: httpx.Client, odd_id: str, method: str, suffix: str
) -> None:
    body = b'{"sql": "SELECT 1"}' if method == "POST" else None
    status, code, message = refused(http.request(method, f"{ACCOUNTS}/{odd_id}{suffix}", content=body))
    assert (status, code) == (400, 7400), message
    assert "expected a UUID" in message


@pytest.mark.parametrize("body", ODD_BODIES.values(), ids=ODD_BODIES.keys())
@pytest.mark.parametrize("path", BODY_ROUTES, ids=["query", "raw", "import", "export", "create"])
def test_a_body_of_the_wrong_shape_is_a_4xx_envelope_on_every_route(http: httpx.Client, path: str, body: bytes) -> None:
    response = http.post(path, content=body)
    if response.status_code == 200:  # some routes ignore what they do not need (export's unknown keys)
        assert response.json()["success"] is True
        return
    refused(response)


@pytest.mark.parametrize("path", BODY_ROUTES, ids=["query", "raw", "import", "export", "create"])
def test_json_nested_100k_deep_is_a_malformed_request(http: httpx.Client, path: str) -> None:
    status, code, message = refused(http.post(path, content=b"[" * DEEP + b"]" * DEEP))
    assert (status, code) == (400, 7400)
    assert "nested too deeply" in message


def test_a_database_id_ending_in_a_newline_is_invalid_not_the_database(http: httpx.Client) -> None:
    assert refused(http.get(f"{ACCOUNTS}/{DEFAULT_DATABASE_ID}%0A"))[:2] == (400, 7400)
    assert http.get(f"{ACCOUNTS}/{DEFAULT_DATABASE_ID}").status_code == 200


def test_a_database_name_that_is_not_printable_text_is_refused(http: httpx.Client) -> None:
    for name in ["\\ud800", "a\\u0000b", "tab\\there"]:
        status, code, message = refused(http.post(ACCOUNTS, content=b'{"name": "%s"}' % name.encode()))
        assert (status, code) == (400, 7400), message
    assert http.post(ACCOUNTS, json={"name": "café db"}).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_the_content_type_does_not_change_how_a_body_is_read(http: httpx.Client, content_type: str) -> None:
    response = http.post(f"{DB}/query", content=b'{"sql": "SELECT 1 AS one"}', headers={"content-type": content_type})
    assert response.json()["result"][0]["results"] == [{"one": 1}]
    refused(http.post(f"{DB}/query", content=b"sql=SELECT+1", headers={"content-type": content_type}))


@pytest.mark.parametrize(
    "query",
    [
        "timestamp=%00",
        "timestamp=nan",
        "timestamp=not-a-time",
        "timestamp=99999999999-01-01",
        "timestamp=" + "9" * 5000,
        "timestamp=-1e999",
        "bookmark=%00",
        "bookmark=%0A",
        "bookmark=-1",
        "bookmark=" + "f" * 5000 + "-x",
    ],
)
def test_an_odd_time_travel_query_is_a_4xx_envelope(http: httpx.Client, query: str) -> None:
    for method, path in [("GET", "/time_travel/bookmark"), ("POST", "/time_travel/restore")]:
        response = http.request(method, f"{DB}{path}?{query}")
        if response.status_code != 200:  # some are a valid time after all (restore then wants it kept)
            refused(response)


@pytest.mark.parametrize("query", ["page=" + "9" * 5000, "page=x", "per_page=1e3", "page=%00", "name=%00"])
def test_an_odd_list_query_is_a_4xx_envelope_or_a_list(http: httpx.Client, query: str) -> None:
    response = http.get(f"{ACCOUNTS}?{query}")
    if response.status_code != 200:
        assert refused(response)[:2] == (400, 7400)


@pytest.mark.parametrize("token", ["x", "%0A", "%00", "x" * 5000, "..%2F..%2Fx", "%C3%A9"])
def test_a_transfer_url_nobody_issued_is_a_404_envelope(http: httpx.Client, token: str) -> None:
    root = str(http.base_url).removesuffix("/client/v4/")
    assert refused(http.put(f"{root}/d1-transfer/upload/{token}", content=b"SELECT 1;"))[:2] == (404, 7003)
    assert refused(http.get(f"{root}/d1-transfer/export/{token}"))[:2] == (404, 7003)


@pytest.mark.parametrize("path", ["/", "/nope", f"{DB}/nope", "/accounts/%0A/d1/nothing/%00"])
def test_an_unknown_route_is_a_404_or_405_envelope(http: httpx.Client, path: str) -> None:
    for method in ["GET", "POST", "PUT", "PATCH"]:
        status, code, _ = refused(http.request(method, path, content=b"{}" if method != "GET" else None))
        assert (status, code) in [(404, 7003), (405, 7001)]


def test_an_exception_no_route_handled_is_a_7500_envelope_not_a_plain_text_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("a bug")

    with httpx.Client(transport=SyncASGITransport(_Envelopes(broken)), base_url="http://emulator") as client:
        response = client.get("/anything")
    assert response.status_code == 500
    body = response.json()
    assert body["success"] is False and body["result"] is None
    assert body["errors"][0]["code"] == 7500
    assert body["errors"][0]["message"].startswith("internal error; reference = ")
    assert "KeyError" not in response.text
    assert any("internal error" in r.getMessage() for r in caplog.records)
    caplog.clear()  # expected here: the autouse check is about the real routes


def test_a_client_that_hangs_up_mid_body_gets_nothing_and_is_no_internal_error(tmp_path: Path) -> None:
    app = create_app(tmp_path, token=TOKEN)
    arriving = iter([{"type": "http.request", "body": b'{"na', "more_body": True}, {"type": "http.disconnect"}])
    sent: list[Message] = []

    async def receive() -> Message:
        return next(arriving)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/client/v4{ACCOUNTS}",
        "raw_path": f"/client/v4{ACCOUNTS}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(app(scope, receive, send))  # the autouse check: nothing logged as an internal error
    assert sent == []
    app.state.engine.close()
