"""Capture trigger designs side by side on the demo's messages table: what each part of the change log costs.

Each variant is the same AFTER INSERT trigger writing one change row, differing in the design choices:
AUTOINCREMENT or a plain rowid, a CHECK on the op, a per-row timestamp, the table as its name or an integer
id, and the key as the codec's JSON or the raw value. Transactions of ``--per-tx`` rows into one file per
variant (WAL, synchronous=NORMAL), in interleaved rounds; medians. This is how d1sync chose today's log: a
plain rowid, an integer table id, an integer op and the raw key, no timestamp (d1sync.sync.store.log says how seqs
still never repeat and where the oldest pending age comes from).

.venv/bin/python benchmarks/capture_variants.py --table bench --rows 5000 --rounds 5 --per-tx 1
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from d1sync.bench.capture import CaptureTable

TIMESTAMPS = {"julianday ms": "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)", "none": "0"}
KEYS = {
    "codec JSON": "json_array(CASE typeof(NEW.id) WHEN 'blob' THEN json_object('x', hex(NEW.id)) ELSE NEW.id END)",
    "raw": "NEW.id",
}
# (AUTOINCREMENT, CHECK, timestamp, key, table as an integer id)
VARIANTS: dict[str, tuple[bool, bool, str, str, bool] | None] = {
    "untracked": None,
    "AUTOINCREMENT, CHECK, julianday, JSON key (1st log)": (True, True, "julianday ms", "codec JSON", False),
    "plain rowid, CHECK, julianday, JSON key (2nd log)": (False, True, "julianday ms", "codec JSON", False),
    "plain rowid, no CHECK, no timestamp, JSON key": (False, False, "none", "codec JSON", False),
    "plain rowid, table id, julianday, raw key": (False, False, "julianday ms", "raw", True),
    "plain rowid, table id, no timestamp, raw key (today)": (False, False, "none", "raw", True),
    "floor: a constant one-column row": (False, False, "none", "floor", True),
}
TABLE = "capture_tracked"


def _open(path: Path, table: CaptureTable, variant: tuple[bool, bool, str, str, bool] | None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    table.create(conn, TABLE)
    if variant is not None and variant[3] == "floor":
        conn.execute("CREATE TABLE log (x)")
        conn.execute(f"CREATE TRIGGER capture AFTER INSERT ON {TABLE} BEGIN INSERT INTO log VALUES (1); END")
    elif variant is not None:
        autoincrement, check, timestamp, key, table_id = variant
        kind = "INTEGER" if table_id else "TEXT"
        conn.execute(
            f"CREATE TABLE log (seq INTEGER PRIMARY KEY{' AUTOINCREMENT' if autoincrement else ''}, "
            f"tbl {kind} NOT NULL, key NOT NULL, op {kind} NOT NULL"
            f"{' CHECK (op IN (' + repr('upsert') + ', ' + repr('delete') + '))' if check else ''}, "
            f"payload TEXT{', created_at INTEGER NOT NULL' if timestamp != 'none' else ''})"
        )
        names = "3, {key}, 1" if table_id else "'messages', {key}, 'upsert'"
        stamp = (", created_at", f", {TIMESTAMPS[timestamp]}") if timestamp != "none" else ("", "")
        conn.execute(
            f"CREATE TRIGGER capture AFTER INSERT ON {TABLE} BEGIN INSERT INTO log (tbl, key, op{stamp[0]}) "
            f"VALUES ({names.format(key=KEYS[key])}{stamp[1]}); END"
        )
    return conn


def _write(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]], per_tx: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), per_tx):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[start : start + per_tx])
        conn.execute("COMMIT")
    return len(rows) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000, help="single-row transactions per round (default 5,000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-tx", type=int, default=1, help="rows per transaction (default 1)")
    parser.add_argument(
        "--table", choices=["messages", "bench"], default="messages", help="the table of `d1sync bench` capture"
    )
    args = parser.parse_args()
    table = CaptureTable(args.table)
    rows = table.rows(args.rows * args.rounds)
    sql = table.insert_sql(TABLE)
    with tempfile.TemporaryDirectory() as tmp:
        conns = {name: _open(Path(tmp) / f"v{i}.db", table, v) for i, (name, v) in enumerate(VARIANTS.items())}
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(args.rounds):
            names = list(conns) if r % 2 == 0 else list(reversed(conns))
            for name in names:
                chunk = rows[r * args.rows : (r + 1) * args.rows]
                rates[name].append(_write(conns[name], sql, chunk, args.per_tx))
        for conn in conns.values():
            conn.close()
    base = statistics.median(rates["untracked"])
    print(
        f"{args.per_tx}-row transactions into the {args.table} table, {args.rounds} interleaved rounds of "
        f"{args.rows:,} rows"
    )
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:55s} {rate:9,.0f} rows/s  {rate / base:.2f}x  +{1e6 / rate - 1e6 / base:5.1f} µs/row")


if __name__ == "__main__":
    main()
