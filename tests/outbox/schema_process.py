"""A sync worker in its own process that stops around a remote rebuild, for the crash test (not collected).

Usage:
    python schema_process.py APP_DB API_BASE TOKEN MODE
        Drains APP_DB to the emulator. When a batch rebuilds a table (it names d1sync's rebuild table), prints
        "rebuild" and then, by MODE: ``before``: never sends it; ``inflight``: sends it; ``after``: sends it,
        prints "rebuilt" once D1 answered, and sends nothing more. Either way it then waits to be killed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from d1sync.client import D1Client, RetryPolicy
from d1sync.database import Result, Statement
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.outbox import SyncWorker, drain
from d1sync.sync.schema.plan import REBUILD_TABLE


class StoppingClient(D1Client):
    mode = "before"

    def batch(self, statements: Sequence[Statement], *, idempotent: bool = False) -> list[Result]:
        if not any(REBUILD_TABLE in s.sql for s in statements):
            return super().batch(statements, idempotent=idempotent)
        print("rebuild", flush=True)
        if self.mode == "before":
            time.sleep(600)
        results = super().batch(statements, idempotent=idempotent)
        print("rebuilt", flush=True)
        time.sleep(600)
        return results


def main(app_db: str, api_base: str, token: str, mode: str) -> None:
    client = StoppingClient(
        account_id="a",
        database_id=DEFAULT_DATABASE_ID,
        api_token=token,
        base_url=api_base,
        retry=RetryPolicy(max_retries=0),
        timeout=30,
    )
    client.mode = mode
    with SyncWorker(app_db, client) as worker:
        drain(worker, max_passes=20)
    print("drained", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main(*sys.argv[1:5])
