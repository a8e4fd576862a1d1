"""A scripted D1 over httpx.MockTransport: replies from a list, records requests and sleeps."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx

from d1sync.backoff import Backoff
from d1sync.client import AsyncD1Client, D1Client, RetryPolicy

TOKEN = "tok-SECRET-7f3a9c1e5b"
BASE = "http://mock/client/v4"  # dot-less host: no process-wide rate limiter
ACCOUNT = "acct-1"
DATABASE = "db-1"

ENV_VARS = ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "D1_ACCOUNT_ID", "D1_DATABASE_ID", "D1SYNC_API_BASE")


def envelope(result: Any = None, *, success: bool = True, errors: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"result": result, "success": success, "errors": errors or [], "messages": []}).encode()


def ok_rows(*rows: dict[str, Any], meta: dict[str, Any] | None = None) -> httpx.Response:
    """A /query success with one statement result."""
    element = {"results": list(rows), "success": True, "meta": meta or {"changes": 0, "duration": 0.5}}
    return httpx.Response(200, content=envelope([element]), headers={"content-type": "application/json"})


def d1_error(status: int, code: int, message: str, *, result: Any = None, **headers: str) -> httpx.Response:
    body = envelope(result, success=False, errors=[{"code": code, "message": message}])
    return httpx.Response(status, content=body, headers={"content-type": "application/json", **headers})


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class ScriptedD1:
    """Answers requests from a script (the last entry repeats) and records every request and every sleep."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            if isinstance(reply, httpx.RequestError):
                reply.request = request
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    @staticmethod
    def _retry(kwargs: dict[str, Any]) -> None:
        """Let tests give the RetryPolicy's figures as keywords (max_retries, backoff_base, ...)."""
        figures = {
            k: kwargs.pop(k) for k in ("max_retries", "backoff_base", "backoff_cap", "max_retry_after") if k in kwargs
        }
        if figures:
            backoff = Backoff(base=figures.pop("backoff_base", 0.5), cap=figures.pop("backoff_cap", 30.0))
            kwargs["retry"] = RetryPolicy(backoff=backoff, **figures)

    def client(self, **kwargs: Any) -> D1Client:
        options: dict[str, Any] = {
            "account_id": ACCOUNT,
            "database_id": DATABASE,
            "api_token": TOKEN,
            "base_url": BASE,
            "transport": self.transport,
            "sleep": self.sleep,
            "rng": random.Random(1),
        }
        self._retry(kwargs)
        options.update(kwargs)
        return D1Client(**options)

    def async_client(self, **kwargs: Any) -> AsyncD1Client:
        options: dict[str, Any] = {
            "account_id": ACCOUNT,
            "database_id": DATABASE,
            "api_token": TOKEN,
            "base_url": BASE,
            "transport": self.transport,
            "sleep": self.async_sleep,
            "rng": random.Random(1),
        }
        self._retry(kwargs)
        options.update(kwargs)
        return AsyncD1Client(**options)
