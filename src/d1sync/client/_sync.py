# Generated from _async.py by scripts/generate_sync_client.py (`make sync-client`): do not edit.
"""The D1 REST client: the Database API over Cloudflare D1's REST API, on httpx.

``_async.py`` is the source of both clients: :class:`AsyncD1Client` (asyncio, ``httpx.AsyncClient``) is
written there, and ``_sync.py`` (:class:`D1Client`, blocking, ``httpx.Client``) is generated from it by
``scripts/generate_sync_client.py``, which drops ``async``/``await`` and renames the async names.
``make test`` fails when the two drift apart. Everything but I/O lives in the sans-I/O core (``_core.py``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from d1sync.database import Database, ExecResult, RawResult, Result, Statement
from d1sync.errors import D1Error, RateLimitedError
from d1sync.sql import split_statements

from ._core import ApiRequest, ClientCore, DatabasePager, RetryPolicy, Sleep
from .config import resolve_config
from .ratelimit import RateLimiter, default_limiter

__all__ = ["D1Client"]

logger = logging.getLogger("d1sync.client")

Timeout = float | httpx.Timeout | None


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
        self._http = httpx.Client(
            headers=self._core.headers,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
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

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- transport --------------------------------------------------------------------------------------

    def _send_once(self, request: ApiRequest) -> dict[str, Any]:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        try:
            response = self._http.request(
                request.method, request.url, content=request.content, params=request.params or None
            )
        except httpx.RequestError as exc:
            raise self._core.transport_error(exc, request) from exc
        self._core.observe_rate_limit(self.rate_limiter, response.headers)
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
        """Create a database; the returned dict has its ``uuid``. Never retried (it is not idempotent).

        ``jurisdiction`` (``eu``, ``fedramp``) keeps its data there; ``primary_location_hint`` (``weur``,
        ``enam``, ...) places its primary near its users.
        """
        request = self._core.create_request(name, primary_location_hint, jurisdiction)
        return dict(self._core.json_result(self._send(request)) or {})

    def get_database(self, database_id: str) -> dict[str, Any]:
        """One database's details (``uuid``, ``name``, ``num_tables``, ``file_size``, ...)."""
        request = self._core.get_request(database_id)
        return dict(self._core.json_result(self._send(request)) or {})

    def delete_database(self, database_id: str) -> None:
        """Delete a database. Not retried."""
        self._send(self._core.delete_request(database_id))
