"""What d1sync keeps on D1: the fence every push passes, and the remote capture of two-way tables.

**The fence.** D1 promises no order between requests: one that timed out may still be applied after a newer
one was acknowledged, old state over new with nothing left pending. So every push batch first checks and
advances its file's position on the remote, ``_d1sync_fence (replica, seq)``: ``replica`` is the file's
identity, ``seq`` the number of the send (taken from the file, and committed there, before the send; a resend
takes a new one). A batch whose number is not above the one D1 holds fails as a whole (D1 batches are atomic),
so a request applied late changes nothing. A live send refused so means D1 has seen a newer send from this
file than the file itself has made: the file went back in time (:class:`~d1sync.errors.FileRewoundError`).
The fence costs three statements in each batch and no request of its own: it creates its table if missing.

**Remote capture** for two-way tables, installed (idempotently, in one batch), or written as a wrangler
migration file:

``_d1sync_log``       ``(seq AUTOINCREMENT, tbl, key, op, origin, at)``: one entry per write to a replicated
                      table, appended by AFTER INSERT/UPDATE/DELETE triggers inside the writing transaction.
                      ``key`` is the codec's key text (:func:`~d1sync.sync.codec.key_sql`), the same text the
                      local change log holds, so a pull finds the row again exactly. ``at`` is the remote's
                      clock in epoch milliseconds.
``_d1sync_origin``    one row. Each push batch of a replica sets it to the replica's id as its first statement
                      and clears it as its last. D1 runs a batch atomically and alone, so every entry knows its
                      writer; a Worker's or a person's writes find it NULL.
``_d1sync_replicas``  ``(id, cursor, seen_at)``: how far each replica has pulled (pruning keeps what a live
                      replica still needs).
``_d1sync_pruned``    ``(tbl, seq)``: the newest entry of each table that pruning deleted. A replica whose
                      cursor is behind it has missed entries and resyncs that table.

Remote triggers double D1's rows written for replicated tables (each row write adds a log row): see
docs/replication.md for the measured cost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from d1sync.database import Database
from d1sync.errors import ConfigError, SQLError
from d1sync.sql import fence_sql, quote_identifier, quote_literal
from d1sync.sync.codec import key_sql
from d1sync.sync.config import DEFAULT_RETENTION
from d1sync.sync.model import TableSpec
from d1sync.sync.store.state import NOW_MS_SQL

__all__ = [
    "CLEAR_ORIGIN",
    "HEARTBEAT",
    "LOG_WINDOW",
    "PRUNED_SINCE",
    "PULL_SUMMARY",
    "REWOUND",
    "SET_ORIGIN",
    "capture_ddl",
    "check_remote_tables",
    "fence_statements",
    "fence_text",
    "log_trigger_names",
    "migration_text",
    "prune",
    "read_position",
    "write_migration",
]

REWOUND = "rewound"
"""The fence's name in the error of a batch D1 refused for its number (:attr:`~d1sync.errors.SQLError.fence`)."""
_FENCE_TABLE = "CREATE TABLE IF NOT EXISTS _d1sync_fence (replica TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
_FENCE_CHECK = fence_sql(REWOUND, unless="NOT EXISTS (SELECT 1 FROM _d1sync_fence WHERE replica = ?1 AND seq >= ?2)")
_FENCE_ADVANCE = (
    "INSERT INTO _d1sync_fence (replica, seq) VALUES (?1, ?2) ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq"
)
_FENCE_READ = "SELECT seq FROM _d1sync_fence WHERE replica = ?"


def read_position(target: Database, identity: str) -> int | None:
    """The number of the newest send D1 took from the file ``identity`` (None: none yet, or no fence there)."""
    try:
        rows = target.prepare(_FENCE_READ).bind(identity).raw()
    except SQLError as exc:
        if exc.missing == ("table", "_d1sync_fence"):
            return None
        raise
    return int(rows[0][0]) if rows else None


