"""A large backlog goes through D1's import: a few API requests instead of hundreds of batches, every value exact,
rows written meanwhile sent after it, what cannot travel as SQL text sent through batches, an import that
fails or runs late applying nothing, and ``via`` choosing the path."""

from __future__ import annotations

import logging
import math
import random
import signal
import sqlite3
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from d1sync.client import D1Client
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer
from d1sync.errors import SQLError
from d1sync.outbox import Outbox, SyncConfig, SyncWorker
from d1sync.sync.push import seedfile
from d1sync.sync.push.seedfile import write_seed
from d1sync.sync.remote import REWOUND
from d1sync.sync.store.specs import load_specs
from d1sync.sync.store.state import load_state, next_send

from .conftest import TOKEN, emulator_client, emulator_file, open_file, snapshot

EXTREMES: list[Any] = [
    None, 0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 0.0, -0.0, 0.1, 1e308, 5e-324, 2.0**-1074, 2.0**100,
    math.inf, -math.inf, "", "it's", "a\x00b", "line\nbreak\r\n", "\u2028 é 😀", b"", b"\x00\xff", "NULL",
]  # fmt: skip


class Counting(httpx.HTTPTransport):
    """A real HTTP transport that counts the requests it carries, by kind (query, import, upload)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: Counter[str] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.sent["query" if path.endswith("/query") else "import" if path.endswith("/import") else "other"] += 1
        return super().handle_request(request)


@pytest.fixture
def counting() -> Counting:
    return Counting()


def client(server: EmulatorServer, transport: httpx.BaseTransport | None = None) -> D1Client:
    return emulator_client(server, timeout=30.0, transport=transport)


def random_double(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if not math.isnan(value):
            return value


SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, a, b, c)"  # a, b, c: no affinity, every class kept


def make_app(path: Path, rows: int, seed: int = 26) -> None:
    rng = random.Random(seed)
    values = EXTREMES + [random_double(rng) for _ in range(rows)] + [rng.getrandbits(64) - 2**63 for _ in range(50)]
    with closing(open_file(path)) as conn:
        conn.execute(SCHEMA)
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(i, values[i % len(values)], values[(i * 7) % len(values)], rng.randbytes(i % 9)) for i in range(rows)],
        )
    Outbox(path).track("items")


@pytest.fixture
def remote(emulator: EmulatorServer) -> Iterator[Path]:
    with closing(open_file(emulator_file_of(emulator))) as conn:
        conn.execute(SCHEMA)
    yield emulator_file_of(emulator)


def emulator_file_of(server: EmulatorServer) -> Path:
    with client(server) as d1:
        d1.prepare("SELECT 1").all()  # auto-created on first use
    return emulator_file(server)


def items_of(path: Path) -> list[tuple[Any, ...]]:
    """The exact snapshot of ``path``'s items table (the connection closed at once)."""
    with closing(open_file(path)) as conn:
        return snapshot(conn, "items")


def drain(worker: SyncWorker, passes: int = 50) -> None:
    for _ in range(passes):
        if not worker.sync_once().more and not worker.pending():
            return
    raise AssertionError(f"{worker.pending()} changes still pending")


def test_a_large_backlog_goes_through_one_import_in_a_few_requests_and_arrives_exact(
    tmp_path: Path, emulator: EmulatorServer, remote: Path, counting: Counting
) -> None:
    app = tmp_path / "app.db"
    make_app(app, 3_000)
    with closing(open_file(remote)) as conn:  # rows D1 holds that the file has deleted since
        conn.executemany("INSERT INTO items (id, a) VALUES (?, 'stale')", [(i,) for i in range(3_000, 3_010)])
    with closing(open_file(app)) as conn:
        conn.executemany("INSERT INTO items (id, a) VALUES (?, 'gone')", [(i,) for i in range(3_000, 3_010)])
        conn.execute("DELETE FROM items WHERE id >= 3000")
    with client(emulator, counting) as d1, SyncWorker(app, d1, SyncConfig(import_threshold=1_000)) as worker:
        drain(worker)
        assert worker.counters.rows == 3_010
    assert items_of(remote) == items_of(app)
    # The first pass checks the remote table and sends one window (the remote schema was not yet known to fit);
    # the rest went through one import: init and ingest (the upload is not an API request).
    assert counting.sent["import"] == 2 and counting.sent["query"] <= 3, counting.sent
    assert counting.sent["other"] == 1  # the upload, to the signed URL


def test_via_batch_never_imports_and_auto_waits_for_the_threshold(
    tmp_path: Path, emulator: EmulatorServer, remote: Path
) -> None:
    for via, threshold in (("batch", 1), ("auto", 10_000)):
        app = tmp_path / f"{via}.db"
        make_app(app, 2_000)
        counting = Counting()
        with client(emulator, counting) as d1:
            with SyncWorker(app, d1, SyncConfig(via=via, import_threshold=threshold, window=500)) as worker:  # type: ignore[arg-type]
                drain(worker)
        assert counting.sent["import"] == 0 and counting.sent["query"] >= 4, (via, counting.sent)
        assert items_of(remote) == items_of(app)


