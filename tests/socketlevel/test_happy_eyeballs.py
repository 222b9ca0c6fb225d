"""Happy Eyeballs (RFC 8305 section 5): a host with several addresses races its connection
attempts ``HTTPConnection.happy_eyeballs_delay`` apart (fastpool/_dialer.py, docs/dns.md).

Real sockets on loopback only. A duck-typed resolver maps a made-up name to chosen addresses:
tiny HTTP servers on 127.0.0.x and ``::1``, ports nobody listens on (refused), and
"blackholes", whose connect hangs: a listening socket with ``listen(0)`` and its accept queue
filled by connections never accepted, past which the kernel drops further SYNs. Only the
differential tests against stock urllib3 (which cannot take a resolver) replace
``socket.getaddrinfo`` for the made-up name, so that both libraries see the same addresses.

Wall-clock bounds are loose (3-5x): the machine is shared and loaded.
"""

from __future__ import annotations

import functools
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import urllib3
from dummyserver.addresses import (
    Addr,
    Blackhole,
    Hosts,
    Refused,
    Server,
    closed_after,
    fds,
    resolve_name,
)
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

import fastpool
from fastpool.connection import HTTPConnection
from fastpool.resolver import HAPPY_EYEBALLS_DELAY

NAME = "dual.test"  # the made-up name every test resolves


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 here")


def drain(holes: list[Blackhole], seconds: float) -> list[int]:
    """Accept what comes to ``holes`` for ``seconds``: their queued fillers, then any
    connection whose SYN a client still trying retransmits; how many each accepted."""
    accepted = [0] * len(holes)
    for hole in holes:
        hole.listener.setblocking(False)
    deadline = time.monotonic() + seconds
    while True:
        last = time.monotonic() >= deadline  # one more pass after it, however late it came
        for i, hole in enumerate(holes):
            while True:
                try:
                    conn, _ = hole.listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[i] += 1
        if last:
            return accepted
        time.sleep(0.02)


#: Blackholes the module's tests take, by host: making one waits a while for a SYN that is
#: not answered, so they are all made at once, before the first test (each test takes fresh
#: ones, never used before; any more it asks for are made then).
HOLES = {"127.0.0.1": 13, "127.0.0.2": 5, "127.0.0.3": 4, "::1": 3}


@pytest.fixture(scope="module")
def unused_holes() -> Iterator[dict[str, list[Blackhole]]]:
    hosts = [host for host, n in HOLES.items() for _ in range(n)]
    if not _has_ipv6_loopback():
        hosts = [host for host in hosts if ":" not in host]
    stock: dict[str, list[Blackhole]] = {}
    with closed_after() as things, ThreadPoolExecutor(len(hosts)) as pool:
        for hole in pool.map(Blackhole, hosts):
            things.append(hole)
            stock.setdefault(hole.addr[0], []).append(hole)
        yield stock  # the ones taken are closed by their test first; closing twice is harmless


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """A list of things to close after the test (servers, blackholes, refused ports)."""
    with closed_after() as things:
        yield things


@pytest.fixture
def make(closing: list[Any], unused_holes: dict[str, list[Blackhole]]) -> Any:
    def make(kind: type, host: str, *args: Any) -> Any:
        if kind is Blackhole and unused_holes.get(host):
            thing = unused_holes[host].pop()
        else:
            thing = kind(host, *args)
        closing.append(thing)
        return thing

    return make


def dial(resolver: Hosts, timeout: float | None = 10.0, **kw: Any) -> HTTPConnection:
    """A connected HTTPConnection to ``NAME`` through ``resolver`` (attributes from ``kw``)."""
    conn = HTTPConnection(
        NAME,
        80,
        timeout=timeout,
        source_address=kw.pop("source_address", None),
        socket_options=kw.pop("socket_options", HTTPConnection.default_socket_options),
    )
    conn.resolver = resolver
    for key, value in kw.items():
        setattr(conn, key, value)
    conn.connect()
    return conn


def timed_dial(resolver: Hosts, **kw: Any) -> tuple[HTTPConnection, float]:
    start = time.monotonic()
    conn = dial(resolver, **kw)
    return conn, time.monotonic() - start


