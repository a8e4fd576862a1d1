"""The engine's recorded answers (``fixtures/engine.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES_PATH = Path(__file__).resolve().parent / "fixtures" / "engine.json"


def load_answers() -> dict[str, dict[str, Any]]:
    if not FIXTURES_PATH.exists():
        return {}
    answers: dict[str, dict[str, Any]] = json.loads(FIXTURES_PATH.read_text())["answers"]
    return answers
