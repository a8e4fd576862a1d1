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

from d1sync.migrations.files import (
    DEFAULT_MIGRATIONS_DIR,
    DEFAULT_MIGRATIONS_TABLE,
    DEFAULT_MODULES_GLOB,
    D1DatabaseConfig,
    MigrationFile,
    MigrationSource,
    WranglerConfig,
    find_wrangler_config,
    load_wrangler_config,
    migration_number,
    read_migration_text,
    strip_jsonc,
)
from d1sync.migrations.runner import (
    CHECKSUM_TABLE,
    AppliedMigration,
    ApplyReport,
    MigrationError,
    MigrationFailedError,
    MigrationPlan,
    MigrationStatus,
    Migrator,
    UnsafeMigrationError,
    ledger_ddl,
    plan_migration,
)
from d1sync.migrations.splitter import (
    SplitStatement,
    first_keyword,
    is_transaction_control,
    split_statements,
    split_with_lines,
)

__all__ = [
    "CHECKSUM_TABLE",
    "DEFAULT_MIGRATIONS_DIR",
    "DEFAULT_MIGRATIONS_TABLE",
    "DEFAULT_MODULES_GLOB",
    "AppliedMigration",
    "ApplyReport",
    "D1DatabaseConfig",
    "MigrationError",
    "MigrationFailedError",
    "MigrationFile",
    "MigrationPlan",
    "MigrationSource",
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
