"""One tenant of a fleet: its file, its database binding, its sync worker, and its status row.

A :class:`TenantEngine` is what the fleet holds many of (STYLE rule 20: the fleet owns only the many). It is
opened lazily (track the tables, bind the database, open the worker) and closed when idle, so open files stay
bounded. Every failure of one pass (a refused token, a locked or corrupt file, an unreachable account) is
caught here and kept in its row, with a back-off, so it never reaches the other tenants.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from d1sync.client import D1Client
from d1sync.errors import D1SyncError
from d1sync.fleet.provision import ANYWHERE, Binding, Placement, bind, place_of, read_binding, record_size
from d1sync.fleet.tenants import Tracking, track_tables
from d1sync.local import LocalDatabase
from d1sync.sync import Outbox, SyncConfig, SyncResult, SyncWorker
from d1sync.sync.schema.create import copy_schema

__all__ = ["Connect", "TenantEngine", "TenantRow"]

log = logging.getLogger("d1sync.fleet")

Connect = Callable[[str | None], D1Client]
"""``connect(database_id)``: a client of that database (None: of the account), on the fleet's shared limiter."""

_FAILURE_BACKOFF = (5.0, 300.0)
"""First and longest wait after a pass that failed outside the worker (binding, opening the file)."""


@dataclass
class TenantRow:
    """A tenant's line in ``fleet status`` (and ``/status.json``)."""

    file: str
    database_name: str | None = None
    database_id: str | None = None
    state: str = "new"
    """``new``, ``idle``, ``synced``, ``backoff``, ``paused``, ``locked``, ``failed`` or ``missing``."""
    pending: int = 0
    dead: int = 0
    paused: str | None = None
    oldest_pending_seconds: float | None = None
    last_error: str | None = None
    size_bytes: int | None = None
    tables: list[str] = field(default_factory=list)
    warnings: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_row(path: Path, row: TenantRow) -> TenantRow:
    """``row`` with the outbox's own numbers read from the file (pending, dead letters, pause, last error)."""
    if not path.exists():
        row.state = "missing"
        return row
    if not Outbox.exists(path):
        return row
    status = Outbox(path).status()
    row.pending, row.dead = status.pending_changes, status.dead_letters
    row.oldest_pending_seconds = None if status.oldest_pending_age is None else round(status.oldest_pending_age, 3)
    paused_tables = {t: s.reason for t, s in status.table_states.items() if s.state == "paused"}
    row.paused = status.paused or ("; ".join(f"{t}: {why}" for t, why in sorted(paused_tables.items())) or None)
    # The file keeps its last failure after recovery: it is the tenant's trouble only while it waits on it.
    waiting = status.paused is not None or status.backoff_remaining > 0
    if status.last_error and row.last_error is None and waiting:
        row.last_error = str(status.last_error.get("message"))
    row.tables = status.tables
    return row


def _schema_version(worker: SyncWorker) -> int:
    """The file's ``PRAGMA schema_version``: it moves with every CREATE, ALTER and DROP."""
    return int(worker.conn.execute("PRAGMA schema_version").fetchone()[0])


