"""TLS material for the dummyservers: server-side contexts from a trustme CA.

The fixtures in ``tests/conftest.py`` build the CAs and contexts once per session from these.
"""

from __future__ import annotations

import ssl
from typing import Union

import trustme

__all__ = ("LOOPBACK_HOSTS", "TLSArg", "server_context", "tls_context")

#: Every loopback address the server certificates are valid for (127.0.0.1 ... 127.0.0.16).
LOOPBACK_HOSTS = tuple(f"127.0.0.{i}" for i in range(1, 17))

#: A server factory's ``tls`` argument: True (the trusted context), a context, or False/None.
TLSArg = Union[bool, ssl.SSLContext, None]


def tls_context(tls: TLSArg, trusted: ssl.SSLContext) -> ssl.SSLContext | None:
    """A factory's ``tls`` argument: True -> ``trusted``; a context as is; False/None -> plain."""
    return trusted if tls is True else (tls or None)


def server_context(ca: trustme.CA, *identities: str) -> ssl.SSLContext:
    """A server-side context with a certificate for ``identities`` signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities).configure_cert(context)
    return context
