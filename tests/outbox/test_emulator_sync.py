"""The worker against the real emulator over a loopback socket: faults, poison rows, auth failures."""

from __future__ import annotations

import math
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from d1sync.client import D1Client
from d1sync.emulator.faults import FaultConfig, Garble
from d1sync.emulator.server import EmulatorServer
from d1sync.local import LocalDatabase
from d1sync.outbox import Backoff, Limits, Outbox, SyncConfig, drain

from ..conftest import Closer
from .conftest import TOKEN, FakeClock, OpenWorker, emulator_client, emulator_file, open_file, snapshot

SCHEMA = """
CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES authors (id),
    title TEXT,
    body BLOB,
    score REAL,
    big INTEGER
)
"""


def write_many_small_transactions(app: LocalDatabase, seed: int, transactions: int, pause: float = 0.0) -> int:
    """Inserts, updates, deletes and key changes over two related tables, a few rows per transaction.

    Returns how many rows were written (inserted, updated or deleted)."""
    rng = random.Random(seed)
    next_post = next_author = 0
    authors: list[int] = []
    posts: dict[int, int] = {}
    written = 0
    for t in range(transactions):
        with app.atomic() as conn:
            if t % 10 == 0 or not authors:
                next_author += 1
                authors.append(next_author)
                conn.execute("INSERT INTO authors VALUES (?, ?)", (authors[-1], f"author {authors[-1]} ✍️"))
                written += 1
            for _ in range(rng.randint(3, 12)):
                next_post += 1
                author = rng.choice(authors)
                posts[next_post] = author
                written += 1
                conn.execute(
                    "INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        next_post,
                        author,
                        f"post {next_post} 😀" * rng.randint(1, 5),
                        rng.randbytes(rng.randint(0, 64)),
                        rng.uniform(-1e6, 1e6),
                        rng.choice([2**63 - 1, -(2**63), rng.randint(-(2**62), 2**62)]),
                    ),
                )
            for post in rng.sample(sorted(posts), k=min(len(posts), 3)):
                conn.execute("UPDATE posts SET title = ?, score = ? WHERE id = ?", (f"edited {t}", t / 7, post))
                written += 1
            if len(posts) > 20 and rng.random() < 0.3:
                gone = rng.choice(sorted(posts))
                conn.execute("DELETE FROM posts WHERE id = ?", (gone,))
                del posts[gone]
                written += 1
            if len(posts) > 20 and rng.random() < 0.1:
                old = rng.choice(sorted(posts))
                new = 1_000_000 + old
                conn.execute("UPDATE posts SET id = ? WHERE id = ?", (new, old))
                written += 1
                posts[new] = posts.pop(old)
            if len(authors) > 3 and rng.random() < 0.02:
                # Retire an author: their posts go first (the foreign key), in the same transaction.
                author = authors.pop(0)
                written += conn.execute("DELETE FROM posts WHERE author_id = ?", (author,)).rowcount
                written += conn.execute("DELETE FROM authors WHERE id = ?", (author,)).rowcount
                posts = {p: a for p, a in posts.items() if a != author}
        time.sleep(pause)
    return written


def assert_remote_equals_local(app: LocalDatabase, remote_path: Path, tables: list[str]) -> None:
    remote = open_file(remote_path)
    try:
        for table in tables:
            local_rows = snapshot(app.connection, table)
            remote_rows = snapshot(remote, table)
            assert len(remote_rows) == len(local_rows), table
            assert remote_rows == local_rows, table
    finally:
        remote.close()


