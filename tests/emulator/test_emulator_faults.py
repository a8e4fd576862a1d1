"""Injected faults and the rate limit: deterministic per seed, counted, changeable at runtime."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from d1sync.emulator.faults import FaultConfig, FaultInjector, RateLimitWindow
from d1sync.emulator.server import EmulatorServer

from .conftest import ACCOUNTS, AUTH, TOKEN, Api, AppFactory


class FakeTime:
    """An injectable clock and async sleep: sleeping advances the clock, never the wall."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def count(api: Api) -> int:
    return int(api.ok("SELECT count(*) AS n FROM t")[0]["n"])


def outcome(api: Api, value: int) -> str:
    try:
        response = api.sql("INSERT INTO t VALUES (?)", value)
    except httpx.RemoteProtocolError:
        return "dropped"
    return str(response.status_code)


MIXED = FaultConfig(
    error_rate=0.15,
    rate_limit_rate=0.1,
    timeout_rate=0.1,
    html_rate=0.1,
    lost_response_rate=0.15,
    timeout_delay=40.0,
    timeout_action="respond",
)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def faulty(make_app: AppFactory, connect: Callable[..., Api], fake_time: FakeTime) -> Callable[..., Api]:
    """An Api whose app has table ``t`` and then the given faults switched on."""

    def factory(config: FaultConfig, **kwargs: object) -> Api:
        app = make_app(clock=fake_time.clock, sleep=fake_time.sleep, **kwargs)
        api = connect(app)
        api.ok("CREATE TABLE t (x)")
        app.state.faults.configure(config)
        app.state.faults.reset_stats()
        return api

    return factory


