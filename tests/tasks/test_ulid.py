"""The monotonic ULID generator: format, order, time, and uniqueness under threads and fork."""

from __future__ import annotations

import os
import threading
import warnings

import pytest

from d1sync.tasks.ulid import ULIDGenerator, is_ulid, new_ulid, ulid_time_ms

ALPHABET = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_ulid_is_26_crockford_characters_carrying_the_time() -> None:
    generator = ULIDGenerator(clock=lambda: 1_700_000_000.123)
    ulid = generator.new()
    assert len(ulid) == 26 and set(ulid) <= ALPHABET and is_ulid(ulid)
    assert ulid_time_ms(ulid) == 1_700_000_000_123


def test_known_encoding_matches_the_spec() -> None:
    generator = ULIDGenerator(clock=lambda: 1469918176.385, randbits=lambda n: 0)
    assert generator.new() == "01ARYZ6S410000000000000000"  # the spec's timestamp 1469918176385


def test_same_millisecond_increments_the_random_part() -> None:
    generator = ULIDGenerator(clock=lambda: 1.0, randbits=lambda n: 41)
    a, b, c = generator.new(), generator.new(), generator.new()
    assert a < b < c
    assert [int(x[-1], 36) for x in (a, b, c)] == [int("9", 36), int("A", 36), int("B", 36)]


def test_order_holds_when_the_clock_steps_back() -> None:
    times = iter([10.0, 9.0, 9.5, 11.0])
    generator = ULIDGenerator(clock=lambda: next(times))
    ulids = [generator.new() for _ in range(4)]
    assert ulids == sorted(ulids) and len(set(ulids)) == 4
    assert ulid_time_ms(ulids[1]) == 10_000  # held at the newest time seen


def test_random_overflow_borrows_the_next_millisecond() -> None:
    generator = ULIDGenerator(clock=lambda: 5.0, randbits=lambda n: (1 << 80) - 1)
    a, b = generator.new(), generator.new()
    assert a < b and ulid_time_ms(b) == 5001


def test_time_outside_48_bits_is_refused() -> None:
    with pytest.raises(ValueError):
        ULIDGenerator(clock=lambda: -1.0).new()
    with pytest.raises(ValueError):
        ULIDGenerator(clock=lambda: 2.0**48).new()


def test_is_ulid_rejects_non_canonical_text() -> None:
    assert not is_ulid("01ARYZ6S41000000000000000")  # 25 characters
    assert not is_ulid("01ARYZ6S41000000000000000I")  # I is not Crockford
    assert not is_ulid("81ARYZ6S410000000000000000")  # beyond 48 bits of time
    assert not is_ulid("01aryz6s410000000000000000")
    with pytest.raises(ValueError):
        ulid_time_ms("nope")


def test_threads_get_unique_increasing_ulids() -> None:
    generator = ULIDGenerator(clock=lambda: 1.0)
    results: list[list[str]] = [[] for _ in range(8)]

    def work(out: list[str]) -> None:
        out.extend(generator.new() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [u for out in results for u in out]
    assert len(set(every)) == len(every) == 16_000
    assert all(out == sorted(out) for out in results)


def test_a_forked_child_does_not_repeat_the_parents_next_ulid() -> None:
    generator = ULIDGenerator(clock=lambda: 1.0)  # one frozen millisecond: without a reseed both would increment
    generator.new()
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive (3.12+); the child only writes
        pid = os.fork()
    if pid == 0:
        os.write(write, generator.new().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 26).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert is_ulid(child) and child != generator.new()


def test_module_level_new_ulid_increases() -> None:
    ulids = [new_ulid() for _ in range(1000)]
    assert ulids == sorted(ulids) and len(set(ulids)) == 1000
