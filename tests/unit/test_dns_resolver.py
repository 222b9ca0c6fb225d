"""fastpool.resolver without a DNS server: the "threads" backend (getaddrinfo: IP literals,
/etc/hosts, localhost, the RFC 6761 ``.invalid`` NXDOMAIN), the cache against a fake clock
and a counting fake getaddrinfo, coalescing, LRU bounds, close(), and happy_eyeballs_order."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import Future
from typing import Any, Callable

import pytest

import fastpool.resolver as resolver_mod
from fastpool.resolver import (
    DEFAULT_TTL,
    HAPPY_EYEBALLS_DELAY,
    Resolver,
    ResolverClosedError,
    happy_eyeballs_order,
)

V4 = socket.AF_INET
V6 = socket.AF_INET6
TCP = socket.SOCK_STREAM


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeGAI:
    """Stands in for socket.getaddrinfo inside fastpool.resolver: counts calls per host,
    answers from a table, and can hold answers until released."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.table: dict[str, Any] = {}
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, *a: Any) -> Any:
        numeric = len(a) > 1 and a[1] & socket.AI_NUMERICHOST  # the resolver's literal check
        if isinstance(host, str) and host in self.table and not numeric:
            with self.lock:
                self.calls[host] = self.calls.get(host, 0) + 1
            assert self.gate.wait(10), "the test never released the fake getaddrinfo"
            answer = self.table[host]
            if isinstance(answer, BaseException):
                raise answer
            return [(V4, TCP, 6, "", (ip, port)) for ip in answer]
        return self.real(host, port, family, type, *a)


