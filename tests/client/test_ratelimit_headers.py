"""Rate-limit headers: read robustly, and fed to the limiter on every response, success or error, sync or async.

The limiters here leave no reserve to other processes (reserve=0), so the counts read are what they hold.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from d1sync.client._core import RateLimitStatus, parse_rate_limit
from d1sync.errors import SQLError, TransientError

from .scripted import ScriptedD1, d1_error, ok_rows
from .test_client_ratelimit import FakeTime


def headers(response: httpx.Response, **extra: str) -> httpx.Response:
    """``response`` with ``extra`` headers (underscores in names become dashes)."""
    named = {name.replace("_", "-"): value for name, value in extra.items()}
    return httpx.Response(response.status_code, content=response.content, headers={**response.headers, **named})


def parse(**extra: str) -> RateLimitStatus | None:
    return parse_rate_limit(httpx.Headers({name.replace("_", "-"): value for name, value in extra.items()}))


# -- reading the headers ------------------------------------------------------------------------------------


def test_remaining_and_reset_are_read_from_the_x_ratelimit_headers() -> None:
    status = parse(x_ratelimit_limit="1200", x_ratelimit_remaining="17", x_ratelimit_reset="42")
    assert status == RateLimitStatus(17, 42.0)
    assert parse(x_ratelimit_remaining=" 0 ", x_ratelimit_reset="2.5") == RateLimitStatus(0, 2.5)


def test_no_remaining_means_nothing_to_observe() -> None:
    assert parse() is None
    assert parse(x_ratelimit_limit="1200", x_ratelimit_reset="42") is None
    assert parse(retry_after="7") is None


@pytest.mark.parametrize("remaining", ["", "many", "-1", "1.5", "NaN", "inf", "+3", "1_000", "3;w=300", "1e3"])
def test_a_malformed_or_negative_remaining_is_ignored(remaining: str) -> None:
    assert parse(x_ratelimit_remaining=remaining, x_ratelimit_reset="42") is None


@pytest.mark.parametrize("reset", ["", "soon", "-5", "NaN", "inf", "1e3", "3601", "1700000000"])
def test_a_malformed_negative_or_implausible_reset_is_ignored_but_remaining_still_counts(reset: str) -> None:
    """A reset over an hour is not believed (it may be a Unix time): the count holds, without a pause."""
    assert parse(x_ratelimit_remaining="0", x_ratelimit_reset=reset) == RateLimitStatus(0, None)


def test_a_header_sent_twice_counts_its_lowest_remaining_and_longest_reset() -> None:
    assert parse(x_ratelimit_remaining="9, 4", x_ratelimit_reset="10, 30") == RateLimitStatus(4, 30.0)
    assert parse(x_ratelimit_remaining="9, x") is None


def test_the_ietf_draft_ratelimit_header_cloudflare_documents_is_read_too() -> None:
    assert parse(ratelimit='"default";r=50;t=30') == RateLimitStatus(50, 30.0)
    assert parse(ratelimit='"default";r=50;t=30, "burst";r=3;t=5') == RateLimitStatus(3, 5.0)
    assert parse(ratelimit='"default";r=0') == RateLimitStatus(0, None)
    assert parse(ratelimit='"default";t=30') is None
    assert parse(ratelimit='"default";r=-2;t=30') is None
    assert parse(ratelimit="garbage") is None


def test_with_both_header_families_the_lowest_remaining_wins() -> None:
    both = parse(x_ratelimit_remaining="5", x_ratelimit_reset="60", ratelimit='"default";r=8;t=30')
    assert both == RateLimitStatus(5, 60.0)
    tied = parse(x_ratelimit_remaining="0", x_ratelimit_reset="20", ratelimit='"default";r=0;t=45')
    assert tied == RateLimitStatus(0, 45.0)


# -- the clients feed every response to the limiter ---------------------------------------------------------


def test_a_success_reporting_few_remaining_lowers_the_clients_limiter() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    d1 = ScriptedD1(headers(ok_rows({"a": 1}), x_ratelimit_remaining="2", x_ratelimit_reset="50"))
    with d1.client(rate_limiter=limiter) as client:
        client.prepare("SELECT 1 AS a").first()
    assert limiter.available() == 2.0


def test_an_error_reporting_nothing_remaining_pauses_the_clients_limiter() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0, burst=10, reserve=0)
    no_table = d1_error(400, 7500, "no such table: t: SQLITE_ERROR")
    d1 = ScriptedD1(headers(no_table, x_ratelimit_remaining="0", x_ratelimit_reset="20"))
    with d1.client(rate_limiter=limiter) as client, pytest.raises(SQLError):
        client.prepare("SELECT * FROM t").all()
    assert limiter.available() == 0.0 and limiter.share == 0.5
    assert limiter.wait_time() == pytest.approx(20.0 + 1 / (limiter.refill_per_second * 0.5))


def test_a_gateway_page_carrying_the_headers_is_observed_too() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    page = httpx.Response(502, text="<html><title>502 Bad Gateway</title></html>")
    d1 = ScriptedD1(headers(page, x_ratelimit_remaining="1"))
    with d1.client(rate_limiter=limiter, max_retries=0) as client, pytest.raises(TransientError):
        client.prepare("SELECT 1").all()
    assert limiter.available() == 1.0


def test_each_retry_is_observed_so_the_last_answer_counts() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    overloaded = d1_error(503, 7500, "D1 DB is overloaded. Requests queued for too long.")
    d1 = ScriptedD1(
        headers(overloaded, x_ratelimit_remaining="6"),
        headers(ok_rows({"a": 1}), x_ratelimit_remaining="3"),
    )
    with d1.client(rate_limiter=limiter) as client:
        client.prepare("SELECT 1 AS a").first()
    assert limiter.available() == 3.0 and len(d1.requests) == 2


def test_responses_without_the_headers_leave_the_limiter_alone() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    d1 = ScriptedD1(headers(ok_rows(), x_ratelimit_remaining="soon"), ok_rows())
    with d1.client(rate_limiter=limiter) as client:
        client.prepare("SELECT 1").all()
        client.prepare("SELECT 1").all()
    assert limiter.available() == 8.0  # only the two tokens taken


def test_a_client_without_a_limiter_ignores_the_headers() -> None:
    d1 = ScriptedD1(headers(ok_rows({"a": 1}), x_ratelimit_remaining="0", x_ratelimit_reset="60"))
    with d1.client() as client:  # a dot-less host: no process-wide limiter
        assert client.rate_limiter is None
        assert client.prepare("SELECT 1 AS a").first("a") == 1


def test_the_async_client_observes_successes_and_errors_alike() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0, burst=10, reserve=0)
    no_table = d1_error(400, 7500, "no such table: t: SQLITE_ERROR")
    d1 = ScriptedD1(
        headers(ok_rows({"a": 1}), x_ratelimit_remaining="4", x_ratelimit_reset="50"),
        headers(no_table, x_ratelimit_remaining="0", x_ratelimit_reset="9"),
    )

    async def main() -> None:
        async with d1.async_client(rate_limiter=limiter) as client:
            await client.prepare("SELECT 1 AS a").first()
            assert limiter.available() == 4.0
            with pytest.raises(SQLError):
                await client.prepare("SELECT * FROM t").all()

    asyncio.run(main())
    assert limiter.wait_time() == pytest.approx(9.0 + 1 / (limiter.refill_per_second * 0.5))
