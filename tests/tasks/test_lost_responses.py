"""Lost responses through the real emulator over a socket: a write applied but unanswered costs nothing.

"Unanswered" comes in two kinds, and each test runs with both: a 502 page or a dropped connection, and a
200 "success" that proves nothing (no result, a null or short one, a failed statement).

A claim, completion, failure, heartbeat or add whose response is lost is recognised when it is sent again
(by the client's own retry, or by calling the queue again after the error reached the caller), so no task is
claimed twice, burns an attempt, reports a stale claim or is added twice.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from d1sync.backoff import Backoff
from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator.faults import FaultConfig
from d1sync.emulator.server import EmulatorServer
from d1sync.errors import TransientError
from d1sync.tasks import Task, TaskQueue

from .conftest import TOKEN

FAST = Backoff(base=0.005, cap=0.02)


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """An emulator of our own on a loopback socket, so its faults reach no other test."""
    with EmulatorServer(tmp_path_factory.mktemp("lossy"), token=TOKEN, auto_create=True) as server:
        yield server


LOSSES = {
    "lost": FaultConfig(lost_response_rate=1.0, seed=1),
    "garbled": FaultConfig(garbled_rate=1.0, garbled_mode="applied", seed=1),
}


class Faults:
    """The lossy emulator's faults: ``lose_next()`` hides the outcome of what follows, ``answer()`` stops it."""

    def __init__(self, injector: Any, loss: FaultConfig) -> None:
        self.injector = injector
        self.loss = loss

    def lose_next(self) -> None:
        self.injector.configure(self.loss)

    def lose_some(self, rate: float) -> None:
        """Hide the outcome of ``rate`` of the requests (a garbled answer applied or not), 10 % overloaded."""
        if self.loss.garbled_rate:
            self.injector.configure(FaultConfig(garbled_rate=rate, error_rate=0.1, seed=0))
        else:
            self.injector.configure(FaultConfig(lost_response_rate=rate, error_rate=0.1, seed=0))

    def answer(self) -> None:
        self.injector.configure(None)


@pytest.fixture(params=sorted(LOSSES))
def faults(lossy: EmulatorServer, request: pytest.FixtureRequest) -> Iterator[Faults]:
    injector = lossy.app.state.faults
    yield Faults(injector, LOSSES[request.param])
    injector.configure(None)


def client(server: EmulatorServer, database_id: str, *, retries: int) -> D1Client:
    policy = RetryPolicy(max_retries=retries, backoff=FAST)
    return D1Client(account_id="acct", database_id=database_id, api_token=TOKEN, base_url=server.api_base, retry=policy)


@pytest.fixture
def board(lossy: EmulatorServer) -> Iterator[tuple[D1Client, D1Client]]:
    """(a client that never retries, a clean client for checking) on one fresh database."""
    database_id = str(uuid.uuid4())
    with client(lossy, database_id, retries=0) as once, client(lossy, database_id, retries=0) as check:
        yield once, check


def test_a_lost_claim_is_returned_by_the_next_call_and_costs_no_attempt(
    faults: Faults, board: tuple[D1Client, D1Client]
) -> None:
    db, check = board
    queue = TaskQueue(db)
    first, second = queue.add("a"), queue.add("b")
    faults.lose_next()
    with pytest.raises(TransientError):
        queue.claim("w", lease=60)
    faults.answer()
    task = queue.claim("w", lease=60)
    assert task is not None and task.id == first and task.attempts == 1
    assert TaskQueue(check).stats()["claimed"] == 1  # the retry claimed nothing more
    again = queue.claim("w", lease=60)
    assert again is not None and again.id == second and again.claim_id != task.claim_id


def test_a_lost_claim_many_returns_the_same_tasks(faults: Faults, board: tuple[D1Client, D1Client]) -> None:
    db, check = board
    queue = TaskQueue(db)
    ids = queue.add_many(range(5))
    faults.lose_next()
    with pytest.raises(TransientError):
        queue.claim_many("w", 3)
    faults.answer()
    tasks = queue.claim_many("w", 3)
    assert [t.id for t in tasks] == ids[:3] and {t.attempts for t in tasks} == {1}
    assert len({t.claim_id for t in tasks}) == 1
    assert TaskQueue(check).stats()["claimed"] == 3


def test_an_explicit_claim_id_is_recognised_by_another_queue(faults: Faults, board: tuple[D1Client, D1Client]) -> None:
    """A process that restarts (or the CLI's --claim-id) retries with the claim id it chose."""
    db, check = board
    TaskQueue(db).add_many(range(3))
    faults.lose_next()
    with pytest.raises(TransientError):
        TaskQueue(db, create=False).claim("w", claim_id="claim-1")
    faults.answer()
    task = TaskQueue(check, create=False).claim("w", claim_id="claim-1")
    assert task is not None and (task.claim_id, task.attempts) == ("claim-1", 1)
    assert TaskQueue(check).stats()["claimed"] == 1


def test_lost_complete_fail_and_heartbeat_answer_true_when_called_again(
    faults: Faults, board: tuple[D1Client, D1Client]
) -> None:
    db, check = board
    queue = TaskQueue(db)
    queue.add_many(["done", "retried", "given up"])
    calls = [
        lambda t: queue.heartbeat(t.id, t.claim_id, lease=30),
        lambda t: queue.complete(t.id, t.claim_id, result={"ok": 1}),
        lambda t: queue.fail(t.id, t.claim_id, error="boom"),
        lambda t: queue.fail(t.id, t.claim_id, error="bad input", retry=False),
    ]
    tasks = [queue.claim("w") for _ in range(3)]
    for call, task in zip(calls, [tasks[0], tasks[0], tasks[1], tasks[2]], strict=True):
        assert task is not None
        faults.lose_next()
        with pytest.raises(TransientError):
            call(task)
        faults.answer()
        assert call(task), "a lost response turned into a stale claim"
    states = {t.payload: (t.status, t.attempts, t.error) for t in TaskQueue(check).list()}
    assert states == {"done": ("done", 1, None), "retried": ("open", 1, "boom"), "given up": ("failed", 1, "bad input")}
    assert not queue.complete(tasks[0].id, tasks[0].claim_id, result="another call")  # type: ignore[union-attr]


