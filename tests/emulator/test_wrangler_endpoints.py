"""Real wrangler, pointed at the emulator (``CLOUDFLARE_API_BASE_URL``, ``--remote``), runs the commands that
need more than ``/query``: ``d1 execute --file`` (``/import``), ``d1 export`` (``/export``) and ``d1
time-travel info`` / ``restore`` (``/time_travel``).

Needs node and the pinned wrangler from ``make node-tools`` (or ``D1SYNC_WRANGLER=path/to/wrangler``); skipped
otherwise. Every request goes to the emulator on loopback: wrangler gets a fake account and token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.emulator.server import EmulatorServer

from ..support import find_wrangler

ROOT = Path(__file__).resolve().parents[2]
WRANGLER = find_wrangler()
TOKEN = "wrangler-test-token"

pytestmark = pytest.mark.skipif(
    WRANGLER is None or shutil.which("node") is None, reason="wrangler not installed (run `make node-tools`)"
)

WRANGLER_TOML = f"""\
name = "d1sync-wrangler-test"
compatibility_date = "2026-04-26"

[[d1_databases]]
binding = "DB"
database_name = "default"
database_id = "{DEFAULT_DATABASE_ID}"
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tmp_path / "data", token=TOKEN) as srv:
        yield srv


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "wrangler.toml").write_text(WRANGLER_TOML)
    return folder


def wrangler(server: EmulatorServer, project: Path, *args: str) -> str:
    assert WRANGLER is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOUDFLARE_")},
        "CLOUDFLARE_API_BASE_URL": server.api_base,
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": "wrangler-test-account",
        "WRANGLER_SEND_METRICS": "false",
        "CI": "1",
        "NO_COLOR": "1",
        "HOME": str(project),  # wrangler's logs and config stay in the test's folder
    }
    done = subprocess.run(
        [WRANGLER, *args], cwd=project, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def json_out(text: str) -> Any:
    """The JSON wrangler prints after its progress lines (``--json --file`` prints both on stdout)."""
    start = 0 if text.startswith(("[", "{")) else min(i for i in (text.find("\n["), text.find("\n{")) if i >= 0) + 1
    return json.loads(text[start:])


def query(server: EmulatorServer, project: Path, sql: str) -> list[dict[str, object]]:
    out = wrangler(server, project, "d1", "execute", "DB", "--remote", "--json", "--command", sql)
    rows: list[dict[str, object]] = json.loads(out)[0]["results"]
    return rows


def test_execute_file_imports_atomically_through_the_upload_url(server: EmulatorServer, project: Path) -> None:
    (project / "seed.sql").write_text(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"
        "INSERT INTO notes (body) VALUES ('one'), ('it''s two');\n"
        "CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN\n"
        "  UPDATE notes SET body = body || '!' WHERE id = new.id;\nEND;\n"
        "INSERT INTO notes (body) VALUES ('three');\n-- a closing comment\n"
    )
    out = json_out(
        wrangler(server, project, "d1", "execute", "DB", "--remote", "--json", "--yes", "--file", "seed.sql")
    )
    assert out[0]["results"][0]["Total queries executed"] == 4
    assert out[0]["finalBookmark"]
    assert query(server, project, "SELECT body FROM notes ORDER BY id") == [
        {"body": "one"},
        {"body": "it's two"},
        {"body": "three!"},
    ]
    # A file that fails half-way applies nothing.
    (project / "bad.sql").write_text("INSERT INTO notes (body) VALUES ('four');\nINSERT INTO nope VALUES (1);\n")
    assert WRANGLER is not None
    done = subprocess.run(
        [WRANGLER, "d1", "execute", "DB", "--remote", "--yes", "--file", "bad.sql"],
        cwd=project,
        env={**os.environ, "CLOUDFLARE_API_BASE_URL": server.api_base, "CLOUDFLARE_API_TOKEN": TOKEN,
             "CLOUDFLARE_ACCOUNT_ID": "a", "WRANGLER_SEND_METRICS": "false", "CI": "1", "HOME": str(project)},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "no such table: nope" in done.stdout + done.stderr
    assert query(server, project, "SELECT count(*) AS n FROM notes") == [{"n": 3}]


def test_export_writes_d1s_dump_and_it_imports_back(server: EmulatorServer, project: Path) -> None:
    query(server, project, "CREATE TABLE t (id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'a\nb'), (2, x'00ff')")
    wrangler(server, project, "d1", "export", "DB", "--remote", "--output", "dump.sql")
    dump = (project / "dump.sql").read_text()
    assert dump.splitlines()[:2] == ["PRAGMA defer_foreign_keys=TRUE;", "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"]
    assert "_cf_METADATA" not in dump
    wrangler(server, project, "d1", "export", "DB", "--remote", "--no-data", "--output", "schema.sql")
    assert "INSERT" not in (project / "schema.sql").read_text()
    query(server, project, "DROP TABLE t")
    wrangler(server, project, "d1", "execute", "DB", "--remote", "--yes", "--file", "dump.sql")
    assert query(server, project, "SELECT id, v, hex(v) AS h FROM t ORDER BY id") == [
        {"id": 1, "v": "a\nb", "h": "610A62"},
        {"id": 2, "v": [0, 255], "h": "00FF"},
    ]


def test_time_travel_restores_a_bookmark_and_undoes_it(server: EmulatorServer, project: Path) -> None:
    query(server, project, "CREATE TABLE t (v); INSERT INTO t VALUES (1)")
    before = json_out(wrangler(server, project, "d1", "time-travel", "info", "DB", "--json"))["bookmark"]
    query(server, project, "INSERT INTO t VALUES (2); DROP TABLE IF EXISTS gone")
    assert query(server, project, "SELECT count(*) AS n FROM t") == [{"n": 2}]
    restored = json_out(wrangler(server, project, "d1", "time-travel", "restore", "DB", "--bookmark", before, "--json"))
    assert query(server, project, "SELECT count(*) AS n FROM t") == [{"n": 1}]
    wrangler(
        server, project, "d1", "time-travel", "restore", "DB", "--bookmark", restored["previous_bookmark"], "--json"
    )
    assert query(server, project, "SELECT count(*) AS n FROM t") == [{"n": 2}]
