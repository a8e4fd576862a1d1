"""complete(..., then=[...]): the completion and its follow-up statements land in one atomic batch, fenced by
the claim, on every Database backend (see conftest)."""

from __future__ import annotations

import pytest

from d1sync.database import Database, Statement
from d1sync.errors import SQLError
from d1sync.tasks import TaskQueue

from .conftest import FakeClock


@pytest.fixture
def queue(db: Database, clock: FakeClock) -> TaskQueue:
    db.exec(
        "CREATE TABLE messages (thread TEXT NOT NULL, step INTEGER NOT NULL, content TEXT NOT NULL, "
        "PRIMARY KEY (thread, step))"
    )
    return TaskQueue(db, clock=clock, timeout=5)


def post(db: Database, step: int, content: str, thread: str = "t1") -> Statement:
    return db.prepare("INSERT INTO messages (thread, step, content) VALUES (?, ?, ?)").bind(thread, step, content)


def messages(db: Database) -> list[tuple[int, str]]:
    rows = db.prepare("SELECT step, content FROM messages ORDER BY thread, step").all().results
    return [(row["step"], row["content"]) for row in rows]


def test_completion_and_follow_ups_land_together(db: Database, queue: TaskQueue) -> None:
    queue.add({"step": 1}, role="writer")
    task = queue.claim("w1", role="writer")
    assert task is not None and task.claim_id is not None
    next_id, next_task = queue.add_statement({"step": 2}, role="reviewer")
    assert queue.complete(task.id, task.claim_id, result={"answer": "draft"}, then=[post(db, 1, "draft"), next_task])
    done = queue.get(task.id)
    assert done is not None and (done.status, done.result) == ("done", {"answer": "draft"})
    assert messages(db) == [(1, "draft")]
    handed = queue.claim("r1", role="reviewer")
    assert handed is not None and (handed.id, handed.payload) == (next_id, {"step": 2})


def test_follow_ups_run_after_the_completion_and_see_the_task_done(db: Database, queue: TaskQueue) -> None:
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    copy = db.prepare(
        "INSERT INTO messages (thread, step, content) "
        "SELECT 't1', 1, result FROM tasks WHERE id = ? AND status = 'done'"
    ).bind(task.id)
    assert queue.complete(task.id, task.claim_id, result="the answer", then=[copy])
    assert messages(db) == [(1, '"the answer"')]


def test_a_stale_claimant_gets_false_and_posts_nothing(db: Database, queue: TaskQueue, clock: FakeClock) -> None:
    queue.add({"step": 1})
    old = queue.claim("slow")
    assert old is not None and old.claim_id is not None
    clock.advance(6)
    assert queue.expire() == 1
    new = queue.claim("fast")
    assert new is not None and new.id == old.id and new.claim_id is not None

    _, stale_next = queue.add_statement({"step": 2, "by": "slow"})
    assert not queue.complete(old.id, old.claim_id, result="stale", then=[post(db, 1, "stale"), stale_next])
    assert messages(db) == []
    assert queue.stats()["total"] == 1
    current = queue.get(old.id)
    assert current is not None and (current.status, current.claim_id, current.result) == ("claimed", new.claim_id, None)

    _, fresh_next = queue.add_statement({"step": 2, "by": "fast"})
    assert queue.complete(new.id, new.claim_id, result="fresh", then=[post(db, 1, "fresh"), fresh_next])
    assert messages(db) == [(1, "fresh")]
    assert [t.payload for t in queue.list(status="open")] == [{"step": 2, "by": "fast"}]


def test_a_stale_claimant_whose_follow_up_would_fail_still_just_gets_false(
    db: Database, queue: TaskQueue, clock: FakeClock
) -> None:
    """The fence runs first: a lost claim is reported as False, not as the follow-up's error."""
    queue.add("x")
    old = queue.claim("slow")
    assert old is not None and old.claim_id is not None
    clock.advance(6)
    queue.expire()
    assert not queue.complete(old.id, old.claim_id, then=[db.prepare("INSERT INTO nowhere VALUES (1)")])


def test_completing_twice_posts_once(db: Database, queue: TaskQueue) -> None:
    """A retry after a lost response (the first call committed) gets False and duplicates nothing."""
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    first = [post(db, 1, "once"), queue.add_statement("next")[1]]
    again = [post(db, 2, "twice"), queue.add_statement("next again")[1]]
    assert queue.complete(task.id, task.claim_id, result=1, then=first)
    assert not queue.complete(task.id, task.claim_id, result=2, then=again)
    assert messages(db) == [(1, "once")]
    assert queue.get(task.id).result == 1  # type: ignore[union-attr]
    assert queue.stats()["total"] == 2


def test_an_unknown_task_an_open_task_or_a_wrong_claim_gets_false(
    db: Database, queue: TaskQueue, clock: FakeClock
) -> None:
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    assert not queue.complete("01ARZ3NDEKTSV4RRFFQ69G5FAV", task.claim_id, then=[post(db, 1, "a")])
    assert not queue.complete(task.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV", then=[post(db, 1, "b")])
    clock.advance(6)
    queue.expire()  # open again, still carrying the old claim id
    assert not queue.complete(task.id, task.claim_id, then=[post(db, 1, "c")])
    assert messages(db) == []
    reopened = queue.get(task.id)
    assert reopened is not None and reopened.status == "open"


def test_a_failing_follow_up_rolls_back_the_completion(db: Database, queue: TaskQueue) -> None:
    """A follow-up's error is raised and nothing lands: the task stays claimed by the same claim."""
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    db.batch([post(db, 1, "taken")])
    _, next_task = queue.add_statement("next")
    with pytest.raises(SQLError, match="UNIQUE") as raised:
        queue.complete(task.id, task.claim_id, result="r", then=[next_task, post(db, 1, "clash"), post(db, 2, "late")])
    assert "claim lost" not in raised.value.message
    still = queue.get(task.id)
    assert still is not None and (still.status, still.claim_id, still.result) == ("claimed", task.claim_id, None)
    assert messages(db) == [(1, "taken")]
    assert queue.stats()["total"] == 1

    assert queue.complete(task.id, task.claim_id, result="r", then=[post(db, 2, "answer")])
    assert messages(db) == [(1, "taken"), (2, "answer")]


def test_no_follow_ups_is_a_plain_fenced_completion(db: Database, queue: TaskQueue) -> None:
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    assert queue.complete(task.id, task.claim_id, result="r", then=[])
    assert not queue.complete(task.id, task.claim_id, then=iter([]))
    assert queue.get(task.id).status == "done"  # type: ignore[union-attr]
