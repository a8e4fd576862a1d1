"""Real wrangler and d1sync alternate on one local D1 database and agree on what is applied.

Needs wrangler (Node.js): ``make node-tools`` installs it in ``.venv/node``; or its path in ``D1SYNC_WRANGLER``;
or one on PATH. Skipped otherwise. Verified with wrangler 4.86.0.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from d1sync.local import LocalDatabase
from d1sync.migrations import MigrationSource, Migrator

from ..support import find_wrangler

WRANGLER = find_wrangler()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(WRANGLER is None, reason="wrangler not installed (set D1SYNC_WRANGLER=path/to/wrangler)"),
]


def wrangler(project: Path, *args: str) -> str:
    assert WRANGLER is not None
    env = {**os.environ, "CI": "1", "WRANGLER_SEND_METRICS": "false", "NO_COLOR": "1"}
    for secret in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID"):
        env.pop(secret, None)  # --local only: never reach Cloudflare
    done = subprocess.run(
        [WRANGLER, *args], cwd=project, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_wrangler_and_d1sync_alternate_and_agree(wrangler_project: Path) -> None:
    folder = wrangler_project / "migrations"
    wrangler(wrangler_project, "d1", "migrations", "apply", "DB", "--local")
    (state,) = (wrangler_project / ".wrangler/state/v3/d1/miniflare-D1DatabaseObject").glob("[0-9a-f]*.sqlite")

    # d1sync applies a file wrangler's remote path gets wrong: CRLF, a trigger body, no trailing ';'.
    (folder / "0003_notes.sql").write_bytes(
        b"CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\r\n"
        b"CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN\r\n"
        b"  UPDATE notes SET body = body || ';' WHERE id = new.id;\r\nEND;\r\n"
        b"INSERT INTO notes (body) VALUES ('x')"
    )
    source = MigrationSource(wrangler_project, migrations_dir=Path("migrations"))
    with LocalDatabase(state) as db:
        assert [a.name for a in Migrator(db, source.discover()).apply().applied] == ["0003_notes.sql"]

    listed = wrangler(wrangler_project, "d1", "migrations", "list", "DB", "--local")
    assert "No migrations to apply" in listed
    rows = json.loads(
        wrangler(wrangler_project, "d1", "execute", "DB", "--local", "--json", "--command", "SELECT body FROM notes")
    )
    assert rows[0]["results"] == [{"body": "x;"}]

    # And back: wrangler applies the next one, d1sync sees it applied (no checksum: "unknown").
    (folder / "0004_tags.sql").write_text("CREATE TABLE tags (name TEXT);\n")
    wrangler(wrangler_project, "d1", "migrations", "apply", "DB", "--local")
    with LocalDatabase(state) as db:
        statuses = Migrator(db, source.discover()).status()
    assert [(s.name, s.state, s.drift) for s in statuses] == [
        ("0001_create_users.sql", "applied", "unknown"),
        ("0002_create_posts.sql", "applied", "unknown"),
        ("0003_notes.sql", "applied", "ok"),
        ("0004_tags.sql", "applied", "unknown"),
    ]
