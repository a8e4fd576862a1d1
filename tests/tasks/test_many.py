"""claim_many, complete_many, client-chosen ids and claim ids: the contract on every Database backend."""

from __future__ import annotations

import pytest

from d1sync.database import Database
from d1sync.errors import SQLError
from d1sync.tasks import TaskQueue

from .conftest import START, FakeClock

MS = int(START * 1000)


def test_claim_many_takes_tasks_in_claim_order_under_one_claim(db: Database, clock: FakeClock) -> None:
    queue = TaskQueue(db, clock=clock)
    low = queue.add_many(["a", "b", "c"])
    high = queue.add("urgent", priority=5)
    queue.add("later", delay=10)
    tasks = queue.claim_many("w", 3, lease=30)
    assert [t.id for t in tasks] == [high, low[0], low[1]]
    assert {(t.status, t.claimed_by, t.attempts, t.lease_until) for t in tasks} == {("claimed", "w", 1, MS + 30_000)}
    assert len({t.claim_id for t in tasks}) == 1
    rest = queue.claim_many("w", 10)
    assert [t.id for t in rest] == [low[2]]  # the delayed task is not available yet
    assert queue.claim_many("w", 10) == []


def test_claim_many_by_role_takes_only_that_role(db: Database, clock: FakeClock) -> None:
    queue = TaskQueue(db, clock=clock)
    writers = queue.add_many(range(3), role="writer")
    queue.add_many(range(3), role="reviewer")
    assert [t.id for t in queue.claim_many("w", 5, role="writer")] == writers


def test_claim_many_tasks_are_fenced_and_expire_one_by_one(db: Database, clock: FakeClock) -> None:
    queue = TaskQueue(db, clock=clock, timeout=10)
    queue.add_many(range(3))
    first, second, third = queue.claim_many("w", 3)
    assert first.claim_id is not None and second.claim_id is not None and third.claim_id is not None
    assert queue.complete(first.id, first.claim_id)
    assert queue.heartbeat(second.id, second.claim_id, lease=60)
    clock.advance(11)
    assert queue.expire() == 1  # only the third one's lease ran out
    assert not queue.complete(third.id, third.claim_id)
    assert queue.complete(second.id, second.claim_id)
    again = queue.claim("v")
    assert again is not None and (again.id, again.attempts) == (third.id, 2)


def test_a_resent_claim_id_returns_what_it_holds_and_claims_nothing_more(db: Database, clock: FakeClock) -> None:
    """What the client's resend after a lost response does: the same claim id, the same call."""
    queue = TaskQueue(db, clock=clock)
    ids = queue.add_many(range(4))
    first = queue.claim_many("w", 2, claim_id="c-1")
    clock.advance(1)
    again = queue.claim_many("w", 2, claim_id="c-1")
    assert [t.id for t in again] == [t.id for t in first] == ids[:2]
    assert again == first  # same lease, same attempt: nothing was written
    assert queue.stats()["claimed"] == 2
    single = queue.claim("w", claim_id="c-2")
    assert single is not None and queue.claim("w", claim_id="c-2") == single


def test_a_claim_id_that_holds_nothing_claims_afresh(db: Database, clock: FakeClock) -> None:
    queue = TaskQueue(db, clock=clock)
    task_id = queue.add("x")
    task = queue.claim("w", claim_id="c-1")
    assert task is not None and task.claim_id == "c-1"
    assert queue.complete(task_id, "c-1")
    queue.add("y")
    fresh = queue.claim("w", claim_id="c-1")  # done tasks do not count: it holds nothing now
    assert fresh is not None and fresh.id != task_id


def test_complete_many_fences_each_completion(db: Database, clock: FakeClock) -> None:
    queue = TaskQueue(db, clock=clock)
    queue.add_many(range(3))
    a, b, c = queue.claim_many("w", 3)
    assert a.claim_id and b.claim_id and c.claim_id
    clock.advance(2)
    done = queue.complete_many([(a.id, a.claim_id, {"n": 1}), (b.id, "not-the-claim", 2), (c.id, c.claim_id, None)])
    assert done == [True, False, True]
    states = {t.id: (t.status, t.result, t.finished_at) for t in queue.list()}
    assert states[a.id] == ("done", {"n": 1}, MS + 2000) and states[b.id][0] == "claimed"
    assert queue.complete_many([]) == []


def test_the_same_completion_sent_twice_answers_true_twice(db: Database, clock: FakeClock) -> None:
    """A resend carries the same result and time; another call differs in one of them and gets False."""
    queue = TaskQueue(db, clock=clock)
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    sent = [(task.id, task.claim_id, {"ok": True})]
    assert queue.complete_many(sent) == [True]
    assert queue.complete_many(sent) == [True]  # same clock reading: indistinguishable from a resend
    assert not queue.complete(task.id, task.claim_id, result="different")
    clock.advance(1)
    assert queue.complete_many(sent) == [False]


def test_own_task_ids_make_adds_idempotent(db: Database, clock: FakeClock) -> None:
    queue = TaskQueue(db, clock=clock)
    assert queue.add({"v": 1}, task_id="job-1") == "job-1"
    assert queue.add({"v": 2}, task_id="job-1") == "job-1"
    assert queue.add_many(["a", "b"], ids=["job-1", "job-2"]) == ["job-1", "job-2"]
    assert queue.stats()["total"] == 2
    assert queue.get("job-1").payload == {"v": 1}  # type: ignore[union-attr]


def test_calling_add_many_again_after_it_raised_adds_nothing_twice(db: Database, clock: FakeClock) -> None:
    """The queue remembers the ids of a call that raised, so the same call again reuses them."""
    queue = TaskQueue(db, clock=clock)
    queue.add_many(range(3), ids=["b", "c", "d"])
    db.exec(
        "CREATE TRIGGER refuse BEFORE INSERT ON tasks WHEN NEW.payload = '450' BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    with pytest.raises(SQLError, match="no") as raised:
        queue.add_many(range(500))
    assert any("400 of 500 tasks were added" in note for note in raised.value.__notes__)
    db.exec("DROP TRIGGER refuse")
    ids = queue.add_many(range(500))
    assert queue.stats()["total"] == 503 and len(set(ids)) == 500
    assert sorted(t.payload for t in queue.list(limit=600) if t.id in set(ids)) == list(range(500))


def test_bad_arguments_to_the_new_calls_are_refused(db: Database, clock: FakeClock) -> None:
    queue = TaskQueue(db, clock=clock)
    for count in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="count"):
            queue.claim_many("w", count)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="claim_id"):
        queue.claim("w", claim_id="")
    with pytest.raises(ValueError, match="agent_id"):
        queue.claim("")
    with pytest.raises(ValueError, match="task_id"):
        queue.add("x", task_id="")
    with pytest.raises(ValueError, match="one id per payload"):
        queue.add_many(["a", "b"], ids=["1"])
    with pytest.raises(ValueError, match="different"):
        queue.add_many(["a", "b"], ids=["1", "1"])
    assert queue.stats()["total"] == 0
