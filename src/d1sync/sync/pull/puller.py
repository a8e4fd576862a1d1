"""The pull pass: what the other replicas and the remote's own writers changed, applied to the local file.

One pass is one batch request (atomic on D1, so every statement in it sees the same state):

1. the replica's heartbeat: its cursor (as applied locally up to the last pass) and ``seen_at``, written only
   when the cursor moved or a minute has passed, so an idle replica writes nothing;
2. a summary: the highest ``seq`` the log ever had, the window's last ``seq``, its size, the keys this
   replica wrote last (its own echoes, skipped), and which remote capture triggers exist;
3. the tables whose pruned horizon lies past the cursor (their entries are gone: they resync);
4. per replicated table, the current remote row of every key in the window whose last entry another writer
   made (state-based, as push is: an entry says *which* key changed; the row says what it is now).

The rows are then applied locally in one transaction with the new cursor (:mod:`~d1sync.sync.pull.apply`).
A table owing a resync (a new replica, a cursor behind the pruned log, triggers that were missing, a log
that was recreated) is compared with the remote through verify's pages and made equal, key by key, under
the same conflict rule. Once a day a pass also prunes the log (:func:`~d1sync.sync.remote.prune`).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from d1sync.errors import D1Error, SQLError, TransientError
from d1sync.sql import quote_identifier
from d1sync.sqlite import Connection
from d1sync.sync.codec import column_expr
from d1sync.sync.compare.pages import exact_columns, read_exact
from d1sync.sync.compare.verify import verify_table
from d1sync.sync.config import PullOptions
from d1sync.sync.link import Link
from d1sync.sync.model import Failure, SyncResult, TableSpec
from d1sync.sync.pull.apply import Applied, Pulled, apply_pulled
from d1sync.sync.remote import HEARTBEAT, LOG_WINDOW, PRUNED_SINCE, PULL_SUMMARY, log_trigger_names, prune
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import PREFIX
from d1sync.sync.store.twoway import (
    PullTable,
    Replica,
    ensure_replica_schema,
    has_replica_schema,
    load_pull_tables,
    replica_identity,
    save_pull_table,
    save_replica,
)

__all__ = ["PullReport", "Puller", "merge_pull", "replicated_specs"]

log = logging.getLogger("d1sync.pull")

_KEYS_PER_REQUEST = 200


@dataclass
class PullReport:
    """What one pull pass did."""

    rows: int = 0
    """Rows applied locally (upserted or deleted)."""
    entries: int = 0
    echoes: int = 0
    """Keys whose last entry was this replica's own push: skipped."""
    kept_local: int = 0
    requests: int = 0
    more: bool = False
    resynced: list[str] = field(default_factory=list)
    pruned: int | None = None
    failed: int = 0


def replicated_specs(conn: Connection) -> dict[str, TableSpec]:
    """The tracked tables marked two-way."""
    return {n: s for n, s in load_specs(conn).items() if s.replicate and s.mode == "track"}


def _join(spec: TableSpec, source: str) -> str:
    return " AND ".join(f"t.{quote_identifier(c)} IS {column_expr(i, True, source)}" for i, c in enumerate(spec.key))


def rows_sql(spec: TableSpec) -> str:
    """The current remote rows of ``spec``'s keys in the window whose last entry is not ``?4``'s: per key its
    text, the entry's ``at``, whether the row exists, then the exact row (:mod:`~d1sync.sync.compare.pages`)."""
    first = quote_identifier(spec.key[0])
    return (
        f"WITH w AS ({LOG_WINDOW}), last AS (SELECT key, origin, at, max(seq) AS seq FROM w WHERE tbl = ?3 "
        f"GROUP BY key) SELECT l.key, l.at, t.{first} IS NOT NULL, {exact_columns(spec)} FROM last AS l "
        f"LEFT JOIN {quote_identifier(spec.name)} AS t ON {_join(spec, 'l.key')} WHERE l.origin IS NOT ?4"
    )


def keys_sql(spec: TableSpec) -> str:
    """The current remote rows of the keys in the JSON array ``?1``: per key its index, whether the row
    exists, then the exact row."""
    first = quote_identifier(spec.key[0])
    return (
        f"SELECT j.key, t.{first} IS NOT NULL, {exact_columns(spec)} FROM json_each(?1) AS j "
        f"LEFT JOIN {quote_identifier(spec.name)} AS t ON {_join(spec, 'j.value')}"
    )


def _values(raw: list[Any]) -> tuple[Any, ...]:
    return tuple(v for _, v in read_exact(raw)[1])


