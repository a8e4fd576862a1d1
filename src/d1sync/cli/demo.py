"""``d1sync demo``: the main job end to end on the embedded emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from d1sync.demo import DemoConfig, run_demo

from ._common import EXIT_USAGE, Command, console, err_console, fail

__all__ = ["demo"]


@click.command(cls=Command)
@click.option(
    "--rows",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Messages to write (plus executions, sessions).",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.03,
    show_default=True,
    help="Share of requests answered with a 5xx.",
)
@click.option(
    "--rate-limit-rate",
    type=click.FloatRange(0, 1),
    default=0.03,
    show_default=True,
    help="Share answered 429 with retry-after.",
)
@click.option(
    "--timeout-rate",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Share that never answers in time.",
)
@click.option(
    "--html-rate",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="Share answered with an HTML 504 page.",
)
@click.option(
    "--lost-rate",
    type=click.FloatRange(0, 1),
    default=0.03,
    show_default=True,
    help="Share applied, then the response lost.",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the writer and of the faults.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help="Keep files here.")
def demo(
    rows: int,
    error_rate: float,
    rate_limit_rate: float,
    timeout_rate: float,
    html_rate: float,
    lost_rate: float,
    seed: int,
    directory: Path | None,
) -> None:
    """Write an agent daemon's state locally while syncing it to the emulator under faults.

    At the end it proves that the remote equals the local file. Runs offline on the embedded emulator: no
    credentials, no network.
    """
    config = DemoConfig(rows, error_rate, rate_limit_rate, timeout_rate, html_rate, lost_rate, seed, directory)
    total = error_rate + rate_limit_rate + timeout_rate + html_rate + lost_rate
    if total > 1:
        fail(f"the fault rates add up to {total:g}; at most 1", "lower some of the --*-rate options", EXIT_USAGE)
    console.print(
        f"[bold]d1sync demo[/bold]: {rows:,} messages (+ executions, sessions) written in small transactions "
        "while syncing to the embedded emulator under injected faults"
    )
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TextColumn("{task.fields[info]}"),
        TextColumn("{task.fields[elapsed]:.1f}s"),  # the demo's own clock, the one its summary reports
    ]
    with Progress(*columns, console=err_console) as progress:
        written = progress.add_task("written", total=rows, info="", elapsed=0.0)
        synced = progress.add_task("synced ", total=rows, info="rows of all three tables", elapsed=0.0)

        def tick(state: dict[str, Any]) -> None:
            progress.update(written, completed=state["written"], info="", elapsed=state["elapsed"])
            # Rows of every table, as the summary counts them: sent so far, out of sent plus still pending.
            progress.update(
                synced,
                completed=state["sent"],
                total=max(state["sent"] + state["pending"], 1),
                info=f"{state['requests']} requests, {state['retries']} retries",
                elapsed=state["elapsed"],
            )

        report = run_demo(config, on_tick=tick)
        done = f"{report.requests} requests, {report.retries} retries"
        progress.update(synced, completed=report.rows_sent, total=report.rows_sent, info=done, elapsed=report.seconds)
        progress.update(written, completed=rows, elapsed=report.seconds)

    console.print(
        f"applied {report.migrations} migration file(s) to the local file and to the emulator, with one Migrator"
    )
    faults = {k: int(v) for k, v in report.faults.items() if k not in ("latency_seconds",) and v}
    console.print(
        f"wrote {report.rows_written:,} messages in {report.transactions:,} transactions; synced "
        f"{report.rows_sent:,} rows in {report.requests:,} requests "
        f"({report.rows_sent / max(report.requests, 1):,.0f} rows/request) in {report.seconds:.1f}s "
        f"= {report.rows_sent / max(report.seconds, 1e-6):,.0f} rows/s"
    )
    console.print("emulator saw: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(faults.items())))
    console.print(f"the worker retried {report.retries} time(s); nothing was acknowledged that D1 did not apply")
    table = Table("table", "local rows", "remote rows", "local sha256", "remote sha256", "equal")
    for name, sides in report.tables.items():
        (lc, lh), (rc, rh) = sides["local"], sides["remote"]
        table.add_row(name, f"{lc:,}", f"{rc:,}", lh, rh, "[green]yes[/green]" if (lc, lh) == (rc, rh) else "[red]NO")
    console.print(table)
    if report.verify is not None:
        v = report.verify
        differences = sum(t.missing + t.extra + t.different for t in v.tables)
        console.print(
            f"d1sync verify: {v.rows:,} rows compared value by value (types included) in {v.requests:,} requests: "
            f"{differences} missing, extra or different"
        )
    if not report.equal:
        fail("remote differs from local", "this is a bug: please report it with the output above")
    console.print("[bold green]remote equals local[/bold green]: every write arrived exactly once, in order")
