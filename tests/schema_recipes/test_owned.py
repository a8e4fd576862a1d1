"""docs/schema.md's example of a table the user owns (--no-manage-schema): a local type change is not made
on D1, and verify names the column and the values D1 changed, exactly as the page prints them."""

from __future__ import annotations

import re

import pytest

from .conftest import DOC, Kitchen


def printed_by_verify() -> list[str]:
    """The lines the page says `verify` prints for the example."""
    page = DOC.read_text(encoding="utf-8")
    block = re.search(r"`verify` prints:\n\n```text\n(.*?)```", page, re.DOTALL)
    assert block, "docs/schema.md no longer shows verify's output for the owned-table example"
    return [line.strip() for line in block[1].splitlines() if line.strip()]


def test_verify_names_the_column_of_a_table_d1sync_does_not_manage(
    kitchen: Kitchen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the lines as printed, not wrapped to a narrow terminal
    ran = kitchen.run("owned")
    verify = ran[-1]
    assert verify.args[1] == "verify" and verify.code == 1
    for line in printed_by_verify():
        assert line in verify.output, f"{line!r} is not in verify's output:\n{verify.output}"
