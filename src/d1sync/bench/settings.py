"""The settings of a benchmark run: sizes and conditions (importing this loads nothing heavy)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["BENCHMARKS", "QUICK", "BenchSettings"]

BENCHMARKS = ("drain", "capture", "latency", "idle", "memory", "recovery", "tasks", "budget", "fleet")


@dataclass(frozen=True)
class BenchSettings:
    """Sizes and conditions of a run. The defaults are the issue's; :data:`QUICK` is ``make bench``'s."""

    rows: int = 200_000
    """Backlog drained by each strategy of the drain benchmark."""
    latency_ms: float = 50.0
    """Round-trip latency the emulator adds to every query request."""
    rate_limit: float = 4.0
    """Requests per second allowed by the client-side limiter in the drain and task benchmarks (0: unlimited)."""
    budget: float = 20.0
    """Seconds each drain strategy (and each task-queue mode on the emulator) may run."""
    capture_transactions: int = 20_000
    """Single-row transactions per table in the capture benchmark (100-row transactions: a tenth of it)."""
    latency_samples: int = 300
    idle_seconds: float = 60.0
    """Seconds an idle ``d1sync run`` is watched for the CPU it uses."""
    memory_rows: int = 1_000_000
    recovery_rows: int = 200_000
    budget_rows: int = 1_000_000
    """Backlog drained by each path of the budget benchmark (fixed and adaptive request size)."""
    fleet_tenants: int = 1_000
    """Tenant files of the fleet's convergence and at-rest benchmarks."""
    fleet_seconds: float = 120.0
    """Seconds the fleet's writers run (the hot tenant, and the two daemons on one budget)."""
    benchmarks: tuple[str, ...] = BENCHMARKS
    quick: bool = False

    def __post_init__(self) -> None:
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        sizes = (self.rows, self.capture_transactions, self.latency_samples, self.memory_rows, self.recovery_rows)
        if min(*sizes, self.budget_rows, self.fleet_tenants) < 1 or self.fleet_seconds <= 0:
            raise ValueError("sizes must be at least 1")
        if self.latency_ms < 0 or self.rate_limit < 0 or self.budget <= 0 or self.idle_seconds <= 0:
            raise ValueError("latency and rate limit must not be negative; the budget and idle time must be positive")

    @property
    def command(self) -> str:
        """The explicit command that reproduces this run."""
        defaults = QUICK if self.quick else BenchSettings()
        args = ["d1sync", "bench"] + (["--quick"] if self.quick else [])
        flags = {
            "rows": "--rows",
            "latency_ms": "--latency-ms",
            "rate_limit": "--rate-limit",
            "budget": "--budget",
            "capture_transactions": "--capture-transactions",
            "latency_samples": "--latency-samples",
            "idle_seconds": "--idle-seconds",
            "memory_rows": "--memory-rows",
            "recovery_rows": "--recovery-rows",
            "budget_rows": "--budget-rows",
            "fleet_tenants": "--fleet-tenants",
            "fleet_seconds": "--fleet-seconds",
        }
        for name, flag in flags.items():
            value = getattr(self, name)
            if value != getattr(defaults, name):
                args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if self.benchmarks != BENCHMARKS:
            for name in self.benchmarks:
                args += ["--only", name]
        return shlex.join(args)


QUICK = BenchSettings(
    rows=50_000,
    budget=5.0,
    capture_transactions=5_000,
    latency_samples=200,
    idle_seconds=10.0,
    memory_rows=100_000,
    recovery_rows=50_000,
    budget_rows=200_000,
    fleet_tenants=200,
    fleet_seconds=30.0,
    quick=True,
)
