"""RateLimiter.observe: a response's count of the account's remaining requests lowers the bucket, never raises it.

Most tests set ``reserve=0`` to see the count itself; the reserve left to other processes has tests of its own.
"""

from __future__ import annotations

import math

import pytest

from d1sync.client import RateLimiter

from ..support import race
from .test_client_ratelimit import FakeTime


def after_pause(limiter: RateLimiter, pause: float) -> float:
    """The wait for the next token when a pause of ``pause`` s begins now with an empty bucket: nothing accrues
    during a pause, so the token comes one refill interval (at the share left now) after it ends."""
    return pause + 1 / (limiter.refill_per_second * limiter.share)


def test_fewer_remaining_than_tokens_lowers_the_bucket_to_match() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    limiter.observe(remaining=3, reset=50.0)
    assert limiter.available() == 3.0
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_more_remaining_than_tokens_never_adds_any() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    for _ in range(8):
        limiter.acquire()
    limiter.observe(remaining=500, reset=50.0)
    assert limiter.available() == 2.0


def test_a_lowered_bucket_refills_at_its_usual_rate() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=4, reserve=0)  # refills 0.6 tokens per second
    limiter.observe(remaining=1)
    t.now = 5.0
    assert limiter.available() == pytest.approx(4.0)  # 1 + 5 * 0.6, capped at the burst


def test_nothing_remaining_pauses_every_acquirer_until_the_reset_then_paces_at_half_the_rate() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0, burst=10, reserve=0)
    limiter.observe(remaining=0, reset=30.0)
    assert limiter.available() == 0.0 and not limiter.try_acquire()
    assert limiter.share == 0.5  # the account is at its limit: slow down before anyone gets a 429
    bound = after_pause(limiter, 30.0)
    assert limiter.wait_time() == pytest.approx(bound)
    limiter.acquire()
    assert 30.0 < t.now < bound  # a little sooner: the share grew back meanwhile


def test_an_answer_counts_the_requests_granted_after_its_own_as_spent() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    ticket = limiter.acquire()
    later = [limiter.acquire() for _ in range(3)]  # in flight while the first answer comes back
    assert later == [ticket + 1, ticket + 2, ticket + 3] and limiter.granted == ticket + 3
    limiter.observe(remaining=5, reset=50.0, ticket=ticket)
    assert limiter.available() == 2.0  # 5 left when the first arrived, 3 of them already taken since
    limiter.observe(remaining=5, reset=50.0, ticket=later[-1])
    assert limiter.available() == 2.0  # the latest answer has seen everything: nothing more to take off


def test_no_tokens_accrue_during_a_pause() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=4, adaptive=False)  # refills 0.6 tokens per second
    for _ in range(4):
        limiter.acquire()
    limiter.pause(60.0)
    t.now = 60.0
    assert limiter.available() == 0.0  # not a full bucket: the others told to wait come back now too
    t.now = 60.0 + 1 / 0.6
    assert limiter.available() == pytest.approx(1.0)


def test_nothing_remaining_without_a_reset_empties_the_bucket_without_a_pause() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=4, reserve=0)
    limiter.observe(remaining=0)
    assert limiter.wait_time() == pytest.approx(1 / 0.6)  # one refill interval, no more
    limiter.acquire()
    assert t.sleeps == [pytest.approx(1 / 0.6)]


def test_an_observation_never_shortens_a_pause() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0)
    limiter.pause(60.0)
    limiter.observe(remaining=0, reset=5.0)
    assert limiter.wait_time() == pytest.approx(after_pause(limiter, 60.0))


def test_a_longer_reset_extends_a_pause() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0)
    limiter.pause(5.0)
    limiter.observe(remaining=0, reset=60.0)
    assert limiter.wait_time() == pytest.approx(after_pause(limiter, 60.0))


def test_a_reset_with_requests_remaining_does_not_pause() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    limiter.observe(remaining=2, reset=300.0)
    assert limiter.wait_time() == 0.0 and limiter.try_acquire()


@pytest.mark.parametrize("remaining", [-1, -0.5, math.nan, -math.inf])
def test_a_negative_or_nan_remaining_is_ignored(remaining: float) -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, reserve=0)
    limiter.observe(remaining=remaining, reset=30.0)
    assert limiter.available() == 10.0 and limiter.wait_time() == 0.0


