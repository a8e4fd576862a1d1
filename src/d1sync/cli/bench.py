"""``d1sync bench``: run the benchmarks, print the figures as a table and write them as JSON."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from d1sync.bench.settings import BENCHMARKS, QUICK, BenchSettings

from ._common import EXIT_USAGE, Command, console, err_console, fail

if TYPE_CHECKING:
    from d1sync.bench.report import Report

__all__ = ["bench"]


def _render(report: Report, json_path: Path | None) -> None:
    from d1sync.bench.report import format_value

    m = report.machine
    console.print(
        f"[bold]d1sync bench[/bold]  {m['cpu_count']} cores ({m.get('cpu_model') or 'unknown CPU'}), "
        f"Python {m['python']}, SQLite {m['sqlite']}, d1sync {m['d1sync']}, {report.started_at}"
    )
    console.print(f"[dim]command: {report.command}[/dim]")
    table = Table(show_header=True, header_style="bold", show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("conditions", overflow="fold")
    for figure in report.figures:
        table.add_row(figure.name, format_value(figure.value, figure.unit), figure.summary)
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    for name, error in report.errors.items():
        console.print(f"[red]{name} failed:[/red] {error}")
    done = f"{report.seconds:,.0f} s"
    console.print(f"[dim]finished in {done}" + (f"; JSON written to {json_path}" if json_path else "") + "[/dim]")


@click.command(cls=Command)
@click.option("--quick", is_flag=True, help="Small sizes and short budgets (what `make bench` runs, < 3 minutes).")
@click.option("--rows", type=int, help=f"Backlog rows per drain strategy [default: {BenchSettings.rows:,}].")
@click.option(
    "--latency-ms", type=float, help=f"Round-trip latency the emulator adds [default: {BenchSettings.latency_ms:g}]."
)
@click.option(
    "--rate-limit",
    type=float,
    help=f"Requests per second for the drain and task benchmarks; 0 = none [default: {BenchSettings.rate_limit:g}].",
)
@click.option(
    "--budget", type=float, help=f"Seconds per drain strategy and task-queue mode [default: {BenchSettings.budget:g}]."
)
@click.option(
    "--capture-transactions",
    type=int,
    help=f"Single-row transactions per table (100-row: a tenth) [default: {BenchSettings.capture_transactions:,}].",
)
@click.option(
    "--latency-samples", type=int, help=f"Commits timed [default: {BenchSettings.latency_samples}; 200 with --quick]."
)
@click.option(
    "--idle-seconds",
    type=float,
    help=f"Seconds an idle `d1sync run` is watched [default: {BenchSettings.idle_seconds:g}; 10 with --quick].",
)
@click.option("--memory-rows", type=int, help=f"Backlog for the memory run [default: {BenchSettings.memory_rows:,}].")
@click.option(
    "--recovery-rows", type=int, help=f"Backlog for the kill -9 run [default: {BenchSettings.recovery_rows:,}]."
)
@click.option(
    "--budget-rows",
    type=int,
    help=f"Backlog for the request-budget run (fixed vs adaptive size) [default: {BenchSettings.budget_rows:,}].",
)
@click.option(
    "--fleet-tenants",
    type=int,
    help=f"Tenant files of the fleet benchmark [default: {BenchSettings.fleet_tenants:,}; 200 with --quick].",
)
@click.option(
    "--fleet-seconds",
    type=float,
    help="Seconds the fleet benchmark's writers run (hot tenant, two daemons) "
    f"[default: {BenchSettings.fleet_seconds:g}; 30 with --quick].",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice(BENCHMARKS),
    help="Run only this benchmark (repeatable); default: all.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench-results.json"),
    show_default=True,
    help="Write every figure, its conditions and the machine as JSON here.",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures as a Markdown table (the README's), with the command and the machine.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder for the temporary files (default: the system's temporary folder).",
)
def bench(
    quick: bool,
    rows: int | None,
    latency_ms: float | None,
    rate_limit: float | None,
    budget: float | None,
    capture_transactions: int | None,
    latency_samples: int | None,
    idle_seconds: float | None,
    memory_rows: int | None,
    recovery_rows: int | None,
    budget_rows: int | None,
    fleet_tenants: int | None,
    fleet_seconds: float | None,
    only: tuple[str, ...],
    json_path: Path,
    markdown_path: Path | None,
    workdir: Path | None,
) -> None:
    """Measure d1sync on the embedded emulator over a real loopback socket.

    It prints every figure with the conditions that produced them.

    \b
    1. drain rate of a backlog: (a) one request per row, (b) multi-row VALUES batches, (c) d1sync in
       batches, (d) d1sync through D1's import
    2. capture overhead: writes into a tracked vs an untracked table
    3. latency: commit to visible on the remote, p50/p95/p99
    4. idle: the CPU an idle `d1sync run` uses
    5. memory: peak RSS of `d1sync sync` draining a large backlog
    6. recovery: restart after kill -9 to the first acknowledged batch
    7. tasks: task-queue claims+completions per second, on a file and the emulator, with and without batches
    8. budget: requests per million rows, fixed request size vs adaptive, on an emulator with a low execution limit
    9. fleet: requests per tenant to converge 1,000 new tenants; CPU of `fleet run` at rest; commit-to-D1
    latency beside a hot tenant under 1,200/300 s; two daemons on one account budget (429s)

    Benchmarks measure, they assert nothing. Every figure is printed with the conditions that produced it.

    \b
    Examples:
      d1sync bench --quick
      d1sync bench --only drain --rows 50000 --latency-ms 100 --rate-limit 4
      d1sync bench --only fleet
    """
    base = QUICK if quick else BenchSettings()
    chosen: dict[str, Any] = {
        "rows": rows,
        "latency_ms": latency_ms,
        "rate_limit": rate_limit,
        "budget": budget,
        "capture_transactions": capture_transactions,
        "latency_samples": latency_samples,
        "idle_seconds": idle_seconds,
        "memory_rows": memory_rows,
        "recovery_rows": recovery_rows,
        "budget_rows": budget_rows,
        "fleet_tenants": fleet_tenants,
        "fleet_seconds": fleet_seconds,
    }
    overrides = {k: v for k, v in chosen.items() if v is not None}
    if only:
        overrides["benchmarks"] = tuple(b for b in BENCHMARKS if b in only)
    try:
        settings = dataclasses.replace(base, **overrides)
    except ValueError as exc:
        fail(str(exc), "see `d1sync bench --help`", exit_code=EXIT_USAGE)
    from d1sync.bench.runner import run_bench

    report = run_bench(settings, workdir=workdir, progress=lambda line: err_console.print(f"[dim]{line}[/dim]"))
    report.write_json(json_path)
    if markdown_path is not None:
        markdown_path.write_text(report.markdown(), encoding="utf-8")
    _render(report, json_path)
    if report.errors:
        fail(f"{len(report.errors)} benchmark(s) failed: {', '.join(report.errors)}", "see the messages above")
