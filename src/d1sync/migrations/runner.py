"""Apply migrations to any Database with wrangler's ledger (d1-contract §5).

Every migration and its ledger row are one ``db.batch``: D1 runs a batch as one transaction, so a migration
is either fully applied and recorded, or not at all. The run stops at the first failure; earlier
migrations stay applied. Because everything goes through the Database API, a local file, the emulator and
D1 share this code.

Drift: the SHA-256 of each file d1sync applies is written, in the same batch, to a side table
(``_d1sync_migration_checksums``), leaving wrangler's ledger columns untouched. A file applied by wrangler
has no checksum and is reported as ``unknown``: recording one later would bless any edit made since.

Example::

    migrator = Migrator(db, source.discover())
    for status in migrator.status():
        print(status.name, status.state, status.drift)
    report = migrator.apply()            # raises MigrationFailedError / UnsafeMigrationError
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from d1sync.database import Database, Statement
from d1sync.errors import D1Error, MigrationFailedError, SQLError, UnsafeMigrationError
from d1sync.migrations.files import MigrationFile
from d1sync.sql import (
    SplitStatement,
    fence_sql,
    first_keyword,
    is_transaction_control,
    quote_identifier,
    split_with_lines,
)
from d1sync.wrangler import DEFAULT_MIGRATIONS_TABLE

__all__ = [
    "CHECKSUM_TABLE",
    "AppliedMigration",
    "ApplyReport",
    "Drift",
    "MigrationPlan",
    "MigrationState",
    "MigrationStatus",
    "Migrator",
    "ledger_ddl",
    "plan_migration",
]

MigrationState = Literal["applied", "pending"]
Drift = Literal["ok", "changed", "unknown", "missing"]

CHECKSUM_TABLE = "_d1sync_migration_checksums"
_CHECKSUM_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} (\n"
    "    ledger     TEXT NOT NULL,\n"
    "    name       TEXT NOT NULL,\n"
    "    sha256     TEXT NOT NULL,\n"
    "    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL,\n"
    "    PRIMARY KEY (ledger, name)\n"
    ")"
)
_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ledger_ddl(table: str = DEFAULT_MIGRATIONS_TABLE) -> str:
    """wrangler's ledger DDL, byte for byte, for ledger ``table`` (d1-contract §5).

    The bytes are wrangler 4.86.0's (``initMigrationsTable``): the column lines are indented with two
    tabs, which the contract's rendering shows as spaces. So ``sqlite_master.sql`` reads the same whichever
    tool created the ledger. A plain identifier is written bare, as wrangler writes it; anything else is
    quoted.
    """
    name = table if _PLAIN_IDENTIFIER.match(table) else quote_identifier(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {name}(\n"
        "\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "\t\tname       TEXT UNIQUE,\n"
        "\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n"
        ");"
    )


# -- plans and reports -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """A pending migration, split and checked: ``statements`` run in order, then the ledger rows."""

    file: MigrationFile
    statements: tuple[SplitStatement, ...]
    checksum: str
    foreign_tables: tuple[str, ...] = ()
    """For module migrations: tables created without the module's prefix (a convention warning)."""


_CREATE_TABLE = re.compile(
    r"^CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?:(?:\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\w+)\s*\.\s*)?(\"(?:[^\"]|\"\")+\"|`[^`]+`|\[[^\]]+\]|\w+)",
    re.IGNORECASE,
)


def _created_table(sql: str) -> str | None:
    match = _CREATE_TABLE.match(sql)
    if not match:
        return None
    name = match.group(1)
    if name[0] in '"`[':
        name = name[1:-1].replace('""', '"')
    return name


