"""The emulator on a real loopback socket (uvicorn in a thread): routes, faults that only a socket shows."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer

from .conftest import AUTH, TOKEN

QUERY = f"/accounts/acct/d1/database/{DEFAULT_DATABASE_ID}/query"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "data", token=TOKEN) as srv:
        yield srv


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_base, headers=AUTH, timeout=5.0) as client:
        yield client


def count(http: httpx.Client) -> int:
    return int(http.post(QUERY, json={"sql": "SELECT count(*) AS n FROM t"}).json()["result"][0]["results"][0]["n"])


def test_the_server_listens_on_a_free_loopback_port_and_serves_the_api(
    server: EmulatorServer, http: httpx.Client
) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    assert server.api_base == server.url + "/client/v4"
    body = http.post(QUERY, json={"sql": "SELECT 9223372036854775807 AS big"}).json()
    assert body["success"] is True and body["result"][0]["results"] == [{"big": 9223372036854776000}]
    assert http.get("/accounts/acct/d1/database", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_two_servers_get_different_ports(tmp_path: Path) -> None:
    with EmulatorServer(tmp_path / "a", token=TOKEN) as a, EmulatorServer(tmp_path / "b", token=TOKEN) as b:
        assert a.port != b.port


def test_after_stop_the_port_refuses_connections(tmp_path: Path) -> None:
    srv = EmulatorServer(tmp_path / "data", token=TOKEN).start()
    port = srv.port
    srv.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_url_before_start_says_the_server_is_not_running(tmp_path: Path) -> None:
    srv = EmulatorServer(tmp_path / "data", token=TOKEN)
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.url
    srv.app.state.engine.close()


def test_a_dropped_connection_over_a_socket_breaks_the_read_but_the_write_applied(
    server: EmulatorServer, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    http.post(QUERY, json={"sql": "CREATE TABLE t (x)"})
    server.app.state.faults.update(lost_response_rate=1.0, lost_response_mode="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(QUERY, json={"sql": "INSERT INTO t VALUES (1)"})
    server.app.state.faults.update(lost_response_rate=0.0)
    assert count(http) == 1
    # An injected drop is not logged as an application error.
    assert not [r for r in caplog.records if r.name.startswith("uvicorn") and r.levelno >= logging.ERROR]


def test_a_held_response_times_the_client_out_and_the_write_applied(server: EmulatorServer, http: httpx.Client) -> None:
    http.post(QUERY, json={"sql": "CREATE TABLE t (x)"})
    server.app.state.faults.update(timeout_rate=1.0, timeout_delay=0.6)
    with pytest.raises(httpx.ReadTimeout):
        http.post(QUERY, json={"sql": "INSERT INTO t VALUES (1)"}, timeout=0.2)
    server.app.state.faults.update(timeout_rate=0.0)
    deadline = time.monotonic() + 30  # a loaded machine may time the client out before the write is applied
    while count(http) != 1:
        assert time.monotonic() < deadline, "the held write was never applied"
        time.sleep(0.05)


def test_latency_holds_each_request_for_real(tmp_path: Path) -> None:
    with (
        EmulatorServer(tmp_path / "data", token=TOKEN, faults=FaultConfig(latency=0.05)) as srv,
        httpx.Client(base_url=srv.api_base, headers=AUTH) as http,
    ):
        http.post(QUERY, json={"sql": "SELECT 1"})  # warm the connection
        started = time.perf_counter()
        http.post(QUERY, json={"sql": "SELECT 1"})
        assert time.perf_counter() - started >= 0.05


def test_the_rate_limit_applies_over_the_socket(tmp_path: Path) -> None:
    with (
        EmulatorServer(tmp_path / "data", token=TOKEN, rate_limit=(2, 60.0)) as srv,
        httpx.Client(base_url=srv.api_base, headers=AUTH) as http,
    ):
        statuses = [http.post(QUERY, json={"sql": "SELECT 1"}).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = http.post(QUERY, json={"sql": "SELECT 1"})
        assert limited.json()["errors"][0]["code"] == 971 and int(limited.headers["retry-after"]) >= 1


def test_a_request_over_loopback_is_not_delayed_by_nagle(server: EmulatorServer, http: httpx.Client) -> None:
    """Without TCP_NODELAY on accepted sockets every response waited ~40 ms for a delayed ACK."""
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        http.post(QUERY, json={"sql": "SELECT 1"})
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.03  # with Nagle, every one waited ~40 ms; a loaded machine only adds to some
