"""``d1sync bench``: the figures users judge d1sync by, measured side by side on the emulator over a socket.

Five benchmarks, each reporting its figures with the conditions that produced them (see ``docs/benchmarks.md``):

1. :mod:`~d1sync.bench.drain`: drain rate of a backlog for (a) one request per row, (b) multi-row ``VALUES``
   batches and (c) d1sync's planner, under the same latency and rate limit;
2. :mod:`~d1sync.bench.capture`: what capture triggers cost the writer;
3. :mod:`~d1sync.bench.latency`: commit-to-visibility latency with an idle worker;
4. and 5. :mod:`~d1sync.bench.process`: peak RSS of ``d1sync sync`` and recovery after ``kill -9``.

Example::

    from d1sync.bench import QUICK, run_bench
    report = run_bench(QUICK)
    report.figure("drain.d1sync.rows_per_second").value
    report.write_json("bench-results.json")
"""

from __future__ import annotations

from d1sync.bench.report import Figure, Report, machine_info
from d1sync.bench.runner import BENCHMARKS, QUICK, BenchSettings, run_bench

__all__ = ["BENCHMARKS", "QUICK", "BenchSettings", "Figure", "Report", "machine_info", "run_bench"]
