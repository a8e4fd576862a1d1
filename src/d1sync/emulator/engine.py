"""D1's rules over local SQLite files: the emulator's engine, free of HTTP.

One SQLite file per database id in a data folder (``<uuid>.sqlite3``; the id is validated as a UUID and
normalised before it names a file, so no id can reach outside the folder), plus a small catalog file with
names and creation times. :meth:`Engine.execute` takes a decoded ``/query`` or ``/raw`` body and returns the
``result`` list D1 would send, or raises :class:`ApiError` carrying D1's code, HTTP status and message.

The rules (d1-contract §1, §3, §4):

* JSON number parameters bind as REAL (D1 passes them through JavaScript doubles), ``true``/``false`` too
  (1.0/0.0); strings stay TEXT.
* Each database is a :class:`~d1sync.emulator.store.Store`: apsw's bundled SQLite (D1's version) with D1's
  authorizer, limits and error texts (see :mod:`d1sync.emulator.store` and :mod:`d1sync.local`).
* A body (single or batch) is one transaction; each statement of a text gets a result.
* No statement reaches another file: the authorizer denies ``ATTACH`` and ``DETACH`` (``not authorized:
  SQLITE_AUTH``, as D1 answers), and ``VACUUM`` (so ``VACUUM INTO``) is refused before it runs.
* A ``/query`` or ``/raw`` request runs for at most ``max_duration`` seconds (D1's 30 s); past it, it is
  rolled back and answered 7429 ``D1 DB storage operation exceeded timeout which caused object to be reset.``
* Results leave as D1 sends them: integers beyond +-2**53 as the double JavaScript would print, integral
  floats as integers, BLOBs as arrays of byte values, non-finite floats as ``null``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import shutil
import threading
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from d1sync.client.config import DEFAULT_EMULATOR_DATABASE_ID as DEFAULT_DATABASE_ID
from d1sync.database import Meta, RawResult
from d1sync.emulator import DEFAULT_MAX_DURATION
from d1sync.emulator.history import History
from d1sync.emulator.store import Store
from d1sync.errors import ApiError, SQLError
from d1sync.local import D1_LIMITS
from d1sync.sqlite import Connection
from d1sync.values import MAX_SAFE_INT

__all__ = [
    "MAX_PARAMS",
    "MAX_STATEMENT_BYTES",
    "MAX_VALUE_BYTES",
    "ApiError",
    "Engine",
    "database_file",
    "js_number",
    "parse_database_id",
    "to_d1_value",
]

MAX_PARAMS = D1_LIMITS["VARIABLE_NUMBER"]
MAX_STATEMENT_BYTES = D1_LIMITS["SQL_LENGTH"]
MAX_VALUE_BYTES = D1_LIMITS["LENGTH"]
DEFAULT_DATABASE_NAME = "default"
NO_STATEMENTS = "No SQL statements detected."

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SERVED_BY = {
    "served_by_region": "LOCAL",
    "served_by_colo": "LOCAL",
    "served_by_primary": True,
    "served_by": "d1sync-emulator",
    "total_attempts": 1,
}


def internal_error() -> ApiError:
    return ApiError(7500, 500, f"internal error; reference = {secrets.token_hex(12)}")


def parse_database_id(value: str) -> str:
    """Validate a database id as a hyphenated UUID and return it in canonical lower case (else 7400)."""
    # fullmatch, not match: ``$`` also matches before a trailing newline, and an id ending in %0A got through.
    if not _UUID.fullmatch(value):
        raise ApiError(7400, 400, f"The database identifier is invalid: expected a UUID, got {value[:64]!r}")
    return str(uuid.UUID(value))


def database_file(data_dir: Path, database_id: str) -> Path:
    """The file holding ``database_id`` in the data folder ``data_dir`` (raises on an invalid id)."""
    return data_dir / f"{parse_database_id(database_id)}.sqlite3"


# -- values on the way out --------------------------------------------------------------------------------


def js_number(value: int | float) -> int | float | None:
    """The number JavaScript's JSON.stringify would print for ``value``, as the Python value json.dumps
    prints identically.

    Integers beyond +-2**53 go through a double (2**63-1 -> 9223372036854776000); integral doubles print
    without ``.0``; NaN and infinities print as ``null``.
    """
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        value = float(value)
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) < 1e21:
        # repr() gives the shortest round-tripping digits, exactly JavaScript's Number#toString digits.
        return int(Decimal(repr(value)))
    return value


def to_d1_value(value: Any) -> Any:
    """One SQLite result value as D1's JSON carries it."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, bytes):
        return list(value)
    return value


# -- values on the way in ---------------------------------------------------------------------------------


