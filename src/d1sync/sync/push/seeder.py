"""Seeding through D1's import: a large backlog goes as one SQL file instead of hundreds of batches.

A batch carries at most a few megabytes; D1's import (what ``wrangler d1 execute --file --remote`` uses) takes a
file of any size for a few API requests (init, ingest, polls), and the upload goes to a signed URL outside the
account's request budget. So when the backlog is large (``SyncConfig.import_threshold`` distinct rows, 200,000
by default) and ``via`` allows it, a pass sends the current state of every row it touches
(:mod:`~d1sync.sync.push.seedfile`) through the import instead of through batches.

**Crash-safe, in this order:**

1. The send's number on D1's fence is taken from the file (committed) and the file is written from one
   snapshot; the highest seq it carries is :attr:`~d1sync.sync.store.state.Seeding.through`.
2. One transaction records the import (:class:`~d1sync.sync.store.state.Seeding`) and queues again the few rows
   that cannot travel as text. From here, *nothing else is sent* until D1 says how the import ended.
3. Each step's handle is recorded before the next one (the client records ``ingesting`` before it sends the
   ingest): once D1 may be running the file, it is only ever polled, never started again.
4. D1 says ``complete``: one transaction deletes those tables' changes up to ``through`` and the record. Rows
   written meanwhile have higher seqs: they stay pending and go after it.

After a crash the next pass finds the record: an import that never reached ``ingesting`` ran nothing and is
dropped; one that did is polled until it ends. An import that failed (D1 refused a statement: nothing was
applied) or whose outcome cannot be known (D1 no longer knows it) is dropped, and batches carry the rows:
every statement is an upsert or a delete of a state, so a repeat is harmless. An import that still runs late
is refused by the fence, like a late batch: its number is below every later send's. Nothing is lost or
doubled.

D1 runs an import as one transaction and is briefly unavailable to other queries meanwhile.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from d1sync.client.imports import ImportHandle, ImportResult
from d1sync.errors import D1Error, TransientError
from d1sync.sqlite import Connection
from d1sync.sync.config import SyncConfig
from d1sync.sync.link import Link
from d1sync.sync.model import Failure, SyncResult, TableSpec
from d1sync.sync.push.seedfile import SeedFile, SeedTooLargeError, write_seed
from d1sync.sync.store.log import (
    acknowledge_through,
    append_changes,
    issued_seq,
    pending_count,
    pending_keys,
    pending_through,
)
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import Seeding, load_state, load_table_states, next_send, save_state

__all__ = ["Seeder"]

log = logging.getLogger("d1sync.sync")

_RECOUNT_SECONDS = 30.0
"""How often, at most, ``auto`` counts the distinct pending rows again while the log holds more rows than the
threshold (a scan of the log: never more than 2 % of the time, however long the log)."""


def _importable(link: Link) -> Callable[..., ImportResult] | None:
    """The target's ``import_sql`` (a D1Client's, the emulator's), or None (a local file takes no import)."""
    return getattr(link.target, "import_sql", None)