def fence_statements(identity: str, number: int) -> list[tuple[str, tuple[str | int, ...]]]:
    """The statements that open a push batch: fail it unless ``number`` is above the file's position on D1,
    then record ``number`` as the position (see the module docstring)."""
    return [(_FENCE_TABLE, ()), (_FENCE_CHECK, (identity, number)), (_FENCE_ADVANCE, (identity, number))]


def fence_text(identity: str, number: int) -> list[str]:
    """:func:`fence_statements` as SQL text with its values written in, for a file D1 imports (which takes no
    parameters): an import that runs late is refused by the same rule as a batch."""
    values = {"?1": quote_literal(identity), "?2": str(int(number))}
    texts = []
    for sql, _ in fence_statements(identity, number):
        for mark, value in values.items():
            sql = sql.replace(mark, value)
        texts.append(sql)
    return texts


SET_ORIGIN = "UPDATE _d1sync_origin SET origin = ? WHERE id = 1"
CLEAR_ORIGIN = "UPDATE _d1sync_origin SET origin = NULL WHERE id = 1"
_ORIGIN_NOW = "(SELECT origin FROM _d1sync_origin WHERE id = 1)"

# What a pull pass asks the remote (see d1sync.sync.pull.puller): the log window after a cursor, the replica's
# heartbeat, a summary of the window, and the tables pruned past the cursor.
LOG_WINDOW = "SELECT seq, tbl, key, origin, at FROM _d1sync_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
HEARTBEAT = (
    f"INSERT INTO _d1sync_replicas (id, cursor, seen_at) VALUES (?1, ?2, {NOW_MS_SQL}) ON CONFLICT (id) DO UPDATE "
    "SET cursor = excluded.cursor, seen_at = excluded.seen_at WHERE _d1sync_replicas.cursor IS NOT excluded.cursor "
    "OR _d1sync_replicas.seen_at < excluded.seen_at - 60000"
)
PULL_SUMMARY = (
    f"WITH w AS ({LOG_WINDOW}), last AS (SELECT tbl, key, origin, max(seq) AS seq FROM w GROUP BY tbl, key) "
    "SELECT (SELECT seq FROM sqlite_sequence WHERE name = '_d1sync_log'), (SELECT max(seq) FROM w), "
    "(SELECT count(*) FROM w), (SELECT count(*) FROM last WHERE origin IS ?3), "
    "(SELECT json_group_array(name) FROM sqlite_master WHERE type = 'trigger' "
    "AND name IN (SELECT value FROM json_each(?4)))"
)
PRUNED_SINCE = "SELECT tbl, seq FROM _d1sync_pruned WHERE seq > ?1"
_TABLES = (
    "CREATE TABLE IF NOT EXISTS _d1sync_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
    "key TEXT NOT NULL, op TEXT NOT NULL, origin TEXT, at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _d1sync_origin (id INTEGER PRIMARY KEY CHECK (id = 1), origin TEXT)",
    "INSERT INTO _d1sync_origin (id, origin) VALUES (1, NULL) ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS _d1sync_replicas (id TEXT PRIMARY KEY, cursor INTEGER NOT NULL, "
    "seen_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _d1sync_pruned (tbl TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
)


def log_trigger_names(table: str) -> tuple[str, str, str]:
    """The remote capture triggers' names for ``table``."""
    return (f"_d1sync_log_{table}_ins", f"_d1sync_log_{table}_upd", f"_d1sync_log_{table}_del")


