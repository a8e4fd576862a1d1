"""The sans-I/O core of the D1 REST client: requests, envelopes, errors and retry decisions.

Nothing here touches the network or sleeps. :class:`~d1sync.client.D1Client` and
:class:`~d1sync.client.AsyncD1Client` wrap it with ``httpx.Client`` / ``httpx.AsyncClient`` and differ only in
``def`` / ``async def``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from d1sync._version import __version__
from d1sync.backoff import Backoff
from d1sync.database import Meta, RawResult, Result
from d1sync.errors import (
    D1Error,
    ExecutionTimeoutError,
    NetworkError,
    RequestTimeoutError,
    TransientError,
    UnprovenResultError,
    UnreachableError,
    ValueEncodingError,
    classify_error,
)
from d1sync.sql import first_keyword, split_statements
from d1sync.values import decode_json, decode_row_value, encode_params

from ._answers import non_envelope_error, unproven
from .config import ClientConfig
from .headers import RateLimitStatus, parse_rate_limit, parse_retry_after
from .ratelimit import RateLimiter

__all__ = [
    "ApiRequest",
    "AsyncSleep",
    "ClientCore",
    "DatabasePager",
    "RateLimitStatus",
    "RetryPolicy",
    "Sleep",
    "is_read_only",
    "parse_rate_limit",
    "parse_retry_after",
]

Sleep = Callable[[float], None]
"""A blocking sleep (``time.sleep``), injectable in tests."""
AsyncSleep = Callable[[float], Awaitable[None]]
"""An awaitable sleep (``asyncio.sleep``), injectable in tests."""

# -- which statements are safe to send twice ---------------------------------------------------------------

_READ_KEYWORDS = frozenset({"SELECT", "EXPLAIN"})
_MAYBE_READ_KEYWORDS = frozenset({"WITH", "VALUES", "PRAGMA"})
_WRITE_WORDS = re.compile(
    r"\b(INSERT|UPDATE|DELETE|REPLACE|UPSERT|CREATE|DROP|ALTER|ATTACH|DETACH|VACUUM|REINDEX|ANALYZE|RETURNING)\b",
    re.IGNORECASE,
)


def is_read_only(sql: str) -> bool:
    """True when every statement in ``sql`` only reads, so sending it twice cannot change anything.

    Conservative: ``SELECT`` and ``EXPLAIN`` are reads; ``WITH``, ``VALUES`` and ``PRAGMA`` are reads only if
    no write keyword appears anywhere in the text (even inside a string literal) and a ``PRAGMA`` has no
    ``=`` (the call form, ``PRAGMA optimize`` or ``PRAGMA table_info(t)``, is safe to repeat). Everything
    else, and empty text, counts as a write.
    """
    statements = split_statements(sql)
    if not statements:
        return False
    for statement in statements:
        keyword = first_keyword(statement)
        if keyword in _READ_KEYWORDS:
            continue
        if keyword not in _MAYBE_READ_KEYWORDS or _WRITE_WORDS.search(statement):
            return False
        if keyword == "PRAGMA" and "=" in statement:
            return False
    return True


# -- retry policy -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failed requests the client retries, and how long it waits in between.

    Retryable failures of requests that are safe to resend are retried up to ``max_retries`` times, waiting
    the shared :class:`~d1sync.backoff.Backoff` schedule (capped exponential with equal jitter); a server's
    ``retry-after`` replaces that delay. A ``retry-after`` longer than ``max_retry_after`` is not waited for:
    the :class:`~d1sync.errors.RateLimitedError` is raised at once (it carries ``retry_after``).

    Example::

        D1Client(retry=RetryPolicy(max_retries=5, backoff=Backoff(base=0.2, cap=10.0)))
        D1Client(retry=RetryPolicy(max_retries=0))     # never retry
    """

    max_retries: int = 3
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0))
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.max_retry_after < 0:
            raise ValueError("max_retries and max_retry_after must not be negative")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay before retry number ``attempt + 1`` (``attempt`` counts failures so far, 0-based)."""
        return self.backoff.delay(attempt + 1, rng)


# Failures that prove the request never left this machine: safe to resend even a write.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


# -- requests ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One HTTP request to the D1 API, plus what the client needs to judge its answer.

    ``statements`` is how many statement results a successful answer must carry (SQL requests), and
    ``expects_object`` says a successful answer's ``result`` must be an object (a database's details).
    """

    method: str
    url: str
    content: bytes | None = None
    params: Mapping[str, str | int] = field(default_factory=dict)
    statement: str | None = None
    safe_to_retry: bool = False
    statements: int | None = None
    expects_object: bool = False


