"""Bind a tenant file to one D1 database: adopt the one with its name, or create it, and record the binding
in the file itself.

The binding lives in the tenant file (``_d1sync_fleet_binding``, one row per account: the API base and the
account id), so a file that is moved or renamed keeps its database, and one file can be bound on the
emulator and on D1 alike. Binding a file that has no row:

1. create it (with the location hint and jurisdiction): one request for a new tenant. D1 keeps names unique
   in an account and refuses a second database of a name (the emulator answers 7502, "already exists"), so
   the create cannot make a second one;
2. if the create fails in any way but a refusal of the token, look the name up (``list_databases(name=...)``):
   one database of that name is adopted (made earlier by hand, by another process, or by this create
   whose answer was lost: a dropped connection, a timeout). A create is never sent twice blindly. A kill -9
   between the create and the record is the same case on the next start;
3. record the binding, then give the database the tenant's schema (:func:`~d1sync.sync.schema.create.copy_schema`,
   one atomic batch) and record that too, before any row is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from d1sync.client import D1Client
from d1sync.database import Database
from d1sync.errors import AuthError, ConfigError, D1Error
from d1sync.local import LocalDatabase
from d1sync.sqlite import Connection
from d1sync.sync.schema.create import copy_schema

__all__ = [
    "ANYWHERE",
    "BINDING_TABLE",
    "Binding",
    "Placement",
    "bind",
    "find_database",
    "place_of",
    "read_binding",
    "read_bindings",
    "record_size",
]

log = logging.getLogger("d1sync.fleet")

BINDING_TABLE = "_d1sync_fleet_binding"
_DDL = f"""CREATE TABLE IF NOT EXISTS {BINDING_TABLE} (
    place         TEXT PRIMARY KEY,
    database_id   TEXT NOT NULL,
    database_name TEXT NOT NULL,
    schema_ready  INTEGER NOT NULL DEFAULT 0,
    bound_at      REAL NOT NULL,
    size_bytes    INTEGER
)"""


@dataclass(frozen=True)
class Binding:
    """A tenant's database on one account: its id and name, and whether it has the tenant's schema."""

    database_id: str
    database_name: str
    schema_ready: bool = False
    size_bytes: int | None = None
    """D1's ``file_size`` of the database, as last seen."""


@dataclass(frozen=True)
class Placement:
    """Where new databases go: ``location_hint`` (``weur``, ``enam``, ...) and ``jurisdiction`` (``eu``,
    ``fedramp``); None lets D1 choose."""

    location_hint: str | None = None
    jurisdiction: str | None = None


ANYWHERE = Placement()
"""No hint, no jurisdiction: D1 places the database."""


def place_of(account: D1Client) -> str:
    """The key of ``account``'s bindings: its API base and account id."""
    return f"{account.base_url}#{account.account_id}"


def read_bindings(path: Path) -> dict[str, Binding]:
    """Every binding recorded in ``path``, by place, the most recent last. Reads only."""
    with Connection(path, read_only=True) as conn:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (BINDING_TABLE,)).fetchone()
        if exists is None:
            return {}
        rows = conn.execute(
            f"SELECT place, database_id, database_name, schema_ready, size_bytes FROM {BINDING_TABLE} ORDER BY bound_at"
        ).fetchall()
    return {str(r[0]): Binding(str(r[1]), str(r[2]), bool(r[3]), None if r[4] is None else int(r[4])) for r in rows}


def read_binding(path: Path, place: str) -> Binding | None:
    """The binding recorded in ``path`` for ``place``, if any. Reads only."""
    return read_bindings(path).get(place)


def record_size(path: Path, place: str, size_bytes: int) -> None:
    """Keep D1's ``file_size`` of the tenant's database beside its binding (``fleet status`` shows it)."""
    with Connection(path, notify=False) as conn, conn.atomic():
        conn.execute(f"UPDATE {BINDING_TABLE} SET size_bytes = ? WHERE place = ?", (size_bytes, place))


def _record(path: Path, place: str, binding: Binding) -> None:
    with Connection(path, notify=False) as conn, conn.atomic():
        conn.execute(_DDL)
        conn.execute(
            f"INSERT OR REPLACE INTO {BINDING_TABLE}"
            " (place, database_id, database_name, schema_ready, bound_at, size_bytes) VALUES (?, ?, ?, ?, ?, ?)",
            (
                place,
                binding.database_id,
                binding.database_name,
                int(binding.schema_ready),
                time.time(),
                binding.size_bytes,
            ),
        )


def find_database(account: D1Client, name: str) -> dict[str, Any] | None:
    """The account's database called exactly ``name`` (D1's ``?name=`` filter is not promised to be exact).

    Raises:
        ConfigError: several databases have that name (made outside d1sync): which one is the tenant's?
    """
    found = [d for d in account.list_databases(name=name) if d.get("name") == name]
    if len(found) > 1:
        ids = ", ".join(str(d.get("uuid")) for d in found)
        raise ConfigError(f"{len(found)} D1 databases are named {name!r} ({ids}); delete or rename all but one")
    return found[0] if found else None


def _create_or_adopt(account: D1Client, name: str, placement: Placement) -> tuple[dict[str, Any], str]:
    """The database called ``name``, created, or adopted when it exists; and which (the module docstring)."""
    try:
        made = account.create_database(
            name, primary_location_hint=placement.location_hint, jurisdiction=placement.jurisdiction
        )
        return made, "created"
    except AuthError:
        raise
    except D1Error as exc:
        # It exists, or this create went through with its answer lost: look it up, never create twice.
        found = find_database(account, name)
        if found is None:
            raise
        log.debug("the create of %s failed (%s), but the database exists: adopting it", name, exc)
        return found, "adopted"


def bind(
    path: Path,
    name: str,
    account: D1Client,
    database: Callable[[str], Database],
    *,
    placement: Placement = ANYWHERE,
    tables: Sequence[str] | None = None,
) -> tuple[Binding, str]:
    """The tenant's database, adopted or created, recorded in ``path``, with the tenant's schema.

    Args:
        path: the tenant file.
        name: the database name (:func:`~d1sync.fleet.naming.database_name`).
        account: a client of the account (its database id is not used).
        database: returns the (caller-owned) client of a database id, which gets the schema.
        placement: where a new database goes.
        tables: the synced tables whose schema the database gets (None: every table).

    Returns:
        The binding and how it came: ``recorded`` (already in the file), ``adopted`` or ``created``.

    Raises:
        D1Error: the account refused or could not be reached (nothing recorded; call again later).
        ConfigError: several databases have the name.

    Example::

        binding, how = bind(Path("acme.db"), "acme", account, lambda id: clients.for_database(id))
    """
    place = place_of(account)
    binding = read_binding(path, place)
    how = "recorded"
    if binding is None:
        made, how = _create_or_adopt(account, name, placement)
        size = made.get("file_size")
        known = size if isinstance(size, int) else None
        binding = Binding(str(made["uuid"]), str(made.get("name") or name), size_bytes=known)
        _record(path, place, binding)
        log.info("%s: %s D1 database %s (%s)", path.name, how, binding.database_name, binding.database_id)
    if not binding.schema_ready:
        with LocalDatabase(path, wal=False) as local:
            copy_schema(local, database(binding.database_id), tables)
        binding = replace(binding, schema_ready=True)
        _record(path, place, binding)
    return binding, how
