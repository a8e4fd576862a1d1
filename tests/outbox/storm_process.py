"""The processes of the replication storm (not collected by pytest).

Usage:
    python storm_process.py worker APP_DB API_BASE TOKEN
        A SyncWorker that pushes and pulls (``run()``) against the emulator; prints "started".
    python storm_process.py writer APP_DB SEED
        The application: random transactions on shared keys until killed; prints "started".
"""

from __future__ import annotations

import random
import sys
import time

from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.local import LocalDatabase
from d1sync.outbox import Limits, SyncConfig, SyncWorker
from d1sync.sync.config import PullOptions

KEYS = 60
"""Keys every participant writes: few enough that they collide all the time."""
LEASE_TTL = 0.5


def value(rng: random.Random) -> object:
    """A value of any storage class, edge values included."""
    return rng.choice(
        [None, 0, 2**63 - 1, -(2**63), 2**53 + 1, rng.randint(-1000, 1000), 0.1, -0.0, 1e308, 7.0, "7", "é ✓ 😀",
         "a\x00b", b"", b"\x00\xff", rng.randbytes(6)]
    )  # fmt: skip


def random_ops(conn: object, rng: random.Random, execute: object) -> None:
    """A few random writes on the shared keys through ``execute(sql, params)``."""
    run = execute  # type: ignore[assignment]
    for _ in range(rng.randint(1, 6)):
        roll, key = rng.random(), rng.randrange(KEYS)
        if roll < 0.35:
            run(
                "INSERT INTO items (id, name, n, data, score, v, any_) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, n = excluded.n, any_ = excluded.any_",
                (key, f"w{rng.random():.6f}", value(rng), rng.randbytes(4), rng.random(), 0, value(rng)),
            )
        elif roll < 0.6:
            run("UPDATE items SET any_ = ?, score = ? WHERE id = ?", (value(rng), value(rng), key))
        elif roll < 0.8:
            run("DELETE FROM items WHERE id = ?", (key,))
        else:
            run("UPDATE OR IGNORE items SET id = ? WHERE id = ?", (rng.randrange(KEYS), key))


def worker(app_db: str, api_base: str, token: str) -> None:
    client = D1Client(
        account_id="a",
        database_id=DEFAULT_DATABASE_ID,
        api_token=token,
        base_url=api_base,
        retry=RetryPolicy(max_retries=0),
        timeout=5,
    )
    sync = SyncWorker(
        app_db,
        client,
        config=SyncConfig(
            limits=Limits(max_request_bytes=6_000, max_statements=3),
            lease_ttl=LEASE_TTL,
            pause_interval=0.2,
            pull_options=PullOptions(interval=0.05, window=40, page=25),
        ),
    )
    print("started", flush=True)
    sync.run(idle_interval=0.05)


def writer(app_db: str, seed: int) -> None:
    rng = random.Random(seed)
    app = LocalDatabase(app_db)
    print("started", flush=True)
    while True:
        with app.atomic() as conn:
            random_ops(conn, rng, conn.execute)
        time.sleep(rng.uniform(0.0, 0.02))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "worker":
        worker(args[0], args[1], args[2])
    else:
        writer(args[0], int(args[1]))
