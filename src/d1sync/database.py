"""The Database API: one D1-binding-shaped interface over every backend.

``LocalDatabase`` (a SQLite file), ``D1Client`` (the REST API) and the emulator all speak it, so migrations,
module stores, the task queue and the sync worker run unchanged on any of them::

    db.prepare("SELECT * FROM t WHERE id = ?").bind(1).all()   # Result(results=[{...}], meta=Meta(...))
    db.prepare(sql).bind(*params).first()                       # first row as a dict, or None
    db.prepare(sql).bind(*params).first("col")                  # one value
    db.prepare(sql).bind(*params).run()                         # Result, for writes
    db.prepare(sql).raw(column_names=True)                      # [[col, ...], [v, ...], ...]
    db.batch([stmt1, stmt2])                                    # atomic; list[Result]
    db.exec("CREATE TABLE a (x); CREATE TABLE b (y)")           # ExecResult(count, duration)

``AsyncDatabase`` / ``AsyncStatement`` are the same API with awaitables, for ``AsyncD1Client``.
``db.module("trading")`` is a :class:`ModuleStore`: a Database too, viewing ``db`` through a module's table
prefix.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, overload

from d1sync.errors import ConfigError, SQLError

__all__ = [
    "AsyncDatabase",
    "AsyncStatement",
    "Database",
    "ExecResult",
    "Meta",
    "ModuleStore",
    "RawResult",
    "Result",
    "Row",
    "Statement",
    "validate_module_name",
]

Row = dict[str, Any]

_META_FIELDS = (
    "duration",
    "changes",
    "last_row_id",
    "changed_db",
    "rows_read",
    "rows_written",
    "size_after",
    "served_by_region",
    "served_by_primary",
    "served_by_colo",
    "served_by",
    "total_attempts",
)


@dataclass(frozen=True, slots=True)
class Meta:
    """The ``meta`` object of a D1 result (d1-contract §1). Unknown keys are kept in ``extra``.

    ``rows_read``/``rows_written`` from :class:`~d1sync.LocalDatabase` are approximations: SQLite does not
    expose D1's billing counters (rows returned, and rows changed including by triggers).
    """

    duration: float = 0.0
    changes: int = 0
    last_row_id: int = 0
    changed_db: bool = False
    rows_read: int = 0
    rows_written: int = 0
    size_after: int = 0
    served_by_region: str | None = None
    served_by_primary: bool | None = None
    served_by_colo: str | None = None
    served_by: str | None = None
    total_attempts: int | None = None
    sql_duration_ms: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Meta:
        """Build from D1's JSON ``meta``, tolerating missing keys and keeping unknown ones."""
        if not data:
            return cls()
        known: dict[str, Any] = {k: data[k] for k in _META_FIELDS if data.get(k) is not None}
        timings = data.get("timings")
        if isinstance(timings, Mapping) and timings.get("sql_duration_ms") is not None:
            known["sql_duration_ms"] = timings["sql_duration_ms"]
        extra = {k: v for k, v in data.items() if k not in _META_FIELDS and k != "timings"}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The D1 JSON shape of this meta (what the emulator sends)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _META_FIELDS}
        for optional in ("served_by", "total_attempts"):
            if out[optional] is None:
                del out[optional]
        out["timings"] = {"sql_duration_ms": self.sql_duration_ms if self.sql_duration_ms is not None else 0}
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Result:
    """The result of one statement: rows as dicts plus :class:`Meta`."""

    results: list[Row]
    meta: Meta = field(default_factory=Meta)
    success: bool = True