class Puller:
    """The pull half of a worker (see the module docstring)."""

    def __init__(self, options: PullOptions) -> None:
        self.options = options
        self.last: float | None = None
        """``time.monotonic()`` of the last pass that reached the remote."""

    def due_in(self) -> float:
        """Seconds until the next pull is due (0: now)."""
        if self.last is None:
            return 0.0
        return max(0.0, self.last + self.options.interval - time.monotonic())

    def pull(self, link: Link, path: Path, *, pause_interval: float, now: float) -> PullReport | SyncResult | Failure:
        """One pass over ``link`` for the file at ``path``; a :class:`SyncResult` when it cannot run (the lease
        is elsewhere), a :class:`Failure` for the engine to record. A pull paused for a fix waits
        ``pause_interval`` seconds before it tries again."""
        run = _Pass(link, path, self.options)
        specs = replicated_specs(link.conn)
        if not specs:
            return PullReport()
        replica = run.replica(specs)
        if replica.paused and replica.paused_at is not None and 0 <= now - replica.paused_at < pause_interval:
            return PullReport()
        if not link.lease.acquire(now):
            return SyncResult("locked", retry_in=1.0)
        report = PullReport()
        try:
            run.fetch(specs, replica, now, report)
            run.resync(specs, now, report)
            run.prune(now, report)
        except TransientError as exc:
            return Failure(exc, now, pause=False)
        except SQLError as exc:
            if exc.missing is None:
                return Failure(exc, now, pause=True)
            run.missing(exc, now)
        except D1Error as exc:
            return Failure(exc, now, pause=True)
        self.last = None if report.more else time.monotonic()  # a full window: the next pass pulls at once
        return report


