"""The emulator's HTTP face: D1's REST routes, envelope, auth, rate limit and faults, as a Starlette app.

Routes (d1-contract §1), under ``/client/v4``; any account id is accepted::

    POST   /accounts/{account_id}/d1/database/{database_id}/query   rows as objects
    POST   /accounts/{account_id}/d1/database/{database_id}/raw     rows as arrays plus column names
    GET    /accounts/{account_id}/d1/database                       list (?name=, ?page=, ?per_page=)
    POST   /accounts/{account_id}/d1/database                       create {"name": ...}
    GET    /accounts/{account_id}/d1/database/{database_id}         describe one
    DELETE /accounts/{account_id}/d1/database/{database_id}         delete one
    POST   .../{database_id}/import, /export, GET .../time_travel/bookmark, POST .../time_travel/restore
                                                                    (d1sync.emulator.endpoints)

Every response is D1's envelope with all four keys (``result``, ``success``, ``errors``, ``messages``),
except the HTML pages of injected gateway faults. Every request needs ``Authorization: Bearer <token>``, but
the upload and download URLs that import and export hand out (``/d1-transfer/...``), whose random token is
their credential, as a signed URL's signature is.

Example::

    app = create_app("data", token="t", faults=FaultConfig(error_rate=0.05, seed=1))
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://emulator") as http:
        http.post(f"/client/v4/accounts/a/d1/database/{DEFAULT_DATABASE_ID}/query",
                  json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer t"})
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d1sync.client.config import clean_token
from d1sync.emulator import DEFAULT_MAX_BODY, DEFAULT_MAX_DURATION, DEFAULT_MAX_IMPORT
from d1sync.emulator.endpoints import TRANSFER_PREFIX, transfer_routes
from d1sync.emulator.engine import Engine, decode_body, internal_error, parse_database_id
from d1sync.emulator.faults import Fault, FaultConfig, FaultInjector, Garble, Sleep
from d1sync.emulator.limits import BodyLimit, BodyTooLarge
from d1sync.errors import ApiError

__all__ = ["BodyTooLarge", "ConnectionDropped", "create_app", "envelope"]

logger = logging.getLogger("d1sync.emulator")

API_PREFIX = "/client/v4"
_DB_LIST = API_PREFIX + "/accounts/{account_id}/d1/database"
_DB_ONE = _DB_LIST + "/{database_id}"

_OVERLOADED = "D1 DB is overloaded. Requests queued for too long."
_HTML_504 = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised by the app to drop a connection mid-response (an injected fault).

    Over a socket, uvicorn closes the connection after the headers, so the client reads an incomplete
    body. In process, httpx's ASGI transports re-raise app exceptions, so subclassing httpx's own
    "peer closed the connection" error makes the client see exactly what it sees over a socket.
    """


def envelope(
    result: Any = None, *, errors: list[dict[str, Any]] | None = None, status: int = 200, **extra: Any
) -> JSONResponse:
    """D1's envelope: ``result``, ``success``, ``errors``, ``messages`` (plus ``extra`` keys)."""
    body = {"result": result, "success": not errors, "errors": errors or [], "messages": [], **extra}
    return JSONResponse(body, status_code=status)


