"""Where a drain's time goes: the client's CPU per row by stage, and a drain's timeline against the emulator.

Two measurements of the same backlog of bench rows (``d1sync.bench.data``, 8 columns with a BLOB):

1. **Stages**, against a target whose cost is near zero: a real ``D1Client`` whose HTTP transport answers every
   batch with a success envelope at once (it only reads the statement count from the body). Each stage of the
   worker is wrapped with a ``time.perf_counter()`` accumulator: reading the window (the change-log query and
   everything else in its snapshot), coalescing, reading the current rows, ``encode_row``, planning, the
   request (JSON body, HTTP client, response parsing) and acknowledging; once with reading ahead off (the
   stages run one after another on one thread), once on (the request goes from a helper thread while the
   next window is read). The per-call wrapper of ``encode_row`` adds ~0.2 µs a row. The time the cyclic
   garbage collector takes (``gc.callbacks``) is shown apart: it runs inside whichever stage allocates.
2. **Timeline**, against the emulator in a process of its own at the given latency and rate limit, as
   ``d1sync bench`` runs drain (c): wall time, the client's CPU (``time.process_time()``), and per request the
   time from sending to the answer, with reading ahead on and off.

Rounds are interleaved (off, on, off, on, ...) and the medians printed: this machine's noise is tens of
percent between runs.

.venv/bin/python benchmarks/drain_profile.py --rows 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from d1sync.bench.data import CREATE_TABLE, make_backlog
from d1sync.bench.remote import BenchEmulator, compare_with_remote, pacing_limiter
from d1sync.client import D1Client
from d1sync.sync import SyncConfig, SyncWorker
from d1sync.sync.push import pusher as pusher_module
from d1sync.sync.push import readahead as ahead
from d1sync.sync.push import sender as delivery
from d1sync.sync.push import window as changes

Spent = dict[str, float]


def _timed(spent: Spent, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return wrapper


@contextmanager
def stages_timed(spent: Spent) -> Iterator[None]:
    """Wrap each stage of the worker (module attributes, restored after)."""
    wrapped = [
        (pusher_module, "read_window", "window"),
        (ahead, "read_window", "window"),  # the windows read ahead
        (changes, "_coalesce", "coalesce"),
        (changes, "_current_rows", "current rows"),
        (changes, "encode_row", "encode"),
        (pusher_module, "plan", "plan"),
        (ahead, "plan", "plan"),
        (delivery, "acknowledge", "acknowledge"),
    ]
    saved = [(module, attribute, getattr(module, attribute)) for module, attribute, _ in wrapped]
    for module, attribute, name in wrapped:
        setattr(module, attribute, _timed(spent, name, getattr(module, attribute)))
    try:
        yield
    finally:
        for module, attribute, original in saved:
            setattr(module, attribute, original)


def _answer_at_once(spent: Spent) -> httpx.MockTransport:
    """A D1 that applies no batch: one success result per statement (the time it takes is counted apart)."""

    schema = sqlite3.connect(":memory:")
    schema.execute(CREATE_TABLE)
    meta = {"changes": 0, "duration": 0, "last_row_id": 0, "changed_db": False, "size_after": 0}

    def handle(request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        body = json.loads(request.content)
        if "batch" in body:
            result = [{"results": [], "success": True, "meta": meta}] * len(body["batch"])
        else:  # the schema check: answered from the bench table's schema
            cursor = schema.execute(body["sql"], body.get("params", []))
            names = [d[0] for d in cursor.description or ()]
            found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            result = [{"results": found, "success": True, "meta": meta}]
        response = httpx.Response(200, json={"success": True, "errors": [], "messages": [], "result": result})
        spent["fake D1"] += time.perf_counter() - started
        return response

    return httpx.MockTransport(handle)


def _drain(worker: SyncWorker) -> None:
    while True:
        result = worker.sync_once()
        if result.state in ("paused", "backoff", "locked"):
            raise SystemExit(f"the drain stopped: {result.state}: {result.error}")
        if not result.more and worker.pending() == 0:
            return


STAGES = [
    "reading the change-log window (query, snapshot, specs)",
    "coalescing per key",
    "reading the current rows",
    "encoding rows (encode_row)",
    "planning (statements packed into requests)",
    "the request: JSON body, HTTP client, response",
    "acknowledging (deleting the sent change rows)",
]


@contextmanager
def collector_timed(spent: Spent) -> Iterator[None]:
    """Time the cyclic garbage collector's passes (``gc.callbacks``), which run inside whichever stage
    allocates when they fall due."""
    started: list[float] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            spent["gc"] += time.perf_counter() - started[0]

    gc.callbacks.append(note)
    try:
        yield
    finally:
        gc.callbacks.remove(note)


def profile_stages(template: Path, workdir: Path, rows: int, read_ahead: bool) -> dict[str, float]:
    """One drain into a D1 that applies no batch: µs per row by stage (see the module docstring)."""
    path = workdir / f"stages-{read_ahead}.db"
    shutil.copyfile(template, path)
    spent: Spent = defaultdict(float)
    client = D1Client(
        account_id="profile", database_id="profile", api_token="profile", transport=_answer_at_once(spent)
    )
    client.rate_limiter = None
    request_time = _timed(spent, "request", client.batch)
    client.batch = request_time  # type: ignore[method-assign]
    with client, SyncWorker(path, client, config=SyncConfig(read_ahead=read_ahead)) as worker:
        with stages_timed(spent), collector_timed(spent):
            cpu, wall = time.process_time(), time.perf_counter()
            _drain(worker)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    per_row = {name: seconds / rows * 1e6 for name, seconds in spent.items()}
    inner = per_row["coalesce"] + per_row["current rows"] + per_row["encode"]
    values = [
        per_row["window"] - inner,
        per_row["coalesce"],
        per_row["current rows"],
        per_row["encode"],
        per_row["plan"],
        per_row["request"] - per_row["fake D1"],
        per_row["acknowledge"],
    ]
    result = dict(zip(STAGES, values, strict=True))
    result["the stages"] = sum(values)
    result["of which the garbage collector"] = per_row.get("gc", 0.0)
    result["the whole drain's CPU"] = cpu / rows * 1e6 - per_row["fake D1"]
    return result


def timeline(
    template: Path, workdir: Path, rows: int, latency_ms: float, rate: float, read_ahead: bool
) -> dict[str, float]:
    """One drain into the emulator in its own process, as ``d1sync bench`` runs (c)."""
    path = workdir / f"timeline-{read_ahead}.db"
    shutil.copyfile(template, path)
    with BenchEmulator(workdir / f"emulator-{read_ahead}", latency=latency_ms / 1000, own_process=True) as emulator:
        database_id = emulator.fresh_database("profile")
        client = emulator.client(database_id, rate_limiter=pacing_limiter(rate))
        answered: list[float] = []
        batch = client.batch

        def timed_batch(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return batch(*args, **kwargs)
            finally:
                answered.append(time.perf_counter() - started)

        client.batch = timed_batch  # type: ignore[method-assign]
        with client, SyncWorker(path, client, config=SyncConfig(read_ahead=read_ahead)) as worker:
            cpu, wall = time.process_time(), time.perf_counter()
            _drain(worker)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            requests = worker.counters.requests
        count, different = compare_with_remote(path, emulator.database_path(database_id))
    if count != rows or different:
        raise SystemExit(f"REMOTE MISMATCH: {count:,} rows on the remote, {different:,} differ")
    return {
        "wall": wall,
        "cpu": cpu,
        "requests": requests,
        "request p50": statistics.median(answered) * 1000,
    }


def _median(runs: list[dict[str, float]], name: str) -> float:
    return statistics.median(run[name] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="backlog size (default 200,000: the bench's)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulator round-trip latency (default 50)")
    parser.add_argument("--rate-limit", type=float, default=4.0, help="requests per second (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are printed (default 3)")
    args = parser.parse_args()
    modes = (False, True)
    with tempfile.TemporaryDirectory(prefix="d1sync-profile-") as tmp:
        workdir = Path(tmp)
        template = make_backlog(workdir / "template.db", args.rows)
        stages: dict[bool, list[dict[str, float]]] = {mode: [] for mode in modes}
        drains: dict[bool, list[dict[str, float]]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode in modes:
                stages[mode].append(profile_stages(template, workdir, args.rows, mode))
        for round_ in range(args.rounds):
            for mode in modes:
                here = workdir / f"round-{round_}"
                here.mkdir(exist_ok=True)
                drains[mode].append(timeline(template, here, args.rows, args.latency_ms, args.rate_limit, mode))
    print(f"\nStages: {args.rows:,} rows into a D1 that applies no batch; medians of {args.rounds} interleaved rounds")
    print("| stage | µs per row, reading ahead off | on |\n|---|---|---|")
    for name in [*STAGES, "the stages", "of which the garbage collector", "the whole drain's CPU"]:
        print(f"| {name} | {_median(stages[False], name):.1f} | {_median(stages[True], name):.1f} |")
    print(
        f"\nTimeline: {args.rows:,} rows into the emulator (own process), {args.latency_ms:g} ms latency, "
        f"{args.rate_limit:g} req/s; medians of {args.rounds} interleaved rounds; every remote equal to local"
    )
    print("| read ahead | wall | client CPU | requests | request p50 (send to answer) |\n|---|---|---|---|---|")
    for mode in modes:
        cpu = _median(drains[mode], "cpu")
        print(
            f"| {'on' if mode else 'off'} | {_median(drains[mode], 'wall'):.2f} s | {cpu:.2f} s "
            f"({cpu / args.rows * 1e6:.1f} µs/row) | {_median(drains[mode], 'requests'):.0f} | "
            f"{_median(drains[mode], 'request p50'):.0f} ms |"
        )


if __name__ == "__main__":
    main()