def test_thousands_of_small_transactions_arrive_exactly_through_every_kind_of_fault(
    tmp_path: Path, open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    with EmulatorServer(tmp_path / "emulator", token="t0ken", auto_create=True) as srv:
        with emulator_client(srv, token="t0ken") as setup:
            setup.exec(SCHEMA)  # before the faults, with a timeout a loaded machine cannot miss
        # The worker's short timeout lets the emulator's slow answers (0.3 s) time out; on a busy
        # machine a normal answer may too, which the worker retries like any other timeout.
        client = emulator_client(srv, token="t0ken", timeout=0.15)
        srv.app.state.faults.configure(
            FaultConfig(
                error_rate=0.06,
                rate_limit_rate=0.04,
                timeout_rate=0.02,
                html_rate=0.06,
                lost_response_rate=0.08,
                garbled_rate=0.04,
                seed=20240601,
                retry_after=0,
                timeout_delay=0.3,
                timeout_action="drop",
            )
        )
        app = closer(LocalDatabase(tmp_path / "app.db"))
        app.exec(SCHEMA)
        Outbox(tmp_path / "app.db").track("authors", "posts")
        worker = open_worker(
            tmp_path / "app.db",
            client,
            config=SyncConfig(
                limits=Limits(max_value_bytes=2_000, max_request_bytes=4_000, max_statements=2),
                window=400,
                backoff=Backoff(base=0.005, cap=0.05),
                poll_interval=0.01,
                seed=3,
            ),
        )
        loop = threading.Thread(target=worker.run, kwargs={"idle_interval": 0.05})
        loop.start()
        try:
            written = write_many_small_transactions(app, seed=11, transactions=400, pause=0.004)
        finally:
            worker.stop(flush_timeout=5.0)
            loop.join(timeout=30)
        assert not loop.is_alive()
        drain(worker, sleep=time.sleep)

        stats = srv.app.state.faults.stats
        for fault in (
            "error_503",
            "error_500",
            "rate_limited",
            "timeout",
            "html_504",
            "lost_502",
            "lost_drop",
            "garbled",
        ):
            assert stats[fault] > 0, (fault, stats)
        status = Outbox(tmp_path / "app.db").status()
        assert (status.pending_changes, status.dead_letters) == (0, 0)
        assert written > 3_000
        assert app.prepare("SELECT count(*) AS n FROM posts").first("n") > 1_000
        assert_remote_equals_local(app, emulator_file(srv), ["authors", "posts"])
        worker.close()
        client.close()


@pytest.fixture
def clients(emulator: EmulatorServer) -> Iterator[Callable[..., D1Client]]:
    """Make D1Clients to the emulator (closed after the test); ``token=`` picks the token they send."""
    made: list[D1Client] = []

    def make(token: str = TOKEN) -> D1Client:
        made.append(emulator_client(emulator, token=token))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_a_row_the_remote_refuses_is_dead_lettered_and_delivered_after_the_fix(
    tmp_path: Path,
    emulator: EmulatorServer,
    clients: Callable[..., D1Client],
    open_worker: OpenWorker,
    closer: Closer[Any],
) -> None:
    client = clients()
    client.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER CHECK (n >= 0))")
    app = closer(LocalDatabase(tmp_path / "app.db"))
    app.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER)")
    outbox = Outbox(tmp_path / "app.db")
    outbox.track("notes", manage_schema=False)  # the remote's CHECK is someone else's
    with app.atomic() as conn:
        conn.executemany(
            "INSERT INTO notes VALUES (?, ?, ?)", [(i, f"note {i}", -1 if i == 42 else i) for i in range(300)]
        )
    worker = open_worker(
        tmp_path / "app.db", client, config=SyncConfig(limits=Limits(max_value_bytes=2_000, max_statements=3))
    )
    result = worker.sync_once()
    assert (result.rows, result.dead) == (299, 1)
    [dead] = outbox.dead_letters()
    assert dead.key == "[42]" and "CHECK constraint failed" in dead.error
    remote = open_file(emulator_file(emulator))
    remote_ids = [r[0] for r in remote.execute("SELECT id FROM notes ORDER BY id")]
    remote.close()
    assert remote_ids == [i for i in range(300) if i != 42]

    # Fix the remote (drop the CHECK), retry the dead letter: it is delivered.
    client.exec(
        "CREATE TABLE notes_new (id INTEGER PRIMARY KEY, body TEXT, n INTEGER);"
        "INSERT INTO notes_new SELECT * FROM notes; DROP TABLE notes; ALTER TABLE notes_new RENAME TO notes"
    )
    assert outbox.retry_dead() == 1
    assert [d.retrying for d in outbox.dead_letters()] == [True]  # until D1 acknowledges the row
    assert outbox.status().dead_letters == 0
    assert worker.sync_once().rows == 1
    assert outbox.status().pending_changes == 0 and outbox.dead_letters() == []
    assert_remote_equals_local(app, emulator_file(emulator), ["notes"])


