"""Fixtures shared by the with_dummyserver tests (the rest are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fastpool.connection


@pytest.fixture
def dns() -> Iterator[Any]:
    """The loopback DNS server (``dummyserver.dns``) for one test, stopped after it; the test
    is skipped without dnslib, and fails if the server met a bad query or did not stop."""
    dummy_dns = pytest.importorskip("dummyserver.dns")
    server = dummy_dns.DNSServer().start()
    yield server
    server.stop()
    assert not server.errors, server.errors


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods of the heads the blocking code parsed (the map's loop has its own parser):
    a head handed over by the loop is not parsed again."""
    seen: list[str] = []
    parse = fastpool.connection.parse_response_head

    def counted(data: Any, method: str, *args: Any) -> Any:
        seen.append(method)
        return parse(data, method, *args)

    monkeypatch.setattr(fastpool.connection, "parse_response_head", counted)
    return seen
