"""The connection layer: every SQLite connection d1sync opens, and every transaction on it.

:class:`Connection` owns what the rest of the package must not get wrong:

- **connect** with d1sync's pragmas: WAL, ``synchronous=NORMAL`` (durable at checkpoints, never corrupt), a
  busy timeout, foreign keys on (as on D1), autocommit mode so transactions are explicit, and ``unhex()``
  where the local SQLite predates it (3.41);
- **a lock**, so one connection is safe across threads: a transaction holds it from ``BEGIN`` to ``COMMIT``,
  and every statement fetches its rows while holding it;
- **atomic()**: ``BEGIN IMMEDIATE`` at the outermost level, savepoints when nested, a rollback after a
  failed ``COMMIT`` (a deferred foreign key, say);
- **snapshot()**: a read transaction, so several reads see one state of the file;
- **error translation**, done once: no ``sqlite3`` exception leaves this module
  (:func:`d1sync.errors.from_sqlite`);
- **commit notifications**: after a commit that changed rows, every callback subscribed to the file with
  :func:`on_commit` runs. Storage never imports the code that listens (the sync worker subscribes).

Example::

    with Connection("app.db") as conn:
        with conn.atomic():
            conn.execute("INSERT INTO notes (body) VALUES (?)", ("hi",))
        with conn.snapshot():
            total = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

from d1sync.errors import LimitError, UndecodableTextError, from_sqlite

__all__ = ["DEFAULT_BUSY_TIMEOUT", "Connection", "Rows", "connect", "notify_commit", "on_commit", "remove_database"]

DEFAULT_BUSY_TIMEOUT = 5.0


# -- commit notifications ----------------------------------------------------------------------------------

_subscribers_lock = threading.Lock()
_subscribers: dict[str, set[Callable[[], None]]] = {}


def _file_key(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(Path(path))


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``: what tells one file from another put in its place."""
    if os.fspath(path) == ":memory:":
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def on_commit(path: str | os.PathLike[str], callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after every commit that changed rows of the file ``path`` through a d1sync Connection
    in this process. Returns the function that unsubscribes it. Callbacks must be quick (set an event)."""
    key = _file_key(path)
    with _subscribers_lock:
        _subscribers.setdefault(key, set()).add(callback)

    def unsubscribe() -> None:
        with _subscribers_lock:
            callbacks = _subscribers.get(key)
            if callbacks is not None:
                callbacks.discard(callback)
                if not callbacks:
                    del _subscribers[key]

    return unsubscribe


_NUMBERED = re.compile(r"\?\d")
_BARE = re.compile(r"\?(?!\d)")
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
"""String literals and quoted identifiers: a ``?`` inside one is no parameter."""


def _numbered(sql: str, params: Sequence[Any]) -> Sequence[Any] | dict[str, Any]:
    """Parameters as Python's sqlite3 wants them for ``sql``.

    D1 binds an array to ``?1``, ``?2``, ... as SQLite does; Python's sqlite3 treats ``?NNN`` as a named
    parameter and deprecates a sequence for it (3.12 warns; 3.14 refuses). So SQL numbered throughout gets
    its array as the mapping ``{"1": first, "2": second, ...}``, which binds the same values.
    """
    if not params or isinstance(params, dict) or not _NUMBERED.search(sql):
        return params
    if _BARE.search(_QUOTED.sub("", sql)):
        return params  # plain ? as well: sqlite3 binds the sequence positionally, as it is

    return {str(index): value for index, value in enumerate(params, 1)}


def notify_commit(path: str | os.PathLike[str]) -> None:
    """Run the callbacks subscribed to ``path`` (for writes d1sync makes outside a Connection)."""
    _notify(_file_key(path))


def _notify(key: str) -> None:
    if not _subscribers:
        return
    with _subscribers_lock:
        callbacks = list(_subscribers.get(key, ()))
    for callback in callbacks:
        callback()


# -- rows ------------------------------------------------------------------------------------------------


class Rows:
    """The rows of one statement, fetched while the connection's lock was held, plus the cursor's facts."""

    __slots__ = ("_next", "_rows", "description", "lastrowid", "rowcount")

    def __init__(self, cursor: sqlite3.Cursor, rows: list[Any]) -> None:
        self._rows = rows
        self._next = 0
        self.description = cursor.description
        self.lastrowid = cursor.lastrowid
        self.rowcount = cursor.rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        """Every row not fetched yet."""
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    @property
    def columns(self) -> list[str]:
        """The result's column names (empty for statements that return no rows)."""
        return [d[0] for d in self.description] if self.description else []


def _unhex(text: object) -> bytes | None:
    if text is None:
        return None
    try:
        return bytes.fromhex(str(text))
    except ValueError:
        return None  # SQLite's unhex() returns NULL for malformed input


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def shown(path: str | os.PathLike[str]) -> str:
    """A file's path as a hint prints it: ``'my files/app.db'``, shell-quoted, so that the command a hint
    suggests can be pasted as it is (never a placeholder such as ``DB``)."""
    return shlex.quote(os.fspath(path))


def remove_database(path: str | os.PathLike[str]) -> None:
    """Delete a database file with its WAL, shared-memory and journal files (those that exist)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{os.fspath(path)}{suffix}").unlink(missing_ok=True)


def connect(
    path: str | os.PathLike[str],
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    wal: bool = True,
    read_only: bool = False,
) -> sqlite3.Connection:
    """A plain ``sqlite3`` connection with d1sync's pragmas (see the module docstring), in autocommit mode.

    For code that wants ``sqlite3`` itself, as an application's own writer does (the benchmarks time
    exactly that). d1sync's own code uses :class:`Connection`.

    ``wal=False`` keeps the file's journal mode (a read then leaves an empty file empty). ``read_only``
    opens an existing file only (never creates one), keeps its journal mode and refuses every write.

    Raises:
        SQLError: the file cannot be opened, or is not a SQLite database (the message names the file).
    """
    name = os.fspath(path)
    # mode=rw, not ro: only a writable connection removes a WAL file's -wal and -shm when it closes.
    target = f"file:{quote(os.path.abspath(name))}?mode=rw" if read_only else name
    try:
        raw = sqlite3.connect(
            target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=read_only
        )
    except sqlite3.Error as exc:
        raise from_sqlite(exc, path=name) from exc
    try:
        raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if read_only:
            raw.execute("PRAGMA query_only = ON")
        elif wal and name != ":memory:":
            raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = NORMAL")
        raw.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raw.close()
        raise from_sqlite(exc, path=os.fspath(path)) from exc
    if sqlite3.sqlite_version_info < (3, 41, 0):
        raw.create_function("unhex", 1, _unhex, deterministic=True)
    return raw


class Connection:
    """One SQLite connection, safe across threads (see the module docstring).

    Args:
        path: the file (created if missing), or ``":memory:"``.
        busy_timeout: seconds to wait for another connection's write lock before a ``TransientError``.
        wal, read_only: see :func:`connect` (a read-only connection writes nothing, not even WAL mode).
        notify: run the file's :func:`on_commit` callbacks after this connection's commits. The sync worker's
            own connection does not: its bookkeeping (the lease, acknowledgements) must not wake itself.

    Raises:
        SQLError: the file cannot be opened, or is not a SQLite database (the message names the file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        notify: bool = True,
        wal: bool = True,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self._key = "" if os.fspath(path) == ":memory:" or not notify else _file_key(path)  # "": nobody listens
        self._options = {"busy_timeout": busy_timeout, "wal": wal, "read_only": read_only}
        self._raw = connect(path, **self._options)  # type: ignore[arg-type]
        self._file = _file_identity(self.path)
        self._lock = threading.RLock()
        self._depth = 0
        self._reading = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"Connection({os.fspath(self.path)!r})"

    @property
    def raw(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection, for settings d1sync does not wrap (limits, an authorizer). Statements
        run through it are not translated, locked or notified: use :meth:`execute`."""
        return self._raw

    @property
    def lock(self) -> threading.RLock:
        """The connection's lock (re-entrant): hold it to run several statements with no other thread between."""
        return self._lock

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_transaction(self) -> bool:
        return self._raw.in_transaction

    @property
    def total_changes(self) -> int:
        return self._raw.total_changes

    def replaced(self) -> bool:
        """Whether another file now sits at :attr:`path` (a restore, a copy moved into place) than the one this
        connection opened; False while the path holds no file at all, or for ``:memory:``."""
        now = _file_identity(self.path)
        return self._file is not None and now is not None and now != self._file

    def reopen(self) -> None:
        """Open the file at :attr:`path` anew (after :meth:`replaced`); not inside a transaction."""
        with self._lock:
            if self._depth or self._raw.in_transaction:
                raise RuntimeError("cannot reopen a connection inside a transaction")
            self._raw.close()
            self._raw = connect(self.path, **self._options)  # type: ignore[arg-type]
            self._file = _file_identity(self.path)

    def close(self) -> None:
        """Close the connection (idempotent). An open transaction is rolled back by SQLite."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- statements --------------------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement and fetch its rows, holding the lock throughout.

        Outside a transaction, a statement that wrote notifies the file's subscribers (it committed).
        """
        with self._lock:
            before = self._raw.total_changes
            try:
                cursor = self._raw.execute(sql, _numbered(sql, params))
                rows = Rows(cursor, cursor.fetchall())
            except sqlite3.Error as exc:
                raise from_sqlite(exc, sql) from exc
            except OverflowError as exc:  # an int beyond 64 bits, refused by Python's sqlite3 before SQLite
                raise LimitError(f"{exc}: SQLITE_TOOBIG", code=7500, statement=sql) from exc
            if self._depth == 0 and not self._raw.in_transaction and self._raw.total_changes != before:
                _notify(self._key)
            return rows

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> int:
        """Run one statement for each parameter sequence (inside :meth:`atomic`); returns the rows changed."""
        with self._lock:
            try:
                return int(self._raw.executemany(sql, seq_of_params).rowcount)
            except sqlite3.Error as exc:
                raise from_sqlite(exc, sql) from exc

    def executescript(self, sql: str) -> None:
        """Run ``;``-separated statements without parameters, outside any transaction (schema set-up)."""
        with self._lock:
            try:
                self._raw.executescript(sql)
            except sqlite3.Error as exc:
                raise from_sqlite(exc, sql) from exc

    def read(self, sql: str, params: Sequence[Any] = ()) -> tuple[Rows, bool]:
        """:meth:`execute` a query; if some text is not valid UTF-8, run it again decoding such bytes as lone
        surrogates (``surrogateescape``) instead of failing.

        SQLite stores whatever bytes it is given as TEXT; Python refuses to decode them (and D1, UTF-8 through
        and through, could not store them either). Returns the rows and whether the fallback was needed: only
        then need the caller look for such text, so the common case pays nothing.
        """
        try:
            return self.execute(sql, params), False
        except UndecodableTextError:
            pass
        with self._lock:
            previous = self._raw.text_factory
            self._raw.text_factory = _lenient_text
            try:
                return self.execute(sql, params), True
            finally:
                self._raw.text_factory = previous

    def stream(self, sql: str, params: Sequence[Any] = (), *, lenient: bool = False) -> Iterator[tuple[Any, ...]]:
        """Run a query and yield its rows as SQLite produces them (memory stays bounded, however many there
        are). Text that is not valid UTF-8 raises :class:`~d1sync.errors.UndecodableTextError`, or with
        ``lenient`` is decoded as :meth:`read` does (each text value then costs a Python call). The lock is held
        until the rows are exhausted or the generator is closed: use it inside :meth:`snapshot`."""
        with self._lock:
            previous = self._raw.text_factory
            if lenient:
                self._raw.text_factory = _lenient_text
            try:
                cursor = self._raw.execute(sql, _numbered(sql, params))
                while rows := cursor.fetchmany(1_000):
                    yield from rows
            except sqlite3.Error as exc:
                raise from_sqlite(exc, sql) from exc
            finally:
                self._raw.text_factory = previous

    def data_version(self) -> int:
        """``PRAGMA data_version``: changes whenever another connection commits to the file."""
        return int(self.execute("PRAGMA data_version").fetchone()[0])

    # -- transactions ------------------------------------------------------------------------------------

    def _run(self, sql: str) -> None:
        try:
            self._raw.execute(sql)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, sql) from exc

    @contextmanager
    def atomic(self) -> Iterator[Self]:
        """A write transaction: ``BEGIN IMMEDIATE`` at the outermost level, a savepoint when nested.

        Commits when the block ends and rolls back if it raises; holds the lock throughout. After an
        outermost commit that changed rows, the file's subscribers are notified.

        Raises:
            TransientError: another connection holds the write lock longer than the busy timeout.
            SQLError: the ``COMMIT`` failed (a deferred foreign key); the transaction was rolled back.
        """
        with self._lock:
            if self._reading:
                raise RuntimeError("atomic() inside snapshot(): a read snapshot cannot write")
            outer = self._depth == 0
            name = f"d1sync_sp{self._depth}"
            before = self._raw.total_changes
            self._run("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                # SQLite may already have rolled the whole transaction back (SQLITE_FULL, an interrupt).
                if self._raw.in_transaction:
                    if outer:
                        self._raw.execute("ROLLBACK")
                    else:
                        self._raw.execute(f"ROLLBACK TO {name}")
                        self._raw.execute(f"RELEASE {name}")
                raise
            self._depth -= 1
            try:
                self._run("COMMIT" if outer else f"RELEASE {name}")
            except BaseException:
                # A failed COMMIT leaves the transaction open: end it.
                if outer and self._raw.in_transaction:
                    self._raw.execute("ROLLBACK")
                raise
            if outer and self._raw.total_changes != before:
                _notify(self._key)

    @contextmanager
    def snapshot(self) -> Iterator[Self]:
        """A read transaction: every statement in the block sees the same state of the file.

        Inside :meth:`atomic` (or another snapshot) it adds nothing: that transaction is the snapshot.
        """
        with self._lock:
            if self._depth or self._reading:
                self._reading += 1
                try:
                    yield self
                finally:
                    self._reading -= 1
                return
            self._run("BEGIN")
            self._reading += 1
            try:
                yield self
            finally:
                self._reading -= 1
                if self._raw.in_transaction:
                    self._raw.execute("COMMIT")
