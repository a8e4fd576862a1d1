"""The emulator's execution limit (``max_duration``, ``d1sync emulator --max-duration``): a request that runs
longer is stopped mid-statement, rolled back, and answered with D1's error for it, which the client reads as an
:class:`~d1sync.errors.ExecutionTimeoutError`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from d1sync.client import RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID, DEFAULT_MAX_DURATION, TOKEN_ENV
from d1sync.emulator.app import create_app
from d1sync.emulator.server import EmulatorServer
from d1sync.emulator.testing import SyncASGITransport
from d1sync.errors import ExecutionTimeoutError, RateLimitedError, TransientError, classify_error

from ..support import IN_PROCESS_BASE, client_at
from .conftest import TOKEN, Api, start

LIMIT = 0.3
# Counts to a billion: minutes of work, so only the limit can end it.
SLOW = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT count(*) FROM c"
MESSAGE = "D1 DB storage operation exceeded timeout which caused object to be reset."


@pytest.fixture
def limited(make_app: Callable[..., Starlette], connect: Callable[[Starlette], Api]) -> Api:
    return connect(make_app(max_duration=LIMIT))


def test_the_default_limit_is_d1s_30_seconds() -> None:
    assert DEFAULT_MAX_DURATION == 30.0


def test_a_slow_statement_is_stopped_at_the_limit_with_d1s_error(limited: Api) -> None:
    started = time.monotonic()
    response = limited.sql(SLOW)
    elapsed = time.monotonic() - started
    assert limited.error(response) == (429, 7429, MESSAGE)
    assert LIMIT <= elapsed < LIMIT + 5  # really interrupted, not left to finish
    assert limited.ok("SELECT 1 AS one") == [{"one": 1}]  # the database serves again at once


def test_the_whole_request_is_rolled_back_even_the_writes_before_the_slow_statement(limited: Api) -> None:
    limited.ok("CREATE TABLE t (v)")
    response = limited.post({"batch": [{"sql": "INSERT INTO t VALUES (1)"}, {"sql": SLOW}]})
    assert limited.error(response)[1] == 7429
    response = limited.sql(f"INSERT INTO t VALUES (2); {SLOW}")
    assert limited.error(response)[1] == 7429
    assert limited.ok("SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_a_request_within_the_limit_runs(
    make_app: Callable[..., Starlette], connect: Callable[[Starlette], Api]
) -> None:
    roomy = connect(make_app(max_duration=5.0))  # well within, even on a loaded machine
    assert roomy.ok(SLOW.replace("1000000000", "1000")) == [{"count(*)": 1000}]


def test_the_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_duration"):
        create_app(tmp_path, token=TOKEN, max_duration=0)


def test_the_client_reads_it_as_an_execution_timeout_not_a_rate_limit() -> None:
    error = classify_error(status=429, code=7429, message=MESSAGE)
    assert isinstance(error, ExecutionTimeoutError) and not isinstance(error, RateLimitedError)
    assert isinstance(error, TransientError) and error.retryable


def test_over_a_socket_the_client_gets_an_execution_timeout_and_nothing_applied(tmp_path: Path) -> None:
    with EmulatorServer(tmp_path / "data", token=TOKEN, max_duration=LIMIT) as server:
        with client_at(server.api_base, DEFAULT_DATABASE_ID, token=TOKEN) as db:
            db.exec("CREATE TABLE t (v)")
            with pytest.raises(ExecutionTimeoutError) as info:
                db.batch([db.prepare("INSERT INTO t VALUES (?)").bind(1), db.prepare(SLOW)])
            assert (info.value.code, info.value.status) == (7429, 429)
            assert db.prepare("SELECT count(*) AS n FROM t").first("n") == 0


def test_the_command_takes_max_duration_from_its_flag_or_the_environment(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    for args, env in ((["--max-duration", "0.3"], {}), ([], {"D1SYNC_EMULATOR_MAX_DURATION": "0.3"})):
        proc, _, api_base = start(["--data-dir", str(tmp_path / "data"), *args], {TOKEN_ENV: TOKEN, **env})
        processes.append(proc)
        with httpx.Client(base_url=api_base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            answer = http.post(f"/accounts/a/d1/database/{DEFAULT_DATABASE_ID}/query", json={"sql": SLOW})
        assert (answer.status_code, answer.json()["errors"][0]["code"]) == (429, 7429)
        proc.terminate()
        proc.communicate(timeout=15)


def test_the_client_does_not_resend_a_request_that_ran_out_of_time(make_app: Callable[..., Starlette]) -> None:
    """Sent again, it would run 30 s again: the caller gets the error at once and decides to send less."""
    app = make_app(max_duration=LIMIT)
    sleeps: list[float] = []
    with client_at(
        IN_PROCESS_BASE,
        DEFAULT_DATABASE_ID,
        token=TOKEN,
        transport=SyncASGITransport(app),
        retry=RetryPolicy(max_retries=3),
        sleep=sleeps.append,
    ) as db:
        with pytest.raises(ExecutionTimeoutError):
            db.prepare(SLOW).all()  # a read: any other transient error would be retried
    assert sleeps == []
