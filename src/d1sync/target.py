"""Where SQL goes: one resolver for every command and for :func:`d1sync.from_env`.

A target is a local SQLite file, an emulator, or remote D1. Its settings are looked up in order, the first
found wins:

1. **flags**: the arguments given (``--local FILE``, ``--emulator URL``, ``--remote``, ``--database-id``,
   ``--database NAME``, ``--config FILE``);
2. **the environment**: ``CLOUDFLARE_API_TOKEN``, ``CLOUDFLARE_ACCOUNT_ID`` (or ``D1_ACCOUNT_ID``),
   ``D1_DATABASE_ID``, ``D1SYNC_API_BASE``, and ``D1SYNC_EMULATOR_TOKEN`` for an emulator;
3. **the wrangler config** (``wrangler.toml`` / ``wrangler.json(c)``, the nearest one up from the current
   folder): ``account_id`` and the selected ``[[d1_databases]]`` entry's ``database_id``;
4. **d1sync's own config**: ``d1sync.toml``, or ``[tool.d1sync]`` in ``pyproject.toml``, the nearest one up
   from the current folder, with the keys ``account_id``, ``database_id``, ``database`` (the wrangler entry
   to use, by binding or name) and ``api_base``. Tokens are never read from files.

An emulator's database id defaults to the emulator's default database when none is configured, so
``--emulator URL`` picks the same database in every command. :attr:`Target.sources` says where each setting
came from (the CLI prints it under ``-v``); the token's source is named, never its value.

Example::

    target = resolve_target(emulator="http://127.0.0.1:8787")
    target.describe()          # 'emulator http://127.0.0.1:8787 (database 00000000-...)'
    with target.open() as db:  # a D1Client, or a LocalDatabase for --local
        db.prepare("SELECT 1").all()
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from d1sync.client.config import (
    ACCOUNT_ENV,
    ACCOUNT_ENV_FALLBACK,
    API_BASE_ENV,
    DATABASE_ENV,
    DEFAULT_API_BASE,
    DEFAULT_EMULATOR_DATABASE_ID,
    DEFAULT_EMULATOR_PORT,
    EMULATOR_TOKEN_ENV,
    TOKEN_ENV,
    clean_token,
)
from d1sync.database import Database
from d1sync.errors import ConfigError, UsageError
from d1sync.wrangler import D1DatabaseConfig, WranglerConfig, find_wrangler_config, load_wrangler_config

__all__ = [
    "CONFIG_KEYS",
    "Kind",
    "ProjectConfig",
    "Target",
    "emulator_api_base",
    "load_project_config",
    "resolve_target",
    "wrangler_entry",
]

Kind = Literal["local", "emulator", "remote"]
CONFIG_KEYS = ("account_id", "database_id", "database", "api_base")
"""The keys ``d1sync.toml`` and ``[tool.d1sync]`` may set."""
_SECRET_KEYS = ("api_token", "token", "cloudflare_api_token")


def emulator_api_base(url: str) -> str:
    """The API base of an emulator URL: a scheme is added if missing, ``/client/v4`` if not there.

    ``127.0.0.1:8787`` -> ``http://127.0.0.1:8787/client/v4``.
    """
    text = url.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    return text if text.endswith("/client/v4") else f"{text}/client/v4"


@dataclass(frozen=True)
class ProjectConfig:
    """d1sync's own settings from ``d1sync.toml`` or ``[tool.d1sync]`` (``path`` None: none found)."""

    path: Path | None = None
    values: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.path is None:
            return "d1sync.toml"
        return f"{self.path.name} [tool.d1sync]" if self.path.name == "pyproject.toml" else self.path.name


