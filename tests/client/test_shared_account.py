"""Two processes on one account: separate limiters that read the rate-limit headers draw no 429 at all, and
limiters that only see 429s halve their rate on each and settle under the budget.

Each "process" is a D1Client with its own RateLimiter, sized to the whole account as a user would size it
(they cannot share an instance across processes). Both talk to one real emulator, in process, whose rate
limit is the account's. Time is one fake clock shared by the emulator and the limiters, and a small
scheduler lets whichever client its own limiter releases first send next, so the run is exact and instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d1sync.client import D1Client, RateLimiter, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.app import create_app
from d1sync.emulator.testing import SyncASGITransport
from d1sync.errors import RateLimitedError

from ..support import IN_PROCESS_BASE, TOKEN, FakeClock

RATE, PER = 120, 30.0  # the account's limit, scaled down from 1,200 per 300 s; limiters get burst RATE // 40


class IgnoresHeaders(RateLimiter):
    """A limiter that never hears what the server reports: answers that carry no rate-limit headers."""

    def observe(self, remaining: float, reset: float | None = None, *, ticket: int | None = None) -> None:
        pass


class Deaf(IgnoresHeaders):
    """No headers and no slowing down on a 429: only the pause ``retry-after`` asks for (d1sync before)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, adaptive=False, **kwargs)


@dataclass
class Outcome:
    successes: list[int]
    refused: list[int]
    """429s each client raised."""
    rejections: int
    """429s the emulator counted."""


def share_one_account(tmp_path: Path, limiter: type[RateLimiter], *, windows: int = 5) -> Outcome:
    """Client 0 drains from the start; client 1 starts half a window later; both run for ``windows`` windows."""
    clock = FakeClock(0.0)  # a small clock: at epoch-sized values a float cannot hold the limiter's tiny waits
    app = create_app(tmp_path / limiter.__name__, token=TOKEN, rate_limit=(RATE, PER), clock=clock)
    transport = SyncASGITransport(app)
    limiters = [limiter(RATE, PER, clock=clock, sleep=clock.advance) for _ in range(2)]
    clients = [
        D1Client(
            account_id="acct",
            database_id=DEFAULT_DATABASE_ID,
            api_token=TOKEN,
            base_url=IN_PROCESS_BASE,
            transport=transport,
            rate_limiter=limiters[i],
            retry=RetryPolicy(max_retries=0),  # count every 429 the account sees; a retry would only add more
            sleep=clock.advance,
        )
        for i in range(2)
    ]
    starts = [clock.now, clock.now + PER / 2]
    end = clock.now + windows * PER
    outcome = Outcome([0, 0], [0, 0], 0)
    try:
        while True:
            ready, i = min((max(starts[i], clock.now + limiters[i].wait_time()), i) for i in range(2))
            if ready > end:
                break
            clock.now = max(clock.now, ready)
            try:
                clients[i].prepare("SELECT 1").all()
                outcome.successes[i] += 1
            except RateLimitedError:
                outcome.refused[i] += 1
    finally:
        for client in clients:
            client.close()
        transport.close()
        app.state.engine.close()
    outcome.rejections = int(app.state.faults.stats["rate_limit_rejections"])
    return outcome


def test_reading_the_headers_the_pair_draws_no_429_and_keeps_the_budget(tmp_path: Path) -> None:
    deaf = share_one_account(tmp_path, Deaf)
    heard = share_one_account(tmp_path, RateLimiter)

    # Honest counting: every 429 the emulator sent reached a client as a RateLimitedError.
    assert sum(deaf.refused) == deaf.rejections and sum(heard.refused) == heard.rejections
    # Together the pair asks for twice the account's budget, so without the headers it is refused a lot.
    assert deaf.rejections > RATE / 4
    # Reading the headers, each leaves a reserve of the account's count to the other and paces the rest
    # over the window, so neither ever races the other for the last request (98 429s before the reserve,
    # 43 with the bare count, 0 now).
    assert heard.rejections == 0
    # The budget is still used (5 windows of 120, plus the first window's burst), and by both processes.
    assert sum(heard.successes) >= 0.95 * sum(deaf.successes)
    assert min(heard.successes) > RATE


def test_without_headers_halving_on_each_429_keeps_the_pair_under_15_percent_and_fair(tmp_path: Path) -> None:
    deaf = share_one_account(tmp_path, Deaf)
    adaptive = share_one_account(tmp_path, IgnoresHeaders)

    def refused_share(outcome: Outcome) -> float:
        return outcome.rejections / (sum(outcome.successes) + outcome.rejections)

    assert refused_share(adaptive) < 0.15 and adaptive.rejections < deaf.rejections / 2
    assert sum(adaptive.successes) >= 0.9 * sum(deaf.successes)
    # The one that started half a window later is not starved by the one that had the budget first.
    assert max(adaptive.successes) <= 2 * min(adaptive.successes)