def _js_string(value: Any) -> str:
    """``String(value)`` in JavaScript, for D1's type error text."""
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if v is None else _js_string(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bind_value(value: Any, index: int) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(type(v) in (int, float) and 0 <= v < 256 for v in value):
        return bytes(int(v) for v in value)  # the engine binds an array of byte values as a BLOB
    if isinstance(value, int | float):
        # D1 reads the body with JavaScript: every JSON number, true and false too, is a double: REAL.
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ApiError(7500, 400, f"D1_TYPE_ERROR: parameter {index} is not a finite number")
        return number
    try:
        shown = _js_string(value)
    except RecursionError:  # arrays nested about as deep as the JSON parser allows
        shown = "[nested arrays]"
    raise ApiError(7500, 400, f"D1_TYPE_ERROR: Type 'object' not supported for value '{shown}'")


def _check_statement(sql: Any, params: Any) -> tuple[str, list[Any]]:
    if not isinstance(sql, str):
        raise ApiError(7400, 400, "The request is malformed: 'sql' must be a string")
    if params is None:
        params = []
    if not isinstance(params, list):
        raise ApiError(7400, 400, "The request is malformed: 'params' must be an array")
    return sql, [_bind_value(p, i) for i, p in enumerate(params, start=1)]


_COMMENT_LINE = re.compile(r"^\s+--.*", re.M)


def _has_text(sql: str) -> bool:
    """False for a ``sql`` D1 drops before running anything: blank once indented ``--`` lines are removed."""
    return bool(_COMMENT_LINE.sub("", sql).strip())


def _queries(body: Any) -> list[tuple[str, list[Any]]]:
    """The (sql, params) items of a ``/query`` or ``/raw`` body, validated."""
    if not isinstance(body, Mapping):
        raise ApiError(7400, 400, "The request is malformed: expected a JSON object with 'sql' or 'batch'")
    if "batch" in body and "sql" in body:
        raise ApiError(7400, 400, "The request is malformed: send either 'sql' or 'batch', not both")
    if "batch" in body:
        batch = body["batch"]
        if not isinstance(batch, list) or not all(isinstance(item, Mapping) for item in batch):
            raise ApiError(7400, 400, "The request is malformed: 'batch' must be an array of {sql, params}")
        return [_check_statement(item.get("sql"), item.get("params")) for item in batch]
    if "sql" not in body:
        raise ApiError(7400, 400, "The request is malformed: expected 'sql' or 'batch'")
    return [_check_statement(body["sql"], body.get("params"))]


# -- the engine -------------------------------------------------------------------------------------------


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Engine:
    """The emulator's databases: a folder of SQLite files with D1's rules on top.

    Thread-safe. Example::

        engine = Engine("data")
        engine.execute(DEFAULT_DATABASE_ID, {"sql": "SELECT 1 AS one"}, raw=False)
        # [{"results": [{"one": 1}], "success": True, "meta": {...}}]
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        auto_create: bool = False,
        max_duration: float = DEFAULT_MAX_DURATION,
    ) -> None:
        if not max_duration > 0:  # before any file is opened
            raise ValueError(f"max_duration must be a positive number of seconds, not {max_duration}")
        self.data_dir = Path(data_dir)
        self.max_duration = max_duration
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.auto_create = auto_create
        self._lock = threading.RLock()
        self._open: dict[str, Store] = {}
        self._histories: dict[str, History] = {}
        self._catalog = Connection(self.data_dir / "_catalog.sqlite3")
        weakref.finalize(self, self._catalog.close)  # an app never closed (no lifespan) closes when collected
        self._catalog.execute(
            "CREATE TABLE IF NOT EXISTS databases (uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
            "created_at TEXT NOT NULL)"
        )
        if not self._catalog_row(DEFAULT_DATABASE_ID):
            self._register(DEFAULT_DATABASE_ID, DEFAULT_DATABASE_NAME)
        self.database(DEFAULT_DATABASE_ID)

    def close(self) -> None:
        with self._lock:
            for db in self._open.values():
                db.close()
            self._open.clear()
            self._histories.clear()
            self._catalog.close()

    # -- files and catalog -------------------------------------------------------------------------------

    def path_for(self, database_id: str) -> Path:
        """The file of ``database_id`` (validated and normalised first: never outside the data folder)."""
        return database_file(self.data_dir, database_id)

    def _catalog_row(self, database_id: str) -> tuple[str, str, str] | None:
        row = self._catalog.execute(
            "SELECT uuid, name, created_at FROM databases WHERE uuid = ?", (database_id,)
        ).fetchone()
        return (str(row[0]), str(row[1]), str(row[2])) if row else None

    def _register(self, database_id: str, name: str) -> None:
        try:
            self._catalog.execute(
                "INSERT INTO databases (uuid, name, created_at) VALUES (?, ?, ?)", (database_id, name, _now_iso())
            )
        except SQLError as exc:
            if exc.constraint != "UNIQUE":
                raise
            raise ApiError(7502, 400, f"A database with the name '{name}' already exists") from exc

    def exists(self, database_id: str) -> bool:
        database_id = parse_database_id(database_id)
        with self._lock:
            return database_id in self._open or self.path_for(database_id).exists()

    def database(self, database_id: str) -> Store:
        """The open database for ``database_id`` (7404 when unknown, unless auto-creating)."""
        database_id = parse_database_id(database_id)
        with self._lock:
            db = self._open.get(database_id)
            if db is not None:
                return db
            path = self.path_for(database_id)
            if not path.exists():
                registered = self._catalog_row(database_id) is not None  # created, file not yet opened
                if not (registered or self.auto_create):
                    raise ApiError(7404, 404, f"The database {database_id} could not be found")
                if not registered:
                    self._register(database_id, database_id)
            db = Store(path, max_duration=self.max_duration)
            self._open[database_id] = db
            self._histories[database_id] = History(db, database_id)
            return db

    def history(self, database_id: str) -> History:
        """The Time Travel history of ``database_id`` (opened with it)."""
        database_id = parse_database_id(database_id)
        with self._lock:
            self.database(database_id)
            return self._histories[database_id]

    def create(self, name: Any) -> dict[str, Any]:
        """Create a database called ``name`` (D1's ``POST .../d1/database``)."""
        if not isinstance(name, str) or not name.strip():
            raise ApiError(7400, 400, "The request is malformed: 'name' must be a non-empty string")
        if not name.isprintable():  # a lone surrogate (valid JSON) cannot be stored: it is not printable
            raise ApiError(7400, 400, "The request is malformed: 'name' must be printable text")
        database_id = str(uuid.uuid4())
        with self._lock:
            self._register(database_id, name)
            self.database(database_id)
        return self.describe(database_id)

    def delete(self, database_id: str) -> None:
        database_id = parse_database_id(database_id)
        with self._lock:
            if not self.exists(database_id):
                raise ApiError(7404, 404, f"The database {database_id} could not be found")
            db = self._open.pop(database_id, None)
            history = self._histories.pop(database_id, None)
            if db is not None:
                db.close()
            path = self.path_for(database_id)
            if history is not None:
                shutil.rmtree(history.folder, ignore_errors=True)
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
            self._catalog.execute("DELETE FROM databases WHERE uuid = ?", (database_id,))

    def list_databases(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every database in the folder, oldest first, optionally only those called ``name``."""
        with self._lock:
            ids = {p.stem for p in self.data_dir.glob("*.sqlite3") if _UUID.fullmatch(p.stem)}
            ids.update(self._open)
            described = [self.describe(i) for i in ids]
        described.sort(key=lambda d: (d["created_at"], d["uuid"]))
        return [d for d in described if name is None or d["name"] == name]

    def describe(self, database_id: str) -> dict[str, Any]:
        """The D1-shaped object of one database (``uuid``, ``name``, ``created_at``, sizes, ...)."""
        database_id = parse_database_id(database_id)
        with self._lock:
            if not self.exists(database_id):
                raise ApiError(7404, 404, f"The database {database_id} could not be found")
            row = self._catalog_row(database_id)
            db = self.database(database_id)
            num_tables, file_size = db.count_tables(), db.size()
        name, created_at = (row[1], row[2]) if row else (database_id, _now_iso())
        return {
            "uuid": database_id,
            "name": name,
            "created_at": created_at,
            "version": "production",
            "num_tables": int(num_tables),
            "file_size": file_size,
            "read_replication": {"mode": "disabled"},
        }

    # -- queries -----------------------------------------------------------------------------------------

    def execute(self, database_id: str, body: Any, *, raw: bool) -> list[dict[str, Any]]:
        """Run a ``/query`` (``raw=False``) or ``/raw`` body atomically; return D1's ``result`` list."""
        queries = [(sql, params) for sql, params in _queries(body) if _has_text(sql)]
        if not queries:
            raise ApiError(7500, 400, NO_STATEMENTS)
        store, history = self.database(database_id), self.history(database_id)
        with store.lock:
            history.before_request()
            results = store.run(queries)
        return [_result(r, raw=raw) for r in results]

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def d1_meta(meta: Meta) -> dict[str, Any]:
    """``meta`` as the emulator sends it: served ``LOCAL``, ``last_row_id`` as JavaScript prints it."""
    return _meta(meta)


def _meta(meta: Meta) -> dict[str, Any]:
    out = dataclasses.replace(meta, **_SERVED_BY).to_dict()  # type: ignore[arg-type]
    out["last_row_id"] = js_number(meta.last_row_id)
    return out


def _result(result: RawResult, *, raw: bool) -> dict[str, Any]:
    rows = [[to_d1_value(v) for v in row] for row in result.rows]
    results: Any
    if raw:
        results = {"columns": list(result.columns), "rows": rows}
    else:
        results = [dict(zip(result.columns, row, strict=True)) for row in rows]
    return {"results": results, "success": True, "meta": _meta(result.meta)}


def decode_body(data: bytes) -> Any:
    """Parse a request body as JavaScript would: NaN/Infinity are not JSON (7400 on anything invalid, nesting
    deeper than Python's parser goes included)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        return json.loads(data, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(7400, 400, f"The request is malformed: invalid JSON body ({exc})") from exc
    except RecursionError as exc:
        raise ApiError(7400, 400, "The request is malformed: the JSON body is nested too deeply") from exc
