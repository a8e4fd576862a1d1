"""Contract tests of TaskQueue: one body per behaviour, run on every Database backend (see conftest)."""

from __future__ import annotations

import random

import pytest

from d1sync.backoff import Backoff
from d1sync.database import Database
from d1sync.errors import ConfigError, SQLError, ValueEncodingError
from d1sync.tasks import TaskQueue
from d1sync.tasks.ulid import is_ulid

from .conftest import START, FakeClock

MS = int(START * 1000)


def make_queue(db: Database, clock: FakeClock, **options: object) -> TaskQueue:
    return TaskQueue(db, clock=clock, **options)  # type: ignore[arg-type]


# -- schema -------------------------------------------------------------------------------------------------


def test_schema_creation_is_idempotent_and_keeps_tasks(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    task_id = queue.add("x")
    again = make_queue(db, clock)
    assert again.get(task_id) is not None
    names = {r["name"] for r in db.prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'tasks'").all().results}
    assert {"tasks", "tasks_claim", "tasks_claim_role", "tasks_lease"} <= names


def test_named_queue_uses_its_own_table(db: Database, clock: FakeClock) -> None:
    plain = make_queue(db, clock)
    agents = TaskQueue(db, name="agents", clock=clock)
    via_module = TaskQueue(db.module("billing"), clock=clock)
    assert (plain.table, agents.table, via_module.table) == ("tasks", "agents_tasks", "billing_tasks")
    agents.add("a")
    assert plain.claim("w") is None
    assert via_module.claim("w") is None
    assert agents.claim("w") is not None


def test_invalid_queue_name_is_refused_before_any_sql(db: Database) -> None:
    with pytest.raises(ConfigError):
        TaskQueue(db, name='x"; DROP TABLE t; --')


def test_create_false_leaves_the_schema_to_a_migration(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, create=False)
    with pytest.raises(SQLError, match="no such table"):
        queue.add("x")
    for sql in queue.schema_sql():
        db.exec(sql)
    assert is_ulid(queue.add("x"))


# -- add / get ----------------------------------------------------------------------------------------------


def test_add_returns_a_ulid_and_get_decodes_the_payload(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, timeout=30, max_attempts=4)
    payload = {"text": "héllo ✓", "big": 2**63 - 1, "nested": [1, 2.5, None, True]}
    task_id = queue.add(payload, role="writer", priority=3)
    assert is_ulid(task_id)
    task = queue.get(task_id)
    assert task is not None
    assert task.payload == payload
    assert (task.status, task.role, task.priority, task.attempts) == ("open", "writer", 3, 0)
    assert (task.available_at, task.created_at, task.timeout_ms, task.max_attempts) == (MS, MS, 30_000, 4)
    assert task.claim_id is None and task.result is None and task.finished_at is None
    assert queue.get("01ARZ3NDEKTSV4RRFFQ69G5FAV") is None


def test_times_and_counters_are_stored_as_exact_integers(db: Database, clock: FakeClock) -> None:
    """JSON numbers bind as REAL on D1: INTEGER affinity must turn every stored time back into an integer."""
    queue = make_queue(db, clock)
    clock.advance(0.123)
    task_id = queue.add("x", priority=7)
    claimed = queue.claim("w", lease=1.5)
    assert claimed is not None
    assert claimed.lease_until == MS + 123 + 1500
    row = db.prepare(
        "SELECT typeof(available_at) AS a, typeof(lease_until) AS l, typeof(priority) AS p, "
        "typeof(attempts) AS n, CAST(lease_until AS TEXT) AS exact FROM tasks WHERE id = ?"
    ).bind(task_id)
    assert row.first() == {"a": "integer", "l": "integer", "p": "integer", "n": "integer", "exact": str(MS + 1623)}


def test_unserialisable_payload_is_a_value_error_and_adds_nothing(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    with pytest.raises(ValueEncodingError, match="payload"):
        queue.add({"when": object()})
    with pytest.raises(ValueEncodingError):
        queue.add(float("nan"))
    assert queue.stats()["total"] == 0


def test_bad_arguments_are_refused(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    with pytest.raises(ValueError):
        queue.add("x", delay=1, available_at=START)
    with pytest.raises(ValueError):
        queue.add("x", max_attempts=0)
    with pytest.raises(ValueError):
        queue.add("x", delay=-1)
    with pytest.raises(ValueError):
        queue.claim("w", lease=0)
    with pytest.raises(ValueError):
        queue.list(status="nope")


def test_add_statement_joins_a_caller_batch_atomically(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    db.exec("CREATE TABLE threads (id TEXT PRIMARY KEY)")
    _, add = queue.add_statement({"step": 1})
    with pytest.raises(SQLError):
        db.batch([add, db.prepare("INSERT INTO threads (id) VALUES ('t0')"), db.prepare("SELECT nope")])
    assert queue.stats()["total"] == 0
    task_id, add = queue.add_statement({"step": 1})
    db.batch([db.prepare("INSERT INTO threads (id) VALUES ('t1')"), add])
    assert queue.get(task_id) is not None


def test_add_many_keeps_order_across_batches(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    ids = queue.add_many(range(450), role="bulk")
    assert len(set(ids)) == 450 and ids == sorted(ids)
    assert [t.payload for t in queue.list(role="bulk", limit=1000)] == list(range(450))


# -- claim --------------------------------------------------------------------------------------------------


def test_claim_takes_highest_priority_then_oldest(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    first_low = queue.add("low-1")
    second_low = queue.add("low-2")
    high = queue.add("high", priority=10)
    order = []
    while (task := queue.claim("w")) is not None:
        order.append(task.id)
    assert order == [high, first_low, second_low]


def test_claim_returns_the_task_with_a_fresh_claim_and_lease(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, timeout=60)
    task_id = queue.add({"n": 1})
    task = queue.claim("agent-7")
    assert task is not None and task.id == task_id
    assert task.status == "claimed" and task.claimed_by == "agent-7" and task.attempts == 1
    assert task.claim_id is not None and is_ulid(task.claim_id)
    assert (task.claimed_at, task.lease_until) == (MS, MS + 60_000)
    assert task.payload == {"n": 1}
    assert queue.claim("agent-8") is None


def test_claim_lease_overrides_the_task_timeout(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    queue.add("x", timeout=100)
    task = queue.claim("w", lease=2.5)
    assert task is not None and task.lease_until == MS + 2500


def test_delayed_tasks_wait_until_available(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    later = queue.add("later", delay=10)
    at = queue.add("at", available_at=START + 5)
    assert queue.claim("w") is None
    assert queue.stats()["ready"] == 0
    clock.advance(5)
    task = queue.claim("w")
    assert task is not None and task.id == at
    clock.advance(5)
    task = queue.claim("w")
    assert task is not None and task.id == later


def test_claim_by_role_only_takes_that_role(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    review = queue.add("r", role="reviewer", priority=5)
    write = queue.add("w", role="writer")
    task = queue.claim("a", role="writer")
    assert task is not None and task.id == write
    assert queue.claim("a", role="writer") is None
    assert queue.claim("a", role="nobody") is None
    task = queue.claim("a")
    assert task is not None and task.id == review


def test_claim_by_task_id_takes_only_that_open_task(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    first = queue.add("first", role="x")
    second = queue.add("second", role="x")
    assert queue.claim("a", task_id=second, role="y") is None
    task = queue.claim("a", task_id=second, role="x")
    assert task is not None and task.id == second
    assert queue.claim("b", task_id=second) is None
    assert queue.claim("b", task_id="01ARZ3NDEKTSV4RRFFQ69G5FAV") is None
    delayed = queue.add("later", delay=5)
    assert queue.claim("b", task_id=delayed) is None
    task = queue.claim("b")
    assert task is not None and task.id == first


# -- heartbeat, complete, fail: fenced by the claim id ------------------------------------------------------


def test_heartbeat_extends_the_lease_of_the_current_claim_only(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, timeout=10)
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    clock.advance(8)
    assert queue.heartbeat(task.id, task.claim_id)
    assert queue.get(task.id).lease_until == MS + 18_000  # type: ignore[union-attr]
    assert queue.heartbeat(task.id, task.claim_id, lease=60)
    assert queue.get(task.id).lease_until == MS + 68_000  # type: ignore[union-attr]
    assert not queue.heartbeat(task.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    clock.advance(11)
    assert queue.expire() == 0  # the heartbeat kept it alive
    assert queue.complete(task.id, task.claim_id)
    assert not queue.heartbeat(task.id, task.claim_id)


def test_complete_records_the_result_once(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    clock.advance(1)
    assert queue.complete(task.id, task.claim_id, result={"ok": [1, 2]})
    done = queue.get(task.id)
    assert done is not None
    assert (done.status, done.result, done.finished_at, done.lease_until) == ("done", {"ok": [1, 2]}, MS + 1000, None)
    assert not queue.complete(task.id, task.claim_id, result="again")
    assert queue.get(task.id).result == {"ok": [1, 2]}  # type: ignore[union-attr]


def test_a_stale_claimant_cannot_complete_or_fail_a_task_it_lost(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, timeout=5)
    queue.add("x")
    old = queue.claim("slow")
    assert old is not None and old.claim_id is not None
    clock.advance(6)
    assert queue.expire() == 1
    new = queue.claim("fast")
    assert new is not None and new.id == old.id and new.claim_id != old.claim_id and new.attempts == 2
    assert new.claim_id is not None
    assert not queue.complete(old.id, old.claim_id, result="stale")
    assert not queue.fail(old.id, old.claim_id, error="stale")
    assert not queue.heartbeat(old.id, old.claim_id)
    current = queue.get(old.id)
    assert current is not None and (current.status, current.claimed_by, current.result) == ("claimed", "fast", None)
    assert queue.complete(new.id, new.claim_id, result="fresh")
    assert queue.get(old.id).result == "fresh"  # type: ignore[union-attr]


def test_fail_retries_with_doubling_jittered_backoff_then_dead(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, max_attempts=4, backoff=Backoff(base=2, cap=5), rng=random.Random(3))
    task_id = queue.add("flaky")
    waits = []
    for attempt in range(1, 5):
        task = queue.claim("w")
        assert task is not None and task.id == task_id and task.attempts == attempt
        assert task.claim_id is not None
        assert queue.fail(task.id, task.claim_id, error=f"boom {attempt}")
        after = queue.get(task_id)
        assert after is not None
        if attempt < 4:
            assert after.status == "open" and after.finished_at is None
            waits.append((after.available_at - queue.now_ms()) / 1000)
            assert queue.claim("w") is None  # not before the back-off
            clock.advance(waits[-1])
        else:
            assert (after.status, after.error, after.finished_at) == ("dead", "boom 4", queue.now_ms())
    # Each wait is the shared Backoff's: a jittered 50-100 % of the doubling, capped ceiling.
    assert [c / 2 <= w <= c for w, c in zip(waits, [2, 4, 5], strict=True)] == [True] * 3
    assert queue.claim("w") is None


def test_fail_without_retry_marks_failed_at_once(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, max_attempts=5)
    queue.add("x")
    task = queue.claim("w")
    assert task is not None and task.claim_id is not None
    assert queue.fail(task.id, task.claim_id, error="bad input", retry=False)
    failed = queue.get(task.id)
    assert failed is not None and (failed.status, failed.error, failed.attempts) == ("failed", "bad input", 1)
    assert queue.claim("w") is None


# -- expire -------------------------------------------------------------------------------------------------


def test_expire_reopens_timed_out_claims_and_counts_them(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, timeout=10)
    queue.add_many(["a", "b", "c"])
    short = queue.claim("w1", lease=5)
    long = queue.claim("w2", lease=20)
    assert short is not None and long is not None
    assert queue.expire() == 0
    clock.advance(5)
    assert queue.stats()["expired"] == 1
    assert queue.expire() == 1
    assert queue.expire() == 0
    reopened = queue.get(short.id)
    assert reopened is not None
    assert (reopened.status, reopened.lease_until, reopened.attempts) == ("open", None, 1)
    assert reopened.error == "lease expired (claimed by w1)"
    assert queue.get(long.id).status == "claimed"  # type: ignore[union-attr]
    again = queue.claim("w3")
    assert again is not None and again.id == short.id  # back at its old place in line


def test_expire_kills_a_task_whose_attempts_are_used_up(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, timeout=1, max_attempts=2)
    task_id = queue.add("crashes its worker")
    for _ in range(2):
        assert queue.claim("w") is not None
        clock.advance(1)
        assert queue.expire() == 1
    dead = queue.get(task_id)
    assert dead is not None and (dead.status, dead.attempts, dead.finished_at) == ("dead", 2, queue.now_ms())
    assert queue.claim("w") is None


# -- list, stats --------------------------------------------------------------------------------------------


def test_list_filters_by_status_and_role_oldest_first(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock)
    a = queue.add("a", role="x")
    b = queue.add("b", role="y")
    c = queue.add("c", role="x")
    queue.claim("w", task_id=c)
    assert [t.id for t in queue.list()] == [a, b, c]
    assert [t.id for t in queue.list(status="open")] == [a, b]
    assert [t.id for t in queue.list(role="x")] == [a, c]
    assert [t.id for t in queue.list(status="claimed", role="x")] == [c]
    assert [t.id for t in queue.list(limit=2)] == [a, b]


def test_stats_counts_every_status(db: Database, clock: FakeClock) -> None:
    queue = make_queue(db, clock, timeout=5, max_attempts=1)
    assert queue.stats() == dict.fromkeys(("open", "claimed", "done", "failed", "dead", "total", "ready", "expired"), 0)
    queue.add_many(range(5), role="r")
    queue.add("later", delay=100)
    done, failed, dead, claimed = (queue.claim("w", role="r") for _ in range(4))
    assert done and failed and dead and claimed and done.claim_id and failed.claim_id and dead.claim_id
    queue.complete(done.id, done.claim_id)
    queue.fail(failed.id, failed.claim_id, retry=False)
    queue.fail(dead.id, dead.claim_id)
    clock.advance(5)
    assert queue.stats() == {
        "open": 2,
        "claimed": 1,
        "done": 1,
        "failed": 1,
        "dead": 1,
        "total": 6,
        "ready": 1,
        "expired": 1,
    }
    assert queue.stats(role="r")["total"] == 5
