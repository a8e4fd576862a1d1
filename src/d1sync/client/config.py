"""Where the client's account, database, token and API base come from: arguments first, then the environment.

A missing value is a :class:`~d1sync.errors.ConfigError` that names exactly what to set. The token is kept
out of every repr. Tokens are cleaned where they are configured: surrounding whitespace (a trailing newline
from ``$(cat token.txt)``, a CR from a Windows file) is stripped, and a token with any other control
character, or any character beyond ASCII, is refused, so no token can turn into an illegal header whose error
text would carry it.

The names of every environment variable d1sync reads are defined here, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from d1sync.errors import ConfigError

__all__ = [
    "ACCOUNT_ENV",
    "ACCOUNT_ENV_FALLBACK",
    "API_BASE_ENV",
    "DATABASE_ENV",
    "DEFAULT_API_BASE",
    "DEFAULT_EMULATOR_DATABASE_ID",
    "DEFAULT_EMULATOR_PORT",
    "EMULATOR_TOKEN_ENV",
    "TOKEN_ENV",
    "ClientConfig",
    "clean_token",
    "resolve_config",
]

DEFAULT_API_BASE = "https://api.cloudflare.com/client/v4"
TOKEN_ENV = "CLOUDFLARE_API_TOKEN"
ACCOUNT_ENV = "CLOUDFLARE_ACCOUNT_ID"
ACCOUNT_ENV_FALLBACK = "D1_ACCOUNT_ID"
DATABASE_ENV = "D1_DATABASE_ID"
API_BASE_ENV = "D1SYNC_API_BASE"
EMULATOR_TOKEN_ENV = "D1SYNC_EMULATOR_TOKEN"
"""The emulator's bearer token, for the server and for clients pointed at it."""
DEFAULT_EMULATOR_DATABASE_ID = "00000000-0000-4000-8000-000000000000"
"""The database every emulator creates at start, used by ``--emulator`` when no database id is configured."""
DEFAULT_EMULATOR_PORT = 8787


def clean_token(token: str, source: str) -> str:
    """``token`` without surrounding whitespace; a ConfigError naming ``source`` if it holds a control character
    or a character that is not ASCII (an HTTP header cannot carry it, and no API token has one).

    The error never shows the token itself, only where the offending character sits.
    """
    cleaned = token.strip()
    for index, char in enumerate(cleaned):
        where = f"(U+{ord(char):04X} at position {index + 1} of {len(cleaned)})"
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise ConfigError(
                f"the API token from {source} holds a control character {where}; copy the token again without it"
            )
        if ord(char) > 0x7F:
            raise ConfigError(
                f"the API token from {source} is not valid: it holds a character that is not ASCII {where}; "
                "API tokens are ASCII letters, digits and punctuation: copy the token again"
            )
    return cleaned


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Resolved settings of one client. ``api_token`` never shows in ``repr``."""

    account_id: str
    api_token: str = field(repr=False)
    base_url: str = DEFAULT_API_BASE
    database_id: str | None = None

    def require_database_id(self) -> str:
        """The database id, or a ConfigError saying how to give one (management calls do not need it)."""
        if not self.database_id:
            raise ConfigError(
                f"no D1 database id: set {DATABASE_ENV} (or pass database_id=...); "
                "`wrangler d1 list` shows your databases"
            )
        return self.database_id


def _pick(value: str | None, env: Mapping[str, str], *names: str) -> str | None:
    if value:
        return value
    for name in names:
        found = env.get(name, "").strip()
        if found:
            return found
    return None


def _check_base_url(url: str, source: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{source} must be an http(s) URL including /client/v4, e.g. {DEFAULT_API_BASE} "
            f"or http://127.0.0.1:8787/client/v4 (got {url!r})"
        )
    return url.rstrip("/")


def resolve_config(
    *,
    account_id: str | None = None,
    database_id: str | None = None,
    api_token: str | None = None,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Combine explicit arguments with the environment (``os.environ`` unless ``env`` is given).

    Raises:
        ConfigError: no token or no account id, naming the argument and variable to set; a malformed base URL.
    """
    environ = os.environ if env is None else env
    token = _pick(api_token, environ, TOKEN_ENV)
    if not token:
        raise ConfigError(f"no Cloudflare API token: set {TOKEN_ENV} (or pass api_token=...)")
    token = clean_token(token, "api_token" if api_token else TOKEN_ENV)
    account = _pick(account_id, environ, ACCOUNT_ENV, ACCOUNT_ENV_FALLBACK)
    if not account:
        raise ConfigError(
            f"no Cloudflare account id: set {ACCOUNT_ENV} (or {ACCOUNT_ENV_FALLBACK}, or pass account_id=...)"
        )
    if base_url:
        url = _check_base_url(base_url, "base_url")
    elif environ.get(API_BASE_ENV, "").strip():
        url = _check_base_url(environ[API_BASE_ENV].strip(), API_BASE_ENV)
    else:
        url = DEFAULT_API_BASE
    return ClientConfig(
        account_id=account,
        api_token=token,
        base_url=url,
        database_id=_pick(database_id, environ, DATABASE_ENV),
    )