def test_a_lost_hand_over_answers_true_and_posts_once(faults: Faults, board: tuple[D1Client, D1Client]) -> None:
    db, check = board
    db.exec("CREATE TABLE posts (n INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT)")
    queue = TaskQueue(db)
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None

    def hand_over() -> bool:
        post = db.prepare("INSERT INTO posts (text) VALUES (?)").bind("answer")
        _, step = queue.add_statement("next step")
        return queue.complete(task.id, task.claim_id, result="r", then=[post, step])

    faults.lose_next()
    with pytest.raises(TransientError):
        hand_over()
    faults.answer()
    assert hand_over()
    assert check.prepare("SELECT count(*) AS n FROM posts").first("n") == 1
    assert TaskQueue(check).stats()["total"] == 2  # the task and one next step


def test_a_retried_add_many_never_duplicates(faults: Faults, lossy: EmulatorServer) -> None:
    """add_many raises partway under faults; calling it again with the same payloads adds only the rest."""
    database_id = str(uuid.uuid4())
    with client(lossy, database_id, retries=0) as db, client(lossy, database_id, retries=0) as check:
        queue = TaskQueue(db)
        faults.lose_some(0.3)
        payloads = [{"n": n} for n in range(1000)]
        failures = 0
        while True:
            try:
                ids = queue.add_many(payloads)
                break
            except TransientError:
                failures += 1
        faults.answer()
        assert failures >= 2, "the faults never interrupted add_many"
        rows = check.prepare("SELECT id, payload FROM tasks ORDER BY id").all().results
        assert [r["id"] for r in rows] == sorted(ids) and len(set(ids)) == 1000
        assert sorted(TaskQueue(check).get(i).payload["n"] for i in ids) == list(range(1000))  # type: ignore[union-attr]


def test_add_many_with_own_ids_is_idempotent_across_queues(board: tuple[D1Client, D1Client]) -> None:
    db, check = board
    ids = [f"job-{n}" for n in range(250)]
    assert TaskQueue(db).add_many(range(250), ids=ids) == ids
    assert TaskQueue(check).add_many(range(250), ids=ids) == ids
    assert TaskQueue(check).add("other payload", task_id="job-7") == "job-7"
    assert TaskQueue(check).stats()["total"] == 250
    assert TaskQueue(check).get("job-7").payload == 7  # type: ignore[union-attr]


def storm(server: EmulatorServer, *, tasks: int, workers: int, batch: int, rate: float) -> None:
    """Workers claim and complete every task while ``rate`` of all responses are lost; checks the board after.

    Each worker's client retries once; an error that still reaches the worker is met by calling again.
    Leases are long and nobody expires them: a claim lost for good would leave its task claimed forever.
    """
    database_id = str(uuid.uuid4())
    with client(server, database_id, retries=0) as admin:
        queue = TaskQueue(admin)
        ids = queue.add_many(range(tasks))
        server.app.state.faults.configure(FaultConfig(lost_response_rate=rate, seed=14))
        completed: list[str] = []
        stale: list[str] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            with client(server, database_id, retries=1) as db:
                mine = TaskQueue(db, create=False)

                def finish(task: Task) -> bool:
                    assert task.claim_id is not None
                    return mine.complete(task.id, task.claim_id, result=i)

                while claimed := persist(lambda: mine.claim_many(f"w{i}", batch, lease=600)):
                    for task in claimed:
                        ok = persist(lambda task=task: finish(task))
                        with lock:
                            (completed if ok else stale).append(task.id)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = server.app.state.faults.stats
        server.app.state.faults.configure(None)
        assert stats["lost_502"] + stats["lost_drop"] >= tasks * rate / 2, "too few responses were lost"
        assert not stale, "a lost completion came back as a stale claim"
        assert Counter(completed).most_common(1)[0][1] == 1 and sorted(completed) == sorted(ids)
        board = queue.list(limit=tasks)
        assert Counter((t.status, t.attempts) for t in board) == {("done", 1): tasks}


def persist(call: Any) -> Any:
    """Call again until the call gets an answer (as a worker loop does)."""
    while True:
        try:
            return call()
        except TransientError:
            continue


def test_under_lost_responses_every_task_is_done_once_in_one_attempt(lossy: EmulatorServer) -> None:
    storm(lossy, tasks=300, workers=4, batch=1, rate=0.1)


def test_under_lost_responses_claim_many_does_every_task_once_in_one_attempt(lossy: EmulatorServer) -> None:
    storm(lossy, tasks=300, workers=4, batch=7, rate=0.1)


@pytest.mark.slow
def test_a_long_storm_of_lost_responses_leaves_no_task_dead(lossy: EmulatorServer) -> None:
    """The issue's figure: 1,500 tasks at 10 % lost responses, default max_attempts=3; before, 5 ended dead."""
    storm(lossy, tasks=1500, workers=8, batch=1, rate=0.1)
    storm(lossy, tasks=1500, workers=8, batch=10, rate=0.2)
