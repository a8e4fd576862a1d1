"""ModuleStore: a module's view of any Database, with a table-prefix convention and no SQL rewriting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from d1sync.errors import ConfigError, SQLError
from d1sync.local import LocalDatabase
from d1sync.migrations import MigrationSource, Migrator
from d1sync.modules import ModuleStore

from .conftest import Closer


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LocalDatabase]:
    with LocalDatabase(tmp_path / "app.db") as database:
        database.exec("CREATE TABLE trading_orders (id TEXT PRIMARY KEY, qty INTEGER); CREATE TABLE tradingx (a)")
        yield database


def test_module_exposes_its_table_prefix(db: LocalDatabase) -> None:
    store = db.module("trading")
    assert isinstance(store, ModuleStore) and store.db is db
    assert (store.name, store.table_prefix, store.table("orders")) == ("trading", "trading_", "trading_orders")


def test_shorthands_bind_positional_parameters(db: LocalDatabase) -> None:
    store = db.module("trading")
    assert store.run("INSERT INTO trading_orders VALUES (?, ?)", "o1", 5).meta.changes == 1
    store.batch(
        [("INSERT INTO trading_orders VALUES (?, ?)", ("o2", 7)), db.prepare("UPDATE trading_orders SET qty = 6")]
    )
    assert store.all("SELECT * FROM trading_orders WHERE qty > ? ORDER BY id", 1) == [
        {"id": "o1", "qty": 6},
        {"id": "o2", "qty": 6},
    ]
    assert store.first("SELECT id FROM trading_orders WHERE id = ?", "o2") == {"id": "o2"}
    assert store.first("SELECT id FROM trading_orders WHERE id = ?", "none") is None


def test_batch_is_atomic(db: LocalDatabase) -> None:
    store = db.module("trading")
    with pytest.raises(SQLError, match="UNIQUE"):
        store.batch(
            [
                ("INSERT INTO trading_orders VALUES (?, ?)", ("a", 1)),
                ("INSERT INTO trading_orders VALUES (?, ?)", ("a", 2)),
            ]
        )
    assert store.all("SELECT * FROM trading_orders") == []


def test_sql_is_never_rewritten(db: LocalDatabase) -> None:
    """The prefix is a convention: an unprefixed name reaches SQLite as written."""
    store = db.module("trading")
    with pytest.raises(SQLError, match="no such table: orders"):
        store.all("SELECT * FROM orders")


def test_tables_lists_only_prefixed_tables_treating_underscore_literally(db: LocalDatabase) -> None:
    assert db.module("trading").tables() == ["trading_orders"]  # not "tradingx": '_' is no wildcard here
    assert db.module("trading").owns("trading_orders") and not db.module("trading").owns("tradingx")


@pytest.mark.parametrize("name", ["Trading", "1x", "a-b", "x_", "", "trading_"])
def test_invalid_module_names_are_refused(db: LocalDatabase, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid module name"):
        db.module(name)


def test_module_migrations_and_module_store_line_up(tmp_path: Path, closer: Closer[Any]) -> None:
    folder = tmp_path / "modules" / "billing" / "migrations"
    folder.mkdir(parents=True)
    (folder / "0001_invoices.sql").write_text("CREATE TABLE billing_invoices (id INTEGER PRIMARY KEY, total REAL);")
    db = closer(LocalDatabase(tmp_path / "app.db"))
    files = MigrationSource(tmp_path).discover()
    assert [(f.name, f.module) for f in files] == [("billing/0001_invoices.sql", "billing")]
    Migrator(db, files).apply()
    billing = db.module("billing")
    assert billing.tables() == ["billing_invoices"]
    billing.run(f"INSERT INTO {billing.table('invoices')} (total) VALUES (?)", 9.5)
    assert billing.first("SELECT total FROM billing_invoices") == {"total": 9.5}


def test_a_module_store_is_a_database_that_migrations_and_the_task_queue_run_on(tmp_path: Path) -> None:
    from d1sync.database import Database
    from d1sync.tasks import TaskQueue

    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_orders.sql").write_text("CREATE TABLE trading_orders (id TEXT PRIMARY KEY, qty INTEGER);")
    with LocalDatabase(tmp_path / "app.db") as db:
        store = db.module("trading")
        assert isinstance(store, Database)
        applied = Migrator(
            store, MigrationSource(tmp_path, migrations_dir=folder, modules_glob=None).discover()
        ).apply()
        assert [a.name for a in applied.applied] == ["0001_orders.sql"]
        assert store.tables() == ["trading_orders"]
        queue = TaskQueue(store)  # the module's name is the queue's: table trading_tasks
        assert queue.table == "trading_tasks"
        task_id = queue.add({"n": 1})
        assert store.first("SELECT id FROM trading_tasks") == {"id": task_id}
        store.close()  # a view: closing it leaves the database open
        assert db.prepare("SELECT count(*) AS n FROM trading_orders").first("n") == 0
