"""Every client test runs with the Cloudflare/D1 environment variables cleared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .scripted import ENV_VARS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No real credentials from the developer's shell ever reach a client test."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    yield
