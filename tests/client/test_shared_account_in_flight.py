"""Several daemons, each with its own :class:`RateLimiter` told the whole budget, share one account.

The account is the emulator's own sliding window (:class:`~d1sync.emulator.faults.RateLimitWindow`), and time
is simulated: each daemon keeps ``concurrency`` requests going as fast as its limiter lets it, every request
reaches the account half a round trip after it leaves and its answer comes back half a round trip later, and
the daemon's limiter sees that answer as the clients show it (the ``x-ratelimit-*`` count, or only the 429).
Deterministic, so the figures are exact. ``test_shared_account.py`` runs real clients against the in-process
emulator one request at a time; this one keeps several requests in flight per daemon, with a round trip,
which is where answers go stale. The real-socket version is ``d1sync bench --only fleet``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from d1sync.client.ratelimit import RateLimiter
from d1sync.emulator.faults import RateLimitWindow


@dataclass
class Account:
    """The outcome of a simulated run: per daemon, requests admitted and refused (429)."""

    admitted: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    budget: float = 0.0

    @property
    def share_refused(self) -> float:
        return sum(self.refused) / max(1, sum(self.admitted) + sum(self.refused))

    @property
    def budget_used(self) -> float:
        return sum(self.admitted) / self.budget


def share_one_account(
    daemons: int,
    *,
    rate: int = 120,
    per: float = 30.0,
    seconds: float = 300.0,
    round_trip: float = 0.05,
    concurrency: int = 4,
    headers: bool = True,
) -> Account:
    now = 0.0

    def clock() -> float:
        return now

    account = RateLimitWindow(rate, per, clock=clock)
    limiters = [RateLimiter(rate, per, clock=clock) for _ in range(daemons)]
    outcome = Account([0] * daemons, [0] * daemons, rate * seconds / per)
    events: list[tuple[float, int, Callable[[], None]]] = []
    order = itertools.count()

    def at(when: float, action: Callable[[], None]) -> None:
        heapq.heappush(events, (when, next(order), action))

    def attempt(d: int) -> None:
        limiter = limiters[d]
        if not limiter.try_acquire():
            at(now + max(limiter.wait_time(), 0.001), lambda: attempt(d))
            return
        ticket = limiter.granted

        def arrive() -> None:
            verdict = account.admit()

            def answer() -> None:
                if headers:
                    limiter.observe(verdict.remaining, verdict.reset, ticket=ticket)
                if verdict.retry_after is None:
                    outcome.admitted[d] += 1
                    at(now, lambda: attempt(d))
                else:
                    outcome.refused[d] += 1
                    limiter.throttled(verdict.retry_after)
                    at(now + verdict.retry_after, lambda: attempt(d))

            at(now + round_trip / 2, answer)

        at(now + round_trip / 2, arrive)

    for d in range(daemons):
        for _ in range(concurrency):
            at(0.0, lambda d=d: attempt(d))
    while events:
        when, _, action = heapq.heappop(events)
        if when > seconds:
            break
        now = when
        action()
    return outcome


@pytest.mark.parametrize("round_trip", [0.02, 0.05, 0.2])
def test_two_daemons_that_read_the_accounts_count_are_never_refused(round_trip: float) -> None:
    outcome = share_one_account(2, round_trip=round_trip)
    assert outcome.refused == [0, 0]
    assert outcome.budget_used > 0.85, outcome  # and they still spend the budget
    fast, slow = max(outcome.admitted), min(outcome.admitted)
    assert fast <= 2 * slow, outcome.admitted  # within 2x of each other's throughput


@pytest.mark.parametrize("daemons", [1, 2, 3])
def test_daemons_at_the_default_budget_are_never_refused(daemons: int) -> None:
    outcome = share_one_account(daemons, rate=1200, per=300.0, seconds=900.0)
    assert sum(outcome.refused) == 0, outcome
    assert outcome.budget_used > 0.9, outcome


def test_one_daemon_alone_is_never_refused_even_without_the_count() -> None:
    outcome = share_one_account(1, headers=False)
    assert outcome.refused == [0]
    assert outcome.budget_used > 0.9


@pytest.mark.parametrize("daemons", [2, 3])
def test_daemons_told_only_by_429s_settle_well_under_the_issues_fifteen_percent(daemons: int) -> None:
    outcome = share_one_account(daemons, headers=False)
    assert outcome.share_refused < 0.05, outcome
    assert outcome.budget_used > 0.85, outcome