def test_a_wrong_token_pauses_the_worker_and_the_right_one_delivers_everything(
    tmp_path: Path,
    emulator: EmulatorServer,
    clients: Callable[..., D1Client],
    clock: FakeClock,
    open_worker: OpenWorker,
    closer: Closer[Any],
) -> None:
    good = clients()
    good.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    app = closer(LocalDatabase(tmp_path / "app.db"))
    app.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    outbox = Outbox(tmp_path / "app.db")
    outbox.track("notes")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(i, f"n{i}") for i in range(50)])
    bad = clients(token="wrong-token-B")
    worker = open_worker(tmp_path / "app.db", bad, clock=clock, config=SyncConfig(pause_interval=20.0))

    result = worker.sync_once(now=clock())
    assert result.state == "paused" and result.retry_in == 20.0
    status = outbox.status()
    assert status.paused is not None and "Authentication error" in status.paused
    assert status.last_error is not None and status.last_error["kind"] == "AuthError"
    assert (status.pending_changes, status.dead_letters) == (50, 0)
    assert "wrong-token-B" not in repr(status.to_dict())
    assert worker.sync_once(now=clock() + 10).state == "paused"  # waits out the pause, no retry storm

    # Tokens fixed: the worker resumes after the pause and delivers everything.
    worker.target = good
    clock.advance(20.0)
    assert worker.sync_once(now=clock()).rows == 50
    assert outbox.status().paused is None
    assert_remote_equals_local(app, emulator_file(emulator), ["notes"])

    # A token revoked while running: pauses at the send, keeps the new rows, and resumes the same way.
    with app.atomic() as conn:
        conn.executemany("INSERT OR REPLACE INTO notes VALUES (?, ?)", [(i, f"v2 {i}") for i in range(40, 60)])
    worker.target = bad
    clock.advance(1.0)
    assert worker.sync_once(now=clock()).state == "paused"
    assert (outbox.status().pending_changes, outbox.status().dead_letters) == (20, 0)
    worker.target = good
    clock.advance(20.0)
    assert worker.sync_once(now=clock()).rows == 20
    assert_remote_equals_local(app, emulator_file(emulator), ["notes"])


def test_a_missing_remote_table_pauses_with_its_name(
    tmp_path: Path,
    emulator: EmulatorServer,
    clients: Callable[..., D1Client],
    open_worker: OpenWorker,
    closer: Closer[Any],
) -> None:
    app = closer(LocalDatabase(tmp_path / "app.db"))
    app.exec("CREATE TABLE audit_log (id INTEGER PRIMARY KEY, line TEXT)")
    Outbox(tmp_path / "app.db").track("audit_log", manage_schema=False)
    app.prepare("INSERT INTO audit_log VALUES (1, 'x')").run()
    worker = open_worker(tmp_path / "app.db", clients())
    result = worker.sync_once()
    assert "table 'audit_log' is missing on the remote" in result.paused_tables["audit_log"]
    status = Outbox(tmp_path / "app.db").status()
    assert status.pending_changes == 1 and not status.healthy
    table = status.table_states["audit_log"]
    assert table.state == "paused" and table.fix is not None and "CREATE TABLE audit_log" in table.fix


@pytest.mark.parametrize("applied", ["unapplied", "applied"])
@pytest.mark.parametrize("form", [g.value for g in Garble])
def test_a_success_that_proves_nothing_acknowledges_nothing(
    form: str,
    applied: Any,
    tmp_path: Path,
    emulator: EmulatorServer,
    clients: Callable[..., D1Client],
    open_worker: OpenWorker,
    closer: Closer[Any],
) -> None:
    """A 200 "success" with no result, a null one, too few results or a failed statement is an unknown outcome:
    nothing leaves the outbox on it, the error names the answer's shape, and the next send delivers all."""
    client = clients()
    client.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    app = closer(LocalDatabase(tmp_path / "app.db"))
    app.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    Outbox(tmp_path / "app.db").track("notes")
    worker = open_worker(tmp_path / "app.db", client)
    app.prepare("INSERT INTO notes VALUES (-1, 'checks the remote schema first')").run()
    assert worker.sync_once().rows == 1
    with app.atomic() as conn:
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(i, f"note {i}") for i in range(100)])
    emulator.app.state.faults.configure(FaultConfig(garbled_rate=1.0, garbled_mode=applied, garbled_forms=(form,)))

    result = worker.sync_once()

    assert result.error is not None and "proves nothing" in result.error
    assert Outbox(tmp_path / "app.db").status().pending_changes == 100
    assert emulator.app.state.faults.stats["garbled"] == 1
    emulator.app.state.faults.configure(FaultConfig())
    drain(worker, sleep=lambda s: None)
    assert Outbox(tmp_path / "app.db").status().pending_changes == 0
    assert_remote_equals_local(app, emulator_file(emulator), ["notes"])


