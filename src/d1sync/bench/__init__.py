"""``d1sync bench``: the figures users judge d1sync by, measured side by side on the emulator over a socket.

Eight benchmarks, each reporting its figures with the conditions that produced them (see ``docs/benchmarks.md``):

1. :mod:`~d1sync.bench.drain`: drain rate of a backlog for (a) one request per row, (b) multi-row ``VALUES``
   batches and (c) d1sync's planner, under the same latency and rate limit;
2. :mod:`~d1sync.bench.capture`: what capture triggers cost the writer;
3. :mod:`~d1sync.bench.latency`: commit-to-visibility latency with an idle worker;
4. to 6. :mod:`~d1sync.bench.process`: the CPU of an idle ``d1sync run``, peak RSS of ``d1sync sync`` and
   recovery after ``kill -9``;
7. :mod:`~d1sync.bench.tasks`: task-queue claims and completions per second, one at a time and in batches;
8. :mod:`~d1sync.bench.budget`: the request budget: requests per million rows at a fixed and an adaptive size.

Example::

    from d1sync.bench import QUICK, run_bench
    report = run_bench(QUICK)
    report.figure("drain.d1sync.rows_per_second").value
    report.write_json("bench-results.json")

The settings (:mod:`~d1sync.bench.settings`) import nothing heavy; the runner loads the emulator server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from d1sync.bench.settings import BENCHMARKS, QUICK, BenchSettings

if TYPE_CHECKING:
    from d1sync.bench.report import Figure, Report, machine_info
    from d1sync.bench.runner import run_bench

__all__ = ["BENCHMARKS", "QUICK", "BenchSettings", "Figure", "Report", "machine_info", "run_bench"]

_LAZY = {"Figure": "report", "Report": "report", "machine_info": "report", "run_bench": "runner"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"d1sync.bench.{module}"), name)
