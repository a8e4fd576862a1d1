"""A fleet's status: a row per tenant and the totals, from a running fleet or from the files alone.

``fleet status`` needs no daemon and sends no request: each row is read from the tenant file (its outbox and
its recorded binding). What only a running fleet knows (a binding that failed, a name clash) is in the rows
of :meth:`~d1sync.fleet.fleet.Fleet.status` and of ``fleet sync``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d1sync.errors import D1SyncError
from d1sync.fleet.engine import TenantRow, read_row
from d1sync.fleet.provision import read_bindings
from d1sync.fleet.tenants import DEFAULT_PATTERN, discover

__all__ = ["FleetStatus", "read_fleet_status", "totals"]


@dataclass
class FleetStatus:
    """Every tenant's row (sorted by file name) and the totals."""

    tenants: list[TenantRow] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"tenants": [...], "totals": {...}}``, what ``fleet status --json`` prints."""
        return {"tenants": [t.to_dict() for t in self.tenants], "totals": self.totals}


def totals(rows: list[TenantRow], not_tenants: list[str]) -> dict[str, Any]:
    """The fleet's totals over ``rows``."""
    return {
        "tenants": len(rows),
        "pending": sum(r.pending for r in rows),
        "dead": sum(r.dead for r in rows),
        "paused": sum(1 for r in rows if r.paused),
        "failed": sum(1 for r in rows if r.state == "failed"),
        "missing": sum(1 for r in rows if r.state == "missing"),
        "size_bytes": sum(r.size_bytes or 0 for r in rows),
        "not_tenants": sorted(not_tenants),
    }


def read_fleet_status(folder: Path, pattern: str = DEFAULT_PATTERN, place: str | None = None) -> FleetStatus:
    """The status of the tenants in ``folder``, read from their files (no request, no write).

    ``place`` chooses the account's binding (:func:`~d1sync.fleet.provision.place_of`); None, or a place
    the file has no binding for: its most recent binding.
    """
    found = discover(folder, pattern)
    rows = []
    for path in found.tenants:
        row = TenantRow(file=path.name)
        try:
            bindings = read_bindings(path)
            binding = bindings.get(place) if place is not None else None
            binding = binding or (list(bindings.values())[-1] if bindings else None)
            if binding is not None:
                row.database_id, row.database_name = binding.database_id, binding.database_name
                row.size_bytes = binding.size_bytes
            read_row(path, row)
            row.state = "unbound" if binding is None else "pending" if row.pending else "idle"
        except D1SyncError as exc:
            row.state, row.last_error = "failed", f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return FleetStatus(rows, totals(rows, [p.name for p in found.rejected]))
