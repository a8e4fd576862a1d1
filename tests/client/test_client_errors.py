"""Every row of d1-contract §2 becomes the right d1sync error, with code, status, statement and retryable."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from click.testing import CliRunner

from d1sync.cli import cli
from d1sync.client import D1Client, RetryPolicy
from d1sync.errors import (
    AuthError,
    D1Error,
    DatabaseNotFoundError,
    InvalidRequestError,
    LimitError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    SQLError,
    TransientError,
    UnreachableError,
)

from .scripted import TOKEN, ScriptedD1, d1_error, envelope

SQL = "INSERT INTO t (id) VALUES (?)"

D1_ROWS = [
    # (status, code, message, expected class)
    (400, 7500, "UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT", SQLError),
    (400, 7500, "no such table: x: SQLITE_ERROR", SQLError),
    (400, 7500, "string or blob too big: SQLITE_TOOBIG", LimitError),
    (400, 7500, "too many SQL variables at offset 0: SQLITE_ERROR", LimitError),
    (500, 7500, "internal error; reference = 5dcfk0c3a6h1hgq7", TransientError),
    (400, 7400, "The request is malformed: Invalid database UUID (nope)", InvalidRequestError),
    (403, 7403, "The given account is not valid or is not authorized to access this service", AuthError),
    (400, 10000, "Authentication error", AuthError),
    (401, 10000, "Authentication error", AuthError),
    (403, 9109, "Invalid access token", AuthError),
    (
        404,
        7404,
        "Could not route to /accounts/a/d1/database/b, perhaps your object identifier is invalid?",
        DatabaseNotFoundError,
    ),  # fmt: skip
    (404, 7003, "No route for the URI", NotFoundError),
    (429, 971, "Please wait and consider throttling your request speed", RateLimitedError),
    (503, 7500, "D1 DB is overloaded. Requests queued for too long.", TransientError),
]


@pytest.mark.parametrize(("status", "code", "message", "expected"), D1_ROWS)
def test_d1_envelope_error_maps_to_the_contract_class(
    status: int, code: int, message: str, expected: type[D1Error]
) -> None:
    d1 = ScriptedD1(d1_error(status, code, message))
    with d1.client(max_retries=0) as client, pytest.raises(D1Error) as info:
        client.prepare(SQL).bind(1).run()
    error = info.value
    assert type(error) is expected
    assert (error.code, error.status, error.statement, error.message) == (code, status, SQL, message)
    assert error.retryable is issubclass(expected, TransientError)


@pytest.mark.parametrize(
    "message",
    [
        "Network connection lost.",
        "Internal error while starting up D1 DB storage caused object to be reset.",
        "D1 DB reset because its code was updated.",
        "D1 DB is overloaded. Too many requests queued.",
        "Cannot resolve D1 DB due to transient issue on remote node.",
    ],
)
def test_transient_d1_messages_are_retryable_even_as_7500_with_http_400(message: str) -> None:
    d1 = ScriptedD1(d1_error(400, 7500, message))
    with d1.client(max_retries=0) as client, pytest.raises(TransientError) as info:
        client.prepare("INSERT INTO t VALUES (1)").run()
    assert info.value.retryable and info.value.code == 7500 and info.value.status == 400


def test_rate_limited_error_carries_retry_after_from_the_header() -> None:
    d1 = ScriptedD1(d1_error(429, 971, "Please wait", **{"retry-after": "17"}))
    with d1.client(max_retries=0) as client, pytest.raises(RateLimitedError) as info:
        client.prepare(SQL).bind(1).run()
    assert info.value.retry_after == 17.0


def test_429_without_a_d1_envelope_is_still_rate_limited() -> None:
    d1 = ScriptedD1(httpx.Response(429, text="Too Many Requests", headers={"retry-after": "3"}))
    with d1.client(max_retries=0) as client, pytest.raises(RateLimitedError) as info:
        client.prepare(SQL).bind(1).run()
    assert (info.value.retry_after, info.value.status, info.value.code) == (3.0, 429, None)


HTML_504 = (
    "<!DOCTYPE html><html><head><title>api.cloudflare.com | 504: Gateway time-out</title></head>"
    "<body><h1>Gateway time-out</h1></body></html>"
)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_error_with_an_html_body_is_transient_with_a_clear_message(status: int) -> None:
    d1 = ScriptedD1(httpx.Response(status, text=HTML_504, headers={"content-type": "text/html"}))
    with d1.client(max_retries=0) as client, pytest.raises(TransientError) as info:
        client.prepare(SQL).bind(1).run()
    error = info.value
    assert type(error) is TransientError and error.retryable
    assert error.message.startswith(f"HTTP {status} with an HTML body")
    assert "(gateway error), not D1's JSON envelope" in error.message
    assert "504: Gateway time-out" in error.message  # the page's title says what happened
    assert (error.status, error.code, error.statement) == (status, None, SQL)


@pytest.mark.parametrize(
    ("status", "content", "description"),
    [
        (502, b"", "an empty body"),
        (200, b"", "an empty body"),
        (200, b'{"result": [{"results": [', "a body that is not JSON"),
        (500, b"upstream connect error", "a body that is not JSON"),
        (200, b"\xff\xfe garbage", "a body that is not JSON"),
    ],
)
def test_empty_or_non_json_bodies_are_transient(status: int, content: bytes, description: str) -> None:
    d1 = ScriptedD1(httpx.Response(status, content=content))
    with d1.client(max_retries=0) as client, pytest.raises(TransientError) as info:
        client.prepare("SELECT 1").all()
    assert (
        info.value.message
        == f"HTTP {status} with {description}"
        + (" (gateway error)" if status == 502 else "")
        + ", not D1's JSON envelope"
    )


def test_json_that_is_not_the_envelope_is_not_mistaken_for_success() -> None:
    d1 = ScriptedD1(httpx.Response(200, json=[1, 2, 3]))
    with d1.client(max_retries=0) as client, pytest.raises(TransientError):
        client.prepare("SELECT 1").all()


def test_4xx_html_page_is_not_retryable() -> None:
    d1 = ScriptedD1(httpx.Response(400, text="<html><title>400 Bad Request</title></html>"))
    with d1.client(max_retries=0) as client, pytest.raises(InvalidRequestError) as info:
        client.prepare("SELECT 1").all()
    assert not info.value.retryable and "HTTP 400 with an HTML body" in info.value.message


@pytest.mark.parametrize("result", [None, []])
def test_failure_with_result_null_or_empty_list_is_parsed(result: object) -> None:
    d1 = ScriptedD1(d1_error(400, 7500, "no such column: y: SQLITE_ERROR", result=result))
    with d1.client() as client, pytest.raises(SQLError, match="no such column"):
        client.prepare("SELECT y FROM t").all()


def test_success_false_with_http_200_is_an_error() -> None:
    body = envelope(None, success=False, errors=[{"code": 7500, "message": "no such table: t: SQLITE_ERROR"}])
    d1 = ScriptedD1(httpx.Response(200, content=body))
    with d1.client() as client, pytest.raises(SQLError) as info:
        client.prepare("SELECT * FROM t").all()
    assert info.value.status == 200


def test_several_errors_are_joined_and_the_first_code_classifies() -> None:
    body = envelope(None, success=False, errors=[{"code": 7500, "message": "a"}, {"code": 7400, "message": "b"}])
    d1 = ScriptedD1(httpx.Response(400, content=body))
    with d1.client() as client, pytest.raises(SQLError) as info:
        client.prepare("SELECT 1").all()
    assert info.value.message == "a; b"


def test_batch_error_names_the_first_statement() -> None:
    d1 = ScriptedD1(d1_error(400, 7500, "UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT"))
    with d1.client() as client, pytest.raises(SQLError) as info:
        client.batch([client.prepare("INSERT INTO t VALUES (1)"), client.prepare("INSERT INTO t VALUES (2)")])
    assert info.value.statement == "INSERT INTO t VALUES (1)"
    assert "in statement: INSERT INTO t VALUES (1)" in str(info.value)


def test_read_timeout_becomes_request_timeout_error() -> None:
    d1 = ScriptedD1(httpx.ReadTimeout("timed out"))
    with d1.client(max_retries=0) as client, pytest.raises(RequestTimeoutError) as info:
        client.prepare(SQL).bind(1).run()
    error = info.value
    assert error.retryable and error.statement is None and error.status is None  # no answer: the SQL says nothing
    assert "may still have been applied" in error.message
    assert isinstance(error.__cause__, httpx.ReadTimeout)


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.RemoteProtocolError("server hung up")])
def test_transport_failures_become_network_error(exc: Exception) -> None:
    d1 = ScriptedD1(exc)
    with d1.client(max_retries=0) as client, pytest.raises(NetworkError) as info:
        client.prepare(SQL).bind(1).run()
    assert info.value.retryable and info.value.__cause__ is exc
    if isinstance(exc, httpx.ConnectError):  # never connected: nothing answers there
        assert (
            isinstance(info.value, UnreachableError)
            and info.value.message == "nothing answers at http://mock (connection refused)"
        )
    else:
        assert type(exc).__name__ in info.value.message


def test_token_never_appears_in_wrapped_httpx_exception_text() -> None:
    d1 = ScriptedD1(httpx.ConnectError(f"proxy said: bad header Authorization: Bearer {TOKEN}"))
    with d1.client(max_retries=0) as client, pytest.raises(NetworkError) as info:
        client.prepare("SELECT 1").all()
    for text in (str(info.value), repr(info.value), info.value.message, *map(str, info.value.args)):
        assert TOKEN not in text
    assert "***" in info.value.message


def test_token_never_appears_in_server_error_text() -> None:
    d1 = ScriptedD1(d1_error(403, 9109, f"Invalid access token {TOKEN}"))
    with d1.client() as client, pytest.raises(AuthError) as info:
        client.prepare("SELECT 1").all()
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value) and TOKEN not in str(info.value.args)


def test_token_never_appears_in_retry_logs(caplog: pytest.LogCaptureFixture) -> None:
    d1 = ScriptedD1(httpx.ConnectError(f"Bearer {TOKEN}"), d1_error(503, 7500, "D1 DB is overloaded"))
    caplog.set_level(logging.DEBUG)
    with d1.client(max_retries=2) as client, pytest.raises(TransientError):
        client.prepare("SELECT 1").all()
    assert len(d1.requests) == 3 and "retry" in caplog.text
    assert TOKEN not in caplog.text


def test_the_token_is_sent_only_in_the_authorization_header() -> None:
    d1 = ScriptedD1(d1_error(400, 7500, "x"))
    with d1.client() as client, pytest.raises(SQLError):
        client.prepare("SELECT ?").bind("v").all()
    request = d1.requests[0]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(request.url) and TOKEN.encode() not in request.content


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_nothing_listening_is_an_unreachable_error_naming_the_address_and_no_sql() -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    client = D1Client(account_id="a", database_id="d", api_token=TOKEN, base_url=f"{base}/client/v4",
                      retry=RetryPolicy(max_retries=0))  # fmt: skip
    with client, pytest.raises(UnreachableError) as caught:
        client.prepare("SELECT json_array(1) AS internal").all()
    assert str(caught.value) == f"nothing answers at {base} (connection refused)"
    assert caught.value.retryable and caught.value.statement is None


def test_a_one_shot_command_at_a_dead_emulator_says_so_with_a_hint_and_exits_1() -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(cli, ["query", "--emulator", base, "SELECT 1"], env={"D1SYNC_EMULATOR_TOKEN": TOKEN})
    assert result.exit_code == 1
    assert f"nothing answers at {base} (connection refused)" in result.output
    assert "is `d1sync emulator` running there?" in result.output
    assert "SELECT" not in result.output and "may pass" not in result.output
