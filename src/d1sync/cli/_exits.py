"""Every command's exit codes: docs/cli.md states them (scripts/generate_cli_docs.py) and a test holds each
command to them. A command not named here uses :data:`COMMON`."""

from __future__ import annotations

from ._common import EXIT_DEAD_LETTERS, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TEMPFAIL, EXIT_USAGE

__all__ = ["COMMON", "EXIT_CODES", "exit_codes"]

COMMON: dict[int, str] = {
    0: "done",
    EXIT_FAILURE: "failed (the one-line error says why)",
    EXIT_USAGE: "bad usage",
    EXIT_INTERRUPTED: "interrupted",
}

EXIT_CODES: dict[str, dict[int, str]] = {
    "sync": {
        0: "drained, and no table is paused",
        EXIT_FAILURE: "a table (named) or the worker is paused, even with nothing pending; stopped early "
        "(`--timeout`); or nothing is tracked in DB",
        EXIT_USAGE: "bad usage",
        EXIT_DEAD_LETTERS: "drained, but D1 refused some rows for good (`d1sync dead DB`)",
        EXIT_TEMPFAIL: "another worker holds the drain lease (`--wait` waits for it)",
        EXIT_INTERRUPTED: "interrupted",
    },
    "verify": {
        0: "equal, rows and schema",
        EXIT_FAILURE: "different, in rows or schema; a table could not be compared or (with `--repair`) was not "
        "repaired because it is paused or its schema on D1 would refuse the rows; or nothing is tracked in DB",
        EXIT_USAGE: "bad usage",
        EXIT_INTERRUPTED: "interrupted",
    },
    "status": {
        0: "shown (with `--check`: healthy)",
        EXIT_FAILURE: "no outbox in DB, or DB unreadable; with `--check`: something is paused or failing",
        EXIT_USAGE: "bad usage",
        EXIT_DEAD_LETTERS: "with `--check`: dead letters (D1 refused changes for good; `d1sync dead DB`)",
        EXIT_INTERRUPTED: "interrupted",
    },
    "run": {
        0: "stopped by SIGINT/SIGTERM with every change sent (the last drain emptied the outbox)",
        EXIT_FAILURE: "stopped by SIGTERM with changes still pending, or failed to start (nothing tracked in DB)",
        EXIT_USAGE: "bad usage",
        EXIT_INTERRUPTED: "stopped by SIGINT with changes still pending, or a second signal",
    },
    "demo": {
        0: "the remote equals the local file",
        EXIT_FAILURE: "it does not (a bug: please report it)",
        EXIT_USAGE: "bad usage",
        EXIT_INTERRUPTED: "interrupted",
    },
    "migrations list": {**COMMON, 3: "`--check` found pending or edited migrations"},
    "fleet sync": {
        0: "every tenant drained",
        EXIT_FAILURE: "some tenant not drained (paused, failed, `--timeout`): each is named",
        EXIT_USAGE: "bad usage",
        EXIT_DEAD_LETTERS: "drained, but D1 refused some rows for good (`d1sync dead FILE`)",
        EXIT_INTERRUPTED: "interrupted",
    },
    "fleet migrate": {
        0: "every tenant migrated or already current (and any `--dry-run`)",
        EXIT_FAILURE: "some tenant failed, or the canary stopped the run: each failure is named",
        EXIT_USAGE: "bad usage",
        EXIT_INTERRUPTED: "interrupted",
    },
    "fleet run": {
        0: "stopped by SIGINT/SIGTERM (after the passes in flight)",
        EXIT_FAILURE: "failed to start (no such DIR, no account)",
        EXIT_USAGE: "bad usage",
        EXIT_INTERRUPTED: "a second signal",
    },
}


def exit_codes(path: str) -> dict[int, str]:
    """The exit codes of ``d1sync PATH`` (``"migrations list"``), by code."""
    return EXIT_CODES.get(path, COMMON)
