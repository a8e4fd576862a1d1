"""What a failed push request means (d1sync.sync.push.refusals), rule by rule, without sending anything."""

from __future__ import annotations

import pytest

from d1sync.errors import (
    AuthError,
    D1Error,
    DatabaseNotFoundError,
    FileRewoundError,
    RateLimitedError,
    SQLError,
    TransientError,
)
from d1sync.sync.push.refusals import RULES, Refusal, Verdict, blames_the_table, decide, same_refusal

UNIQUE = SQLError("UNIQUE constraint failed: t.email: SQLITE_CONSTRAINT", code=7500, status=400)
FOREIGN_KEY = SQLError("FOREIGN KEY constraint failed: SQLITE_CONSTRAINT", code=7500, status=400)
NOT_NULL = SQLError("NOT NULL constraint failed: t.body: SQLITE_CONSTRAINT", code=7500, status=400)
CHECK = SQLError("CHECK constraint failed: n < 1000: SQLITE_CONSTRAINT", code=7500, status=400)
TOO_BIG = SQLError("string or blob too big: SQLITE_TOOBIG", code=7500, status=400)
NO_COLUMN = SQLError("table t has no column named c: SQLITE_ERROR", code=7500, status=400)
D1_FULL = SQLError("Exceeded maximum DB size: SQLITE_FULL", code=7500, status=400)


@pytest.mark.parametrize(
    ("refusal", "verdict"),
    [
        (Refusal(TransientError("upstream 503", status=503)), Verdict.BACK_OFF),
        (Refusal(RateLimitedError("too many requests", status=429), rows=500, tables=3), Verdict.BACK_OFF),
        (Refusal(AuthError("invalid token", code=10000, status=403)), Verdict.PAUSE_ALL),
        (Refusal(DatabaseNotFoundError("no such database", code=7404, status=404)), Verdict.PAUSE_ALL),
        (Refusal(D1Error("something else")), Verdict.PAUSE_ALL),
        (Refusal(FileRewoundError("app.db is older than what it already sent")), Verdict.PAUSE_ALL),
        (Refusal(D1_FULL, rows=500, tables=3), Verdict.PAUSE_ALL),
        (Refusal(D1_FULL), Verdict.PAUSE_ALL),
        (Refusal(UNIQUE, rows=10, tables=2), Verdict.SPLIT_TABLES),
        (Refusal(NO_COLUMN, rows=10), Verdict.PAUSE_TABLE),
        (Refusal(NO_COLUMN), Verdict.PAUSE_TABLE),
        (Refusal(FOREIGN_KEY, window_full=True), Verdict.DEFER),
        (Refusal(UNIQUE, window_full=True), Verdict.DEFER),
        (Refusal(FOREIGN_KEY), Verdict.RETRY_LATER),
        (Refusal(FOREIGN_KEY, retried=True), Verdict.DEAD_LETTER),
        (Refusal(UNIQUE, retried=True), Verdict.SWAP),
        (Refusal(TOO_BIG), Verdict.DEAD_LETTER),
        (Refusal(NOT_NULL), Verdict.DEAD_LETTER),
        (Refusal(NOT_NULL, rows=40), Verdict.PROBE),
        (Refusal(CHECK, rows=40), Verdict.PROBE),
        (Refusal(CHECK, rows=40, probed=True), Verdict.BISECT),
        (Refusal(UNIQUE, rows=40), Verdict.BISECT),
        (Refusal(TOO_BIG, rows=2), Verdict.BISECT),
    ],
    ids=lambda value: value.value if isinstance(value, Verdict) else "",
)
def test_each_refusal_gets_the_verdict_of_the_first_rule_that_applies(refusal: Refusal, verdict: Verdict) -> None:
    assert decide(refusal) is verdict


def test_every_verdict_has_a_rule_and_the_last_rule_always_applies() -> None:
    assert {rule.verdict for rule in RULES} == set(Verdict)
    assert RULES[-1].applies(Refusal(UNIQUE, rows=2))


def test_probes_blame_the_table_only_when_every_one_of_at_least_two_failed_alike() -> None:
    assert same_refusal(SQLError(NOT_NULL.message), NOT_NULL)
    assert not same_refusal(SQLError(CHECK.message), NOT_NULL)
    assert not same_refusal(SQLError(NO_COLUMN.message), NO_COLUMN)  # not row-level: no verdict on rows
    assert blames_the_table(3, 3) and blames_the_table(2, 2)
    assert not blames_the_table(2, 3) and not blames_the_table(1, 1)
