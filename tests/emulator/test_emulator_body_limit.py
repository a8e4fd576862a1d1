"""The emulator's cap on request bodies (``max_body``, ``d1sync emulator --max-body``): a body over it is
answered HTTP 413 in D1's envelope as soon as it is known to be too big, and the client sees a LimitError."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID, DEFAULT_MAX_BODY
from d1sync.emulator.app import create_app
from d1sync.emulator.server import EmulatorServer
from d1sync.emulator.testing import SyncASGITransport
from d1sync.errors import LimitError

from .conftest import ACCOUNTS, AUTH, TOKEN, Api

LIMIT = 10_000
DB = f"{ACCOUNTS}/{DEFAULT_DATABASE_ID}"


def sized(size: int) -> bytes:
    """A valid /query body of exactly ``size`` bytes."""
    head, tail = b'{"sql": "SELECT ? AS s", "params": ["', b'"]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.fixture
def small(make_app: Callable[..., Starlette], connect: Callable[[Starlette], Api]) -> Api:
    return connect(make_app(max_body=LIMIT))


def too_large(response: httpx.Response) -> str:
    assert response.status_code == 413, response.text[:200]
    body = response.json()
    assert body["result"] is None and body["success"] is False and body["messages"] == []
    [error] = body["errors"]
    assert error["code"] == 7400
    assert f"limit of {LIMIT} bytes" in error["message"]
    return str(error["message"])


def test_the_default_limit_is_100_mb() -> None:
    assert DEFAULT_MAX_BODY == 100_000_000


def test_a_body_at_the_limit_runs_and_one_byte_more_is_413(small: Api) -> None:
    ok = small.http.post(f"{DB}/query", content=sized(LIMIT), headers=AUTH)
    assert ok.status_code == 200 and len(ok.json()["result"][0]["results"][0]["s"]) > LIMIT - 100
    message = too_large(small.http.post(f"{DB}/query", content=sized(LIMIT + 1), headers=AUTH))
    assert f"{LIMIT + 1} bytes" in message


@pytest.mark.parametrize("path", [f"{DB}/query", f"{DB}/raw", f"{DB}/import", f"{DB}/export", ACCOUNTS])
def test_every_route_that_reads_a_body_caps_it(small: Api, path: str) -> None:
    too_large(small.http.post(path, content=sized(LIMIT + 1), headers=AUTH))


def test_a_body_without_a_length_is_cut_off_once_it_passes_the_limit(small: Api) -> None:
    chunks = [b'{"sql": "SELECT 1", "x": "', *([b"y" * 1000] * 20), b'"}']
    too_large(small.http.post(f"{DB}/query", content=iter(chunks), headers=AUTH))


def test_without_a_token_the_answer_is_401_whatever_the_size(small: Api) -> None:
    assert small.http.post(f"{DB}/query", content=sized(LIMIT * 10)).status_code == 401


def test_the_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_body"):
        create_app(tmp_path, token=TOKEN, max_body=0)


def test_the_client_sees_a_limit_error_it_does_not_retry(tmp_path: Path) -> None:
    app = create_app(tmp_path, token=TOKEN, max_body=LIMIT)
    sent: list[int] = []

    class Counting(SyncASGITransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(len(request.read()))
            return super().handle_request(request)

    with D1Client(
        account_id="acct",
        database_id=DEFAULT_DATABASE_ID,
        api_token=TOKEN,
        base_url="http://emulator/client/v4",
        transport=Counting(app),
        retry=RetryPolicy(max_retries=5),
        sleep=lambda _: None,
    ) as db:
        with pytest.raises(LimitError) as info:
            db.prepare("SELECT ? AS s").bind("x" * LIMIT).first()
        assert db.prepare("SELECT 1 AS one").first("one") == 1
    assert (info.value.status, info.value.code, info.value.retryable) == (413, 7400, False)
    assert len(sent) == 2  # the refused request once, then the small one
    app.state.engine.close()


# -- over a real socket: the 413 comes before the body does --------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "data", token=TOKEN, max_body=LIMIT) as srv:
        yield srv


def head(server: EmulatorServer, path: str, headers: dict[str, str]) -> bytes:
    """The request line and headers of an authorized POST, written by hand to control what is sent."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in {**AUTH, **headers}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Read one HTTP response with a Content-Length body; its status and JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    length = next(
        int(v) for k, _, v in (h.partition(b": ") for h in header.split(b"\r\n")[1:]) if k.lower() == b"content-length"
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, json.loads(rest[:length])


def test_a_declared_length_over_the_limit_is_answered_before_any_body_is_sent(server: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head(server, f"{DB}/query", {"Content-Type": "application/json", "Content-Length": "200000000"}))
        status, body = read_response(sock)  # nothing of the 200 MB was sent
    assert status == 413
    assert body["errors"] == [
        {
            "code": 7400,
            "message": f"The request is too large: 200000000 bytes, over the limit of {LIMIT} bytes per body",
        }
    ]


def test_a_chunked_body_is_answered_once_it_passes_the_limit_while_the_client_is_still_sending(
    server: EmulatorServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head(server, f"{DB}/query", {"Transfer-Encoding": "chunked"}))
        for _ in range(3):  # 3 x 4 KB: past the 10,000-byte limit; the body never ends
            sock.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        status, body = read_response(sock)
    assert status == 413
    assert body["success"] is False and body["errors"][0]["code"] == 7400
