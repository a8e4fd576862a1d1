"""Per-table pauses: one table's problem never stops the others.

A table pauses for a cause (:data:`~d1sync.sync.store.state.PauseCause`) with a reason and, where there is one,
the exact fix; each cause is cleared by what can tell it was fixed: the local schema check (``local``), the
remote schema check (``remote``), or a retry after ``pause_interval`` (``refused``). ``d1sync resume`` (and an
explicit ``d1sync sync``) clears them all at once, so a fix is tried at once.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from d1sync.sqlite import Connection
from d1sync.sync.store.state import PauseCause, TableState, load_table_states, save_state, save_table_state

__all__ = ["pause", "recheck_due", "resume", "resume_all"]

log = logging.getLogger("d1sync.sync")


def pause(state: TableState, cause: PauseCause, reason: str, fix: str | None, now: float) -> TableState:
    """``state`` paused for ``reason`` (logged once per new reason)."""
    if state.paused == reason and state.cause == cause:
        return state
    log.error("sync of one table paused: %s%s", reason, f"; fix: {fix}" if fix else "")
    return replace(state, paused=reason, cause=cause, fix=fix, paused_at=now)


def resume(state: TableState, cause: PauseCause | None = None) -> TableState:
    """``state`` without its pause (only if it was paused for ``cause``, when given)."""
    if state.paused is None or (cause is not None and state.cause != cause):
        return state
    log.info("sync of a paused table resumes (it was: %s)", state.paused)
    return replace(state, paused=None, cause=None, fix=None, paused_at=None)


def recheck_due(state: TableState, now: float, interval: float) -> bool:
    """Whether a pause is old enough to try its table again (a clock that jumped back counts as due)."""
    if state.paused_at is None:
        return True
    age = now - state.paused_at
    return age >= interval or age < 0


def resume_all(conn: Connection) -> None:
    """Clear the worker's pause and back-off and every table's pause, and forget what the remote schema was
    checked to be, so the next pass checks and tries everything at once (after a fix)."""
    with conn.atomic():
        save_state(conn, failures=0, backoff_until=0, paused=None)
        for table, state in load_table_states(conn).items():
            save_table_state(conn, table, replace(resume(state), remote_columns=None))
