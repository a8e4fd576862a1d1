"""With its rate limit on, the emulator reports the window on every authenticated response, not only on a 429."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer

from .conftest import ACCOUNTS, AUTH, TOKEN, Api, AppFactory, query_path
from .test_emulator_faults import FakeTime

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def window(response: httpx.Response) -> tuple[int, int, int]:
    """(limit, remaining, reset) from the response's headers."""
    limit, remaining, reset = (int(response.headers[name]) for name in HEADERS)
    return limit, remaining, reset


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def limited(make_app: AppFactory, connect: Callable[..., Api], fake_time: FakeTime) -> Callable[..., Api]:
    """An Api on an app whose rate limit is ``(requests, window)``, counted from a fresh window."""

    def factory(requests: int, seconds: float) -> Api:
        app = make_app(clock=fake_time.clock, sleep=fake_time.sleep, rate_limit=(requests, seconds))
        return connect(app)

    return factory


def test_remaining_counts_down_on_successes_and_the_429_says_zero(limited: Callable[..., Api]) -> None:
    api = limited(3, 60.0)
    answers = [api.sql("SELECT 1") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [window(r)[:2] for r in answers] == [(3, 2), (3, 1), (3, 0), (3, 0)]
    assert answers[3].headers["retry-after"] == answers[3].headers["x-ratelimit-reset"]


def test_reset_is_the_wait_until_the_oldest_request_leaves_the_window(
    limited: Callable[..., Api], fake_time: FakeTime
) -> None:
    api = limited(3, 60.0)
    assert window(api.sql("SELECT 1")) == (3, 2, 60)
    fake_time.now += 20
    assert window(api.sql("SELECT 1")) == (3, 1, 40)
    fake_time.now += 0.5
    assert window(api.sql("SELECT 1")) == (3, 0, 40)  # whole seconds, rounded up as retry-after is
    fake_time.now += 39.5
    freed = api.sql("SELECT 1")
    assert freed.status_code == 200 and window(freed) == (3, 0, 20)  # the first left; the second leaves next


def test_every_route_and_every_answer_carries_the_window(limited: Callable[..., Api]) -> None:
    api = limited(100, 60.0)
    api.app.state.faults.configure(FaultConfig(error_rate=1.0, seed=1))
    answers = {
        "injected fault": api.sql("SELECT 1"),
        "list": api.http.get(ACCOUNTS, headers=AUTH),
        "create": api.http.post(ACCOUNTS, json={"name": "reported"}, headers=AUTH),
        "bad id": api.http.post(query_path("not-a-uuid"), json={"sql": "SELECT 1"}, headers=AUTH),
        "no route": api.http.get("/client/v4/nowhere", headers=AUTH),
    }
    api.app.state.faults.configure(None)
    answers["sql error"] = api.sql("SELECT * FROM missing")
    answers["success"] = api.sql("SELECT 1")
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses.pop("injected fault") in (500, 503)
    assert statuses == {"list": 200, "create": 200, "bad id": 400, "no route": 404, "sql error": 400, "success": 200}
    assert [window(r)[1] for r in answers.values()] == [99, 98, 97, 96, 95, 94, 93]


def test_an_unauthenticated_request_is_neither_counted_nor_told_the_window(limited: Callable[..., Api]) -> None:
    api = limited(3, 60.0)
    refused = api.http.post(query_path(), json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and not any(name in refused.headers for name in HEADERS)
    assert window(api.sql("SELECT 1"))[1] == 2


def test_without_a_rate_limit_no_window_is_reported(api: Api) -> None:
    response = api.sql("SELECT 1")
    assert response.status_code == 200 and not any(name in response.headers for name in HEADERS)


def test_a_limit_set_at_runtime_reports_from_then_on(api: Api) -> None:
    api.app.state.faults.set_rate_limit((5, 10.0))
    assert window(api.sql("SELECT 1"))[:2] == (5, 4)
    api.app.state.faults.set_rate_limit(None)
    assert "x-ratelimit-remaining" not in api.sql("SELECT 1").headers


def test_the_window_is_reported_over_a_real_socket(tmp_path: Path) -> None:
    with (
        EmulatorServer(tmp_path / "data", token=TOKEN, rate_limit=(2, 60.0)) as srv,
        httpx.Client(base_url=srv.api_base, headers=AUTH) as http,
    ):
        path = query_path().removeprefix("/client/v4")
        first, second, third = (http.post(path, json={"sql": "SELECT 1"}) for _ in range(3))
        assert [r.status_code for r in (first, second, third)] == [200, 200, 429]
        assert [int(r.headers["x-ratelimit-remaining"]) for r in (first, second, third)] == [1, 0, 0]
        assert 1 <= int(second.headers["x-ratelimit-reset"]) <= 60


def test_without_the_count_a_client_learns_of_the_limit_only_from_the_429(
    make_app: AppFactory, connect: Callable[..., Api]
) -> None:
    """``--no-rate-limit-headers``: answers that carry no count, so limiters can be measured on 429s alone."""
    api = connect(make_app(rate_limit=(2, 60.0), faults=FaultConfig(rate_limit_headers=False)))
    answers = [api.sql("SELECT 1") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert not any(name in r.headers for r in answers for name in HEADERS)
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60
    assert api.app.state.faults.stats["rate_limit_rejections"] == 1
