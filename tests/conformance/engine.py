"""workerd's real D1 engine (Miniflare, installed by ``make node-tools``) serving the conformance Worker on
loopback, and the emulator, each answering one conformance case in the same shape.

An answer is ``{"ok": True, "results": [{"results": rows, "meta": {...}}, ...]}``, ``{"ok": False, "error":
text}`` or ``{"setup_error": text}``. Every case runs on a fresh database of its own on both sides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NODE_MODULES = Path(os.environ.get("D1SYNC_NODE_MODULES", ROOT / ".venv" / "node" / "node_modules"))
NODE = shutil.which("node")
MINIFLARE_VERSION = json.loads((HERE / "package.json").read_text())["dependencies"]["miniflare"]

Answer = dict[str, Any]


def engine_missing() -> str | None:
    """Why the engine cannot run here (None when it can)."""
    if NODE is None:
        return "node is not installed"
    installed = NODE_MODULES / "miniflare" / "package.json"
    if not installed.exists():
        return f"Miniflare is not installed in {NODE_MODULES} (run `make node-tools`)"
    version = json.loads(installed.read_text())["version"]
    if version != MINIFLARE_VERSION:
        return f"Miniflare {version} is installed, the fixtures pin {MINIFLARE_VERSION} (run `make node-tools`)"
    return None


def request_body(case: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"setup": list(case.setup)}
    if case.batch is not None:
        body["batch"] = [{"sql": sql, "params": list(params)} for sql, params in case.batch]
    else:
        body["sql"] = case.sql
        body["params"] = list(case.params)
    return body


class EngineProcess:
    """``node serve.mjs``: the Worker on loopback with ``databases`` fresh D1 databases."""

    def __init__(self, databases: int) -> None:
        assert NODE is not None
        self._process = subprocess.Popen(
            [NODE, str(HERE / "engine" / "serve.mjs"), str(NODE_MODULES), str(databases)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        url = self._process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the D1 engine did not start (said {url!r})")
        self._http = httpx.Client(base_url=url, timeout=60)
        self._next = 0
        self._databases = databases

    def run(self, case: Any) -> Answer:
        if self._next >= self._databases:
            raise RuntimeError("no fresh database left")
        response = self._http.post("/", params={"db": self._next}, json=request_body(case))
        self._next += 1
        answer: Answer = response.json()
        return answer

    def close(self) -> None:
        if hasattr(self, "_http"):
            self._http.close()
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


class EmulatorRunner:
    """The emulator's REST ``/query`` in process, a fresh (auto-created) database per case."""

    def __init__(self, data_dir: Path) -> None:
        from d1sync.emulator.app import create_app
        from d1sync.emulator.testing import SyncASGITransport

        self.app = create_app(data_dir, token="conformance", auto_create=True)
        self._http = httpx.Client(
            transport=SyncASGITransport(self.app),
            base_url="http://emulator/client/v4/accounts/conformance/d1/database",
            headers={"Authorization": "Bearer conformance"},
        )

    def _post(self, database_id: str, body: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = self._http.post(f"/{database_id}/query", json=body).json()
        return payload

    def run(self, case: Any) -> Answer:
        database_id = str(uuid.uuid4())
        for sql in case.setup:
            done = self._post(database_id, {"sql": sql})
            if not done["success"]:
                return {"setup_error": f"{sql}: {done['errors'][0]['message']}"}
        body = request_body(case)
        body.pop("setup")
        done = self._post(database_id, body)
        if not done["success"]:
            return {"ok": False, "error": done["errors"][0]["message"]}
        texts = [body["sql"]] if case.batch is None else [item["sql"] for item in body["batch"]]
        return {"ok": True, "results": _as_binding(done["result"], texts)}

    def close(self) -> None:
        self._http.close()
        self.app.state.engine.close()


def _as_binding(elements: list[dict[str, Any]], texts: list[str]) -> list[dict[str, Any]]:
    """The emulator's REST answer (one element per statement) in the binding's shape: one element per text,
    with the last statement's rows and a meta covering the whole text (changes summed), as the engine's."""
    from d1sync.emulator.engine import _has_text
    from d1sync.emulator.store import split_sql

    merged = []
    for text in (t for t in texts if _has_text(t)):
        count = len(split_sql(text))
        mine, elements = elements[:count], elements[count:]
        last = mine[-1]
        meta = {
            "changes": sum(e["meta"]["changes"] for e in mine),
            "last_row_id": last["meta"]["last_row_id"],
            "changed_db": any(e["meta"]["changed_db"] for e in mine),
        }
        merged.append({"results": last["results"], "meta": meta})
    return merged
