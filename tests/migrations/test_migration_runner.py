"""The migrator on every backend: LocalDatabase, D1Client on the in-process emulator and on a real socket."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from d1sync.client import D1Client, RetryPolicy
from d1sync.database import Database
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.migrations import (
    CHECKSUM_TABLE,
    MigrationFailedError,
    MigrationSource,
    Migrator,
    UnsafeMigrationError,
    ledger_ddl,
    split_statements,
)

from .conftest import FIXTURES, TOKEN

# What sqlite_master holds after wrangler 4.86.0 created the ledger (taken from the fixture dump).
WRANGLER_STORED_DDL = re.search(
    r"CREATE TABLE d1_migrations\(.*?\n\)", (FIXTURES / "wrangler_project" / "wrangler_state.sql").read_text(), re.S
)


def _write(folder: Path, name: str, text: str, *, newline: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def _migrator(db: Database, root: Path, **kwargs: object) -> Migrator:
    source = MigrationSource(root, migrations_dir=Path("migrations"))
    return Migrator(db, source.discover(), **kwargs)  # type: ignore[arg-type]


def _ledger(db: Database, table: str = "d1_migrations") -> list[tuple[int, str]]:
    rows = db.prepare(f'SELECT id, name FROM "{table}" ORDER BY id').all().results
    return [(r["id"], r["name"]) for r in rows]


def _tables(db: Database) -> set[str]:
    rows = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all().results
    return {r["name"] for r in rows}


def _load_wrangler_state(db: Database) -> None:
    """Replay wrangler's dumped state through the Database API (minus the dump's own BEGIN/COMMIT, and minus
    D1's internal _cf_METADATA table, which D1 and the emulator refuse to let anyone create or write)."""
    dump = (FIXTURES / "wrangler_project" / "wrangler_state.sql").read_text()
    statements = [
        s for s in split_statements(dump) if s not in ("BEGIN TRANSACTION", "COMMIT") and "_cf_METADATA" not in s
    ]
    db.batch([db.prepare(s) for s in statements])


# -- ledger ------------------------------------------------------------------------------------------------


def test_ledger_ddl_is_wranglers_byte_for_byte() -> None:
    assert ledger_ddl() == (
        "CREATE TABLE IF NOT EXISTS d1_migrations(\n"
        "\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "\t\tname       TEXT UNIQUE,\n"
        "\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n"
        ");"
    )
    assert ledger_ddl("odd name").startswith('CREATE TABLE IF NOT EXISTS "odd name"(\n')


def test_ledger_created_by_d1sync_is_stored_exactly_as_wranglers(db: Database, tmp_path: Path) -> None:
    assert WRANGLER_STORED_DDL is not None
    _migrator(db, tmp_path).status()
    stored = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'd1_migrations'").first("sql")
    assert stored == WRANGLER_STORED_DDL.group(0)


