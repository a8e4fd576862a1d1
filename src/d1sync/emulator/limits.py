"""The emulator's limits on request bodies: ``max_body`` for every API request, ``max_import`` for an import's
upload (D1's 5 GB for ``wrangler d1 execute --file``: the upload goes to a signed URL, outside the API)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d1sync.errors import ApiError

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(ApiError):
    """A request body over the emulator's limit (``max_body``, or ``max_import`` for an upload): HTTP 413, D1
    code 7400.

    Cloudflare's edge refuses such a body with 413 before D1 sees it (an HTML page, no documented code). The
    emulator answers in D1's envelope, and 7400 ("the request is malformed") is the code D1 gives any request
    it refuses as sent, before running it. The client classifies HTTP 413 as a
    :class:`~d1sync.errors.LimitError` whatever the code: never retried as is, only ever sent smaller.
    """

    def __init__(self, limit: int, size: int | None = None) -> None:
        if size is None:
            message = f"The request is too large: its body passed the limit of {limit} bytes"
        else:
            message = f"The request is too large: {size} bytes, over the limit of {limit} bytes per body"
        super().__init__(7400, 413, message)


class BodyLimit:
    """Pure ASGI middleware: no route reads more than ``max_body`` bytes of a request body (an upload under
    ``upload_prefix``: ``max_import``).

    The route's first read raises :class:`BodyTooLarge` (a 413 envelope) when ``Content-Length`` is over the
    limit, before a byte is read; so what a route checks first (an upload URL's token, a database id) is
    still answered first. Otherwise the body is counted as the route reads it, and the read that passes the
    limit raises instead of returning: the route reads no further. The server discards what the client
    still sends.
    """

    def __init__(self, app: ASGIApp, *, max_body: int, max_import: int, upload_prefix: str) -> None:
        self.app = app
        self.max_body, self.max_import, self.upload_prefix = max_body, max_import, upload_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_import if scope["path"].startswith(self.upload_prefix) else self.max_body
        declared = _content_length(scope)
        received = 0

        async def counted() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit, declared)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses such a request before the app sees it
    return None
