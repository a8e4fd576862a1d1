"""Helpers for the tests that run real worker processes: a child worker whose stdout lines arrive on a queue,
and an application's random write transactions (inserts, updates, deletes, key changes, big integers)."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from d1sync.local import LocalDatabase

SCRIPT = Path(__file__).with_name("worker_process.py")
SCHEMA = """
CREATE TABLE items (id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, payload BLOB, score REAL);
CREATE TABLE tags (item_id INTEGER NOT NULL, tag TEXT NOT NULL, weight INTEGER, PRIMARY KEY (item_id, tag))
"""
LEASE_TTL = 0.5


class Child:
    """A worker subprocess whose stdout lines arrive on a queue."""

    def __init__(self, *args: str, script: Path = SCRIPT) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_for(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGKILL)
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                self.kill()
                raise AssertionError(f"no {prefix!r} line from the worker in {timeout}s; stderr: {stderr}") from None
            if line.startswith(prefix):
                return line

    def kill(self) -> list[str]:
        """kill -9 (if still running); the stdout lines not yet read, up to the process's death."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._pump_thread.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get_nowait())
        return rest


BACKLOG = 90_000
"""Rows waiting when the kills begin: enough that the workers are still mid-backlog at the last kill."""


def random_writes(app: LocalDatabase, rng: random.Random, next_id: int) -> int:
    """One transaction of inserts, updates, deletes and key changes; returns the next free id."""
    with app.atomic() as conn:
        for _ in range(rng.randint(20, 120)):
            roll = rng.random()
            target = rng.randrange(next_id)
            if roll < 0.4:
                conn.execute("UPDATE items SET name = ?, score = ? WHERE id = ?", (f"upd {rng.random()}", roll, target))
            elif roll < 0.6:
                conn.execute("DELETE FROM items WHERE id = ?", (target,))
            elif roll < 0.7:
                conn.execute("UPDATE OR IGNORE items SET id = ? WHERE id = ?", (next_id, target))
                next_id += 1
            elif roll < 0.85:
                conn.execute(
                    "INSERT INTO items (id, grp, name, payload, score) VALUES (?, ?, ?, ?, ?)",
                    (next_id, roll, "new ✓", rng.randbytes(8), None),
                )
                next_id += 1
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
                    (target, rng.choice(["a", "b", "😀"]), rng.choice([2**63 - 1, -(2**63), 0])),
                )
    return next_id
