"""Status of an outbox, readable from the file alone: no running worker is needed."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from d1sync.sqlite import Connection, shown
from d1sync.sync.store.dead import dead_count
from d1sync.sync.store.log import oldest_pending_at, pending_count, pending_keys, pending_per_table
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import RequestSize, Seeding, TableState, load_state, load_table_states
from d1sync.sync.store.twoway import PullTable, Replica, load_pull_tables, load_replica

__all__ = ["Status", "TableStatus", "read_status"]


TableStateName = Literal["synced", "pending", "paused"]


@dataclass(frozen=True)
class TableStatus:
    """One synced table: ``synced`` (nothing pending), ``pending`` (changes on their way) or ``paused`` (its
    changes wait for ``fix``; the other tables flow)."""

    state: TableStateName
    pending: int
    reason: str | None = None
    fix: str | None = None
    note: str | None = None
    resending: bool = False
    """Every row of the table is being queued again (after ADD COLUMN, a recreated table, a repair)."""
    replicated: bool = False
    """Two-way (``Outbox.replicate``): the fields below describe its pull."""
    cursor: int | None = None
    """The replica's position in the remote log (the same for every table of the file)."""
    last_pull: float | None = None
    """Epoch seconds of the last pull that applied rows of this table."""
    pull_lag: float | None = None
    """Seconds from a remote commit to its local apply, for the newest entry of the last such pull."""
    pulled: int = 0
    resync: bool = False
    """The table owes a resync (compared with the remote and made equal, key by key)."""
    pull_note: str | None = None
    """Remote rows that could not be applied here, or the remote capture triggers missing."""
    last_schema_change: dict[str, Any] | None = None
    """The last schema action d1sync took on the remote table: ``at`` (epoch seconds), ``action`` (``create``,
    ``rename``, ``alter`` or ``rebuild``) and ``sql`` (its statements); None if it never took one."""


LOW_DISK = 1 << 20
"""Free bytes under which the disk holding a file counts as full (see :attr:`Status.disk_full`)."""


@dataclass(frozen=True)
class Status:
    """A snapshot of the outbox.

    Attributes:
        pending_changes: change-log rows not yet acknowledged.
        pending_keys: distinct rows (table, key) those changes touch.
        oldest_pending_age: seconds since a worker first saw the oldest pending change (within one pass of
            its capture); None if nothing is pending, or no worker has run since it was written.
        dead_letters: changes D1 refused permanently (see ``d1sync dead``), not counting retried ones.
        tables: synced tables.
        last_success: epoch seconds of the last acknowledged request, if any.
        last_error: the last failure (message, kind, code, status, at), if any.
        backoff_remaining: seconds until the next attempt after a failure (0 if none).
        paused: why the worker is paused (auth error, missing database, schema mismatch), if it is.
        lease_owner: the worker currently holding the drain lease, if its lease is live.
        rows_per_second: throughput of the last successful pass (rows sent / its duration).
        rate_budget: the API requests the worker's client could still send at its last success
            (``available``, out of ``rate`` per ``per`` seconds), if its client has a rate limiter.
        table_states: each synced table's :class:`TableStatus`.
        replica: for a file with two-way tables: its replica ``id``, ``cursor``, ``last_pull`` and why pulls
            wait (``paused``), if they do.
        disk_free: bytes free on the disk holding the file (None where it cannot be told).
        importing: an import of the backlog under way (:mod:`d1sync.sync.push.seeder`): its ``tables``, ``rows``,
            ``started`` (epoch seconds) and ``stage`` (``preparing``, ``init``, ``uploaded``, ``ingesting``).
        request_size: the request size learned from D1's answers (:mod:`d1sync.sync.push.sizing`): ``bytes``
            planned to, ``refused`` (the smallest body D1 refused as too big or too slow, or None) and
            ``row_bytes`` (a row's mean size); None before the first full request.
    """

    pending_changes: int
    pending_keys: int
    oldest_pending_age: float | None
    dead_letters: int
    tables: list[str]
    last_success: float | None
    last_error: dict[str, Any] | None
    backoff_remaining: float
    paused: str | None
    lease_owner: str | None
    rows_per_second: float | None = None
    rate_budget: dict[str, float] | None = None
    table_states: dict[str, TableStatus] = dataclasses.field(default_factory=dict)
    replica: dict[str, Any] | None = None
    disk_free: int | None = None
    importing: dict[str, Any] | None = None
    request_size: dict[str, Any] | None = None

    @property
    def disk_full(self) -> bool:
        """True when the disk holding the file has less than 1 MiB free: its writes (the application's and the
        outbox's) fail, and the worker cannot even record why in the file."""
        return self.disk_free is not None and self.disk_free < LOW_DISK

    @property
    def healthy(self) -> bool:
        """False while the worker, any table or the pull is paused, or the file's disk is full: something
        waits for a fix."""
        pull_paused = self.replica is not None and self.replica.get("paused") is not None
        paused = self.paused is not None or pull_paused or any(t.state == "paused" for t in self.table_states.values())
        return not paused and not self.disk_full

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["healthy"] = self.healthy
        return data


