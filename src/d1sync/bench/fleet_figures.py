"""``d1sync bench --only fleet``: run the four fleet benchmarks (:mod:`d1sync.bench.fleet`) on an emulator of
their own, at the run's latency, and print each figure with the conditions that produced it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from d1sync.bench import fleet
from d1sync.bench.fleet_env import CountingEmulator
from d1sync.bench.report import Figure, Report
from d1sync.bench.settings import BenchSettings

__all__ = ["run_fleet_bench"]

MB = 1024 * 1024
EMULATOR = "emulator in a thread of the bench process, counting every request it answers (creates and listings too)"


def _figure(report: Report, key: str, name: str, value: float | None, unit: str, **extra: object) -> None:
    conditions = extra.pop("conditions")
    assert isinstance(conditions, dict)
    measured = extra.pop("measured", {})
    assert isinstance(measured, dict)
    report.figures.append(
        Figure(
            key=f"fleet.{key}",
            name=name,
            value=float("nan") if value is None else value,
            unit=unit,
            conditions=conditions,
            measured=measured,
            summary=str(extra.get("summary", "")),
        )
    )


def _converge_figures(report: Report, settings: BenchSettings, o: fleet.ConvergeOutcome) -> None:
    conditions = {
        "command": "d1sync fleet sync DIR --emulator URL --rate-limit 1000000/1 (a child process, concurrency 4)",
        "tenants": o.tenants,
        "rows_per_tenant": o.rows_per_tenant,
        "emulator_latency_ms": settings.latency_ms,
        "emulator": EMULATOR,
        "goal": "<= 3 requests per tenant",
    }
    kinds = ", ".join(f"{v:,} {k}" for k, v in sorted(o.by_kind.items()) if k != "list")
    listed = o.by_kind.get("list", 0)
    check = f"{o.converged:,}/{o.tenants:,} databases hold their file's rows, {o.databases:,} databases"
    then = f"; then {listed} listing(s) of the account for the sizes" if listed else ""
    _figure(
        report,
        "converge.requests_per_tenant",
        f"fleet: requests per new tenant to converge ({o.tenants:,} tenants)",
        o.requests_per_tenant,
        "requests",
        conditions=conditions,
        measured=o.to_dict(),
        summary=f"{o.requests - listed:,} requests ({kinds}){then}; {check}",
    )
    _figure(
        report,
        "converge.seconds",
        f"fleet: wall time to converge {o.tenants:,} new tenants",
        o.seconds,
        "s",
        conditions=conditions,
        measured=o.to_dict(),
        summary=f"{o.rows_per_tenant} rows each, {settings.latency_ms:g} ms per request, 4 in flight",
    )
    _figure(
        report,
        "converge.peak_rss_mb",
        f"fleet: peak RSS of `fleet sync`, {o.tenants:,} tenants",
        o.peak_rss_bytes / MB,
        "MB",
        conditions=conditions | {"measured_by": "wait4() rusage ru_maxrss of the child"},
        measured=o.to_dict(),
        summary="max 256 tenant files open at once (default)",
    )


def _idle_figure(report: Report, settings: BenchSettings, o: fleet.IdleFleetOutcome) -> None:
    _figure(
        report,
        "idle.cpu_percent",
        f"fleet: CPU of `fleet run` at rest, {o.tenants:,} tenants",
        o.cpu_percent,
        "% of a core",
        conditions={
            "command": "d1sync fleet run DIR --emulator URL --metrics-port P (a child process, default intervals)",
            "tenants": o.tenants,
            "before": f"every tenant converged and past its first pass, then {o.settle_seconds:g} s (idle tenants "
            "close after 60 s)",
            "watched_seconds": round(o.seconds, 1),
            "measured_by": "utime + stime from /proc/PID/stat, before and after",
            "goal": "< 2 % of a core",
        },
        measured=o.to_dict(),
        summary=f"{o.cpu_seconds:.2f} s of CPU in {o.seconds:.0f} s; {o.requests} requests sent meanwhile",
    )


def _hot_figures(report: Report, settings: BenchSettings, o: fleet.HotOutcome) -> None:
    n_over_r = (o.cold_tenants + 1) / (1170 / 300)
    conditions = {
        "command": "d1sync fleet run DIR --emulator URL (default --rate-limit 1200/300, concurrency 4)",
        "account_budget": "1200/300 s, enforced by the emulator too (x-ratelimit-* on every answer)",
        "writers": f"1 tenant: 100 rows per commit every 0.1 s; {o.cold_tenants} tenants: 1 row every 2 s each",
        "written_for_seconds": round(o.seconds, 1),
        "visibility": "a trigger in each emulator database stamps each row's arrival (unixepoch('subsec'))",
        "emulator_latency_ms": settings.latency_ms,
        "goal": f"p95 of the quiet tenants <= 2 x N/R = {2 * n_over_r:.0f} s (N={o.cold_tenants + 1}, R=3.9/s)",
    }
    late = o.cold_rows - o.cold_arrived
    common = f"{o.requests:,} requests, {o.rate_limited} answered 429" + (f"; {late} rows not arrived" if late else "")
    for p, value in (("p50", o.cold_p50), ("p95", o.cold_p95)):
        _figure(
            report,
            f"hot.cold_{p}_s",
            f"fleet: commit to D1, {p}, {o.cold_tenants} quiet tenants beside a hot one",
            value,
            "s",
            conditions=conditions,
            measured=o.to_dict(),
            summary=f"{o.cold_arrived:,} rows; {common}",
        )
    for p, value in (("p50", o.hot_p50), ("p95", o.hot_p95)):
        _figure(
            report,
            f"hot.hot_{p}_s",
            f"fleet: commit to D1, {p}, the hot tenant (1,000 rows/s)",
            value,
            "s",
            conditions=conditions,
            measured=o.to_dict(),
            summary=f"{o.hot_rows:,} rows written; {common}",
        )
    alone = conditions | {
        "writers": "the same hot tenant alone, the others idle",
        "written_for_seconds": round(o.alone_seconds, 1),
    }
    for p, value in (("p50", o.alone_p50), ("p95", o.alone_p95)):
        _figure(
            report,
            f"hot.alone_{p}_s",
            f"fleet: commit to D1, {p}, the hot tenant (1,000 rows/s) while the others are idle",
            value,
            "s",
            conditions=alone,
            measured=o.to_dict(),
            summary=f"{o.alone_rows:,} rows written; {o.alone_rows_per_second:,.0f} rows/s reached D1 while it wrote",
        )
    _figure(
        report,
        "hot.hot_rows_per_second",
        "fleet: the hot tenant's rows/s reaching D1",
        o.hot_rows_per_second,
        "rows/s",
        conditions=conditions,
        measured=o.to_dict(),
        summary=f"{o.hot_arrived_in_window:,} of its rows arrived within the {o.seconds:.0f} s it wrote",
    )


def _two_figures(report: Report, settings: BenchSettings, o: fleet.TwoOutcome) -> None:
    limit = f"{o.budget[0]}/{o.budget[1]:g}"
    told = "x-ratelimit-* on every answer" if o.headers else "no x-ratelimit-* count: only 429s and retry-after"
    conditions = {
        "command": f"two `d1sync fleet run DIR --emulator URL --rate-limit {limit}`, one account",
        "account_budget": f"{limit} s, enforced by the emulator, {told} (the 1200/300 steady rate, 3.9/s, "
        "in a window short enough to see several in one run)",
        "tenants_per_daemon": o.tenants_each,
        "writers": "every tenant always has rows to send (5 rows per commit, more than the budget carries)",
        "watched_seconds": round(o.seconds, 1),
        "emulator_latency_ms": settings.latency_ms,
        "goal": "no 429 where the answers carry x-ratelimit-*, under 15 % where they carry only 429s; "
        "the two within 2x of each other",
    }
    a, b = o.rows_per_second
    key = "two" if o.headers else "two_bare"
    name = "two daemons on one account budget" + ("" if o.headers else ", answers without the count")
    _figure(
        report,
        f"{key}.share_429_percent",
        f"fleet: 429s, {name}",
        100 * o.share_429,
        "% of requests",
        conditions=conditions,
        measured=o.to_dict(),
        summary=f"{o.rate_limited} of {sum(o.requests):,} requests ({o.requests[0]:,} + {o.requests[1]:,})",
    )
    _figure(
        report,
        f"{key}.throughput_ratio",
        f"fleet: faster / slower throughput, {name}",
        o.ratio,
        "x",
        conditions=conditions,
        measured=o.to_dict(),
        summary=f"{a:,.0f} and {b:,.0f} rows/s reached D1",
    )


def run_fleet_bench(workdir: Path, settings: BenchSettings, report: Report, say: Callable[[str], None]) -> None:
    """The four fleet benchmarks, their figures and details into ``report``."""
    with CountingEmulator(workdir / "fleet-emulator", latency=settings.latency_ms / 1000) as emulator:
        say(f"fleet: {settings.fleet_tenants:,} new tenants of 100 rows, `fleet sync`")
        folder = workdir / "fleet"
        converged = fleet.converge(emulator, folder, tenants=settings.fleet_tenants, rows=100, timeout=1800)
        report.details["fleet.converge"] = converged.to_dict()
        _converge_figures(report, settings, converged)
        say(f"fleet: the same {settings.fleet_tenants:,} at rest under `fleet run`, {settings.idle_seconds:g} s")
        # settled past the minute after which idle tenants close: what a fleet at rest is most of the time
        rest = fleet.idle(emulator, folder, tenants=settings.fleet_tenants, seconds=settings.idle_seconds, settle=65)
        report.details["fleet.idle"] = rest.to_dict()
        _idle_figure(report, settings, rest)
        cold = min(99, max(1, settings.fleet_tenants - 1))  # the 99, fewer only for a tiny run
        busy = fleet.hot(emulator, workdir / "fleet-hot", seconds=settings.fleet_seconds, cold=cold, progress=say)
        report.details["fleet.hot"] = busy.to_dict()
        _hot_figures(report, settings, busy)
        each = min(20, settings.fleet_tenants)
        for headers in (True, False):
            shared = fleet.two(
                emulator, workdir, seconds=settings.fleet_seconds, tenants=each, headers=headers, progress=say
            )
            report.details["fleet.two" if headers else "fleet.two_bare"] = shared.to_dict()
            _two_figures(report, settings, shared)
