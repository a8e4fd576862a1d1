"""The emulator answers every case of the conformance table as workerd's D1 engine did: values, types, outcome,
error text and meta (``changes``, ``last_row_id``, ``changed_db``).

The engine's answers are fixtures (``fixtures/engine.json``), so this runs without node. With node and the
pinned Miniflare installed (``make node-tools``), the engine itself also answers every case on loopback, and
must still give the recorded answer: the fixtures cannot drift from the engine they claim to be.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cases import CASES, Case
from .engine import EmulatorRunner, EngineProcess, engine_missing
from .fixtures import load_answers

ANSWERS = load_answers()
IDS = [f"{case.group}-{index:03d}" for index, case in enumerate(CASES)]


def _marks(case: Case) -> list[Any]:
    return [pytest.mark.xfail(reason=case.known, strict=True)] if case.known else []


PARAMS = [pytest.param(case, id=name, marks=_marks(case)) for case, name in zip(CASES, IDS, strict=True)]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorRunner]:
    runner = EmulatorRunner(Path(tmp_path_factory.mktemp("conformance")))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineProcess]:
    missing = engine_missing()
    if missing:
        pytest.skip(f"the D1 engine is not here: {missing}")
    process = EngineProcess(len(CASES))
    yield process
    process.close()


def test_every_case_has_a_recorded_answer() -> None:
    missing = [case.describe() for case in CASES if case.key not in ANSWERS]
    assert missing == [], "run `make conformance-fixtures` to record the engine's answers"


def test_the_table_covers_hundreds_of_cases_in_every_area() -> None:
    groups = {case.group for case in CASES}
    assert len(CASES) >= 500
    assert {"function-exists", "pragma", "limit", "error", "param", "meta", "authorizer", "batch"} <= groups


@pytest.mark.parametrize("case", PARAMS)
def test_the_emulator_answers_as_the_engine_did(case: Case, emulator: EmulatorRunner) -> None:
    recorded = ANSWERS.get(case.key)
    if recorded is None:
        pytest.fail(f"no recorded answer for {case.describe()!r}: run `make conformance-fixtures`")
    assert emulator.run(case) == recorded["answer"]


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for case, name in zip(CASES, IDS, strict=True)])
def test_the_engine_still_answers_as_recorded(case: Case, engine: EngineProcess) -> None:
    recorded = ANSWERS.get(case.key)
    assert recorded is not None
    assert engine.run(case) == recorded["answer"]
