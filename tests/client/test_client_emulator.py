"""The client against the real emulator: in process (ASGI transports) and over a loopback socket (uvicorn)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from d1sync.client import AsyncD1Client, D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.app import create_app
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.emulator.testing import SyncASGITransport
from d1sync.errors import (
    AuthError,
    DatabaseNotFoundError,
    NetworkError,
    RateLimitedError,
    RequestTimeoutError,
    SQLError,
    TransientError,
)

TOKEN = "emulator-token-b3c1"
IN_PROCESS = "http://emulator/client/v4"

SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, big INTEGER, data BLOB, flag INTEGER, note TEXT)"


class Emulator:
    """One emulator app reachable through one seam; makes sync or async clients for it."""

    def __init__(self, app: Starlette, seam: str, api_base: str) -> None:
        self.app = app
        self.seam = seam
        self.api_base = api_base
        self.sleeps: list[float] = []

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "account_id": "acct",
            "database_id": DEFAULT_DATABASE_ID,
            "api_token": TOKEN,
            "base_url": self.api_base,
        }
        options.update(kwargs)
        return options

    def client(self, **kwargs: Any) -> D1Client:
        kwargs.setdefault("sleep", self.sleeps.append)
        if self.seam == "in-process":
            kwargs.setdefault("transport", SyncASGITransport(self.app))
        return D1Client(**self._options(kwargs))

    def async_client(self, **kwargs: Any) -> AsyncD1Client:
        async def record(seconds: float) -> None:
            self.sleeps.append(seconds)

        kwargs.setdefault("sleep", record)
        if self.seam == "in-process":
            kwargs.setdefault("transport", httpx.ASGITransport(app=self.app))
        return AsyncD1Client(**self._options(kwargs))

    def faults(self, **changes: Any) -> None:
        self.app.state.faults.update(**changes)

    @property
    def stats(self) -> dict[str, float]:
        return dict(self.app.state.faults.stats)


@contextmanager
def running(seam: str, data_dir: Path, *, auto_create: bool = False) -> Iterator[Emulator]:
    if seam == "in-process":
        app = create_app(data_dir, token=TOKEN, faults=FaultConfig(seed=1), auto_create=auto_create)
        try:
            yield Emulator(app, seam, IN_PROCESS)
        finally:
            app.state.engine.close()
    else:
        with EmulatorServer(data_dir, token=TOKEN, faults=FaultConfig(seed=1), auto_create=auto_create) as server:
            yield Emulator(server.app, seam, server.api_base)


SEAMS = ["in-process", "socket"]


@pytest.fixture(params=SEAMS)
def emulator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Emulator]:
    with running(request.param, tmp_path) as emulator:
        yield emulator


def test_round_trip_keeps_big_ints_blobs_and_bools_exact(emulator: Emulator) -> None:
    big = 2**62 + 1
    with emulator.client() as db:
        assert db.exec(SCHEMA).count == 1
        inserted = (
            db.prepare("INSERT INTO t (big, data, flag, note) VALUES (?, unhex(?), ?, ?)")
            .bind(big, b"\x00\x01\xfe", True, "héllo")
            .run()
        )
        assert inserted.meta.changes == 1 and inserted.meta.last_row_id == 1
        row = db.prepare("SELECT CAST(big AS TEXT) AS big, data, flag, note FROM t").first()
        assert row == {"big": str(big), "data": b"\x00\x01\xfe", "flag": 1, "note": "héllo"}
        assert int(row["big"]) == big
        assert db.prepare("SELECT id, note FROM t WHERE id = ?").bind(99).raw(column_names=True) == [["id", "note"]]


def test_sql_error_becomes_sql_error_with_the_statement(emulator: Emulator) -> None:
    with emulator.client() as db, pytest.raises(SQLError) as info:
        db.prepare("SELECT * FROM missing_table").all()
    error = info.value
    assert (error.code, error.status, error.statement) == (7500, 400, "SELECT * FROM missing_table")
    assert "no such table" in error.message and not error.retryable


def test_a_failing_batch_applies_nothing(emulator: Emulator) -> None:
    with emulator.client() as db:
        db.exec("CREATE TABLE k (id INTEGER PRIMARY KEY)")
        with pytest.raises(SQLError, match="UNIQUE"):
            db.batch(
                [
                    db.prepare("INSERT INTO k VALUES (?)").bind(1),
                    db.prepare("INSERT INTO k VALUES (?)").bind(1),
                ]
            )
        assert db.prepare("SELECT count(*) AS n FROM k").first("n") == 0


def test_a_read_is_retried_through_an_injected_503(emulator: Emulator) -> None:
    emulator.faults(error_rate=1.0)

    def heal(seconds: float) -> None:
        emulator.sleeps.append(seconds)
        emulator.faults(error_rate=0.0)

    with emulator.client(sleep=heal) as db:
        assert db.prepare("SELECT 41 + 1 AS answer").first("answer") == 42
    assert len(emulator.sleeps) == 1
    assert emulator.stats["error_503"] + emulator.stats["error_500"] == 1


def test_an_injected_429_is_waited_out_for_its_retry_after(emulator: Emulator) -> None:
    emulator.faults(rate_limit_rate=1.0, retry_after=4)

    def heal(seconds: float) -> None:
        emulator.sleeps.append(seconds)
        emulator.faults(rate_limit_rate=0.0)

    with emulator.client(sleep=heal) as db:
        assert db.prepare("SELECT 1 AS one").first("one") == 1
    assert emulator.sleeps == [4.0]


def test_a_write_is_not_retried_through_an_injected_fault(emulator: Emulator) -> None:
    with emulator.client() as db:
        db.exec("CREATE TABLE w (a)")
        emulator.faults(html_rate=1.0)
        with pytest.raises(TransientError, match="HTTP 504 with an HTML body"):
            db.prepare("INSERT INTO w VALUES (1)").run()
        emulator.faults(html_rate=0.0)
        assert db.prepare("SELECT count(*) AS n FROM w").first("n") == 0
    assert emulator.sleeps == []


def test_a_lost_response_hides_an_applied_write(emulator: Emulator) -> None:
    with emulator.client() as db:
        db.exec("CREATE TABLE w (a)")
        emulator.faults(lost_response_rate=1.0, lost_response_mode="html")
        with pytest.raises(TransientError, match="HTTP 502"):
            db.prepare("INSERT INTO w VALUES (1)").run()
        emulator.faults(lost_response_rate=0.0)
        # Applied although the client saw an error: why unmarked writes are never retried.
        assert db.prepare("SELECT count(*) AS n FROM w").first("n") == 1


def test_unknown_database_and_wrong_token(emulator: Emulator) -> None:
    with emulator.client(database_id=str(uuid.uuid4())) as db, pytest.raises(DatabaseNotFoundError) as info:
        db.prepare("SELECT 1").all()
    assert (info.value.code, info.value.status) == (7404, 404)
    with emulator.client(api_token="wrong-token") as db, pytest.raises(AuthError) as auth:
        db.prepare("SELECT 1").all()
    assert "wrong-token" not in str(auth.value)


@pytest.mark.parametrize("seam", SEAMS)
def test_database_management_round_trip(seam: str, tmp_path: Path) -> None:
    # auto_create: without it the emulator answers 7404 for a database it has just created through the API.
    with running(seam, tmp_path, auto_create=True) as emulator, emulator.client(database_id=None) as db:
        created = db.create_database("notes")
        database_id = created["uuid"]
        assert any(d["uuid"] == database_id for d in db.list_databases())
        assert db.get_database(database_id)["name"] == "notes"
        db.delete_database(database_id)
        with pytest.raises(DatabaseNotFoundError):
            db.get_database(database_id)


def test_async_client_round_trip_error_and_retry(emulator: Emulator) -> None:
    async def main() -> None:
        async with emulator.async_client() as db:
            await db.exec("CREATE TABLE a (id INTEGER PRIMARY KEY, data BLOB)")
            await db.prepare("INSERT INTO a (data) VALUES (unhex(?))").bind(b"\xca\xfe").run()
            assert await db.prepare("SELECT data FROM a").first("data") == b"\xca\xfe"
            with pytest.raises(SQLError, match="no such column"):
                await db.prepare("SELECT nope FROM a").all()
            emulator.faults(error_rate=1.0)
            with pytest.raises(TransientError):
                await db.prepare("SELECT 1").all()
            assert len(emulator.sleeps) == 3  # max_retries=3, all failed
            emulator.faults(error_rate=0.0)
            (result,) = await db.batch([db.prepare("SELECT count(*) AS n FROM a")])
            assert result.results == [{"n": 1}]

    asyncio.run(main())


def test_a_held_response_times_out_and_the_write_is_not_retried(tmp_path: Path) -> None:
    faults = FaultConfig(timeout_rate=1.0, timeout_delay=2.0, timeout_action="drop", seed=3)
    with EmulatorServer(tmp_path, token=TOKEN, faults=faults) as server:
        with D1Client(
            account_id="acct",
            database_id=DEFAULT_DATABASE_ID,
            api_token=TOKEN,
            base_url=server.api_base,
            timeout=0.3,
            sleep=lambda s: pytest.fail("a timed-out write must not be retried"),
        ) as db:
            with pytest.raises(RequestTimeoutError, match="may still have been applied"):
                db.prepare("CREATE TABLE held (a)").run()
        server.app.state.faults.update(timeout_rate=0.0)
        # Applied despite the timeout (looked at through a patient client: a loaded machine may have timed
        # the first one out before the emulator applied the write).
        with D1Client(
            account_id="acct", database_id=DEFAULT_DATABASE_ID, api_token=TOKEN, base_url=server.api_base
        ) as patient:
            deadline = time.monotonic() + 30
            while not patient.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'held'").first("n"):
                assert time.monotonic() < deadline, "the held write was never applied"
                time.sleep(0.05)
            assert patient.prepare("SELECT count(*) AS n FROM held").first("n") == 0


def test_a_dropped_connection_is_a_network_error(tmp_path: Path) -> None:
    faults = FaultConfig(lost_response_rate=1.0, lost_response_mode="drop", seed=3)
    with EmulatorServer(tmp_path, token=TOKEN, faults=faults) as server:
        with D1Client(
            account_id="acct", database_id=DEFAULT_DATABASE_ID, api_token=TOKEN, base_url=server.api_base
        ) as db:
            with pytest.raises(NetworkError):
                db.prepare("CREATE TABLE dropped (a)").run()


def test_the_emulator_rate_limit_is_reported_with_retry_after(tmp_path: Path) -> None:
    app = create_app(tmp_path, token=TOKEN, rate_limit=(2, 60.0))
    with D1Client(
        account_id="acct",
        database_id=DEFAULT_DATABASE_ID,
        api_token=TOKEN,
        base_url=IN_PROCESS,
        transport=SyncASGITransport(app),
        retry=RetryPolicy(max_retries=0),
    ) as db:
        db.prepare("SELECT 1").all()
        db.prepare("SELECT 1").all()
        with pytest.raises(RateLimitedError) as info:
            db.prepare("SELECT 1").all()
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 60
    app.state.engine.close()