@dataclass(frozen=True, slots=True)
class RawResult:
    """The result of one statement in ``/raw`` form: column names and rows as lists."""

    columns: list[str]
    rows: list[list[Any]]
    meta: Meta = field(default_factory=Meta)

    def to_result(self) -> Result:
        return Result([dict(zip(self.columns, row, strict=True)) for row in self.rows], self.meta)


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The result of :meth:`Database.exec`: how many statements ran and how long it took (ms)."""

    count: int
    duration: float


def _first(result: Result, column: str | None) -> Any:
    if not result.results:
        return None
    row = result.results[0]
    if column is None:
        return row
    if column not in row:
        # The Worker binding throws D1_COLUMN_NOTFOUND here rather than returning undefined.
        raise SQLError(f"D1_COLUMN_NOTFOUND: column {column!r} is not in the result ({', '.join(row)})")
    return row[column]


def _raw(result: RawResult, column_names: bool) -> list[list[Any]]:
    return [list(result.columns), *result.rows] if column_names else result.rows


class Statement:
    """A prepared statement with its bound parameters. Immutable: ``bind`` returns a new one."""

    __slots__ = ("_db", "params", "sql")

    def __init__(self, db: Database, sql: str, params: Sequence[Any] = ()) -> None:
        self._db = db
        self.sql = sql
        self.params: tuple[Any, ...] = tuple(params)

    def bind(self, *params: Any) -> Statement:
        """Bind positional parameters (``?`` / ``?NNN``), replacing any bound before."""
        return Statement(self._db, self.sql, params)

    def all(self) -> Result:
        """Run and return every row."""
        return self._db._execute(self)

    def run(self) -> Result:
        """Run a write; same result shape as :meth:`all`."""
        return self._db._execute(self)

    @overload
    def first(self) -> Row | None: ...
    @overload
    def first(self, column: str) -> Any: ...
    def first(self, column: str | None = None) -> Any:
        """The first row (or ``None``); with ``column``, that column's value of the first row."""
        return _first(self._db._execute(self), column)

    def raw(self, *, column_names: bool = False) -> list[list[Any]]:
        """Rows as lists; with ``column_names=True`` the first list is the column names."""
        return _raw(self._db._execute_raw(self), column_names)

    def __repr__(self) -> str:
        return f"Statement({self.sql!r}, params={len(self.params)})"


