"""The SQL of one task queue. The table name is the only thing spliced in: validated, then quoted."""

from __future__ import annotations

from d1sync.sql import fence_sql, quote_identifier

__all__ = ["CLAIM_FENCE", "DONE_FENCE", "STATUSES", "Queries"]

STATUSES = ("open", "claimed", "done", "failed", "dead")
"""Every status a task can have, in lifecycle order."""
CLAIM_FENCE = "claim-lost"
"""The fence of ``complete(then=...)``: its error means the claim was no longer current."""
DONE_FENCE = "already-done"
"""The second fence of ``complete(then=...)``: this very call (a resend after a lost response) committed before."""
_MAX_SHIFT = 30  # base * 2**30 is already beyond any sensible cap


class Queries:
    """The SQL of one queue. The table name is the only thing spliced in: validated, then quoted."""

    _COLUMNS = (
        "id, role, status, priority, payload, available_at, timeout_ms, attempts, max_attempts, created_at, updated_at"
    )

    def __init__(self, table: str) -> None:
        t = table
        self.t = t
        # The id comes from the client, so a resent INSERT finds its own row and adds nothing.
        self.add = (
            f"INSERT INTO {t} ({self._COLUMNS}) VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, 0, ?7, ?8, ?8) "
            "ON CONFLICT (id) DO NOTHING"
        )
        # Heartbeats are idempotent as they stand: a resend sets the same lease from the same ?1.
        self.heartbeat = (
            f"UPDATE {t} SET lease_until = ?1 + COALESCE(?2, timeout_ms), updated_at = ?1 "
            "WHERE id = ?3 AND claim_id = ?4 AND status = 'claimed' RETURNING id"
        )
        # ?1 result, ?2 now, ?3 id, ?4 claim. A resend of the same call (same result, same ?2) finds the task
        # done exactly as it would leave it, rewrites the same values and answers again: a lost response
        # never turns a completion into "claim lost". Another call of that claim differs in ?2 or ?1.
        done_by_call = "status = 'done' AND finished_at = ?2 AND result IS ?1"
        self.complete = (
            f"UPDATE {t} SET status = 'done', result = ?1, lease_until = NULL, updated_at = ?2, finished_at = ?2 "
            f"WHERE id = ?3 AND claim_id = ?4 AND (status = 'claimed' OR ({done_by_call})) RETURNING id"
        )
        # complete(then=...): ?1 id, ?2 claim, ?3 now, ?4 result. The first fence fails (rolling the whole batch
        # back, see fence_sql) unless the claim is current or this very call already committed; the second
        # fails in the latter case, so a resend posts no follow-up twice and still learns that it succeeded.
        mine = f"SELECT 1 FROM {t} WHERE id = ?1 AND claim_id = ?2 AND "
        self.fence = fence_sql(
            CLAIM_FENCE,
            unless=f"EXISTS ({mine}(status = 'claimed' OR (status = 'done' AND finished_at = ?3 AND result IS ?4)))",
        )
        self.done_fence = fence_sql(DONE_FENCE, unless=f"EXISTS ({mine}status = 'claimed')")
        # ?1 retry flag, ?2 now, ?3 back-off base ms, ?4 cap ms, ?8 jitter share (Backoff.jitter, in [0.5, 1]).
        # The ceiling doubles per attempt: a shift, because D1 may lack SQLite's math functions (pow).
        # A resend of the same call finds the task as this call leaves it (status, ?2 and ?5) and rewrites the
        # same values (attempts is unchanged, so the back-off is too).
        retrying = "?1 <> 0 AND attempts < max_attempts"
        outcome = "CASE WHEN ?1 = 0 THEN 'failed' WHEN attempts < max_attempts THEN 'open' ELSE 'dead' END"
        self.fail = (
            f"UPDATE {t} SET "
            f"status = {outcome}, "
            f"available_at = CASE WHEN {retrying} "
            f"THEN ?2 + CAST(MIN(?3 * (1 << MIN(attempts - 1, {_MAX_SHIFT})), ?4) * ?8 AS INTEGER) "
            "ELSE available_at END, "
            f"finished_at = CASE WHEN {retrying} THEN NULL ELSE ?2 END, "
            "error = ?5, lease_until = NULL, updated_at = ?2 "
            "WHERE id = ?6 AND claim_id = ?7 AND (status = 'claimed' OR "
            f"(status = {outcome} AND updated_at = ?2 AND error IS ?5 AND lease_until IS NULL)) RETURNING id"
        )
        self.expire = (
            f"UPDATE {t} SET status = CASE WHEN attempts < max_attempts THEN 'open' ELSE 'dead' END, "
            "finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ?1 END, "
            "error = 'lease expired (claimed by ' || COALESCE(claimed_by, '?') || ')', "
            "lease_until = NULL, updated_at = ?1 "
            "WHERE status = 'claimed' AND lease_until <= ?1 RETURNING id"
        )
        self.get = f"SELECT * FROM {t} WHERE id = ?"
        # The tasks claim ?1 holds: few rows, found through the (status, lease_until) index.
        self.held = f"SELECT 1 FROM {t} WHERE status = 'claimed' AND claim_id = ?1"
        self.claimed = (
            f"SELECT * FROM {t} WHERE status = 'claimed' AND claim_id = ?1 ORDER BY priority DESC, available_at, id"
        )

    def schema(self, table: str) -> list[str]:
        t = self.t
        statuses = ", ".join(f"'{s}'" for s in STATUSES)
        return [
            f"""CREATE TABLE IF NOT EXISTS {t} (
    id           TEXT PRIMARY KEY NOT NULL,
    role         TEXT,
    status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ({statuses})),
    priority     INTEGER NOT NULL DEFAULT 0,
    payload      TEXT NOT NULL,
    available_at INTEGER NOT NULL,
    timeout_ms   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    claim_id     TEXT,
    claimed_by   TEXT,
    claimed_at   INTEGER,
    lease_until  INTEGER,
    result       TEXT,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
)""",
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(table + '_claim')} "
            f"ON {t} (status, priority DESC, available_at, id)",
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(table + '_claim_role')} "
            f"ON {t} (status, role, priority DESC, available_at, id)",
            f"CREATE INDEX IF NOT EXISTS {quote_identifier(table + '_lease')} ON {t} (status, lease_until)",
        ]

    def claim(self, *, by_id: bool, by_role: bool) -> str:
        # ?1 claim id, ?2 agent, ?3 now, ?4 lease ms or NULL, ?5 how many, then the task id and/or role.
        # One UPDATE with the choice in a subquery: atomic on SQLite and on D1 (no interactive transactions).
        # The subquery is not correlated, so SQLite evaluates it once, before any row changes. It picks
        # nothing when claim ?1 already holds tasks: a resend after a lost response claims no more, and
        # :attr:`claimed` (the same batch) returns what the first send claimed. The unary + keeps the planner
        # on the primary key for the outer loop instead of scanning every open task through the status index.
        role = f" AND role = ?{7 if by_id else 6}" if by_role else ""
        chosen = " AND id = ?6" if by_id else ""
        return (
            f"UPDATE {self.t} SET status = 'claimed', claim_id = ?1, claimed_by = ?2, claimed_at = ?3, "
            "lease_until = ?3 + COALESCE(?4, timeout_ms), attempts = attempts + 1, updated_at = ?3 "
            f"WHERE id IN (SELECT id FROM {self.t} WHERE status = 'open' AND available_at <= ?3{chosen}{role} "
            f"AND NOT EXISTS ({self.held}) "
            "ORDER BY priority DESC, available_at, id LIMIT CAST(?5 AS INTEGER)) AND +status = 'open'"
        )

    def list(self, *, by_status: bool, by_role: bool) -> str:
        clauses = [c for c, on in (("status = ?", by_status), ("role = ?", by_role)) if on]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return f"SELECT * FROM {self.t}{where} ORDER BY id LIMIT ?"

    def stats(self, *, by_role: bool) -> str:
        counts = ", ".join(f"SUM(status = '{s}') AS {quote_identifier(s)}" for s in STATUSES)
        where = " WHERE role = ?2" if by_role else ""
        return (
            f"SELECT {counts}, COUNT(*) AS total, "
            "SUM(status = 'open' AND available_at <= ?1) AS ready, "
            "SUM(status = 'claimed' AND lease_until <= ?1) AS expired "
            f"FROM {self.t}{where}"
        )
