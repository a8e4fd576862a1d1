"""What a response's headers say about waiting: ``retry-after`` and the account's rate-limit budget.

Pure functions over header values, no I/O (part of the sans-I/O core).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RateLimitStatus", "parse_rate_limit", "parse_retry_after"]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``retry-after`` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """What a response says about the account's budget: requests ``remaining``, and seconds to ``reset``."""

    remaining: int
    reset: float | None = None


_COUNT = re.compile(r"[0-9]{1,15}")
_SECONDS = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")
_MAX_RESET = 3600.0
"""A longer reset is not believed: Cloudflare's window and lock-out are 5 minutes, and some APIs send a Unix time."""
_SF_PARAM = re.compile(r"\s*([a-z*][a-z0-9_.*-]*)\s*=\s*(.*?)\s*")


def _counts(value: str) -> list[int] | None:
    # A header sent twice reaches httpx as one comma-joined value: every part must read.
    parts = [part.strip() for part in value.split(",")]
    return [int(part) for part in parts] if all(_COUNT.fullmatch(part) for part in parts) else None


def _reset(value: str | None) -> float | None:
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",")]
    if not all(_SECONDS.fullmatch(part) for part in parts):
        return None
    seconds = max(float(part) for part in parts)
    return seconds if seconds <= _MAX_RESET else None


def _policy_items(value: str) -> list[RateLimitStatus]:
    """The items of an IETF-draft ``Ratelimit`` header, e.g. ``"default";r=50;t=30`` (r: remaining, t: reset)."""
    items = []
    for item in value.split(","):
        params: dict[str, str] = {}
        for param in item.split(";")[1:]:
            match = _SF_PARAM.fullmatch(param)
            if match:
                params[match.group(1)] = match.group(2)
        remaining = params.get("r", "")
        if _COUNT.fullmatch(remaining):
            items.append(RateLimitStatus(int(remaining), _reset(params.get("t"))))
    return items


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitStatus | None:
    """The rate-limit status a response reports, or None when it reports none that reads.

    Reads ``x-ratelimit-remaining`` with ``x-ratelimit-reset`` (d1-contract §2), and the IETF-draft
    ``Ratelimit: "default";r=50;t=30`` that Cloudflare's API documents as well; where several figures are
    given, the smallest ``remaining`` wins (and, among equals, the longest reset). Absent, malformed or
    negative figures are ignored, as is a reset longer than an hour; a readable ``remaining`` with an
    unreadable reset still counts, without a reset.
    """
    found: list[RateLimitStatus] = []
    remaining = headers.get("x-ratelimit-remaining")
    counts = _counts(remaining) if remaining is not None else None
    if counts:
        found.append(RateLimitStatus(min(counts), _reset(headers.get("x-ratelimit-reset"))))
    policy = headers.get("ratelimit")
    if policy is not None:
        found.extend(_policy_items(policy))
    if not found:
        return None
    lowest = min(status.remaining for status in found)
    resets = [status.reset for status in found if status.remaining == lowest and status.reset is not None]
    return RateLimitStatus(lowest, max(resets) if resets else None)
