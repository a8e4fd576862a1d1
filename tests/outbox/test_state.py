"""The worker's state is typed: one module loads and saves it, and a damaged value never stops a worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from d1sync.sqlite import Connection
from d1sync.sync.store.state import LastError, Lease, WorkerState, load_state, save_state
from d1sync.sync.store.upgrade import ensure_schema


def test_state_round_trips_through_the_file_typed(tmp_path: Path) -> None:
    with Connection(tmp_path / "a.db") as conn:
        ensure_schema(conn)
        assert load_state(conn) == WorkerState()
        error = LastError(at=1.5, message="boom", kind="TransientError", code=7500, status=503)
        save_state(conn, lease=Lease("host:1:abc", 99.0), failures=3, backoff_until=12.0, last_error=error)
    with Connection(tmp_path / "a.db") as conn:  # another connection, as `d1sync status` in another process
        state = load_state(conn)
    assert state.lease == Lease("host:1:abc", 99.0) and state.failures == 3 and state.last_error == error
    assert (state.backoff_until, state.paused, state.last_pass) == (12.0, None, None)


def test_a_damaged_value_falls_back_to_the_default_instead_of_failing(tmp_path: Path) -> None:
    with Connection(tmp_path / "a.db") as conn:
        ensure_schema(conn)
        conn.execute("INSERT INTO _d1sync_meta VALUES ('lease', '{not json'), ('last_error', '[1, 2]')")
        conn.execute("INSERT INTO _d1sync_meta VALUES ('failures', '2'), ('someday', '1')")
        state = load_state(conn)
    assert (state.lease, state.last_error, state.failures) == (None, None, 2)


def test_unknown_fields_are_refused_when_saving(tmp_path: Path) -> None:
    with Connection(tmp_path / "a.db") as conn:
        ensure_schema(conn)
        with pytest.raises(TypeError, match="unknown worker state"):
            save_state(conn, leese=None)