def test_apply_runs_pending_in_number_order_with_one_ledger_row_each(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    _write(folder, "10_c.sql", "CREATE TABLE c (x REFERENCES b(x));")
    _write(folder, "0001_a.sql", "CREATE TABLE a (x INTEGER PRIMARY KEY);")
    _write(folder, "2_b.sql", "CREATE TABLE b (x INTEGER PRIMARY KEY REFERENCES a(x))")
    report = _migrator(db, tmp_path).apply()
    assert [a.name for a in report.applied] == ["0001_a.sql", "2_b.sql", "10_c.sql"]
    assert _ledger(db) == [(1, "0001_a.sql"), (2, "2_b.sql"), (3, "10_c.sql")]
    applied_at = db.prepare("SELECT applied_at FROM d1_migrations").first("applied_at")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", applied_at)
    assert _migrator(db, tmp_path).apply().applied == []


def test_custom_migrations_table_is_honoured(db: Database, tmp_path: Path) -> None:
    _write(tmp_path / "migrations", "0001_a.sql", "CREATE TABLE a (x);")
    _migrator(db, tmp_path, table="app_migrations").apply()
    assert _ledger(db, "app_migrations") == [(1, "0001_a.sql")]
    assert "d1_migrations" not in _tables(db)


def test_list_creates_the_ledger_and_reports_pending(db: Database, tmp_path: Path) -> None:
    _write(tmp_path / "migrations", "0001_a.sql", "CREATE TABLE a (x);")
    statuses = _migrator(db, tmp_path).status()
    assert [(s.name, s.state, s.drift) for s in statuses] == [("0001_a.sql", "pending", None)]
    assert {"d1_migrations", CHECKSUM_TABLE} <= _tables(db)


def test_dry_run_writes_nothing_not_even_the_ledger(db: Database, tmp_path: Path) -> None:
    _write(tmp_path / "migrations", "0001_a.sql", "CREATE TABLE a (x);\nCREATE TABLE b (y);")
    report = _migrator(db, tmp_path).apply(dry_run=True)
    assert [(p.file.name, len(p.statements)) for p in report.planned] == [("0001_a.sql", 2)]
    assert report.applied == [] and _tables(db) == set()


def test_a_migration_with_only_a_comment_is_recorded_as_wrangler_does(db: Database, tmp_path: Path) -> None:
    MigrationSource(tmp_path, migrations_dir=Path("migrations")).create("empty")
    _migrator(db, tmp_path).apply()
    assert _ledger(db) == [(1, "0001_empty.sql")]


# -- wrangler interop ------------------------------------------------------------------------------------------


def test_a_ledger_written_by_wrangler_is_recognised_as_applied(db: Database, wrangler_project: Path) -> None:
    _load_wrangler_state(db)
    _write(wrangler_project / "migrations", "0003_add_email.sql", "ALTER TABLE users ADD COLUMN email TEXT;")
    migrator = _migrator(db, wrangler_project)
    assert [(s.name, s.state, s.drift) for s in migrator.status()] == [
        ("0001_create_users.sql", "applied", "unknown"),
        ("0002_create_posts.sql", "applied", "unknown"),
        ("0003_add_email.sql", "pending", None),
    ]
    assert [a.name for a in migrator.apply().applied] == ["0003_add_email.sql"]
    assert _ledger(db) == [(1, "0001_create_users.sql"), (2, "0002_create_posts.sql"), (3, "0003_add_email.sql")]


def _wrangler_pending(db: Database, folder: Path) -> list[str]:
    """wrangler 4.86.0's pending rule (getUnappliedMigrations): *.sql names not in `SELECT * ... ORDER BY id`."""
    applied = [r["name"] for r in db.prepare("SELECT *\n\t\tFROM d1_migrations\n\t\tORDER BY id").all().results]
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql") and p.name not in applied)


def test_wrangler_sees_nothing_pending_after_d1sync_applied(db: Database, wrangler_project: Path) -> None:
    _write(wrangler_project / "migrations", "0003_add_email.sql", "ALTER TABLE users ADD COLUMN email TEXT;")
    _migrator(db, wrangler_project).apply()
    assert _wrangler_pending(db, wrangler_project / "migrations") == []


# -- failures ----------------------------------------------------------------------------------------------------


def test_failing_migration_is_rolled_back_and_earlier_ones_stay(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    _write(folder, "0001_ok.sql", "CREATE TABLE kept (x);")
    bad = _write(folder, "0002_bad.sql", "CREATE TABLE half (x);\n\n-- the typo:\nINSERT INTO nope VALUES (1);\n")
    _write(folder, "0003_later.sql", "CREATE TABLE later (x);")
    with pytest.raises(MigrationFailedError) as info:
        _migrator(db, tmp_path).apply()
    err = info.value
    assert (err.name, err.path, err.statement_number, err.line) == ("0002_bad.sql", bad, 2, 4)
    assert "no such table: nope" in err.cause.message and "statement 2 of 2 (line 4)" in str(err)
    assert [a.name for a in err.applied] == ["0001_ok.sql"]
    assert _ledger(db) == [(1, "0001_ok.sql")]
    assert "kept" in _tables(db) and not {"half", "later"} & _tables(db)
    checksums = db.prepare(f"SELECT name FROM {CHECKSUM_TABLE}").all().results
    assert [r["name"] for r in checksums] == ["0001_ok.sql"]
    # Fixed, the run resumes at the failed migration.
    _write(folder, "0002_bad.sql", "CREATE TABLE half (x);\nINSERT INTO half VALUES (1);\n")
    assert [a.name for a in _migrator(db, tmp_path).apply().applied] == ["0002_bad.sql", "0003_later.sql"]


def test_failure_of_the_first_statement_is_located(db: Database, tmp_path: Path) -> None:
    _write(tmp_path / "migrations", "0001_bad.sql", "SELECT * FROM missing;\nCREATE TABLE t (x);\nCREATE TABLE u (y);")
    with pytest.raises(MigrationFailedError) as info:
        _migrator(db, tmp_path).apply()
    assert (info.value.statement_number, info.value.line) == (1, 1)
    assert not {"t", "u"} & _tables(db)


def test_transaction_statements_are_refused_before_anything_runs(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    _write(folder, "0001_ok.sql", "CREATE TABLE a (x);")
    bad = _write(
        folder,
        "0002_tx.sql",
        "-- wrangler strips these locally; D1 refuses them\n\nBEGIN TRANSACTION;\nCREATE TABLE b (x);\nCOMMIT;",
    )
    with pytest.raises(UnsafeMigrationError) as info:
        _migrator(db, tmp_path).apply()
    assert (info.value.path, info.value.line) == (bad, 3)
    assert str(info.value).startswith(f"{bad}:3: BEGIN is a transaction statement")
    assert _tables(db) == set()


@pytest.mark.parametrize("keyword", ["SAVEPOINT sp", "ROLLBACK", "COMMIT", "RELEASE sp", "END"])
def test_every_transaction_keyword_is_refused(db: Database, tmp_path: Path, keyword: str) -> None:
    _write(tmp_path / "migrations", "0001_tx.sql", f"CREATE TABLE a (x);\n{keyword};\n")
    with pytest.raises(UnsafeMigrationError) as info:
        _migrator(db, tmp_path).apply(dry_run=True)
    assert info.value.line == 2


# -- hard files --------------------------------------------------------------------------------------------------


def test_trigger_bodies_and_crlf_files_apply_correctly(db: Database, tmp_path: Path) -> None:
    text = (
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"
        "CREATE TABLE audit (note_id INTEGER, what TEXT);\n"
        "-- a trigger body holds ';' that must not split it\n"
        "CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN\n"
        "  INSERT INTO audit VALUES (new.id, 'insert; -- not a comment');\n"
        "  UPDATE notes SET body = body || ' /* kept */' WHERE id = new.id;\n"
        "END;\n"
        "INSERT INTO notes (body) VALUES ('it''s; fine')"  # no trailing ';': wrangler's ledger append breaks here
    )
    _write(tmp_path / "migrations", "0001_notes.sql", text, newline="\r\n")
    report = _migrator(db, tmp_path).apply()
    assert report.applied[0].statements == 4
    assert db.prepare("SELECT body FROM notes").first("body") == "it's; fine /* kept */"
    assert db.prepare("SELECT what FROM audit").first("what") == "insert; -- not a comment"


# -- drift ---------------------------------------------------------------------------------------------------------


def test_drift_flags_files_edited_after_they_were_applied(db: Database, wrangler_project: Path) -> None:
    _load_wrangler_state(db)
    folder = wrangler_project / "migrations"
    _write(folder, "0003_a.sql", "CREATE TABLE a (x);\n")
    _write(folder, "0004_b.sql", "CREATE TABLE b (x);\n")
    _migrator(db, wrangler_project).apply()
    _write(folder, "0004_b.sql", "CREATE TABLE b (x, y);\n")
    _write(folder, "0003_a.sql", "CREATE TABLE a (x);\n", newline="\r\n")  # line endings alone are no edit
    (folder / "0002_create_posts.sql").unlink()
    drift = {s.name: s.drift for s in _migrator(db, wrangler_project).status()}
    assert drift == {
        "0001_create_users.sql": "unknown",  # applied by wrangler: no checksum, never blessed later
        "0002_create_posts.sql": "missing",
        "0003_a.sql": "ok",
        "0004_b.sql": "changed",
    }


# -- modules ---------------------------------------------------------------------------------------------------------


def test_module_migrations_share_the_ledger_with_prefixed_names(db: Database, tmp_path: Path) -> None:
    _write(tmp_path / "migrations", "0001_shared.sql", "CREATE TABLE accounts (id TEXT PRIMARY KEY);")
    _write(tmp_path / "modules" / "trading" / "migrations", "0001_orders.sql", "CREATE TABLE trading_orders (id);")
    _write(tmp_path / "modules" / "billing" / "migrations", "0001_invoices.sql", "CREATE TABLE billing_invoices (id);")
    _write(tmp_path / "modules" / "trading" / "migrations", "0002_fills.sql", "CREATE TABLE trading_fills (id);")
    _migrator(db, tmp_path).apply()
    assert [name for _, name in _ledger(db)] == [
        "0001_shared.sql",
        "billing/0001_invoices.sql",
        "trading/0001_orders.sql",
        "trading/0002_fills.sql",
    ]
    assert db.module("trading").tables() == ["trading_fills", "trading_orders"]
    assert db.module("billing").tables() == ["billing_invoices"]


def test_module_migration_creating_an_unprefixed_table_is_flagged(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "modules" / "trading" / "migrations"
    _write(folder, "0001_x.sql", 'CREATE TABLE IF NOT EXISTS "orders" (id);\nCREATE TABLE trading_ok (id);')
    (plan,) = _migrator(db, tmp_path).apply(dry_run=True).planned
    assert plan.foreign_tables == ("orders",)


@pytest.mark.parametrize("applied", ["unapplied", "applied"])
def test_a_migration_whose_answer_proves_nothing_is_not_called_rolled_back_and_applies_once(
    applied: Any, tmp_path: Path
) -> None:
    """An unproven answer leaves the outcome unknown: the error says so (not "rolled back"), and applying again
    runs the migration exactly once, because its ledger row travels in its batch."""
    folder = tmp_path / "migrations"
    _write(folder, "0001_counter.sql", "CREATE TABLE hits (n INTEGER);\nINSERT INTO hits VALUES (1);")
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True) as server:
        client = D1Client(
            account_id="a", database_id=str(uuid.uuid4()), api_token=TOKEN, base_url=server.api_base,
            retry=RetryPolicy(max_retries=0),
        )  # fmt: skip
        with client:
            garble = FaultConfig(garbled_rate=1.0, garbled_mode=applied, seed=2)
            with pytest.raises(MigrationFailedError, match="whether it was applied is unknown") as info:
                _migrator(client, tmp_path).apply(on_start=lambda plan: server.app.state.faults.configure(garble))
            assert "rolled back" not in str(info.value)
            server.app.state.faults.configure(None)
            _migrator(client, tmp_path).apply()
            assert _ledger(client) == [(1, "0001_counter.sql")]
            assert client.prepare("SELECT count(*) AS n FROM hits").first("n") == 1
