"""Prometheus metrics of an outbox and its worker, through prometheus_client, and a small page server.

Every metric is named ``d1sync_<name>``. :class:`WorkerCollector` reads them at each scrape: gauges from
:class:`~d1sync.sync.status.Status` (read from the file, so they are right even while another process holds
the lease), counters from the worker's :class:`Counters`. :class:`PageServer` serves any page by path; the
fleet's web server (:mod:`d1sync.fleet.web`) is one, :class:`MetricsServer` (``run --metrics-port``) another.

Example::

    registry = worker_registry(path, worker.counters)       # + the process's CPU, memory and open files
    with MetricsServer(registry, port=9108) as server:
        server.url      # http://127.0.0.1:9108/metrics
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from d1sync.sqlite import Connection
from d1sync.sync.model import Counters
from d1sync.sync.status import Status, read_status

__all__ = [
    "CONTENT_TYPE",
    "GAUGES",
    "MetricsServer",
    "Page",
    "PageServer",
    "WorkerCollector",
    "exposition",
    "metrics_text",
    "prometheus_text",
    "worker_families",
    "worker_registry",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The content type of ``/metrics`` (Prometheus' text format, as prometheus_client writes it)."""

GAUGES: tuple[tuple[str, str, Callable[[Status], float]], ...] = (
    ("pending_changes", "Change-log rows not yet acknowledged by D1.", lambda s: s.pending_changes),
    ("pending_keys", "Distinct rows with pending changes.", lambda s: s.pending_keys),
    ("oldest_pending_age_seconds", "Age of the oldest pending change.", lambda s: s.oldest_pending_age or 0.0),
    ("dead_letters", "Changes refused permanently by D1.", lambda s: s.dead_letters),
    ("backoff_seconds", "Seconds until the next attempt after a failure.", lambda s: s.backoff_remaining),
    ("paused", "1 when the worker is paused (auth, missing database, schema).", lambda s: int(bool(s.paused))),
    ("last_success_timestamp_seconds", "When a request was last acknowledged.", lambda s: s.last_success or 0),
)
"""Each gauge's name, help text and value."""


def worker_families(status: Status, counters: Counters | None = None) -> list[Metric]:
    """The metric families of ``status`` and the worker's ``counters``: ``d1sync_<gauge>`` and
    ``d1sync_<counter>_total``."""
    families: list[Metric] = []
    for name, help_text, value in GAUGES:
        families.append(GaugeMetricFamily(f"d1sync_{name}", help_text, value=float(value(status))))
    for name, total in sorted((counters.as_metrics() if counters else {}).items()):
        help_text = f"Worker counter: {name.replace('_', ' ')}."
        families.append(CounterMetricFamily(f"d1sync_{name}", help_text, value=float(total)))
    return families


class WorkerCollector(Collector):
    """A prometheus_client collector of the outbox in ``path``: it opens the file, reads its status and closes
    it at each scrape, and adds the worker's ``counters`` (None: gauges only)."""

    def __init__(self, path: str | os.PathLike[str], counters: Counters | None = None) -> None:
        self.path = path
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        with Connection(self.path) as conn:
            status = read_status(conn)
        yield from worker_families(status, self.counters)


class _Fixed(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def worker_registry(
    path: str | os.PathLike[str], counters: Counters | None = None, *, process: bool = True
) -> CollectorRegistry:
    """A registry of the outbox in ``path`` (:class:`WorkerCollector`), with the process' own ``process_*``
    metrics (CPU seconds, resident memory, open files) unless ``process=False``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(path, counters))
    if process:
        ProcessCollector(registry=registry)
    return registry


def exposition(registry: Collector) -> str:
    """What ``registry`` collects now, in the Prometheus text format."""
    return generate_latest(registry).decode()


def prometheus_text(status: Status, counters: Counters | None = None) -> str:
    """Render ``status`` (and worker counters) in the Prometheus text exposition format."""
    return exposition(_Fixed(worker_families(status, counters)))


def metrics_text(path: str | os.PathLike[str], counters: Counters | None = None) -> str:
    """The metrics of the outbox in ``path`` right now (opens and closes its own connection)."""
    return exposition(WorkerCollector(path, counters))


Page = tuple[str, Callable[[], str]]
"""What a :class:`PageServer` answers for a path: its content type, and the function that renders it."""


class PageServer:
    """Serves what ``route(path)`` gives for each GET (404 for None) at ``http://HOST:PORT``, in a daemon thread.

    ``port=0`` picks a free port (see :attr:`port`). Binding fails with ``OSError`` (a busy port), which the
    caller reports. ``home`` is the path :attr:`url` names.
    """

    def __init__(
        self,
        route: Callable[[str], Page | None],
        *,
        port: int,
        host: str = "127.0.0.1",
        home: str = "/",
        name: str = "d1sync-pages",
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                page = route(self.path)
                if page is None:
                    self.send_error(404)
                    return
                body = page[1]().encode()
                self.send_response(200)
                self.send_header("Content-Type", page[0])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.host = host
        self.port = int(self._server.server_address[1])
        self.home = home
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.home}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MetricsServer(PageServer):
    """Serves ``source`` at ``http://HOST:PORT/metrics`` (and ``/``) in a daemon thread: a prometheus_client
    registry (or collector), collected at each scrape, or a function that renders the text itself."""

    def __init__(self, source: Collector | Callable[[], str], *, port: int, host: str = "127.0.0.1") -> None:
        if hasattr(source, "collect"):
            registry = cast(Collector, source)
            page: Page = (CONTENT_TYPE, lambda: exposition(registry))
        else:
            page = (CONTENT_TYPE, source)
        super().__init__(
            lambda path: page if path.split("?", 1)[0].rstrip("/") in ("", "/metrics") else None,
            port=port,
            host=host,
            home="/metrics",
            name="d1sync-metrics",
        )
