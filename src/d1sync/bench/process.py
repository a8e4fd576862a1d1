"""Benchmarks that run the real command in a child process: the CPU of an idle ``d1sync run``, and the peak
memory and crash recovery of ``d1sync sync``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from d1sync.bench.data import make_backlog
from d1sync.bench.remote import BenchEmulator, compare_with_remote
from d1sync.emulator import TOKEN_ENV
from d1sync.errors import D1SyncError
from d1sync.sync.store.log import LIVE

__all__ = [
    "IdleOutcome",
    "MemoryOutcome",
    "RecoveryOutcome",
    "SyncProcess",
    "run_idle",
    "run_memory",
    "run_recovery",
    "sync_command",
]

Clock = Callable[[], float]


def sync_command(
    db: Path, emulator: BenchEmulator, database_id: str, *, command: str = "sync", via: str | None = None
) -> list[str]:
    """``d1sync sync DB --emulator URL --database-id ID [--via VIA]`` (or ``run``), run by this interpreter (no
    PATH lookup)."""
    return [
        sys.executable,
        "-m",
        "d1sync.cli",
        command,
        os.fspath(db),
        "--emulator",
        emulator.url,
        "--database-id",
        database_id,
        *(("--via", via) if via else ()),
    ]


def _max_rss_bytes(max_rss: int) -> int:
    # ru_maxrss is in kibibytes on Linux and in bytes on macOS.
    return max_rss * (1 if sys.platform == "darwin" else 1024)


# Linux folds the pre-exec address space's high-water mark into a child's ru_maxrss, and a child spawned by
# this (large) process starts from a copy or share of ours: its ru_maxrss would report *our* peak. So the
# measured command is spawned by a bare interpreter (``-S``, a few MB) that reports the grandchild's peak.
_LAUNCHER = """
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


class SyncProcess:
    """A ``d1sync sync`` child in its own process group; with ``rss_file``, its own peak RSS is measured."""

    def __init__(self, command: list[str], token: str, log: Path, *, rss_file: Path | None = None) -> None:
        env = {**os.environ, TOKEN_ENV: token}
        self.log = log
        self.rss_file = rss_file
        if rss_file is not None:
            command = [sys.executable, "-S", "-c", _LAUNCHER, os.fspath(rss_file), *command]
        # stderr goes to a file, never a pipe: a chatty child must not block on a full pipe.
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        self.max_rss: int | None = None

    def poll(self) -> bool:
        """True once the child has exited."""
        return self.proc.poll() is not None

    def wait(self, timeout: float) -> int:
        """Wait for the exit code of ``d1sync sync`` (and read its peak RSS if measured)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise D1SyncError(f"`d1sync sync` did not finish within {timeout:.0f}s") from None
        if self.rss_file is None:
            return code
        if code != 0 or not self.rss_file.exists():
            raise D1SyncError(f"the memory launcher failed (exit {code}): {self.stderr_tail()}")
        max_rss, code = (int(part) for part in self.rss_file.read_text().split())
        self.max_rss = _max_rss_bytes(max_rss)
        return code

    def kill(self) -> None:
        """SIGKILL the child's process group (the launcher and ``d1sync sync`` alike)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stderr_tail(self) -> str:
        """The child's last line on stderr (its one-line error), once it has exited."""
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def close(self) -> None:
        self.kill()


@dataclass
class IdleOutcome:
    seconds: float
    cpu_seconds: float
    rows_synced_first: int
    remote_rows: int

    @property
    def cpu_percent(self) -> float:
        """Of one core, over the watched time."""
        return 100.0 * self.cpu_seconds / self.seconds

    @property
    def verified(self) -> bool:
        return self.remote_rows == self.rows_synced_first

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_percent": self.cpu_percent, "verified": self.verified}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far, from ``/proc/PID/stat`` (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        raise D1SyncError(f"process {pid} is gone (no /proc/{pid}/stat to read its CPU time from)") from None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; the command may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def run_idle(
    emulator: BenchEmulator,
    workdir: Path,
    *,
    seconds: float,
    rows: int = 100,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> IdleOutcome:
    """The CPU ``d1sync run`` uses while idle: it first sends a small backlog (so the loop has run and gone
    idle), then it is watched for ``seconds`` with nothing to do."""
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        raise D1SyncError("the idle benchmark reads CPU time from /proc/PID/stat, which this system lacks")
    path = make_backlog(workdir / "idle.db", rows)
    database_id = emulator.fresh_database("idle")
    conn = sqlite3.connect(path, isolation_level=None)
    child = SyncProcess(sync_command(path, emulator, database_id, command="run"), emulator.token, workdir / "idle.log")
    try:
        deadline = time.monotonic() + timeout
        while _oldest_pending(conn) is not None:
            if child.poll() or time.monotonic() > deadline:
                raise D1SyncError(f"`d1sync run` did not send its first {rows} rows: {child.stderr_tail()}")
            time.sleep(0.01)
        time.sleep(1.0)  # let the pass that emptied the outbox end
        if progress:
            progress(f"idle: watching `d1sync run` for {seconds:g} s with nothing to send")
        cpu, started = _cpu_seconds(child.proc.pid), time.perf_counter()
        time.sleep(seconds)
        cpu, watched = _cpu_seconds(child.proc.pid) - cpu, time.perf_counter() - started
        if child.poll():
            raise D1SyncError(f"`d1sync run` exited while idle: {child.stderr_tail()}")
    finally:
        child.close()
        conn.close()
    remote_rows, _ = compare_with_remote(path, emulator.database_path(database_id))
    path.unlink()
    return IdleOutcome(watched, cpu, rows, remote_rows)


