"""ModuleStore: a per-module view of any Database, with a table-prefix convention.

Several modules of one application share a database; module ``trading`` owns the tables ``trading_*`` and
its migrations live in ``modules/trading/migrations/``. The prefix is a convention the store exposes for
the module's own SQL, never a rewrite of that SQL::

    store = db.module("trading")
    store.table_prefix                 # "trading_"
    store.run("INSERT INTO trading_orders (id, qty) VALUES (?, ?)", "o1", 5)
    store.all("SELECT * FROM trading_orders WHERE qty > ?", 1)      # list of row dicts
    store.first("SELECT count(*) AS n FROM trading_orders")         # {'n': 1}
    store.tables()                                                  # ['trading_orders']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from d1sync.errors import ConfigError

if TYPE_CHECKING:
    from d1sync.database import Database, Result, Row, Statement

__all__ = ["ModuleStore", "validate_module_name"]

_MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def validate_module_name(name: str) -> str:
    """Return ``name`` if it is a valid module name (lower-case identifier), else raise ConfigError."""
    if not _MODULE_NAME.match(name) or name.endswith("_"):
        raise ConfigError(
            f"invalid module name {name!r}: use lower-case letters, digits and '_' starting with a letter "
            "(it becomes the table prefix, e.g. 'trading' -> 'trading_')"
        )
    return name


class ModuleStore:
    """A module's view of a Database. See the module docstring."""

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
            self.db.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ? "
                "AND length(name) > ? ORDER BY name"
            )
            .bind(len(self.table_prefix), self.table_prefix, len(self.table_prefix))
            .all()
            .results
        )
        return [str(r["name"]) for r in rows]

    def prepare(self, sql: str) -> Statement:
        """Prepare ``sql`` on the underlying database (no rewriting)."""
        return self.db.prepare(sql)

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

    def batch(self, statements: Sequence[Statement | tuple[str, Sequence[Any]]]) -> list[Result]:
        """Run statements atomically; each is a Statement or an ``(sql, params)`` pair."""
        prepared = [s if not isinstance(s, tuple) else self.db.prepare(s[0]).bind(*s[1]) for s in statements]
        return self.db.batch(prepared)
