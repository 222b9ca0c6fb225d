"""fastpool.resolver's "cares" backend against the loopback DNS server (tests/dummyserver/dns.py):
several 127.0.0.x addresses and ::1, real TTLs and their clamps, slow answers, NXDOMAIN,
SERVFAIL, coalescing and close(). Skipped when pycares (``fastpool[pycares]``) is missing.

c-ares keeps its own query cache (c-ares >= 1.23; pycares offers no switch for it), which
honours the answer's TTL in real time. Tests that count the server's queries after our cache
expired (on the fake clock) therefore use TTL 0 records, which c-ares does not cache; tests of
the TTLs themselves read the resolver's hit and miss counters.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("dnslib", reason="the loopback DNS server needs dnslib (the test extra)")
pytest.importorskip(
    "pycares", reason='backend="cares" needs pycares: pip install fastpool[pycares]'
)

from dummyserver.dns import DNSServer

from fastpool.resolver import Resolver, ResolverClosedError, happy_eyeballs_order


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer().start()
    server.add("multi.test", a=["127.0.0.2", "127.0.0.3", "127.0.0.4"], aaaa=["::1"], ttl=30)
    server.add("v4.test", a=["127.0.0.5"], ttl=30)
    server.add("zero.test", a=["127.0.0.6"], ttl=0)
    server.add("long.test", a=["127.0.0.7"], ttl=86400)
    server.add("slow.test", a=["127.0.0.8"], ttl=30, delay=0.15)
    server.add("broken.test", rcode="SERVFAIL")
    yield server
    server.stop()
    assert not server.errors, server.errors


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(dns: DNSServer, clock: Clock) -> Iterator[Any]:
    made: list[Resolver] = []

    def factory(**kw: Any) -> Resolver:
        kw.setdefault("clock", clock)
        r = Resolver(backend="cares", nameservers=[dns.nameserver], **kw)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.close()


def _ips(infos: list[tuple[Any, ...]]) -> set[str]:
    return {info[4][0] for info in infos}


def test_several_v4_addresses_and_v6_loopback(make: Any) -> None:
    r = make()
    infos = r.resolve("multi.test", 8080)
    assert _ips(infos) == {"127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"}
    assert all(info[1] == socket.SOCK_STREAM and info[4][1] == 8080 for info in infos)
    v4 = [i for i in infos if i[0] == socket.AF_INET]
    assert [i[4] for i in v4] == [("127.0.0.2", 8080), ("127.0.0.3", 8080), ("127.0.0.4", 8080)]
    ordered = happy_eyeballs_order(infos)
    assert ordered[0][0] != ordered[1][0]  # the two families alternate first


def test_family_filters(make: Any, dns: DNSServer) -> None:
    r = make()
    assert _ips(r.resolve("multi.test", 80, socket.AF_INET)) == {
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
    }
    assert dns.queries("multi.test", "AAAA") == 0
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine: the ::1-only lookup is left out")
    v6 = r.resolve("multi.test", 80, socket.AF_INET6)
    assert [i[4] for i in v6] == [("::1", 80, 0, 0)]


def test_a_and_aaaa_asked_once_then_cached(make: Any, dns: DNSServer) -> None:
    r = make()
    r.resolve("multi.test", 80)
    assert dns.queries("multi.test", "A") == 1 and dns.queries("multi.test", "AAAA") == 1
    for port in range(10):
        assert r.resolve("multi.test", port)[0][4][1] == port
    assert dns.queries("multi.test") == 2
    assert r.stats.hits == 10 and r.stats.misses == 1


def test_answer_ttl_is_used(make: Any, clock: Clock) -> None:
    r = make(min_ttl=1, max_ttl=300)
    r.resolve("multi.test", 80)  # TTL 30
    clock.now += 29
    r.resolve("multi.test", 80)
    assert r.stats.misses == 1
    clock.now += 2
    r.resolve("multi.test", 80)
    assert r.stats.misses == 2


def test_max_ttl_clamp(make: Any, clock: Clock) -> None:
    r = make(min_ttl=1, max_ttl=100)
    r.resolve("long.test", 80)  # TTL one day
    clock.now += 99
    r.resolve("long.test", 80)
    assert r.stats.misses == 1
    clock.now += 2
    r.resolve("long.test", 80)
    assert r.stats.misses == 2


def test_min_ttl_clamp_and_a_new_query_after_expiry(
    make: Any, dns: DNSServer, clock: Clock
) -> None:
    r = make(min_ttl=5, max_ttl=100)
    r.resolve("zero.test", 80, socket.AF_INET)  # TTL 0: lives min_ttl
    clock.now += 4
    r.resolve("zero.test", 80, socket.AF_INET)
    assert dns.queries("zero.test", "A") == 1
    clock.now += 2
    r.resolve("zero.test", 80, socket.AF_INET)
    assert dns.queries("zero.test", "A") == 2


def test_nxdomain_is_negatively_cached(make: Any, dns: DNSServer, clock: Clock) -> None:
    r = make(negative_ttl=10)
    for _ in range(3):
        with pytest.raises(socket.gaierror) as info:
            r.resolve("gone.test", 80)
        assert info.value.errno == socket.EAI_NONAME
    asked = dns.queries("gone.test")
    assert asked >= 1
    assert r.stats.negative_hits == 2
    clock.now += 11
    with pytest.raises(socket.gaierror):
        r.resolve("gone.test", 80)
    assert r.stats.misses == 2


def test_servfail_is_eai_again_and_not_cached(make: Any, dns: DNSServer) -> None:
    r = make()
    with pytest.raises(socket.gaierror) as info:
        r.resolve("broken.test", 80)
    assert info.value.errno == socket.EAI_AGAIN
    first = dns.queries("broken.test")
    assert first >= 1
    with pytest.raises(socket.gaierror):
        r.resolve("broken.test", 80)
    assert dns.queries("broken.test") > first
    assert r.stats.negative_hits == 0 and r.stats.entries == 0


def test_slow_answer_does_not_block_submit_and_is_coalesced(make: Any, dns: DNSServer) -> None:
    r = make()
    started = time.monotonic()
    futures = [r.submit("slow.test", 9000 + i, socket.AF_INET) for i in range(30)]
    assert time.monotonic() - started < 0.1  # the answer takes 0.15 s
    assert not any(f.done() for f in futures)
    assert r.stats.in_flight == 1
    for i, f in enumerate(futures):
        assert f.result(timeout=10) == [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.8", 9000 + i))
        ]
    # one query for 30 lookups (c-ares may retransmit a slow one: never once per lookup)
    assert 1 <= dns.queries("slow.test", "A") <= 3
    assert r.stats.misses == 30 and r.stats.in_flight == 0


def test_a_slow_name_does_not_hold_up_a_fast_one(make: Any) -> None:
    r = make()
    slow = r.submit("slow.test", 80, socket.AF_INET)
    assert _ips(r.resolve("v4.test", 80, socket.AF_INET)) == {"127.0.0.5"}
    assert not slow.done()
    assert slow.result(timeout=10)


def test_localhost_comes_from_the_hosts_file(make: Any) -> None:
    r = make()
    assert "127.0.0.1" in _ips(r.resolve("localhost", 80))


def test_close_fails_pending_lookups(make: Any) -> None:
    r = make()
    pending = r.submit("slow.test", 80)
    r.close()
    with pytest.raises(ResolverClosedError):
        pending.result(timeout=5)
    with pytest.raises(ResolverClosedError):
        r.resolve("v4.test", 80)
