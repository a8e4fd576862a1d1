"""Right after a migration, before d1sync has followed it: what `sync --wait` and `verify` promise still holds.

Found while running docs/schema.md's Alembic recipe beside `d1sync run`: a migration logs no change (the
rebuilt table has no capture yet), so nothing in the outbox tells a waiter or a verifier that D1 is behind.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from .conftest import Kitchen, assert_exact, recipe


def migrated_but_not_followed(kitchen: Kitchen) -> None:
    """The Alembic recipe up to its migration: rows tracked and synced, then the batch migration run locally."""
    table, synced, migration, _ = recipe("alembic")
    for block in (table, synced, migration):
        kitchen.run_block("alembic", block)


def freeze_idle(pid: int, db: Path) -> None:
    """SIGSTOP the daemon at a moment it holds no write lock on ``db`` (frozen mid-write, it would lock the
    application out: that is not the case under test)."""
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        with closing(sqlite3.connect(db, timeout=0, isolation_level=None)) as probe:
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                return
            except sqlite3.OperationalError:  # locked: let it finish what it was writing, then try again
                pass
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the daemon never let go of its write lock")


def test_sync_wait_does_not_return_before_the_running_daemon_has_followed_a_migration(kitchen: Kitchen) -> None:
    """`sync --wait` "returns once the daemon has sent every committed write": a daemon that has not seen the
    migration yet (stopped here with SIGSTOP, as a busy or slow one would be) has not made D1 follow it."""
    table, synced, migration, _ = recipe("alembic")
    for block in (table, synced):
        kitchen.run_block("alembic", block)
    kitchen.start_daemon()
    assert kitchen.daemon is not None
    freeze_idle(kitchen.daemon.pid, kitchen.db)
    try:
        kitchen.run_block("alembic", migration)
        kitchen.command("d1sync sync app.db --timeout 3  # exit 1: the daemon has not followed the migration yet")
    finally:
        os.kill(kitchen.daemon.pid, signal.SIGCONT)
    kitchen.command("d1sync sync app.db")  # --wait: now the daemon runs, and this returns once it followed
    kitchen.command("d1sync verify app.db")
    assert_exact(kitchen.db, kitchen.remote.path, "accounts")


def test_verify_names_the_columns_of_a_migration_no_worker_has_followed_yet(kitchen: Kitchen) -> None:
    """verify compares schemas before rows and names the columns: the table is on D1, with the old columns."""
    migrated_but_not_followed(kitchen)
    ran = kitchen.command("d1sync verify app.db --json  # exit 1: D1 has the schema from before the migration")
    (report,) = json.loads(ran.output[ran.output.index("{") :])["tables"]
    named = json.dumps(report["schema"])
    assert all(column in named for column in ("score", "legacy_code", "status")), json.dumps(report)
    assert "missing on the remote" not in (report["skipped"] or ""), report
