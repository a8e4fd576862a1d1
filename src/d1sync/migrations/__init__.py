"""wrangler-compatible migrations: the same files, the same ledger, the same order, on any Database.

::

    from d1sync.migrations import MigrationSource, Migrator, find_wrangler_config, load_wrangler_config

    config = load_wrangler_config(find_wrangler_config())
    entry = config.select("DB")
    source = MigrationSource(config.root, migrations_dir=entry.migrations_dir)
    Migrator(db, source.discover(), table=entry.migrations_table).apply()

See ``docs/migrations.md``.
"""

from __future__ import annotations

from d1sync.errors import MigrationError, MigrationFailedError, UnsafeMigrationError
from d1sync.migrations.files import (
    DEFAULT_MODULES_GLOB,
    MigrationFile,
    MigrationSource,
    migration_number,
    read_migration_text,
)
from d1sync.migrations.runner import (
    CHECKSUM_TABLE,
    AppliedMigration,
    ApplyReport,
    Drift,
    MigrationPlan,
    MigrationState,
    MigrationStatus,
    Migrator,
    ledger_ddl,
    plan_migration,
)
from d1sync.sql import SplitStatement, first_keyword, is_transaction_control, split_statements, split_with_lines
from d1sync.wrangler import (
    DEFAULT_MIGRATIONS_DIR,
    DEFAULT_MIGRATIONS_TABLE,
    D1DatabaseConfig,
    WranglerConfig,
    find_wrangler_config,
    load_wrangler_config,
    strip_jsonc,
)

__all__ = [
    "CHECKSUM_TABLE",
    "DEFAULT_MIGRATIONS_DIR",
    "DEFAULT_MIGRATIONS_TABLE",
    "DEFAULT_MODULES_GLOB",
    "AppliedMigration",
    "ApplyReport",
    "D1DatabaseConfig",
    "Drift",
    "MigrationError",
    "MigrationFailedError",
    "MigrationFile",
    "MigrationPlan",
    "MigrationSource",
    "MigrationState",
    "MigrationStatus",
    "Migrator",
    "SplitStatement",
    "UnsafeMigrationError",
    "WranglerConfig",
    "find_wrangler_config",
    "first_keyword",
    "is_transaction_control",
    "ledger_ddl",
    "load_wrangler_config",
    "migration_number",
    "plan_migration",
    "read_migration_text",
    "split_statements",
    "split_with_lines",
    "strip_jsonc",
]
