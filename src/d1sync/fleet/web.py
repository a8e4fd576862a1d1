"""What a running fleet shows on ``--metrics-port``: ``/metrics`` (Prometheus text), ``/status.json`` (the
object ``fleet status --json`` prints) and ``/`` (a page of the tenants, worst first, that refreshes itself).

The metrics are the fleet's totals, plus per-tenant series for the ``worst`` tenants only (by how long their
oldest change has waited, then by pending changes), so a fleet of a million tenants never makes a million
label sets. Each scrape reads every tenant's file once (:meth:`~d1sync.fleet.fleet.Fleet.status`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable

from d1sync.fleet.engine import TenantRow
from d1sync.fleet.status import FleetStatus
from d1sync.sync.metrics import Page, PageServer

__all__ = ["D1_MAX_BYTES", "FleetServer", "fleet_metrics", "fleet_page", "worst"]

D1_MAX_BYTES = 10 * 1000**3
"""A D1 database's size cap (10 GB)."""
_TOTALS = (
    ("tenants", "Tenant files in the fleet."),
    ("pending", "Change-log rows not yet acknowledged, all tenants."),
    ("dead", "Changes refused for good, all tenants."),
    ("paused", "Tenants paused (waiting for a fix)."),
    ("failed", "Tenants that could not be bound or opened."),
    ("missing", "Tenant files that disappeared (their databases are kept)."),
    ("size_bytes", "D1 size of every tenant database, as last seen."),
)


def worst(status: FleetStatus, count: int) -> list[TenantRow]:
    """The ``count`` tenants that lag most: oldest waiting change first, then most pending."""
    rows = sorted(status.tenants, key=lambda r: (-(r.oldest_pending_seconds or 0.0), -r.pending, r.file))
    return rows[:count]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fleet_metrics(status: FleetStatus, count: int = 10) -> str:
    """``status`` in the Prometheus text format: totals, the budget, and the ``count`` worst tenants."""
    lines: list[str] = []

    def family(name: str, help_text: str) -> None:
        lines.extend([f"# HELP d1sync_fleet_{name} {help_text}", f"# TYPE d1sync_fleet_{name} gauge"])

    for key, help_text in _TOTALS:
        family(key, help_text)
        lines.append(f"d1sync_fleet_{key} {status.totals.get(key, 0)}")
    budget = status.totals.get("budget")
    if budget:
        family("budget_available", "Requests the shared rate limiter could send now.")
        lines.append(f"d1sync_fleet_budget_available {budget['available']}")
        family("budget_rate", "Requests the budget allows per window (budget_window_seconds).")
        lines.append(f"d1sync_fleet_budget_rate {budget['rate']}")
        family("budget_window_seconds", "The budget's window.")
        lines.append(f"d1sync_fleet_budget_window_seconds {budget['per']}")
    chosen = worst(status, count)
    series: tuple[tuple[str, str, Callable[[TenantRow], float | None]], ...] = (
        ("tenant_pending", "Pending changes of the worst tenants.", lambda r: r.pending),
        (
            "tenant_oldest_pending_seconds",
            "Age of the oldest change, worst tenants.",
            lambda r: r.oldest_pending_seconds,
        ),
        ("tenant_dead", "Dead letters of the worst tenants.", lambda r: r.dead),
    )
    for name, help_text, value in series:
        family(name, help_text)
        for row in chosen:
            lines.append(f'd1sync_fleet_{name}{{file="{_label(row.file)}"}} {value(row) or 0}')
    return "\n".join(lines) + "\n"


def fleet_page(status: FleetStatus, refresh: int = 5) -> str:
    """The HTML page: tenants sorted by lag, with pending, lag, dead letters, pause, size against 10 GB,
    and the budget."""
    rows = []
    for row in worst(status, len(status.tenants)):
        size = "" if row.size_bytes is None else f"{row.size_bytes / D1_MAX_BYTES:.2%}"
        lag = "" if row.oldest_pending_seconds is None else f"{row.oldest_pending_seconds:.0f} s"
        cells = [row.file, row.database_name or "", row.state, f"{row.pending:,}", lag, f"{row.dead:,}"]
        cells += [row.paused or row.last_error or "", size]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    totals = status.totals
    budget = totals.get("budget")
    spent = ""
    if budget:
        spent = f" · budget {budget['rate']} requests/{budget['per']:g}s, {budget['available']:.0f} at hand now"
    head = "".join(
        f"<th>{h}</th>"
        for h in ("file", "database", "state", "pending", "lag", "dead", "paused / error", "size of 10 GB")
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{refresh}'><title>d1sync fleet</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style></head><body>"
        f"<h1>d1sync fleet</h1><p id='totals'>{totals['tenants']} tenants · {totals['pending']:,} pending · "
        f"{totals['dead']:,} dead · {totals['paused']} paused · {totals['failed']} failed · "
        f"{totals['missing']} missing{html.escape(spent)}</p>"
        f"<table id='tenants'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>"
    )


class FleetServer(PageServer):
    """Serves a fleet's ``/metrics``, ``/status.json`` and ``/`` on ``host:port`` in a daemon thread.

    ``port=0`` picks a free port (:attr:`port`); a busy port raises ``OSError``.

    Example::

        with FleetServer(fleet.status, port=9108) as server:
            server.url          # http://127.0.0.1:9108/
    """

    def __init__(
        self, status: Callable[[], FleetStatus], *, port: int, host: str = "127.0.0.1", worst: int = 10
    ) -> None:
        routes: dict[str, Page] = {
            "/metrics": ("text/plain; version=0.0.4", lambda: fleet_metrics(status(), worst)),
            "/status.json": ("application/json", lambda: json.dumps(status().to_dict(), ensure_ascii=False)),
            "/": ("text/html; charset=utf-8", lambda: fleet_page(status())),
        }
        super().__init__(lambda path: routes.get(path.split("?", 1)[0]), port=port, host=host, name="d1sync-fleet-web")