@pytest.mark.parametrize("reset", [-1.0, math.nan, math.inf])
def test_a_negative_nan_or_infinite_reset_is_ignored_but_the_count_still_holds(reset: float) -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=4, reserve=0)
    limiter.observe(remaining=0, reset=reset)
    assert limiter.available() == 0.0
    assert limiter.wait_time() == pytest.approx(1 / 0.6)  # no pause: only the refill


def test_observations_from_many_threads_never_let_more_through_than_the_lowest_count() -> None:
    """Observe and take under one lock: 8 threads saying 600 remain can take 600 tokens in all, not more."""
    limiter = RateLimiter(1_000_000, 1e9, burst=1000, reserve=0, clock=lambda: 0.0)
    taken = [0] * 8

    def worker(i: int) -> None:
        for _ in range(200):
            limiter.observe(remaining=600)
            if limiter.try_acquire():
                taken[i] += 1

    race(8, worker)
    assert sum(taken) == 600 and limiter.available() == 0.0


def test_wait_time_is_the_pause_then_what_the_bucket_still_lacks() -> None:
    t = FakeTime()
    limiter = t.limiter(10, 10.0, burst=2)  # refills 0.8 tokens per second
    limiter.acquire()
    limiter.acquire()
    t.now = 0.5  # 0.4 tokens: 0.75 s more for the rest
    assert limiter.wait_time() == pytest.approx(0.6 / 0.8)
    limiter.pause(30.0)  # nothing accrues meanwhile
    assert limiter.wait_time() == pytest.approx(30.0 + 0.6 / 0.8)
    limiter.acquire()
    assert t.now == pytest.approx(0.5 + 30.0 + 0.6 / 0.8)


def test_the_reserve_is_left_to_others_and_below_it_the_limiter_waits_for_the_reset() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0, burst=10)  # reserve: the burst, 10
    assert limiter.reserve == 10
    limiter.observe(remaining=13, reset=30.0)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    limiter.observe(remaining=10, reset=30.0)
    assert limiter.wait_time() == pytest.approx(after_pause(limiter, 30.0))


def test_requests_are_paced_so_what_remains_lasts_until_the_reset() -> None:
    """60 left over for 120 s: one request every 2 s, slower than the bucket's own 0.9/s."""
    t = FakeTime()
    limiter = t.limiter(100, 100.0, burst=10, reserve=0)
    limiter.observe(remaining=60, reset=120.0)
    for _ in range(10):
        limiter.acquire()
    start = t.now
    for _ in range(5):
        limiter.acquire()
    assert t.now - start == pytest.approx(10.0)
    t.now = start + 200.0  # past the reset: the bucket's own rate again
    for _ in range(10):
        limiter.acquire()
    before = t.now
    limiter.acquire()
    assert t.now - before == pytest.approx(1 / 0.9)


def test_a_429_halves_the_rate_once_per_second_and_it_grows_back_over_a_window() -> None:
    t = FakeTime()
    limiter = t.limiter(100, 100.0, burst=10)
    limiter.throttled(retry_after=5.0)
    limiter.throttled(retry_after=5.0)  # the same overrun, seen by another request in flight
    assert limiter.share == 0.5 and limiter.available() == 0.0
    assert limiter.wait_time() == pytest.approx(after_pause(limiter, 5.0))  # paced after the pause, no burst
    t.now = 2.0
    limiter.throttled(retry_after=None)
    assert limiter.share == pytest.approx((0.5 + 2 / 100) / 2)  # 2 s of growth, then halved
    t.now = 52.0
    assert limiter.share == pytest.approx(0.26 + 50 / 100)
    t.now = 500.0
    assert limiter.share == 1.0


def test_a_limiter_that_is_not_adaptive_only_pauses_on_a_429() -> None:
    limiter = FakeTime().limiter(100, 100.0, burst=10, adaptive=False)
    limiter.throttled(retry_after=3.0)
    assert limiter.share == 1.0 and limiter.wait_time() == pytest.approx(after_pause(limiter, 3.0))
