"""One planned request on the wire: the fence and the origin around its statements, as one atomic batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from d1sync.errors import FileRewoundError, SQLError
from d1sync.sqlite import shown
from d1sync.sync.push.planner import DEFER_FOREIGN_KEYS, PlannedRequest
from d1sync.sync.remote import CLEAR_ORIGIN, REWOUND, SET_ORIGIN, fence_statements
from d1sync.sync.store.state import next_send
from d1sync.sync.store.twoway import push_origin

if TYPE_CHECKING:
    from d1sync.sync.link import Link

__all__ = ["rewound", "send_request"]

T = TypeVar("T")


class Answered(NamedTuple):
    """What D1 said of a batch beyond its rows: the seconds it ran (the sum of its statements'
    ``meta.duration``; 0 when it did not say) and the database's size after it (None when it did not say)."""

    seconds: float
    size_after: int | None


def send_request(
    link: Link, request: PlannedRequest, *, meanwhile: Callable[[], T] | None = None
) -> tuple[Answered, T | None]:
    """Send one planned request as one atomic batch (foreign keys checked at its commit); return what D1 said
    of it (:class:`Answered`) and what ``meanwhile`` returned.

    A replica's batch sets the remote origin to its id first and clears it last, so the remote log knows
    these writes as its own (see :mod:`~d1sync.sync.remote`).

    With ``meanwhile``, the batch goes from the link's helper thread while ``meanwhile()`` runs on this one,
    and its result is returned once the batch is answered. The send's error, if any, is raised; an error of
    ``meanwhile`` only costs its result (None), since what it prepares is read again next pass.
    """
    db = link.target
    origin = push_origin(link.conn)
    identity, number = next_send(link.conn)
    statements = [db.prepare(DEFER_FOREIGN_KEYS)]
    statements += [db.prepare(sql).bind(*params) for sql, params in fence_statements(identity, number)]
    statements += [db.prepare(SET_ORIGIN).bind(origin)] if origin else []
    statements += [db.prepare(s.sql).bind(*s.params) for s in request.statements]
    statements += [db.prepare(CLEAR_ORIGIN)] if origin else []
    ran: list[Answered] = []

    def send() -> None:
        try:
            results = db.batch(statements)
        except SQLError as exc:
            if exc.fence != REWOUND:
                raise
            raise rewound(link.conn.path, number) from exc
        size = results[-1].meta.size_after if results else 0
        ran.append(Answered(sum(r.meta.duration for r in results) / 1000, size or None))

    if meanwhile is None:
        send()
        return ran[0], None
    done = link.aside.run(send, meanwhile)
    return ran[0], done


def rewound(path: Path, number: int) -> FileRewoundError:
    """The error for a file whose send ``number`` D1 refused as older than one it already took from it."""
    return FileRewoundError(
        f"{path} is older than what it already sent to D1 (restored from a backup?): D1 has taken a newer send "
        f"from it than this file's #{number}, so it may hold rows this file lost and lack rows written since. "
        f"Make D1 equal to this file: d1sync verify {shown(path)} --repair --delete-extra; or restore this file "
        f"from D1: d1sync clone {shown(f'{path}.restored')} (with the target options you give `sync`)"
    )
