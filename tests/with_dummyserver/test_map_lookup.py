"""``map`` with fastpool's Resolver: a name with no answer in the cache is looked up through
``Resolver.submit()`` while the loop goes on, and the loop dials the address itself; several
addresses (to race) and failures go to a dial worker, which raises what one request raises.
Against the loopback DNS server (tests/dummyserver/dns.py; the ``dns`` fixture of this folder's
conftest.py) and the local app server.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from dummyserver import AppServer
from dummyserver.addresses import map_watching_workers

import fastpool
from fastpool.resolver import Resolver

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.usefixtures("clean_environment")]


def seen(error: BaseException | None) -> tuple[str, str]:
    assert error is not None
    return type(error).__name__, re.sub(r"0x[0-9a-f]+", "0x?", str(error))


@pytest.mark.parametrize("backend", ["threads", "cares"])
def test_a_name_is_looked_up_while_the_loop_goes_on(
    app_server: AppServer, dns: Any, backend: str
) -> None:
    if backend == "cares":
        pytest.importorskip("pycares", reason="the c-ares backend needs pycares")
        resolver = Resolver(backend="cares", nameservers=[dns.nameserver])
        name = "slow.test"
        dns.add(name, a=["127.0.0.1"], ttl=300, delay=0.2)
    else:
        resolver = Resolver()  # getaddrinfo in the resolver's own threads
        name = "localhost"
    urls = [f"http://{name}:{app_server.port}/close"] * 4  # /close: every request dials
    with resolver, fastpool.Session(resolver=resolver) as session:
        results, workers = map_watching_workers(session, urls, concurrency=4, timeout=10)
        assert [(r.error, r.response.status_code) for r in results] == [(None, 200)] * 4
        assert session.pool_stats().total.in_use == 0
    if backend == "cares":
        assert not workers  # looked up by c-ares, dialed by the loop
        assert dns.queries(name, "A") == 1  # the four lookups shared one query
    # localhost may answer 127.0.0.1 and ::1: two addresses are raced in a worker; the lookup
    # itself ran in the resolver's threads either way


def test_several_addresses_are_raced_in_a_worker(app_server: AppServer, dns: Any) -> None:
    pytest.importorskip("pycares", reason="the c-ares backend needs pycares")
    dns.add("two.test", a=["127.0.0.1", "127.0.0.254"], ttl=300)
    url = f"http://two.test:{app_server.port}/close"
    resolver = Resolver(backend="cares", nameservers=[dns.nameserver])
    with resolver, fastpool.Session(resolver=resolver) as session:
        results, workers = map_watching_workers(session, [url] * 2, concurrency=2, timeout=10)
        single = session.get(url, timeout=10)
    assert [r.error for r in results] == [None, None]
    assert single.status_code == 200
    assert workers


@pytest.mark.parametrize("rcode", ["NXDOMAIN", "SERVFAIL"])
def test_a_failed_lookup_fails_as_one_request(app_server: AppServer, dns: Any, rcode: str) -> None:
    pytest.importorskip("pycares", reason="the c-ares backend needs pycares")
    dns.add("bad.test", rcode=rcode, ttl=300)
    url = f"http://bad.test:{app_server.port}/bytes/1"
    outcomes = []
    for how in ("get", "map"):
        resolver = Resolver(backend="cares", nameservers=[dns.nameserver])
        with resolver, fastpool.Session(resolver=resolver) as session:
            if how == "get":
                with pytest.raises(Exception) as info:
                    session.get(url, timeout=10)
                outcomes.append(seen(info.value))
            else:
                (result,) = list(session.map([url], timeout=10))
                outcomes.append(seen(result.error))
            assert session.pool_stats().total.in_use == 0
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "ConnectionError"


def test_leaving_during_a_lookup_gives_everything_back(app_server: AppServer, dns: Any) -> None:
    pytest.importorskip("pycares", reason="the c-ares backend needs pycares")
    dns.add("late.test", a=["127.0.0.1"], ttl=300, delay=1.0)
    url = f"http://late.test:{app_server.port}/bytes/1"
    resolver = Resolver(backend="cares", nameservers=[dns.nameserver])
    with resolver, fastpool.Session(resolver=resolver, max_connections=1) as session:
        began = time.monotonic()
        (result,), workers = map_watching_workers(session, [url], deadline=0.2, timeout=10)
        assert type(result.error).__name__ == "DeadlineExceeded"
        assert not workers  # it was the loop's lookup that the deadline ended
        assert time.monotonic() - began < 0.8  # the lookup is not waited for
        stats = session.pool_stats().total
        assert (stats.open, stats.in_use) == (0, 0)
        # The answer still fills the cache, and the cap's one token is free again.
        assert session.get(url, timeout=10).content == b"a"
        assert dns.queries("late.test", "A") == 1
