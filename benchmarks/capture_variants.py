"""Capture trigger designs side by side on the demo's messages table: what each part of the change log costs.

Each variant is the same AFTER INSERT trigger writing one change row, differing in one design choice:
AUTOINCREMENT or a plain rowid, a CHECK on the op, the timestamp expression, and the key as the codec's JSON
or the raw value. Single-row transactions into one file per variant (WAL, synchronous=NORMAL), in interleaved
rounds; medians. This is how d1sync chose a plain rowid for ``seq`` (see docs/sync.md on why seqs still never
repeat).

.venv/bin/python benchmarks/capture_variants.py --rows 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from d1sync.demo import DEMO_SCHEMA

TIMESTAMPS = {"julianday ms": "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)", "none": "0"}
KEYS = {
    "codec JSON": "json_array(CASE typeof(NEW.id) WHEN 'blob' THEN json_object('x', hex(NEW.id)) ELSE NEW.id END)",
    "raw": "NEW.id",
}
VARIANTS: dict[str, tuple[bool, bool, str, str] | None] = {
    "untracked": None,
    "AUTOINCREMENT, CHECK, julianday, JSON key (the old log)": (True, True, "julianday ms", "codec JSON"),
    "plain rowid, CHECK, julianday, JSON key (today's log)": (False, True, "julianday ms", "codec JSON"),
    "plain rowid, no CHECK, no timestamp, JSON key": (False, False, "none", "codec JSON"),
    "plain rowid, no CHECK, no timestamp, raw key": (False, False, "none", "raw"),
}


def _open(path: Path, variant: tuple[bool, bool, str, str] | None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(DEMO_SCHEMA)
    if variant is not None:
        autoincrement, check, timestamp, key = variant
        conn.execute(
            f"CREATE TABLE log (seq INTEGER PRIMARY KEY{' AUTOINCREMENT' if autoincrement else ''}, "
            f"tbl TEXT NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL"
            f"{' CHECK (op IN (' + repr('upsert') + ', ' + repr('delete') + '))' if check else ''}, "
            f"payload TEXT, created_at INTEGER NOT NULL)"
        )
        conn.execute(
            "CREATE TRIGGER capture AFTER INSERT ON messages BEGIN INSERT INTO log (tbl, key, op, created_at) "
            f"VALUES ('messages', {KEYS[key]}, 'upsert', {TIMESTAMPS[timestamp]}); END"
        )
    return conn


def _write(conn: sqlite3.Connection, first: int, count: int) -> float:
    started = time.perf_counter()
    for i in range(first, first + count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO messages VALUES (?, 'web', ?, 'user', ?, NULL, ?, NULL, NULL, NULL, NULL, ?)",
            (f"m{i:09d}", f"c{i % 97}", "hello " * 20, i, i),
        )
        conn.execute("COMMIT")
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000, help="single-row transactions per round (default 5,000)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        conns = {name: _open(Path(tmp) / f"v{i}.db", v) for i, (name, v) in enumerate(VARIANTS.items())}
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(args.rounds):
            names = list(conns) if r % 2 == 0 else list(reversed(conns))
            for name in names:
                rates[name].append(_write(conns[name], r * args.rows, args.rows))
        for conn in conns.values():
            conn.close()
    base = statistics.median(rates["untracked"])
    print(f"single-row transactions into the demo's messages table, {args.rounds} interleaved rounds of {args.rows:,}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:58s} {rate:9,.0f} rows/s  {rate / base:.2f}x  +{1e6 / rate - 1e6 / base:5.1f} µs/row")


if __name__ == "__main__":
    main()
