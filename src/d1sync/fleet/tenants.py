"""Which files in a folder are tenants, and which of a tenant's tables are synced.

A tenant is a file in the folder (not below it) whose name matches the pattern (default ``*.db``) and that
is a SQLite database. SQLite's own companions (``-wal``, ``-shm``, ``-journal``) are never tenants, even
under a pattern such as ``*``. A file that is not SQLite is set aside with a reason (the fleet warns once);
an empty file is not a tenant yet (a program may be creating it): it is looked at again on the next sweep.

A tenant syncs every user table, or the ``--tables`` named; never SQLite's (``sqlite_*``), D1's (``_cf_*``),
d1sync's own (``_d1sync_*``) or a migrations ledger (``d1_migrations``, or wrangler's under another name),
nor virtual tables (FTS5 and the like: capture triggers cannot be put on them) and their shadow tables. A
table without a primary key (or a UNIQUE index over NOT NULL columns) cannot be synced: it is skipped, with a
warning for the tenant's status.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from d1sync.errors import ConfigError
from d1sync.sqlite import Connection
from d1sync.sync import Outbox
from d1sync.sync.schema.describe import is_migrations_ledger, read_schemas

__all__ = ["COMPANIONS", "DEFAULT_PATTERN", "Discovery", "Tracking", "discover", "sqlite_header", "track_tables"]

DEFAULT_PATTERN = "*.db"
COMPANIONS = ("-wal", "-shm", "-journal")
_HEADER = b"SQLite format 3\x00"
_INTERNAL = ("sqlite_", "_cf_", "_d1sync_")


@dataclass
class Discovery:
    """One sweep of the folder: the tenant files (sorted by name) and the files set aside, with why."""

    tenants: list[Path] = field(default_factory=list)
    rejected: dict[Path, str] = field(default_factory=dict)
    undecided: list[Path] = field(default_factory=list)
    """Files that match but cannot be told yet (empty, or unreadable for now): looked at again next sweep."""


def sqlite_header(path: Path) -> bool | None:
    """True: a SQLite file; False: something else; None: empty or unreadable for now (look again later)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_HEADER))
    except OSError:
        return None
    if not head:
        return None
    return head == _HEADER


def discover(folder: Path, pattern: str = DEFAULT_PATTERN, known: frozenset[Path] = frozenset()) -> Discovery:
    """The tenant files of ``folder`` (see the module docstring). Reads 16 bytes of each candidate but the
    ``known`` tenants (a file that was SQLite stays a tenant while it is there)."""
    found = Discovery()
    known_names = {p.name for p in known}
    try:
        with os.scandir(folder) as listing:
            # Names first: a folder of a thousand tenants holds thousands of entries (-wal, -shm), and a
            # Path per entry, sorted as Paths, cost a fleet at rest more than anything else it did.
            entries = sorted(
                (e.name, e) for e in listing if not e.name.endswith(COMPANIONS) and fnmatch.fnmatchcase(e.name, pattern)
            )
    except FileNotFoundError:
        return found
    for name, entry in entries:
        path = folder / name
        if name in known_names:
            found.tenants.append(path)
            continue
        if not entry.is_file():
            continue
        kind = sqlite_header(path)
        if kind is True:
            found.tenants.append(path)
        elif kind is False:
            found.rejected[path] = "not a SQLite database (its first bytes are not SQLite's header)"
        else:
            found.undecided.append(path)
    return found


@dataclass
class Tracking:
    """What :func:`track_tables` did: the synced tables, and a warning per table it could not sync."""

    tables: list[str] = field(default_factory=list)
    warnings: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    """The tables this call tracked (the others were tracked before)."""


def user_tables(conn: Connection) -> list[str]:
    """The ordinary tables a tenant may sync, in creation order (see the module docstring)."""
    rows = conn.execute(
        "SELECT m.name FROM sqlite_master AS m JOIN pragma_table_list AS t ON t.name = m.name AND t.schema = 'main'"
        " WHERE m.type = 'table' AND t.type = 'table' ORDER BY m.rowid"
    ).fetchall()
    names = [str(r[0]) for r in rows if not str(r[0]).lower().startswith(_INTERNAL)]
    ledgers = {name for name, table in read_schemas(conn, names).items() if is_migrations_ledger(table)}
    return [n for n in names if n not in ledgers]


def track_tables(path: Path, only: Sequence[str] | None = None) -> Tracking:
    """Track the tenant's tables (all user tables, or ``only``) that are not tracked yet; idempotent.

    A table created since the last call is tracked now (with its existing rows). A named table the file lacks,
    and a table without a usable key, get a warning and are skipped; the others are tracked.
    """
    done = Tracking()
    with Connection(path, read_only=True) as conn:
        present = user_tables(conn)
    wanted = list(only) if only is not None else present
    with Outbox(path) as outbox:
        tracked = outbox.tables()
        for table in wanted:
            if table in tracked:
                done.tables.append(table)
                continue
            if table not in present:
                done.warnings[table] = f"no table {table!r} in this file (named by --tables)"
                continue
            try:
                outbox.track(table)
            except ConfigError as exc:
                done.warnings[table] = f"not synced: {exc.message}"
                continue
            done.tables.append(table)
            done.new.append(table)
    return done
