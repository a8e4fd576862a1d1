"""Run the emulator on a real loopback socket: uvicorn in a background thread.

Example::

    with EmulatorServer(tmp_path, token="t", auto_create=True) as srv:
        client = D1Client(account_id="acct", database_id=DEFAULT_DATABASE_ID, api_token="t",
                          base_url=srv.api_base)
        srv.app.state.faults.update(error_rate=0.2)   # faults can change while it runs
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Generator
from types import FrameType, TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette

from d1sync.emulator import DEFAULT_MAX_BODY, DEFAULT_MAX_DURATION, DEFAULT_MAX_IMPORT
from d1sync.emulator.app import API_PREFIX, ConnectionDropped, create_app
from d1sync.emulator.faults import FaultConfig

__all__ = [
    "EmulatorServer",
    "StopOnSignals",
    "bind_socket",
    "quiet_uvicorn_logs",
    "run_foreground",
    "uvicorn_config",
]

_START_TIMEOUT = 10.0


class _HideInjectedDrops(logging.Filter):
    """uvicorn logs every app exception with a traceback; an injected drop is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


_FILTER = _HideInjectedDrops()


def quiet_uvicorn_logs() -> None:
    """Hide injected connection drops from uvicorn's error log (idempotent)."""
    error_logger = logging.getLogger("uvicorn.error")
    if _FILTER not in error_logger.filters:
        error_logger.addFilter(_FILTER)


def uvicorn_config(app: Starlette, *, log_level: str = "warning") -> uvicorn.Config:
    """uvicorn settings shared by :class:`EmulatorServer` and ``d1sync emulator``.

    No access log (requests carry tokens in headers only, but the log is noise); logging configuration is
    left to the host program; a short graceful shutdown so held (timed-out) responses do not block exit.
    """
    return uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
        ws="none",
    )


class _ForegroundServer(uvicorn.Server):
    """uvicorn whose signals are :class:`StopOnSignals`'s: it neither installs handlers nor re-raises."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class StopOnSignals:
    """SIGINT/SIGTERM stop the foreground emulator gracefully from the moment this is entered.

    Enter it before the socket listens: a supervisor that signals as soon as the port answers then gets a
    graceful stop and exit 0, not a death by the signal (the socket accepts connections from ``listen()``,
    before uvicorn would install its own handlers). A second SIGINT exits at once, as uvicorn's does.

    Example::

        with StopOnSignals() as stop:
            sock = bind_socket("127.0.0.1", 8787)
            stop.serve(app, sock)   # returns after a signal
    """

    def __init__(self) -> None:
        self._server: _ForegroundServer | None = None
        self._signalled = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        self._signalled = True
        if self._server is not None:
            self._server.handle_exit(sig, frame)

    def serve(self, app: Starlette, sock: socket.socket) -> None:
        """Serve ``app`` on the bound ``sock`` in this (main) thread until a signal, then return."""
        quiet_uvicorn_logs()
        self._server = _ForegroundServer(uvicorn_config(app))
        # A signal before this line found no server: it stops this one before it serves a request.
        self._server.should_exit = self._signalled
        self._server.run(sockets=[sock])


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free one), ready for uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets that say they are TCP.
    # Without it, Nagle's algorithm and delayed ACKs add ~40 ms to every response on loopback.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def run_foreground(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on the bound ``sock`` in this (main) thread until SIGINT/SIGTERM, then return.

    Signals that arrive before this call are not handled: bind inside :class:`StopOnSignals` for that.
    """
    with StopOnSignals() as stop:
        stop.serve(app, sock)


class EmulatorServer:
    """The emulator served by uvicorn on ``host`` (loopback by default) in a daemon thread.

    ``port=0`` picks a free port. Entering the context (or :meth:`start`) returns once the socket accepts
    connections. Attributes: ``url`` (``http://127.0.0.1:PORT``), ``api_base`` (``url + "/client/v4"``),
    ``app`` (the Starlette app: ``app.state.faults``, ``app.state.engine``), ``port``. The other arguments
    are :func:`~d1sync.emulator.app.create_app`'s (``max_body``: the largest request body read, in bytes;
    ``max_duration``: the seconds a request may run; ``max_import``: the largest import upload).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        rate_limit: tuple[int, float] | None = None,
        auto_create: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        max_duration: float = DEFAULT_MAX_DURATION,
        max_import: int = DEFAULT_MAX_IMPORT,
    ) -> None:
        self.app = create_app(
            data_dir,
            token=token,
            faults=faults,
            rate_limit=rate_limit,
            auto_create=auto_create,
            max_body=max_body,
            max_duration=max_duration,
            max_import=max_import,
        )
        self.host = host
        self._requested_port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"EmulatorServer(url={self.url!r})" if self.port else "EmulatorServer(not started)"

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the emulator server is not running; call start() or use it as a context manager")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    def start(self) -> Self:
        """Bind the socket, start uvicorn in a thread and wait until it serves."""
        if self._thread is not None:
            return self
        quiet_uvicorn_logs()
        sock = bind_socket(self.host, self._requested_port)
        self._socket = sock
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn_config(self.app))
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"d1sync-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for the thread, and close the socket."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
