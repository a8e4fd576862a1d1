"""Requests sized from D1's answers (d1sync.sync.push.sizing), over a real emulator socket: they grow while the
emulator answers fast, shrink on its body limit (413) and its execution limit (D1's 7429), the learned size
survives a restart, and every table stays exact throughout."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from d1sync import Outbox
from d1sync.bench.remote import CountingTransport
from d1sync.cli import cli
from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID, EmulatorServer
from d1sync.emulator.faults import FaultConfig
from d1sync.local import LocalDatabase
from d1sync.outbox import SyncConfig, SyncWorker, drain
from d1sync.sqlite import Connection
from d1sync.sync import Limits
from d1sync.sync.push.sizing import Sizer
from d1sync.sync.store.state import RequestSize, load_state

from ..support import TOKEN
from .conftest import emulator_file, open_file, snapshot

COLUMNS = "id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL, d TEXT, e INTEGER, f TEXT, g REAL"


def _rows(start: int, count: int) -> list[tuple[Any, ...]]:
    return [
        (i, f"name-{i}", i * 7, i / 3, "x" * (i % 40), -i, f"k{i % 97}", i * 1.5) for i in range(start, start + count)
    ]


class Setup:
    """A file with table ``t`` (8 columns) tracked, mirrored to an emulator; requests counted there."""

    def __init__(self, tmp_path: Path, server: EmulatorServer, *, remote_ddl: str = "") -> None:
        self.path = tmp_path / "app.db"
        self.server = server
        self.counted = CountingTransport()
        self.remote = D1Client(
            account_id="a",
            database_id=DEFAULT_DATABASE_ID,
            api_token=TOKEN,
            base_url=server.api_base,
            retry=RetryPolicy(max_retries=0),
            timeout=30.0,
            transport=self.counted,
        )
        with LocalDatabase(self.path) as app:
            app.exec(f"CREATE TABLE t ({COLUMNS})")
        self.remote.exec(f"CREATE TABLE t ({COLUMNS})" + (f"; {remote_ddl}" if remote_ddl else ""))
        with Outbox(self.path) as outbox:
            outbox.track("t")

    def write(self, start: int, count: int) -> None:
        with LocalDatabase(self.path) as app, app.atomic() as conn:
            conn.executemany("INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _rows(start, count))

    def requests(self) -> int:
        """Requests sent to the emulator, whatever their answer."""
        return self.counted.requests

    def exact(self) -> bool:
        with closing(open_file(self.path)) as local, closing(open_file(emulator_file(self.server))) as far:
            return snapshot(local, "t") == snapshot(far, "t")

    def learned(self) -> RequestSize | None:
        with Connection(self.path) as conn:
            return load_state(conn).request_size

    def drain(self, limits: Limits, *, dead: int = 0, **options: Any) -> tuple[int, int]:
        """Drain with a fresh worker (``dead`` rows dead-lettered): (write requests acknowledged, requests
        sent)."""
        before = self.requests()
        with SyncWorker(self.path, self.remote, SyncConfig(limits=limits, **options)) as worker:
            report = drain(worker, max_passes=200, sleep=lambda s: None)
            assert report.drained, report
            assert worker.status().dead_letters == dead
            acknowledged = worker.counters.requests
        return acknowledged, self.requests() - before


def _server(tmp_path: Path, **options: Any) -> EmulatorServer:
    return EmulatorServer(tmp_path / "emulator", token=TOKEN, faults=FaultConfig(), auto_create=True, **options)


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[Setup]:
    with _server(tmp_path) as server:
        setup = Setup(tmp_path, server)
        yield setup
        setup.remote.close()


def test_requests_grow_while_the_emulator_answers_fast_and_the_window_grows_with_them(fast: Setup) -> None:
    fast.write(0, 60_000)
    # D1's 30 s as the target: growth then tolerates a machine six times slower than the default's 5 s does.
    limits = Limits(start_request_bytes=200_000, max_request_bytes=8_000_000, target_seconds=30.0)
    fixed = math.ceil(60_000 * 85 / 200_000)  # what the start size alone would take (85 to 90 bytes a row)
    acknowledged, _ = fast.drain(limits)
    assert fast.exact()
    learned = fast.learned()
    assert learned is not None and learned.bytes == 8_000_000  # grew to the ceiling, never past it
    print(f"60,000 rows: {acknowledged} requests growing from 200 KB; {fixed} at a fixed 200 KB")
    assert acknowledged <= 6 < fixed
    with Outbox(fast.path) as outbox:
        shown = outbox.status().request_size
    assert shown is not None and shown["bytes"] == 8_000_000 and shown["refused"] is None
    assert 80 < shown["row_bytes"] < 100
    printed = " ".join(CliRunner().invoke(cli, ["status", str(fast.path)]).output.split())  # wrapped or not
    assert "request size 8.0 MB a request, about" in printed and "(learned from D1's answers)" in printed
    # More rows than the default window (20,000 keys) went in one request: the window followed the size.


def test_a_window_read_ahead_at_the_old_size_is_read_again_once_the_size_grew(fast: Setup) -> None:
    """Each request is as big as the size then allows: none goes at a size already outgrown (the window read
    while the request that grew it was in flight is read again, bigger). Only the backlog's end is short."""
    fast.write(0, 60_000)
    sizes: list[int] = []
    send = fast.counted.handle_request

    def record(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/query") and b'"batch"' in request.content[:20]:
            sizes.append(len(request.content))
        return send(request)

    fast.counted.handle_request = record  # type: ignore[method-assign]
    fast.drain(Limits(start_request_bytes=200_000, max_request_bytes=8_000_000), read_ahead=True)
    assert fast.exact()
    assert len(sizes) >= 3 and sizes[0] < 250_000, sizes
    assert all(later > 2 * earlier for earlier, later in zip(sizes, sizes[1:-1], strict=False)), sizes


def test_a_fixed_size_does_not_grow(fast: Setup) -> None:
    fast.write(0, 20_000)
    acknowledged, _ = fast.drain(Limits(max_request_bytes=400_000, adaptive=False))
    assert fast.exact()
    assert acknowledged >= math.ceil(20_000 * 85 / 400_000)
    assert fast.learned() is None


def test_a_request_over_the_body_limit_is_sent_again_smaller_and_the_limit_is_learned(tmp_path: Path) -> None:
    with _server(tmp_path, max_body=300_000) as server:
        setup = Setup(tmp_path, server)
        setup.write(0, 12_000)
        acknowledged, sent = setup.drain(Limits())  # starts at 2 MB: the emulator refuses it with a 413
        assert setup.exact()
        learned = setup.learned()
        assert learned is not None and learned.refused is not None and learned.bytes < 300_000
        refused = sent - acknowledged - 2  # the preflight reads the remote table twice
        print(f"413 at 300 KB: {acknowledged} requests went, {refused} refused")
        # Shrinking costs a few refusals, not one per request.
        assert acknowledged >= math.ceil(12_000 * 85 / 300_000) and refused <= 12
        # What was learned holds: a second backlog sends without a single refusal.
        setup.write(12_000, 6_000)
        acknowledged, sent = setup.drain(Limits())
        assert setup.exact() and sent - acknowledged <= 2  # the preflight's reads, no refusal
        setup.remote.close()


# Each inserted row makes D1 count to 3,000: a request's execution time follows its rows.
BURN = (
    "CREATE TABLE burn (n INTEGER); CREATE TRIGGER t_burn AFTER INSERT ON t BEGIN INSERT INTO burn "
    "SELECT count(*) FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000) "
    "SELECT n FROM c); END"
)


def test_a_request_stopped_at_the_execution_limit_is_sent_again_smaller(tmp_path: Path) -> None:
    with _server(tmp_path, max_duration=0.5) as server:
        setup = Setup(tmp_path, server, remote_ddl=BURN)
        setup.write(0, 3_000)
        acknowledged, sent = setup.drain(Limits(), window=None)  # 3,000 rows in one request: far too slow
        assert setup.exact()
        learned = setup.learned()
        assert learned is not None and learned.refused is not None
        assert learned.bytes < 3_000 * 100  # well under what was refused
        print(f"execution limit 0.5 s: {acknowledged} requests went, {sent - acknowledged} others sent")
        with closing(open_file(emulator_file(server))) as far:
            assert far.execute("SELECT count(*) FROM burn").fetchone()[0] == 3_000  # nothing applied twice
        setup.remote.close()


def test_the_learned_size_starts_the_next_run_on_the_same_database_only(fast: Setup) -> None:
    fast.write(0, 30_000)
    limits = Limits(start_request_bytes=100_000, max_request_bytes=6_000_000, target_seconds=30.0)  # loaded machines
    fast.drain(limits)
    learned = fast.learned()
    assert learned is not None and learned.bytes == 6_000_000 and learned.target == repr(fast.remote)
    # A new process on the same file (a restart): its first request is already of the learned size.
    fast.write(30_000, 25_000)
    acknowledged, _ = fast.drain(limits)
    assert acknowledged == 1 and fast.exact()
    # Another database starts from the configured size.
    assert Sizer(limits, learned, target="another").bytes == 100_000
    assert Sizer(limits, learned, target=learned.target).bytes == 6_000_000
    # A lower ceiling given later wins over what was learned.
    assert Sizer(Limits(max_request_bytes=1_000_000), learned, target=learned.target).bytes == 1_000_000


BAD_ROW = "CREATE TRIGGER t_bad BEFORE INSERT ON t WHEN NEW.a = 'refused' BEGIN SELECT RAISE(ABORT, 'refused row'); END"


def test_a_refused_row_in_a_big_request_costs_about_log2_of_its_rows_in_requests(tmp_path: Path) -> None:
    rows = 50_000
    with _server(tmp_path) as server:
        setup = Setup(tmp_path, server, remote_ddl=BAD_ROW)
        setup.write(0, rows)
        with LocalDatabase(setup.path) as app:
            app.exec("UPDATE t SET a = 'refused' WHERE id = 31337")
        # All 50,000 rows in one request (4.5 MB), ten times today's fixed 2 MB size.
        acknowledged, sent = setup.drain(Limits(start_request_bytes=8_000_000), dead=1, window=rows)
        with closing(open_file(setup.path)) as local, closing(open_file(emulator_file(server))) as far:
            assert snapshot(local, "t")[:31337] + snapshot(local, "t")[31338:] == snapshot(far, "t")
        with Connection(setup.path) as conn:
            dead = conn.execute("SELECT tbl, key, error FROM _d1sync_dead").fetchall()
        assert [(t, k) for t, k, _ in dead] == [("t", "[31337]")] and "refused row" in dead[0][2]
        cost = sent - 2  # the preflight reads the remote table twice
        print(f"one refused row among {rows:,} in one request: {cost} requests in all ({acknowledged} went)")
        # A bisection that sent both halves every time would take about 2 * log2(rows) = 31.
        assert cost <= math.ceil(math.log2(rows)) + 4
        setup.remote.close()


def test_a_window_counts_keys_so_churn_does_not_cost_requests(fast: Setup) -> None:
    fast.write(0, 10)
    with LocalDatabase(fast.path) as app:
        for round_ in range(50):  # 500 change rows for 10 keys, interleaved
            with app.atomic() as conn:
                for key in range(10):
                    conn.execute("UPDATE t SET b = ? WHERE id = ?", (round_, key))
    acknowledged, _ = fast.drain(Limits(), window=10)
    assert fast.exact()
    assert acknowledged == 1  # one window of 10 keys holds all 510 change rows
