"""Generate the blocking D1 client from the asyncio one, or check that the generated file is current.

    python scripts/generate_sync_client.py           # rewrite src/d1sync/client/_sync.py from _async.py
    python scripts/generate_sync_client.py --check   # exit 1 if _sync.py differs from what would be generated

The rules are unasync's (``async``/``await`` dropped, ``__aenter__`` -> ``__enter__``, ...) plus the names
below. ``make test`` runs the check, so the two clients cannot drift apart.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "d1sync" / "client" / "_async.py"
TARGET = SOURCE.with_name("_sync.py")

REPLACEMENTS = {
    "AsyncD1Client": "D1Client",
    "AsyncDatabase": "Database",
    "AsyncStatement": "Statement",
    "AsyncClient": "Client",
    "AsyncBaseTransport": "BaseTransport",
    "AsyncSleep": "Sleep",
    "aclose": "close",
    "acquire_async": "acquire",
    "asyncio": "time",
}
HEADER = "# Generated from _async.py by scripts/generate_sync_client.py (`make sync-client`): do not edit.\n"


def generate(source: Path) -> str:
    """The blocking client's text, generated from ``source``."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "client"
        work.mkdir()
        copy = work / "_async.py"
        shutil.copy(source, copy)
        rule = unasync.Rule(fromdir="/client/_async.py", todir="/client/_sync.py", additional_replacements=REPLACEMENTS)
        unasync.unasync_files([str(copy)], rules=[rule])
        out = work / "_sync.py"
        # The same import order and format as the rest of the tree: renamed imports move, and dropping
        # "await " can shorten lines ruff would join.
        ruff = [sys.executable, "-m", "ruff"]
        subprocess.run([*ruff, "check", "--fix", "--select", "I", "--quiet", str(out)], check=True, cwd=ROOT)
        subprocess.run([*ruff, "format", "--quiet", str(out)], check=True, cwd=ROOT)
        return HEADER + out.read_text(encoding="utf-8")


def main(argv: list[str]) -> int:
    text = generate(SOURCE)
    if "--check" in argv:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            diff = difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(TARGET), "generated")
            sys.stderr.writelines(diff)
            sys.stderr.write(
                f"{TARGET} is out of date: run `make sync-client` (python scripts/generate_sync_client.py)\n"
            )
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
