"""A worker that sends its backlog through D1's import and kills itself (SIGKILL) at one step of it, for the
crash tests of the import path (not collected by pytest).

Usage:
    python import_process.py APP_DB API_BASE TOKEN STEP

STEP: ``recorded`` (the import recorded, before init), ``init`` (D1 gave an upload URL), ``uploaded`` (the file is
uploaded, ingest not asked), ``ingesting`` (recorded as ingesting, the ingest not sent yet), ``complete`` (D1
said complete, not yet recorded as delivered).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from d1sync.client import D1Client, RetryPolicy
from d1sync.emulator import DEFAULT_DATABASE_ID
from d1sync.outbox import SyncConfig, SyncWorker
from d1sync.sync.push import seeder


def die() -> None:
    print("dying", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main(app_db: str, api_base: str, token: str, step: str) -> None:
    save_handle, acknowledge = seeder._save_handle, seeder.acknowledge_through

    def saving(link: Any, record: Any, handle: Any) -> None:
        save_handle(link, record, handle)
        if handle.stage == step:
            die()

    def acknowledging(*args: Any) -> int:
        if step == "complete":
            die()
        return acknowledge(*args)

    seeder._save_handle = saving  # type: ignore[assignment]
    seeder.acknowledge_through = acknowledging  # type: ignore[assignment]

    class Client(D1Client):
        def import_sql(self, sql: Any, **options: Any) -> Any:
            if step == "recorded":
                die()
            return super().import_sql(sql, **options)

    client = Client(
        account_id="a",
        database_id=DEFAULT_DATABASE_ID,
        api_token=token,
        base_url=api_base,
        retry=RetryPolicy(max_retries=0),
    )
    with SyncWorker(app_db, client, SyncConfig(via="import")) as worker:
        worker.sync_once()
    print("survived", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
