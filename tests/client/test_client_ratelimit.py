"""The token bucket: its arithmetic on a fake clock, sharing between clients, threads and asyncio."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from d1sync.client import D1Client, RateLimiter, default_limiter

from ..support import race
from .scripted import ScriptedD1, ok_rows


class FakeTime:
    """A clock whose sleep advances it: waiting costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def limiter(self, rate: int, per: float, **kwargs: Any) -> RateLimiter:
        return RateLimiter(rate, per, clock=self.clock, sleep=self.sleep, async_sleep=self.async_sleep, **kwargs)


def test_a_fresh_bucket_holds_a_fortieth_of_the_rate_and_refills_the_rest() -> None:
    limiter = FakeTime().limiter(1200, 300.0)
    assert limiter.burst == 30 and limiter.available() == 30.0
    assert limiter.refill_per_second == pytest.approx((1200 - 30) / 300.0)  # 3.9/s: 97.5% of the budget


def test_the_burst_goes_without_waiting_then_each_token_waits_one_refill_interval() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=4)  # refills (10 - 4) / 10 = 0.6 tokens per second
    for _ in range(4):
        limiter.acquire()
    assert t.sleeps == [] and limiter.available() == 0.0
    limiter.acquire()
    assert t.sleeps == [pytest.approx(1 / 0.6)]


def test_refill_is_linear_and_capped_at_the_burst() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=4)
    for _ in range(4):
        assert limiter.try_acquire()
    assert not limiter.try_acquire()
    t.now = 2.5
    assert limiter.available() == pytest.approx(1.5)
    t.now = 1000.0
    assert limiter.available() == 4.0


@pytest.mark.parametrize(("rate", "per", "burst"), [(10, 10.0, None), (1200, 300.0, None), (20, 5.0, 19)])
def test_no_window_of_per_seconds_ever_sees_more_than_rate_requests(rate: int, per: float, burst: int | None) -> None:
    t = FakeTime()
    limiter = RateLimiter(rate, per, burst=burst, clock=t.clock, sleep=t.sleep)
    window: deque[float] = deque()
    busiest = 0
    while t.now < 3 * per:
        limiter.acquire()
        window.append(t.now)
        while window[0] <= t.now - per:
            window.popleft()
        busiest = max(busiest, len(window))
    assert busiest <= rate
    assert busiest >= rate - 1  # and the budget is actually used, not wasted


def test_pause_blocks_acquirers_until_it_ends_and_never_shortens() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0)
    limiter.pause(30.0)
    limiter.pause(5.0)
    assert limiter.available() == 0.0 and not limiter.try_acquire()
    limiter.acquire()
    assert t.now == pytest.approx(30.0)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 10.0)
    with pytest.raises(ValueError):
        RateLimiter(10, 0.0)
    with pytest.raises(ValueError):
        RateLimiter(10, 10.0, burst=11)


def test_a_rate_of_one_still_refills() -> None:
    t = FakeTime()
    limiter = t.limiter(1, 2.0)
    limiter.acquire()
    limiter.acquire()
    assert t.now == pytest.approx(2.0)


def test_two_clients_sharing_a_limiter_draw_from_one_budget() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0, burst=5)
    d1 = ScriptedD1(ok_rows())
    with d1.client(rate_limiter=limiter) as a, d1.client(rate_limiter=limiter, database_id="db-2") as b:
        for _ in range(3):
            a.prepare("SELECT 1").all()
        for _ in range(2):
            b.prepare("SELECT 1").all()
        assert limiter.available() == 0.0 and t.sleeps == []
        a.prepare("SELECT 1").all()
    assert len(t.sleeps) == 1 and len(d1.requests) == 6


def test_clients_of_one_api_base_share_the_process_wide_default_limiter() -> None:
    d1 = ScriptedD1(ok_rows())
    a = d1.client(base_url="https://api.example.test/client/v4")
    b = d1.client(base_url="https://api.example.test/client/v4/")
    c = d1.client(base_url="https://other.example.test/client/v4")
    try:
        assert a.rate_limiter is not None and a.rate_limiter is b.rate_limiter
        assert c.rate_limiter is not a.rate_limiter
        assert a.rate_limiter is default_limiter("https://api.example.test/client/v4")
        assert (a.rate_limiter.rate, a.rate_limiter.per) == (1200, 300.0)
    finally:
        for client in (a, b, c):
            client.close()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8787/client/v4", "http://localhost:9/client/v4", "http://emulator/client/v4"]
)
def test_local_emulators_are_not_rate_limited_by_default(url: str) -> None:
    with D1Client(account_id="a", database_id="d", api_token="t", base_url=url) as client:
        assert client.rate_limiter is None


def test_threads_never_take_more_tokens_than_the_bucket_holds() -> None:
    limiter = RateLimiter(1_000_000, 1e9, burst=1000, clock=lambda: 0.0)
    taken = [0] * 8

    def worker(i: int) -> None:
        for _ in range(400):
            if limiter.try_acquire():
                taken[i] += 1

    race(8, worker)
    assert sum(taken) == 1000 and limiter.available() == 0.0


def test_acquire_async_waits_with_the_async_sleep() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=1)  # 0.9 tokens per second

    async def main() -> None:
        await limiter.acquire_async()
        await limiter.acquire_async()

    asyncio.run(main())
    assert t.sleeps == [pytest.approx(1 / 0.9)]


def test_wait_time_predicts_what_acquire_sleeps_and_takes_nothing() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=2)  # refills 0.8 tokens per second
    assert limiter.wait_time() == 0.0
    limiter.acquire()
    limiter.acquire()
    predicted = limiter.wait_time()
    assert predicted == pytest.approx(1 / 0.8)
    assert limiter.wait_time() == pytest.approx(predicted)  # asking twice takes no token
    limiter.acquire()
    assert t.sleeps == [pytest.approx(predicted)]


def test_wait_time_includes_a_pause() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=2)
    limiter.pause(30.0)
    assert limiter.wait_time() == pytest.approx(30.0)
    limiter.acquire()
    assert sum(t.sleeps) == pytest.approx(30.0)