def error_response(code: int, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    response = envelope(errors=[{"code": code, "message": message}], status=status)
    if headers:
        response.headers.update(headers)
    return response


def _api_error(exc: ApiError) -> JSONResponse:
    return error_response(exc.code, exc.status, exc.message)


class _Dropped(Response):
    """Start a response, then drop the connection before the body."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        raise ConnectionDropped("peer closed connection without sending complete message body (injected)")


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    """``send`` that adds ``headers`` to the response's start message (whatever route or fault answers)."""
    extra = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


class _Envelopes:
    """Pure ASGI middleware, outermost: whatever a route did not answer is still D1's envelope.

    An :class:`ApiError` that escapes a route is answered with its own code and status; any other exception
    is logged and answered 7500/500 "internal error; reference = ..." as D1 does, never with Starlette's
    plain-text page or a traceback. Once a response has started (an injected drop) the exception goes on;
    a client that hung up mid-body gets nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except ClientDisconnect:
            logger.debug("emulator: the client hung up before its request arrived; nothing applied")
        except ApiError as exc:
            if started:
                raise
            await _api_error(exc)(scope, receive, send)
        except Exception:
            if started:
                raise
            error = internal_error()
            logger.exception("emulator: %s (%s %s)", error.message, scope["method"], scope["path"][:200])
            await _api_error(error)(scope, receive, send)


class _Gatekeeper:
    """Pure ASGI middleware: bearer token on every request, then the optional rate limit.

    With the rate limit on, every authenticated response carries ``x-ratelimit-limit``, ``-remaining`` and
    ``-reset`` (d1-contract §2), so clients sharing one account can see what the others have spent.
    """

    def __init__(self, app: ASGIApp, *, token: str, faults: FaultInjector) -> None:
        self.app = app
        self._token = token.encode()
        self._faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(TRANSFER_PREFIX):
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await error_response(10000, 401, "Authentication error")(scope, receive, send)
            return
        state = self._faults.check_rate_limit()
        if state is None:
            await self.app(scope, receive, send)
            return
        headers = state.headers(count=self._faults.config.rate_limit_headers)
        if state.retry_after is not None:
            await error_response(971, 429, "Please wait and consider throttling your request speed", headers)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, _with_headers(send, headers))

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                # compare_digest: no timing hint about how much of the token matched.
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)
        return False


def create_app(
    data_dir: str | os.PathLike[str],
    *,
    token: str,
    faults: FaultConfig | None = None,
    rate_limit: tuple[int, float] | None = None,
    auto_create: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    max_duration: float = DEFAULT_MAX_DURATION,
    max_import: int = DEFAULT_MAX_IMPORT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep | None = None,
) -> Starlette:
    """Build the emulator app over the SQLite files in ``data_dir``.

    Args:
        data_dir: folder of SQLite files, one per database id; created if missing. The database
            ``DEFAULT_DATABASE_ID`` is created at start.
        token: the bearer token every request must carry (ASCII without control characters, else a
            :class:`~d1sync.errors.ConfigError`; surrounding whitespace is dropped).
        faults: faults to inject into ``/query`` and ``/raw`` (see :mod:`d1sync.emulator.faults`).
        rate_limit: ``(requests, window_seconds)``; over it, 429 with code 971 and ``retry-after``. Every
            authenticated response then carries ``x-ratelimit-limit``, ``-remaining`` and ``-reset``.
        auto_create: create unknown (valid UUID) database ids on first use instead of answering 7404.
        max_body: the largest request body read, in bytes, on every API route. A larger one is answered
            HTTP 413, code 7400 (see :class:`~d1sync.emulator.limits.BodyTooLarge`), as soon as its
            ``Content-Length`` or the bytes read so far pass the limit.
        max_import: the same for an import's upload (D1's 5 GB: the upload goes to a signed URL, not the API).
        max_duration: seconds a ``/query`` or ``/raw`` request may run (D1's 30 s); a longer one is interrupted,
            rolled back and answered D1's 7429 ``D1 DB storage operation exceeded timeout ...`` (a ValueError if 0).
        clock, sleep: time sources for the rate limit and injected delays (tests pass fakes).

    The app exposes ``app.state.engine`` (:class:`~d1sync.emulator.engine.Engine`) and ``app.state.faults``
    (:class:`~d1sync.emulator.faults.FaultInjector`: ``.stats``, ``.update(...)``, ``.set_rate_limit(...)``).
    """
    token = clean_token(token, "create_app(token=...)")  # one no client could send is a ConfigError here
    if not token:
        raise ValueError("the emulator needs a non-empty token")
    if min(max_body, max_import) < 1:
        raise ValueError(f"max_body and max_import must be positive numbers of bytes, not {max_body}, {max_import}")
    engine = Engine(data_dir, auto_create=auto_create, max_duration=max_duration)
    injector = FaultInjector(faults, rate_limit, clock=clock, **({"sleep": sleep} if sleep else {}))
    routes = _Routes(engine, injector)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        engine.close()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {404: _no_route, 405: _no_route}
    app = Starlette(
        routes=[
            Route(_DB_ONE + "/query", routes.query, methods=["POST"]),
            Route(_DB_ONE + "/raw", routes.raw, methods=["POST"]),
            Route(_DB_LIST, routes.list_databases, methods=["GET"]),
            Route(_DB_LIST, routes.create_database, methods=["POST"]),
            Route(_DB_ONE, routes.one_database, methods=["GET", "DELETE"]),
            *transfer_routes(engine, _DB_ONE, envelope, _api_error),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    # The last added runs first: envelopes for whatever escapes, then auth, then the body limit.
    upload = TRANSFER_PREFIX + "upload/"
    app.add_middleware(BodyLimit, max_body=max_body, max_import=max_import, upload_prefix=upload)
    app.add_middleware(_Gatekeeper, token=token, faults=injector)
    app.add_middleware(_Envelopes)
    app.state.engine = engine
    app.state.faults = injector
    return app


async def _no_route(request: Request, exc: Exception) -> Response:
    path = request.url.path.removeprefix(API_PREFIX)
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return error_response(7001, 405, f"Method {request.method} not allowed for route {path}")
    return error_response(7003, 404, f"Could not route to {path}, perhaps your object identifier is invalid?")


class _Routes:
    """The endpoints of d1-contract §1, over one engine and one fault injector."""

    def __init__(self, engine: Engine, injector: FaultInjector) -> None:
        self.engine = engine
        self.injector = injector
        self._late: set[asyncio.Task[None]] = set()

    async def query(self, request: Request) -> Response:
        return await self._run_query(request, raw=False)

    async def raw(self, request: Request) -> Response:
        return await self._run_query(request, raw=True)

    async def _run_query(self, request: Request, raw: bool) -> Response:
        try:
            database_id = parse_database_id(request.path_params["database_id"])
        except ApiError as exc:
            return _api_error(exc)
        try:
            # Read first, as D1 does: a client that dies while its request is held still has it applied.
            body = await request.body()
        except ClientDisconnect:
            logger.debug("emulator: the client hung up before its request arrived; nothing applied")
            return Response(status_code=499)
        injector = self.injector
        plan = injector.plan()
        if plan.latency:
            await injector.sleep(plan.latency)
        fault = plan.fault
        if fault is Fault.ERROR_503:
            return error_response(7500, 503, _OVERLOADED)
        if fault is Fault.ERROR_500:
            return _api_error(internal_error())
        if fault is Fault.RATE_LIMITED:
            retry_after = str(injector.config.retry_after)
            return error_response(
                971, 429, "Please wait and consider throttling your request speed", {"retry-after": retry_after}
            )
        if fault is Fault.HTML_504:
            return HTMLResponse(_HTML_504, status_code=504)
        if fault is Fault.LATE:
            self._apply_later(body, database_id, raw, injector.config.late_delay)
            return _Dropped()
        if plan.garble is not None:
            return await self._garbled(plan.garble, body, database_id, raw, applied=plan.apply_garbled)
        response = await self._execute(body, database_id, raw)
        # From here on the statements are applied: the faults below only hide that from the client.
        if fault is Fault.LOST_502:
            return HTMLResponse(_HTML_502, status_code=502)
        if fault is Fault.LOST_DROP:
            return _Dropped()
        if fault is Fault.TIMEOUT:
            await injector.sleep(injector.config.timeout_delay)
            if injector.config.timeout_action == "drop":
                return _Dropped()
        return response

    async def _execute(self, body: bytes, database_id: str, raw: bool) -> Response:
        result = await self._results(body, database_id, raw)
        return result if isinstance(result, Response) else envelope(result)

    def _apply_later(self, body: bytes, database_id: str, raw: bool, delay: float) -> None:
        """Apply ``body`` ``delay`` seconds from now, answering no one (the client was already dropped)."""

        async def later() -> None:
            await self.injector.sleep(delay)
            outcome = await self._results(body, database_id, raw)
            self.injector.count("late_refused" if isinstance(outcome, Response) else "late_applied")

        task = asyncio.get_running_loop().create_task(later())
        self._late.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._late.discard)

    async def _results(self, body: bytes, database_id: str, raw: bool) -> list[dict[str, Any]] | Response:
        """The statement results of running ``body``, or the error response D1 would give."""
        try:
            return await run_in_threadpool(self.engine.execute, database_id, decode_body(body), raw=raw)
        except ApiError as exc:
            return _api_error(exc)
        except Exception:
            logger.exception("emulator: internal error while running a query")
            return _api_error(internal_error())

    async def _garbled(self, garble: Garble, body: bytes, database_id: str, raw: bool, *, applied: bool) -> Response:
        """A 200 "success" that proves nothing, after running the statements or not."""
        results: list[dict[str, Any]] = []
        if applied:
            outcome = await self._results(body, database_id, raw)
            if isinstance(outcome, Response):
                return outcome  # a refusal is answered as it is: only a success is garbled
            results = outcome
        return JSONResponse(garble.envelope(results))

    async def list_databases(self, request: Request) -> Response:
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            per_page = max(10, min(10_000, int(request.query_params.get("per_page", "1000"))))  # D1's bounds
        except ValueError:
            return error_response(7400, 400, "The request is malformed: page and per_page must be integers")
        everything = await run_in_threadpool(self.engine.list_databases, request.query_params.get("name"))
        chosen = everything[(page - 1) * per_page : page * per_page]
        info = {"page": page, "per_page": per_page, "count": len(chosen), "total_count": len(everything)}
        return envelope(chosen, result_info=info)

    async def create_database(self, request: Request) -> Response:
        try:
            body = decode_body(await request.body())
            name = body.get("name") if isinstance(body, dict) else None
            return envelope(await run_in_threadpool(self.engine.create, name))
        except ApiError as exc:
            return _api_error(exc)

    async def one_database(self, request: Request) -> Response:
        try:
            database_id = parse_database_id(request.path_params["database_id"])
            if request.method == "DELETE":
                await run_in_threadpool(self.engine.delete, database_id)
                return envelope(None)
            return envelope(await run_in_threadpool(self.engine.describe, database_id))
        except ApiError as exc:
            return _api_error(exc)