@dataclass
class MemoryOutcome:
    rows: int
    peak_rss_bytes: int
    baseline_rss_bytes: int
    seconds: float
    remote_rows: int
    remote_mismatches: int

    @property
    def verified(self) -> bool:
        return self.remote_rows == self.rows and self.remote_mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verified": self.verified}


def _run_to_end(command: list[str], token: str, log: Path, timeout: float) -> tuple[int, float]:
    child = SyncProcess(command, token, log, rss_file=log.with_suffix(".rss"))
    started = time.perf_counter()
    try:
        code = child.wait(timeout)
        if code != 0:
            raise D1SyncError(f"`d1sync sync` exited with {code}: {child.stderr_tail()}")
    finally:
        child.close()
    assert child.max_rss is not None
    return child.max_rss, time.perf_counter() - started


def run_memory(
    emulator: BenchEmulator,
    workdir: Path,
    *,
    rows: int,
    via: str = "batch",
    timeout: float = 1800.0,
    progress: Callable[[str], None] | None = None,
) -> MemoryOutcome:
    """Peak RSS of ``d1sync sync --via VIA`` draining ``rows`` rows, next to the same command on an empty
    outbox."""
    if progress:
        progress(f"memory: building a {rows:,}-row backlog")
    empty = make_backlog(workdir / "memory-empty.db", 0)
    empty_id = emulator.fresh_database("memory-empty")
    baseline, _ = _run_to_end(
        sync_command(empty, emulator, empty_id, via=via), emulator.token, workdir / "memory.log", 60
    )
    path = make_backlog(workdir / "memory.db", rows)
    database_id = emulator.fresh_database("memory")
    if progress:
        progress(f"memory: d1sync sync --via {via} draining {rows:,} rows")
    peak, seconds = _run_to_end(
        sync_command(path, emulator, database_id, via=via), emulator.token, workdir / "memory.log", timeout
    )
    remote_rows, mismatches = compare_with_remote(path, emulator.database_path(database_id))
    for file in (empty, path):
        file.unlink()
    return MemoryOutcome(rows, peak, baseline, seconds, remote_rows, mismatches)


@dataclass
class RecoveryOutcome:
    rows: int
    acknowledged_before_kill: int
    seconds_to_first_ack: float
    lease_left_at_restart: float
    restart_drain_seconds: float
    remote_rows: int
    remote_mismatches: int

    @property
    def verified(self) -> bool:
        return self.remote_rows == self.rows and self.remote_mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verified": self.verified}


def _oldest_pending(conn: sqlite3.Connection) -> int | None:
    # min(seq) is one index probe: the first acknowledged batch always removes the oldest changes.
    row = conn.execute(f"SELECT min(seq) FROM _d1sync_changes WHERE {LIVE}").fetchone()
    return None if row[0] is None else int(row[0])


def _lease_left(conn: sqlite3.Connection) -> float:
    row = conn.execute("SELECT v FROM _d1sync_meta WHERE k = 'lease'").fetchone()
    if row is None or row[0] is None:
        return 0.0
    return max(0.0, float(json.loads(row[0])["expires"]) - time.time())


def run_recovery(
    emulator: BenchEmulator,
    workdir: Path,
    *,
    rows: int,
    timeout: float = 300.0,
    clock: Clock = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> RecoveryOutcome:
    """Kill ``d1sync sync`` with SIGKILL mid-drain, restart it, time the restart's first acknowledged batch."""
    path = make_backlog(workdir / "recovery.db", rows)
    database_id = emulator.fresh_database("recovery")
    command = sync_command(path, emulator, database_id)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if progress:
            progress("recovery: first run, killed with SIGKILL after its first acknowledged batch")
        first = SyncProcess(command, emulator.token, workdir / "recovery-1.log")
        try:
            deadline = time.monotonic() + timeout
            while _oldest_pending(conn) == 1:
                if first.poll() or time.monotonic() > deadline:
                    raise D1SyncError(f"the first `d1sync sync` acknowledged nothing: {first.stderr_tail()}")
                time.sleep(0.002)
            # Kill it while its next request is in flight: the worst moment (applied remotely, not acknowledged).
            time.sleep(0.02)
            first.kill()
        finally:
            first.close()
        oldest = _oldest_pending(conn)
        if oldest is None:
            raise D1SyncError(
                f"the first run drained all {rows:,} rows before it could be killed; "
                "give the recovery benchmark a backlog of several requests (--recovery-rows 50000)"
            )
        acked = rows - int(conn.execute(f"SELECT count(*) FROM _d1sync_changes WHERE {LIVE}").fetchone()[0])
        if progress:
            progress("recovery: restart, waiting for the first acknowledged batch")
        lease_left = _lease_left(conn)
        started = clock()
        second = SyncProcess(command, emulator.token, workdir / "recovery-2.log")
        try:
            while _oldest_pending(conn) == oldest:
                if second.poll() or clock() - started > timeout:
                    raise D1SyncError(f"the restarted `d1sync sync` acknowledged nothing: {second.stderr_tail()}")
                time.sleep(0.002)
            first_ack = clock() - started
            code = second.wait(timeout)
            if code != 0:
                raise D1SyncError(f"the restarted `d1sync sync` exited with {code}: {second.stderr_tail()}")
            drain_seconds = clock() - started
        finally:
            second.close()
    finally:
        conn.close()
    remote_rows, mismatches = compare_with_remote(path, emulator.database_path(database_id))
    path.unlink()
    return RecoveryOutcome(rows, acked, first_ack, lease_left, drain_seconds, remote_rows, mismatches)
