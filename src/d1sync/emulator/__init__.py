"""The d1sync emulator: a local D1 server with D1's REST envelope, errors, limits and injectable faults.

::

    from d1sync.emulator import EmulatorServer, FaultConfig

    with EmulatorServer("data", token="secret", faults=FaultConfig(error_rate=0.05, seed=1)) as server:
        server.api_base        # http://127.0.0.1:PORT/client/v4, for D1Client(base_url=...)

See ``docs/emulator.md``. Kept out of ``import d1sync`` so library users do not load the web stack.
"""

from __future__ import annotations

DEFAULT_DATABASE_ID = "00000000-0000-4000-8000-000000000000"
"""The database every emulator creates at start, and the id CLI commands use with ``--emulator``."""

DEFAULT_PORT = 8787
TOKEN_ENV = "D1SYNC_EMULATOR_TOKEN"
"""Environment variable holding the emulator's bearer token (server and clients)."""

# Below the constants: the modules imported here read them from this package.
from d1sync.emulator.app import create_app  # noqa: E402
from d1sync.emulator.faults import FaultConfig  # noqa: E402
from d1sync.emulator.server import EmulatorServer  # noqa: E402

__all__ = ["DEFAULT_DATABASE_ID", "DEFAULT_PORT", "TOKEN_ENV", "EmulatorServer", "FaultConfig", "create_app"]
