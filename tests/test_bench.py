"""`d1sync bench` keeps working: a tiny run through the CLI writes every figure with its conditions.

Benchmarks are not tests: nothing here asserts a speed. What is asserted is that each benchmark ran, that
every figure carries the conditions that produced it, and that the remote holds exactly the local rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from d1sync.bench import QUICK, BenchSettings
from d1sync.cli import cli

TINY = [
    "--rows", "300",
    "--budget", "1",
    "--latency-ms", "5",
    "--rate-limit", "20",
    "--capture-transactions", "50",
    "--latency-samples", "5",
    "--idle-seconds", "1",
    "--memory-rows", "500",
    "--recovery-rows", "100000",  # several requests: the kill lands mid-drain however slow the poller
    "--budget-rows", "3000",
    *("--only", "drain", "--only", "capture", "--only", "latency", "--only", "idle"),
    *("--only", "memory", "--only", "recovery", "--only", "tasks", "--only", "budget"),
]  # fmt: skip
"""Every benchmark but the fleet's (its own test below is in the slow suite)."""

EXPECTED_FIGURES = {
    "drain.one_row.rows_per_second",
    "drain.multi_values.rows_per_second",
    "drain.d1sync.rows_per_second",
    "drain.d1sync_import.rows_per_second",
    "drain.ratio.d1sync_vs_one_row",
    "drain.ratio.d1sync_vs_multi_values",
    "capture.messages.single-row.tracked_rows_per_second",
    "capture.messages.single-row.untracked_rows_per_second",
    "capture.messages.single-row.ratio",
    "capture.messages.100-row.tracked_rows_per_second",
    "capture.messages.100-row.untracked_rows_per_second",
    "capture.messages.100-row.ratio",
    "capture.bench.single-row.tracked_rows_per_second",
    "capture.bench.single-row.untracked_rows_per_second",
    "capture.bench.single-row.ratio",
    "capture.bench.100-row.tracked_rows_per_second",
    "capture.bench.100-row.untracked_rows_per_second",
    "capture.bench.100-row.ratio",
    "latency.p50_ms",
    "latency.p95_ms",
    "latency.p99_ms",
    "idle.cpu_percent",
    "memory.peak_rss_mb",
    "memory.import.peak_rss_mb",
    "recovery.seconds_to_first_ack",
    *(f"tasks.file.{mode}.tasks_per_second" for mode in ("claim", "batched")),
    *(f"tasks.emulator.{mode}.tasks_per_second" for mode in ("claim", "claim_many", "batched")),
    "tasks.file.ratio.batched_vs_claim",
    "tasks.emulator.ratio.claim_many_vs_claim",
    "tasks.emulator.ratio.batched_vs_claim",
    *(
        f"budget.{path}.{figure}"
        for path in ("fixed", "adaptive", "import", "adaptive_d1")
        for figure in ("requests_per_million_rows", "rows_per_request", "budget_seconds_per_million_rows", "seconds")
    ),
}


