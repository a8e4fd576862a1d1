"""Record the engine's answers to every conformance case: ``make conformance-fixtures`` (needs node and the
pinned Miniflare from ``make node-tools``)."""

from __future__ import annotations

import json
import sys

from .cases import CASES
from .engine import MINIFLARE_VERSION, EngineProcess, engine_missing
from .fixtures import FIXTURES_PATH


def main() -> int:
    missing = engine_missing()
    if missing:
        print(f"cannot record: {missing}", file=sys.stderr)
        return 1
    engine = EngineProcess(len(CASES))
    try:
        answers = {
            case.key: {"group": case.group, "sql": case.describe(), "answer": engine.run(case)} for case in CASES
        }
    finally:
        engine.close()
    document = {"engine": f"miniflare {MINIFLARE_VERSION} (workerd's D1 engine)", "answers": answers}
    FIXTURES_PATH.write_text(json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"recorded {len(answers)} answers in {FIXTURES_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
