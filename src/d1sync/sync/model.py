"""The sync engine's plain data: what a synced table is, what a change is, what a pass did. No I/O here.

:class:`TableSpec` is how one table is synced (stored by the store, derived by capture); :class:`Change` is
one coalesced change of a window (read by the store, planned and sent by push); :class:`SyncResult` is what
one pass did, and :class:`Failure` a failure a part hands back for the engine to record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

from d1sync.errors import D1SyncError

__all__ = [
    "Change",
    "Counters",
    "Failure",
    "Mode",
    "Op",
    "State",
    "SyncResult",
    "TableSpec",
    "seq_param",
    "utf8_length",
]


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it when it is ASCII (CPython knows that at no cost)."""
    return len(text) if text.isascii() else len(text.encode())


Mode = Literal["track", "enqueue", "purge"]


@dataclass(frozen=True)
class TableSpec:
    """How one table is synced.

    Attributes:
        name: the table name (the same locally and remotely).
        key: the key columns (primary key, or a UNIQUE index on NOT NULL columns).
        columns: the synced columns in order, key columns included.
        version_column: if set, a remote row is only overwritten by a row whose version is >= its own.
        parents: tracked tables this one references by foreign key (parents are upserted first).
        mode: ``track`` (triggers on a local table), ``enqueue`` (rows given to ``Outbox.enqueue``) or
            ``purge`` (untracked with ``delete_remote``: the worker deletes its remote rows, then forgets it).
        include, exclude: the column choice ``track`` was given, kept so that the columns can be derived again
            when the local table changes (None: every column).
        replicate: two-way: the worker also pulls the table's remote changes (``Outbox.replicate``), and its
            capture triggers skip the rows a pull applies.
        manage_schema: whether d1sync makes the remote table's schema follow the local one (creates it, alters
            or rebuilds it); None: the default rule (yes, unless the remote has a migrations ledger).
            Two-way tables and tables synced with include/exclude are never managed.
    """

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    version_column: str | None = None
    parents: tuple[str, ...] = field(default_factory=tuple)
    mode: Mode = "track"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    replicate: bool = False
    manage_schema: bool | None = None

    def schema_managed(self, manage: bool | None, ledger: bool) -> bool:
        """Whether d1sync owns this table's schema on D1: never for a two-way table or a column choice; else
        ``manage`` (``run``/``sync``'s choice for every table) if given, this table's own choice if it has
        one, else unless the remote has a migrations ledger (``ledger``)."""
        if self.mode != "track" or self.replicate or self.include is not None or self.exclude is not None:
            return False
        choice = manage if manage is not None else self.manage_schema
        return choice if choice is not None else not ledger

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TableSpec:
        data = json.loads(text)
        return cls(
            name=data["name"],
            key=tuple(data["key"]),
            columns=tuple(data["columns"]),
            version_column=data.get("version_column"),
            parents=tuple(data.get("parents", ())),
            mode=data.get("mode", "track"),
            include=tuple(data["include"]) if data.get("include") is not None else None,
            exclude=tuple(data["exclude"]) if data.get("exclude") is not None else None,
            replicate=bool(data.get("replicate", False)),
            manage_schema=data.get("manage_schema"),
        )


Op = Literal["upsert", "delete"]


@dataclass(slots=True)
class Change:
    """One coalesced change: the newest state of one key, and every change-log row it acknowledges.

    A window holds tens of thousands of these (two while the next is read ahead): with slots, each is one
    object for the garbage collector to scan instead of two (no ``__dict__``), and smaller.
    """

    table: str
    key: str
    op: Op
    data: str | None = None
    blobs: frozenset[int] = frozenset()
    """Indexes of values sent in object form (BLOBs, text with NUL); see :func:`~d1sync.sync.codec.encode_row`."""
    seqs: tuple[int, ...] = ()
    """The change-log rows it stands for, oldest first (a tuple of ints: the garbage collector stops scanning
    it once it has seen it)."""

    @property
    def payload(self) -> str:
        return self.data if self.op == "upsert" and self.data is not None else self.key

    @property
    def size(self) -> int:
        """Bytes of the payload as UTF-8 (computed once: the planner asks several times per row)."""
        payload = self.payload
        if self._size_of is not payload:
            self._size_of, self._size = payload, utf8_length(payload)
        return self._size

    _size_of: str | None = field(default=None, repr=False, compare=False)
    _size: int = field(default=0, repr=False, compare=False)


def seq_param(changes: Iterable[Change]) -> str:
    """The seqs behind ``changes`` as one JSON parameter."""
    return json.dumps([s for c in changes for s in c.seqs])


State = Literal["idle", "synced", "backoff", "paused", "locked"]
"""``idle``: nothing pending; ``synced``: sent something; ``backoff``: a transient failure, retry later;
``paused``: auth, missing database or schema, fix it; ``locked``: another worker holds the lease."""


@dataclass
class SyncResult:
    """What one ``sync_once`` did."""

    state: State
    rows: int = 0
    requests: int = 0
    dead: int = 0
    retry_in: float | None = None
    more: bool = False
    error: str | None = None
    paused_tables: dict[str, str] = field(default_factory=dict)
    """Tables paused on their own (the others flowed), and why; their changes wait."""
    pulled: int = 0
    """Remote rows applied locally by this pass's pull (two-way tables only)."""
    next_pull: float | None = None
    """Seconds until a pull is due, when the worker pulls (the loop wakes for it)."""
    remote_size: int | None = None
    """D1's size of the database in bytes after this pass's last acknowledged batch (its ``meta.size_after``):
    what a fleet shows without listing the account. None when no batch went or the answer did not say."""


@dataclass(frozen=True)
class Failure:
    """A pass that failed with no verdict on its rows: the engine records it (a back-off, or a pause).

    Attributes:
        error: what failed.
        at: epoch seconds of the failure.
        pause: pause (auth, a missing database) rather than back off.
        progressed: the pass delivered requests before it failed (the back-off starts afresh).
    """

    error: D1SyncError
    at: float
    pause: bool
    progressed: bool = False


@dataclass
class Counters:
    """What a worker has done since it started (the ``*_total`` counters)."""

    rows: int = 0
    requests: int = 0
    retries: int = 0
    dead: int = 0
    pulled: int = 0
    """Remote rows applied locally (upserts and deletes) by pulls."""
    pull_requests: int = 0
    kept_local: int = 0
    """Pulled keys whose local state won (a pending change, a higher local version)."""
    pull_failed: int = 0
    resyncs: int = 0
    echoes: int = 0
    """Pulled keys skipped because this replica's own push wrote them last."""

    def as_metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {
            "rows_sent": self.rows,
            "requests": self.requests,
            "retries": self.retries,
            "dead_lettered": self.dead,
        }
        if self.pull_requests:  # a push-only worker's metrics stay as they were
            metrics.update(
                rows_pulled=self.pulled,
                pull_requests=self.pull_requests,
                pull_kept_local=self.kept_local,
                pull_refused=self.pull_failed,
                resyncs=self.resyncs,
                pull_echoes_skipped=self.echoes,
            )
        return metrics