def load_project_config(start: str | os.PathLike[str] | None = None) -> ProjectConfig:
    """The nearest ``d1sync.toml`` (or ``pyproject.toml`` with ``[tool.d1sync]``) from ``start`` upwards.

    Raises:
        ConfigError: the file is not valid TOML, sets an unknown key, or holds a token.
    """
    here = (Path(start) if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("d1sync.toml", "pyproject.toml"):
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
            section: Any = data if name == "d1sync.toml" else data.get("tool", {}).get("d1sync")
            if section is None:
                continue
            return ProjectConfig(path, _check_project_section(path, section))
    return ProjectConfig()


def _check_project_section(path: Path, section: Any) -> dict[str, str]:
    where = f"{path} [tool.d1sync]" if path.name == "pyproject.toml" else str(path)
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table of settings")
    secret = [k for k in section if k.lower() in _SECRET_KEYS]
    if secret:
        raise ConfigError(f"{where}: {secret[0]} is not read from files; set {TOKEN_ENV} in the environment instead")
    unknown = [k for k in section if k not in CONFIG_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(CONFIG_KEYS)}")
    bad = [k for k, v in section.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ConfigError(f"{where}: {bad[0]} must be a non-empty string")
    return {k: str(v).strip() for k, v in section.items()}


@dataclass(frozen=True)
class Target:
    """A resolved target. ``sources`` maps each setting to where it came from.

    Attributes:
        kind: ``local``, ``emulator`` or ``remote``.
        path: the file of a local target.
        base_url: the API base (``.../client/v4``) of an emulator or remote target.
        account_id, database_id: the D1 ids (an emulator accepts any account id).
        api_token: the bearer token (never in the repr).
        flag: the command-line flag that chose this target (``--local``, ``--emulator``, ``--remote``), for
            hints that name what applies to this invocation.
    """

    kind: Kind
    path: Path | None = None
    base_url: str | None = None
    account_id: str | None = None
    database_id: str | None = None
    api_token: str | None = field(default=None, repr=False)
    sources: Mapping[str, str] = field(default_factory=dict)
    flag: str = "--remote"

    def describe(self) -> str:
        """One phrase for messages: ``local file app.db``, ``emulator URL (database ID)``, ``D1 database ID``."""
        if self.kind == "local":
            return f"local file {self.path}"
        if self.kind == "emulator":
            url = (self.base_url or "").removesuffix("/client/v4")
            return f"emulator {url} (database {self.database_id})"
        return f"D1 database {self.database_id}" if self.database_id else "D1"

    @property
    def token_variable(self) -> str:
        """The environment variable that holds this target's token."""
        return EMULATOR_TOKEN_ENV if self.kind == "emulator" else TOKEN_ENV

    def explain(self) -> list[str]:
        """One line per setting and its source (what ``-v`` prints)."""
        return [f"{name}: {source}" for name, source in self.sources.items()]

    def open(self, *, wal: bool = True, **client_options: Any) -> Database:
        """The Database for this target: a LocalDatabase, or a D1Client (``client_options`` go to it).

        ``wal=False``: a local file keeps its journal mode (a read leaves an empty file empty).
        """
        if self.kind == "local":
            from d1sync.local import LocalDatabase

            assert self.path is not None
            return LocalDatabase(self.path, wal=wal)
        from d1sync.client import D1Client

        if not self.database_id:
            raise ConfigError(
                f"no D1 database id: set {DATABASE_ENV}, pass --database-id, or add database_id to the "
                "[[d1_databases]] entry of wrangler.toml (`wrangler d1 list` shows your databases)"
            )
        return D1Client(
            account_id=self.account_id,
            database_id=self.database_id,
            api_token=self.api_token,
            base_url=self.base_url,
            **client_options,
        )


class _Lookup:
    """Settings from the sources in order, remembering where each value came from."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}

    def first(self, name: str, *candidates: tuple[str | None, str]) -> str | None:
        for value, source in candidates:
            if value is not None and str(value).strip():
                self.sources[name] = source
                return str(value).strip()
        return None


def wrangler_entry(
    config_path: str | os.PathLike[str] | None,
    database: str | None,
    env_name: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> tuple[WranglerConfig | None, D1DatabaseConfig | None]:
    """The wrangler config and its selected ``[[d1_databases]]`` entry.

    ``(None, None)`` when there is no config file; ``(config, None)`` for a config without D1 databases
    (a Worker with no D1 binding blocks nothing that does not need one).

    Raises:
        ConfigError: ``database`` names no entry, several entries and no ``database``, or a bad file.
    """
    path = Path(config_path) if config_path else find_wrangler_config(cwd)
    if path is None:
        if database:
            raise UsageError(
                f"--database {database!r} needs a wrangler config (wrangler.toml/json/jsonc); none found",
                hint="pass -c/--config, or run it in the folder of wrangler.toml (or below)",
            )
        return None, None
    config = load_wrangler_config(path, env=env_name)
    if not config.databases and not database:
        return config, None  # a Worker without D1 bindings: nothing to take from it
    return config, config.select(database)


def resolve_target(
    *,
    local: str | os.PathLike[str] | None = None,
    emulator: str | None = None,
    remote: bool = False,
    database_id: str | None = None,
    database: str | None = None,
    config: str | os.PathLike[str] | None = None,
    wrangler_env: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    default: Kind | None = None,
) -> Target:
    """Resolve the target from flags, the environment, wrangler's config and d1sync's (module docstring).

    Args:
        local, emulator, remote: the chosen target; at most one. None of them: ``default`` (if given).
        database_id: an explicit database id (flag).
        database: the wrangler ``[[d1_databases]]`` entry, by binding or name (flag).
        config: the wrangler config file (flag); default: the nearest one.
        wrangler_env: use the ``d1_databases`` of ``[env.NAME]``.
        env: the environment (default ``os.environ``); cwd: where to look for config files.
        default: the kind to use when no target flag is given (``d1sync sync`` defaults to remote D1).

    Raises:
        ConfigError: several targets, none (and no default), a missing token, or a bad config file.
    """
    given: list[tuple[str, Kind, object]] = [
        ("--local", "local", local),
        ("--emulator", "emulator", emulator),
        ("--remote", "remote", remote),
    ]
    chosen = [(flag, kind) for flag, kind, on in given if on]
    if len(chosen) > 1:
        raise UsageError(f"choose one target, not {' and '.join(flag for flag, _ in chosen)}")
    if not chosen and default is None:
        raise UsageError("choose a target: --local FILE, --emulator URL or --remote")
    flag, kind = chosen[0] if chosen else (f"--{default}", default)
    if kind == "local":
        assert local is not None
        return Target("local", path=Path(local), sources={"file": "--local"}, flag="--local")
    environ = os.environ if env is None else env
    start = Path(cwd) if cwd is not None else None
    project = load_project_config(start)
    look = _Lookup()
    entry_name = look.first("database", (database, "--database"), (project.values.get("database"), project.label))
    wrangler, entry = wrangler_entry(config, entry_name, wrangler_env, start)
    wrangler_label = wrangler.path.name if wrangler is not None and wrangler.path is not None else "wrangler config"
    entry_label = f"{wrangler_label} [[d1_databases]] {entry.label}" if entry is not None else wrangler_label
    entry_id = entry.database_id if entry else None
    # An entry chosen with --database is a flag too: it beats the environment, as an explicit choice should.
    database_id = look.first(
        "database_id",
        (database_id, "--database-id"),
        (entry_id if database else None, f"--database ({entry_label})"),
        (environ.get(DATABASE_ENV), DATABASE_ENV),
        (entry_id, entry_label),
        (project.values.get("database_id"), project.label),
    )
    account_id = look.first(
        "account_id",
        (environ.get(ACCOUNT_ENV), ACCOUNT_ENV),
        (environ.get(ACCOUNT_ENV_FALLBACK), ACCOUNT_ENV_FALLBACK),
        (wrangler.account_id if wrangler else None, wrangler_label),
        (project.values.get("account_id"), project.label),
    )
    if kind == "emulator":
        return _emulator_target(emulator, flag, environ, look, account_id, database_id)
    return _remote_target(flag, environ, look, project, account_id, database_id)


def _emulator_target(
    url: str | None,
    flag: str,
    environ: Mapping[str, str],
    look: _Lookup,
    account_id: str | None,
    database_id: str | None,
) -> Target:
    api_base = emulator_api_base(url or f"http://127.0.0.1:{DEFAULT_EMULATOR_PORT}")
    look.sources["base_url"] = flag
    # The emulator's own variable first; CLOUDFLARE_API_TOKEN also serves, as for the official SDK.
    variable = next((name for name in (EMULATOR_TOKEN_ENV, TOKEN_ENV) if environ.get(name, "").strip()), None)
    if variable is None:
        raise ConfigError(
            f"no token for the emulator at {api_base.removesuffix('/client/v4')}: export {EMULATOR_TOKEN_ENV}="
            "<the token the emulator was started with (it prints one when it generates it)>"
        )
    look.sources["token"] = variable
    if database_id is None:
        database_id = DEFAULT_EMULATOR_DATABASE_ID
        look.sources["database_id"] = "the emulator's default database"
    return Target(
        "emulator",
        base_url=api_base,
        account_id=account_id or "emulator",
        database_id=database_id,
        api_token=clean_token(environ[variable], variable),
        sources=look.sources,
        flag=flag,
    )


def _remote_target(
    flag: str,
    environ: Mapping[str, str],
    look: _Lookup,
    project: ProjectConfig,
    account_id: str | None,
    database_id: str | None,
) -> Target:
    base_url = look.first(
        "base_url",
        (environ.get(API_BASE_ENV), API_BASE_ENV),
        (project.values.get("api_base"), project.label),
        (DEFAULT_API_BASE, "the default"),
    )
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            "no Cloudflare API token",
            hint=f"export {TOKEN_ENV}=<a token with D1 edit permission>, or choose --local FILE or --emulator URL",
        )
    look.sources["token"] = TOKEN_ENV
    if account_id is None:
        raise ConfigError(
            f"no Cloudflare account id: set {ACCOUNT_ENV} (or {ACCOUNT_ENV_FALLBACK}), or account_id in "
            "wrangler.toml or d1sync.toml"
        )
    return Target(
        "remote",
        base_url=base_url,
        account_id=account_id,
        database_id=database_id,
        api_token=clean_token(token, TOKEN_ENV),
        sources=look.sources,
        flag=flag,
    )
