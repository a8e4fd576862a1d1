"""``from_env``: the zero-config way to embed the sync worker in an application.

An application that may or may not be deployed with D1 calls ``from_env("app.db")`` at start-up: it gets a
ready :class:`~d1sync.sync.engine.SyncWorker` when D1 is configured, ``None`` (and one INFO line) when it
is not configured at all, and a :class:`~d1sync.errors.ConfigError` naming what is missing when it is
configured halfway, so a typo never silently turns sync off. The settings are found exactly as the CLI finds
them (:func:`d1sync.target.resolve_target`): the environment, then ``wrangler.toml``, then ``d1sync.toml``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from d1sync.client.config import ACCOUNT_ENV, API_BASE_ENV, DATABASE_ENV, TOKEN_ENV
from d1sync.errors import ConfigError
from d1sync.sync.engine import SyncWorker
from d1sync.target import load_project_config, resolve_target, wrangler_entry

__all__ = ["from_env"]

log = logging.getLogger("d1sync.sync")


def _database_source(environ: Mapping[str, str], cwd: str | os.PathLike[str] | None) -> str | None:
    """Where a D1 database id would come from (None: nowhere)."""
    if environ.get(DATABASE_ENV, "").strip():
        return DATABASE_ENV
    try:
        wrangler, entry = wrangler_entry(None, None, None, cwd)
    except ConfigError:
        return "wrangler config"  # several entries, say: configured, and resolve_target will say what is wrong
    if entry is not None and entry.database_id:
        return wrangler.path.name if wrangler is not None and wrangler.path is not None else "wrangler config"
    project = load_project_config(cwd)
    if project.values.get("database_id") or project.values.get("database"):
        return project.label
    return None


def from_env(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SyncWorker | None:
    """A SyncWorker for ``path`` pushing to the D1 database the environment names, or None if it names none.

    Args:
        path: the application's SQLite file.
        env: the environment (default ``os.environ``); cwd: where to look for wrangler.toml / d1sync.toml.
        options: passed to :class:`SyncWorker` (``config=SyncConfig(...)``, ``clock``, ``on_progress``).

    Raises:
        ConfigError: D1 is configured halfway (a token but no database id, or an id but no token, no account
            id), or a config file is invalid.

    Example::

        worker = d1sync.from_env("app.db")
        if worker is not None:
            worker.start()          # and worker.stop() at shutdown; or: async with worker: ...
    """
    environ = os.environ if env is None else env
    token = bool(environ.get(TOKEN_ENV, "").strip())
    database = _database_source(environ, cwd)
    if not token and database is None:
        others = [name for name in (ACCOUNT_ENV, API_BASE_ENV) if environ.get(name, "").strip()]
        if others:
            raise ConfigError(
                f"{' and '.join(others)} set, but no {TOKEN_ENV} and no D1 database id: set both to sync to D1, "
                f"or unset {' and '.join(others)}"
            )
        log.info("D1 is not configured (no %s, no database id): %s is not synced", TOKEN_ENV, os.fspath(path))
        return None
    if database is None:
        raise ConfigError(
            f"{TOKEN_ENV} is set but no D1 database id: set {DATABASE_ENV}, or database_id in wrangler.toml "
            "[[d1_databases]] or d1sync.toml"
        )
    if not token:
        raise ConfigError(f"a D1 database id is configured ({database}) but no token: set {TOKEN_ENV}")
    target = resolve_target(env=environ, cwd=cwd, default="remote")
    client = target.open()
    try:
        worker = SyncWorker(path, client, **options)
    except BaseException:
        client.close()
        raise
    worker.owned.append(client.close)
    log.info("syncing %s to %s", os.fspath(path), target.describe())
    return worker
