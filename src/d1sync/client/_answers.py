"""Reading D1's answers: what is not D1's envelope, and what a "success" must hold to prove the request ran.

A gateway page, an empty or truncated body is not an envelope (:func:`non_envelope_error`). A 200 that says
``"success": true`` proves a SQL request only with one successful result, with its ``meta``, per statement
sent (:func:`unproven`): proxies and partial outages answer with less, and taking such an answer as done
would drop the writes it claims. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from d1sync.errors import D1Error, InvalidRequestError, TransientError, classify_error

from .headers import parse_retry_after

__all__ = ["non_envelope_error", "unproven"]

_GATEWAY_STATUSES = frozenset({502, 503, 504})

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _describe_body(content: bytes, content_type: str) -> str:
    stripped = content.strip()
    if not stripped:
        return "an empty body"
    if "html" in content_type.lower() or stripped[:1] == b"<":
        title = _TITLE.search(stripped[:4096])
        if title:
            text = " ".join(title.group(1).decode("utf-8", "replace").split())[:100]
            return f"an HTML body ({text!r})"
        return "an HTML body"
    return "a body that is not JSON"


def non_envelope_error(status: int, content: bytes, headers: Mapping[str, str], statement: str | None) -> D1Error:
    """The error for a response that is not D1's JSON envelope (gateway pages, empty or truncated bodies)."""
    body = _describe_body(content, headers.get("content-type", ""))
    gateway = " (gateway error)" if status in _GATEWAY_STATUSES else ""
    message = f"HTTP {status} with {body}{gateway}, not D1's JSON envelope"
    error = classify_error(
        status=status, code=None, message=message, statement=statement,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )  # fmt: skip
    if type(error) in (D1Error, InvalidRequestError) and not 400 <= status < 500:
        # A 2xx/3xx that is not JSON is a broken or truncated answer: the next one may be fine.
        return TransientError(message, status=status, statement=statement)
    return error


def _shape(value: object) -> str:
    """A value's JSON shape, never its content: ``null``, ``an object``, ``a list of 2``, ``a string``."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number"}.get(type(value), "a value")


def unproven(envelope: Mapping[str, Any], *, statements: int | None, expects_object: bool = False) -> str | None:
    """What a successful answer lacks to prove that its request was carried out, or None when it proves it.

    A SQL request of ``statements`` statements is proven by one result per statement, each with
    ``"success": true`` and its ``meta``; a request for a database's details (``expects_object``) by an
    object in ``result``. The text names the answer's shape only, never its values.
    """
    if "result" not in envelope:
        found = "no 'result'"
    else:
        result = envelope["result"]
        found = f"'result' is {_shape(result)}"
        if statements is not None:
            if isinstance(result, Mapping):
                result = [result]  # a lone statement's result, not wrapped in a list
            if isinstance(result, list) and len(result) == statements:
                for number, element in enumerate(result, start=1):
                    if not isinstance(element, Mapping):
                        return f"statement {number}'s result is {_shape(element)}"
                    if element.get("success") is not True:
                        return f"statement {number}'s result has 'success': {json.dumps(element.get('success'))}"
                    if not isinstance(element.get("meta"), Mapping):
                        return f"statement {number}'s result has no 'meta'"
                return None
        elif not expects_object or isinstance(result, Mapping):
            return None
    if statements is not None:
        return f"{found}, for {statements} statement(s) sent"
    return f"{found}, not the database's details"