def peer(conn: HTTPConnection) -> Addr:
    assert conn.sock is not None
    return tuple(conn.sock.getpeername()[:2])


# --- the race -----------------------------------------------------------------------------------


def test_the_default_attempt_delay_is_rfc_8305s() -> None:
    assert HAPPY_EYEBALLS_DELAY == 0.25
    assert HTTPConnection.happy_eyeballs_delay == HAPPY_EYEBALLS_DELAY


def test_the_second_address_wins_after_the_attempt_delay_when_the_first_hangs(make: Any) -> None:
    hole = make(Blackhole, "127.0.0.1")
    good = make(Server, "127.0.0.2")
    before = fds()
    conn, took = timed_dial(Hosts(NAME, hole.addr, good.addr), timeout=10.0)
    assert peer(conn) == good.addr
    # the second attempt started after the delay, and long before the 10 s connect timeout
    assert HAPPY_EYEBALLS_DELAY * 0.8 <= took < 2.5
    # the winner is as a blocking dial leaves it: blocking, the connect timeout set
    assert conn.sock is not None
    assert conn.sock.getblocking() and conn.sock.gettimeout() == 10.0
    assert conn._sock_timeout == 10.0
    good.wait_accepted(1)
    assert len(fds() - before) == 2  # the winner and its server side: the hanging attempt closed
    conn.close()
    good.wait_idle(1)
    assert fds() - before == set()
    assert (good.accepted, good.empty) == (1, 1)


def test_a_refused_first_address_fails_over_at_once(make: Any) -> None:
    refused = make(Refused, "127.0.0.1")
    good = make(Server, "127.0.0.2")
    # An attempt delay of 5 s: only the failure can have started the second attempt early.
    conn, took = timed_dial(Hosts(NAME, refused.addr, good.addr), happy_eyeballs_delay=5.0)
    assert peer(conn) == good.addr
    assert took < 2.0
    conn.close()


def test_every_address_hanging_is_a_connect_timeout_at_about_the_timeout(make: Any) -> None:
    holes = [make(Blackhole, f"127.0.0.{i}") for i in (1, 2, 3)]
    before = fds()
    start = time.monotonic()
    with pytest.raises(ConnectTimeoutError) as info:
        dial(Hosts(NAME, *(h.addr for h in holes)), timeout=0.6)
    took = time.monotonic() - start
    assert 0.55 <= took < 2.4  # the timeout bounds the whole race, not each attempt
    assert info.value.args[1] == f"Connection to {NAME} timed out. (connect timeout=0.6)"
    assert isinstance(info.value.__cause__, socket.timeout)
    assert fds() - before == set()


