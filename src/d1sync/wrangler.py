"""The wrangler configuration: which D1 databases a project has, where their migrations live.

Reads ``wrangler.toml``, ``wrangler.json`` and ``wrangler.jsonc`` the way wrangler 4 does (d1-contract §5):
each ``[[d1_databases]]`` entry's ``binding``, ``database_name``, ``database_id``, ``preview_database_id``,
``migrations_dir`` (default ``migrations``, relative to the config file) and ``migrations_table`` (default
``d1_migrations``), plus the top-level ``account_id``.

Example::

    config = load_wrangler_config(find_wrangler_config())
    entry = config.select("DB")                     # by binding or database_name
    entry.database_id, entry.migrations_dir
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d1sync.errors import ConfigError, UsageError

__all__ = [
    "DEFAULT_MIGRATIONS_DIR",
    "DEFAULT_MIGRATIONS_TABLE",
    "WRANGLER_CONFIG_NAMES",
    "D1DatabaseConfig",
    "WranglerConfig",
    "find_wrangler_config",
    "load_wrangler_config",
    "strip_jsonc",
]

DEFAULT_MIGRATIONS_DIR = "migrations"
DEFAULT_MIGRATIONS_TABLE = "d1_migrations"
WRANGLER_CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
"""Looked for in this order, each up the folder tree, as wrangler does."""


def strip_jsonc(text: str) -> str:
    """Turn JSON-with-comments into JSON: drop ``//`` and ``/* */`` comments and trailing commas.

    Strings are copied untouched (a ``//`` inside ``"https://..."`` stays). Comments become spaces or
    newlines so error positions from :mod:`json` still point at the right line.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            stop = n if end < 0 else end + 2
            out.append("\n" * text.count("\n", i, stop))
            i = stop
        elif c == ",":
            j = i + 1
            # Look past whitespace and comments: a comma followed by a closing bracket is a trailing comma.
            while j < n:
                if text[j].isspace():
                    j += 1
                elif text.startswith("//", j):
                    end = text.find("\n", j)
                    j = n if end < 0 else end
                elif text.startswith("/*", j):
                    end = text.find("*/", j + 2)
                    j = n if end < 0 else end + 2
                else:
                    break
            if j >= n or text[j] not in "]}":
                out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class D1DatabaseConfig:
    """One ``[[d1_databases]]`` entry, with ``migrations_dir`` resolved against the config file's folder."""

    binding: str | None
    database_name: str | None
    database_id: str | None
    migrations_dir: Path
    migrations_table: str = DEFAULT_MIGRATIONS_TABLE
    preview_database_id: str | None = None

    @property
    def label(self) -> str:
        return self.binding or self.database_name or self.database_id or "?"


@dataclass(frozen=True, slots=True)
class WranglerConfig:
    """The parts of a wrangler config d1sync uses. ``path`` is None for the defaults (no config file)."""

    path: Path | None
    root: Path
    account_id: str | None = None
    databases: tuple[D1DatabaseConfig, ...] = ()

    @classmethod
    def defaults(cls, root: str | os.PathLike[str] | None = None) -> WranglerConfig:
        """No config file: one implicit database using wrangler's defaults under ``root`` (default: cwd)."""
        base = Path(root) if root is not None else Path.cwd()
        entry = D1DatabaseConfig(None, None, None, base / DEFAULT_MIGRATIONS_DIR)
        return cls(path=None, root=base, databases=(entry,))

    def select(self, name: str | None = None) -> D1DatabaseConfig:
        """The entry whose ``binding`` or ``database_name`` is ``name``; the only entry when ``name`` is None.

        Raises:
            ConfigError: no such entry, no entries, or several entries and no ``name``.
        """
        where = self.path or "the defaults"
        if name is None:
            if len(self.databases) == 1:
                return self.databases[0]
            if not self.databases:
                raise ConfigError(f"{where} has no [[d1_databases]] entry")
            names = ", ".join(d.label for d in self.databases)
            raise UsageError(f"{where} has several D1 databases", hint=f"choose one: --database one of: {names}")
        for entry in self.databases:
            if name in (entry.binding, entry.database_name):
                return entry
        if self.path is None:
            raise UsageError(
                f"--database {name!r} needs a wrangler config (wrangler.toml/json/jsonc); none found",
                hint="pass -c/--config, or run it in the folder of wrangler.toml (or below)",
            )
        names = ", ".join(d.label for d in self.databases)
        raise UsageError(
            f"no D1 database with binding or database_name {name!r} in {where}",
            hint=f"--database one of: {names}" if names else "add a [[d1_databases]] entry to it",
        )


def find_wrangler_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The wrangler config for ``start`` (default: cwd), found as wrangler 4 finds it, or None.

    Each name is looked for up the folder tree before the next name is tried, so a ``wrangler.json`` in
    a parent folder wins over a nearer ``wrangler.toml`` (wrangler's ``findWranglerConfig``).
    """
    here = (Path(start) if start is not None else Path.cwd()).resolve()
    for name in WRANGLER_CONFIG_NAMES:
        for folder in (here, *here.parents):
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def _optional_str(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def load_wrangler_config(path: str | os.PathLike[str], *, env: str | None = None) -> WranglerConfig:
    """Read ``wrangler.toml``, ``wrangler.json`` or ``wrangler.jsonc``.

    With ``env``, the ``d1_databases`` of ``[env.<env>]`` are used (they are not inherited, as in wrangler).

    Raises:
        ConfigError: unreadable or malformed file, or malformed ``d1_databases`` entries.
    """
    config_path = Path(path)
    try:
        text = config_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {config_path}: {exc.strerror or exc}") from exc
    try:
        if config_path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = json.loads(strip_jsonc(text))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{config_path} is not valid {config_path.suffix.lstrip('.')}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: expected a table/object at the top level")
    section: Any = data
    if env is not None:
        section = (data.get("env") or {}).get(env)
        if not isinstance(section, dict):
            named = ", ".join(sorted(data.get("env") or {}))
            raise UsageError(
                f"{config_path} has no environment {env!r} ([env.{env}])",
                hint=f"--env one of: {named}" if named else f"add [env.{env}] to it, or leave out --env",
            )
    raw = section.get("d1_databases") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{config_path}: d1_databases must be a list of tables")
    root = config_path.resolve().parent
    entries = []
    for index, item in enumerate(raw):
        where = f"{config_path}: d1_databases[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table/object")
        migrations_dir = _optional_str(item, "migrations_dir", where) or DEFAULT_MIGRATIONS_DIR
        entries.append(
            D1DatabaseConfig(
                binding=_optional_str(item, "binding", where),
                database_name=_optional_str(item, "database_name", where),
                database_id=_optional_str(item, "database_id", where),
                migrations_dir=root / migrations_dir,
                migrations_table=_optional_str(item, "migrations_table", where) or DEFAULT_MIGRATIONS_TABLE,
                preview_database_id=_optional_str(item, "preview_database_id", where),
            )
        )
    account_id = section.get("account_id") or data.get("account_id")
    return WranglerConfig(
        path=config_path,
        root=root,
        account_id=str(account_id) if account_id else None,
        databases=tuple(entries),
    )