class Seeder:
    """Sends a large backlog through D1's import, and follows one a crash interrupted (module docstring).

    Example::

        seeder = Seeder(SyncConfig(via="import"))
        outcome = seeder.run(link, time.time(), waiting=preflight.waiting)   # None: send batches
    """

    def __init__(self, config: SyncConfig) -> None:
        self.via = config.via
        self.threshold = config.import_threshold
        self._recount_at = 0.0
        self._warned = False

    def run(
        self,
        link: Link,
        now: float,
        *,
        waiting: Collection[str] = (),
        on_progress: Callable[[SyncResult], None] | None = None,
    ) -> SyncResult | Failure | None:
        """Follow an import under way, or send the backlog through one when it is due; None when batches should
        go (no import under way and none due). ``waiting``: tables whose changes wait this pass (paused, or
        their remote table unchecked)."""
        record = load_state(link.conn).seeding
        if record is not None:
            return self._follow(link, record, now, on_progress)
        if self.via == "batch" or _importable(link) is None:
            if self.via == "import" and not self._warned:
                self._warned = True
                log.warning("via='import', but %r takes no import: batches carry the backlog", link.target)
            return None
        specs = self._due(link, waiting)
        if not specs:
            return None
        return self._start(link, specs, now, on_progress)

    def _due(self, link: Link, waiting: Collection[str]) -> dict[str, TableSpec]:
        """The tables an import should carry now (empty: none is due)."""
        conn = link.conn
        count = pending_count(conn)
        if count == 0:
            return {}
        declined = load_state(conn).import_declined
        if declined and pending_through(conn, declined):
            return {}  # the last import failed: its rows go through batches
        if self.via == "auto":
            if count < self.threshold or time.monotonic() < self._recount_at:
                return {}
            started = time.monotonic()
            distinct = pending_keys(conn)
            self._recount_at = started + max(_RECOUNT_SECONDS, 50 * (time.monotonic() - started))
            if distinct < self.threshold:
                return {}
        states = load_table_states(conn)
        return {
            name: spec
            for name, spec in load_specs(conn).items()
            if spec.mode == "track"
            and not spec.replicate  # a two-way table's batches set the origin for the remote capture
            and name not in waiting
            and (name not in states or states[name].resend_after is None)  # a re-send queues rows chunk by chunk
        }

    def _start(
        self, link: Link, specs: dict[str, TableSpec], now: float, on_progress: Callable[[SyncResult], None] | None
    ) -> SyncResult | Failure | None:
        conn = link.conn
        identity, number = next_send(conn)
        with tempfile.TemporaryDirectory(prefix="d1sync-import-") as folder:
            path = Path(folder) / "backlog.sql"
            try:
                with path.open("w", encoding="utf-8") as out:
                    seed = write_seed(conn, specs, out, identity=identity, number=number)
            except SeedTooLargeError as exc:
                log.warning("%s: batches carry this backlog (imports resume after it)", exc)
                with conn.atomic():
                    save_state(conn, import_declined=issued_seq(conn))
                return None
            if seed.rows == 0:
                return None
            record = Seeding(seed.tables, seed.through, seed.rows, number, now)
            with conn.atomic():
                _hold(conn, seed)
                save_state(conn, seeding=record)
            log.info(
                "sending %d rows of %s through D1's import (%d statements; D1 holds the database meanwhile)",
                seed.rows,
                ", ".join(seed.tables),
                seed.statements,
            )
            importer = _importable(link)
            assert importer is not None
            try:
                result = importer(path, on_progress=lambda handle: _save_handle(link, record, handle))
            except D1Error as exc:
                return _ended(link, exc, now)
        return _complete(link, record, result, on_progress)

    def _follow(
        self, link: Link, record: Seeding, now: float, on_progress: Callable[[SyncResult], None] | None
    ) -> SyncResult | Failure:
        """Poll an import a previous pass (or process) started, or drop it if it never ran."""
        handle = None if record.handle is None else ImportHandle.from_dict(record.handle)
        if handle is None or handle.stage in ("init", "uploaded"):
            log.info("an import of %d rows was interrupted before D1 ran it: batches carry its rows", record.rows)
            _drop(link, record, declined=False)
            return SyncResult("synced", more=True)
        poll = getattr(link.target, "poll_import", None)
        if poll is None:
            return Failure(TransientError("an import is under way, but the target cannot poll it"), now, pause=True)
        log.info("following the import %s of %d rows", handle.filename or handle.etag, record.rows)
        try:
            result = poll(handle, on_progress=lambda h: _save_handle(link, record, h))
        except D1Error as exc:
            return _ended(link, exc, now)
        return _complete(link, record, result, on_progress)


def _ended(link: Link, exc: D1Error, now: float) -> SyncResult | Failure:
    """An import that raised. A transient failure once D1 may be running it leaves its outcome unknown: the
    record stays and the next pass polls again. Otherwise nothing was applied (refused, never started) or
    never will be knowable (D1 forgot it: the fence refuses it if it still runs): batches carry its rows."""
    record = load_state(link.conn).seeding
    ran = record is not None and record.handle is not None and record.handle.get("stage") == "ingesting"
    if isinstance(exc, TransientError):
        if ran:
            log.warning("the import's outcome is not known yet, asked again next pass: %s", exc)
        elif record is not None:
            _drop(link, record, declined=False)
        return Failure(exc, now, pause=False)
    if record is not None:
        log.warning("the import of %d rows ended without applying them (%s): batches carry them", record.rows, exc)
        _drop(link, record, declined=True)
    return SyncResult("synced", more=True)


def _hold(conn: Connection, seed: SeedFile) -> None:
    """Queue again the rows the file left out: their new change rows come after ``through``."""
    for table, keys in seed.held.items():
        append_changes(conn, table, [(key, "upsert", None) for key in keys])
        log.info("%d rows of %s go through batches (too big for SQL text, or not UTF-8)", len(keys), table)


def _save_handle(link: Link, record: Seeding, handle: ImportHandle) -> None:
    with link.conn.atomic():
        current = load_state(link.conn).seeding
        if current is not None and current.number == record.number:
            save_state(link.conn, seeding=replace(current, handle=handle.to_dict()))


def _drop(link: Link, record: Seeding, *, declined: bool) -> None:
    with link.conn.atomic():
        current = load_state(link.conn).seeding
        if current is not None and current.number == record.number:
            save_state(link.conn, seeding=None, **({"import_declined": record.through} if declined else {}))


def _complete(
    link: Link, record: Seeding, result: ImportResult, on_progress: Callable[[SyncResult], None] | None
) -> SyncResult:
    """D1 applied the import: its tables' changes up to ``through`` are delivered."""
    conn = link.conn
    with conn.atomic():
        current = load_state(conn).seeding
        delivered = 0
        if current is not None and current.number == record.number:  # not completed by another worker already
            delivered = acknowledge_through(conn, record.tables, record.through)
            save_state(conn, seeding=None)
    log.info(
        "D1 imported %d rows of %s (%d statements, %d change rows delivered)",
        record.rows,
        ", ".join(record.tables),
        result.num_queries,
        delivered,
    )
    requests = 2  # init and ingest; polls are reads, and the upload is outside the API
    link.counters.rows += record.rows
    link.counters.requests += requests
    done = SyncResult(
        "synced", rows=record.rows, requests=requests, more=True, remote_size=result.meta.size_after or None
    )
    if on_progress is not None:
        on_progress(done)
    return done
