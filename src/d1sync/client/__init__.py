"""The D1 REST client: :class:`D1Client` (blocking) and :class:`AsyncD1Client` (asyncio), one sans-I/O core.

::

    from d1sync.client import D1Client, RateLimiter

    with D1Client(database_id="...") as db:     # token and account from CLOUDFLARE_API_TOKEN / _ACCOUNT_ID
        db.prepare("SELECT * FROM notes WHERE id = ?").bind(1).first()
        db.batch([db.prepare("INSERT ...").bind(...), ...])        # one atomic request

See ``docs/client.md`` for errors, retries, rate limiting, big integers and BLOBs.
"""

from __future__ import annotations

from ._async import AsyncD1Client
from ._core import RetryPolicy, is_read_only
from ._sync import D1Client
from .config import ClientConfig, resolve_config
from .imports import ImportHandle, ImportResult
from .ratelimit import RateLimiter, default_limiter

__all__ = [
    "AsyncD1Client",
    "ClientConfig",
    "D1Client",
    "ImportHandle",
    "ImportResult",
    "RateLimiter",
    "RetryPolicy",
    "default_limiter",
    "is_read_only",
    "resolve_config",
]
