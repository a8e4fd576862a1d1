"""The convergence storm: three replica files, each with a writer and a worker process, and a Worker writing to
the emulator directly, all on the same keys, through kill -9s and emulator faults (lost responses included).
When the writers stop and everything drains, the three files and the remote hold identical rows, types too."""

from __future__ import annotations

import random
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from d1sync.emulator.server import EmulatorServer
from d1sync.errors import D1SyncError
from d1sync.outbox import Outbox, SyncConfig, SyncWorker, drain
from d1sync.sync.config import PullOptions

from .conftest import TOKEN, emulator_client, emulator_file, open_file, snapshot
from .crash import Child
from .replicas import SCHEMA
from .storm_process import KEYS, LEASE_TTL

SCRIPT = Path(__file__).with_name("storm_process.py")
WORKER_VALUES = [None, 0, 2**63 - 1, -(2**63), 2**53 + 1, 0.1, -0.0, 7.0, "7", "é ✓ 😀", 42]


def _a_worker_writes(server: EmulatorServer, stop: threading.Event, seed: int) -> None:
    """A Cloudflare Worker writing to D1 directly (origin NULL), through the same faults as everyone."""
    rng = random.Random(seed)
    with emulator_client(server) as client:
        while not stop.is_set():
            key, roll = rng.randrange(KEYS), rng.random()
            try:
                if roll < 0.4:
                    client.prepare(
                        "INSERT INTO items (id, name, n, any_) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                        "SET name = excluded.name, n = excluded.n, any_ = excluded.any_"
                    ).bind(
                        key, f"worker {rng.random():.6f}", rng.choice(WORKER_VALUES), rng.choice(WORKER_VALUES)
                    ).run()
                elif roll < 0.65:
                    client.prepare("UPDATE items SET any_ = ? WHERE id = ?").bind(rng.choice(WORKER_VALUES), key).run()
                elif roll < 0.85:
                    client.prepare("DELETE FROM items WHERE id = ?").bind(key).run()
                else:
                    client.prepare("UPDATE OR IGNORE items SET id = ? WHERE id = ?").bind(
                        rng.randrange(KEYS), key
                    ).run()
            except D1SyncError:
                pass  # a fault: it may or may not have committed, as with a real Worker
            time.sleep(rng.uniform(0.005, 0.03))


def _storm(tmp_path: Path, seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    with EmulatorServer(tmp_path / "emulator", token=TOKEN, auto_create=True) as server:
        client = emulator_client(server)
        client.exec(SCHEMA)
        paths = [tmp_path / f"replica{i}.db" for i in range(3)]
        for path in paths:
            with closing(open_file(path)) as conn:
                conn.executescript(SCHEMA)
            Outbox(path).replicate("items", target=client)
        workers = {p: Child("worker", str(p), server.api_base, TOKEN, script=SCRIPT) for p in paths}
        writers = {p: Child("writer", str(p), str(rng.randrange(10**6)), script=SCRIPT) for p in paths}
        for child in [*workers.values(), *writers.values()]:
            child.wait_for("started")
        server.app.state.faults.update(error_rate=0.05, lost_response_rate=0.08, html_rate=0.02, seed=seed)
        stop = threading.Event()
        direct = threading.Thread(target=_a_worker_writes, args=(server, stop, seed), daemon=True)
        direct.start()
        kills = 0
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.2, 0.6))
                path = rng.choice(paths)
                group, mode = rng.choice([(workers, "worker"), (writers, "writer")])
                group[path].kill()
                kills += 1
                extra = [server.api_base, TOKEN] if mode == "worker" else [str(rng.randrange(10**6))]
                group[path] = Child(mode, str(path), *extra, script=SCRIPT)
        finally:
            stop.set()
            direct.join(10)
            for child in [*workers.values(), *writers.values()]:
                child.kill()
        stats = dict(server.app.state.faults.stats)
        server.app.state.faults.update(error_rate=0.0, lost_response_rate=0.0, html_rate=0.0)
        origins = {r[0] for r in client.prepare("SELECT DISTINCT origin FROM _d1sync_log").raw()}

        # Everything drains: each replica pushes what it has, then pulls, until no round changes anything.
        finals = [
            SyncWorker(p, client, config=SyncConfig(lease_ttl=LEASE_TTL, pull_options=PullOptions(interval=0.0)))
            for p in paths
        ]
        try:
            for _ in range(4):
                for worker in finals:
                    report = drain(worker, sleep=time.sleep, deadline=time.monotonic() + 60)
                    assert report.drained, report
            with closing(open_file(emulator_file(server))) as conn:
                remote = snapshot(conn, "items")
            for path in paths:
                with closing(open_file(path)) as conn:
                    assert snapshot(conn, "items") == remote, path
            assert all(w.pending() == 0 for w in finals)
        finally:
            for worker in finals:
                worker.close()
            client.close()
        assert kills >= seconds / 0.6 * 0.5
        assert stats.get("lost_502", 0) + stats.get("lost_drop", 0) > 0, stats
        assert None in origins and len(origins) >= 3, origins  # the Worker and the replicas all wrote


def test_a_short_storm_of_three_replicas_and_a_worker_converges_exactly(tmp_path: Path) -> None:
    _storm(tmp_path, seconds=6.0, seed=13)


@pytest.mark.slow
def test_the_convergence_storm_ends_exact(tmp_path: Path) -> None:
    _storm(tmp_path, seconds=40.0, seed=2026)
