"""The emulator's memory stays bounded under 200 MB bodies: a real ``d1sync emulator`` process on loopback,
bodies streamed from generators over a real socket, its RSS read from /proc."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from d1sync.emulator import DEFAULT_DATABASE_ID, TOKEN_ENV

from .conftest import start

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")

MB = 1_000_000
BODY = 200 * MB
MAX_BODY = 20 * MB  # a body without a length is read up to the cap before it is refused: that much may be held
GROWTH = 50 * MB  # the most the server's memory may grow while refusing a 200 MB body
QUERY = f"/accounts/acct/d1/database/{DEFAULT_DATABASE_ID}/query"
IMPORT = f"/accounts/acct/d1/database/{DEFAULT_DATABASE_ID}/import"


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of process ``pid`` in bytes: its memory now, and the most it ever held."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def chunks(total: int = BODY, size: int = MB) -> Iterator[bytes]:
    """``total`` bytes of a JSON-looking body, made as they are sent: the client holds one chunk at a time."""
    yield b'{"sql": "SELECT ?", "params": ["'
    block = b"x" * size
    for _ in range(total // size):
        yield block
    yield b'"]}'


def envelope_error(response: httpx.Response) -> tuple[int, int]:
    body = response.json()
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    return response.status_code, body["errors"][0]["code"]


def test_200_mb_bodies_and_uploads_are_refused_without_the_server_growing_50_mb(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    token = "memory-test-token"
    args = ["--data-dir", str(tmp_path / "data"), "--max-body", str(MAX_BODY), "--max-import", str(MAX_BODY)]
    proc, _, api_base = start(args, {TOKEN_ENV: token})
    processes.append(proc)
    root = api_base.removesuffix("/client/v4")
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_base, timeout=120.0) as http:
        # Warm up every route used below, so what they load is in the baseline.
        assert http.post(QUERY, json={"sql": "SELECT 1"}, headers=auth).status_code == 200
        init = http.post(IMPORT, json={"action": "init", "etag": hashlib.md5(b"").hexdigest()}, headers=auth)
        upload_url = init.json()["result"]["upload_url"]
        assert httpx.put(f"{root}/d1-transfer/upload/{'0' * 32}", content=b"x").status_code == 404
        before, _ = memory(proc.pid)

        cases = {
            "/query, 200 MB chunked": lambda: http.post(QUERY, content=chunks(), headers=auth),
            "/query, 200 MB with Content-Length": lambda: http.post(
                QUERY, content=chunks(), headers={**auth, "Content-Length": str(BODY + 35)}
            ),
            "/query, 200 MB without a token": lambda: http.post(QUERY, content=chunks()),
            "upload, 200 MB to a URL nobody issued": lambda: httpx.put(
                f"{root}/d1-transfer/upload/{'0' * 32}", content=chunks(), timeout=120.0
            ),
            "upload, 200 MB to an issued URL": lambda: httpx.put(upload_url, content=chunks(), timeout=120.0),
        }
        expected = {
            "/query, 200 MB chunked": (413, 7400),
            "/query, 200 MB with Content-Length": (413, 7400),
            "/query, 200 MB without a token": (401, 10000),
            "upload, 200 MB to a URL nobody issued": (404, 7003),
            "upload, 200 MB to an issued URL": (413, 7400),
        }
        measured = []
        for name, send in cases.items():
            assert envelope_error(send()) == expected[name], name
            now, peak = memory(proc.pid)
            measured.append(f"{name}: RSS {now / MB:.1f} MB, peak {peak / MB:.1f} MB")
            assert peak - before < GROWTH, f"from {before / MB:.1f} MB: " + "; ".join(measured)
        # The server still answers, and kept no part of any refused upload.
        assert http.post(QUERY, json={"sql": "SELECT 2 AS two"}, headers=auth).json()["result"][0]["results"] == [
            {"two": 2}
        ]
    assert list((tmp_path / "data" / "_transfers").glob("*")) == []