class _Pass:
    """One pull pass: what it is given (the link, the file's path, the options) and its steps."""

    def __init__(self, link: Link, path: Path, options: PullOptions) -> None:
        self.link = link
        self.path = path
        self.options = options

    def replica(self, specs: dict[str, TableSpec] | None = None) -> Replica:
        """This file's replica state (a new identity, every table owing a resync, if it has none here)."""
        conn = self.link.conn
        if not has_replica_schema(conn):
            ensure_replica_schema(conn)
        with conn.atomic():
            return replica_identity(conn, self.path, sorted(specs or replicated_specs(conn)))

    def missing(self, exc: SQLError, now: float) -> None:
        """The remote lacks the replication log or a replicated table: pulls wait (pushes go on)."""
        conn = self.link.conn
        assert exc.missing is not None
        if exc.missing[1].startswith(PREFIX):
            reason = (
                f"the remote has no replication log ({exc.message}); install it with `d1sync replicate "
                f"{shlex.join([os.fspath(conn.path), *sorted(replicated_specs(conn))])}` (or add "
                "`--emit-migration DIR` to that command and apply the migration it writes)"
            )
        else:
            reason = f"the remote refused the pull: {exc.message}; create the table there, or untrack it here"
        log.error("pull paused: %s", reason)
        with conn.atomic():
            replica = replica_identity(conn, self.path, [])
            capture = not exc.missing[1].startswith(PREFIX) and replica.installed
            save_replica(conn, replace(replica, installed=capture, paused=reason, paused_at=now))

    def _statements(self, specs: dict[str, TableSpec], replica: Replica) -> list[Any]:
        db, cursor, window = self.link.target, replica.cursor, self.options.window
        names = [n for t in sorted(specs) for n in log_trigger_names(t)]
        statements = [
            db.prepare(HEARTBEAT).bind(replica.id, cursor),
            db.prepare(PULL_SUMMARY).bind(cursor, window, replica.id, json.dumps(names)),
            db.prepare(PRUNED_SINCE).bind(cursor),
        ]
        statements += [db.prepare(rows_sql(specs[t])).bind(cursor, window, t, replica.id) for t in sorted(specs)]
        return statements

    def fetch(self, specs: dict[str, TableSpec], replica: Replica, now: float, report: PullReport) -> None:
        link = self.link
        results = link.target.batch_raw(self._statements(specs, replica))
        report.requests += 1
        link.counters.pull_requests += 1
        ever, last, count, echoes, found = results[1].rows[0]
        report.entries, report.echoes = int(count or 0), int(echoes or 0)
        link.counters.echoes += report.echoes
        report.more = report.entries >= self.options.window
        cursor = int(last) if last is not None else replica.cursor
        present = set(json.loads(found or "[]"))
        owed = {t for t in specs if not set(log_trigger_names(t)) <= present}
        behind = {str(t): int(s) for t, s in results[2].rows if str(t) in specs}
        reset = ever is None or int(ever) < replica.cursor
        if reset and replica.cursor:
            log.warning("the remote replication log was recreated: every replicated table resyncs")
            owed |= set(specs)
            cursor = int(ever or 0)
        if behind:
            log.warning("the remote log was pruned past this replica's cursor: %s resync", ", ".join(sorted(behind)))
            cursor = max(cursor, *behind.values())
        pulled = self._pulled(specs, results[3:])
        missing = set() if reset else {t for t in specs if not set(log_trigger_names(t)) <= present}
        with link.conn.atomic():
            states = load_pull_tables(link.conn)
            # Saved before the cursor moves past what these tables missed: a crash in between resyncs them.
            for table in specs:
                state = states.get(table, PullTable())
                new = replace(state, resync=state.resync or table in owed or table in behind)
                new = replace(new, capture_missing=table in missing)
                if new != state:
                    save_pull_table(link.conn, table, new)
                    states[table] = new
            if all(states[t].resync for t in specs if t in states) and set(specs) <= set(states):
                cursor = max(cursor, int(ever or 0))  # every table is compared next: the whole log is covered
            replica = replica_identity(link.conn, self.path, [])
            if not replica.installed or replica.paused:
                save_replica(link.conn, replace(replica, installed=True, paused=None, paused_at=None))
        applied = apply_pulled(link.conn, specs, pulled, owner=link.lease.owner, now=now, cursor=cursor)
        if applied is None:
            return
        self._count(applied, report)
        with link.conn.atomic():
            save_replica(link.conn, replace(replica_identity(link.conn, self.path, []), last_pull=now))

    @staticmethod
    def _pulled(specs: dict[str, TableSpec], results: list[Any]) -> list[Pulled]:
        pulled: list[Pulled] = []
        for table, result in zip(sorted(specs), results, strict=True):
            for raw in result.rows:
                at = float(raw[1]) / 1000 if raw[1] is not None else None
                row = _values(list(raw[3:])) if raw[2] else None
                pulled.append(Pulled(table, str(raw[0]), row, at))
        return pulled

    def _count(self, applied: Applied, report: PullReport) -> None:
        counters = self.link.counters
        report.rows += applied.rows
        report.kept_local += applied.kept_local
        report.failed += len(applied.failed)
        counters.pulled += applied.rows
        counters.kept_local += applied.kept_local
        counters.pull_failed += len(applied.failed)
        if applied.failed:
            conn = self.link.conn
            with conn.atomic():
                states = load_pull_tables(conn)
                for table in {p.table for p, _ in applied.failed}:
                    reasons = [r for p, r in applied.failed if p.table == table]
                    note = f"{len(reasons)} remote row(s) could not be applied here: {reasons[0]}"
                    save_pull_table(conn, table, replace(states.get(table, PullTable()), note=note))

    def resync(self, specs: dict[str, TableSpec], now: float, report: PullReport) -> None:
        """Make each table owing a resync equal to the remote (verify's pages, the conflict rule)."""
        link = self.link
        for table, state in sorted(load_pull_tables(link.conn).items()):
            if not state.resync or table not in specs or state.capture_missing:
                continue
            spec = specs[table]
            log.info("resync of %s: comparing it with the remote", table)

            def apply_keys(keys: list[str], spec: TableSpec = spec) -> int:
                return self._apply_keys(spec, keys, report)

            _, requests = verify_table(link.conn, link.target, spec, self.options.page, None, apply_keys, True)
            report.requests += requests
            link.counters.pull_requests += requests
            with link.conn.atomic():
                if not link.lease.held():
                    return
                current = load_pull_tables(link.conn).get(table, PullTable())
                save_pull_table(link.conn, table, replace(current, resync=False, note=None, last_pull=now))
            link.counters.resyncs += 1
            report.resynced.append(table)

    def _apply_keys(self, spec: TableSpec, keys: list[str], report: PullReport) -> int:
        link = self.link
        done = 0
        for start in range(0, len(keys), _KEYS_PER_REQUEST):
            chunk = keys[start : start + _KEYS_PER_REQUEST]
            rows = link.target.prepare(keys_sql(spec)).bind("[" + ",".join(chunk) + "]").raw()
            report.requests += 1
            pulled = [Pulled(spec.name, chunk[int(r[0])], _values(list(r[2:])) if r[1] else None) for r in rows]
            now = link.clock()
            if not link.lease.acquire(now, renew=True):
                return done
            applied = apply_pulled(link.conn, {spec.name: spec}, pulled, owner=link.lease.owner, now=now)
            if applied is not None:
                self._count(applied, report)
                done += applied.rows
        return done

    def prune(self, now: float, report: PullReport) -> None:
        conn = self.link.conn
        replica = self.replica()
        if replica.last_prune is not None and 0 <= now - replica.last_prune < self.options.prune_every:
            return
        report.pruned = prune(self.link.target, retention=self.options.retention)
        report.requests += 1
        with conn.atomic():
            save_replica(conn, replace(replica_identity(conn, self.path, []), last_prune=now))
        log.info("pruned %d remote log entries every live replica has passed", report.pruned)


def merge_pull(result: SyncResult, outcome: PullReport | SyncResult) -> SyncResult:
    """The pass's result once its pull ran: a failed pull's state wins; rows pulled are added."""
    if isinstance(outcome, SyncResult):
        outcome.rows, outcome.requests, outcome.dead = result.rows, result.requests, result.dead
        outcome.paused_tables = result.paused_tables
        return outcome
    result.pulled += outcome.rows
    result.more = result.more or outcome.more
    if outcome.rows or outcome.resynced:
        result.state = "synced"
    return result
