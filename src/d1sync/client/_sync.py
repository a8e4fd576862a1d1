# Generated from _async.py by scripts/generate_sync_client.py (`make sync-client`): do not edit.
"""The D1 REST client: the Database API over Cloudflare D1's REST API, on httpx.

``_async.py`` is the source of both clients: :class:`AsyncD1Client` (asyncio, ``httpx.AsyncClient``) is
written there, and ``_sync.py`` (:class:`D1Client`, blocking, ``httpx.Client``) is generated from it by
``scripts/generate_sync_client.py``, which drops ``async``/``await`` and renames the async names.
``make test`` fails when the two drift apart. Everything but I/O lives in the sans-I/O core (``_core.py``).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from d1sync.database import Database, ExecResult, RawResult, Result, Statement
from d1sync.errors import D1Error, NetworkError, RateLimitedError, TransientError, UnprovenResultError
from d1sync.sql import split_statements

from ._core import ApiRequest, ClientCore, DatabasePager, RetryPolicy, Sleep
from .config import resolve_config
from .imports import (
    UPLOAD_CHUNK,
    ImportHandle,
    ImportResult,
    import_body,
    md5_file,
    md5_hex,
    read_answer,
    still_running,
    upload_problem,
)
from .ratelimit import RateLimiter, default_limiter
from .tls import shared_tls_context

__all__ = ["D1Client"]

logger = logging.getLogger("d1sync.client")

Timeout = float | httpx.Timeout | None


def _file_chunks(path: Path) -> Iterator[bytes]:
    """The file at ``path`` in chunks, so an upload never holds it whole (a chunk read blocks only briefly)."""
    with path.open("rb") as file:
        while chunk := file.read(UPLOAD_CHUNK):
            yield chunk


class D1Client(Database):
    """Cloudflare D1 over REST, with the D1 binding's API (``D1Client``: blocking; ``AsyncD1Client``: awaitable).

    Settings left as None come from the environment: ``CLOUDFLARE_API_TOKEN``, ``CLOUDFLARE_ACCOUNT_ID`` (or
    ``D1_ACCOUNT_ID``), ``D1_DATABASE_ID`` and ``D1SYNC_API_BASE`` (default
    ``https://api.cloudflare.com/client/v4``). Reads and calls marked ``idempotent=True`` are retried on
    transient failures as ``retry`` says; every request first takes a token from the rate limiter, and every
    response's count of the account's remaining requests (``x-ratelimit-*``) lowers or pauses it
    (:meth:`RateLimiter.observe`).

    Args:
        account_id, database_id, api_token, base_url: the target (None: from the environment).
        timeout: seconds, or an ``httpx.Timeout``.
        retry: the :class:`RetryPolicy` (default: 3 retries, back-off 0.5 s doubling to 30 s).
        rate_limiter: a shared :class:`RateLimiter`; None uses the process-wide one for ``base_url``
            (none for a local emulator).
        transport: an httpx transport (the test seam, e.g. ``httpx.ASGITransport`` on the emulator app).
        sleep, rng: injectable sleep function and random source (tests).

    Example::

        with D1Client(database_id="...") as db:
            db.prepare("INSERT INTO notes (body) VALUES (?)").bind("hi").run()
            rows = db.prepare("SELECT * FROM notes").all().results

        async with AsyncD1Client(database_id="...") as db:
            rows = (await db.prepare("SELECT * FROM notes").all()).results
    """

    def __init__(
        self,
        *,
        account_id: str | None = None,
        database_id: str | None = None,
        api_token: str | None = None,
        base_url: str | None = None,
        timeout: Timeout = 30.0,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        config = resolve_config(account_id=account_id, database_id=database_id, api_token=api_token, base_url=base_url)
        self._core = ClientCore(config, retry or RetryPolicy(), rng)
        self.rate_limiter = rate_limiter if rate_limiter is not None else default_limiter(config.base_url)
        self._sleep = sleep or time.sleep
        self._transport = transport
        self._rng = rng
        self._http = httpx.Client(
            headers=self._core.headers,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            verify=shared_tls_context(),
        )

    @property
    def account_id(self) -> str:
        return self._core.config.account_id

    @property
    def database_id(self) -> str | None:
        return self._core.config.database_id

    @property
    def base_url(self) -> str:
        return self._core.config.base_url

    @property
    def retry(self) -> RetryPolicy:
        return self._core.policy

    def __repr__(self) -> str:
        return self._core.describe(type(self).__name__)

    def for_database(self, database_id: str) -> D1Client:
        """A new client with this one's account, token, API base, timeout, retries, rate limiter and transport,
        bound to ``database_id`` (a database just created, say). Close it too."""
        config = self._core.config
        return D1Client(
            account_id=config.account_id,
            database_id=database_id,
            api_token=config.api_token,
            base_url=config.base_url,
            timeout=self._http.timeout,
            retry=self._core.policy,
            rate_limiter=self.rate_limiter,
            transport=self._transport,
            sleep=self._sleep,
            rng=self._rng,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- transport --------------------------------------------------------------------------------------

    def _send_once(self, request: ApiRequest) -> dict[str, Any]:
        ticket = self.rate_limiter.acquire() if self.rate_limiter is not None else None
        try:
            response = self._http.request(
                request.method, request.url, content=request.content, params=request.params or None
            )
        except httpx.RequestError as exc:
            raise self._core.transport_error(exc, request) from exc
        self._core.observe_rate_limit(self.rate_limiter, response.headers, ticket)
        return self._core.parse_response(request, response.status_code, response.headers, response.content)

    def _send(self, request: ApiRequest) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return self._send_once(request)
            except D1Error as error:
                if isinstance(error, RateLimitedError) and self.rate_limiter is not None:
                    self.rate_limiter.throttled(error.retry_after)
                delay = self._core.retry_delay(request, error, attempt)
                if delay is None:
                    raise
                attempt += 1
                logger.info("retry %d/%d in %.2fs after: %s", attempt, self._core.policy.max_retries, delay, error)
                self._sleep(delay)

    # -- the Database API -------------------------------------------------------------------------------

    def _execute(self, statement: Statement) -> Result:
        request = self._core.statement_request(statement.sql, statement.params)
        results = self._core.query_results(request, self._send(request))
        return results[-1] if results else Result([])

    def _execute_raw(self, statement: Statement) -> RawResult:
        request = self._core.statement_request(statement.sql, statement.params, raw=True)
        results = self._core.raw_results(request, self._send(request))
        return results[-1] if results else RawResult([], [])

    def query(self, sql: str, params: Sequence[Any] = (), *, idempotent: bool = False) -> list[Result]:
        """Run ``sql`` (one or more statements; parameters bind to the last) and return every statement's Result.

        ``idempotent=True`` allows retrying a write (safe only if applying it twice changes nothing).
        """
        request = self._core.statement_request(sql, params, idempotent=idempotent)
        return self._core.query_results(request, self._send(request))

    def batch(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[Result]:
        """Run ``statements`` as one atomic D1 batch (one request); a Result per statement, in order."""
        if not statements:
            return []
        request = self._core.batch_request([(s.sql, s.params) for s in statements], idempotent=idempotent)
        return self._core.query_results(request, self._send(request))

    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        """:meth:`batch` through ``/raw``: rows as lists, column names kept even for empty results."""
        if not statements:
            return []
        request = self._core.batch_request([(s.sql, s.params) for s in statements], raw=True, idempotent=idempotent)
        return self._core.raw_results(request, self._send(request))

    def exec(self, sql: str) -> ExecResult:
        """Split ``sql`` on the client (quotes, comments, trigger bodies, CRLF) and run it as one atomic batch."""
        parts = split_statements(sql)
        if not parts:
            return ExecResult(count=0, duration=0.0)
        request = self._core.batch_request([(part, ()) for part in parts])
        results = self._core.query_results(request, self._send(request))
        return ExecResult(count=len(parts), duration=sum(r.meta.duration for r in results))

    # -- database management (no database id needed) ----------------------------------------------------

    def list_databases(self, *, name: str | None = None) -> list[dict[str, Any]]:
        """Every D1 database of the account (all pages), optionally filtered by ``name``."""
        pager = DatabasePager(self._core, name)
        while (request := pager.next_request()) is not None:
            pager.feed(self._send(request))
        return pager.items

    def create_database(
        self, name: str, *, primary_location_hint: str | None = None, jurisdiction: str | None = None
    ) -> dict[str, Any]:
        """Create a database (``jurisdiction``: ``eu``, ``fedramp`` or ``us`` keeps its data there); the returned dict
        has its ``uuid``. Never retried (it is not idempotent)."""
        request = self._core.create_request(name, primary_location_hint, jurisdiction)
        return dict(self._core.json_result(self._send(request)) or {})

    def get_database(self, database_id: str) -> dict[str, Any]:
        """One database's details (``uuid``, ``name``, ``num_tables``, ``file_size``, ...)."""
        request = self._core.get_request(database_id)
        return dict(self._core.json_result(self._send(request)) or {})

    def delete_database(self, database_id: str) -> None:
        """Delete a database. Not retried."""
        self._send(self._core.delete_request(database_id))

    # -- D1's import (wrangler d1 execute --file) -------------------------------------------------------

    def import_sql(
        self,
        sql: str | bytes | os.PathLike[str],
        *,
        database_id: str | None = None,
        poll_interval: float = 1.0,
        timeout: float = 3600.0,
        on_progress: Callable[[ImportHandle], None] | None = None,
    ) -> ImportResult:
        """Run the SQL text ``sql`` (or the file at the path ``sql``, streamed from disk) through D1's import, as
        ``wrangler d1 execute --file --remote`` does: init, upload to the signed URL D1 returns (outside the
        API's request budget), ingest, poll until done.

        D1 runs the whole file as one transaction and is briefly unavailable to other queries meanwhile. Every
        answer is checked (:mod:`~d1sync.client.imports`). ``on_progress`` gets the :class:`ImportHandle`
        after each step: persist it, and a process that crashed after ``ingesting`` polls with
        :meth:`poll_import` instead of importing again.

        Example::

            result = db.import_sql(open("seed.sql").read())
            result.num_queries, result.final_bookmark

        Raises:
            SQLError: a statement of the file failed; nothing was applied. UnprovenResultError: an answer
            proved nothing (the outcome is unknown: poll the handle). TransientError: still running after
            ``timeout`` seconds (poll the handle later).
        """
        body: bytes | Path
        if isinstance(sql, os.PathLike):
            body = Path(sql)
            etag = md5_file(body)
        else:
            body = sql.encode() if isinstance(sql, str) else bytes(sql)
            etag = md5_hex(body)
        target = database_id or self._core.config.require_database_id()
        handle = ImportHandle(target, etag)
        # Not retried: an init for a file D1 already holds starts its import.
        request = self._core.import_request(target, import_body("init", handle), safe=False)
        answer = read_answer(self._core.json_result(self._send(request)), handle, init=True)
        if answer.upload_url is None:
            # D1 holds this very file already and has started importing it: follow that import.
            handle = ImportHandle(target, handle.etag, handle.etag, answer.bookmark, "ingesting")
            self._progress(on_progress, handle)
            if answer.result is not None:
                return answer.result
            return self.poll_import(handle, poll_interval=poll_interval, timeout=timeout)
        handle = ImportHandle(target, handle.etag, str(answer.filename))
        self._progress(on_progress, handle)
        self._upload(answer.upload_url, body, handle.etag)
        handle = ImportHandle(target, handle.etag, handle.filename, None, "uploaded")
        self._progress(on_progress, handle)
        # Recorded before it is sent: once ingest may have reached D1, the import must only be polled.
        handle = ImportHandle(target, handle.etag, handle.filename, None, "ingesting")
        self._progress(on_progress, handle)
        request = self._core.import_request(target, import_body("ingest", handle), safe=False)
        answer = read_answer(self._core.json_result(self._send(request)), handle)
        if answer.result is not None:
            self._progress(on_progress, answer.result.handle)
            return answer.result
        handle = ImportHandle(target, handle.etag, handle.filename, answer.bookmark, "ingesting")
        return self.poll_import(handle, poll_interval=poll_interval, timeout=timeout, on_progress=on_progress)

    def poll_import(
        self,
        handle: ImportHandle,
        *,
        poll_interval: float = 1.0,
        timeout: float = 3600.0,
        on_progress: Callable[[ImportHandle], None] | None = None,
    ) -> ImportResult:
        """Poll the import ``handle`` (from :meth:`import_sql`'s ``on_progress``) until D1 says it completed
        or failed. Polls are reads: retried like any read. Raises as :meth:`import_sql` does."""
        started = time.monotonic()
        while True:
            request = self._core.import_request(handle.database_id, import_body("poll", handle), safe=True)
            answer = read_answer(self._core.json_result(self._send(request)), handle)
            if answer.result is not None:
                self._progress(on_progress, answer.result.handle)
                return answer.result
            if answer.bookmark != handle.bookmark:
                handle = ImportHandle(handle.database_id, handle.etag, handle.filename, answer.bookmark, "ingesting")
                self._progress(on_progress, handle)
            if time.monotonic() - started >= timeout:
                raise still_running(handle, timeout)
            self._sleep(poll_interval)

    @staticmethod
    def _progress(callback: Callable[[ImportHandle], None] | None, handle: ImportHandle) -> None:
        if callback is not None:
            callback(handle)

    def _upload(self, url: str, body: bytes | Path, etag: str) -> None:
        """PUT ``body`` (bytes, or a file read chunk by chunk) to a signed upload URL: no bearer token (it belongs
        to the API, not the bucket) and no rate limiter (the upload is not an API request). Retried as an
        idempotent request."""
        attempt = 0
        with httpx.Client(transport=self._transport, timeout=self._http.timeout) as bare:
            while True:
                error: D1Error
                try:
                    size = len(body) if isinstance(body, bytes) else body.stat().st_size
                    content = body if isinstance(body, bytes) else _file_chunks(body)
                    response = bare.put(url, content=content, headers={"Content-Length": str(size)})
                except httpx.RequestError as exc:
                    error = NetworkError(f"the upload of the import failed ({type(exc).__name__})")
                else:
                    problem = upload_problem(response.status_code, response.headers.get("etag"), etag)
                    if problem is None:
                        return
                    if response.status_code >= 500:
                        error = TransientError(problem, status=response.status_code)
                    elif response.status_code == 200:
                        error = UnprovenResultError(problem, status=200)
                    else:
                        raise D1Error(f"{problem}; D1 refused the file", status=response.status_code)
                delay = (
                    self._core.policy.delay(attempt, self._core.rng)
                    if attempt < self._core.policy.max_retries
                    else None
                )
                if delay is None:
                    raise error
                attempt += 1
                logger.info(
                    "retry %d/%d of the upload in %.2fs after: %s", attempt, self._core.policy.max_retries, delay, error
                )
                self._sleep(delay)
