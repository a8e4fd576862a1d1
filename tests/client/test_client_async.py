"""AsyncD1Client behaves exactly like D1Client: same requests, results, errors, retries and rate limiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from d1sync.client import AsyncD1Client, RateLimiter
from d1sync.database import AsyncDatabase
from d1sync.errors import (
    ConfigError,
    DatabaseNotFoundError,
    LimitError,
    RateLimitedError,
    RequestTimeoutError,
    TransientError,
)

from .scripted import TOKEN, ScriptedD1, d1_error, envelope, ok_rows

T = TypeVar("T")


def run(d1: ScriptedD1, body: Callable[[AsyncD1Client], Awaitable[T]], **kwargs: object) -> T:
    async def main() -> T:
        async with d1.async_client(**kwargs) as client:
            return await body(client)

    return asyncio.run(main())


def overloaded() -> httpx.Response:
    return d1_error(503, 7500, "D1 DB is overloaded")


def test_the_async_client_is_an_async_database() -> None:
    assert run(ScriptedD1(ok_rows()), lambda c: asyncio.sleep(0, isinstance(c, AsyncDatabase)))


def test_round_trip_with_encoded_values_and_decoded_blobs() -> None:
    d1 = ScriptedD1(ok_rows({"b": [1, 2], "n": 7}))

    async def body(client: AsyncD1Client) -> object:
        return await client.prepare("SELECT ?, ?, ?").bind(2**62, b"\x01\x02", True).first()

    assert run(d1, body) == {"b": b"\x01\x02", "n": 7}
    assert d1.bodies() == [{"sql": "SELECT ?, ?, ?", "params": [str(2**62), "0102", 1]}]


def test_raw_batch_exec_and_query() -> None:
    raw = {"results": {"columns": ["a"], "rows": [[1]]}, "success": True, "meta": {}}
    two = [{"results": [], "success": True, "meta": {"duration": 1.0}}] * 2
    d1 = ScriptedD1(
        httpx.Response(200, content=envelope([raw])),
        httpx.Response(200, content=envelope(two)),
        httpx.Response(200, content=envelope(two)),
        httpx.Response(200, content=envelope(two)),
    )

    async def body(client: AsyncD1Client) -> tuple[object, ...]:
        rows = await client.prepare("SELECT 1 AS a").raw(column_names=True)
        batch = await client.batch([client.prepare("INSERT INTO t VALUES (1)"), client.prepare("SELECT 1")])
        done = await client.exec("CREATE TABLE a (x); CREATE TABLE b (y);")
        every = await client.query("SELECT 1; SELECT 2")
        return rows, len(batch), done.count, len(every)

    assert run(d1, body) == ([["a"], [1]], 2, 2, 2)
    assert [r.url.path.rsplit("/", 1)[-1] for r in d1.requests] == ["raw", "query", "query", "query"]
    assert d1.bodies()[2] == {"batch": [{"sql": "CREATE TABLE a (x)"}, {"sql": "CREATE TABLE b (y)"}]}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (d1_error(404, 7404, "database not found"), DatabaseNotFoundError),
        (d1_error(400, 7500, "string or blob too big: SQLITE_TOOBIG"), LimitError),
        (httpx.Response(504, text="<html><title>504</title></html>"), TransientError),
        (httpx.ReadTimeout("slow"), RequestTimeoutError),
    ],
)
def test_errors_are_classified_as_in_the_sync_client(reply: httpx.Response | Exception, expected: type) -> None:
    d1 = ScriptedD1(reply)
    with pytest.raises(expected) as info:
        run(d1, lambda c: c.prepare("INSERT INTO t VALUES (1)").run(), max_retries=0)
    assert TOKEN not in str(info.value)


def test_reads_are_retried_with_the_injected_async_sleep_and_writes_are_not() -> None:
    d1 = ScriptedD1(overloaded(), d1_error(429, 971, "wait", **{"retry-after": "2"}), ok_rows({"a": 1}))
    assert run(d1, lambda c: c.prepare("SELECT 1 AS a").first("a")) == 1
    assert len(d1.requests) == 3 and len(d1.sleeps) == 2 and d1.sleeps[1] == 2.0

    d1 = ScriptedD1(overloaded(), ok_rows())
    with pytest.raises(TransientError):
        run(d1, lambda c: c.prepare("UPDATE t SET a = 1").run())
    assert len(d1.requests) == 1


def test_idempotent_batches_are_retried_and_give_up_after_max_retries() -> None:
    d1 = ScriptedD1(overloaded())

    async def body(client: AsyncD1Client) -> object:
        return await client.batch([client.prepare("INSERT OR IGNORE INTO t VALUES (1)")], idempotent=True)

    with pytest.raises(TransientError):
        run(d1, body, max_retries=2)
    assert len(d1.requests) == 3 and len(d1.sleeps) == 2


def test_async_clients_share_a_rate_limiter_and_wait_without_blocking() -> None:
    now = [0.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(100, 100.0, burst=2, clock=lambda: now[0], async_sleep=fake_sleep)
    d1 = ScriptedD1(ok_rows())

    async def main() -> None:
        async with d1.async_client(rate_limiter=limiter) as a, d1.async_client(rate_limiter=limiter) as b:
            await asyncio.gather(a.prepare("SELECT 1").all(), b.prepare("SELECT 1").all())
            assert limiter.available() == 0.0
            await b.prepare("SELECT 1").all()

    asyncio.run(main())
    assert len(d1.requests) == 3 and len(waits) == 1


def test_a_429_pauses_the_shared_limiter() -> None:
    now = [0.0]
    limiter = RateLimiter(100, 100.0, clock=lambda: now[0])
    d1 = ScriptedD1(d1_error(429, 971, "wait", **{"retry-after": "9"}))
    with pytest.raises(RateLimitedError):
        run(d1, lambda c: c.prepare("DELETE FROM t").run(), rate_limiter=limiter, max_retries=0)
    assert limiter.available() == 0.0


def test_database_management_and_missing_database_id() -> None:
    d1 = ScriptedD1(
        httpx.Response(200, content=envelope([{"uuid": "u1"}])),
        httpx.Response(200, content=envelope({"uuid": "u2"})),
        httpx.Response(200, content=envelope({"uuid": "u2", "name": "x"})),
        httpx.Response(200, content=envelope(None)),
    )

    async def body(client: AsyncD1Client) -> tuple[object, ...]:
        listed = await client.list_databases()
        created = await client.create_database("x")
        got = await client.get_database("u2")
        await client.delete_database("u2")
        with pytest.raises(ConfigError, match="D1_DATABASE_ID"):
            await client.prepare("SELECT 1").all()
        return listed, created["uuid"], got["name"]

    assert run(d1, body, database_id=None) == ([{"uuid": "u1"}], "u2", "x")
    assert [r.method for r in d1.requests] == ["GET", "POST", "GET", "DELETE"]
