"""Fixtures shared by the with_dummyserver tests (the rest are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def dns() -> Iterator[Any]:
    """The loopback DNS server (``dummyserver.dns``) for one test, stopped after it; the test
    is skipped without dnslib, and fails if the server met a bad query or did not stop."""
    dummy_dns = pytest.importorskip("dummyserver.dns")
    server = dummy_dns.DNSServer().start()
    yield server
    server.stop()
    assert not server.errors, server.errors
