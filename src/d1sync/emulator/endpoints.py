"""The endpoints wrangler calls beyond ``/query``: import, export and Time Travel (d1-contract §1; the shapes of
the official SDK's ``DatabaseImportResponse``, ``DatabaseExportResponse`` and ``time_travel`` types).

::

    POST /accounts/{a}/d1/database/{id}/import              {"action": "init", "etag": md5}  -> upload_url
    PUT  /d1-transfer/upload/{token}                        the SQL file (no auth: the token is the credential;
                                                            an unknown one is 404 before the body is read)
    POST /accounts/{a}/d1/database/{id}/import              {"action": "ingest", "filename", "etag"}
    POST /accounts/{a}/d1/database/{id}/import              {"action": "poll", "current_bookmark"}
    POST /accounts/{a}/d1/database/{id}/export              {"output_format": "polling", "dump_options": {...}}
    GET  /d1-transfer/export/{token}                        the dump (the export's signed_url)
    GET  /accounts/{a}/d1/database/{id}/time_travel/bookmark[?timestamp=]
    POST /accounts/{a}/d1/database/{id}/time_travel/restore?bookmark=|timestamp=

An upload is written to disk as it arrives, and may not pass the app's ``max_import`` (D1's 5 GB; 413). An
import runs the whole file in one transaction while holding the database, so other queries wait, as they do on
D1. It runs in a thread of its own: ``ingest`` and ``poll`` each wait up to :data:`IMPORT_HOLD` seconds for it
to end, then answer ``status: "active"`` with the bookmark (wrangler polls again at once), or the outcome. A
small import is over within the ``ingest`` call; a big one outlives no client's timeout.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from d1sync.emulator.engine import Engine, d1_meta, decode_body, parse_database_id
from d1sync.emulator.history import parse_timestamp
from d1sync.emulator.transfer import Transfers, dump_sql
from d1sync.errors import ApiError

__all__ = ["TRANSFER_PREFIX", "transfer_routes"]

logger = logging.getLogger("d1sync.emulator")

TRANSFER_PREFIX = "/d1-transfer/"
Envelope = Callable[..., Response]

IMPORT_HOLD = 5.0
"""Seconds an ``ingest`` or ``poll`` waits for a running import to end before it answers ``active``."""


@dataclass
class _Import:
    """One database's last import: its answer so far (``active`` until it ends), and when it ended."""

    filename: str
    answer: dict[str, Any]
    ended: threading.Event = field(default_factory=threading.Event)

    def wait(self, hold: float) -> dict[str, Any]:
        """The answer once the import ended, or after ``hold`` seconds, whichever comes first."""
        self.ended.wait(hold)
        return dict(self.answer)


