"""Prometheus metrics of an outbox and its worker: the text format, and a small server for ``/metrics``.

Every metric is named ``d1sync_<name>``; gauges come from :class:`~d1sync.sync.status.Status` (read from
the file at each scrape, so they are right even while another process holds the lease), counters from the
worker's :class:`Counters`.

Example::

    with MetricsServer(lambda: metrics_text(path, worker.counters), port=9108) as server:
        server.url      # http://127.0.0.1:9108/metrics
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from d1sync.sqlite import Connection
from d1sync.sync.model import Counters
from d1sync.sync.status import Status, read_status

__all__ = ["GAUGES", "MetricsServer", "Page", "PageServer", "metrics_text", "prometheus_text"]

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


def prometheus_text(status: Status, counters: Counters | None = None) -> str:
    """Render ``status`` (and worker counters) in the Prometheus text exposition format."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float) -> None:
        lines.append(f"# HELP d1sync_{name} {help_text}")
        lines.append(f"# TYPE d1sync_{name} {kind}")
        lines.append(f"d1sync_{name} {value}")

    for name, help_text, value in GAUGES:
        metric(name, "gauge", help_text, value(status))
    for name, total in sorted((counters.as_metrics() if counters else {}).items()):
        metric(f"{name}_total", "counter", f"Worker counter: {name.replace('_', ' ')}.", total)
    return "\n".join(lines) + "\n"


def metrics_text(path: str | os.PathLike[str], counters: Counters | None = None) -> str:
    """The metrics of the outbox in ``path`` right now (opens and closes its own connection)."""
    with Connection(path) as conn:
        return prometheus_text(read_status(conn), counters)


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
    """Serves ``render()`` as Prometheus text at ``http://HOST:PORT/metrics`` (and ``/``) in a daemon thread."""

    def __init__(self, render: Callable[[], str], *, port: int, host: str = "127.0.0.1") -> None:
        page = ("text/plain; version=0.0.4", render)
        super().__init__(
            lambda path: page if path.rstrip("/") in ("", "/metrics") else None,
            port=port,
            host=host,
            home="/metrics",
            name="d1sync-metrics",
        )
