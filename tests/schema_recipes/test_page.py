"""docs/schema.md and these tests stay in step: every recipe on the page is run by a test here, and every
recipe block is one the runner knows how to run."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import recipe, recipe_names


def test_every_recipe_on_the_page_is_run_by_a_test() -> None:
    names = recipe_names()
    assert len(names) == len(set(names)) >= 5
    tests = "".join(
        p.read_text(encoding="utf-8") for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(__file__).name
    )
    unrun = [n for n in names if not re.search(rf"""["']{re.escape(n)}["']""", tests)]
    assert not unrun, f"recipes of docs/schema.md that no test runs: {unrun}"


def test_every_block_of_every_recipe_is_python_or_sh() -> None:
    for name in recipe_names():
        for block in recipe(name):
            assert block.lang in ("python", "sh"), (name, block.lang)
            assert block.file is None or block.lang == "python", (name, block.file)
