"""Import and export for the emulator: the SQL dump D1's ``/export`` produces, and the files behind the upload
and download URLs that ``/import`` and ``/export`` hand out.

Real D1 keeps an import's upload and an export's download in R2 behind signed URLs; the emulator serves them
itself under ``/d1-transfer/<token>``, where the token (128 random bits) is the only credential, as a signed
URL's signature is. The files live in the data folder's ``_transfers/``.

The dump follows D1's (and ``wrangler d1 export --local``'s): ``PRAGMA defer_foreign_keys=TRUE;``, each table's
``CREATE TABLE`` (``IF NOT EXISTS`` when the name was quoted) followed by its rows as ``INSERT INTO "t"
VALUES(...)``, then indexes, triggers and views; ``sqlite_*`` and ``_cf_*`` tables are left out, and a virtual
table makes the export fail, as on D1.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from d1sync.emulator.store import Store
from d1sync.errors import ApiError

__all__ = ["Transfers", "dump_sql"]

VIRTUAL_TABLES_REFUSED = "D1 Export error: cannot export databases with Virtual Tables (fts5)"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"
        if math.isinf(value):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)
    text = "'" + str(value).replace("'", "''") + "'"
    # Line breaks travel as replace() calls, so every statement of the dump stays on one line.
    if "\r" in text:
        text = "replace(" + text.replace("\r", "\\r") + ",'\\r',char(13))"
    if "\n" in text:
        text = "replace(" + text.replace("\n", "\\n") + ",'\\n',char(10))"
    return text


def _tables(store: Store) -> list[tuple[str, str]]:
    rows = store.read(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql NOT NULL "
        "ORDER BY tbl_name = 'sqlite_sequence', rowid"
    )
    return [(str(name), str(sql)) for name, sql in rows]


def _table_lines(store: Store, name: str, sql: str, *, no_schema: bool, no_data: bool) -> Iterator[str]:
    if name == "sqlite_sequence":
        if not no_schema:
            yield "DELETE FROM sqlite_sequence;"
    elif name.startswith("sqlite_stat"):
        if not no_schema:
            yield "ANALYZE sqlite_schema;"
    elif sql.startswith("CREATE VIRTUAL TABLE"):
        raise ApiError(7500, 400, VIRTUAL_TABLES_REFUSED)
    elif name.startswith(("_cf_", "sqlite_")):
        return
    elif not no_schema:
        quoted = re.match(r"CREATE TABLE ['\"]", sql)
        yield f"CREATE TABLE IF NOT EXISTS {sql[13:]};" if quoted else f"{sql};"
    if no_data or name.startswith(("_cf_", "sqlite_stat")):
        return
    columns = [str(row[1]) for row in store.read(f"PRAGMA table_info({_identifier(name)})")]
    select = f"SELECT {', '.join(_identifier(c) for c in columns)} FROM {_identifier(name)}"
    for row in store.read(select):
        yield f"INSERT INTO {_identifier(name)} VALUES({','.join(_literal(v) for v in row)});"


def dump_sql(store: Store, *, no_schema: bool = False, no_data: bool = False, tables: Sequence[str] = ()) -> str:
    """The database as D1's export writes it (see the module docstring); ``tables`` limits it to those."""
    wanted = set(tables)
    lines = ["PRAGMA defer_foreign_keys=TRUE;"]
    with store.lock:
        for name, sql in _tables(store):
            if not wanted or name in wanted:
                lines.extend(_table_lines(store, name, sql, no_schema=no_schema, no_data=no_data))
        if not no_schema:
            rest = store.read(
                "SELECT name, sql FROM sqlite_schema WHERE sql NOT NULL AND type IN ('index', 'trigger', 'view') "
                "ORDER BY type COLLATE NOCASE"
            )
            lines.extend(f"{sql};" for name, sql in rest if not wanted or name in wanted)
    return "\n".join(lines)


class UploadSink:
    """Where an upload's chunks go: a file, and the MD5 of what was written (the ETag the PUT answers)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self._md5 = hashlib.md5(usedforsecurity=False)

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self._md5.update(chunk)

    @property
    def etag(self) -> str:
        return self._md5.hexdigest()


@dataclass
class Upload:
    database_id: str
    etag: str
    token: str
    path: Path
    done: bool = False


class Transfers:
    """The files behind upload and download URLs, in ``<data>/_transfers`` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "_transfers"
        self._lock = threading.Lock()
        self._uploads: dict[str, Upload] = {}  # by token
        self._downloads: dict[str, Path] = {}

    def _new_token(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        return secrets.token_hex(16)

    def upload_for(self, database_id: str, etag: str) -> Upload:
        """The upload of the file whose MD5 is ``etag``: an earlier complete one, or a new one to PUT."""
        with self._lock:
            for upload in self._uploads.values():
                if upload.database_id == database_id and upload.etag == etag and upload.done:
                    return upload
            token = self._new_token()
            upload = Upload(database_id, etag, token, self.folder / f"{token}.sql")
            self._uploads[token] = upload
            return upload

    def issued(self, token: str) -> Upload:
        """The upload ``init`` issued ``token`` for (7003/404 for any other token): ask before reading a body."""
        with self._lock:
            upload = self._uploads.get(token)
        if upload is None:
            raise ApiError(7003, 404, "No upload was issued for this URL")
        return upload

    @contextmanager
    def receiving(self, upload: Upload) -> Iterator[UploadSink]:
        """A sink the PUT body of ``upload`` is written to chunk by chunk, never held whole in memory.

        The file takes the upload's place only when the block ends without an error (a body over the size
        limit, a client that hung up): until then, and after a failure, the upload is as it was.
        """
        part = upload.path.with_name(f"{upload.path.name}.{secrets.token_hex(4)}.part")
        sink = UploadSink(part.open("wb"))
        try:
            yield sink
            sink.file.close()
            os.replace(part, upload.path)
        except BaseException:
            sink.file.close()
            part.unlink(missing_ok=True)
            raise
        upload.done = True

    def uploaded(self, database_id: str, filename: str, etag: str) -> bytes:
        """The content of an upload ``init`` named ``filename`` (7400 if it was never PUT or differs)."""
        with self._lock:
            upload = next((u for u in self._uploads.values() if u.path.name == filename), None)
        if upload is None or not upload.done or upload.database_id != database_id:
            raise ApiError(7400, 400, f"The request is malformed: no uploaded file {filename!r}")
        data = upload.path.read_bytes()
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != etag:
            raise ApiError(7400, 400, "The request is malformed: the uploaded file does not match its etag")
        return data

    def offer(self, text: str) -> str:
        """Keep an export for download; its token."""
        with self._lock:
            token = self._new_token()
            path = self.folder / f"export-{token}.sql"
            path.write_text(text, encoding="utf-8")
            self._downloads[token] = path
            return token

    def download(self, token: str) -> bytes:
        with self._lock:
            path = self._downloads.get(token)
        if path is None or not os.path.exists(path):
            raise ApiError(7003, 404, "No export was issued for this URL")
        return path.read_bytes()
