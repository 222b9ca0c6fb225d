"""The "cares" backend's channel recycling (fastpool.resolver._CaresBackend).

c-ares keeps every answer in its channel's query cache until the answer's TTL runs out, with
no size bound, and pycares has no switch for it; so after ``queries_per_channel`` queries new
ones go to a fresh channel, and the old one is closed once its last query is answered (never
cancelled, never waited for), with at most ``max_draining`` old channels waiting at once.

Every test runs the real pycares against the loopback DNS server (tests/dummyserver/dns.py).
A query is kept in flight by a name the server answers late (``delay``); the answer's future
is the sync point, since the backend settles a channel (and closes it when it was its last
query) before it reports the answer. Channels are observed through the backend's own state
(``_current``, ``_draining``, ``channels_opened`` and each ``_Channel``'s counters) and the
real ``pycares.Channel`` each one wraps: a closed pycares channel refuses every call. The one
fault injected is a channel that fails to open (see that test).

Skipped when pycares (``fastpool[pycares]``) or dnslib (the test extra) is missing.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

pycares = pytest.importorskip(
    "pycares", reason='backend="cares" needs pycares: pip install fastpool[pycares]'
)
pytest.importorskip("dnslib", reason="the loopback DNS server needs dnslib (the test extra)")

from dummyserver.dns import DNSServer

from fastpool.resolver import Resolver, ResolverClosedError, _CaresBackend

V4 = socket.AF_INET
#: how late the server answers a "slow" name: long enough for a test's synchronous steps to
#: run while it is in flight, short enough to keep each test well under 2 s
SLOW = 0.3


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer().start()
    yield server
    server.stop()
    assert not server.errors, server.errors


def _per_channel(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    # raising=False: before the fix there was no such knob, and the tests then fail on what
    # the backend does, not on the missing attribute
    monkeypatch.setattr(_CaresBackend, "queries_per_channel", n, raising=False)


def _is_open(chan: Any) -> bool:
    """Whether the real pycares channel behind ``chan`` (a ``_Channel``) is still open: a
    closed one refuses every call ("Channel is destroyed, no new queries allowed")."""
    try:
        chan.channel.servers  # noqa: B018 - the call is the probe
    except (RuntimeError, TypeError):  # pycares 5.0 (Python 3.9's) fails on its gone handle
        return False
    return True


def _ip(future: concurrent.futures.Future[Any]) -> str:
    return str(future.result(timeout=5)[0][4][0])


class Watch:
    """A Resolver(backend="cares") on the loopback server whose lookups note each channel
    the backend used (its current channel right after each query), oldest first."""

    def __init__(self, dns: DNSServer) -> None:
        self.resolver = Resolver(backend="cares", nameservers=[dns.nameserver])
        self.backend: Any = self.resolver._cares
        self.seen: list[Any] = []
        self._note()

    def _note(self) -> None:
        # None for a backend that keeps no channels of its own (before recycling), so that
        # the checks fail on what they check rather than here
        current = getattr(self.backend, "_current", None)
        if not any(c is current for c in self.seen):
            self.seen.append(current)

    def submit(self, host: str, port: int = 80) -> concurrent.futures.Future[Any]:
        future = self.resolver.submit(host, port, V4)
        self._note()
        return future

    def resolve(self, host: str, port: int = 80) -> str:
        return _ip(self.submit(host, port))

    @property
    def current(self) -> Any:
        return self.backend._current

    def draining(self) -> set[Any]:
        # under the backend's lock: c-ares' thread removes channels from it as they close
        with self.backend._lock:
            return set(self.backend._draining)

    def close(self) -> None:
        self.resolver.close()


@pytest.fixture
def watch(dns: DNSServer) -> Iterator[Watch]:
    w = Watch(dns)
    yield w
    w.close()


def test_a_fresh_channel_after_queries_per_channel(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 2)
    dns.add("a0.test", a=["127.0.0.10"], delay=SLOW)
    dns.add("a1.test", a=["127.0.0.11"], delay=SLOW + 0.3)
    dns.add("b.test", a=["127.0.0.20"])
    first = [watch.submit("a0.test"), watch.submit("a1.test")]
    later = watch.submit("b.test")
    assert len(watch.seen) == 2, "the 3rd query did not get a fresh channel"
    old, new = watch.seen
    assert watch.current is new and watch.backend.channels_opened == 2
    assert (old.started, new.started) == (2, 1)
    # the fresh channel asks the same server: it answers b.test while the old one waits
    assert _ip(later) == "127.0.0.20"
    assert new.channel.servers == old.channel.servers == [dns.nameserver]
    # the old channel's queries are still in flight: it stays open, nothing cancelled
    assert not any(f.done() for f in first)
    assert old.retired and old.pending == 2 and watch.draining() == {old}
    assert _is_open(old)
    assert _ip(first[0]) == "127.0.0.10"
    assert _is_open(old) and old.pending == 1, "closed before its last answer"
    assert _ip(first[1]) == "127.0.0.11"
    assert not _is_open(old) and old.closed, "the old channel was not closed after its last answer"
    assert watch.draining() == set()
    assert _is_open(new) and not new.closed
    # one query each: nothing was cancelled and asked again
    assert [dns.queries(n, "A") for n in ("a0.test", "a1.test", "b.test")] == [1, 1, 1]


def test_an_idle_channel_is_closed_when_it_is_replaced(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 2)
    for i in range(2):
        dns.add(f"a{i}.test", a=[f"127.0.0.{10 + i}"])
        assert watch.resolve(f"a{i}.test") == f"127.0.0.{10 + i}"
    dns.add("b.test", a=["127.0.0.20"])
    later = watch.submit("b.test")
    assert len(watch.seen) == 2, "the 3rd query did not get a fresh channel"
    old = watch.seen[0]
    # nothing in flight on it: closed by the query that replaced it, not left to wait
    assert not _is_open(old) and old.closed and (old.started, old.pending) == (2, 0)
    assert watch.draining() == set()
    assert _ip(later) == "127.0.0.20"
    assert _is_open(watch.current)


def test_cache_and_coalescing_unchanged_across_channels(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 2)
    for name, ip in (("a.test", "127.0.0.30"), ("b.test", "127.0.0.31"), ("c.test", "127.0.0.32")):
        dns.add(name, a=[ip], delay=0.05)
    f = watch.submit("a.test", 80)
    g = watch.submit("a.test", 443)  # joins the query in flight
    assert _ip(f) == _ip(g) == "127.0.0.30"
    # our cache answers without a query
    assert watch.resolver.resolve("a.test", 8080, V4)[0][4] == ("127.0.0.30", 8080)
    stats = watch.resolver.stats
    assert stats.hits == 1 and stats.misses == 2 and dns.queries("a.test", "A") == 1
    # so three lookups were one query on the channel, and the 2nd query still fits in it...
    assert watch.resolve("b.test") == "127.0.0.31"
    assert len(watch.seen) == 1
    # ...the 3rd is the one that goes to a fresh channel
    assert watch.resolve("c.test") == "127.0.0.32"
    assert len(watch.seen) == 2, "the 3rd query did not get a fresh channel"
    first, second = watch.seen
    assert (first.started, second.started) == (2, 1) and watch.backend.channels_opened == 2
    assert not _is_open(first) and _is_open(second)
    # our cache outlives the channel that filled it
    assert watch.resolver.resolve("a.test", 80, V4)[0][4][0] == "127.0.0.30"
    assert dns.queries("a.test", "A") == 1 and watch.resolver.stats.hits == 2


def test_errors_are_mapped_on_a_draining_channel_too(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 3)
    dns.add("gone.test", rcode="NXDOMAIN", delay=SLOW)
    # c-ares tries a SERVFAIL three times: this one takes ~0.45 s
    dns.add("broken.test", rcode="SERVFAIL", delay=0.15)
    dns.add("ok.test", a=["127.0.0.40"], delay=SLOW)
    dns.add("b.test", a=["127.0.0.41"])
    futures = [watch.submit(n) for n in ("gone.test", "broken.test", "ok.test")]
    later = watch.submit("b.test")
    assert len(watch.seen) == 2
    old = watch.seen[0]
    # the three are answered while their channel waits, retired
    assert watch.draining() == {old} and old.pending == 3
    assert _ip(later) == "127.0.0.41"
    errnos = []
    for f in futures[:2]:
        with pytest.raises(socket.gaierror) as info:
            f.result(timeout=5)
        errnos.append(info.value.errno)
    assert errnos == [socket.EAI_NONAME, socket.EAI_AGAIN]
    assert _ip(futures[2]) == "127.0.0.40"
    assert not _is_open(old) and old.pending == 0 and watch.draining() == set()
    # gone.test's NXDOMAIN (negative), ok.test and b.test; SERVFAIL is not cached
    assert watch.resolver.stats.entries == 3
    with pytest.raises(socket.gaierror):
        watch.resolver.resolve("gone.test", 80, V4)
    assert watch.resolver.stats.negative_hits == 1


def test_channels_waiting_for_answers_are_bounded(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 1)
    cap = 3  # below the shipped 4, to keep the test short; raising=False as in _per_channel
    monkeypatch.setattr(_CaresBackend, "max_draining", cap, raising=False)
    dns.add("s0.test", a=["127.0.1.0"], delay=SLOW)
    for i in range(1, cap + 1):
        dns.add(f"s{i}.test", a=[f"127.0.1.{i}"], delay=SLOW + 0.4)
    for name in ("x0.test", "x1.test", "y.test"):
        dns.add(name, a=["127.0.2.1"])
    # one slow query on each of channels 0 .. cap: channels 0 .. cap-1 then wait, retired
    slow = [watch.submit(f"s{i}.test") for i in range(cap + 1)]
    assert len(watch.seen) == cap + 1
    assert watch.draining() == set(watch.seen[:cap])
    last = watch.current
    # the bound is reached: the current channel takes more queries past queries_per_channel
    extra = [watch.submit("x0.test"), watch.submit("x1.test")]
    assert len(watch.seen) == cap + 1 and watch.backend.channels_opened == cap + 1
    assert watch.current is last and last.started == 3
    assert [_ip(f) for f in extra] == ["127.0.2.1"] * 2
    assert not any(f.done() for f in slow)
    # the first old channel is done and closed: a fresh channel can be opened again
    assert _ip(slow[0]) == "127.0.1.0"
    assert not _is_open(watch.seen[0]) and len(watch.draining()) == cap - 1
    fresh = watch.submit("y.test")
    assert len(watch.seen) == cap + 2 and watch.current.started == 1
    assert watch.draining() == set(watch.seen[1 : cap + 1])
    assert _ip(fresh) == "127.0.2.1"
    # every slow query got its own answer; every old channel is closed by it
    assert [_ip(f) for f in slow] == [f"127.0.1.{i}" for i in range(cap + 1)]
    assert watch.draining() == set()
    assert [_is_open(c) for c in watch.seen] == [False] * (cap + 1) + [True]


def test_a_channel_that_cannot_be_opened_keeps_the_old_one(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 2)
    for name in ("a0.test", "a1.test", "b.test", "c0.test", "c1.test"):
        dns.add(name, a=["127.0.0.50"])
    watch.resolve("a0.test")
    watch.resolve("a1.test")
    # The one fault injected in this file: no real server makes c-ares fail to open a
    # channel (that takes running out of descriptors or threads), so the next construction
    # raises as pycares does then; every later one makes a real channel.
    real = pycares.Channel
    failures = [pycares.AresError("Failed to initialize c-ares channel")]

    def channel(**options: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(**options)

    monkeypatch.setattr(pycares, "Channel", channel)
    [old] = watch.seen
    assert watch.resolve("b.test") == "127.0.0.50"
    assert not failures, "no fresh channel was tried after queries_per_channel queries"
    # the old channel took the query, and stays the (open) current one
    assert watch.seen == [old] and _is_open(old) and not old.retired
    assert watch.backend.channels_opened == 1
    # tried again after another queries_per_channel queries: this time a real channel
    assert watch.resolve("c0.test") == "127.0.0.50"
    assert watch.seen == [old]
    assert watch.resolve("c1.test") == "127.0.0.50"
    assert len(watch.seen) == 2 and isinstance(watch.current.channel, real)
    assert not _is_open(old) and _is_open(watch.current)


def test_a_refused_query_does_not_keep_its_channel_open(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 3)
    dns.add("a0.test", a=["127.0.0.60"], delay=SLOW)
    dns.add("a1.test", a=["127.0.0.61"], delay=SLOW)
    dns.add("b.test", a=["127.0.0.62"])
    first = [watch.submit("a0.test"), watch.submit("a1.test")]
    # pycares refuses a name it cannot encode (IDNA) and never calls back for it
    with pytest.raises(socket.gaierror) as info:
        watch.resolver.resolve("\udcff.test", 80, V4)
    assert info.value.errno == socket.EAI_FAIL
    later = watch.submit("b.test")  # the refused one counted: this is the 4th
    assert len(watch.seen) == 2, "the 4th query (with the refused one) got no fresh channel"
    old = watch.seen[0]
    assert (old.started, old.pending) == (3, 2) and watch.draining() == {old}
    assert _ip(later) == "127.0.0.62"
    assert [_ip(f) for f in first] == ["127.0.0.60", "127.0.0.61"]
    # its two real answers were its last: closed, not kept waiting for the refused one
    assert not _is_open(old) and old.pending == 0 and watch.draining() == set()
    assert dns.queries() == 3  # a0, a1 and b: nothing was sent for the refused one


def test_a_query_on_a_closed_backend_is_refused(dns: DNSServer, watch: Watch) -> None:
    dns.add("a.test", a=["127.0.0.70"])
    assert watch.resolve("a.test") == "127.0.0.70"
    watch.close()
    with pytest.raises(ResolverClosedError):
        watch.resolver.resolve("b.test", 80, V4)
    # the backend itself, as a lookup racing close() reaches it
    answers: list[Any] = []
    with pytest.raises(ResolverClosedError):
        watch.backend.query("b.test", V4, answers.append)
    assert answers == [] and dns.queries("b.test") == 0
    assert watch.backend.channels_opened == 1 and not _is_open(watch.current)


def _wait(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_close_closes_every_channel_once(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 2)
    for i in range(2):
        dns.add(f"a{i}.test", a=["127.0.0.80"])
        watch.resolve(f"a{i}.test")
    for i in range(3):
        dns.add(f"s{i}.test", a=["127.0.0.81"], delay=SLOW)
    # channel 0 idle (closed when replaced), 1 waiting for two answers, 2 current with one
    pending = [watch.submit(f"s{i}.test") for i in range(3)]
    assert len(watch.seen) == 3
    idle, waiting, current = watch.seen
    assert not _is_open(idle) and watch.draining() == {waiting}
    assert _is_open(waiting) and _is_open(current)
    watch.close()
    assert [_is_open(c) for c in watch.seen] == [False, False, False]
    assert all(c.closed for c in watch.seen) and watch.draining() == set()
    for f in pending:
        with pytest.raises(ResolverClosedError):
            f.result(timeout=5)
    # pycares cancels the queries in flight and calls each back (ARES_ECANCELLED): nothing
    # is closed again, no channel waits again, none is opened
    assert _wait(lambda: waiting.pending == 0 and current.pending == 0), (
        f"cancelled queries not called back: {waiting.pending}, {current.pending}"
    )
    assert watch.draining() == set() and watch.backend.channels_opened == 3
    watch.close()  # idempotent
    with pytest.raises(ResolverClosedError):
        watch.resolver.resolve("a0.test", 80, V4)
    assert watch.backend.channels_opened == 3


def test_c_ares_own_cache_does_not_outlive_a_channel(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 2)
    dns.add("v4.test", a=["127.0.0.5"], ttl=30)
    for _ in range(3):
        watch.resolver.forget("v4.test")  # our cache: empty; c-ares' cache: still holds it
        assert watch.resolve("v4.test") == "127.0.0.5"
    # the 2nd lookup was c-ares' cache hit; the 3rd, on a fresh channel, asked again.
    # Without recycling, c-ares answers all three from one query.
    assert dns.queries("v4.test", "A") == 2
    assert len(watch.seen) == 2 and watch.backend.channels_opened == 2
    assert not _is_open(watch.seen[0]) and _is_open(watch.seen[1])


def test_many_names_over_many_channels_stay_correct(
    dns: DNSServer, watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _per_channel(monkeypatch, 8)
    n = 60
    for i in range(n):
        dns.add(f"n{i}.test", a=[f"127.0.{i // 200}.{i % 200 + 2}"], ttl=30)
    futures = [watch.submit(f"n{i}.test") for i in range(n)]  # all in flight at once
    for i, f in enumerate(futures):
        assert f.result(timeout=10)[0][4] == (f"127.0.{i // 200}.{i % 200 + 2}", 80)
    # a fresh channel every 8 queries, except while 4 are still waiting for answers
    opened = len(watch.seen)
    assert 2 <= opened <= n // 8 + 1 and watch.backend.channels_opened == opened
    # every replaced channel is closed (by its last answer), the current one is open
    assert [_is_open(c) for c in watch.seen] == [False] * (opened - 1) + [True]
    assert watch.draining() == set() and watch.seen[-1] is watch.current
    assert watch.resolver.stats.in_flight == 0 and watch.resolver.stats.entries == n
    watch.close()
    assert not any(_is_open(c) for c in watch.seen)
