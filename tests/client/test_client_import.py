"""D1's import flow in the client (``import_sql``, ``poll_import``): the requests wrangler sends, each answer
checked before it is believed, the upload outside the API (no token, no budget), and a crashed caller that
polls its import again instead of running it twice."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from d1sync.client import AsyncD1Client, D1Client
from d1sync.client.imports import ImportHandle
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer
from d1sync.errors import SQLError, TransientError, UnprovenResultError

from ..support import TOKEN as EMULATOR_TOKEN
from ..support import client_at
from .scripted import DATABASE, TOKEN, ScriptedD1, envelope

SEED = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);\nINSERT INTO t VALUES (1, 'a'), (2, x'00ff');\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "data", token=EMULATOR_TOKEN) as srv:
        yield srv


def client(server: EmulatorServer) -> D1Client:
    return client_at(server.api_base, DEFAULT_DATABASE_ID)


def test_a_file_is_imported_and_every_step_is_reported(server: EmulatorServer) -> None:
    seen: list[ImportHandle] = []
    with client(server) as db:
        result = db.import_sql(SEED, on_progress=seen.append)
        rows = db.prepare("SELECT id, typeof(v) AS t FROM t ORDER BY id").all().results
    assert result.num_queries == 2 and result.final_bookmark and result.meta.rows_written >= 2
    assert rows == [{"id": 1, "t": "text"}, {"id": 2, "t": "blob"}]
    assert [h.stage for h in seen] == ["init", "uploaded", "ingesting", "complete"]
    etag = hashlib.md5(SEED.encode()).hexdigest()
    assert {h.etag for h in seen} == {etag} and seen[0].filename == result.handle.filename


def test_a_failing_file_raises_sqlerror_and_applies_nothing(server: EmulatorServer) -> None:
    with client(server) as db:
        db.exec("CREATE TABLE t (v)")
        with pytest.raises(SQLError, match="no such table: nope"):
            db.import_sql("INSERT INTO t VALUES (1);\nINSERT INTO nope VALUES (1);\n")
        assert db.prepare("SELECT count(*) AS n FROM t").first("n") == 0


def test_a_caller_that_crashed_after_ingest_polls_and_gets_the_result_without_importing_again(
    server: EmulatorServer,
) -> None:
    saved: list[dict[str, object]] = []
    with client(server) as db:
        db.import_sql(SEED, on_progress=lambda h: saved.append(h.to_dict()))
        # The process "crashed" once it had recorded "ingesting": a new one reads that record and polls.
        record = next(r for r in saved if r["stage"] == "ingesting")
        result = db.poll_import(ImportHandle.from_dict(json.loads(json.dumps(record))))
        assert result.num_queries == 2 and result.handle.stage == "complete"
        assert db.prepare("SELECT count(*) AS n FROM t").first("n") == 2


def test_a_file_path_is_streamed_from_disk(server: EmulatorServer, tmp_path: Path) -> None:
    (tmp_path / "seed.sql").write_text(SEED)
    with client(server) as db:
        result = db.import_sql(tmp_path / "seed.sql")
        assert db.prepare("SELECT count(*) AS n FROM t").first("n") == 2
    assert result.handle.etag == hashlib.md5(SEED.encode()).hexdigest()


def test_the_async_client_imports_bytes_and_files_too(server: EmulatorServer, tmp_path: Path) -> None:
    (tmp_path / "more.sql").write_text("INSERT INTO t VALUES (3, 'c');\n")

    async def run() -> int:
        async with AsyncD1Client(
            account_id="a", database_id=DEFAULT_DATABASE_ID, api_token=EMULATOR_TOKEN, base_url=server.api_base
        ) as db:
            await db.import_sql(SEED.encode())
            await db.import_sql(tmp_path / "more.sql")
            return int(await db.prepare("SELECT count(*) AS n FROM t").first("n"))

    assert asyncio.run(run()) == 3


# -- what wrangler sends, and answers that prove nothing (scripted) ---------------------------------------------

UPLOAD = "http://bucket.example/upload/abc"


def init_answer() -> httpx.Response:
    return httpx.Response(200, content=envelope({"filename": "f.sql", "upload_url": UPLOAD}))


def uploaded(etag: str) -> httpx.Response:
    return httpx.Response(200, headers={"etag": f'"{etag}"'})


def complete(**result: object) -> httpx.Response:
    body = {"success": True, "status": "complete", "at_bookmark": "b2", "messages": [], "result": result}
    return httpx.Response(200, content=envelope(body))


def test_the_requests_are_wranglers_and_the_upload_carries_no_token() -> None:
    etag = hashlib.md5(b"SELECT 1;").hexdigest()
    running = httpx.Response(200, content=envelope({"success": True, "status": "active", "at_bookmark": "b1"}))
    d1 = ScriptedD1(init_answer(), uploaded(etag), running, running, complete(num_queries=1, final_bookmark="b2"))
    with d1.client() as db:
        result = db.import_sql("SELECT 1;", poll_interval=0.25)
    assert result.final_bookmark == "b2" and d1.sleeps == [0.25]  # polled at once, then every interval
    init, put, ingest, poll, _ = d1.requests
    assert init.url.path.endswith(f"/d1/database/{DATABASE}/import")
    assert json.loads(init.content) == {"action": "init", "etag": etag}
    assert put.method == "PUT" and str(put.url) == UPLOAD and put.content == b"SELECT 1;"
    assert "authorization" not in put.headers and TOKEN not in str(put.headers)
    assert put.headers["content-length"] == "9"
    assert json.loads(ingest.content) == {"action": "ingest", "filename": "f.sql", "etag": etag}
    assert json.loads(poll.content) == {"action": "poll", "current_bookmark": "b1"}


@pytest.mark.parametrize(
    "answer",
    [
        {},  # neither an upload URL nor an import
        {"upload_url": "ftp://x/y", "filename": "f.sql"},  # not http(s)
        {"upload_url": UPLOAD},  # no filename
        {"status": "complete", "success": True},  # complete without its result
        {"status": "complete", "success": True, "result": {"num_queries": "2", "final_bookmark": "b"}},
    ],
)
def test_an_init_answer_that_proves_nothing_is_never_taken_as_success(answer: dict[str, object]) -> None:
    d1 = ScriptedD1(httpx.Response(200, content=envelope(answer)))
    with d1.client() as db, pytest.raises(UnprovenResultError):
        db.import_sql("SELECT 1;")
    assert len(d1.requests) == 1  # init is never resent: for an uploaded file it starts the import


def test_an_upload_whose_etag_differs_is_retried_then_refused() -> None:
    d1 = ScriptedD1(init_answer(), uploaded("0" * 32))
    with d1.client(max_retries=2) as db, pytest.raises(UnprovenResultError, match="did not arrive whole"):
        db.import_sql("SELECT 1;")
    assert [r.method for r in d1.requests] == ["POST", "PUT", "PUT", "PUT"]  # never ingested


def test_a_failed_import_raises_d1s_reason() -> None:
    etag = hashlib.md5(b"SELECT 1;").hexdigest()
    failed = {"success": False, "status": "error", "error": "no such table: x: SQLITE_ERROR"}
    d1 = ScriptedD1(init_answer(), uploaded(etag), httpx.Response(200, content=envelope(failed)))
    with d1.client() as db, pytest.raises(SQLError, match="no such table: x"):
        db.import_sql("SELECT 1;")


def test_an_import_still_running_after_the_timeout_says_to_poll_again() -> None:
    running = httpx.Response(200, content=envelope({"success": True, "status": "active", "at_bookmark": "b1"}))
    d1 = ScriptedD1(running)
    with d1.client() as db, pytest.raises(TransientError, match="poll it again"):
        db.poll_import(ImportHandle(DATABASE, "e", "f.sql", "b0", "ingesting"), timeout=0.0)


def test_a_handle_round_trips_and_refuses_an_unknown_stage() -> None:
    handle = ImportHandle("d", "e", "f", "b", "ingesting")
    assert ImportHandle.from_dict(handle.to_dict()) == handle
    with pytest.raises(ValueError):
        ImportHandle.from_dict({**handle.to_dict(), "stage": "done"})