class Database(ABC):
    """A database with the D1 binding's API.

    Subclasses implement :meth:`batch_raw`, :meth:`exec`, :meth:`_execute` and :meth:`_execute_raw`;
    :meth:`batch` defaults to :meth:`batch_raw` with rows turned into dicts.
    """

    def prepare(self, sql: str) -> Statement:
        """Prepare ``sql``; bind parameters with :meth:`Statement.bind`."""
        return Statement(self, sql)

    def batch(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[Result]:
        """Run statements in order inside one transaction: all apply or none does.

        ``idempotent=True`` says applying the batch twice changes nothing, so a remote backend may retry it
        after a lost response (local files never need to).
        """
        return [r.to_result() for r in self.batch_raw(statements, idempotent=idempotent)]

    @abstractmethod
    def batch_raw(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[RawResult]:
        """:meth:`batch` with ``/raw``-shaped results: rows as lists, column names kept even for empty results."""

    @abstractmethod
    def exec(self, sql: str) -> ExecResult:
        """Run one or more ``;``-separated statements without parameters (maintenance, DDL)."""

    @abstractmethod
    def _execute(self, statement: Statement) -> Result: ...

    @abstractmethod
    def _execute_raw(self, statement: Statement) -> RawResult: ...

    def module(self, name: str) -> ModuleStore:
        """A view of this database for module ``name``: ``table_prefix == name + "_"``."""
        return ModuleStore(self, name)

    def close(self) -> None:
        """Release resources. The default does nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def validate_module_name(name: str) -> str:
    """Return ``name`` if it is a valid module name (lower-case identifier), else raise ConfigError."""
    if not _MODULE_NAME.match(name) or name.endswith("_"):
        raise ConfigError(
            f"invalid module name {name!r}: use lower-case letters, digits and '_' starting with a letter "
            "(it becomes the table prefix, e.g. 'trading' -> 'trading_')"
        )
    return name


class ModuleStore(Database):
    """A module's view of a Database, with the table-prefix convention; a Database itself.

    Several modules of one application share a database; module ``trading`` owns the tables ``trading_*``
    and its migrations live in ``modules/trading/migrations/``. The prefix is a convention the store exposes
    for the module's own SQL, never a rewrite of that SQL. Statements run on the underlying database, so
    migrations, the task queue and the sync worker take a ModuleStore wherever they take a Database::

        store = db.module("trading")
        store.table_prefix                 # "trading_"
        store.run("INSERT INTO trading_orders (id, qty) VALUES (?, ?)", "o1", 5)
        store.all("SELECT * FROM trading_orders WHERE qty > ?", 1)      # list of row dicts
        store.first("SELECT count(*) AS n FROM trading_orders")         # {'n': 1}
        store.tables()                                                  # ['trading_orders']

    Closing a ModuleStore does nothing: the underlying database belongs to whoever opened it.
    """

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = validate_module_name(name)
        self.table_prefix = f"{name}_"

    def __repr__(self) -> str:
        return f"ModuleStore({self.name!r}, db={self.db!r})"

    def table(self, suffix: str) -> str:
        """The full name of this module's table ``suffix`` (``store.table("orders") == "trading_orders"``)."""
        return self.table_prefix + suffix

    def owns(self, table: str) -> bool:
        """Whether ``table`` follows this module's prefix convention (``trading_orders`` for ``trading``)."""
        return table.startswith(self.table_prefix) and len(table) > len(self.table_prefix)

    def tables(self) -> list[str]:
        """The module's existing tables (names starting with the prefix), sorted.

        Compared with ``substr`` rather than ``LIKE``, where ``_`` would be a wildcard.
        """
        rows = (
            self.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ? "
                "AND length(name) > ? ORDER BY name"
            )
            .bind(len(self.table_prefix), self.table_prefix, len(self.table_prefix))
            .all()
            .results
        )
        return [str(r["name"]) for r in rows]

    # -- the Database API, delegated ----------------------------------------------------------------------

    def prepare(self, sql: str) -> Statement:
        """Prepare ``sql`` on the underlying database (no rewriting)."""
        return self.db.prepare(sql)

    def _statements(self, statements: Sequence[Statement | tuple[str, Sequence[Any]]]) -> list[Statement]:
        return [s if not isinstance(s, tuple) else self.db.prepare(s[0]).bind(*s[1]) for s in statements]

    def batch(
        self, statements: Sequence[Statement | tuple[str, Sequence[Any]]], *, idempotent: bool = False
    ) -> list[Result]:
        """Run statements atomically; each is a Statement or an ``(sql, params)`` pair."""
        return self.db.batch(self._statements(statements), idempotent=idempotent)

    def batch_raw(
        self, statements: Sequence[Statement | tuple[str, Sequence[Any]]], *, idempotent: bool = False
    ) -> list[RawResult]:
        return self.db.batch_raw(self._statements(statements), idempotent=idempotent)

    def exec(self, sql: str) -> ExecResult:
        return self.db.exec(sql)

    def _execute(self, statement: Statement) -> Result:
        return self.db._execute(statement)

    def _execute_raw(self, statement: Statement) -> RawResult:
        return self.db._execute_raw(statement)

    # -- shorthands -----------------------------------------------------------------------------------------

    def run(self, sql: str, *params: Any) -> Result:
        """Run a write with positional parameters."""
        return self.db.prepare(sql).bind(*params).run()

    def all(self, sql: str, *params: Any) -> list[Row]:
        """Run a query and return every row as a dict."""
        return self.db.prepare(sql).bind(*params).all().results

    def first(self, sql: str, *params: Any) -> Row | None:
        """Run a query and return its first row, or None."""
        row: Row | None = self.db.prepare(sql).bind(*params).first()
        return row


class AsyncStatement:
    """The awaitable twin of :class:`Statement`."""

    __slots__ = ("_db", "params", "sql")

    def __init__(self, db: AsyncDatabase, sql: str, params: Sequence[Any] = ()) -> None:
        self._db = db
        self.sql = sql
        self.params: tuple[Any, ...] = tuple(params)

    def bind(self, *params: Any) -> AsyncStatement:
        return AsyncStatement(self._db, self.sql, params)

    async def all(self) -> Result:
        return await self._db._execute(self)

    async def run(self) -> Result:
        return await self._db._execute(self)

    async def first(self, column: str | None = None) -> Any:
        return _first(await self._db._execute(self), column)

    async def raw(self, *, column_names: bool = False) -> list[list[Any]]:
        return _raw(await self._db._execute_raw(self), column_names)

    def __repr__(self) -> str:
        return f"AsyncStatement({self.sql!r}, params={len(self.params)})"


class AsyncDatabase(ABC):
    """The awaitable twin of :class:`Database`."""

    def prepare(self, sql: str) -> AsyncStatement:
        return AsyncStatement(self, sql)

    async def batch(self, statements: Sequence[AsyncStatement], *, idempotent: bool = False) -> list[Result]:
        return [r.to_result() for r in await self.batch_raw(statements, idempotent=idempotent)]

    @abstractmethod
    async def batch_raw(self, statements: Sequence[AsyncStatement], *, idempotent: bool = False) -> list[RawResult]: ...

    @abstractmethod
    async def exec(self, sql: str) -> ExecResult: ...

    @abstractmethod
    async def _execute(self, statement: AsyncStatement) -> Result: ...

    @abstractmethod
    async def _execute_raw(self, statement: AsyncStatement) -> RawResult: ...

    async def aclose(self) -> None:
        """Release resources. The default does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
