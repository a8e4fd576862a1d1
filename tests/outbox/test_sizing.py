"""How the request size moves with D1's answers (d1sync.sync.push.sizing), answer by answer: it is plain
arithmetic on what D1 said, so it is tested without a server (the emulator tests are test_request_size.py)."""

from __future__ import annotations

from d1sync.errors import ExecutionTimeoutError, LimitError, RequestTimeoutError, SQLError, TransientError
from d1sync.sync import Limits
from d1sync.sync.push.sizing import FLOOR_BYTES, VALUE_FLOOR_BYTES, Sizer

LIMITS = Limits(start_request_bytes=1_000_000, max_request_bytes=20_000_000, target_seconds=5.0)
TOO_LONG = ExecutionTimeoutError("D1 DB storage operation exceeded timeout which caused object to be reset.")


def test_a_full_fast_request_grows_the_size_at_most_fourfold_and_a_short_one_says_nothing() -> None:
    sizer = Sizer(LIMITS)
    assert not sizer.succeeded(body_bytes=300_000, seconds=0.01, elapsed=0.05)  # under half the size
    assert sizer.bytes == 1_000_000
    assert sizer.succeeded(body_bytes=990_000, seconds=0.01, elapsed=0.05)
    assert sizer.bytes == 4_000_000 and sizer.changed
    # Projected from the rate seen: 4 MB in 1 s would take 2.5 s (half the target) at 10 MB.
    assert sizer.succeeded(body_bytes=4_000_000, seconds=1.0, elapsed=1.1)
    assert sizer.bytes == 10_000_000
    assert not sizer.succeeded(body_bytes=10_000_000, seconds=2.0, elapsed=2.1)  # not fast: stays
    assert sizer.bytes == 10_000_000


def test_a_request_near_the_target_shrinks_the_size_toward_half_of_it() -> None:
    sizer = Sizer(LIMITS, target="db")
    sizer.bytes = 10_000_000
    sizer.succeeded(body_bytes=10_000_000, seconds=4.5, elapsed=4.6)
    assert sizer.bytes == int(10_000_000 * 0.5 * 5.0 / 4.5)


def test_too_big_and_too_long_halve_the_size_and_growth_stays_under_what_was_refused() -> None:
    sizer = Sizer(LIMITS)
    sizer.bytes = 8_000_000
    assert sizer.failed(TOO_LONG, body_bytes=8_000_000, rows=90_000)
    assert sizer.bytes == 4_000_000 and sizer.refused == 8_000_000
    for _ in range(5):
        sizer.succeeded(body_bytes=sizer.bytes, seconds=0.01, elapsed=0.05)
    assert sizer.bytes == 6_000_000  # three quarters of the smallest refused, never more
    assert sizer.failed(LimitError("The request is too large", status=413), body_bytes=6_000_000, rows=50_000)
    assert sizer.bytes == 3_000_000 and sizer.refused == 6_000_000


def test_a_refused_single_row_teaches_nothing_about_the_size() -> None:
    sizer = Sizer(LIMITS)
    assert not sizer.failed(TOO_LONG, body_bytes=5_000, rows=1)
    assert sizer.bytes == 1_000_000 and sizer.refused is None


def test_a_timeout_shrinks_an_unproven_size_or_the_second_in_a_row_only() -> None:
    sizer = Sizer(LIMITS)
    timeout = RequestTimeoutError("no answer in time")
    sizer.succeeded(body_bytes=900_000, seconds=2.0, elapsed=2.0)  # proven, not fast: no growth
    assert not sizer.failed(timeout, body_bytes=900_000, rows=10_000)  # a lost response looks the same
    assert sizer.failed(timeout, body_bytes=900_000, rows=10_000)  # twice in a row: the size, maybe
    assert sizer.bytes == 450_000
    assert not sizer.failed(TransientError("internal error", status=500), body_bytes=450_000, rows=5_000)
    assert sizer.bytes == 450_000  # a 5xx says nothing about the size
    assert sizer.failed(timeout, body_bytes=2_000_000, rows=20_000)  # bigger than any that went: shrinks at once


def test_sqlite_toobig_shrinks_the_json_parameter_but_not_below_its_floor() -> None:
    sizer = Sizer(LIMITS)
    toobig = LimitError("string or blob too big: SQLITE_TOOBIG", code=7500, status=400)
    assert isinstance(toobig, SQLError)
    assert sizer.failed(toobig, body_bytes=900_000, rows=8_000, value_bytes=800_000)
    assert sizer.limits.max_value_bytes == 400_000 and sizer.bytes == 1_000_000
    for _ in range(5):
        sizer.failed(toobig, body_bytes=900_000, rows=8_000, value_bytes=sizer.limits.max_value_bytes)
    assert sizer.limits.max_value_bytes == VALUE_FLOOR_BYTES


def test_ceilings_hold_whatever_was_learned_and_a_fixed_size_never_moves() -> None:
    sizer = Sizer(Limits(max_request_bytes=5_000))
    assert sizer.bytes == 5_000
    sizer.succeeded(body_bytes=5_000, seconds=0.001, elapsed=0.01)
    assert sizer.bytes == 5_000
    for _ in range(3):
        sizer.failed(TOO_LONG, body_bytes=sizer.bytes, rows=40)
    assert sizer.bytes == FLOOR_BYTES
    fixed = Sizer(Limits(max_request_bytes=3_000_000, adaptive=False))
    assert fixed.bytes == 3_000_000
    assert not fixed.succeeded(body_bytes=3_000_000, seconds=0.001, elapsed=0.01)
    assert not fixed.failed(TOO_LONG, body_bytes=3_000_000, rows=30_000)
    assert fixed.limits == Limits(max_request_bytes=3_000_000, adaptive=False)


def test_a_size_that_went_through_is_remembered_as_refused_only_when_it_runs_too_long_twice() -> None:
    sizer = Sizer(LIMITS)
    sizer.bytes = 4_000_000
    sizer.succeeded(body_bytes=4_000_000, seconds=2.0, elapsed=2.1)  # went through, not fast: no growth
    assert sizer.failed(TOO_LONG, body_bytes=4_000_000, rows=40_000)  # a busy moment, maybe
    assert sizer.bytes == 2_000_000 and sizer.refused is None
    sizer.bytes = 4_000_000
    assert sizer.failed(TOO_LONG, body_bytes=4_000_000, rows=40_000)  # again: the size it is
    assert sizer.refused == 4_000_000
