"""Configuration from arguments or the environment; missing values name what to set; the token stays hidden."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from d1sync.client import D1Client, resolve_config
from d1sync.errors import ConfigError

from .scripted import TOKEN, ScriptedD1, envelope, ok_rows


def full_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "env-acct")
    monkeypatch.setenv("D1_DATABASE_ID", "env-db")
    monkeypatch.setenv("D1SYNC_API_BASE", "http://envhost/client/v4/")


def test_everything_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    full_env(monkeypatch)
    d1 = ScriptedD1(ok_rows({"a": 1}))
    with D1Client(transport=d1.transport) as client:
        client.prepare("SELECT 1 AS a").all()
        assert (client.account_id, client.database_id, client.base_url) == (
            "env-acct",
            "env-db",
            "http://envhost/client/v4",
        )
    assert str(d1.requests[0].url) == "http://envhost/client/v4/accounts/env-acct/d1/database/env-db/query"
    assert d1.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    full_env(monkeypatch)
    config = resolve_config(account_id="a", database_id="d", api_token="t", base_url="http://argh/client/v4")
    assert (config.account_id, config.database_id, config.api_token, config.base_url) == (
        "a",
        "d",
        "t",
        "http://argh/client/v4",
    )


def test_missing_token_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="set CLOUDFLARE_API_TOKEN"):
        D1Client(account_id="a", database_id="d")


def test_missing_account_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="set CLOUDFLARE_ACCOUNT_ID") as info:
        D1Client(database_id="d")
    assert "D1_ACCOUNT_ID" in str(info.value) and TOKEN not in str(info.value)


def test_empty_variables_count_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "  ")
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
        D1Client(account_id="a")


def test_d1_account_id_is_the_fallback_and_cloudflare_account_id_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D1_ACCOUNT_ID", "d1-acct")
    assert resolve_config(api_token="t").account_id == "d1-acct"
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "cf-acct")
    assert resolve_config(api_token="t").account_id == "cf-acct"


def test_the_default_api_base_is_cloudflare() -> None:
    assert resolve_config(api_token="t", account_id="a").base_url == "https://api.cloudflare.com/client/v4"


def test_a_malformed_api_base_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D1SYNC_API_BASE", "127.0.0.1:8787")
    with pytest.raises(ConfigError, match="D1SYNC_API_BASE must be an http"):
        resolve_config(api_token="t", account_id="a")
    with pytest.raises(ConfigError, match="base_url must be an http"):
        resolve_config(api_token="t", account_id="a", base_url="ftp://x/client/v4")


def test_queries_without_a_database_id_say_how_to_set_it() -> None:
    d1 = ScriptedD1(ok_rows())
    with d1.client(database_id=None) as client, pytest.raises(ConfigError, match="set D1_DATABASE_ID"):
        client.prepare("SELECT 1").all()
    assert d1.requests == []


def test_database_management_needs_no_database_id() -> None:
    d1 = ScriptedD1(httpx.Response(200, content=envelope([{"uuid": "u1", "name": "one"}])))
    with d1.client(database_id=None) as client:
        assert client.list_databases() == [{"uuid": "u1", "name": "one"}]


def test_repr_shows_account_database_and_base_but_never_the_token() -> None:
    d1 = ScriptedD1(ok_rows())
    with d1.client() as client:
        text = repr(client)
        assert text == "D1Client(account_id='acct-1', database_id='db-1', base_url='http://mock/client/v4')"
        assert TOKEN not in repr(client._core.config) and TOKEN not in str(vars(client))
    async_client = d1.async_client()
    assert repr(async_client).startswith("AsyncD1Client(account_id='acct-1', database_id='db-1'")
    asyncio.run(async_client.aclose())


NOT_ASCII = ["tok\u00e9n-0123456789abcdef", "\u2018copied-with-smart-quotes\u2019", "token-\U0001f511"]


@pytest.mark.parametrize("token", NOT_ASCII, ids=["accent", "smart quotes", "emoji"])
def test_a_token_beyond_ascii_is_not_valid_at_construction_and_never_shown(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from d1sync.client import AsyncD1Client

    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", token)
    attempts = [
        lambda: D1Client(account_id="a", database_id="d", api_token=token),
        lambda: AsyncD1Client(account_id="a", database_id="d", api_token=token),
        lambda: D1Client(account_id="a", database_id="d"),  # from the environment
    ]
    for attempt in attempts:
        with pytest.raises(ConfigError) as caught:
            attempt()
        message = str(caught.value)
        assert "is not valid" in message and "not ASCII" in message
        assert token not in message and token.strip("\u2018\u2019") not in message
    assert "CLOUDFLARE_API_TOKEN" in message