def plan_migration(file: MigrationFile) -> MigrationPlan:
    """Read and split ``file``; refuse transaction statements with file and line.

    Raises:
        UnsafeMigrationError: the file holds ``BEGIN``/``COMMIT``/``ROLLBACK``/``SAVEPOINT``/``RELEASE``/``END``.
    """
    text = file.read()
    statements = tuple(split_with_lines(text))
    for statement in statements:
        if is_transaction_control(statement.sql):
            keyword = first_keyword(statement.sql)
            raise UnsafeMigrationError(
                f"{file.path}:{statement.line}: {keyword} is a transaction statement, which D1 refuses "
                f"(migration {file.name}); remove it: d1sync runs each migration as one atomic batch",
                name=file.name,
                path=file.path,
                line=statement.line,
            )
    foreign: list[str] = []
    if file.module is not None:
        prefix = f"{file.module}_"
        for statement in statements:
            table = _created_table(statement.sql)
            if table is not None and not table.startswith(prefix):
                foreign.append(table)
    return MigrationPlan(file, statements, file.checksum(), tuple(foreign))


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """One line of ``list``: a file and/or a ledger row.

    ``state`` is ``applied`` or ``pending``; ``drift`` (applied only) is ``ok`` (file unchanged since
    d1sync applied it), ``changed`` (edited since), ``unknown`` (applied without a checksum, e.g. by
    wrangler) or ``missing`` (in the ledger, no such file).
    """

    name: str
    file: MigrationFile | None
    applied_at: str | None
    drift: Drift | None

    @property
    def state(self) -> MigrationState:
        return "applied" if self.applied_at is not None else "pending"

    @property
    def module(self) -> str | None:
        return self.file.module if self.file else (self.name.split("/", 1)[0] if "/" in self.name else None)


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    name: str
    statements: int
    duration_ms: float


@dataclass(slots=True)
class ApplyReport:
    """What ``apply`` did (or, with ``dry_run``, would do)."""

    planned: list[MigrationPlan] = field(default_factory=list)
    applied: list[AppliedMigration] = field(default_factory=list)
    dry_run: bool = False


# -- the migrator ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LedgerRow:
    name: str
    applied_at: str