def _triggers(spec: TableSpec) -> list[str]:
    q = quote_identifier(spec.name)
    tbl = quote_literal(spec.name)
    ins, upd, delete = (quote_identifier(n) for n in log_trigger_names(spec.name))
    entry = (
        f"INSERT INTO _d1sync_log (tbl, key, op, origin, at) SELECT {tbl}, {{key}}, {{op}}, {_ORIGIN_NOW}, {NOW_MS_SQL}"
    )
    new_key, old_key = key_sql("NEW", spec.key), key_sql("OLD", spec.key)
    key_changed = " OR ".join(
        f"OLD.{c} IS NOT NEW.{c} COLLATE BINARY OR typeof(OLD.{c}) IS NOT typeof(NEW.{c})"
        for c in map(quote_identifier, spec.key)
    )
    upsert_new = entry.format(key=new_key, op="'upsert'")
    delete_old = entry.format(key=old_key, op="'delete'")
    return [
        *(f"DROP TRIGGER IF EXISTS {name}" for name in (ins, upd, delete)),
        f"CREATE TRIGGER {ins} AFTER INSERT ON {q} BEGIN {upsert_new}; END",
        # A key change is a delete of the old key and an upsert of the new one, as in the local change log.
        # Every update is logged (no OF list): a column synced later, after ADD COLUMN, must not go unseen.
        f"CREATE TRIGGER {upd} AFTER UPDATE ON {q} BEGIN {delete_old} WHERE {key_changed}; {upsert_new}; END",
        f"CREATE TRIGGER {delete} AFTER DELETE ON {q} BEGIN {delete_old}; END",
    ]


def capture_ddl(specs: Iterable[TableSpec]) -> list[str]:
    """Every statement of the remote capture for ``specs``, in order (each is idempotent)."""
    statements = list(_TABLES)
    for spec in sorted(specs, key=lambda s: s.name):
        statements += _triggers(spec)
    return statements


def migration_text(specs: Iterable[TableSpec]) -> str:
    """The remote capture as the body of a wrangler migration file."""
    names = ", ".join(sorted(s.name for s in specs))
    head = f"-- d1sync replication: the remote change log and capture triggers for {names}\n"
    return head + "".join(statement + ";\n" for statement in capture_ddl(specs))


def write_migration(folder: str | Path, specs: Sequence[TableSpec]) -> Path:
    """Write :func:`migration_text` as the next ``NNNN_d1sync_replicate.sql`` in ``folder`` (wrangler's
    numbering: the highest prefix plus one, four digits)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give the migrations folder (e.g. migrations)")
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.split("_", 1)[0]) for p in folder.glob("*.sql") if p.name.split("_", 1)[0].isdigit()]
    path = folder / f"{max(numbers, default=0) + 1:04d}_d1sync_replicate.sql"
    path.write_text(migration_text(specs))
    return path


def check_remote_tables(target: Database, specs: Sequence[TableSpec]) -> None:
    names = [s.name for s in specs]
    found = {
        str(r[0])
        for r in target.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (SELECT value FROM json_each(?))"
        )
        .bind(json.dumps(names))
        .raw()
    }
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(
            f"the remote has no table {', '.join(map(repr, missing))}; create it there first (apply your "
            "migrations: `d1sync migrations apply --remote`), then replicate"
        )


def prune(target: Database, *, retention: float = DEFAULT_RETENTION) -> int:
    """Delete the remote log entries every live replica has passed; returns how many went.

    A replica is live when it pulled within ``retention`` seconds (the remote's clock). With none live, every
    entry goes: a replica that comes back finds its cursor behind ``_d1sync_pruned`` and resyncs. One batch,
    atomic: the horizon recorded in ``_d1sync_pruned`` and the deletion agree.
    """
    horizon = (
        "(SELECT coalesce((SELECT min(cursor) FROM _d1sync_replicas WHERE seen_at >= "
        f"{NOW_MS_SQL} - CAST(?1 AS INTEGER)), (SELECT max(seq) FROM _d1sync_log), 0))"
    )
    record = (
        f"INSERT INTO _d1sync_pruned (tbl, seq) SELECT tbl, max(seq) FROM _d1sync_log WHERE seq <= {horizon} "
        "GROUP BY tbl ON CONFLICT (tbl) DO UPDATE SET seq = max(seq, excluded.seq)"
    )
    delete = f"DELETE FROM _d1sync_log WHERE seq <= {horizon}"
    ms = int(retention * 1000)
    results = target.batch([target.prepare(record).bind(ms), target.prepare(delete).bind(ms)])
    return int(results[1].meta.changes or 0)
