"""Figures, the machine that produced them, and the report (a rich table and JSON)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from d1sync._version import __version__

__all__ = ["Figure", "Report", "machine_info"]


@dataclass
class Figure:
    """One measured figure: its value and unit, the conditions that produced it, and what else was measured.

    ``key`` is stable (``drain.d1sync.rows_per_second``) so scripts can pick figures out of the JSON.
    """

    key: str
    name: str
    value: float
    unit: str
    conditions: dict[str, Any]
    measured: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    """A short line for the table's conditions column."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: core count, CPU, OS, Python, SQLite, d1sync."""
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(affinity(0)) if affinity else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "d1sync": __version__,
    }


@dataclass
class Report:
    """Everything one ``d1sync bench`` run produced."""

    command: str
    settings: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=machine_info)
    started_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def figure(self, key: str) -> Figure:
        for figure in self.figures:
            if figure.key == key:
                return figure
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 1),
            "machine": self.machine,
            "settings": self.settings,
            "figures": [f.to_dict() for f in self.figures],
            "details": self.details,
            "errors": self.errors,
            "notes": self.notes,
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return target

    def markdown(self) -> str:
        """The figures as a Markdown table (what the README shows), with the command and the machine."""
        m = self.machine
        lines = [
            f"`{self.command}` on {m['cpu_count']} cores ({m.get('cpu_model') or 'unknown CPU'}), "
            f"Python {m['python']}, SQLite {m['sqlite']}, {self.started_at}",
            "",
            "| figure | value | conditions |",
            "|---|---|---|",
        ]
        for figure in self.figures:
            lines.append(f"| {figure.name} | {format_value(figure.value, figure.unit)} | {figure.summary} |")
        return "\n".join(lines) + "\n"


def format_value(value: float, unit: str) -> str:
    if unit == "x":
        # Two decimals below 10x: a goal such as 0.85x must be readable from the table.
        if value < 10:
            return f"{value:.2f}x"
        return f"{value:,.1f}x" if value < 100 else f"{value:,.0f}x"
    if unit in ("rows/s", "tasks/s", "bytes"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    return f"{value:,.3g} {unit}"
