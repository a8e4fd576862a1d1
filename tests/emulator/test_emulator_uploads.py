"""Import uploads (``PUT /d1-transfer/upload/<token>``) under hostile use, over a real socket: only an issued
token is accepted, checked before the body is read; the body goes to disk in chunks, capped at ``max_import``
(D1's 5 GB), not at the API's ``max_body``."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from d1sync.emulator import DEFAULT_DATABASE_ID, DEFAULT_MAX_IMPORT
from d1sync.emulator.server import EmulatorServer

from .conftest import AUTH, TOKEN
from .test_emulator_body_limit import read_response

LIMIT = 50_000
IMPORT = f"/accounts/acct/d1/database/{DEFAULT_DATABASE_ID}/import"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "data", token=TOKEN, max_import=LIMIT) as srv:
        yield srv


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_base, headers=AUTH, timeout=10.0) as client:
        yield client


def init(http: httpx.Client, sql: bytes) -> dict[str, Any]:
    answer = http.post(IMPORT, json={"action": "init", "etag": hashlib.md5(sql).hexdigest()})
    result: dict[str, Any] = answer.json()["result"]
    return result


def ingest(http: httpx.Client, sql: bytes, filename: str) -> httpx.Response:
    return http.post(IMPORT, json={"action": "ingest", "etag": hashlib.md5(sql).hexdigest(), "filename": filename})


def transfer_files(server: EmulatorServer, pattern: str) -> list[Path]:
    return sorted(server.app.state.engine.data_dir.joinpath("_transfers").glob(pattern))


def test_an_unknown_token_is_refused_before_the_body_is_sent(server: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        request = f"PUT /d1-transfer/upload/{'0' * 32} HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n"
        sock.sendall(request.encode())
        status, body = read_response(sock)  # none of the 200 MB was sent, and the answer is already here
    assert status == 404
    assert body == {
        "result": None,
        "success": False,
        "errors": [{"code": 7003, "message": "No upload was issued for this URL"}],
        "messages": [],
    }


def test_an_issued_upload_is_written_in_chunks_and_ingested(server: EmulatorServer, http: httpx.Client) -> None:
    rows = [f"INSERT INTO t VALUES ({i}, '{'x' * 100}');\n".encode() for i in range(300)]
    sql = b"CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);\n" + b"".join(rows)
    assert len(sql) < LIMIT
    started = init(http, sql)
    put = httpx.put(started["upload_url"], content=iter([sql[i : i + 1000] for i in range(0, len(sql), 1000)]))
    assert put.status_code == 200 and put.headers["etag"] == f'"{hashlib.md5(sql).hexdigest()}"'
    assert ingest(http, sql, started["filename"]).json()["result"]["status"] == "complete"
    count = http.post(
        f"/accounts/acct/d1/database/{DEFAULT_DATABASE_ID}/query", json={"sql": "SELECT count(*) AS n FROM t"}
    )
    assert count.json()["result"][0]["results"] == [{"n": 300}]
    assert transfer_files(server, "*.part") == []


def test_an_upload_over_the_limit_is_413_and_leaves_nothing_behind(server: EmulatorServer, http: httpx.Client) -> None:
    sql = b"SELECT 1;\n" * (LIMIT // 10 + 1)
    started = init(http, sql)
    put = httpx.put(started["upload_url"], content=iter([sql[i : i + 4096] for i in range(0, len(sql), 4096)]))
    assert put.status_code == 413
    assert put.json()["errors"][0]["code"] == 7400
    assert transfer_files(server, "*") == []  # no partial file, and the upload is still not done
    refused = ingest(http, sql, started["filename"])
    assert refused.status_code == 400 and "no uploaded file" in refused.json()["errors"][0]["message"]


def test_a_failed_upload_keeps_the_earlier_complete_one(server: EmulatorServer, http: httpx.Client) -> None:
    sql = b"CREATE TABLE kept (a);"
    started = init(http, sql)
    assert httpx.put(started["upload_url"], content=sql).status_code == 200
    assert httpx.put(started["upload_url"], content=iter([b"x" * 40_000, b"x" * 40_000])).status_code == 413
    assert ingest(http, sql, started["filename"]).json()["result"]["status"] == "complete"


def test_an_upload_is_bounded_by_d1s_import_limit_not_the_apis_body_limit(tmp_path: Path) -> None:
    """D1 takes an import file of up to 5 GB: its upload goes to a signed URL, not through the API."""
    assert DEFAULT_MAX_IMPORT == 5_000_000_000
    sql = b"CREATE TABLE t (v);\n" + b"INSERT INTO t VALUES ('" + b"x" * 20_000 + b"');\n"
    with (
        EmulatorServer(tmp_path / "data", token=TOKEN, max_body=10_000) as srv,  # an API body of 10 KB at most
        httpx.Client(base_url=srv.api_base, headers=AUTH, timeout=10.0) as http,
    ):
        started = init(http, sql)
        assert httpx.put(started["upload_url"], content=sql).status_code == 200
        assert ingest(http, sql, started["filename"]).json()["result"]["status"] == "complete"
        big_query = {"sql": "SELECT ?", "params": ["x" * 20_000]}
        assert http.post(f"/accounts/acct/d1/database/{DEFAULT_DATABASE_ID}/query", json=big_query).status_code == 413
