"""The resolver wired into the pools: ``Session(resolver=...)``, ``PoolManager(resolver=...)``.

A name only the loopback DNS server knows (``site.test``) reaches the local app server through
a c-ares Resolver pointed at that DNS server; the cache answers the next dials without a query.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest
import requests
from dummyserver import AppServer

import fastpool
from fastpool.resolver import Resolver

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def dns() -> Iterator[object]:
    pytest.importorskip("pycares", reason="the c-ares backend needs pycares (fastpool[pycares])")
    dummy_dns = pytest.importorskip("dummyserver.dns")
    server = dummy_dns.DNSServer().start()
    server.add("site.test", a=["127.0.0.1"], ttl=300)
    yield server
    server.stop()
    assert not server.errors, server.errors


def test_a_session_resolves_through_its_resolver(app_server: AppServer, dns: object) -> None:
    url = f"http://site.test:{app_server.port}"
    with fastpool.Session() as plain, pytest.raises(requests.exceptions.ConnectionError):
        plain.get(f"{url}/bytes/1")  # the system resolver does not know the name
    with Resolver(backend="cares", nameservers=[dns.nameserver]) as resolver:  # type: ignore[attr-defined]
        with fastpool.Session(resolver=resolver) as session:
            for _ in range(3):  # /close: every request dials again
                assert session.get(f"{url}/close").status_code == 200
            echo = session.get(f"{url}/echo").json()
        assert dict(echo["headers"])["Host"] == f"site.test:{app_server.port}"
        assert dns.queries("site.test", "A") == 1  # type: ignore[attr-defined]
        assert resolver.stats.hits >= 3


def test_a_pool_manager_and_map_use_it(app_server: AppServer, dns: object) -> None:
    url = f"http://site.test:{app_server.port}"
    with Resolver(backend="cares", nameservers=[dns.nameserver]) as resolver:  # type: ignore[attr-defined]
        with fastpool.PoolManager(resolver=resolver) as manager:
            response = manager.request("GET", f"{url}/bytes/4")
            assert (response.status, len(response.data)) == (200, 4)
        with fastpool.Session(resolver=resolver) as session:
            results = list(session.map([f"{url}/close"] * 4, concurrency=4))
        assert [r.error for r in results] == [None] * 4
        assert dns.queries("site.test", "A") == 1  # type: ignore[attr-defined]


def test_the_threads_backend_caches_dials(app_server: AppServer) -> None:
    with Resolver() as resolver, fastpool.Session(resolver=resolver) as session:
        for _ in range(3):
            assert session.get(f"http://localhost:{app_server.port}/close").status_code == 200
        assert resolver.stats.misses == 1
        assert resolver.stats.hits == 2


def test_a_pickled_session_gets_a_new_resolver_with_the_same_settings(
    app_server: AppServer,
) -> None:
    with Resolver(max_ttl=42.0) as resolver, fastpool.Session(resolver=resolver) as session:
        copy = pickle.loads(pickle.dumps(session))
        with copy:
            assert copy.get(f"http://localhost:{app_server.port}/bytes/1").status_code == 200
            adapter = copy.get_adapter("http://localhost/")
            theirs = adapter._pool_options["resolver"]
            assert isinstance(theirs, Resolver) and theirs is not resolver
            assert theirs.max_ttl == 42.0
            theirs.close()
