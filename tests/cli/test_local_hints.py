"""Every hint fits its cause: a failure of the local file is not told to check SQL against a schema."""

from __future__ import annotations

import click
import pytest

from d1sync.cli import cli
from d1sync.cli._common import _hint
from d1sync.errors import SQLError


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("database or disk is full: SQLITE_FULL", "free space on the disk holding the file"),
        ("disk I/O error: SQLITE_IOERR", "the disk failed to read or write the file"),
        ("database disk image is malformed: SQLITE_CORRUPT", "restore it from a backup, or from D1"),
        ("attempt to write a readonly database: SQLITE_READONLY", "read-only"),
    ],
)
def test_a_failure_of_the_local_file_gets_the_hint_of_its_cause(message: str, words: str) -> None:
    error = SQLError(message, code=7500)  # no HTTP status: the local file said it
    with click.Context(cli) as ctx:
        hint = _hint(error, ctx)
    assert hint is not None and words in hint and "schema" not in hint


def test_a_full_d1_database_is_not_told_to_match_the_table() -> None:
    error = SQLError("Exceeded maximum DB size: SQLITE_FULL", code=7500, status=400)
    with click.Context(cli) as ctx:
        hint = _hint(error, ctx)
    assert hint is not None and "D1's database is full" in hint and "schema" not in hint
