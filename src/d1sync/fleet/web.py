"""What a running fleet shows on ``--metrics-port``: ``/metrics`` (prometheus_client), ``/status.json`` (the
object ``fleet status --json`` prints) and ``/`` (a page of the tenants, worst first, that refreshes itself).

The metrics are the fleet's totals, plus per-tenant series for the ``worst`` tenants only (by how long their
oldest change has waited, then by pending changes), so a fleet of a million tenants never makes a million
label sets. Each scrape reads every tenant's file once (:meth:`~d1sync.fleet.fleet.Fleet.status`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from d1sync.fleet.engine import TenantRow
from d1sync.fleet.status import FleetStatus
from d1sync.sync.metrics import CONTENT_TYPE, Page, PageServer, exposition

__all__ = [
    "D1_MAX_BYTES",
    "FleetCollector",
    "FleetServer",
    "fleet_families",
    "fleet_metrics",
    "fleet_page",
    "fleet_registry",
    "worst",
]

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


_TENANT_SERIES: tuple[tuple[str, str, Callable[[TenantRow], float | None]], ...] = (
    ("tenant_pending", "Pending changes of the worst tenants.", lambda r: r.pending),
    ("tenant_oldest_pending_seconds", "Age of the oldest change, worst tenants.", lambda r: r.oldest_pending_seconds),
    ("tenant_dead", "Dead letters of the worst tenants.", lambda r: r.dead),
    (
        "tenant_paused",
        "1 for a worst tenant that is paused or failed.",
        lambda r: int(bool(r.paused) or r.state == "failed"),
    ),
    ("tenant_size_bytes", "D1 size of the worst tenants' databases, as last seen.", lambda r: r.size_bytes),
)
_LABELS = ["tenant", "file"]
"""``tenant`` names the tenant (its file name); ``file`` is the same value, the label of 0.x releases."""


def fleet_families(status: FleetStatus, count: int = 10) -> list[Metric]:
    """``status`` as metric families: totals, the requests and rows sent, the budget, and per-tenant series for
    the ``count`` worst tenants only (so a million tenants never make a million label sets)."""
    totals = status.totals
    families: list[Metric] = []
    for key, help_text in _TOTALS:
        families.append(GaugeMetricFamily(f"d1sync_fleet_{key}", help_text, value=float(totals.get(key, 0))))
    requests, rows = sum(r.requests for r in status.tenants), sum(r.rows for r in status.tenants)
    help_requests = "Requests sent by every tenant since the fleet started."
    families.append(CounterMetricFamily("d1sync_fleet_requests", help_requests, value=float(requests)))
    help_rows = "Rows acknowledged by D1, every tenant, since the fleet started."
    families.append(CounterMetricFamily("d1sync_fleet_rows_sent", help_rows, value=float(rows)))
    budget = totals.get("budget")
    if budget:
        for key, name, help_text in (
            ("available", "budget_available", "Requests the shared rate limiter could send now."),
            ("rate", "budget_rate", "Requests the budget allows per window (budget_window_seconds)."),
            ("per", "budget_window_seconds", "The budget's window."),
        ):
            families.append(GaugeMetricFamily(f"d1sync_fleet_{name}", help_text, value=float(budget[key])))
    chosen = worst(status, count)
    for name, help_text, read in _TENANT_SERIES:
        family = GaugeMetricFamily(f"d1sync_fleet_{name}", help_text, labels=_LABELS)
        for row in chosen:
            family.add_metric([row.file, row.file], float(read(row) or 0))
        families.append(family)
    return families


class FleetCollector(Collector):
    """A prometheus_client collector of a fleet: ``status()`` is called once per scrape (see
    :func:`fleet_families`)."""

    def __init__(self, status: Callable[[], FleetStatus], worst: int = 10) -> None:
        self.status = status
        self.worst = worst

    def collect(self) -> Iterator[Metric]:
        yield from fleet_families(self.status(), self.worst)


class _Snapshot(Collector):
    def __init__(self, status: FleetStatus, worst: int) -> None:
        self.families = fleet_families(status, worst)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def fleet_registry(status: Callable[[], FleetStatus], worst: int = 10, *, process: bool = True) -> CollectorRegistry:
    """A registry of the fleet (:class:`FleetCollector`), with the process' own ``process_*`` metrics unless
    ``process=False``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(status, worst))
    if process:
        ProcessCollector(registry=registry)
    return registry


def fleet_metrics(status: FleetStatus, count: int = 10) -> str:
    """``status`` in the Prometheus text format: totals, the budget, and the ``count`` worst tenants."""
    return exposition(_Snapshot(status, count))


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
        registry = fleet_registry(status, worst)
        routes: dict[str, Page] = {
            "/metrics": (CONTENT_TYPE, lambda: exposition(registry)),
            "/status.json": ("application/json", lambda: json.dumps(status().to_dict(), ensure_ascii=False)),
            "/": ("text/html; charset=utf-8", lambda: fleet_page(status())),
        }
        super().__init__(lambda path: routes.get(path.split("?", 1)[0]), port=port, host=host, name="d1sync-fleet-web")
