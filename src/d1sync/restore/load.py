"""Restore a local SQLite file into D1: a new (or an empty) database, the file's exact dump through D1's
import, then a verify of every table.

::

    from d1sync import D1Client
    from d1sync.restore import restore

    with D1Client() as d1:
        report = restore("app.db", d1, name="app-restored")
    report.database_id, report.equal

Together with :func:`~d1sync.sync.compare.clone.clone` (D1 to a file, read page by page, no export, no lock) this
is a backup and restore cycle that works on FTS5 tables, where D1's own export fails.

The import runs the whole dump as one transaction: it applies completely or not at all, and D1 holds the
database meanwhile. The verify reads every table back through the API (a request per page of rows) and
compares each row exactly with the file, with the same machinery ``d1sync verify`` and ``clone`` use.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d1sync.client import D1Client
from d1sync.client.imports import ImportHandle
from d1sync.errors import ConfigError
from d1sync.restore.dump import iter_dump, open_plan
from d1sync.sync.compare.verify import TableDiff, verify_table
from d1sync.sync.config import DEFAULT_PAGE

__all__ = ["RestoreReport", "restore"]

_USER_TABLES = (
    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name"
)


@dataclass
class RestoreReport:
    """What :func:`restore` did: the database it filled, the import, and the verify of every table."""

    database_id: str
    name: str | None
    created: bool
    statements: int
    bookmark: str
    tables: list[TableDiff] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """True when every table compared equal with the file."""
        return all(t.equal for t in self.tables)


def _require_empty(db: D1Client, database_id: str) -> None:
    names = [str(r[0]) for r in db.prepare(_USER_TABLES).raw()]
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ConfigError(
            f"database {database_id} is not empty (it has {shown})",
            hint="restore into a new database with --to NAME, or into an empty one",
        )


def _create(d1: D1Client, name: str, location_hint: str | None, jurisdiction: str | None) -> str:
    made: dict[str, Any] = d1.create_database(name, primary_location_hint=location_hint, jurisdiction=jurisdiction)
    database_id = str(made.get("uuid") or "")
    if not database_id:
        raise ConfigError(f"D1 created the database {name!r} but did not say its id")
    return database_id


def restore(
    path: str | os.PathLike[str],
    d1: D1Client,
    *,
    name: str | None = None,
    into: str | None = None,
    location_hint: str | None = None,
    jurisdiction: str | None = None,
    page: int = DEFAULT_PAGE,
    on_import: Callable[[ImportHandle], None] | None = None,
    on_created: Callable[[str], None] | None = None,
) -> RestoreReport:
    """Restore the SQLite file ``path`` into D1 through ``d1`` (module docstring).

    Give ``name`` to create a new database (``location_hint``, ``jurisdiction``), or ``into`` the id of an
    existing empty one. ``on_created`` gets a new database's id as soon as D1 gives it (a failure later
    leaves that database behind, empty when the import failed), ``on_import`` the import's handle after each
    step (see :meth:`D1Client.import_sql`).

    Raises:
        ConfigError: no such file; neither or both of ``name`` and ``into``; ``into`` is not empty; a virtual
            table other than FTS5. D1Error: D1 refused the import (nothing applied) or a request failed.
    """
    if (name is None) == (into is None):
        raise ConfigError("give either the name of a new database or the id of an empty one (not both)")
    started = time.monotonic()
    with open_plan(path) as dump, tempfile.TemporaryDirectory(prefix="d1sync-restore-") as folder:
        # The dump goes to disk first: it is planned (and any refusal raised) before D1 is touched.
        text = Path(folder) / "restore.sql"
        with text.open("w", encoding="utf-8") as out:
            for statement in iter_dump(dump):
                out.write(statement)
        if into is not None:
            database_id, created = into, False
        else:
            assert name is not None
            database_id, created = _create(d1, name, location_hint, jurisdiction), True
            if on_created is not None:
                on_created(database_id)
        with d1.for_database(database_id) as target:
            if not created:
                _require_empty(target, database_id)
            result = target.import_sql(text, on_progress=on_import)
            diffs = [
                verify_table(dump.source.connection, target, dump.spec(entry), page, None, None, False)[0]
                for entry in dump.copied()
            ]
        notes = [
            f"{e.name}: a contentless FTS5 table holds no content to restore; it is created empty"
            for e in dump.plan
            if e.kind == "contentless"
        ]
    return RestoreReport(
        database_id, name, created, result.num_queries, result.final_bookmark, diffs, time.monotonic() - started, notes
    )
