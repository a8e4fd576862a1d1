"""The d1sync emulator: a local D1 server with D1's REST envelope, errors, limits and injectable faults.

::

    from d1sync.emulator import EmulatorServer, FaultConfig

    with EmulatorServer("data", token="secret", faults=FaultConfig(error_rate=0.05, seed=1)) as server:
        server.api_base        # http://127.0.0.1:PORT/client/v4, for D1Client(base_url=...)

D1's limits hold: ``max_body`` bytes per request body (413), and ``max_duration`` seconds per request (D1's
30 s): past it, a request is interrupted, rolled back and answered ``D1 DB storage operation exceeded timeout
which caused object to be reset.`` with code 7429, as D1 answers. See ``docs/emulator.md``.

Kept out of ``import d1sync``, and imported lazily here: the constants are cheap, and the web stack
(Starlette, uvicorn) loads only when the app or the server is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from d1sync.client.config import DEFAULT_EMULATOR_DATABASE_ID as DEFAULT_DATABASE_ID
from d1sync.client.config import DEFAULT_EMULATOR_PORT as DEFAULT_PORT
from d1sync.client.config import EMULATOR_TOKEN_ENV as TOKEN_ENV

DEFAULT_MAX_BODY = 100_000_000
"""The largest request body the emulator reads, in bytes (``d1sync emulator --max-body``): Cloudflare's
smallest plans refuse bodies over 100 MB at the edge with HTTP 413."""

DEFAULT_MAX_IMPORT = 5_000_000_000
"""The largest import upload the emulator takes, in bytes (``d1sync emulator --max-import``): D1's "Maximum
file import (d1 execute) size", 5 GB. The upload goes to a signed URL, so ``max_body`` does not bound it."""

DEFAULT_MAX_DURATION = 30.0
"""Seconds one request may run (``d1sync emulator --max-duration``): D1's "Maximum SQL query duration". Past
it, the request is rolled back and answered ``D1 DB storage operation exceeded timeout which caused object to
be reset.`` (code 7429), as D1 answers."""

if TYPE_CHECKING:
    from d1sync.emulator.app import create_app
    from d1sync.emulator.faults import FaultConfig
    from d1sync.emulator.server import EmulatorServer

__all__ = [
    "DEFAULT_DATABASE_ID",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_IMPORT",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "EmulatorServer",
    "FaultConfig",
    "create_app",
]

_LAZY = {
    "create_app": "d1sync.emulator.app",
    "FaultConfig": "d1sync.emulator.faults",
    "EmulatorServer": "d1sync.emulator.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
