"""Status of an outbox, readable from the file alone (no running worker needed), and Prometheus text."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

from d1sync.outbox.schema import get_meta

__all__ = ["Status", "prometheus_text", "read_status"]


@dataclass(frozen=True)
class Status:
    """A snapshot of the outbox.

    Attributes:
        pending_changes: change-log rows not yet acknowledged.
        pending_keys: distinct rows (table, key) those changes touch.
        oldest_pending_age: seconds since the oldest pending change was captured (None if none).
        dead_letters: changes D1 refused permanently (see ``d1sync dead``).
        tables: synced tables.
        last_success: epoch seconds of the last acknowledged request, if any.
        last_error: the last failure (message, kind, code, status, at), if any.
        backoff_remaining: seconds until the next attempt after a failure (0 if none).
        paused: why the worker is paused (auth error, missing database, schema mismatch), if it is.
        lease_owner: the worker currently holding the drain lease, if its lease is live.
        rows_per_second: throughput of the last successful pass (rows sent / its duration).
        rate_budget: the API requests the worker's client could still send at its last success
            (``available``, out of ``rate`` per ``per`` seconds), if its client has a rate limiter.
    """

    pending_changes: int
    pending_keys: int
    oldest_pending_age: float | None
    dead_letters: int
    tables: list[str]
    last_success: float | None
    last_error: dict[str, Any] | None
    backoff_remaining: float
    paused: str | None
    lease_owner: str | None
    rows_per_second: float | None = None
    rate_budget: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_status(conn: sqlite3.Connection, *, now: float | None = None) -> Status:
    now = time.time() if now is None else now
    pending, oldest = conn.execute("SELECT count(*), min(created_at) FROM _d1sync_changes").fetchone()
    keys = conn.execute("SELECT count(*) FROM (SELECT 1 FROM _d1sync_changes GROUP BY tbl, key)").fetchone()[0]
    dead = conn.execute("SELECT count(*) FROM _d1sync_dead").fetchone()[0]
    tables = [str(r[0]) for r in conn.execute("SELECT tbl FROM _d1sync_tables ORDER BY tbl")]
    lease = get_meta(conn, "lease")
    backoff_until = float(get_meta(conn, "backoff_until", 0) or 0)
    return Status(
        pending_changes=int(pending),
        pending_keys=int(keys),
        oldest_pending_age=None if oldest is None else max(0.0, now - oldest / 1000),
        dead_letters=int(dead),
        tables=tables,
        last_success=get_meta(conn, "last_success"),
        last_error=get_meta(conn, "last_error"),
        backoff_remaining=max(0.0, backoff_until - now),
        paused=get_meta(conn, "paused"),
        lease_owner=lease["owner"] if lease and lease["expires"] > now else None,
        rows_per_second=_rate(get_meta(conn, "last_pass")),
        rate_budget=get_meta(conn, "rate_budget"),
    )


def _rate(last_pass: dict[str, float] | None) -> float | None:
    if not last_pass or not last_pass.get("seconds"):
        return None
    return round(last_pass["rows"] / last_pass["seconds"], 1)


def prometheus_text(status: Status, counters: dict[str, float] | None = None) -> str:
    """Render ``status`` (and worker counters) in the Prometheus text exposition format."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float) -> None:
        lines.append(f"# HELP d1sync_{name} {help_text}")
        lines.append(f"# TYPE d1sync_{name} {kind}")
        lines.append(f"d1sync_{name} {value}")

    metric("pending_changes", "gauge", "Change-log rows not yet acknowledged by D1.", status.pending_changes)
    metric("pending_keys", "gauge", "Distinct rows with pending changes.", status.pending_keys)
    metric(
        "oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest pending change.",
        status.oldest_pending_age or 0.0,
    )
    metric("dead_letters", "gauge", "Changes refused permanently by D1.", status.dead_letters)
    metric("backoff_seconds", "gauge", "Seconds until the next attempt after a failure.", status.backoff_remaining)
    metric("paused", "gauge", "1 when the worker is paused (auth, missing database, schema).", int(bool(status.paused)))
    metric("last_success_timestamp_seconds", "gauge", "When a request was last acknowledged.", status.last_success or 0)
    for name, value in sorted((counters or {}).items()):
        metric(f"{name}_total", "counter", f"Worker counter: {name.replace('_', ' ')}.", value)
    return "\n".join(lines) + "\n"
