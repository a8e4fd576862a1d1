"""The d1sync emulator: a local D1 server with D1's REST envelope, errors, limits and injectable faults."""

from __future__ import annotations

DEFAULT_DATABASE_ID = "00000000-0000-4000-8000-000000000000"
"""The database every emulator creates at start, and the id CLI commands use with ``--emulator``."""

DEFAULT_PORT = 8787
TOKEN_ENV = "D1SYNC_EMULATOR_TOKEN"
"""Environment variable holding the emulator's bearer token (server and clients)."""

__all__ = ["DEFAULT_DATABASE_ID", "DEFAULT_PORT", "TOKEN_ENV"]