def read_status(conn: Connection, *, now: float | None = None) -> Status:
    """The status of the outbox in ``conn``'s file, read in one snapshot."""
    now = time.time() if now is None else now
    with conn.snapshot():
        pending = pending_count(conn)
        _, oldest = oldest_pending_at(conn)
        keys = pending_keys(conn)
        dead = dead_count(conn)
        per_table = pending_per_table(conn)
        table_states = load_table_states(conn)
        state = load_state(conn)
        specs = load_specs(conn)
        tables = sorted(specs)
        replica = load_replica(conn)
        pulls = load_pull_tables(conn)
    last_pass = state.last_pass
    return Status(
        pending_changes=pending,
        pending_keys=keys,
        oldest_pending_age=None if oldest is None else max(0.0, now - oldest / 1000),
        dead_letters=dead,
        tables=tables,
        last_success=state.last_success,
        last_error=dataclasses.asdict(state.last_error) if state.last_error else None,
        backoff_remaining=max(0.0, state.backoff_until - now),
        paused=state.paused,
        lease_owner=state.lease.owner if state.lease and state.lease.expires > now else None,
        rows_per_second=round(last_pass.rows / last_pass.seconds, 1) if last_pass and last_pass.seconds else None,
        rate_budget=dataclasses.asdict(state.rate_budget) if state.rate_budget else None,
        table_states={
            name: _pull_status(
                _table_status(table_states.get(name), per_table.get(name, 0)),
                replica if name in specs and specs[name].replicate else None,
                pulls.get(name),
                f"d1sync replicate {shown(conn.path)} {shlex.quote(name)}",
            )
            for name in tables
        },
        replica=_replica_status(replica) if any(s.replicate for s in specs.values()) else None,
        disk_free=_disk_free(conn.path),
        importing=_importing(state.seeding),
        request_size=_request_size(state.request_size),
    )


def _request_size(learned: RequestSize | None) -> dict[str, Any] | None:
    if learned is None:
        return None
    row = None if learned.row_bytes is None else round(learned.row_bytes, 1)
    return {"bytes": learned.bytes, "refused": learned.refused, "row_bytes": row}


def _importing(record: Seeding | None) -> dict[str, Any] | None:
    if record is None:
        return None
    stage = "preparing" if record.handle is None else str(record.handle.get("stage"))
    return {"tables": list(record.tables), "rows": record.rows, "started": record.started, "stage": stage}


def _disk_free(path: Path) -> int | None:
    if os.fspath(path) == ":memory:":
        return None
    try:
        return shutil.disk_usage(path.resolve().parent).free
    except OSError:
        return None


def _table_status(state: TableState | None, pending: int) -> TableStatus:
    state = state or TableState()
    kind: TableStateName = "paused" if state.paused else "pending" if pending else "synced"
    return TableStatus(
        kind,
        pending,
        state.paused,
        state.fix,
        state.note,
        state.resend_after is not None,
        last_schema_change=state.last_schema_change,
    )


def _pull_status(status: TableStatus, replica: Replica | None, pull: PullTable | None, fix: str) -> TableStatus:
    """``status`` with the table's pull (``fix``: the command that installs its remote capture)."""
    if replica is None:
        return status
    pull = pull or PullTable()
    note = f"the remote capture triggers are missing: run `{fix}`" if pull.capture_missing else None
    return dataclasses.replace(
        status,
        replicated=True,
        cursor=replica.cursor,
        last_pull=pull.last_pull,
        pull_lag=pull.lag,
        pulled=pull.rows,
        resync=pull.resync,
        pull_note=note or pull.note,
    )


def _replica_status(replica: Replica | None) -> dict[str, Any]:
    if replica is None:
        return {"id": None, "cursor": 0, "last_pull": None, "paused": None}
    return {"id": replica.id, "cursor": replica.cursor, "last_pull": replica.last_pull, "paused": replica.paused}
