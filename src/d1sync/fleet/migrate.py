"""Fleet migrations: the pending wrangler-format migrations applied to every tenant, its D1 database and its
file, each with its own ``d1_migrations`` ledger.

For each tenant, in file-name order: take its sync lease (so no other worker sends while its schema moves),
drain its outbox (rows go out in the shape they were written in), apply the pending migrations to its
database, then to its file, then track the tables the migrations created. Each side's ledger says what it
has, so a run that stopped (a crash, a failure) is resumed by running it again: a tenant whose database is
ahead of its file gets only the file's part.

``canary`` tenants (the first N by file name) go first, one by one; if one fails, the run stops there and
the rest are ``skipped``. Otherwise a failed tenant is reported and the others go on (``stop_on_error``
halts instead). ``dry_run`` lists what would run, reading only: no lease, no database created, no ledger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from d1sync.client import D1Client
from d1sync.errors import D1SyncError
from d1sync.fleet.engine import Connect, TenantEngine
from d1sync.fleet.naming import DEFAULT_TEMPLATE, database_name
from d1sync.fleet.provision import ANYWHERE, Placement, place_of, read_binding
from d1sync.fleet.tenants import DEFAULT_PATTERN, discover
from d1sync.local import LocalDatabase
from d1sync.migrations import MigrationFile, Migrator
from d1sync.sync import SyncConfig, drain

__all__ = ["MigrationRow", "migrate_fleet"]

log = logging.getLogger("d1sync.fleet")

Outcome = Literal["migrated", "current", "failed", "skipped"]
_LEASE_EXTRA = 3600.0
"""How long past its usual ttl the lease is held while migrations run (released as soon as they are done)."""


@dataclass
class MigrationRow:
    """One tenant's outcome: ``migrated``, ``current`` (nothing pending), ``failed`` or ``skipped`` (the canary
    stopped the run, ``stop_on_error``, or a dry run: ``pending`` then lists what would run)."""

    file: str
    database_id: str | None = None
    applied: list[str] = field(default_factory=list)
    status: Outcome = "skipped"
    error: str | None = None
    pending: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pending(migrator: Migrator) -> list[str]:
    return [f.name for f in migrator.pending()]


def _plan(engine: TenantEngine, account: D1Client, files: Sequence[MigrationFile], row: MigrationRow) -> None:
    """A dry run: what each side lacks, read without writing (an unbound tenant lacks every file remotely)."""
    binding = read_binding(engine.path, place_of(account))
    with LocalDatabase(engine.path, wal=False) as local:
        local_pending = _pending(Migrator(local, files))
    remote_pending = [f.name for f in files]
    if binding is not None:
        row.database_id = binding.database_id
        with engine.client(binding.database_id) as remote:
            remote_pending = _pending(Migrator(remote, files))
    row.pending = [f.name for f in files if f.name in remote_pending or f.name in local_pending]
    row.status = "skipped" if row.pending else "current"


def _migrate(engine: TenantEngine, account: D1Client, files: Sequence[MigrationFile], row: MigrationRow) -> None:
    worker = engine.open_worker(account)
    assert engine.binding is not None
    row.database_id = engine.binding.database_id
    if not worker.acquire_lease(time.time(), extra=_LEASE_EXTRA):
        raise D1SyncError(
            f"another worker holds the sync lease ({worker.status().lease_owner}): stop `fleet run` (or `run`) first"
        )
    try:
        report = drain(worker, deadline=time.monotonic() + 600)
        if report.pending:  # a table paused with nothing pending may wait for this very migration
            raise D1SyncError(f"the outbox did not drain ({report.pending} pending): {report.error or report.state}")
        worker.acquire_lease(time.time(), renew=True, extra=_LEASE_EXTRA)  # the drain's passes shortened it
        applied = Migrator(worker.target, files).apply().applied
        with LocalDatabase(engine.path) as local:
            applied += Migrator(local, files).apply().applied
        engine.follow_tables()
    finally:
        worker.release_lease()
    names = {a.name for a in applied}
    row.applied = [f.name for f in files if f.name in names]
    row.status = "migrated" if row.applied else "current"


def migrate_fleet(
    folder: Path,
    connect: Connect,
    files: Sequence[MigrationFile],
    *,
    pattern: str = DEFAULT_PATTERN,
    name: str = DEFAULT_TEMPLATE,
    tables: Sequence[str] | None = None,
    placement: Placement = ANYWHERE,
    canary: int = 0,
    dry_run: bool = False,
    stop_on_error: bool = False,
    concurrency: int = 4,
    on_tenant: Callable[[MigrationRow], None] | None = None,
) -> list[MigrationRow]:
    """Migrate every tenant of ``folder`` (see the module docstring); a row per tenant, in file-name order.

    Example::

        files = MigrationSource(Path("."), migrations_dir=Path("migrations")).discover()
        rows = migrate_fleet(Path("tenants"), connector(target, limiter), files, canary=3)
        failed = [r for r in rows if r.status == "failed"]
    """
    paths = discover(folder, pattern).tenants
    rows = [MigrationRow(p.name) for p in paths]
    halted = threading.Event()
    account = connect(None)
    config = SyncConfig(read_ahead=False)

    def one(index: int) -> None:
        path, row = paths[index], rows[index]
        if halted.is_set():
            return
        engine = TenantEngine(path, database_name(path, name), connect, config, tables=tables, placement=placement)
        try:
            (_plan if dry_run else _migrate)(engine, account, files, row)
        except Exception as exc:  # one tenant's failure is its row's; the others go on
            row.status, row.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("%s: migration failed: %s", path.name, row.error)
            if stop_on_error:
                halted.set()
        finally:
            engine.close()
        if on_tenant is not None:
            on_tenant(row)

    try:
        first = min(canary, len(paths))
        for index in range(first):
            one(index)
            if rows[index].status == "failed":
                halted.set()
        if not halted.is_set():
            with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="d1sync-migrate") as pool:
                list(pool.map(one, range(first, len(paths))))
    finally:
        account.close()
    return rows
