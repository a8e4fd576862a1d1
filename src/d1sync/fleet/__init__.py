"""The fleet: a folder of tenant SQLite files, each synced to its own D1 database, by one process under one
account budget (docs/fleet.md).

- :mod:`~d1sync.fleet.tenants`: which files are tenants, which tables they sync;
- :mod:`~d1sync.fleet.naming`: a tenant's database name;
- :mod:`~d1sync.fleet.provision`: binding a tenant to its database (adopted
  or created, never twice) and giving it the tenant's schema (:mod:`~d1sync.sync.schema.create`, as one file gets
  a table D1 lacks);
- :mod:`~d1sync.fleet.engine`: one tenant (binding, worker, status row);
- :mod:`~d1sync.fleet.scheduler`: whose turn it is, fairly;
- :mod:`~d1sync.fleet.fleet`: :class:`Fleet`, the many; :mod:`~d1sync.fleet.status`: its status;
- :mod:`~d1sync.fleet.migrate`: migrations applied to every tenant;
- :mod:`~d1sync.fleet.web`: ``/metrics``, ``/status.json`` and the status page of a running fleet.
"""

from __future__ import annotations

from d1sync.fleet.engine import TenantEngine, TenantRow
from d1sync.fleet.fleet import Fleet, connector
from d1sync.fleet.migrate import MigrationRow, migrate_fleet
from d1sync.fleet.naming import database_name
from d1sync.fleet.provision import Binding, Placement, bind
from d1sync.fleet.status import FleetStatus, read_fleet_status
from d1sync.fleet.tenants import discover, track_tables
from d1sync.fleet.web import FleetServer
from d1sync.sync.schema.create import copy_schema, schema_statements

__all__ = [
    "Binding",
    "Fleet",
    "FleetServer",
    "FleetStatus",
    "MigrationRow",
    "Placement",
    "TenantEngine",
    "TenantRow",
    "bind",
    "connector",
    "copy_schema",
    "database_name",
    "discover",
    "migrate_fleet",
    "read_fleet_status",
    "schema_statements",
    "track_tables",
]
