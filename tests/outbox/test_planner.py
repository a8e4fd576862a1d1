"""Planning: every statement and request stays within D1's limits, and applying the plan reproduces the rows."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d1sync.local import LocalDatabase
from d1sync.outbox import Limits, Outbox, SyncConfig, SyncWorker
from d1sync.sync.codec import encode_row
from d1sync.sync.model import Change, TableSpec
from d1sync.sync.push.planner import D1_MAX_SQL_BYTES, DEFER_FOREIGN_KEYS, FENCE_BYTES, plan, topological_order
from d1sync.sync.remote import fence_statements

from .conftest import OpenWorker, RecordingTarget, data_statements, snapshot

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Every code point UTF-8 holds, astral ones and NUL included (NUL travels in object form: see encode_row).
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
VALUES = st.one_of(
    st.none(),
    INT64,
    st.sampled_from([2**63 - 1, -(2**63), 2**53, 2**53 + 1, -(2**53) - 1, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.binary(max_size=40),
    # Wide values: alone near or over the per-parameter budget.
    st.builds(lambda n, c: c * n, st.integers(200, 3_000), st.sampled_from(["a", "é", "😀", '"', "\\", "\n"])),
    st.builds(lambda n: bytes(range(256)) * n, st.integers(1, 12)),
)
COLUMN_NAMES = ["a", "b c", 'q"uote', "é", "sel'ect", "😀", "x" * 30, "order", *(f"col_{i}" for i in range(32))]
TYPES = ["INTEGER", "TEXT", "REAL", "BLOB", "", "NUMERIC"]
KEYS = {
    "int": (["id INTEGER PRIMARY KEY"], INT64.map(lambda i: (i,))),
    "text": (["k TEXT PRIMARY KEY NOT NULL"], TEXT.map(lambda t: (t,))),
    "composite": (["ka TEXT NOT NULL", "kb INTEGER NOT NULL"], st.tuples(TEXT, INT64)),
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@st.composite
def tables(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(KEYS)))
    key_ddl, key_values = KEYS[kind]
    n_cols = draw(st.integers(0, 8) | st.integers(9, len(COLUMN_NAMES)))  # narrow tables, and wide ones
    names = draw(st.permutations(COLUMN_NAMES))[:n_cols]
    types = [draw(st.sampled_from(TYPES)) for _ in names]
    keys = draw(st.lists(key_values, min_size=0, max_size=40, unique=True))
    rows = [tuple(k) + tuple(draw(VALUES) for _ in names) for k in keys]
    deleted = draw(st.lists(st.sampled_from(range(len(rows))), unique=True) if rows else st.just([]))
    ddl_cols = key_ddl + [f"{_quote(n)} {t}".strip() for n, t in zip(names, types, strict=True)]
    if kind == "composite":
        ddl_cols.append("PRIMARY KEY (ka, kb)")
    limits = Limits(
        max_value_bytes=draw(st.integers(1_000, 30_000)),
        max_request_bytes=draw(st.integers(1_000, 30_000)),
        max_statements=draw(st.integers(1, 6)),
    )
    return {
        "ddl": f'CREATE TABLE "t ab""le" ({", ".join(ddl_cols)})',
        "width": len(key_ddl) + len(names),
        "rows": rows,
        "deleted": deleted,
        "limits": limits,
    }


def request_body_bytes(batch: list[tuple[str, tuple[Any, ...]]]) -> int:
    """The bytes of the JSON body D1Client sends for this batch (its encoding: compact, UTF-8)."""
    items = [{"sql": sql, "params": list(params)} if params else {"sql": sql} for sql, params in batch]
    return len(json.dumps({"batch": items}, ensure_ascii=False, separators=(",", ":")).encode())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tables())
def test_plans_stay_within_every_limit_and_reproduce_the_rows_exactly(case: dict[str, Any]) -> None:
    limits: Limits = case["limits"]
    with tempfile.TemporaryDirectory() as tmp:
        app, remote = LocalDatabase(Path(tmp) / "app.db"), LocalDatabase(Path(tmp) / "remote.db")
        try:
            app.exec(case["ddl"])
            remote.exec(case["ddl"])
            placeholders = ", ".join("?" * case["width"])
            with app.atomic() as conn:
                conn.executemany(f'INSERT INTO "t ab""le" VALUES ({placeholders})', case["rows"])
            # The remote holds stale copies of the rows about to be deleted: the deletes must remove them.
            stale = [case["rows"][i] for i in case["deleted"]]
            with remote.atomic() as conn:
                conn.executemany(f'INSERT INTO "t ab""le" VALUES ({placeholders})', stale)
            Outbox(Path(tmp) / "app.db").track('t ab"le')
            key_width = 2 if "PRIMARY KEY (ka, kb)" in case["ddl"] else 1
            with app.atomic() as conn:
                for i in case["deleted"]:
                    row = case["rows"][i]
                    where = " AND ".join(f"{c} IS ?" for c in ("ka", "kb")[:key_width]) if key_width == 2 else None
                    if where is None:
                        col = "id" if "id INTEGER" in case["ddl"] else "k"
                        where = f"{col} IS ?"
                    conn.execute(f'DELETE FROM "t ab""le" WHERE {where}', row[:key_width])

            target = RecordingTarget(remote)
            with SyncWorker(Path(tmp) / "app.db", target, config=SyncConfig(limits=limits)) as worker:
                result = worker.sync_once()
                assert result.state in ("synced", "idle"), result
                assert result.dead == 0 and worker.pending() == 0

            sent_rows = 0
            for batch in target.batches:
                assert batch[0] == (DEFER_FOREIGN_KEYS, ())
                statements = data_statements(batch)
                assert 1 <= len(statements) <= limits.max_statements
                for sql, (param,) in statements:
                    assert len(sql.encode()) < D1_MAX_SQL_BYTES
                    rows_here = len(json.loads(param))
                    sent_rows += rows_here
                    assert rows_here == 1 or len(param.encode()) <= limits.max_value_bytes
                    assert len(param.encode()) <= 2_000_000
                body = request_body_bytes(batch)
                single_row = len(statements) == 1 and len(json.loads(statements[0][1][0])) == 1
                assert single_row or body <= limits.max_request_bytes, (body, len(statements))
            assert sent_rows == len(case["rows"])  # one per key: coalesced, nothing twice
            assert snapshot(remote.connection, 't ab"le') == snapshot(app.connection, 't ab"le')
        finally:
            app.close()
            remote.close()


def _spec(name: str, parents: tuple[str, ...] = ()) -> TableSpec:
    return TableSpec(name=name, key=("id",), columns=("id", "v"), parents=parents)


def test_upserts_go_parents_first_and_deletes_children_first() -> None:
    specs = {"child": _spec("child", ("parent",)), "parent": _spec("parent"), "grand": _spec("grand", ("child",))}
    assert topological_order(specs) == ["parent", "child", "grand"]
    changes = [
        Change("grand", "[1]", "upsert", encode_row([1, "g"])[0]),
        Change("parent", "[1]", "delete"),
        Change("child", "[1]", "upsert", encode_row([1, "c"])[0]),
        Change("grand", "[2]", "delete"),
        Change("parent", "[2]", "upsert", encode_row([2, "p"])[0]),
    ]
    [request] = plan(changes, specs).requests
    order = [(s.table, s.op) for s in request.statements]
    assert order == [
        ("grand", "delete"),
        ("parent", "delete"),
        ("parent", "upsert"),
        ("child", "upsert"),
        ("grand", "upsert"),
    ]


def test_a_row_over_d1s_value_limit_is_rejected_with_the_reason_not_sent() -> None:
    spec = _spec("t")
    huge = Change("t", "[1]", "upsert", encode_row([1, "x" * 2_100_000])[0])
    fine = Change("t", "[2]", "upsert", encode_row([2, "y"])[0])
    result = plan([huge, fine], {"t": spec})
    assert [c.key for c, _ in result.rejected] == ["[1]"]
    assert "2,000,000" in result.rejected[0][1]
    assert [c.key for r in result.requests for c in r.changes] == ["[2]"]


@pytest.mark.parametrize(
    ("field", "value"), [("max_value_bytes", 999), ("max_value_bytes", 2_000_001), ("max_statements", 0)]
)
def test_limits_refuse_values_outside_d1s_range(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


def _real_body_bytes(statements: list[tuple[str, str]]) -> int:
    return request_body_bytes([(DEFER_FOREIGN_KEYS, ()), *((sql, (param,)) for sql, param in statements)])


@pytest.mark.parametrize("max_request_bytes", [5_000, 20_000, 100_000])
def test_long_statements_of_wide_blob_tables_still_fit_the_request_budget(max_request_bytes: int) -> None:
    """The SQL text counts too: 40 BLOB columns make each upsert statement about 6 KB long."""
    columns = tuple(f'"col {i}"' for i in range(40))
    spec = TableSpec("wide", (columns[0],), columns)
    changes = [Change("wide", f"[{i}]", "upsert", *encode_row([i, *[bytes([i % 256]) * 3] * 39])) for i in range(400)]
    limits = Limits(max_value_bytes=30_000, max_request_bytes=max_request_bytes, max_statements=50)
    result = plan(changes, {"wide": spec}, limits)
    assert sum(len(r.changes) for r in result.requests) == 400
    for request in result.requests:
        body = _real_body_bytes([(s.sql, s.param) for s in request.statements])
        single_row = len(request.statements) == 1 and len(request.statements[0].changes) == 1
        assert single_row or body <= max_request_bytes, (body, [len(s.changes) for s in request.statements])


def test_many_small_statements_pack_within_the_request_budget() -> None:
    specs = {f"t{i}": TableSpec(f"t{i}", ("id",), ("id", "v")) for i in range(300)}
    changes = [Change(f"t{i}", "[1]", "upsert", *encode_row([1, '"quoted" \\ ' * 3])) for i in range(300)]
    for budget in range(1_000, 4_000, 37):
        limits = Limits(max_value_bytes=1_000, max_request_bytes=budget, max_statements=1_000)
        for request in plan(changes, specs, limits).requests:
            body = _real_body_bytes([(s.sql, s.param) for s in request.statements])
            assert request.body_bytes >= body  # the planner's figure is an upper bound of the real body
            assert len(request.statements) == 1 or body <= budget, (budget, body, len(request.statements))


def test_text_with_nul_characters_survives_the_trip(
    local_pair: tuple[Path, LocalDatabase, LocalDatabase], open_worker: OpenWorker
) -> None:
    path, app, remote = local_pair
    for db in (app, remote):
        db.exec("CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v TEXT)")
    Outbox(path).track("t")
    with app.atomic() as conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", [("plain", "a\x00b"), ("nul\x00key", "v")])
    open_worker(path, remote).sync_once()
    assert snapshot(remote.connection, "t") == snapshot(app.connection, "t")


def test_the_planner_reserves_room_for_the_fence_every_request_opens_with() -> None:
    fence = fence_statements("f" * 32, 2**63 - 1)  # the longest identity and number a file can send
    assert sum(len(json.dumps(sql)) + len(json.dumps(list(params))) + 32 for sql, params in fence) <= FENCE_BYTES