def test_via_import_takes_a_small_backlog_too(
    tmp_path: Path, emulator: EmulatorServer, remote: Path, counting: Counting
) -> None:
    app = tmp_path / "app.db"
    make_app(app, 50)
    with client(emulator, counting) as d1, SyncWorker(app, d1, SyncConfig(via="import", window=10)) as worker:
        drain(worker)
    assert counting.sent["import"] == 2
    assert items_of(remote) == items_of(app)


def test_a_backlog_whose_import_file_would_pass_d1s_limit_goes_through_batches(
    tmp_path: Path,
    emulator: EmulatorServer,
    remote: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """D1 imports a file of at most 5 GB: a backlog that needs more goes through batches, then imports resume."""
    monkeypatch.setattr(seedfile, "MAX_IMPORT_BYTES", 20_000)  # D1's 5 GB, scaled down with the backlog
    app = tmp_path / "app.db"
    make_app(app, 2_000)
    counting = Counting()
    with client(emulator, counting) as d1, SyncWorker(app, d1, SyncConfig(via="import", window=500)) as worker:
        with caplog.at_level(logging.WARNING, logger="d1sync"):
            drain(worker)
        assert counting.sent["import"] == 0 and counting.sent["query"] >= 4, counting.sent
        assert items_of(remote) == items_of(app)
        assert any("passed D1's limit of 20,000 bytes" in r.getMessage() for r in caplog.records)
        with closing(open_file(app)) as conn:  # a backlog under the limit, once the big one went
            conn.executemany("UPDATE items SET a = ? WHERE id = ?", [(f"again {i}", i) for i in range(20)])
        drain(worker)
    assert counting.sent["import"] == 2, counting.sent
    assert items_of(remote) == items_of(app)


class WritesDuringImport(D1Client):
    """A client whose import lets the application commit a write first: a write made while D1 imports."""

    app: Path
    imports = 0

    def import_sql(self, sql: Any, **options: Any) -> Any:
        self.imports += 1
        if self.imports == 1:
            with closing(open_file(self.app)) as conn:
                conn.execute("UPDATE items SET a = 'written during the import' WHERE id = 7")
                conn.execute("INSERT INTO items (id, a) VALUES (99999, 'new during the import')")
        return super().import_sql(sql, **options)


def test_rows_written_during_the_import_stay_pending_and_go_after_it(
    tmp_path: Path, emulator: EmulatorServer, remote: Path
) -> None:
    app = tmp_path / "app.db"
    make_app(app, 500)
    d1 = WritesDuringImport(
        account_id="a", database_id=DEFAULT_DATABASE_ID, api_token=TOKEN, base_url=emulator.api_base
    )
    d1.app = app
    with d1, SyncWorker(app, d1, SyncConfig(via="import")) as worker:
        first = worker.sync_once()
        assert first.rows == 500 and worker.pending() == 2  # the import carried the state before the writes
        drain(worker)
    assert items_of(remote) == items_of(app)


def test_a_row_too_big_for_sql_text_goes_through_batches(
    tmp_path: Path, emulator: EmulatorServer, remote: Path, counting: Counting
) -> None:
    app = tmp_path / "app.db"
    make_app(app, 200)
    with closing(open_file(app)) as conn:
        conn.execute("UPDATE items SET a = ? WHERE id = 3", ("x" * 150_000,))
        conn.execute("UPDATE items SET b = ? WHERE id = 4", (bytes(range(256)) * 400,))
    with client(emulator, counting) as d1, SyncWorker(app, d1, SyncConfig(via="import")) as worker:
        first = worker.sync_once()
        assert first.rows == 198 and worker.pending() == 2
        drain(worker)
    assert items_of(remote) == items_of(app)


def test_an_import_d1_refuses_applies_nothing_and_batches_carry_the_rows(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    remote = emulator_file_of(emulator)
    with closing(open_file(remote)) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, a, b, c, CHECK (a IS NOT 'refused'))")
    app = tmp_path / "app.db"
    make_app(app, 300)
    with closing(open_file(app)) as conn:
        conn.execute("UPDATE items SET a = 'refused' WHERE id = 5")
    # D1's table differs on purpose (a CHECK the file lacks): its schema is not d1sync's to make follow.
    config = SyncConfig(via="import", manage_schema=False)
    with client(emulator) as d1, SyncWorker(app, d1, config) as worker:
        drain(worker)
        state = load_state(worker.conn)
        assert state.seeding is None and state.import_declined > 0
        assert worker.status().dead_letters == 1
    assert items_of(remote) == [r for r in items_of(app) if r[1] != 5]


def test_an_import_that_runs_late_is_refused_by_the_fence_and_changes_nothing(
    tmp_path: Path, emulator: EmulatorServer, remote: Path
) -> None:
    app = tmp_path / "app.db"
    make_app(app, 100)
    with closing(open_file(app)) as conn:
        conn.execute("UPDATE items SET a = 'old' WHERE id = 1")
    with client(emulator) as d1, SyncWorker(app, d1, SyncConfig(via="batch")) as worker:
        identity, number = next_send(worker.conn)  # the import's number, taken first...
        late = tmp_path / "late.sql"
        with late.open("w") as out:
            write_seed(worker.conn, {"items": worker_spec(worker)}, out, identity=identity, number=number)
        with closing(open_file(app)) as conn:
            conn.execute("UPDATE items SET a = 'new' WHERE id = 1")
        drain(worker)  # ...then batches with later numbers land first
        with client(emulator) as other, pytest.raises(SQLError) as refused:
            other.import_sql(late)
    assert refused.value.fence == REWOUND
    with closing(open_file(remote)) as conn:
        assert conn.execute("SELECT a FROM items WHERE id = 1").fetchone() == ("new",)
    assert items_of(remote) == items_of(app)


def worker_spec(worker: SyncWorker) -> Any:
    return load_specs(worker.conn)["items"]


def test_status_shows_an_import_under_way(tmp_path: Path, emulator: EmulatorServer, remote: Path) -> None:
    app = tmp_path / "app.db"
    make_app(app, 50)
    seen: list[Any] = []

    class Watching(D1Client):
        def import_sql(self, sql: Any, **options: Any) -> Any:
            with SyncWorker(app, self, SyncConfig()) as other:
                seen.append(other.status().importing)
            return super().import_sql(sql, **options)

    d1 = Watching(account_id="a", database_id=DEFAULT_DATABASE_ID, api_token=TOKEN, base_url=emulator.api_base)
    with d1, SyncWorker(app, d1, SyncConfig(via="import")) as worker:
        drain(worker)
        assert worker.status().importing is None
    assert seen and seen[0]["rows"] == 50 and seen[0]["tables"] == ["items"] and seen[0]["stage"] == "preparing"


def test_sqlite_reads_back_every_value_the_import_wrote(tmp_path: Path) -> None:
    """The literals of the import file, run by plain SQLite, give back each value and its storage class."""
    app = tmp_path / "app.db"
    make_app(app, 400)
    copy = tmp_path / "copy.db"
    with closing(sqlite3.connect(copy)) as conn:
        conn.execute(SCHEMA)
    with client_stub() as unused, SyncWorker(app, unused, SyncConfig()) as worker:
        text = tmp_path / "seed.sql"
        with text.open("w") as out:
            seed = write_seed(worker.conn, {"items": worker_spec(worker)}, out, identity="x", number=1)
    assert seed.rows == 400 and not seed.held
    with closing(sqlite3.connect(copy)) as conn:
        conn.executescript(text.read_text())
    assert items_of(copy) == items_of(app)


def client_stub() -> D1Client:
    return D1Client(account_id="a", database_id="unused", api_token=TOKEN, base_url="http://127.0.0.1:9/client/v4")


STEPS = ["recorded", "init", "uploaded", "ingesting", "complete"]


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_of_an_import_then_a_restart_ends_exact_with_nothing_lost_or_doubled(
    tmp_path: Path, emulator: EmulatorServer, remote: Path, step: str
) -> None:
    app = tmp_path / "app.db"
    make_app(app, 1_000)
    with closing(open_file(remote)) as conn:  # a row D1 holds that the file deleted since
        conn.execute("INSERT INTO items (id, a) VALUES (5000, 'stale')")
    with closing(open_file(app)) as conn:
        conn.execute("INSERT INTO items (id, a) VALUES (5000, 'deleted locally')")
        conn.execute("DELETE FROM items WHERE id = 5000")
    child = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("import_process.py")), str(app), emulator.api_base, TOKEN, step],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL and "dying" in child.stdout, (child.stdout, child.stderr[-2000:])
    with closing(open_file(app)) as conn:  # the application goes on writing after the crash
        conn.execute("UPDATE items SET a = 'after the crash' WHERE id = 3")
    with client(emulator) as d1, SyncWorker(app, d1, SyncConfig(via="import")) as worker:
        drain(worker)
        status = worker.status()
        assert status.dead_letters == 0 and status.importing is None and worker.pending() == 0
    assert items_of(remote) == items_of(app)


def test_text_that_is_not_utf8_is_left_to_batches_and_the_rest_goes_through_the_import(
    tmp_path: Path, emulator: EmulatorServer, remote: Path
) -> None:
    app = tmp_path / "app.db"
    make_app(app, 300)
    with closing(open_file(app)) as conn:  # SQLite stores any bytes as TEXT; D1 cannot hold these
        conn.execute("UPDATE items SET a = CAST(x'ff00fe' AS TEXT) WHERE id = 9")
    with client(emulator) as d1, SyncWorker(app, d1, SyncConfig(via="import")) as worker:
        first = worker.sync_once()
        assert first.rows == 299 and worker.pending() == 1
        drain(worker)
        assert worker.status().dead_letters == 1  # dead-lettered by the batch path, with the reason
    assert items_of(remote) == [r for r in items_of(app) if r[1] != 9]