class Migrator:
    """Runs ``files`` (in the given order) against ``db`` with the ledger table ``table``.

    Args:
        db: any Database (LocalDatabase, D1Client, D1Client on the emulator).
        files: the migrations in application order, from :meth:`MigrationSource.discover`.
        table: the ledger table (wrangler's ``migrations_table``).
        clock: monotonic clock for durations (injectable in tests).
    """

    def __init__(
        self,
        db: Database,
        files: Sequence[MigrationFile],
        *,
        table: str = DEFAULT_MIGRATIONS_TABLE,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.db = db
        self.files = list(files)
        self.table = table
        self._clock = clock

    # -- ledger --------------------------------------------------------------------------------------------

    def ensure_ledger(self) -> None:
        """Create the ledger (wrangler's DDL) and the checksum side table if missing."""
        self.db.batch([self.db.prepare(ledger_ddl(self.table)), self.db.prepare(_CHECKSUM_DDL)])

    def _existing_tables(self) -> set[str]:
        rows = (
            self.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)")
            .bind(self.table, CHECKSUM_TABLE)
            .all()
            .results
        )
        return {str(r["name"]) for r in rows}

    def _read_ledger(self) -> tuple[list[_LedgerRow], dict[str, str]]:
        """Ledger rows in id order and recorded checksums, without writing anything."""
        existing = self._existing_tables()
        rows: list[_LedgerRow] = []
        checksums: dict[str, str] = {}
        if self.table in existing:
            result = self.db.prepare(f"SELECT name, applied_at FROM {quote_identifier(self.table)} ORDER BY id").all()
            rows = [_LedgerRow(str(r["name"]), str(r["applied_at"])) for r in result.results]
        if CHECKSUM_TABLE in existing:
            result = (
                self.db.prepare(f"SELECT name, sha256 FROM {CHECKSUM_TABLE} WHERE ledger = ?").bind(self.table).all()
            )
            checksums = {str(r["name"]): str(r["sha256"]) for r in result.results}
        return rows, checksums

    def status(self, *, create_ledger: bool = True) -> list[MigrationStatus]:
        """Every file and ledger row: applied ones (with drift) then pending ones, in application order.

        Ledger rows without a file (``missing``) are listed where they sit in the ledger. Like wrangler's
        ``list``, this creates the ledger unless ``create_ledger`` is False.
        """
        if create_ledger:
            self.ensure_ledger()
        rows, checksums = self._read_ledger()
        by_name = {f.name: f for f in self.files}
        applied_names = {r.name for r in rows}
        out: list[MigrationStatus] = []
        for row in rows:
            file = by_name.get(row.name)
            drift: Drift
            if file is None:
                drift = "missing"
            elif row.name not in checksums:
                drift = "unknown"
            else:
                drift = "ok" if checksums[row.name] == file.checksum() else "changed"
            out.append(MigrationStatus(row.name, file, row.applied_at, drift))
        out.extend(MigrationStatus(f.name, f, None, None) for f in self.files if f.name not in applied_names)
        return out

    def pending(self) -> list[MigrationFile]:
        """Files whose name is not in the ledger, in application order (reads only)."""
        rows, _ = self._read_ledger()
        applied = {r.name for r in rows}
        return [f for f in self.files if f.name not in applied]

    # -- apply -----------------------------------------------------------------------------------------------

    def _statements(self, plan: MigrationPlan) -> list[Statement]:
        db = self.db
        return [
            *(db.prepare(s.sql) for s in plan.statements),
            db.prepare(f"INSERT INTO {quote_identifier(self.table)} (name) VALUES (?)").bind(plan.file.name),
            # OR REPLACE: a ledger row deleted by hand to re-run a file leaves an old checksum behind.
            db.prepare(f"INSERT OR REPLACE INTO {CHECKSUM_TABLE} (ledger, name, sha256) VALUES (?, ?, ?)").bind(
                self.table, plan.file.name, plan.checksum
            ),
        ]

    def apply(
        self,
        *,
        dry_run: bool = False,
        on_start: Callable[[MigrationPlan], None] | None = None,
        on_applied: Callable[[AppliedMigration], None] | None = None,
    ) -> ApplyReport:
        """Apply every pending migration in order, each with its ledger row as one atomic batch.

        Every pending file is read and checked first: a transaction statement anywhere stops the run
        before anything is written. ``dry_run`` plans without writing (not even the ledger).

        Raises:
            UnsafeMigrationError: a pending file holds a transaction statement (nothing ran).
            MigrationFailedError: the database refused a migration (it was rolled back; earlier ones stay).
        """
        plans = [plan_migration(f) for f in self.pending()]
        report = ApplyReport(planned=plans, dry_run=dry_run)
        if dry_run or not plans:
            if not dry_run:
                self.ensure_ledger()
            return report
        self.ensure_ledger()
        for plan in plans:
            if on_start is not None:
                on_start(plan)
            statements = self._statements(plan)
            started = self._clock()
            try:
                self.db.batch(statements)
            except D1Error as exc:
                raise self._failure(plan, statements, exc, report.applied) from exc
            done = AppliedMigration(plan.file.name, len(plan.statements), (self._clock() - started) * 1000)
            report.applied.append(done)
            if on_applied is not None:
                on_applied(done)
        return report

    def _failure(
        self, plan: MigrationPlan, statements: list[Statement], exc: D1Error, applied: list[AppliedMigration]
    ) -> MigrationFailedError:
        index = self._locate(statements, exc)
        count = len(plan.statements)
        if index is None:
            where = "(statement unknown)"
            number = line = None
        elif index < count:
            number, line = index + 1, plan.statements[index].line
            where = f"statement {number} of {count} (line {line})"
        else:
            number = line = None
            where = "the ledger insert (was it applied concurrently?)"
        if exc.retryable:
            # A lost or unproven answer: the batch may have run. Its ledger row runs with it, so applying
            # again is safe and settles it.
            outcome = "whether it was applied is unknown; apply again: the ledger records it only if it ran"
        else:
            outcome = "it was rolled back"
        return MigrationFailedError(
            f"migration {plan.file.name} failed at {where}: {exc.message}; {outcome} "
            f"({len(applied)} earlier migration(s) of this run stay applied) [{plan.file.path}]",
            name=plan.file.name,
            path=plan.file.path,
            cause=exc,
            statement_number=number,
            line=line,
            applied=applied,
        )

    def _locate(self, statements: list[Statement], exc: D1Error) -> int | None:
        """Index of the statement that failed, found by probing prefixes of the batch.

        D1 does not say which statement of a batch failed (and ``exc.statement`` may name the batch's first).
        A probe runs ``statements[:k]`` plus a fence that always fails, so the batch is rolled back
        whatever happens: it finds the first failing statement in log2(n) round trips and writes nothing.
        """
        if len(statements) == 1:
            return 0
        if not isinstance(exc, SQLError) or exc.retryable:
            return None
        probe_name = f"probe-{uuid.uuid4().hex}"
        probe = self.db.prepare(fence_sql(probe_name))
        lo, hi = 0, len(statements)  # statements[:lo] succeed; statements[:hi] fail
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                self.db.batch([*statements[:mid], probe])
            except SQLError as probe_exc:
                if probe_exc.fence == probe_name:
                    lo = mid
                else:
                    hi = mid
                continue
            except D1Error:
                return None
            return None  # the probe cannot succeed; if it did, the database is not what we think
        return hi - 1