class TenantEngine:
    """One tenant file synced to its own database (see the module docstring).

    Args:
        path: the tenant file.
        name: its database name.
        connect: clients on the fleet's shared rate limiter.
        config: the worker config every tenant shares.
        tables: the tables to sync (None: every user table).
        placement: where a new database goes.
        monotonic: the clock of back-offs.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        connect: Connect,
        config: SyncConfig,
        *,
        tables: Sequence[str] | None = None,
        placement: Placement = ANYWHERE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.name = name
        self._connect = connect
        self._config = config
        self._tables = None if tables is None else list(tables)
        self._placement = placement
        self._monotonic = monotonic
        self.binding: Binding | None = None
        self.worker: SyncWorker | None = None
        self._client: D1Client | None = None
        self._seen_version: int | None = None
        self._schema_seen: int | None = None
        self._failures = 0
        self.last_used = monotonic()
        self.row = TenantRow(file=path.name, database_name=name)

    def __repr__(self) -> str:
        return f"TenantEngine({os.fspath(self.path)!r}, {self.name!r})"

    @property
    def open(self) -> bool:
        return self.worker is not None

    def changed(self) -> bool:
        """Whether another connection wrote to the file since the last pass began (True when closed: the
        file's own changes are then only known from its stat, which already said so)."""
        if self.worker is None or self._seen_version is None:
            return True
        try:
            return self.worker.conn.data_version() != self._seen_version
        except D1SyncError:
            return True

    def open_worker(self, account: D1Client) -> SyncWorker:
        """Track the tenant's tables, bind its database (adopt or create, with its schema) and open its worker;
        the open worker if it is open. Raises what fails (the caller decides what a failure means)."""
        if self.worker is not None:
            return self.worker
        tracking = self._track()
        self.load_binding(account)
        how = "recorded"
        if self.binding is not None and self.binding.schema_ready:
            self._create_remote(tracking.new)  # tables made while no worker watched (by the app, a migration)
        else:
            self.binding, how = bind(
                self.path,
                self.name,
                account,
                self._database,
                placement=self._placement,
                tables=tracking.tables if self._tables is not None else None,
            )
            self.row.database_id, self.row.database_name = self.binding.database_id, self.binding.database_name
            self.row.size_bytes = self.binding.size_bytes
            if how != "recorded" and self.binding.size_bytes is None:
                self._note_size(account)  # the create's answer had no size: one request more
        client = self._database(self.binding.database_id)
        self.worker = SyncWorker(self.path, client, self._config)
        self.worker.position_check_waits_for_changes = True  # a quiet tenant costs no request to open
        if how == "created":  # its tables came from this file's DDL just now: nothing to check on D1
            self.worker.created_remote_tables()
        self._schema_seen = _schema_version(self.worker)
        return self.worker

    def _track(self) -> Tracking:
        tracking = track_tables(self.path, self._tables)
        fresh = {t: why for t, why in tracking.warnings.items() if self.row.warnings.get(t) != why}
        for table, why in fresh.items():
            log.warning("%s: table %s: %s", self.path.name, table, why)
        self.row.tables, self.row.warnings = tracking.tables, tracking.warnings
        return tracking

    def follow_tables(self) -> list[str]:
        """Track the tables created since the worker opened (by the application or a migration), with their
        rows, and create them in the database (one request, only when there are new ones); their names."""
        new = self._track().new
        self._create_remote(new)
        if self.worker is not None:
            self._schema_seen = _schema_version(self.worker)
        return new

    def _create_remote(self, tables: list[str]) -> None:
        """Give the database the newly tracked ``tables`` (IF NOT EXISTS: one a migration made stays)."""
        if not tables or self.binding is None:
            return
        with LocalDatabase(self.path, wal=False) as local:
            copy_schema(local, self._database(self.binding.database_id), tables)
        log.info("%s: now syncing the new table(s) %s", self.path.name, ", ".join(tables))

    def client(self, database_id: str) -> D1Client:
        """A new client of ``database_id`` on the fleet's shared limiter (the caller closes it)."""
        return self._connect(database_id)

    def _database(self, database_id: str) -> D1Client:
        if self._client is None or self._client.database_id != database_id:
            if self._client is not None:
                self._client.close()
            self._client = self._connect(database_id)
        return self._client

    def _note_size(self, account: D1Client) -> None:
        """D1's ``file_size`` of the database, as the account lists it (one request, at binding time)."""
        if self.binding is None:
            return
        try:
            info = account.get_database(self.binding.database_id)
        except D1SyncError as exc:
            log.debug("%s: could not read the database size: %s", self.path.name, exc)
            return
        if isinstance(info.get("file_size"), int):
            self.row.size_bytes = int(info["file_size"])
            record_size(self.path, place_of(account), self.row.size_bytes)

    def seen_size(self, size_bytes: int, place: str) -> bool:
        """D1's ``file_size`` of the tenant's database, as the account listed it: into the row, and into the file
        when it moved. Call it between passes only. Returns whether the file was written; that write is the
        fleet's own, so an open worker does not take it for the application's (a closed one's stat moves:
        the caller keeps the new stat)."""
        if size_bytes == self.row.size_bytes or self.binding is None:
            return False
        self.row.size_bytes = size_bytes
        self.binding = replace(self.binding, size_bytes=size_bytes)
        written_before = self.changed()
        record_size(self.path, place, size_bytes)
        if self.worker is not None and not written_before:
            self._seen_version = self.worker.conn.data_version()
        return True

    def load_binding(self, account: D1Client) -> None:
        """Read the binding recorded in the file (no request), for status before the first pass."""
        if self.binding is None and self.path.exists():
            try:
                self.binding = read_binding(self.path, place_of(account))
            except D1SyncError:
                return
            if self.binding is not None:
                self.row.database_id, self.row.database_name = self.binding.database_id, self.binding.database_name
                self.row.size_bytes = self.binding.size_bytes

    def step(self, account: D1Client, now: float | None = None) -> SyncResult:
        """One pass: open (track, bind, schema) if needed, then the engine's ``step()``. Never raises for the tenant's
        own trouble: it becomes a ``failed`` row and a back-off (``retry_in``)."""
        self.last_used = self._monotonic()
        try:
            worker = self.open_worker(account)
            if _schema_version(worker) != self._schema_seen:
                self.follow_tables()
            self._seen_version = worker.conn.data_version()
            result = worker.step(now)  # a local error or a bug in the pass becomes a back-off
        except Exception as exc:  # one tenant's trouble, whatever it is, stays in its row
            self._failures += 1
            first, longest = _FAILURE_BACKOFF
            wait = min(longest, first * 2 ** (self._failures - 1))
            self.row.state, self.row.last_error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("%s: %s (again in %.0fs)", self.path.name, self.row.last_error, wait)
            self.close()
            return SyncResult("backoff", retry_in=wait, error=self.row.last_error)
        self._failures = 0
        self.row.state = result.state
        self.row.rows += result.rows
        self.row.requests += result.requests
        self.row.last_error = result.error
        if result.state == "locked":
            self.row.last_error = "another worker holds its sync lease (`fleet run`, `run` or the application's)"
        if result.remote_size is not None:  # D1 said its size in the answer: no listing needed for it
            try:
                self.seen_size(result.remote_size, place_of(account))
            except D1SyncError as exc:
                log.debug("%s: could not record its size: %s", self.path.name, exc)
        return result

    def refresh(self) -> TenantRow:
        """The status row with the file's current numbers (reads the file)."""
        try:
            read_row(self.path, self.row)
        except D1SyncError as exc:
            self.row.last_error = f"{type(exc).__name__}: {exc}"
        return self.row

    def close(self) -> None:
        """Close the worker and the client (reopened by the next pass)."""
        worker, client = self.worker, self._client
        self.worker = self._client = None
        self._seen_version = None
        try:
            if worker is not None:
                worker.close()
        finally:
            if client is not None:
                client.close()
