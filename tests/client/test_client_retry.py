"""Retries: only reads and idempotent calls, capped jittered back-off, retry-after wins, bounded attempts."""

from __future__ import annotations

import random

import httpx
import pytest

from d1sync.backoff import Backoff
from d1sync.client import RateLimiter, RetryPolicy, is_read_only
from d1sync.errors import NetworkError, RateLimitedError, RequestTimeoutError, SQLError, TransientError

from .scripted import ScriptedD1, d1_error, envelope, ok_rows


def overloaded() -> httpx.Response:
    return d1_error(503, 7500, "D1 DB is overloaded. Requests queued for too long.")


class UpperBound(random.Random):
    """A random source that always picks the top of the range, exposing the back-off ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t",
        "select 1; SELECT 2",
        "EXPLAIN QUERY PLAN SELECT * FROM t",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "VALUES (1), (2)",
        "PRAGMA table_info(t)",
        "-- a comment\nSELECT 1",
    ],
)
def test_reads_are_recognised(sql: str) -> None:
    assert is_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "REPLACE INTO t VALUES (1)",
        "CREATE TABLE t (a)",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
        "WITH x AS (SELECT 1) DELETE FROM t WHERE a IN x",
        "PRAGMA foreign_keys = OFF",
        "SELECT 1; DELETE FROM t",
        "",
        "   ",
    ],
)
def test_writes_and_mixed_texts_are_not_reads(sql: str) -> None:
    assert not is_read_only(sql)


def test_a_read_is_retried_until_it_succeeds() -> None:
    d1 = ScriptedD1(overloaded(), overloaded(), ok_rows({"one": 1}))
    with d1.client() as client:
        assert client.prepare("SELECT 1 AS one").first("one") == 1
    assert len(d1.requests) == 3 and len(d1.sleeps) == 2


def test_an_unmarked_write_is_not_retried() -> None:
    d1 = ScriptedD1(overloaded(), ok_rows())
    with d1.client() as client, pytest.raises(TransientError):
        client.prepare("INSERT INTO t VALUES (1)").run()
    assert len(d1.requests) == 1 and d1.sleeps == []


def test_an_unmarked_write_batch_is_not_retried_even_with_reads_in_it() -> None:
    d1 = ScriptedD1(overloaded(), ok_rows())
    with d1.client() as client, pytest.raises(TransientError):
        client.batch([client.prepare("SELECT 1"), client.prepare("DELETE FROM t")])
    assert len(d1.requests) == 1


def test_a_batch_of_reads_is_retried() -> None:
    both = [{"results": [{"a": 1}], "success": True, "meta": {}}, {"results": [{"2": 2}], "success": True, "meta": {}}]
    d1 = ScriptedD1(overloaded(), httpx.Response(200, content=envelope(both)))
    with d1.client() as client:
        client.batch([client.prepare("SELECT 1 AS a"), client.prepare("SELECT 2")])
    assert len(d1.requests) == 2


def test_idempotent_writes_are_retried() -> None:
    d1 = ScriptedD1(overloaded(), ok_rows(), overloaded(), ok_rows())
    with d1.client() as client:
        client.batch([client.prepare("INSERT OR REPLACE INTO t VALUES (1)")], idempotent=True)
        client.query("INSERT OR REPLACE INTO t VALUES (2)", idempotent=True)
    assert len(d1.requests) == 4 and len(d1.sleeps) == 2


def test_a_timed_out_write_is_not_retried_because_it_may_have_committed() -> None:
    d1 = ScriptedD1(httpx.ReadTimeout("slow"), ok_rows())
    with d1.client() as client, pytest.raises(RequestTimeoutError):
        client.prepare("INSERT INTO t VALUES (1)").run()
    assert len(d1.requests) == 1


def test_a_write_refused_at_connect_is_retried_because_it_never_left() -> None:
    d1 = ScriptedD1(httpx.ConnectError("connection refused"), ok_rows())
    with d1.client() as client:
        client.prepare("INSERT INTO t VALUES (1)").run()
    assert len(d1.requests) == 2 and len(d1.sleeps) == 1


def test_a_broken_connection_after_sending_a_write_is_not_retried() -> None:
    d1 = ScriptedD1(httpx.RemoteProtocolError("server disconnected"), ok_rows())
    with d1.client() as client, pytest.raises(NetworkError):
        client.prepare("INSERT INTO t VALUES (1)").run()
    assert len(d1.requests) == 1


def test_non_retryable_errors_are_never_retried_even_for_reads() -> None:
    d1 = ScriptedD1(d1_error(400, 7500, "no such table: t: SQLITE_ERROR"), ok_rows())
    with d1.client() as client, pytest.raises(SQLError):
        client.prepare("SELECT * FROM t").all()
    assert len(d1.requests) == 1 and d1.sleeps == []


def test_retry_after_replaces_the_computed_delay() -> None:
    d1 = ScriptedD1(d1_error(429, 971, "Please wait", **{"retry-after": "7"}), ok_rows())
    with d1.client(backoff_base=0.5) as client:
        client.prepare("SELECT 1").all()
    assert d1.sleeps == [7.0]


def test_retry_after_longer_than_max_retry_after_is_raised_not_waited() -> None:
    d1 = ScriptedD1(d1_error(429, 971, "Please wait", **{"retry-after": "300"}), ok_rows())
    with d1.client(max_retry_after=60.0) as client, pytest.raises(RateLimitedError) as info:
        client.prepare("SELECT 1").all()
    assert info.value.retry_after == 300.0 and d1.sleeps == [] and len(d1.requests) == 1


def test_gives_up_after_max_retries_and_raises_the_last_error() -> None:
    d1 = ScriptedD1(overloaded())
    with d1.client(max_retries=3) as client, pytest.raises(TransientError, match="overloaded"):
        client.prepare("SELECT 1").all()
    assert len(d1.requests) == 4 and len(d1.sleeps) == 3


def test_max_retries_zero_disables_retrying() -> None:
    d1 = ScriptedD1(overloaded(), ok_rows())
    with d1.client(max_retries=0) as client, pytest.raises(TransientError):
        client.prepare("SELECT 1").all()
    assert len(d1.requests) == 1 and d1.sleeps == []


def test_backoff_doubles_from_base_and_is_capped() -> None:
    d1 = ScriptedD1(overloaded())
    with d1.client(max_retries=7, backoff_base=0.5, backoff_cap=4.0, rng=UpperBound()) as client:
        with pytest.raises(TransientError):
            client.prepare("SELECT 1").all()
    assert d1.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_jitter_stays_between_half_the_ceiling_and_the_ceiling_and_varies() -> None:
    policy = RetryPolicy(max_retries=50, backoff=Backoff(base=0.5, cap=30.0))
    rng = random.Random(42)
    delays = [policy.delay(attempt, rng) for attempt in range(50) for _ in range(20)]
    ceilings = [min(30.0, 0.5 * 2**attempt) for attempt in range(50) for _ in range(20)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) > 900  # jittered: not a fixed schedule that synchronises clients
    assert max(delays) <= 30.0


def test_huge_attempt_numbers_do_not_overflow_the_backoff() -> None:
    assert 15.0 <= RetryPolicy(backoff=Backoff(base=0.5, cap=30.0)).delay(10_000, random.Random(0)) <= 30.0


def test_a_429_pauses_the_shared_rate_limiter_for_retry_after() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=100, per=100.0, clock=lambda: now[0], sleep=lambda s: None)
    d1 = ScriptedD1(d1_error(429, 971, "Please wait", **{"retry-after": "5"}))
    with d1.client(max_retries=0, rate_limiter=limiter) as client, pytest.raises(RateLimitedError):
        client.prepare("INSERT INTO t VALUES (1)").run()
    assert limiter.available() == 0.0 and limiter.share == 0.5
    now[0] = 5.0
    assert limiter.available() == 0.0  # nothing accrued during the pause: no burst after it
    now[0] = 5.0 + 1 / (limiter.refill_per_second * 0.5)
    assert limiter.available() >= 1.0 - 1e-9


def test_each_retry_takes_a_rate_limiter_token() -> None:
    limiter = RateLimiter(rate=100, per=100.0, burst=10, clock=lambda: 0.0)
    d1 = ScriptedD1(overloaded(), overloaded(), ok_rows())
    with d1.client(rate_limiter=limiter) as client:
        client.prepare("SELECT 1").all()
    assert limiter.available() == 7.0
