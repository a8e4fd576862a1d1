"""A FastAPI service whose state lives in SQLite and reaches D1 through d1sync, started and stopped with the app.

The lifespan builds the worker from the environment (``d1sync.from_env``: CLOUDFLARE_API_TOKEN,
CLOUDFLARE_ACCOUNT_ID, D1_DATABASE_ID, or wrangler.toml / d1sync.toml) and runs it for the app's lifetime with
``async with``: the sync thread starts before the first request and makes a last drain at shutdown. Without
D1 configured the service runs locally only. ``POST /notes?wait=true`` answers only once the note is on D1.

    DB=notes.db uvicorn examples.fastapi_app:app
    curl -X POST 'localhost:8000/notes?wait=true' -H 'content-type: application/json' -d '{"text": "hi"}'

Run uvicorn with one worker process per file, or several: each opens its own SyncWorker on the file, one
holds the drain lease and sends, the others stand by and take over if it dies (docs/embedding.md).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

import d1sync
from d1sync import LocalDatabase, Outbox

DB = Path(os.environ.get("DB", "notes.db"))
SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY NOT NULL, text TEXT NOT NULL)"


class Note(BaseModel):
    text: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    with LocalDatabase(DB) as db:
        db.exec(SCHEMA)
    with Outbox(DB) as outbox:
        outbox.track("notes")
    app.state.db = LocalDatabase(DB)
    worker = d1sync.from_env(DB)
    app.state.worker = worker
    try:
        if worker is None:
            yield
        else:
            async with worker:  # started now; stopped with a last drain when the app shuts down
                yield
    finally:
        app.state.db.close()


app = FastAPI(lifespan=lifespan)


@app.post("/notes")
async def add_note(note: Note, wait: bool = False) -> dict[str, object]:
    """Store a note locally; with ``wait``, answer once D1 has it (or say it is not there yet)."""
    note_id = str(uuid.uuid4())
    # Microseconds, unless the sync worker holds the file's write lock for a moment: off the event loop.
    await asyncio.to_thread(app.state.db.prepare("INSERT INTO notes VALUES (?, ?)").bind(note_id, note.text).run)
    worker = app.state.worker
    on_d1 = await worker.wait_synced_async(timeout=10) if wait and worker is not None else None
    return {"id": note_id, "on_d1": on_d1}


@app.get("/sync")
async def sync_status() -> dict[str, object]:
    """The outbox's health, for a readiness probe."""
    worker = app.state.worker
    if worker is None:
        return {"configured": False}
    status = await asyncio.to_thread(worker.status)  # a file read: keep it off the event loop
    return {"configured": True, "healthy": status.healthy, "pending": status.pending_changes}