_MIN_BARE_TOKEN_LENGTH = 8
"""Tokens this long are scrubbed wherever they appear; shorter ones only in header material."""


def _header_token_pattern(token: str) -> re.Pattern[str]:
    # "Bearer t", "Authorization: t", "'authorization': 'Bearer t'", "(b'authorization', b'Bearer t')".
    # The look-ahead keeps "Bearer tokens" intact when the token is "t".
    return re.compile(
        r"(?P<prefix>\b(?:bearer|authorization)\b['\"]?\s*[:=,]?\s*b?['\"]?(?:bearer\s+)?)"
        + re.escape(token)
        + r"(?![\w-])",
        re.IGNORECASE,
    )


def _encode_body(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _count_statements(sql: str) -> int:
    """How many statement results D1 answers for ``sql`` (one per statement of the text, at least one)."""
    return max(1, len(split_statements(sql)))


def _statement_body(sql: str, params: Sequence[Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"sql": sql}
    if params:
        body["params"] = encode_params(params)
    return body


def _refused(detail: str) -> str:
    """Why a connection failed, in words: refused, or a host name that does not resolve."""
    lowered = detail.lower()
    if "refused" in lowered:
        return " (connection refused)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "getaddrinfo" in lowered:
        return " (unknown host)"
    return f" ({detail})" if detail else ""


class ClientCore:
    """Request building, response parsing and retry decisions for one client configuration."""

    def __init__(self, config: ClientConfig, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.config = config
        self.policy = policy
        self.rng = rng or random.Random()
        self.host = urlsplit(config.base_url).netloc
        self.base = config.base_url.removesuffix("/client/v4")
        self._token_in_header = _header_token_pattern(config.api_token)

    # headers and secrets

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.api_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"d1sync/{__version__}",
        }

    def redact(self, text: str) -> str:
        """``text`` with the API token replaced by ``***`` (defence in depth for wrapped exception text).

        Two rules, so a short token cannot garble a message:

        * Header material is always scrubbed, whatever the token's length: the token right after
          ``Bearer`` or ``Authorization:`` (as in ``Authorization: Bearer <token>``, or a repr of the
          headers), when nothing token-like follows it.
        * The bare token is scrubbed anywhere only when it has at least 8 characters (Cloudflare's API tokens
          have 40). A shorter one, such as ``"t"`` in a test, would otherwise replace every ``t`` in the text.

        Example::

            core.redact("Authorization: Bearer t; no such table: t")  # token "t"
            # 'Authorization: Bearer ***; no such table: t'
        """
        token = self.config.api_token
        if not token:
            return text
        text = self._token_in_header.sub(r"\g<prefix>***", text)
        if len(token) >= _MIN_BARE_TOKEN_LENGTH:
            # Also its escaped forms (a repr of bytes or str shows control characters as \r, \x00, ...).
            for form in {token, token.encode("unicode_escape").decode("ascii"), repr(token)[1:-1]}:
                text = text.replace(form, "***")
        return text

    def describe(self, cls_name: str) -> str:
        c = self.config
        return f"{cls_name}(account_id={c.account_id!r}, database_id={c.database_id!r}, base_url={c.base_url!r})"

    # URLs

    def _account_url(self) -> str:
        return f"{self.config.base_url}/accounts/{quote(self.config.account_id, safe='')}/d1/database"

    def _database_url(self, database_id: str) -> str:
        return f"{self._account_url()}/{quote(database_id, safe='')}"

    # SQL requests

    def statement_request(
        self, sql: str, params: Sequence[Any], *, raw: bool = False, idempotent: bool = False
    ) -> ApiRequest:
        """``POST .../query`` (or ``/raw``) with a single ``{"sql", "params"}`` body."""
        body = _statement_body(sql, params)
        safe = idempotent or is_read_only(sql)
        return self._sql_request(body, raw=raw, statement=sql, safe=safe, statements=_count_statements(sql))

    def batch_request(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, raw: bool = False, idempotent: bool = False
    ) -> ApiRequest:
        """``POST .../query`` (or ``/raw``) with one ``{"batch": [...]}`` body: atomic on D1."""
        items = []
        for index, (sql, params) in enumerate(statements, start=1):
            try:
                items.append(_statement_body(sql, params))
            except ValueEncodingError as exc:
                raise ValueEncodingError(f"statement {index} of the batch: {exc}") from exc
        safe = idempotent or all(is_read_only(sql) for sql, _ in statements)
        first = statements[0][0] if statements else None
        count = sum(_count_statements(sql) for sql, _ in statements)
        return self._sql_request({"batch": items}, raw=raw, statement=first, safe=safe, statements=count)

    def _sql_request(
        self, body: dict[str, Any], *, raw: bool, statement: str | None, safe: bool, statements: int
    ) -> ApiRequest:
        endpoint = "raw" if raw else "query"
        url = f"{self._database_url(self.config.require_database_id())}/{endpoint}"
        return ApiRequest(
            "POST", url, _encode_body(body), statement=statement, safe_to_retry=safe, statements=statements
        )

    # database management

    def list_request(self, page: int, per_page: int, name: str | None) -> ApiRequest:
        params: dict[str, str | int] = {"page": page, "per_page": per_page}
        if name:
            params["name"] = name
        return ApiRequest("GET", self._account_url(), params=params, safe_to_retry=True)

    def create_request(self, name: str, primary_location_hint: str | None, jurisdiction: str | None) -> ApiRequest:
        body: dict[str, str] = {"name": name}
        if primary_location_hint:
            body["primary_location_hint"] = primary_location_hint
        if jurisdiction:
            body["jurisdiction"] = jurisdiction
        return ApiRequest("POST", self._account_url(), _encode_body(body), expects_object=True)

    def get_request(self, database_id: str) -> ApiRequest:
        return ApiRequest("GET", self._database_url(database_id), safe_to_retry=True, expects_object=True)

    def import_request(self, database_id: str, content: bytes, *, safe: bool) -> ApiRequest:
        """``POST .../import`` (init, ingest or poll; see :mod:`~d1sync.client.imports`): answers an object."""
        url = f"{self._database_url(database_id)}/import"
        return ApiRequest("POST", url, content, safe_to_retry=safe, expects_object=True)

    def delete_request(self, database_id: str) -> ApiRequest:
        # Not retried: a DELETE that went through but lost its answer would come back as 7404.
        return ApiRequest("DELETE", self._database_url(database_id))

    # responses

    def observe_rate_limit(self, limiter: RateLimiter | None, headers: Mapping[str, str], ticket: int | None) -> None:
        """Tell ``limiter`` what a response (success or error) says of the account's budget; ``ticket`` is
        what the limiter's ``acquire`` returned for the request."""
        if limiter is None:
            return
        status = parse_rate_limit(headers)
        if status is not None:
            limiter.observe(status.remaining, status.reset, ticket=ticket)

    def parse_response(
        self, request: ApiRequest, status: int, headers: Mapping[str, str], content: bytes
    ) -> dict[str, Any]:
        """The envelope of a successful response; raises the classified :class:`D1Error` otherwise."""
        try:
            data = decode_json(content) if content.strip() else None
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            data = None
        if not isinstance(data, dict) or not ("success" in data or "errors" in data):
            raise self._redacted(non_envelope_error(status, content, headers, request.statement))
        if data.get("success") is True and 200 <= status < 300:
            missing = unproven(data, statements=request.statements, expects_object=request.expects_object)
            if missing is None:
                return data
            # Gateways and partial outages answer so: the request may or may not have been carried out.
            raise UnprovenResultError(
                f"D1's answer says success but proves nothing: {missing}; the outcome is unknown",
                status=status,
                statement=request.statement,
            )
        errors = [e for e in data.get("errors") or [] if isinstance(e, Mapping)]
        code = errors[0].get("code") if errors else None
        messages = [str(e.get("message", "")).strip() for e in errors]
        message = "; ".join(m for m in messages if m) or f"D1 reported a failure without a message (HTTP {status})"
        raise self._redacted(
            classify_error(
                status=status,
                code=code if isinstance(code, int) else None,
                message=message,
                statement=request.statement,
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        )

    def _redacted(self, error: D1Error) -> D1Error:
        clean = self.redact(error.message)
        if clean != error.message:
            error.message = clean
            error.args = (clean,)
        return error

    def _elements(self, request: ApiRequest, envelope: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        result = envelope.get("result")
        if result is None:
            return []
        if isinstance(result, Mapping):
            result = [result]
        if not isinstance(result, list) or not all(isinstance(e, Mapping) for e in result):
            raise D1Error(
                f"unexpected D1 response: 'result' is {type(result).__name__}, not a list of statement results",
                statement=request.statement,
            )
        return result

    def query_results(self, request: ApiRequest, envelope: Mapping[str, Any]) -> list[Result]:
        """``/query`` elements as :class:`Result` (rows as dicts; BLOB byte arrays become ``bytes``)."""
        out = []
        for element in self._elements(request, envelope):
            rows = element.get("results") or []
            decoded = [{k: decode_row_value(v) for k, v in row.items()} for row in rows if isinstance(row, Mapping)]
            out.append(Result(decoded, Meta.from_dict(element.get("meta")), bool(element.get("success", True))))
        return out

    def raw_results(self, request: ApiRequest, envelope: Mapping[str, Any]) -> list[RawResult]:
        """``/raw`` elements as :class:`RawResult` (column names kept even with no rows)."""
        out = []
        for element in self._elements(request, envelope):
            body = element.get("results") or {}
            columns = [str(c) for c in body.get("columns") or []]
            rows = [[decode_row_value(v) for v in row] for row in body.get("rows") or []]
            out.append(RawResult(columns, rows, Meta.from_dict(element.get("meta"))))
        return out

    def json_result(self, envelope: Mapping[str, Any]) -> Any:
        return envelope.get("result")

    # transport failures and retries

    def transport_error(self, exc: httpx.RequestError, request: ApiRequest) -> D1Error:
        """Translate an httpx failure (no HTTP answer) into the d1sync error; the token never shows.

        The statement is left out: with no answer, the SQL says nothing about the failure.
        """
        kind = type(exc).__name__
        detail = self.redact(str(exc)).strip()
        suffix = f": {detail}" if detail else ""
        if isinstance(exc, httpx.TimeoutException):
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                return RequestTimeoutError(f"could not connect to {self.host} in time ({kind})")
            return RequestTimeoutError(
                f"no answer from {self.host} in time ({kind}); a write may still have been applied"
            )
        if isinstance(exc, httpx.ConnectError):
            return UnreachableError(f"nothing answers at {self.base}{_refused(detail)}")
        if isinstance(exc, httpx.TransportError):
            return NetworkError(f"connection to {self.host} failed ({kind}){suffix}")
        return TransientError(f"request to {self.host} failed ({kind}){suffix}")

    def retry_delay(self, request: ApiRequest, error: D1Error, attempt: int) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt`` (0-based), or None to give up.

        Retries happen only for retryable errors, within ``max_retries``, and only when resending is safe:
        the request is read-only or marked idempotent, or it provably never left (connection refused). An
        :class:`~d1sync.errors.ExecutionTimeoutError` is not resent as is: it goes to the caller at once.
        """
        if not error.retryable or attempt >= self.policy.max_retries:
            return None
        if isinstance(error, ExecutionTimeoutError):
            # The same request would most likely run past D1's 30 s again: its caller decides (send less).
            return None
        if not (request.safe_to_retry or isinstance(error.__cause__, _NOT_SENT)):
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after) if retry_after <= self.policy.max_retry_after else None
        return self.policy.delay(attempt, self.rng)


@dataclass
class DatabasePager:
    """Walks ``GET /accounts/{a}/d1/database`` page by page until a short or repeated page."""

    core: ClientCore
    name: str | None = None
    per_page: int = 100
    max_pages: int = 1000
    items: list[dict[str, Any]] = field(default_factory=list)
    _page: int = 1
    _done: bool = False
    _seen: set[str] = field(default_factory=set)

    def next_request(self) -> ApiRequest | None:
        if self._done or self._page > self.max_pages:
            return None
        return self.core.list_request(self._page, self.per_page, self.name)

    def feed(self, envelope: Mapping[str, Any]) -> None:
        result = envelope.get("result") or []
        page = [dict(item) for item in result if isinstance(item, Mapping)] if isinstance(result, list) else []
        fresh = [item for item in page if str(item.get("uuid")) not in self._seen]
        self._seen.update(str(item.get("uuid")) for item in fresh)
        self.items.extend(fresh)
        info = envelope.get("result_info")
        total = info.get("total_count") if isinstance(info, Mapping) else None
        # A server that ignores paging repeats page 1: stop when nothing new arrives.
        self._done = (
            len(page) < self.per_page or not fresh or (isinstance(total, int | float) and len(self.items) >= total)
        )
        self._page += 1
