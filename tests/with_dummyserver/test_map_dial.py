"""The loop's own dial (issue #16): a request to one known address (an IP literal, or a name in
fastpool's Resolver cache), not through a proxy, is dialed in the loop's thread itself (a
non-blocking connect, then the TLS handshake on the non-blocking socket) with no dial worker.
Every outcome is the one-request path's: each failure is compared with ``Session.get`` (or
``PoolManager.request``) on the same server, and no slot, token or descriptor is left behind.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dummyserver import AppServer, FaultServer
from dummyserver.addresses import Blackhole, free_port, map_watching_workers, open_sockets

import fastpool
from fastpool.resolver import Resolver

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.usefixtures("clean_environment")]


def session_for(ca_bundle: str, **options: Any) -> fastpool.Session:
    session = fastpool.Session(**options)
    session.verify = ca_bundle
    return session


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_known_address_is_dialed_in_the_loop_a_name_by_a_worker(
    app_server: AppServer, https_server: AppServer, ca_bundle: str, scheme: str
) -> None:
    server = app_server if scheme == "http" else https_server
    # /close: the server closes each connection after its answer, so every request dials.
    literal = [f"{scheme}://127.0.0.1:{server.port}/close"] * 6
    with session_for(ca_bundle) as session:
        results, workers = map_watching_workers(session, literal, concurrency=3, timeout=10)
        assert [(r.error, r.response.status_code) for r in results] == [(None, 200)] * 6
        assert not workers  # the loop dialed each one itself
        assert session.pool_stats().total.in_use == 0
    # The contrast that makes the check mean something: a name, with no resolver cache, is
    # resolved (getaddrinfo may block) and dialed in a worker.
    named = [f"{scheme}://localhost:{server.port}/close"] * 2
    with session_for(ca_bundle) as session:
        results, workers = map_watching_workers(session, named, concurrency=2, timeout=10)
        assert [r.error for r in results] == [None, None]
        assert workers


def test_a_name_in_the_resolvers_cache_is_dialed_in_the_loop(
    app_server: AppServer, dns: Any
) -> None:
    pytest.importorskip("pycares", reason="the c-ares backend needs pycares (fastpool[pycares])")
    dns.add("site.test", a=["127.0.0.1"], ttl=300)
    url = f"http://site.test:{app_server.port}/close"
    resolver = Resolver(backend="cares", nameservers=[dns.nameserver])
    with resolver, fastpool.Session(resolver=resolver) as session:
        assert session.get(url, timeout=10).status_code == 200  # the answer, cached
        hits = resolver.stats.hits
        rest, workers = map_watching_workers(session, [url] * 4, concurrency=2)
        assert [r.error for r in rest] == [None] * 4
        assert not workers  # cached: the loop dials it itself
        assert resolver.stats.hits == hits + 4  # each dial answered from the cache
    assert dns.queries("site.test", "A") == 1


# --- failures, side by side with one request ---------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def seen(error: BaseException | None) -> tuple[str, str]:
    """An error as a caller sees it, object addresses left out."""
    assert error is not None
    return type(error).__name__, re.sub(r"0x[0-9a-f]+", "0x?", str(error))


def no_new_fds(before: set[str], seconds: float = 3.0) -> bool:
    """Whether the descriptors opened since ``before`` are all closed within ``seconds`` (the
    local servers, in this process too, close their side of a connection a moment later)."""
    end = time.monotonic() + seconds
    while open_sockets() - before:
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def one_and_mapped(make: Callable[[], Any], url: str, **kw: Any) -> tuple[Any, Any]:
    """The error of ``url`` through ``Session.get``, and through ``map``, each on a fresh
    Session; every slot given back after each."""
    with make() as session:
        try:
            session.get(url, **kw)
            single = None
        except Exception as e:  # noqa: BLE001 - compared below
            single = e
        assert session.pool_stats().total.in_use == 0
    with make() as session:
        (result,) = list(session.map([url], **kw))
        assert session.pool_stats().total.in_use == 0
    return single, result.error


def request_and_mapped(url: str, **options: Any) -> tuple[BaseException, Any, int]:
    """The error of a GET of ``url`` through ``PoolManager.request`` and through ``map``, each
    on a fresh PoolManager made with ``options``, and the slots still in use after ``map``."""
    with fastpool.PoolManager(**options) as manager, pytest.raises(Exception) as info:
        manager.request("GET", url)
    with fastpool.PoolManager(**options) as manager:
        (result,) = list(manager.map([("GET", url, {})]))
        in_use = manager.stats().total.in_use
    return info.value, result.error, in_use


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_dial_failures_as_one_request(
    blackhole: Blackhole,
    fault_server_factory: Callable[..., FaultServer],
    untrusted_https_server: AppServer,
    https_server: AppServer,
    ca_bundle: str,
) -> None:
    silent = fault_server_factory(lambda conn: conn.stall(3))  # takes TCP, never speaks TLS

    def make() -> fastpool.Session:
        return session_for(ca_bundle)

    cases = [
        (f"http://127.0.0.1:{free_port()}/", {"timeout": 5}, "ConnectionError"),
        (f"http://127.0.0.1:{blackhole.port}/", {"timeout": (0.3, 5)}, "ConnectTimeout"),
        (f"https://127.0.0.1:{blackhole.port}/", {"timeout": (0.3, 5)}, "ConnectTimeout"),
        (f"https://127.0.0.1:{silent.port}/?silent", {"timeout": (0.3, 5)}, "ReadTimeout"),
        (f"{untrusted_https_server.url}/bytes/1", {"timeout": 5}, "SSLError"),
    ]
    for url, kw, expected in cases:
        before = open_sockets()
        began = time.monotonic()
        single, mapped = one_and_mapped(make, url, **kw)
        assert seen(mapped) == seen(single), url
        assert type(mapped).__name__ == expected, (url, mapped)
        assert time.monotonic() - began < 4, url  # each ended at its connect timeout
        if "silent" not in url:
            assert no_new_fds(before), url


def test_a_pinned_fingerprint_that_differs_fails_as_one_request(
    https_server: AppServer, ca_bundle: str
) -> None:
    url = f"{https_server.url}/bytes/1"
    options = {"ca_certs": ca_bundle, "assert_fingerprint": "AA:" * 31 + "AA", "retries": False}
    single, mapped, in_use = request_and_mapped(url, **options)
    assert in_use == 0
    assert seen(mapped) == seen(single)
    assert "Fingerprints did not match" in str(single)


def test_a_hostname_check_of_the_loops_handshake(https_server: AppServer, ca_bundle: str) -> None:
    # The certificate names 127.0.0.1 and localhost: asking for it under another name (the
    # connection's server_hostname) must fail in the loop's handshake as in one request.
    url = f"{https_server.url}/bytes/1"
    options = {"ca_certs": ca_bundle, "server_hostname": "example.com", "retries": False}
    single, mapped, _ = request_and_mapped(url, **options)
    assert seen(mapped) == seen(single)
    assert "example.com" in str(single)


def test_leaving_mid_dial_closes_it_and_gives_the_token_back(
    blackhole: Blackhole, app_server: AppServer
) -> None:
    before = open_sockets()
    with fastpool.Session(max_connections=1, pool_timeout=1) as session:
        # The deadline ends the dial that hangs; the token it held serves the next request.
        urls = [f"http://127.0.0.1:{blackhole.port}/"]
        (result,) = list(session.map(urls, deadline=0.3, timeout=(5, 5)))
        assert type(result.error).__name__ == "DeadlineExceeded"
        assert session.pool_stats().total.in_use == 0
        assert session.get(f"{app_server.url}/bytes/2", timeout=5).content == b"ab"
    with fastpool.Session(max_connections=2, pool_timeout=1) as session:
        # Leaving the iterator while a dial is under way in the loop does the same.
        it = session.map(
            [f"{app_server.url}/bytes/1", f"http://127.0.0.1:{blackhole.port}/"],
            concurrency=2,
            timeout=(5, 5),
        )
        first = next(it)
        assert first.error is None
        began = time.monotonic()
        it.close()
        assert time.monotonic() - began < 1  # the dial in the loop is not waited for
        stats = session.pool_stats().total
        assert (stats.open, stats.in_use) == (1, 0)  # only the kept connection
    assert no_new_fds(before)
