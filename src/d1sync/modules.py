"""Module namespaces: one database shared by several modules of an application, each with a table prefix.

Module ``trading`` owns the tables ``trading_*`` and keeps its migrations in ``modules/trading/migrations/``
(recorded in the shared ledger as ``trading/NNNN_name.sql``). ``db.module("trading")`` gives the module a
:class:`ModuleStore`, a Database viewing ``db`` with ``table_prefix == "trading_"``. The class lives beside the
Database API it implements (``d1sync.database``); this module is its documented home.
"""

from __future__ import annotations

from d1sync.database import ModuleStore, validate_module_name

__all__ = ["ModuleStore", "validate_module_name"]
