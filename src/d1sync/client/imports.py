"""D1's import flow, sans-I/O: the requests ``wrangler d1 execute --file --remote`` sends, and the checks on
each answer. :meth:`D1Client.import_sql <d1sync.client.D1Client.import_sql>` runs it.

::

    POST .../d1/database/{id}/import  {"action": "init", "etag": md5}       -> {"filename", "upload_url"}
    PUT  upload_url                    the SQL text (no bearer token)        -> 200, ETag: "md5"
    POST .../d1/database/{id}/import  {"action": "ingest", "filename", "etag"}
    POST .../d1/database/{id}/import  {"action": "poll", "current_bookmark"} until "complete" or "error"

As wrangler (``packages/wrangler/src/d1/execute.ts``) does: the ``etag`` is the MD5 hex of the file; an
``init`` for a file D1 already holds answers with the import itself (already started) instead of an upload
URL; the upload must answer 200 with the same MD5 as its ``ETag``; an answer with ``"success": false``
carries its reason in ``error``; ``status: "error"`` in ``errors``; anything but ``"complete"`` is polled
again with the answer's ``at_bookmark``, and a poll that ends otherwise means D1 reset before the import
completed. The upload goes to a signed URL outside the API: it spends none of the account's request budget.

Every answer is checked before it is believed: an init without an upload URL or an import, a "complete"
without its ``result`` (``num_queries``, ``final_bookmark``), an upload without the right ETag all raise,
never pass as success.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from d1sync.database import Meta
from d1sync.errors import D1Error, TransientError, UnprovenResultError, classify_error

__all__ = [
    "ImportHandle",
    "ImportResult",
    "Stage",
    "import_body",
    "md5_hex",
    "read_answer",
    "still_running",
    "upload_problem",
]

Stage = Literal["init", "uploaded", "ingesting", "complete"]


UPLOAD_CHUNK = 1 << 20
"""Bytes read from a file at a time, to hash it and to upload it."""


def md5_file(path: str | os.PathLike[str]) -> str:
    """:func:`md5_hex` of a file's content, read chunk by chunk."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(UPLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def md5_hex(data: bytes) -> str:
    """The MD5 hex digest of ``data``: the ``etag`` D1's import names a file by (as wrangler computes it)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class ImportHandle:
    """Where an import is: enough to poll it again after a crash (:meth:`D1Client.poll_import`).

    ``filename`` is the import's id (D1's name for the uploaded file, unique per upload), ``etag`` the file's
    MD5, ``bookmark`` the last ``at_bookmark`` D1 answered (what a poll sends as ``current_bookmark``).
    ``stage`` says how far it got: ``init`` (D1 issued an upload URL; nothing runs yet), ``uploaded``,
    ``ingesting`` (D1 was told to run it: poll, never start it again) or ``complete``.
    """

    database_id: str
    etag: str
    filename: str = ""
    bookmark: str | None = None
    stage: Stage = "init"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, to persist; :meth:`from_dict` reads it back."""
        return {
            "database_id": self.database_id,
            "etag": self.etag,
            "filename": self.filename,
            "bookmark": self.bookmark,
            "stage": self.stage,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportHandle:
        stage = str(data.get("stage") or "init")
        if stage not in ("init", "uploaded", "ingesting", "complete"):
            raise ValueError(f"not an import stage: {stage!r}")
        bookmark = data.get("bookmark")
        return cls(
            str(data["database_id"]),
            str(data["etag"]),
            str(data.get("filename") or ""),
            None if bookmark is None else str(bookmark),
            stage,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ImportResult:
    """A finished import: its handle, how many statements ran, the bookmark after them, and D1's meta."""

    handle: ImportHandle
    num_queries: int
    final_bookmark: str
    meta: Meta
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    """One import answer, checked: ``done`` (a result), or still running (poll with ``bookmark``)."""

    bookmark: str | None
    result: ImportResult | None = None
    upload_url: str | None = None
    filename: str | None = None


def import_body(action: str, handle: ImportHandle) -> bytes:
    """The JSON body wrangler sends for ``action`` (init, ingest or poll)."""
    body: dict[str, Any]
    if action == "init":
        body = {"action": "init", "etag": handle.etag}
    elif action == "ingest":
        body = {"action": "ingest", "filename": handle.filename, "etag": handle.etag}
    elif action == "poll":
        body = {"action": "poll", "current_bookmark": handle.bookmark}
    else:
        raise ValueError(f"not an import action: {action!r}")
    return json.dumps(body, separators=(",", ":")).encode()


def _failed(message: str) -> D1Error:
    # D1 reports a failed import (a statement SQLite refused) inside a successful envelope, with SQLite's text.
    return classify_error(status=400, code=7500, message=message)


def _unproven(what: str) -> UnprovenResultError:
    return UnprovenResultError(f"D1's import answer proves nothing: {what}; the outcome is unknown")


def read_answer(result: Any, handle: ImportHandle, *, init: bool = False) -> Answer:
    """Check one import answer (the envelope's ``result``) for ``handle``.

    Raises:
        D1Error: the import failed (``success: false`` or ``status: "error"``), classified from D1's text.
        UnprovenResultError: an answer that is neither an upload URL (``init`` only), a running import, nor a
            complete one with its result.
        TransientError: the import ended in a state other than complete (D1 reset before it completed).
    """
    if not isinstance(result, Mapping):
        raise _unproven(f"'result' is {type(result).__name__}, not an object")
    if init and "upload_url" in result:
        url, filename = result.get("upload_url"), result.get("filename")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not filename:
            raise _unproven("an upload URL that is not an http(s) URL, or no filename")
        return Answer(None, upload_url=url, filename=str(filename))
    if result.get("success") is False:
        errors = [str(e) for e in result.get("errors") or [] if e]
        raise _failed(str(result.get("error") or "; ".join(errors) or "the import failed without a reason"))
    status = result.get("status")
    bookmark = result.get("at_bookmark")
    bookmark = str(bookmark) if bookmark is not None else handle.bookmark
    messages = [str(m) for m in result.get("messages") or []]
    if status == "error":
        raise _failed("; ".join(str(e) for e in result.get("errors") or []) or "the import failed without a reason")
    if status == "complete":
        body = result.get("result")
        if not isinstance(body, Mapping):
            raise _unproven("status 'complete' without a 'result'")
        count, final = body.get("num_queries"), body.get("final_bookmark")
        if not isinstance(count, int) or isinstance(count, bool) or not isinstance(final, str) or not final:
            raise _unproven("status 'complete' without 'num_queries' and 'final_bookmark'")
        meta = body.get("meta")
        done = replace(
            handle, bookmark=final, stage="complete", filename=handle.filename or str(result.get("filename") or "")
        )
        return Answer(
            final,
            ImportResult(done, count, final, Meta.from_dict(meta if isinstance(meta, Mapping) else None), messages),
        )
    if status is None and result.get("success") is not True:
        raise _unproven("neither an upload URL nor an import's status")
    return Answer(bookmark)


def still_running(handle: ImportHandle, seconds: float) -> TransientError:
    """The error for an import still running when the caller stopped waiting: poll it again later."""
    return TransientError(
        f"the import {handle.filename or handle.etag} is still running after {seconds:.0f}s; poll it again with "
        "its handle (poll_import), never start it again"
    )


def upload_problem(status: int, etag_header: str | None, etag: str) -> str | None:
    """What is wrong with an upload's answer (None: it proves the file arrived whole)."""
    if status != 200:
        return f"the upload was answered HTTP {status}"
    if not etag_header:
        return "the upload's answer has no ETag"
    if etag_header.strip().strip('"') != etag:
        return "the uploaded file's ETag differs from its MD5: it did not arrive whole"
    return None
