"""What a failed push request means, decided in one place: one table of rules, read top to bottom.

errors.py classifies what D1 said (once, by code: :class:`~d1sync.errors.SQLError`'s ``row_level`` and
``constraint``, the transient classes); this module says what the push does about it. The sender
(:mod:`~d1sync.sync.push.sender`) only carries the verdict out. What each costs, in requests, is in
docs/sync.md.

A new D1 error rule is a new row of :data:`RULES` (and, if the sender must do something new, a new
:class:`Verdict`); its test goes in tests/outbox/test_refusals.py.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from d1sync.errors import D1Error, ExecutionTimeoutError, FileRewoundError, LimitError, SQLError, TransientError

__all__ = ["RULES", "Refusal", "Rule", "Verdict", "blames_the_table", "decide", "same_refusal"]

WAITING = frozenset({"FOREIGN KEY", "UNIQUE", "PRIMARY KEY"})
"""Constraints a single row may break only until another row's change lands (its parent; the row that holds
the value remotely)."""
UNIQUE = frozenset({"UNIQUE", "PRIMARY KEY"})
TABLE_WIDE = frozenset({"NOT NULL", "CHECK", "DATATYPE"})
"""Constraints that, when every probed row breaks them alike, point at the table's schema, not at rows."""
PROBES = 3
"""Rows of a table sent alone before bisecting a refusal of a table-wide constraint."""


class Verdict(enum.Enum):
    """What the sender does with a refused request."""

    SHRINK = "shrink"
    """Send the rows again in smaller requests, and plan smaller from now on (:mod:`~d1sync.sync.push.sizing`)."""
    BACK_OFF = "back off"
    """Nothing is acknowledged; the pass ends and the worker backs off (persisted, jittered)."""
    PAUSE_ALL = "pause everything"
    """The worker pauses loudly and drops nothing (auth, a missing database); it checks again later."""
    SPLIT_TABLES = "split by table"
    """Send each table's rows on their own, to find the table the refusal is about."""
    PAUSE_TABLE = "pause the table"
    """Pause this table with D1's message; its changes stay pending, the other tables go on."""
    DEFER = "defer"
    """Leave the row pending: what it waits for may lie in a later window."""
    RETRY_LATER = "retry after the pass"
    """Send the row once more after the rest of the pass."""
    SWAP = "swap"
    """Send it with the other rows refused for UNIQUE values, together, as one swap; then dead-letter."""
    DEAD_LETTER = "dead-letter"
    """Move the row to the dead letters with D1's message."""
    PROBE = "probe"
    """Send a few rows alone: if all fail alike the table pauses (:func:`blames_the_table`), else bisect."""
    BISECT = "bisect"
    """Split the request in halves until only the offending rows are left."""


@dataclass(frozen=True)
class Refusal:
    """What is known when a request failed.

    Attributes:
        error: what D1 (or the network) said.
        rows, tables: how many rows, and of how many tables, the request carried.
        window_full: more changes are pending beyond this window.
        retried: this is the retry after the pass (a row does not wait twice).
        probed: the table's rows were already probed in this delivery.
    """

    error: D1Error
    rows: int = 1
    tables: int = 1
    window_full: bool = False
    retried: bool = False
    probed: bool = False

    @property
    def sql(self) -> SQLError | None:
        return self.error if isinstance(self.error, SQLError) else None

    @property
    def constraint(self) -> str | None:
        return self.sql.constraint if self.sql is not None else None

    @property
    def row_level(self) -> bool:
        return self.sql is not None and self.sql.row_level


@dataclass(frozen=True)
class Rule:
    """One row of the table: when ``applies``, the verdict is ``verdict``, because ``why``."""

    applies: Callable[[Refusal], bool]
    verdict: Verdict
    why: str


RULES: tuple[Rule, ...] = (
    Rule(
        lambda r: isinstance(r.error, LimitError | ExecutionTimeoutError) and r.rows > 1,
        Verdict.SHRINK,
        "too big (413, SQLITE_TOOBIG, statement too long) or too long to run (D1's execution limit): nothing "
        "was applied, and the same rows in smaller requests can go",
    ),
    Rule(lambda r: isinstance(r.error, TransientError), Verdict.BACK_OFF, "network, timeout, 429, 5xx: try again"),
    Rule(
        lambda r: isinstance(r.error, FileRewoundError),
        Verdict.PAUSE_ALL,
        "D1 took a newer send from this file: the file went back in time; sending more would mix two pasts",
    ),
    Rule(lambda r: r.sql is None, Verdict.PAUSE_ALL, "auth, a missing database: not about one table or row"),
    Rule(
        lambda r: r.sql is not None and r.sql.result_code == "SQLITE_FULL",
        Verdict.PAUSE_ALL,
        "D1's database is full: no table or row is at fault, and nothing fits until space is freed there",
    ),
    Rule(lambda r: r.tables > 1, Verdict.SPLIT_TABLES, "first find the table the refusal is about"),
    Rule(lambda r: not r.row_level, Verdict.PAUSE_TABLE, "no such column and the like: the table's schema"),
    Rule(
        lambda r: r.rows == 1 and r.constraint in WAITING and r.window_full,
        Verdict.DEFER,
        "what the row waits for may be in a later window",
    ),
    Rule(
        lambda r: r.rows == 1 and r.constraint in WAITING and not r.retried,
        Verdict.RETRY_LATER,
        "what the row waits for may come later in this pass",
    ),
    Rule(lambda r: r.rows == 1 and r.constraint in UNIQUE, Verdict.SWAP, "rows may swap UNIQUE values"),
    Rule(lambda r: r.rows == 1, Verdict.DEAD_LETTER, "this row is the offending one"),
    Rule(
        lambda r: r.constraint in TABLE_WIDE and not r.probed,
        Verdict.PROBE,
        "a NOT NULL, CHECK or type error of every row is the table's schema",
    ),
    Rule(lambda r: True, Verdict.BISECT, "isolate the offending rows; everything else goes through"),
)


def decide(refusal: Refusal) -> Verdict:
    """The verdict of the first rule of :data:`RULES` that applies."""
    return next(rule.verdict for rule in RULES if rule.applies(refusal))


def same_refusal(probe: SQLError, first: SQLError) -> bool:
    """Whether a probe's refusal is the request's own: the same row-level error, word for word."""
    return probe.row_level and probe.message == first.message


def blames_the_table(alike: int, probes: int) -> bool:
    """Whether probes refused alike (at least two, and every one) put the refusal on the table itself."""
    return alike == probes and alike >= 2
