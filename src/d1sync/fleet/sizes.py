"""D1's size of each of a fleet's databases (``file_size``), read from one listing of the account.

A listing costs a request per 100 databases, so it is paced to a sliver of the budget (:func:`size_interval`)
and skipped while the budget has no token to spare (:func:`list_sizes`): the tenants' own requests come first.
"""

from __future__ import annotations

import logging

from d1sync.client import D1Client, RateLimiter
from d1sync.errors import D1SyncError

__all__ = ["LIST_PAGE", "SHARE", "list_sizes", "size_interval"]

log = logging.getLogger("d1sync.fleet")

LIST_PAGE = 100
"""Databases per page of the account's listing (the client's page size)."""
SHARE = 0.01
"""The most of the budget that reading the sizes may spend."""


def _pages(databases: int) -> int:
    return max(1, -(-databases // LIST_PAGE))


def size_interval(least: float, databases: int, limiter: RateLimiter | None) -> float:
    """Seconds between listings: ``least``, or longer where the pages would spend more than :data:`SHARE` of
    ``limiter``'s budget (1,000 databases at 1,200/300 s: 10 pages, at most every 250 s)."""
    if limiter is None:
        return least
    return max(least, _pages(databases) * limiter.per / (SHARE * limiter.rate))


def list_sizes(account: D1Client, databases: int, limiter: RateLimiter | None) -> dict[str, int] | None:
    """Each database's ``file_size`` by id, from one listing; None when skipped (no token to spare) or failed."""
    if limiter is not None and limiter.available() < _pages(databases) + 1:
        return None
    try:
        listed = account.list_databases()
    except D1SyncError as exc:
        log.info("could not read the databases' sizes: %s", exc)
        return None
    return {str(d.get("uuid")): int(d["file_size"]) for d in listed if isinstance(d.get("file_size"), int)}
