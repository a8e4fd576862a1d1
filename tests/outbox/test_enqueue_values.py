"""Outbox.enqueue()/delete(): values follow the Database API's rules, and keys have one canonical text."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import pytest

from d1sync.errors import ConfigError, ValueEncodingError
from d1sync.outbox import Outbox, SyncWorker

from .remote_d1 import fresh_d1, reading

BAD_VALUES = {
    "dict": ({"a": 1}, "type dict"),
    "list": ([1, 2], "type list"),
    "int above 64 bits": (2**63, "64-bit"),
    "int below 64 bits": (-(2**63) - 1, "64-bit"),
    "NaN": (math.nan, "nan"),
    "infinity": (math.inf, "inf"),
    "minus infinity": (-math.inf, "-inf"),
    "Decimal": (Decimal("1.5"), "type Decimal"),
    "lone surrogate": ("a\ud800b", "lone surrogate"),
}


def change_rows(path: Path) -> list[tuple[str, str, str | None]]:
    with reading(path) as conn:
        return [
            (str(k), str(op), p)
            for k, op, p in conn.execute("SELECT key, op, payload FROM _d1sync_pending ORDER BY seq")
        ]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("events", key=["id"], columns=["id", "body", "n"])
    return outbox


@pytest.mark.parametrize("column", ["body", "id"])
@pytest.mark.parametrize(("value", "reason"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_value_the_database_api_refuses_is_refused_naming_table_and_column_and_nothing_is_queued(
    outbox: Outbox, column: str, value: object, reason: str
) -> None:
    row = {"id": 1, "body": "ok", "n": 0, column: value}
    with pytest.raises(ValueEncodingError) as info:
        outbox.enqueue("events", row)
    message = str(info.value)
    assert message.startswith(f"table 'events', column '{column}': ") and reason in message
    assert change_rows(outbox.path) == []
    # The outbox is left usable: the failed call rolled its transaction back.
    outbox.enqueue("events", {"id": 1, "body": "ok", "n": 0})
    assert len(change_rows(outbox.path)) == 1


@pytest.mark.parametrize(
    "key",
    [math.nan, math.inf, 2**64, Decimal(3), "\udfff"],
    ids=["NaN", "infinity", "int beyond 64 bits", "Decimal", "lone surrogate"],
)
def test_delete_refuses_a_key_value_the_database_api_refuses(outbox: Outbox, key: object) -> None:
    with pytest.raises(ValueEncodingError, match=r"^table 'events', column 'id': "):
        outbox.delete("events", key)
    with pytest.raises(ValueEncodingError, match=r"^table 'events', column 'id': "):
        outbox.delete("events", {"id": key})
    assert change_rows(outbox.path) == []


def test_a_key_mapping_without_the_key_column_is_refused(outbox: Outbox) -> None:
    with pytest.raises(ConfigError, match=r"key of 'events' is \(id\)"):
        outbox.delete("events", {"other": 1})
    assert change_rows(outbox.path) == []


def test_every_value_the_database_api_accepts_arrives_exactly(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ddl = "CREATE TABLE v (id INTEGER PRIMARY KEY, big INTEGER, f REAL, t TEXT, b BLOB, flag INTEGER)"
    rows = [
        {"id": 1, "big": 2**63 - 1, "f": 0.1 + 0.2, "t": "", "b": b"\x00\xff", "flag": True},
        {"id": 2, "big": -(2**63), "f": 5e-324, "t": "nul\x00inside", "b": bytearray(b"\x01"), "flag": False},
        {"id": 3, "big": 2**53 + 1, "f": -1.7976931348623157e308, "t": "😀", "b": memoryview(b""), "flag": None},
        {"id": 4, "big": None, "f": None, "t": None, "b": None, "flag": 1},
    ]
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("v", key=["id"], columns=["id", "big", "f", "t", "b", "flag"])
    for row in rows:
        outbox.enqueue("v", row)
    with fresh_d1(request, tmp_path) as (client, remote_path):
        client.exec(ddl)
        with SyncWorker(outbox.path, client) as worker:
            assert worker.sync_once().state == "synced"
        with reading(remote_path) as remote:
            got = remote.execute(
                "SELECT id, big, typeof(big), f, t, hex(b), typeof(b), flag FROM v ORDER BY id"
            ).fetchall()
    assert got == [
        (1, 2**63 - 1, "integer", 0.1 + 0.2, "", "00FF", "blob", 1),
        (2, -(2**63), "integer", 5e-324, "nul\x00inside", "01", "blob", 0),
        (3, 2**53 + 1, "integer", -1.7976931348623157e308, "😀", "", "blob", None),
        (4, None, "null", None, None, "", "null", 1),  # hex(NULL) is empty text
    ]


def test_integral_float_and_bool_keys_are_the_int_they_equal(outbox: Outbox) -> None:
    outbox.enqueue("events", {"id": 1.0, "body": "float", "n": 0})
    outbox.enqueue("events", {"id": True, "body": "bool", "n": 0})
    outbox.delete("events", 1)
    outbox.delete("events", 1.0)
    outbox.delete("events", (True,))
    outbox.delete("events", {"id": -0.0})
    assert [(key, op) for key, op, _ in change_rows(outbox.path)] == [("[1]", "upsert")] * 2 + [
        ("[1]", "delete"),
        ("[1]", "delete"),
        ("[1]", "delete"),
        ("[0]", "delete"),
    ]
    # The payload carries the canonical key too; other columns keep their values.
    outbox.enqueue("events", {"id": 2.0, "body": "x", "n": 2.0})
    assert change_rows(outbox.path)[-1][2] == '[2,"x",2.0]'


def test_a_key_enqueued_as_a_float_is_deleted_by_its_int_on_the_emulator(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # An untyped remote key column keeps whatever type arrives: the canonical int is what D1 stores.
    ddl = "CREATE TABLE kv (id PRIMARY KEY NOT NULL, v TEXT)"
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("kv", key=["id"], columns=["id", "v"])
    with fresh_d1(request, tmp_path) as (client, remote_path), SyncWorker(outbox.path, client) as worker:
        client.exec(ddl)
        outbox.enqueue("kv", {"id": 1.0, "v": "one"})
        outbox.enqueue("kv", {"id": True, "v": "bool"})
        outbox.enqueue("kv", {"id": 2.5, "v": "two and a half"})
        outbox.enqueue("kv", {"id": 0.1 + 0.2, "v": "seventeen digits"})
        outbox.enqueue("kv", {"id": 3.0, "v": "three"})
        worker.sync_once()
        with reading(remote_path) as remote:
            rows = remote.execute("SELECT id, typeof(id), v FROM kv ORDER BY id").fetchall()
        assert rows == [
            (0.1 + 0.2, "real", "seventeen digits"),
            (1, "integer", "bool"),
            (2.5, "real", "two and a half"),
            (3, "integer", "three"),
        ]
        outbox.delete("kv", 1)
        outbox.delete("kv", 2.5)
        outbox.delete("kv", 0.1 + 0.2)
        outbox.delete("kv", 3.0)
        worker.sync_once()
        assert worker.pending() == 0
        with reading(remote_path) as remote:
            assert remote.execute("SELECT count(*) FROM kv").fetchone()[0] == 0


def test_composite_keys_have_one_text_whatever_form_they_are_given_in(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "app.db")
    outbox.declare("pairs", key=["a", "b"], columns=["a", "b", "v"])
    outbox.enqueue("pairs", {"b": "x", "a": 1.0, "v": None})
    outbox.delete("pairs", (1, "x"))
    outbox.delete("pairs", [True, "x"])
    outbox.delete("pairs", {"b": "x", "a": 1})
    assert {key for key, _, _ in change_rows(outbox.path)} == {'[1,"x"]'}
