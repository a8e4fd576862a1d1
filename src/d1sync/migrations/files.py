"""Migration files on disk (the wrangler configuration that locates them is :mod:`d1sync.wrangler`).

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
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from d1sync.database import validate_module_name
from d1sync.errors import ConfigError

__all__ = [
    "DEFAULT_MODULES_GLOB",
    "MigrationFile",
    "MigrationSource",
    "migration_number",
    "read_migration_text",
]

DEFAULT_MODULES_GLOB = "modules/*/migrations/*.sql"


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
