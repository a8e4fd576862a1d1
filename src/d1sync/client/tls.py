"""The TLS context every client of a process shares (:func:`shared_tls_context`)."""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["shared_tls_context"]


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The TLS context every client of this process uses (built on first use, as httpx builds its own:
    certifi's CA bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set then).

    Building one loads the whole CA bundle, about 0.9 MB of memory: a fleet of 1,000 tenants, a client each,
    held 900 MB of copies of it. A context is safe to share between connections and threads.
    """
    return httpx.create_ssl_context()
