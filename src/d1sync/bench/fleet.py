"""The fleet benchmarks (``d1sync bench --only fleet``), each a real ``d1sync fleet`` child process:

1. convergence: N new tenant files of 100 rows, ``fleet sync`` with a high rate limit: requests per tenant
   (create + schema + rows), wall time, peak RSS;
2. at rest: the same N tenants under ``fleet run`` with nothing to send: its CPU, from ``/proc``;
3. a hot tenant: ``fleet run`` under 1,200/300 s, one tenant writing 1,000 rows/s beside 99 writing a row
   every 2 s: commit-to-D1 latency of each row (the database stamps its arrival), the hot tenant's rows/s;
4. two daemons on one account budget (the emulator enforces it and answers ``x-ratelimit-*``): 429s, and
   each daemon's rows/s.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from d1sync.bench.fleet_env import CountingEmulator, FleetChild, arrivals, fleet_command, make_tenants, stamp_arrivals
from d1sync.bench.process import SyncProcess, _cpu_seconds
from d1sync.errors import D1SyncError
from d1sync.sqlite import connect

__all__ = ["ConvergeOutcome", "HotOutcome", "IdleFleetOutcome", "TwoOutcome", "converge", "hot", "idle", "two"]

Progress = Callable[[str], None]
FAST = ("--rate-limit", "1000000/1")
"""A rate limit that never binds: convergence is counted in requests, not paced."""


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


@dataclass
class ConvergeOutcome:
    tenants: int
    rows_per_tenant: int
    seconds: float
    peak_rss_bytes: int
    requests: int
    by_kind: dict[str, int]
    databases: int
    converged: int

    @property
    def requests_per_tenant(self) -> float:
        """Creates, schema and rows: every request but the listing of sizes that ends ``fleet sync``."""
        return (self.requests - self.by_kind.get("list", 0)) / self.tenants

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_tenant": self.requests_per_tenant}


def converge(emulator: CountingEmulator, folder: Path, *, tenants: int, rows: int, timeout: float) -> ConvergeOutcome:
    """``fleet sync`` of ``tenants`` new files of ``rows`` rows: the requests it took, its time and memory."""
    make_tenants(folder, tenants, rows)
    before = dict(emulator.counts)
    command = fleet_command("sync", folder, emulator, *FAST, "--timeout", f"{timeout:g}")
    log = folder.parent / "fleet-converge.log"
    child = SyncProcess(command, emulator.token, log, rss_file=log.with_suffix(".rss"))
    started = time.perf_counter()
    try:
        code = child.wait(timeout + 60)
    finally:
        child.close()
    seconds = time.perf_counter() - started
    if code != 0:
        raise D1SyncError(f"`d1sync fleet sync` exited with {code}: {child.stderr_tail()}")
    counts = {k: v - before.get(k, 0) for k, v in emulator.counts.items()}
    ids = emulator.databases()
    names = [p.stem for p in sorted(folder.glob("*.db"))]
    converged = sum(1 for n in names if n in ids and emulator.rows(ids[n]) == rows)
    by_kind = {k.removeprefix("kind:"): v for k, v in counts.items() if k.startswith("kind:") and v}
    databases = sum(1 for n in ids if n in set(names))
    assert child.max_rss is not None
    return ConvergeOutcome(
        tenants, rows, seconds, child.max_rss, counts.get("requests", 0), by_kind, databases, converged
    )


@dataclass
class IdleFleetOutcome:
    tenants: int
    seconds: float
    cpu_seconds: float
    settle_seconds: float
    requests: int

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_percent": self.cpu_percent}


def idle(emulator: CountingEmulator, folder: Path, *, tenants: int, seconds: float, settle: float) -> IdleFleetOutcome:
    """The CPU of ``fleet run`` over ``seconds`` with ``tenants`` converged tenants and nothing to send."""
    daemon = FleetChild(folder, emulator, folder.parent / "fleet-idle.log")
    try:
        daemon.wait_settled(tenants, timeout=900)
        time.sleep(settle)
        requests, cpu, started = emulator.counts["requests"], _cpu_seconds(daemon.pid), time.perf_counter()
        time.sleep(seconds)
        cpu, watched = _cpu_seconds(daemon.pid) - cpu, time.perf_counter() - started
        if daemon.child.poll():
            raise D1SyncError(f"`d1sync fleet run` exited while idle: {daemon.child.stderr_tail()}")
    finally:
        daemon.close()
    return IdleFleetOutcome(tenants, watched, cpu, settle, emulator.counts["requests"] - requests)


class _Writers:
    """Threads that write notes into tenant files and note each commit's time (wall clock, as D1's stamps)."""

    def __init__(self) -> None:
        self.commits: dict[str, dict[int, float]] = {}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def every(self, interval: float, paths: list[Path], rows: int, first_id: int = 1_000_000) -> None:
        """Every ``interval`` s, ``rows`` notes in one transaction into the next of ``paths`` (round robin)."""

        def loop() -> None:
            conns = {p: connect(p) for p in paths}
            try:
                next_id, turn, due = first_id, 0, time.monotonic()
                while not self.stop.is_set():
                    path = paths[turn % len(paths)]
                    conn = conns[path]
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(
                        "INSERT INTO notes (id, body, n) VALUES (?, ?, ?)",
                        [(next_id + i, "x" * 100, turn) for i in range(rows)],
                    )
                    conn.execute("COMMIT")
                    at = time.time()
                    self.commits.setdefault(path.stem, {}).update((next_id + i, at) for i in range(rows))
                    next_id, turn, due = next_id + rows, turn + 1, due + interval
                    self.stop.wait(max(0.0, due - time.monotonic()))
            except BaseException as exc:  # reported by the benchmark, never lost in a thread
                self.errors.append(exc)
            finally:
                for conn in conns.values():
                    conn.close()

        self.threads.append(threading.Thread(target=loop, name="d1sync-bench-writer", daemon=True))

    def run(self, seconds: float) -> float:
        started = time.time()
        for thread in self.threads:
            thread.start()
        self.stop.wait(seconds)
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        if self.errors:
            raise D1SyncError(f"a benchmark writer failed: {self.errors[0]!r}")
        return started


@dataclass
class HotOutcome:
    seconds: float
    cold_tenants: int
    budget: str
    cold_rows: int
    cold_arrived: int
    cold_p50: float | None
    cold_p95: float | None
    hot_rows: int
    hot_arrived_in_window: int
    hot_p50: float | None
    hot_p95: float | None
    requests: int
    rate_limited: int
    drain_seconds: float
    alone_seconds: float
    """The second part: the hot tenant writes alone, the others idle."""
    alone_rows: int
    alone_p50: float | None
    alone_p95: float | None
    alone_rows_per_second: float
    hot_rows_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.hot_rows_per_second = self.hot_arrived_in_window / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _converge_quietly(emulator: CountingEmulator, folder: Path, log: Path) -> None:
    child = SyncProcess(fleet_command("sync", folder, emulator, *FAST, "--timeout", "600"), emulator.token, log)
    try:
        if child.wait(700) != 0:
            raise D1SyncError(f"`d1sync fleet sync` failed: {child.stderr_tail()}")
    finally:
        child.close()


def _latencies(emulator: CountingEmulator, ids: dict[str, str], commits: dict[str, dict[int, float]]) -> list[float]:
    out = []
    for stem, written in commits.items():
        landed = arrivals(emulator.path(ids[stem]))
        out += [landed[i] - at for i, at in written.items() if i in landed]
    return out


def _arrived(emulator: CountingEmulator, ids: dict[str, str], commits: dict[str, dict[int, float]]) -> int:
    return sum(len(arrivals(emulator.path(ids[stem])).keys() & written.keys()) for stem, written in commits.items())


def _phase(
    emulator: CountingEmulator, ids: dict[str, str], daemon: FleetChild, writers: _Writers, seconds: float
) -> tuple[float, float, float]:
    """Run ``writers`` for ``seconds``, then wait (two minutes at most) until their rows are in D1: when the
    writing started and stopped (wall clock), and how long the rest took to arrive."""
    started = writers.run(seconds)
    stopped = time.time()
    written = sum(len(v) for v in writers.commits.values())
    deadline = time.monotonic() + 120.0
    while _arrived(emulator, ids, writers.commits) < written:
        if time.monotonic() > deadline or daemon.child.poll():
            break
        time.sleep(1.0)
    return started, stopped, time.time() - stopped


def hot(
    emulator: CountingEmulator, folder: Path, *, seconds: float, cold: int = 99, progress: Progress | None = None
) -> HotOutcome:
    """One tenant writing 1,000 rows/s beside ``cold`` tenants writing a row every 2 s, ``fleet run`` under
    1,200/300 s (the emulator enforces it too): when each row became visible in D1. Then the hot tenant
    alone, the others idle, for half as long."""
    paths = make_tenants(folder, cold + 1, 10, prefix="h")
    _converge_quietly(emulator, folder, folder.parent / "fleet-hot-sync.log")
    ids = emulator.databases()
    for path in paths:
        stamp_arrivals(emulator.path(ids[path.stem]))
    emulator.rate_limit((1200, 300.0))
    before = dict(emulator.counts)
    daemon = FleetChild(folder, emulator, folder.parent / "fleet-hot.log")
    try:
        daemon.wait_settled(cold + 1, timeout=300)
        writers = _Writers()
        writers.every(0.1, paths[:1], 100)  # the hot tenant: 1,000 rows/s in 10 commits
        writers.every(2.0 / cold, paths[1:], 1)  # each cold tenant: a row every 2 s
        if progress:
            progress(f"fleet: one hot tenant and {cold} cold ones write for {seconds:g} s under 1200/300 s")
        started, stopped, drain = _phase(emulator, ids, daemon, writers, seconds)
        hot_stem, cold_commits = paths[0].stem, {k: v for k, v in writers.commits.items() if k != paths[0].stem}
        hot_ids = writers.commits.get(hot_stem, {})
        hot_landed = arrivals(emulator.path(ids[hot_stem]))
        in_window = sum(1 for i, at in hot_landed.items() if i in hot_ids and at <= stopped)
        cold_rows = sum(len(v) for v in cold_commits.values())
        if progress:
            progress(f"fleet: the hot tenant writes alone for {seconds / 2:g} s, the {cold} others idle")
        alone = _Writers()
        alone.every(0.1, paths[:1], 100, first_id=10_000_000)
        alone_started, alone_stopped, _ = _phase(emulator, ids, daemon, alone, seconds / 2)
        landed = arrivals(emulator.path(ids[hot_stem]))
        alone_ids = alone.commits.get(hot_stem, {})
        alone_in_window = sum(1 for i, at in landed.items() if i in alone_ids and at <= alone_stopped)
    finally:
        daemon.close()
    counts = {k: v - before.get(k, 0) for k, v in emulator.counts.items()}
    emulator.rate_limit(None)
    cold_lat = _latencies(emulator, ids, cold_commits)
    hot_lat = _latencies(emulator, ids, {hot_stem: hot_ids})
    alone_lat = _latencies(emulator, ids, alone.commits)
    return HotOutcome(
        seconds=stopped - started,
        cold_tenants=cold,
        budget="1200/300",
        cold_rows=cold_rows,
        cold_arrived=len(cold_lat),
        cold_p50=_percentile(cold_lat, 50),
        cold_p95=_percentile(cold_lat, 95),
        hot_rows=len(writers.commits.get(hot_stem, {})),
        hot_arrived_in_window=in_window,
        hot_p50=_percentile(hot_lat, 50),
        hot_p95=_percentile(hot_lat, 95),
        requests=counts.get("requests", 0),
        rate_limited=counts.get("429", 0),
        drain_seconds=drain,
        alone_seconds=alone_stopped - alone_started,
        alone_rows=len(alone_ids),
        alone_p50=_percentile(alone_lat, 50),
        alone_p95=_percentile(alone_lat, 95),
        alone_rows_per_second=alone_in_window / (alone_stopped - alone_started),
    )


@dataclass
class TwoOutcome:
    seconds: float
    budget: tuple[int, float]
    tenants_each: int
    requests: list[int]
    rows: list[int]
    rate_limited: int
    headers: bool = True

    @property
    def share_429(self) -> float:
        total = sum(self.requests)
        return self.rate_limited / total if total else 0.0

    @property
    def rows_per_second(self) -> list[float]:
        return [r / self.seconds for r in self.rows]

    @property
    def ratio(self) -> float | None:
        low, high = min(self.rows), max(self.rows)
        return high / low if low else None

    def to_dict(self) -> dict[str, Any]:
        extra = {"share_429": self.share_429, "rows_per_second": self.rows_per_second, "ratio": self.ratio}
        return {**asdict(self), **extra}


def two(
    emulator: CountingEmulator,
    root: Path,
    *,
    seconds: float,
    tenants: int = 20,
    budget: tuple[int, float] = (120, 30.0),
    headers: bool = True,
    progress: Progress | None = None,
) -> TwoOutcome:
    """Two ``fleet run`` daemons, each told the whole ``budget``, on one account that enforces it: their
    429s and their rows/s while every tenant always has rows to send. Without ``headers`` the answers carry
    no ``x-ratelimit-*`` count, so the daemons learn of each other only from 429s."""
    kind = "counted" if headers else "bare"
    folders = [root / f"fleet-two-{kind}-a", root / f"fleet-two-{kind}-b"]
    paths = [make_tenants(f, tenants, 10, prefix=f"{kind[0]}{f.name[-1]}") for f in folders]
    for folder in folders:
        _converge_quietly(emulator, folder, root / f"{folder.name}-sync.log")
    ids = emulator.databases()
    base = [sum(emulator.rows(ids[p.stem]) for p in group) for group in paths]
    emulator.rate_limit(budget, headers=headers)
    before = dict(emulator.counts)
    limit = f"{budget[0]}/{budget[1]:g}"
    daemons = [FleetChild(f, emulator, root / f"{f.name}.log", "--rate-limit", limit) for f in folders]
    try:
        writers = _Writers()
        for group in paths:
            writers.every(0.2 / tenants, group, 5)  # every tenant: 5 rows per 0.2 s, always more than the budget
        if progress:
            progress(f"fleet: two daemons share a {limit} s budget for {seconds:g} s")
        started = writers.run(seconds)
        watched = time.time() - started
        rows = [sum(emulator.rows(ids[p.stem]) for p in group) - b for group, b in zip(paths, base, strict=True)]
    finally:
        for daemon in daemons:
            daemon.close()
    counts = {k: v - before.get(k, 0) for k, v in emulator.counts.items()}
    emulator.rate_limit(None)
    requests = [sum(counts.get(f"db:{ids[p.stem]}", 0) for p in group) for group in paths]
    return TwoOutcome(watched, budget, tenants, requests, rows, counts.get("429", 0), headers)
