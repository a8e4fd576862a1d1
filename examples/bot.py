"""An asyncio bot that keeps its state in SQLite and lets d1sync carry it to D1 in the background.

The bot reads messages (here: a simulated chat, one coroutine per conversation), answers each one and stores
both in a local file at local speed. The sync worker runs off the event loop: ``async with worker`` starts
it and, on the way out, sends what is left. Before it reports, the bot waits until D1 has every message
(``wait_synced_async``), which is how a bot would confirm a handover to another service reading D1.

D1 is configured from the environment exactly as the d1sync CLI is (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID,
D1_DATABASE_ID, or wrangler.toml / d1sync.toml). Without any of it the bot still runs, locally only.

    python examples/bot.py --db /tmp/bot.db --conversations 5 --messages 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

import d1sync
from d1sync import LocalDatabase, Outbox

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY NOT NULL, conversation TEXT NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL,
    at REAL NOT NULL
)"""


def store(db: LocalDatabase, conversation: str, n: int, text: str, answer: str) -> None:
    with db.atomic() as conn:
        now = time.time()
        conn.execute(
            "INSERT INTO messages VALUES (?, ?, 'user', ?, ?)", (f"{conversation}-{n}-u", conversation, text, now)
        )
        conn.execute(
            "INSERT INTO messages VALUES (?, ?, 'bot', ?, ?)", (f"{conversation}-{n}-b", conversation, answer, now)
        )


async def converse(db: LocalDatabase, conversation: str, messages: int, rng: random.Random) -> int:
    """One conversation: a user message and the bot's answer, each stored locally as it happens."""
    for n in range(messages):
        await asyncio.sleep(rng.uniform(0, 0.005))  # the chat platform's pace
        text = f"message {n} in {conversation}"
        # A local write takes microseconds, but it may wait a moment for the file's write lock (the sync
        # worker holds it briefly to acknowledge a batch): so it runs in a thread, off the event loop.
        await asyncio.to_thread(store, db, conversation, n, text, f"echo: {text[::-1]}")
    return messages * 2


def open_store(path: Path) -> tuple[LocalDatabase, d1sync.SyncWorker | None]:
    """The bot's file with its table tracked, and a worker for D1 (None when D1 is not configured)."""
    db = LocalDatabase(path)
    try:
        db.exec(SCHEMA)
        with Outbox(path) as outbox:
            outbox.track("messages")
        return db, d1sync.from_env(path)
    except BaseException:
        db.close()
        raise


async def main(path: Path, conversations: int, messages: int, seed: int) -> dict[str, object]:
    # Opening the file, creating the schema and the outbox is blocking work too: off the event loop.
    db, worker = await asyncio.to_thread(open_store, path)
    with db:
        rng = random.Random(seed)
        chats = [converse(db, f"c{i}", messages, rng) for i in range(conversations)]
        if worker is None:
            written = sum(await asyncio.gather(*chats))
            return {"written": written, "synced": False}
        async with worker:  # starts the sync thread; leaving the block flushes and stops it
            written = sum(await asyncio.gather(*chats))
            synced = await worker.wait_synced_async(timeout=60)
            status = await asyncio.to_thread(worker.status)
        return {"written": written, "synced": synced, "pending": status.pending_changes, "dead": status.dead_letters}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("bot.db"), help="the bot's SQLite file (default bot.db)")
    parser.add_argument("--conversations", type=int, default=5)
    parser.add_argument("--messages", type=int, default=40, help="messages per conversation")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.db, args.conversations, args.messages, args.seed))))