def test_every_address_refusing_is_a_new_connection_error_with_the_last_error(make: Any) -> None:
    refused = [make(Refused, f"127.0.0.{i}") for i in (1, 2, 3)]
    before = fds()
    with pytest.raises(NewConnectionError) as info:
        dial(Hosts(NAME, *(r.addr for r in refused)))
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert str(info.value).endswith(
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    assert fds() - before == set()


def test_refused_then_hanging_is_a_timeout_and_hanging_then_refused_waits_for_the_hang(
    make: Any,
) -> None:
    refused = make(Refused, "127.0.0.1")
    hole = make(Blackhole, "127.0.0.2")
    for order in ((refused.addr, hole.addr), (hole.addr, refused.addr)):
        with pytest.raises(ConnectTimeoutError):
            dial(Hosts(NAME, *order), timeout=0.4)  # past the 0.25 s attempt delay


def test_losers_are_closed_at_once_and_never_reach_their_server(make: Any) -> None:
    holes = [make(Blackhole, f"127.0.0.{i}") for i in (1, 2)]
    good = make(Server, "127.0.0.3")
    before = fds()
    conn = dial(Hosts(NAME, holes[0].addr, holes[1].addr, good.addr), happy_eyeballs_delay=0.05)
    assert peer(conn) == good.addr
    good.wait_accepted(1)
    assert len(fds() - before) == 2
    # An attempt left open would retransmit its SYN (after 1 s: Linux's initial RTO) and be
    # accepted once the queue has room: drain the queues and wait past the retransmission.
    assert drain(holes, 1.3) == [len(h.fillers) for h in holes]
    conn.close()
    good.wait_idle(1)
    assert (good.accepted, good.requests) == (1, 0)
    assert fds() - before == set()


def test_a_loser_that_connected_too_is_closed_at_once(make: Any) -> None:
    # An attempt delay of 0 starts every attempt at once: both connect, one wins.
    servers = [make(Server, "127.0.0.2"), make(Server, "127.0.0.3")]
    before = fds()
    conn = dial(Hosts(NAME, *(s.addr for s in servers)), happy_eyeballs_delay=0.0)
    winner = next(s for s in servers if s.addr == peer(conn))
    conn.request("GET", "/")
    head = conn.read_response_head("GET")
    assert head.status == 200
    assert conn.take_rest() == winner.name
    loser = next(s for s in servers if s is not winner)
    time.sleep(0.2)  # its server accepts the loser's connection, if it was established
    loser.wait_idle()  # and sees it closed without a request
    assert loser.requests == 0 and loser.empty == loser.accepted
    assert (winner.accepted, winner.requests) == (1, 1)
    conn.close()
    winner.wait_idle(1)
    assert fds() - before == set()


def test_a_delay_of_none_tries_the_addresses_in_turn_each_with_the_whole_timeout(
    make: Any,
) -> None:
    hole = make(Blackhole, "127.0.0.1")
    good = make(Server, "127.0.0.2")
    # As urllib3: the first address gets the whole connect timeout, then the next is tried.
    conn, took = timed_dial(
        Hosts(NAME, hole.addr, good.addr), timeout=0.5, happy_eyeballs_delay=None
    )
    assert peer(conn) == good.addr
    assert took >= 0.45
    conn.close()


def test_one_address_is_dialed_as_before(make: Any) -> None:
    good = make(Server, "127.0.0.2")
    conn = dial(Hosts(NAME, good.addr), timeout=3.0)
    assert peer(conn) == good.addr
    assert conn.sock is not None and conn.sock.gettimeout() == 3.0
    conn.close()
    hole = make(Blackhole, "127.0.0.3")
    with pytest.raises(ConnectTimeoutError, match=r"timed out. \(connect timeout=0.3\)"):
        dial(Hosts(NAME, hole.addr), timeout=0.3)


def test_no_address_is_a_new_connection_error() -> None:
    with pytest.raises(NewConnectionError, match="getaddrinfo returns an empty list"):
        dial(Hosts(NAME))


# --- address families -------------------------------------------------------------------------


@needs_ipv6
def test_ipv6_first_and_ipv4_refused(make: Any) -> None:
    good6 = make(Server, "::1")
    refused4 = make(Refused, "127.0.0.1")
    conn = dial(Hosts(NAME, good6.addr, refused4.addr))
    assert conn.sock is not None and conn.sock.family == socket.AF_INET6
    assert peer(conn) == good6.addr[:2]
    conn.close()


@needs_ipv6
def test_a_hanging_ipv6_address_falls_back_to_ipv4(make: Any) -> None:
    hole6 = make(Blackhole, "::1")
    good4 = make(Server, "127.0.0.1")
    conn, took = timed_dial(Hosts(NAME, hole6.addr, good4.addr))
    assert peer(conn) == good4.addr
    assert took < 2.5
    conn.close()


@needs_ipv6
def test_the_families_are_interleaved_before_racing(make: Any) -> None:
    # [v6, v6, v4] is tried as [v6, v4, v6] (RFC 8305 section 4): the IPv4 server's attempt
    # starts after one delay (0.6 s), before the 1.1 s timeout; in the given order it would
    # start after two, past the timeout.
    holes6 = [make(Blackhole, "::1"), make(Blackhole, "::1")]
    good4 = make(Server, "127.0.0.1")
    conn = dial(
        Hosts(NAME, holes6[0].addr, holes6[1].addr, good4.addr),
        timeout=1.1,
        happy_eyeballs_delay=0.6,
    )
    assert peer(conn) == good4.addr
    conn.close()


# --- what every attempt gets --------------------------------------------------------------------


@needs_ipv6
def test_source_address_and_socket_options_apply_to_every_attempt(make: Any) -> None:
    hole = make(Blackhole, "127.0.0.1")
    good6 = make(Server, "::1")
    good4 = make(Server, "127.0.0.2")
    options = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    # An IPv4 source address: the IPv6 attempt cannot bind it and is skipped; the second
    # IPv4 address wins after the first hangs, from the source address, with the options.
    conn = dial(
        Hosts(NAME, hole.addr, good6.addr, good4.addr),
        source_address=("127.0.0.5", 0),
        socket_options=options,
    )
    assert peer(conn) == good4.addr
    sock = conn.sock
    assert sock is not None
    assert sock.getsockname()[0] == "127.0.0.5"
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    conn.close()
    good4.wait_idle(1)
    assert good4.peers[0][0] == "127.0.0.5"
    assert good6.accepted == 0
    # No address of a family the source address can bind: the bind's error is the last one.
    with pytest.raises(NewConnectionError) as info:
        dial(Hosts(NAME, good6.addr, good6.addr), source_address=("127.0.0.5", 0))
    assert isinstance(info.value.__cause__, OSError)
    assert good6.accepted == 0


# --- no leak on any path ------------------------------------------------------------------------


class _Interrupt:
    """A socket option that raises KeyboardInterrupt when the ``n``th attempt sets it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt
        return iter((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))


def test_an_interrupt_while_starting_an_attempt_closes_every_socket(make: Any) -> None:
    holes = [make(Blackhole, f"127.0.0.{i}") for i in (1, 2, 3)]
    before = fds()
    options = [_Interrupt(3)]
    with pytest.raises(KeyboardInterrupt):
        dial(
            Hosts(NAME, *(h.addr for h in holes)), socket_options=options, happy_eyeballs_delay=0.02
        )
    assert fds() - before == set()


def test_an_interrupt_while_waiting_closes_every_socket(make: Any) -> None:
    holes = [make(Blackhole, f"127.0.0.{i}") for i in (1, 2, 3)]
    before = fds()

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.4)  # all three attempts are in flight by then
        with pytest.raises(KeyboardInterrupt):
            dial(Hosts(NAME, *(h.addr for h in holes)), timeout=10.0, happy_eyeballs_delay=0.05)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fds() - before == set()


# --- through the Session ------------------------------------------------------------------------


def test_a_session_gets_the_race_end_to_end(make: Any) -> None:
    hole = make(Blackhole, "127.0.0.1")
    good = make(Server, "127.0.0.2")
    resolver = Hosts(NAME, hole.addr, good.addr)
    events: list[Any] = []
    with fastpool.Session(resolver=resolver) as session:
        session.add_trace_hook("connect_done", events.append)
        start = time.monotonic()
        response = session.get(f"http://{NAME}:8080/", timeout=(10, 10))
        took = time.monotonic() - start
        assert (response.status_code, response.content) == (200, good.name)
        assert took < 2.5
        assert session.get(f"http://{NAME}:8080/again").content == good.name  # kept alive
    assert (good.accepted, good.requests) == (1, 2)
    [done] = events
    assert done["error"] is None and HAPPY_EYEBALLS_DELAY * 0.8 <= done["seconds"] < 2.5


def test_a_session_reports_every_address_refused_as_a_connection_error(make: Any) -> None:
    refused = [make(Refused, f"127.0.0.{i}") for i in (1, 2)]
    events: list[Any] = []
    with fastpool.Session(resolver=Hosts(NAME, *(r.addr for r in refused))) as session:
        session.add_trace_hook("connect_done", events.append)
        with pytest.raises(requests.ConnectionError, match="Connection refused"):
            session.get(f"http://{NAME}:8080/")
    assert isinstance(events[0]["error"], NewConnectionError)


def test_session_map_races_in_its_dial_workers(make: Any) -> None:
    hole = make(Blackhole, "127.0.0.1")
    good = make(Server, "127.0.0.2")
    urls = [f"http://{NAME}:8080/{i}" for i in range(8)]
    before = fds()
    with fastpool.Session(resolver=Hosts(NAME, hole.addr, good.addr)) as session:
        start = time.monotonic()
        results = list(session.map(urls, concurrency=4, timeout=(10, 10)))
        took = time.monotonic() - start
        assert [r.error for r in results] == [None] * len(urls)
        assert all(r.response.content == good.name for r in results)
    assert took < 5.0  # far from a connect timeout per dial
    assert 1 <= good.accepted <= 4 and good.requests == len(urls)
    good.wait_idle(good.accepted)
    assert fds() - before == set()


# --- against stock urllib3 ----------------------------------------------------------------------


@pytest.fixture
def name_resolves_to(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``name_resolves_to(*addrs)``: ``socket.getaddrinfo`` answers ``NAME`` with ``addrs`` (the
    default path of both libraries: stock urllib3 takes no resolver)."""
    return functools.partial(resolve_name, monkeypatch, NAME)


def _get(manager: Any, url: str) -> tuple[Any, float]:
    start = time.monotonic()
    try:
        outcome: Any = manager.request("GET", url).data
    except Exception as e:  # noqa: BLE001 - the outcome is compared
        outcome = e
    took = time.monotonic() - start
    manager.clear()  # its kept connection would hold the server's thread until teardown
    return outcome, took


def _managers(connect: float) -> list[Any]:
    timeout = urllib3.Timeout(connect=connect, read=10)
    return [
        urllib3.PoolManager(retries=False, timeout=timeout),
        fastpool.PoolManager(retries=False, timeout=timeout),
    ]


def test_like_urllib3_a_host_with_one_good_address(make: Any, name_resolves_to: Any) -> None:
    good = make(Server, "127.0.0.2")
    name_resolves_to(good.addr)
    stock, ours = (_get(m, f"http://{NAME}:8080/")[0] for m in _managers(5))
    assert stock == ours == good.name
    assert good.accepted == 2


def test_like_urllib3_every_address_refused(make: Any, name_resolves_to: Any) -> None:
    refused = [make(Refused, f"127.0.0.{i}") for i in (1, 2)]
    name_resolves_to(*(r.addr for r in refused))
    stock, ours = (_get(m, f"http://{NAME}:8080/")[0] for m in _managers(5))
    assert type(stock) is type(ours) is NewConnectionError
    assert type(stock.__cause__) is type(ours.__cause__) is ConnectionRefusedError
    assert str(stock).split(": ", 1)[1] == str(ours).split(": ", 1)[1]


def test_unlike_urllib3_a_hanging_first_address_costs_the_delay_not_the_timeout(
    make: Any, name_resolves_to: Any
) -> None:
    # docs/differences.md, docs/dns.md: racing is on by default, for getaddrinfo's answers too.
    hole = make(Blackhole, "127.0.0.1")
    good = make(Server, "127.0.0.2")
    name_resolves_to(hole.addr, good.addr)
    (stock, stock_took), (ours, ours_took) = (
        _get(m, f"http://{NAME}:8080/") for m in _managers(0.7)
    )
    assert stock == ours == good.name
    assert stock_took >= 0.65  # urllib3 waits out the connect timeout on the first address
    assert ours_took < 0.6  # fastpool starts the second attempt after 250 ms


def test_with_a_delay_of_none_like_urllib3_a_hanging_first_address_costs_the_timeout(
    make: Any, name_resolves_to: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HTTPConnection, "happy_eyeballs_delay", None)
    hole = make(Blackhole, "127.0.0.1")
    good = make(Server, "127.0.0.2")
    name_resolves_to(hole.addr, good.addr)
    (stock, stock_took), (ours, ours_took) = (
        _get(m, f"http://{NAME}:8080/") for m in _managers(0.5)
    )
    assert stock == ours == good.name
    assert stock_took >= 0.45 and ours_took >= 0.45
