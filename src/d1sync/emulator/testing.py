"""Helpers for tests: a synchronous httpx transport over an in-process ASGI app.

``httpx.ASGITransport`` only serves ``httpx.AsyncClient``. :class:`SyncASGITransport` gives the synchronous
``httpx.Client`` (and so the sync ``D1Client``) the same in-process seam: it runs the app on an event loop in
one background thread (a daemon thread, like ``starlette.testclient``'s portal) and hands each request to
``httpx.ASGITransport`` there. No socket is opened.

Example::

    app = create_app(tmp_path, token="t")
    with D1Client(account_id="a", database_id=DEFAULT_DATABASE_ID, api_token="t",
                  base_url="http://emulator/client/v4", transport=SyncASGITransport(app)) as db:
        db.prepare("SELECT 1 AS one").first("one")   # 1

App exceptions are re-raised in the caller, like ``httpx.ASGITransport`` does; the emulator's injected
connection drops are ``httpx.RemoteProtocolError`` subclasses, so clients see them as a broken connection.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
from starlette.types import ASGIApp

__all__ = ["SyncASGITransport"]


class SyncASGITransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that calls an ASGI app in process (see the module docstring).

    The event loop runs in a daemon thread started on first use, so a transport that is never closed
    cannot keep the interpreter from exiting. Safe to use from several threads: requests are served
    concurrently on the one loop.
    """

    def __init__(self, app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 123)) -> None:
        self._asgi = httpx.ASGITransport(app=app, client=client)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="d1sync-asgi-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        inner = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        future = asyncio.run_coroutine_threadsafe(self._send(inner), self._get_loop())
        status, headers, content = future.result()
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def _send(self, request: httpx.Request) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return response.status_code, response.headers.raw, content

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