def test_every_double_arrives_bit_for_bit_and_verify_agrees(
    tmp_path: Path, clients: Callable[..., D1Client], open_worker: OpenWorker, closer: Closer[Any]
) -> None:
    """The issue's repro: 2,000 random double bit patterns (NaN and infinities skipped) synced to the emulator,
    whose SQLite 3.47 misread 338 of them as decimal text."""
    client = clients()
    client.exec("CREATE TABLE r (id INTEGER PRIMARY KEY, x REAL)")
    app = closer(LocalDatabase(tmp_path / "app.db"))
    app.exec("CREATE TABLE r (id INTEGER PRIMARY KEY, x REAL)")
    Outbox(tmp_path / "app.db").track("r")
    rng = random.Random(2000)
    doubles = []
    while len(doubles) < 2_000:
        (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(x):
            doubles.append(x)
    with app.atomic() as conn:
        conn.executemany("INSERT INTO r VALUES (?, ?)", list(enumerate(doubles)))
    worker = open_worker(tmp_path / "app.db", client)
    drain(worker, sleep=lambda s: None)
    rows = client.prepare("SELECT id, x FROM r ORDER BY id").raw()
    assert [struct.pack("<d", x) for _, x in rows] == [struct.pack("<d", x) for x in doubles]
    report = worker.verify()
    assert report.equal, report


def test_values_d1_accepts_arrive_whatever_their_json_form_and_only_rows_over_its_limit_are_dead(
    tmp_path: Path,
    emulator: EmulatorServer,
    clients: Callable[..., D1Client],
    open_worker: OpenWorker,
    closer: Closer[Any],
) -> None:
    """1.1 MB of quotes or of newlines doubles as JSON, and a 1.5 MB BLOB triples as hex: all under D1's
    2,000,000 bytes, so they must arrive. A 2.5 MB BLOB is over it: the one dead letter, saying so."""
    schema = "CREATE TABLE big (id INTEGER PRIMARY KEY, t TEXT, b BLOB, n INTEGER)"
    client = clients()
    client.exec(schema)
    app = closer(LocalDatabase(tmp_path / "app.db"))
    app.exec(schema)
    Outbox(tmp_path / "app.db").track("big")
    rng = random.Random(7)
    rows = [
        (1, '"' * 1_100_000, None, 1),
        (2, "\n" * 1_100_000, b"\x00small", 2**62),
        (3, "é", rng.randbytes(1_500_000), -1),
        (4, "a\x00b" * 200_000, rng.randbytes(600_000), 4),
        (5, "ok", rng.randbytes(2_500_000), 5),
        (6, "plain", b"", 6),
    ]
    with app.atomic() as conn:
        conn.executemany("INSERT INTO big VALUES (?, ?, ?, ?)", rows)
    worker = open_worker(tmp_path / "app.db", client)
    drain(worker, sleep=lambda s: None)
    status = Outbox(tmp_path / "app.db").status()
    assert (status.pending_changes, status.dead_letters) == (0, 1)
    [letter] = Outbox(tmp_path / "app.db").dead_letters()
    assert letter.key == "[5]" and "2,000,000" in letter.error
    with closing(open_file(emulator_file(emulator))) as remote:
        local = [row for row in snapshot(app.connection, "big") if row[1] != 5]  # all but what D1 cannot hold
        assert snapshot(remote, "big") == local