class _Endpoints:
    def __init__(self, engine: Engine, envelope: Envelope, error: Callable[[ApiError], Response]) -> None:
        self.engine = engine
        self.envelope = envelope
        self.error = error
        self.transfers = Transfers(engine.data_dir)
        self._imports: dict[str, _Import] = {}  # the last import, per database
        self._imports_lock = threading.Lock()
        self.hold = IMPORT_HOLD

    async def _answer(self, request: Request, work: Callable[[str, Any], Any]) -> Response:
        try:
            database_id = parse_database_id(request.path_params["database_id"])
            data = await request.body()
            body = decode_body(data) if data else None
            if not self.engine.exists(database_id):
                raise ApiError(7404, 404, f"The database {database_id} could not be found")
            return self.envelope(await run_in_threadpool(work, database_id, body))
        except ApiError as exc:
            return self.error(exc)

    # -- import --------------------------------------------------------------------------------------------

    async def import_(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return await self._answer(request, lambda database_id, body: self._import(database_id, body, base))

    def _import(self, database_id: str, body: Any, base: str) -> dict[str, Any]:
        action = body.get("action") if isinstance(body, dict) else None
        if action == "init":
            etag = str(body.get("etag") or "")
            upload = self.transfers.upload_for(database_id, etag)
            if upload.done:
                return self._ingest(database_id, upload.path.name, etag)
            return {
                "success": True,
                "type": "import",
                "filename": upload.path.name,
                "upload_url": f"{base}{TRANSFER_PREFIX}upload/{upload.token}",
                "messages": [],
            }
        if action == "ingest":
            return self._ingest(database_id, str(body.get("filename") or ""), str(body.get("etag") or ""))
        if action == "poll":
            last = self._imports.get(database_id)
            if last is None:
                raise ApiError(7400, 400, "The request is malformed: no import to poll")
            return last.wait(self.hold)
        raise ApiError(7400, 400, "The request is malformed: 'action' must be init, ingest or poll")

    def _ingest(self, database_id: str, filename: str, etag: str) -> dict[str, Any]:
        """Start importing the uploaded file (once: an ingest of the file already running follows it)."""
        running = self._running(database_id, filename)
        if running is not None:
            return running.wait(self.hold)
        store, history = self.engine.database(database_id), self.engine.history(database_id)
        with store.lock:  # waits for an import of another file still running on this database, as D1 does
            bookmark = history.current_bookmark()
        with self._imports_lock:
            last = self._imports.get(database_id)
            if last is None or last.filename != filename or last.ended.is_set():
                text = self.transfers.uploaded(database_id, filename, etag).decode("utf-8", "replace")
                started = {"type": "import", "filename": filename, "success": True, "status": "active"}
                last = _Import(filename, {**started, "at_bookmark": bookmark, "messages": ["Import started"]})
                self._imports[database_id] = last
                threading.Thread(
                    target=self._run_import, args=(database_id, last, text), name=f"d1-import-{filename}", daemon=True
                ).start()
        return last.wait(self.hold)

    def _running(self, database_id: str, filename: str) -> _Import | None:
        with self._imports_lock:
            last = self._imports.get(database_id)
        return last if last is not None and last.filename == filename and not last.ended.is_set() else None

    def _run_import(self, database_id: str, running: _Import, text: str) -> None:
        answer: dict[str, Any] = {"type": "import", "filename": running.filename}
        store, history = self.engine.database(database_id), self.engine.history(database_id)
        try:
            with store.lock:
                history.before_request()
                count, result = store.ingest(text)
                bookmark = history.current_bookmark()
            answer.update(
                success=True,
                status="complete",
                at_bookmark=bookmark,
                messages=[f"Processed {count} queries."],
                result={"final_bookmark": bookmark, "num_queries": count, "meta": d1_meta(result.meta)},
            )
        except ApiError as exc:
            answer.update(success=False, status="error", error=exc.message, errors=[exc.message], messages=[])
        except Exception as exc:  # a bug, or the emulator closed under it: the import failed, and says so
            logger.exception("emulator: the import %s failed", running.filename)
            message = f"the import failed: {exc}"
            answer.update(success=False, status="error", error=message, errors=[message], messages=[])
        finally:
            running.answer = answer
            running.ended.set()

    async def upload(self, request: Request) -> Response:
        # The token is the only credential: check it before reading a byte of the body.
        try:
            upload = self.transfers.issued(request.path_params["token"])
        except ApiError as exc:
            return self.error(exc)
        try:
            with self.transfers.receiving(upload) as sink:
                # Chunks of at most 64 KB: writing one to the page cache is quick enough for the event loop.
                async for chunk in request.stream():
                    sink.write(chunk)
        except ClientDisconnect:
            logger.debug("emulator: the client hung up during an upload; nothing kept")
            return Response(status_code=499)
        return Response(b"", status_code=200, headers={"etag": f'"{sink.etag}"'})

    # -- export --------------------------------------------------------------------------------------------

    async def export(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return await self._answer(request, lambda database_id, body: self._export(database_id, body, base))

    def _export(self, database_id: str, body: Any, base: str) -> dict[str, Any]:
        options = body.get("dump_options") if isinstance(body, dict) else None
        options = options if isinstance(options, dict) else {}
        tables = options.get("tables") or []
        if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
            raise ApiError(7400, 400, "The request is malformed: 'dump_options.tables' must be an array of names")
        store = self.engine.database(database_id)
        with store.lock:
            text = dump_sql(
                store, no_schema=bool(options.get("no_schema")), no_data=bool(options.get("no_data")), tables=tables
            )
            bookmark = self.engine.history(database_id).current_bookmark()
        token = self.transfers.offer(text)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        return {
            "success": True,
            "type": "export",
            "status": "complete",
            "at_bookmark": bookmark,
            "messages": ["Uploaded part 1"],
            "result": {
                "filename": f"{database_id}-{stamp}-{digest}.sql",
                "signed_url": f"{base}{TRANSFER_PREFIX}export/{token}",
            },
        }

    async def download(self, request: Request) -> Response:
        try:
            data = self.transfers.download(request.path_params["token"])
        except ApiError as exc:
            return self.error(exc)
        return Response(data, media_type="application/sql")

    # -- time travel ---------------------------------------------------------------------------------------

    async def bookmark(self, request: Request) -> Response:
        timestamp = request.query_params.get("timestamp")
        return await self._answer(request, lambda database_id, _: self._bookmark(database_id, timestamp))

    def _bookmark(self, database_id: str, timestamp: str | None) -> dict[str, Any]:
        store, history = self.engine.database(database_id), self.engine.history(database_id)
        with store.lock:
            if timestamp:
                return {"bookmark": history.bookmark_at(parse_timestamp(timestamp))}
            return {"bookmark": history.current_bookmark()}

    async def restore(self, request: Request) -> Response:
        bookmark, timestamp = request.query_params.get("bookmark"), request.query_params.get("timestamp")
        return await self._answer(request, lambda database_id, _: self._restore(database_id, bookmark, timestamp))

    def _restore(self, database_id: str, bookmark: str | None, timestamp: str | None) -> dict[str, Any]:
        store, history = self.engine.database(database_id), self.engine.history(database_id)
        with store.lock:
            if not bookmark:
                if not timestamp:
                    raise ApiError(7400, 400, "The request is malformed: give a bookmark or a timestamp")
                bookmark = history.bookmark_at(parse_timestamp(timestamp))
            answer = history.restore(bookmark)
        logger.info("emulator: database %s restored to %s", database_id, bookmark)
        return answer


def transfer_routes(
    engine: Engine, database_path: str, envelope: Envelope, error: Callable[[ApiError], Response]
) -> list[Route]:
    """The routes of this module, under ``database_path`` (``.../d1/database/{database_id}``)."""
    endpoints = _Endpoints(engine, envelope, error)
    return [
        Route(database_path + "/import", endpoints.import_, methods=["POST"]),
        Route(database_path + "/export", endpoints.export, methods=["POST"]),
        Route(database_path + "/time_travel/bookmark", endpoints.bookmark, methods=["GET"]),
        Route(database_path + "/time_travel/restore", endpoints.restore, methods=["POST"]),
        Route(TRANSFER_PREFIX + "upload/{token}", endpoints.upload, methods=["PUT"]),
        Route(TRANSFER_PREFIX + "export/{token}", endpoints.download, methods=["GET"]),
    ]