def test_the_same_seed_gives_the_same_faults_and_another_seed_others(faulty: Callable[..., Api]) -> None:
    runs = []
    for seed in (11, 11, 12):
        api = faulty(dataclasses.replace(MIXED, seed=seed))
        runs.append([outcome(api, i) for i in range(80)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert {"200", "500", "503", "429", "504", "502", "dropped"} <= set(runs[0])


def test_every_injected_fault_is_counted(faulty: Callable[..., Api]) -> None:
    api = faulty(dataclasses.replace(MIXED, seed=3))
    outcomes = [outcome(api, i) for i in range(80)]
    stats = api.app.state.faults.stats
    assert stats["requests"] == 80
    assert stats["error_503"] == outcomes.count("503") and stats["error_500"] == outcomes.count("500")
    assert stats["rate_limited"] == outcomes.count("429") and stats["html_504"] == outcomes.count("504")
    assert stats["lost_502"] == outcomes.count("502") and stats["lost_drop"] == outcomes.count("dropped")
    assert stats["timeout"] > 0


def test_an_injected_server_error_applies_nothing(faulty: Callable[..., Api]) -> None:
    api = faulty(FaultConfig(error_rate=1.0, seed=1))
    responses = [api.sql("INSERT INTO t VALUES (1)") for _ in range(12)]
    assert {r.status_code for r in responses} == {500, 503}
    for response in responses:
        status, code, message = api.error(response)
        assert code == 7500
        assert message.startswith("internal error; reference = ") if status == 500 else "overloaded" in message
    api.app.state.faults.update(error_rate=0.0)
    assert count(api) == 0


def test_an_injected_429_has_code_971_and_retry_after_and_applies_nothing(faulty: Callable[..., Api]) -> None:
    api = faulty(FaultConfig(rate_limit_rate=1.0, retry_after=7))
    response = api.sql("INSERT INTO t VALUES (1)")
    assert api.error(response)[:2] == (429, 971)
    assert response.headers["retry-after"] == "7"
    api.app.state.faults.configure(None)
    assert count(api) == 0


def test_an_injected_504_is_an_html_page_and_applies_nothing(faulty: Callable[..., Api]) -> None:
    api = faulty(FaultConfig(html_rate=1.0))
    response = api.sql("INSERT INTO t VALUES (1)")
    assert response.status_code == 504
    assert response.headers["content-type"].startswith("text/html") and "<html>" in response.text
    api.app.state.faults.configure(None)
    assert count(api) == 0


def test_a_lost_response_as_502_html_was_applied(faulty: Callable[..., Api]) -> None:
    api = faulty(FaultConfig(lost_response_rate=1.0, lost_response_mode="html"))
    response = api.sql("INSERT INTO t VALUES (1)")
    assert response.status_code == 502 and "Bad Gateway" in response.text
    api.app.state.faults.configure(None)
    assert count(api) == 1


def test_a_lost_response_as_a_dropped_connection_was_applied(faulty: Callable[..., Api]) -> None:
    api = faulty(FaultConfig(lost_response_rate=1.0, lost_response_mode="drop"))
    with pytest.raises(httpx.RemoteProtocolError):
        api.sql("INSERT INTO t VALUES (1)")
    api.app.state.faults.configure(None)
    assert count(api) == 1


def test_a_timeout_is_applied_held_for_the_delay_then_dropped(faulty: Callable[..., Api], fake_time: FakeTime) -> None:
    api = faulty(FaultConfig(timeout_rate=1.0, timeout_delay=45.0))
    with pytest.raises(httpx.RemoteProtocolError):
        api.sql("INSERT INTO t VALUES (1)")
    assert fake_time.slept == [45.0]
    api.app.state.faults.configure(None)
    assert count(api) == 1


def test_a_timeout_can_answer_normally_after_the_hold(faulty: Callable[..., Api], fake_time: FakeTime) -> None:
    api = faulty(FaultConfig(timeout_rate=1.0, timeout_delay=45.0, timeout_action="respond"))
    assert api.sql("INSERT INTO t VALUES (1)").status_code == 200
    assert fake_time.slept == [45.0]


def test_latency_is_added_to_every_query_request(faulty: Callable[..., Api], fake_time: FakeTime) -> None:
    api = faulty(FaultConfig(latency=0.05))
    for _ in range(3):
        api.sql("SELECT 1")
    api.sql("SELECT 1", raw=True)
    assert fake_time.slept == [0.05] * 4
    assert api.app.state.faults.stats["latency_seconds"] == pytest.approx(0.2)


def test_faults_spare_the_database_management_endpoints(faulty: Callable[..., Api], fake_time: FakeTime) -> None:
    api = faulty(FaultConfig(error_rate=1.0, latency=1.0))
    for _ in range(5):
        assert api.http.get(ACCOUNTS, headers=AUTH).status_code == 200
    assert fake_time.slept == []


def test_faults_can_be_switched_off_and_on_at_runtime(faulty: Callable[..., Api]) -> None:
    api = faulty(FaultConfig(html_rate=1.0))
    assert api.sql("SELECT 1").status_code == 504
    api.app.state.faults.update(html_rate=0.0)
    assert api.sql("SELECT 1").status_code == 200
    api.app.state.faults.update(html_rate=1.0)
    assert api.sql("SELECT 1").status_code == 504


def test_the_rate_limit_answers_971_with_retry_after_until_the_window_passes(
    faulty: Callable[..., Api], fake_time: FakeTime
) -> None:
    api = faulty(FaultConfig(), rate_limit=(3, 60.0))
    api.app.state.faults.set_rate_limit((3, 60.0))  # a fresh window after the setup
    assert [api.sql("SELECT 1").status_code for _ in range(3)] == [200, 200, 200]
    fake_time.now += 20
    limited = api.sql("SELECT 1")
    assert api.error(limited)[:2] == (429, 971)
    assert limited.headers["retry-after"] == "40"
    assert api.error(api.http.get(ACCOUNTS, headers=AUTH))[:2] == (429, 971)
    fake_time.now += 40
    assert api.sql("SELECT 1").status_code == 200
    assert api.app.state.faults.stats["rate_limit_rejections"] == 2
    api.app.state.faults.set_rate_limit(None)
    assert all(api.sql("SELECT 1").status_code == 200 for _ in range(10))


def test_a_rejected_request_does_not_use_up_the_window() -> None:
    now = [0.0]
    window = RateLimitWindow(2, 10.0, clock=lambda: now[0])
    assert [window.acquire() for _ in range(4)] == [None, None, 10, 10]
    now[0] = 10.0
    assert window.acquire() is None


@pytest.mark.parametrize(
    "changes",
    [{"error_rate": 0.6, "html_rate": 0.5}, {"error_rate": -0.1}, {"latency": -1.0}, {"timeout_action": "wait"}],
)
def test_invalid_fault_configurations_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**changes)  # type: ignore[arg-type]


def test_an_injector_without_faults_never_moves_its_generator() -> None:
    injector = FaultInjector(FaultConfig(seed=5))
    for _ in range(10):
        injector.plan()
    injector.update(error_rate=1.0)
    fresh = FaultInjector(FaultConfig(seed=5, error_rate=1.0))
    assert [injector.plan().fault for _ in range(20)] == [fresh.plan().fault for _ in range(20)]


def test_a_late_request_is_dropped_then_applied_after_a_newer_one(tmp_path: Path) -> None:
    """D1 promises no order between requests: the late fault applies a request after the client gave up on
    it and sent another, so old state lands over new (what the sync engine must guard against)."""
    with EmulatorServer(tmp_path, token=TOKEN, faults=FaultConfig(), auto_create=True) as server:
        api = Api(httpx.Client(base_url=server.url, timeout=5.0), server.app)
        with api.http:
            api.ok("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")
            server.app.state.faults.configure(
                FaultConfig(late_rate=1.0, late_delay=3.0)
            )  # after the newer one, even on a loaded machine
            with pytest.raises(httpx.RemoteProtocolError):
                api.sql("INSERT INTO kv VALUES (1, 'old') ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            server.app.state.faults.update(late_rate=0.0)
            api.ok("INSERT INTO kv VALUES (1, 'new') ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            assert api.ok("SELECT v FROM kv") == [{"v": "new"}]
            deadline = time.monotonic() + 30  # generous: the machine is shared
            while server.app.state.faults.stats["late_applied"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert api.ok("SELECT v FROM kv") == [{"v": "old"}]
            assert server.app.state.faults.stats["late"] == 1


def test_with_a_block_an_overrun_refuses_every_request_until_the_block_ends(
    faulty: Callable[..., Api], fake_time: FakeTime
) -> None:
    """Cloudflare answers an overrun with minutes of 429s for the whole account, not one refusal."""
    api = faulty(FaultConfig(block_seconds=300.0), rate_limit=(3, 60.0))
    api.app.state.faults.set_rate_limit((3, 60.0))
    assert [api.sql("SELECT 1").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.sql("SELECT 1")
    assert api.error(refused)[:2] == (429, 971) and refused.headers["retry-after"] == "300"
    fake_time.now += 120  # the window has passed, the block has not
    blocked = api.sql("SELECT 1")
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "180"
    assert blocked.headers["x-ratelimit-remaining"] == "0"
    fake_time.now += 180
    assert api.sql("SELECT 1").status_code == 200
    stats = api.app.state.faults.stats
    assert (stats["rate_limit_rejections"], stats["rate_limit_blocked"]) == (1, 1)


@pytest.mark.parametrize(("asked", "served"), [("1", 10), ("5", 10), ("50", 50), ("20000", 10_000)])
def test_list_pages_hold_between_10_and_10000_databases_as_on_d1(
    make_app: AppFactory, connect: Callable[..., Api], asked: str, served: int
) -> None:
    api = connect(make_app())
    response = api.http.get(ACCOUNTS, params={"per_page": asked}, headers=AUTH)
    assert response.json()["result_info"]["per_page"] == served
