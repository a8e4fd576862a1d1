"""The client keeps its API token out of error text without garbling messages when the token is short."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from d1sync.client import D1Client
from d1sync.client._core import ClientCore, RetryPolicy
from d1sync.client.config import ClientConfig
from d1sync.emulator.app import create_app
from d1sync.emulator.server import EmulatorServer
from d1sync.emulator.testing import SyncASGITransport
from d1sync.errors import AuthError, D1Error, InvalidRequestError, SQLError

from ..support import IN_PROCESS_BASE, TOKEN

CLOUDFLARE_SHAPED = "Zq7rX2bV9mK4tP1sW8nL3cF6hJ0dG5aY-Eu_Ri9T"
"""40 characters from Cloudflare's token alphabet (not a real credential)."""


def texts(error: D1Error) -> list[str]:
    """Every way an error's text reaches a user: str, repr, message, args."""
    return [str(error), repr(error), error.message, *map(str, error.args)]


def core(token: str) -> ClientCore:
    return ClientCore(ClientConfig(account_id="a", api_token=token, base_url=IN_PROCESS_BASE), RetryPolicy())


@pytest.fixture
def short_token_client(tmp_path: Path) -> Iterator[D1Client]:
    """A client for an emulator whose token is the single letter "t"."""
    app = create_app(tmp_path, token="t", auto_create=True)
    transport = SyncASGITransport(app)
    client = D1Client(
        account_id="acct",
        database_id=str(uuid.uuid4()),
        api_token="t",
        base_url=IN_PROCESS_BASE,
        transport=transport,
        retry=RetryPolicy(max_retries=0),
    )
    yield client
    client.close()
    transport.close()
    app.state.engine.close()


def test_a_short_token_leaves_the_emulators_error_message_intact(short_token_client: D1Client) -> None:
    with pytest.raises(SQLError) as info:
        short_token_client.prepare("SELECT * FROM missing_table").all()
    assert info.value.message == "no such table: missing_table: SQLITE_ERROR"
    assert "***" not in str(info.value)


@pytest.mark.parametrize("seam", ["in-process", "socket"])
def test_a_realistic_token_echoed_in_an_emulator_error_is_scrubbed(
    seam: str, request: pytest.FixtureRequest, emulator_transport: SyncASGITransport
) -> None:
    """Token and database id swapped by mistake: the emulator's 7400 echoes the id, the error must not."""
    if seam == "socket":
        server: EmulatorServer = request.getfixturevalue("emulator_server")
        options: dict[str, Any] = {"base_url": server.api_base}
    else:
        options = {"base_url": IN_PROCESS_BASE, "transport": emulator_transport}
    # The emulator really does echo the id it was given: without redaction the token would show.
    with httpx.Client(transport=emulator_transport, base_url="http://emulator") as http:
        echoed = http.post(
            f"/client/v4/accounts/acct/d1/database/{TOKEN}/query",
            json={"sql": "SELECT 1"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert echoed.status_code == 400 and TOKEN in echoed.text

    with D1Client(account_id="acct", database_id=TOKEN, api_token=TOKEN, **options) as client:
        with pytest.raises(InvalidRequestError) as info:
            client.prepare("SELECT 1").all()
    assert info.value.code == 7400 and "***" in info.value.message
    for text in texts(info.value):
        assert TOKEN not in text


def test_a_cloudflare_shaped_token_is_scrubbed_wherever_it_appears() -> None:
    text = f"token {CLOUDFLARE_SHAPED} rejected; id={CLOUDFLARE_SHAPED}x"
    assert core(CLOUDFLARE_SHAPED).redact(text) == "token *** rejected; id=***x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer t", "Authorization: Bearer ***"),
        ("authorization: bearer t.", "authorization: bearer ***."),
        ("Authorization: t", "Authorization: ***"),
        (
            "{'authorization': 'Bearer t', 'accept': 'text/plain'}",
            "{'authorization': 'Bearer ***', 'accept': 'text/plain'}",
        ),
        ("[(b'authorization', b'Bearer t')]", "[(b'authorization', b'Bearer ***')]"),
        ('{"Authorization":"Bearer t"}', '{"Authorization":"Bearer ***"}'),
    ],
)
def test_bearer_header_material_is_scrubbed_even_for_a_one_letter_token(text: str, expected: str) -> None:
    assert core("t").redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Bearer tokens must be sent in the Authorization header",
        "no such table: t: SQLITE_ERROR",
        "Authorization: Bearer tt",
    ],
)
def test_a_short_token_is_not_scrubbed_outside_header_material(text: str) -> None:
    assert core("t").redact(text) == text


@pytest.mark.parametrize("token", ["t", CLOUDFLARE_SHAPED])
def test_a_proxy_echoing_the_sent_authorization_header_shows_no_token(token: str) -> None:
    """A misconfigured proxy quotes the header the client really sent; the error keeps the rest of the text."""

    def proxy(request: httpx.Request) -> httpx.Response:
        message = f"Authentication error: the upstream rejected Authorization: {request.headers['authorization']}"
        body = {"result": None, "success": False, "errors": [{"code": 10000, "message": message}], "messages": []}
        return httpx.Response(401, json=body)

    with D1Client(
        account_id="acct",
        database_id=str(uuid.uuid4()),
        api_token=token,
        base_url=IN_PROCESS_BASE,
        transport=httpx.MockTransport(proxy),
        retry=RetryPolicy(max_retries=0),
    ) as client:
        with pytest.raises(AuthError) as info:
            client.prepare("SELECT 1").all()
    assert info.value.message == "Authentication error: the upstream rejected Authorization: Bearer ***"
    for text in texts(info.value):
        assert f"Bearer {token}" not in text
