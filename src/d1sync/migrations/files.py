"""Migration files on disk and the wrangler configuration that locates them.

Two layouts share one ledger (d1-contract §5):

* the wrangler folder (``migrations_dir``, default ``migrations/`` beside the wrangler config): files
  ``NNNN_name.sql`` recorded under their plain file name, exactly as wrangler records them;
* module folders found by a glob (default ``modules/*/migrations/*.sql``): recorded as
  ``module/NNNN_name.sql``, so two modules never collide and module ``trading`` owns ``trading_*`` tables.

Global order: the wrangler folder first (shared tables other modules may build on), then each module in
name order, each by number (then file name). A module's history is never interleaved with another's, and
adding a module never reorders the files of an existing one.

Example::

    config = load_wrangler_config(find_wrangler_config())
    entry = config.select("DB")                     # by binding or database_name
    source = MigrationSource(root=config.root, migrations_dir=entry.migrations_dir)
    for migration in source.discover():
        print(migration.name, migration.checksum())
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from d1sync.errors import ConfigError
from d1sync.modules import validate_module_name

__all__ = [
    "DEFAULT_MIGRATIONS_DIR",
    "DEFAULT_MIGRATIONS_TABLE",
    "DEFAULT_MODULES_GLOB",
    "WRANGLER_CONFIG_NAMES",
    "D1DatabaseConfig",
    "MigrationFile",
    "MigrationSource",
    "WranglerConfig",
    "find_wrangler_config",
    "load_wrangler_config",
    "migration_number",
    "read_migration_text",
    "strip_jsonc",
]

DEFAULT_MIGRATIONS_DIR = "migrations"
DEFAULT_MIGRATIONS_TABLE = "d1_migrations"
DEFAULT_MODULES_GLOB = "modules/*/migrations/*.sql"
WRANGLER_CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
"""Looked for in this order, each up the folder tree, as wrangler does."""


# -- wrangler configuration ----------------------------------------------------------------------------


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
            raise ConfigError(f"{where} has several D1 databases ({names}): choose one with --database NAME")
        for entry in self.databases:
            if name in (entry.binding, entry.database_name):
                return entry
        if self.path is None:
            raise ConfigError(f"--database {name!r} needs a wrangler config (wrangler.toml/json/jsonc); none found")
        names = ", ".join(d.label for d in self.databases) or "none"
        raise ConfigError(f"no D1 database with binding or database_name {name!r} in {where} (found: {names})")


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
            raise ConfigError(f"{config_path} has no environment {env!r} ([env.{env}])")
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


# -- migration files -----------------------------------------------------------------------------------

_NUMBER = re.compile(r"^(\d+)")


def migration_number(file_name: str) -> int:
    """The integer before the first ``_`` of a migration file name (``0003_add.sql`` -> 3).

    Raises:
        ConfigError: the name does not start with digits (wrangler's order would be undefined).
    """
    match = _NUMBER.match(file_name.split("_", 1)[0])
    if not match:
        raise ConfigError(f"migration file {file_name!r} does not start with a number: name it NNNN_name.sql")
    return int(match.group(1))


def read_migration_text(path: Path) -> str:
    """A migration file's text with a UTF-8 BOM dropped and line endings normalised to ``\\n``.

    Normalising makes the statements and the checksum independent of how the file was checked out
    (git's autocrlf turns LF into CRLF on Windows).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True, slots=True)
class MigrationFile:
    """One migration file: ``name`` is what the ledger records (``0001_x.sql`` or ``trading/0001_x.sql``)."""

    name: str
    path: Path
    number: int
    module: str | None = None

    def read(self) -> str:
        """The normalised text (see :func:`read_migration_text`)."""
        return read_migration_text(self.path)

    def checksum(self) -> str:
        """SHA-256 (hex) of the normalised text: what drift detection compares."""
        return hashlib.sha256(self.read().encode("utf-8")).hexdigest()


def _wildcard_index(pattern: str) -> int:
    """Index of the path segment of ``pattern`` that names the module (the first wildcard folder)."""
    parts = Path(pattern).parts
    for index, part in enumerate(parts[:-1]):
        if any(ch in part for ch in "*?["):
            if part != "*":
                raise ConfigError(f"modules glob {pattern!r}: the module folder segment must be exactly '*'")
            return index
    raise ConfigError(f"modules glob {pattern!r} needs a '*' folder naming the module, e.g. {DEFAULT_MODULES_GLOB}")


@dataclass(frozen=True, slots=True)
class MigrationSource:
    """Where migrations live: wrangler's folder and/or module folders under ``root``.

    Args:
        root: the project folder (the wrangler config's folder); ``modules_glob`` is relative to it.
        migrations_dir: the plain wrangler folder (absolute or relative to ``root``), or None.
        modules_glob: the module layout (``modules/*/migrations/*.sql``), or None/"" to disable.
    """

    root: Path
    migrations_dir: Path | None = None
    modules_glob: str | None = DEFAULT_MODULES_GLOB

    @property
    def plain_dir(self) -> Path | None:
        return None if self.migrations_dir is None else self.root / self.migrations_dir

    def _plain_files(self) -> list[MigrationFile]:
        folder = self.plain_dir
        if folder is None or not folder.is_dir():
            return []
        files = [
            MigrationFile(p.name, p, migration_number(p.name))
            for p in folder.iterdir()
            if p.name.endswith(".sql") and p.is_file()
        ]
        return sorted(files, key=lambda f: (f.number, f.name))

    def _module_files(self) -> list[MigrationFile]:
        if not self.modules_glob:
            return []
        index = _wildcard_index(self.modules_glob)
        plain = self.plain_dir.resolve() if self.plain_dir is not None else None
        files = []
        for match in glob.glob(self.modules_glob, root_dir=self.root):
            path = self.root / match
            if not path.is_file() or (plain is not None and path.resolve().parent == plain):
                continue
            module = validate_module_name(Path(match).parts[index])
            files.append(MigrationFile(f"{module}/{path.name}", path, migration_number(path.name), module))
        return sorted(files, key=lambda f: (f.module or "", f.number, f.name))

    def discover(self) -> list[MigrationFile]:
        """Every migration file in application order (see the module docstring).

        Raises:
            ConfigError: a file name without a number, an invalid module folder name, or a duplicate name.
        """
        files = self._plain_files() + self._module_files()
        seen: dict[str, Path] = {}
        for f in files:
            if f.name in seen:
                raise ConfigError(
                    f"two migration files record the same ledger name {f.name!r}: {seen[f.name]}, {f.path}"
                )
            seen[f.name] = f.path
        return files

    def folder_for(self, module: str | None) -> Path:
        """The folder new migrations of ``module`` (None: the wrangler folder) are created in."""
        if module is None:
            if self.plain_dir is None:
                raise ConfigError("no migrations folder configured: set migrations_dir or use --module")
            return self.plain_dir
        if not self.modules_glob:
            raise ConfigError("no modules glob configured: cannot place a module migration")
        validate_module_name(module)
        parts = list(Path(self.modules_glob).parts)
        parts[_wildcard_index(self.modules_glob)] = module
        folder = Path(*parts[:-1])
        if any(ch in str(folder) for ch in "*?["):
            raise ConfigError(f"modules glob {self.modules_glob!r} has wildcards besides the module folder")
        if not parts[-1].endswith(".sql"):
            raise ConfigError(f"modules glob {self.modules_glob!r} must end in '*.sql'")
        return self.root / folder

    def create(self, name: str, *, module: str | None = None, now: datetime | None = None) -> Path:
        """Create the next migration file, as ``wrangler d1 migrations create`` does.

        The number is the folder's highest prefix + 1, zero-padded to 4; spaces in ``name`` become ``_``;
        the body is one comment line. Returns the new file's path.
        """
        if not name.strip() or "/" in name or "\\" in name:
            raise ConfigError(f"invalid migration name {name!r}: use words, e.g. 'create users'")
        folder = self.folder_for(module)
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [migration_number(p.name) for p in folder.iterdir() if p.name.endswith(".sql")]
        number = f"{max(numbers, default=0) + 1:04d}"
        path = folder / f"{number}_{name.strip().replace(' ', '_')}.sql"
        stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # Exclusive create: two concurrent `create`s must not overwrite each other's file.
        with path.open("x", encoding="utf-8", newline="\n") as handle:
            handle.write(f"-- Migration number: {number} \t {stamp}\n")
        return path