def test_tiny_bench_writes_every_figure_with_its_conditions_and_the_machine(tmp_path: Path) -> None:
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    result = CliRunner().invoke(
        cli, ["bench", *TINY, "--json", str(out), "--markdown", str(md), "--workdir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["errors"] == {}
    assert {f["key"] for f in data["figures"]} == EXPECTED_FIGURES
    for figure in data["figures"]:
        assert figure["conditions"], f"{figure['key']} has no conditions"
        assert figure["unit"] and figure["summary"], figure["key"]
        assert isinstance(figure["value"], int | float) and figure["value"] >= 0, figure["key"]
    drain = [f for f in data["figures"] if f["key"].startswith("drain.") and "ratio" not in f["key"]]
    for figure in drain:
        assert figure["conditions"]["emulator_latency_ms"] == 5
        assert figure["conditions"]["backlog_rows"] == 300
        assert "20 req/s" in figure["conditions"]["rate_limit"]
        for measured in ("rows_per_request", "requests", "bytes_sent", "rows"):
            assert measured in figure["measured"], (figure["key"], measured)
    assert all(d["verified"] for d in data["details"]["drain"]), data["details"]["drain"]
    for memory in ("memory", "memory_import"):
        assert data["details"][memory]["verified"] and data["details"][memory]["rows"] == 500
    recovery = data["details"]["recovery"]
    # Killed mid-drain, restarted, drained: nothing lost, nothing different.
    assert recovery["verified"] and 0 < recovery["acknowledged_before_kill"] < 100_000
    # Every task the queue benchmark completed is done exactly once, in one attempt.
    assert all(d["exact"] and d["tasks"] > 0 for d in data["details"]["tasks"]), data["details"]["tasks"]
    assert all(d["drained"] for d in data["details"]["tasks"] if d["board"] == "file")
    # Both request sizes drained the same backlog exactly; every request counts, refused ones included.
    budget = data["details"]["budget"]
    assert [d["path"] for d in budget] == ["fixed", "adaptive", "import", "adaptive_d1"], budget
    assert all(d["verified"] for d in budget), budget
    idle = data["details"]["idle"]  # the run sent its backlog, then was watched doing nothing
    assert idle["verified"] and idle["seconds"] >= 1 and 0 <= idle["cpu_percent"] <= 100 * data["machine"]["cpu_count"]
    latency = next(f for f in data["figures"] if f["key"] == "latency.p99_ms")
    assert latency["conditions"]["samples"] == 5
    assert {"cpu_count", "python", "sqlite", "platform"} <= set(data["machine"])
    assert data["command"].startswith("d1sync bench --rows 300")
    assert "| figure | value | conditions |" in md.read_text()
    assert "drain (c) d1sync planner" in result.output
    assert not list(tmp_path.glob("d1sync-bench-*")), "temporary files were left behind"


def test_the_recorded_command_reproduces_the_settings() -> None:
    assert QUICK.command == "d1sync bench --quick"
    assert BenchSettings().command == "d1sync bench"
    custom = BenchSettings(rows=5_000, latency_ms=100.0, benchmarks=("drain",))
    assert custom.command == "d1sync bench --rows 5000 --latency-ms 100 --only drain"


FLEET_FIGURES = {
    "fleet.converge.requests_per_tenant",
    "fleet.converge.seconds",
    "fleet.converge.peak_rss_mb",
    "fleet.idle.cpu_percent",
    *(f"fleet.hot.{who}_{p}_s" for who in ("cold", "hot", "alone") for p in ("p50", "p95")),
    "fleet.hot.hot_rows_per_second",
    *(f"fleet.{two}.{figure}" for two in ("two", "two_bare") for figure in ("share_429_percent", "throughput_ratio")),
}


@pytest.mark.slow
def test_tiny_fleet_bench_measures_real_fleet_children_and_checks_their_databases(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--only", "fleet", "--fleet-tenants", "6", "--fleet-seconds", "4", "--idle-seconds", "2"]
    args += ["--latency-ms", "5", "--json", str(out), "--workdir", str(tmp_path)]
    result = CliRunner().invoke(cli, ["bench", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["errors"] == {} and {f["key"] for f in data["figures"]} == FLEET_FIGURES
    for figure in data["figures"]:
        assert figure["conditions"] and figure["unit"] and figure["summary"], figure["key"]
    converge = data["details"]["fleet.converge"]
    # exactly one database per tenant, each holding its file's rows; every request counted by the emulator
    assert converge["databases"] == converge["converged"] == 6 and converge["by_kind"]["create"] == 6
    hot = data["details"]["fleet.hot"]
    assert hot["cold_tenants"] == 5 and hot["cold_arrived"] == hot["cold_rows"] > 0 and hot["hot_rows"] > 0
    assert hot["alone_rows"] > 0 and hot["alone_p95"] is not None
    for key, headers in (("fleet.two", True), ("fleet.two_bare", False)):
        two = data["details"][key]
        assert two["tenants_each"] == 6 and two["headers"] is headers
        assert all(r > 0 for r in two["rows"]) and all(n > 0 for n in two["requests"])
    assert (
        data["command"]
        == "d1sync bench --latency-ms 5 --idle-seconds 2 --fleet-tenants 6 --fleet-seconds 4 --only fleet"
    )


@pytest.mark.parametrize(
    "args",
    [["--rows", "0"], ["--budget", "0"], ["--latency-ms", "-1"], ["--idle-seconds", "0"], ["--fleet-seconds", "0"]],
)
def test_impossible_settings_fail_with_one_line_and_usage_exit_code(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", *args, "--json", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert "Error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.json").exists()
