"""A pause stays until its cause is gone: only ``resume``, ``sync``/``run`` (which re-check at once, as
documented) or the worker's own successful re-check clear it. No other command clears one as a side effect
(issue 26, repro 6: ``verify`` did, and ``status --check`` went from 1 to 0 with the fault still there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from d1sync import LocalDatabase

from .test_verify_cli import invoke, invoke_json, synced  # noqa: F401  (synced: the fixture)

OTHERS = [
    "verify {app} {target}",
    "verify {app} {target} --repair",
    "verify {app} {target} --repair --delete-extra",
    "verify {app} notes {target} --repair --json",
    "dead {app} retry",
    "dead {app} drop --yes",
    "status {app}",
    "track {app} extra",
    "untrack {app} extra",
]


@pytest.mark.parametrize("template", OTHERS)
def test_no_other_command_clears_a_pause_while_its_cause_remains(
    synced: tuple[Path, list[str]],  # noqa: F811
    template: str,
) -> None:
    app, target = synced
    with LocalDatabase(app) as db:
        db.exec("ALTER TABLE notes ADD COLUMN tag TEXT; CREATE TABLE extra (id INTEGER PRIMARY KEY)")
        db.prepare("UPDATE notes SET tag = 'x' WHERE id = 1").run()
    assert invoke("sync", str(app), *target)[0] == 1  # notes pauses: D1 lacks its new column
    words = [w for word in template.split() for w in (target if word == "{target}" else [word])]
    invoke(*[w.replace("{app}", str(app)) for w in words])
    code, status = invoke_json("status", str(app), "--check")
    assert code == 1 and status["table_states"]["notes"]["state"] == "paused"
    assert status["dead_letters"] == 0 and status["pending_changes"] >= 1