@pytest.fixture
def gai(monkeypatch: pytest.MonkeyPatch) -> FakeGAI:
    fake = FakeGAI()
    monkeypatch.setattr(resolver_mod.socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def make() -> Any:
    made: list[Resolver] = []

    def factory(**kw: Any) -> Resolver:
        r = Resolver(**kw)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.close()


def _ips(infos: list[tuple[Any, ...]]) -> list[str]:
    return [info[4][0] for info in infos]


# -- IP literals, localhost, /etc/hosts, .invalid (the real getaddrinfo) -------------------------


@pytest.mark.parametrize(
    ("host", "family", "sockaddr"),
    [
        ("127.0.0.7", V4, ("127.0.0.7", 8080)),
        ("::1", V6, ("::1", 8080, 0, 0)),
        ("[::1]", V6, ("::1", 8080, 0, 0)),
    ],
)
def test_ip_literals_answer_at_once_without_cache(
    make: Any, host: str, family: int, sockaddr: tuple[Any, ...]
) -> None:
    r = make()
    future = r.submit(host, 8080)
    assert future.done()
    assert future.result() == [(family, TCP, socket.IPPROTO_TCP, "", sockaddr)]
    assert r.resolve(host, 8080)[0][4] == sockaddr
    stats = r.stats
    assert (stats.hits, stats.misses, stats.entries, stats.in_flight) == (0, 0, 0, 0)


def test_ip_literal_of_the_other_family_fails_as_getaddrinfo(make: Any) -> None:
    r = make()
    with pytest.raises(socket.gaierror) as info:
        r.resolve("127.0.0.1", 80, V6)
    with pytest.raises(socket.gaierror) as expected:
        socket.getaddrinfo("127.0.0.1", 80, V6, TCP, 0, socket.AI_NUMERICHOST)
    assert info.value.errno == expected.value.errno


def test_localhost_matches_getaddrinfo_and_is_cached(make: Any) -> None:
    r = make()
    want = socket.getaddrinfo("localhost", 443, 0, TCP)
    assert r.resolve("localhost", 443) == [tuple(x) for x in want]
    assert r.resolve("LOCALHOST", 80)[0][4][1] == 80  # one entry, any port, any case
    stats = r.stats
    assert (stats.misses, stats.hits, stats.entries) == (1, 1, 1)


def _hosts_file_name() -> str:
    try:
        with open("/etc/hosts", encoding="utf-8") as f:
            for line in f:
                fields = line.split("#")[0].split()
                for name in fields[1:]:
                    if name != "localhost" and "." not in name.strip("."):
                        return name
    except OSError:
        pass
    pytest.skip("no name besides localhost in /etc/hosts")


def test_etc_hosts_names_resolve(make: Any) -> None:
    name = _hosts_file_name()
    r = make()
    assert r.resolve(name, 80) == [tuple(x) for x in socket.getaddrinfo(name, 80, 0, TCP)]


def test_invalid_tld_is_nxdomain_and_negatively_cached(make: Any) -> None:
    # RFC 6761 6.4: ".invalid" never resolves; this machine's resolver answers at once
    try:
        socket.getaddrinfo("fastpool-test.invalid", 80)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine answers .invalid with {exc!r}, not EAI_NONAME")
    else:
        pytest.skip("this machine resolves .invalid names")
    clock = Clock()
    r = make(clock=clock, negative_ttl=30)
    for _ in range(3):
        with pytest.raises(socket.gaierror) as info:
            r.resolve("fastpool-test.invalid", 80)
        assert info.value.errno == socket.EAI_NONAME
        assert "fastpool-test.invalid" in str(info.value)
    stats = r.stats
    assert (stats.misses, stats.negative_hits) == (1, 2)
    future = r.submit("fastpool-test.invalid", 80)
    assert future.done() and isinstance(future.exception(), socket.gaierror)
    clock.now += 31
    with pytest.raises(socket.gaierror):
        r.resolve("fastpool-test.invalid", 80)
    assert r.stats.misses == 2


# -- the cache, against a fake clock and a counting getaddrinfo ------------------------------------


def test_default_ttl_then_expiry(make: Any, gai: FakeGAI) -> None:
    gai.table["a.example"] = ["192.0.2.1", "192.0.2.2"]
    clock = Clock()
    r = make(clock=clock)
    assert _ips(r.resolve("a.example", 80)) == ["192.0.2.1", "192.0.2.2"]
    clock.now += DEFAULT_TTL - 1
    r.resolve("a.example", 80)
    assert gai.calls["a.example"] == 1
    clock.now += 2
    r.resolve("a.example", 80)
    assert gai.calls["a.example"] == 2
    assert r.stats.hits == 1 and r.stats.misses == 2


@pytest.mark.parametrize(("min_ttl", "max_ttl", "lives"), [(0, 10, 10), (120, 600, 120)])
def test_ttl_clamps_apply_to_the_default_ttl(
    make: Any, gai: FakeGAI, min_ttl: float, max_ttl: float, lives: float
) -> None:
    gai.table["a.example"] = ["192.0.2.1"]
    clock = Clock()
    r = make(clock=clock, min_ttl=min_ttl, max_ttl=max_ttl)
    r.resolve("a.example", 80)
    clock.now += lives - 0.5
    r.resolve("a.example", 80)
    assert gai.calls["a.example"] == 1
    clock.now += 1
    r.resolve("a.example", 80)
    assert gai.calls["a.example"] == 2


def test_family_is_part_of_the_key(make: Any, gai: FakeGAI) -> None:
    gai.table["a.example"] = ["192.0.2.1"]
    r = make()
    r.resolve("a.example", 80)
    r.resolve("a.example", 80, V4)
    r.resolve("a.example", 80, V4)
    assert gai.calls["a.example"] == 2


def test_temporary_failures_are_not_cached(make: Any, gai: FakeGAI) -> None:
    gai.table["flaky.example"] = socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
    r = make()
    for n in (1, 2):
        with pytest.raises(socket.gaierror) as info:
            r.resolve("flaky.example", 80)
        assert info.value.errno == socket.EAI_AGAIN
        assert gai.calls["flaky.example"] == n
    gai.table["flaky.example"] = ["192.0.2.9"]
    assert _ips(r.resolve("flaky.example", 80)) == ["192.0.2.9"]


def test_negative_ttl_zero_disables_negative_caching(make: Any, gai: FakeGAI) -> None:
    gai.table["gone.example"] = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    r = make(negative_ttl=0)
    for _ in range(2):
        with pytest.raises(socket.gaierror):
            r.resolve("gone.example", 80)
    assert gai.calls["gone.example"] == 2


def test_coalescing_n_submits_one_query(make: Any, gai: FakeGAI) -> None:
    gai.table["a.example"] = ["192.0.2.1"]
    gai.gate.clear()
    r = make()
    futures = [r.submit("a.example", 8000 + i) for i in range(50)]
    assert not any(f.done() for f in futures)  # submit() did not wait for the answer
    assert r.stats.in_flight == 1
    gai.gate.set()
    for i, f in enumerate(futures):
        assert f.result(timeout=10)[0][4] == ("192.0.2.1", 8000 + i)
    assert gai.calls["a.example"] == 1
    assert r.stats.in_flight == 0 and r.stats.misses == 50


def test_resolve_from_many_threads(make: Any, gai: FakeGAI) -> None:
    names = [f"h{i}.example" for i in range(8)]
    for i, name in enumerate(names):
        gai.table[name] = [f"192.0.2.{i + 1}"]
    r = make(workers=2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                for i, name in enumerate(names):
                    assert _ips(r.resolve(name, 80)) == [f"192.0.2.{i + 1}"]
        except BaseException as exc:  # noqa: BLE001 # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert all(gai.calls[name] == 1 for name in names)


def test_a_cancelled_future_does_not_break_the_others(make: Any, gai: FakeGAI) -> None:
    gai.table["a.example"] = ["192.0.2.1"]
    gai.gate.clear()
    r = make()
    first, second = r.submit("a.example", 80), r.submit("a.example", 81)
    assert first.cancel()
    gai.gate.set()
    assert second.result(timeout=10)[0][4] == ("192.0.2.1", 81)
    assert r.stats.entries == 1


def test_lru_bound(make: Any, gai: FakeGAI) -> None:
    for i in range(5):
        gai.table[f"h{i}.example"] = [f"192.0.2.{i}"]
    r = make(max_entries=3)
    for i in range(3):
        r.resolve(f"h{i}.example", 80)
    r.resolve("h0.example", 80)  # h0 is now the most recently used
    r.resolve("h3.example", 80)  # evicts h1, the least recently used
    assert r.stats.entries == 3
    r.resolve("h0.example", 80)
    r.resolve("h2.example", 80)
    assert gai.calls["h0.example"] == 1 and gai.calls["h2.example"] == 1
    r.resolve("h1.example", 80)
    assert gai.calls["h1.example"] == 2
    for i in range(5):
        r.resolve(f"h{i}.example", 80)
    assert r.stats.entries == 3


def test_a_full_cache_evicts_the_least_recently_used_even_if_fresh(make: Any, gai: FakeGAI) -> None:
    # Constant-time eviction: the least recently used goes, fresh or not; an expired entry
    # more recently used stays until it is looked up (then a miss, and refreshed).
    for name in ("old.example", "new.example", "third.example"):
        gai.table[name] = ["192.0.2.1"]
    clock = Clock()
    r = make(max_entries=2, clock=clock, min_ttl=0, max_ttl=10)
    r.resolve("new.example", 80)
    clock.now += 5
    r.resolve("old.example", 80)  # expires at 15; new.example at 10
    clock.now += 6  # new.example has expired, old.example has not
    r.resolve("new.example", 80)  # stale: a miss, refreshed, now the most recently used
    assert gai.calls["new.example"] == 2
    r.resolve("third.example", 80)  # full: old.example, the least recently used, goes
    assert r.stats.entries == 2
    r.resolve("new.example", 80)
    assert gai.calls["new.example"] == 2  # kept
    r.resolve("old.example", 80)
    assert gai.calls["old.example"] == 2  # evicted, asked again


def test_in_flight_queries_are_bounded(make: Any, gai: FakeGAI) -> None:
    for i in range(3):
        gai.table[f"h{i}.example"] = ["192.0.2.1"]
    gai.gate.clear()
    r = make(max_entries=2)
    held = [r.submit("h0.example", 80), r.submit("h1.example", 80)]
    over = r.submit("h2.example", 80)
    assert over.done()
    exc = over.exception()
    assert isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN
    gai.gate.set()
    assert all(f.result(timeout=10) for f in held)
    assert r.stats.in_flight == 0


def test_forget(make: Any, gai: FakeGAI) -> None:
    gai.table["a.example"] = ["192.0.2.1"]
    gai.table["b.example"] = ["192.0.2.2"]
    r = make()
    r.resolve("a.example", 80)
    r.resolve("b.example", 80)
    r.forget("A.EXAMPLE")
    r.resolve("a.example", 80)
    r.resolve("b.example", 80)
    assert gai.calls == {"a.example": 2, "b.example": 1}
    r.forget()
    assert r.stats.entries == 0


def test_forget_during_a_query_keeps_its_answer_out(make: Any, gai: FakeGAI) -> None:
    gai.table["a.example"] = ["192.0.2.1"]
    gai.gate.clear()
    r = make()
    future = r.submit("a.example", 80)
    r.forget("a.example")
    gai.gate.set()
    assert future.result(timeout=10)
    assert r.stats.entries == 0


def test_close_fails_pending_lookups_and_later_ones(make: Any, gai: FakeGAI) -> None:
    gai.table["a.example"] = ["192.0.2.1"]
    gai.gate.clear()
    r = make()
    pending = r.submit("a.example", 80)
    r.close()
    with pytest.raises(ResolverClosedError):
        pending.result(timeout=1)
    gai.gate.set()
    with pytest.raises(ResolverClosedError, match="closed"):
        r.resolve("a.example", 80)
    assert isinstance(r.submit("b.example", 80).exception(), OSError)
    r.close()  # idempotent
    assert r.stats.in_flight == 0


def test_context_manager_closes() -> None:
    with Resolver() as r:
        assert r.resolve("127.0.0.1", 1)
    with pytest.raises(ResolverClosedError):
        r.resolve("localhost", 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_ttl": 10, "max_ttl": 5},
        {"min_ttl": -1},
        {"negative_ttl": -1},
        {"max_entries": 0},
        {"workers": 0},
        {"backend": "nope"},
        {"nameservers": ["127.0.0.1:53"]},
    ],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Resolver(**kwargs)


def test_cares_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import: Callable[..., Any] = builtins.__import__

    def no_pycares(name: str, *args: Any, **kw: Any) -> Any:
        if name == "pycares":
            raise ImportError("No module named 'pycares'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pycares)
    with pytest.raises(ImportError, match=r"pip install fastpool\[pycares\]"):
        Resolver(backend="cares")


def test_stats_is_a_read_only_snapshot(make: Any) -> None:
    r = make()
    snapshot = r.stats
    r.resolve("localhost", 80)
    assert snapshot.misses == 0 and r.stats.misses == 1
    with pytest.raises(AttributeError):
        snapshot.hits = 5  # type: ignore[misc]
    assert isinstance(r.submit("localhost", 1), Future)


# -- happy_eyeballs_order -----------------------------------------------------------------------


def _info(family: int, ip: str) -> tuple[Any, ...]:
    sockaddr: tuple[Any, ...] = (ip, 80) if family == V4 else (ip, 80, 0, 0)
    return (family, TCP, 6, "", sockaddr)


def test_happy_eyeballs_interleaves_preferred_family_first() -> None:
    a6, b6, c6 = (_info(V6, f"2001:db8::{i}") for i in (1, 2, 3))
    a4, b4 = (_info(V4, f"192.0.2.{i}") for i in (1, 2))
    assert happy_eyeballs_order([a6, b6, c6, a4, b4]) == [a6, a4, b6, b4, c6]
    assert happy_eyeballs_order([a4, a6, b4, b6]) == [a4, a6, b4, b6]
    assert happy_eyeballs_order([a4, b4, a6]) == [a4, a6, b4]


def test_happy_eyeballs_single_family_and_empty() -> None:
    v4 = [_info(V4, f"192.0.2.{i}") for i in range(4)]
    assert happy_eyeballs_order(v4) == v4
    assert happy_eyeballs_order([]) == []


def test_happy_eyeballs_keeps_every_address_once() -> None:
    infos = [_info(V6 if i % 3 else V4, f"10.0.0.{i}") for i in range(10)]
    ordered = happy_eyeballs_order(infos)
    assert sorted(ordered) == sorted(infos)
    assert ordered[0] == infos[0]


def test_connection_attempt_delay_is_rfc_8305s() -> None:
    assert HAPPY_EYEBALLS_DELAY == 0.25


def test_cached_answers_only_what_it_holds_and_never_asks(make: Any, gai: FakeGAI) -> None:
    # The multiplexed loop's question: an answer now, without blocking or asking, or None.
    gai.table["a.example"] = ["192.0.2.1"]
    gai.table["gone.example"] = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    clock = Clock()
    r = make(clock=clock)
    assert _ips(r.cached("127.0.0.9", 80) or []) == ["127.0.0.9"]  # a literal: at once
    assert r.cached("a.example", 80) is None  # not asked yet: nothing asked now either
    assert gai.calls == {} and r.stats.misses == 0
    r.resolve("a.example", 80)
    answer = r.cached("a.example", 443)
    assert answer is not None and answer[0][4] == ("192.0.2.1", 443)
    assert (r.stats.hits, r.stats.misses, gai.calls["a.example"]) == (1, 1, 1)
    with pytest.raises(socket.gaierror):
        r.resolve("gone.example", 80)
    assert r.cached("gone.example", 80) is None  # a negative answer: resolve() raises it
    clock.now += DEFAULT_TTL + 1
    assert r.cached("a.example", 80) is None  # expired: resolve() asks again
    assert gai.calls["a.example"] == 1
    r.close()
    assert r.cached("a.example", 80) is None
