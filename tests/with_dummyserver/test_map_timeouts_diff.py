"""A differential sweep of timeouts: ``Session.map``, ``PoolManager.map`` and
``PoolManager.map(light=True)`` against the one-request path (``Session.get``,
``PoolManager.request``) and stock requests / urllib3 (the oracle), on the same servers.

Every timeout form (a number, ``(connect, read)``, ``Timeout(connect=, read=)``,
``Timeout(total=)``, ``Timeout(total=, read=)``, a pool's default, ``pool.timeout`` set later,
``socket.setdefaulttimeout``) meets a stall at each step: the TCP connect (a full backlog), the
TLS handshake (a server that never speaks TLS), before the first answer byte, mid-head,
mid-body (length and chunked), a body read later (``stream=True``, ``preload_content=False``,
``on_body``), a redirect's second hop, the keep-alive replay, the request's own send (a server
that reads nothing), and a trickle that keeps making progress. Each check: the exception's
class (and the timeout value urllib3 puts in its message), the time it took (within a loose
band: never at once, never the other timeout), no slot left checked out, and the pool serving
the next request.

Each client of a case runs in a thread of its own, at the same time as the others (so a case
costs one timeout, not one per client), with a manager or Session of its own. Loopback only;
every server and wait is bounded. Run on both backends (``FASTPOOL_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import functools
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import urllib3
from dummyserver.addresses import Blackhole
from dummyserver.hostile import HostileConn, response
from urllib3.util import Retry, Timeout

import fastpool

pytestmark = [pytest.mark.usefixtures("clean_environment")]

T = 0.25  # the timeout a case is about
LONG = 2.5  # the other timeout: never waited out when all is well
HOLD = 2.0  # how long a stalling server holds its connection (cut short at the test's end)
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

PM_KINDS = ("urllib3", "one", "map", "light")  # stock, PoolManager.request, map, map(light)
S_KINDS = ("requests", "get", "smap")  # stock, Session.get, Session.map
_UNSET: Any = object()


# --- servers -----------------------------------------------------------------------------------
def _hold(conn: HostileConn, head: bytes) -> bool:
    conn.sleep(HOLD)
    return True


def _answers() -> dict[str, Any]:
    """By path: bytes to send (keep-alive), or ``callable(conn, head)`` (True: end it)."""

    def then_hold(data: bytes) -> Callable[[HostileConn, bytes], bool]:
        def script(conn: HostileConn, head: bytes) -> bool:
            conn.send(data)
            conn.sleep(HOLD)
            return True

        return script

    def trickle(conn: HostileConn, head: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        conn.send(b"xxxxxx", 1, 0.1)  # a byte every 0.1 s: 0.5 s in all
        return False

    def head_trickle(conn: HostileConn, head: bytes) -> bool:
        conn.send(response(b"ok"), 6, 0.07)  # the head 6 bytes at a time, 0.07 s apart
        return False

    # For TRICKLE_T: pauses a ninth of it or less, for about one and a half times it in all.
    def long_trickle(conn: HostileConn, head: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n")
        conn.send(b"x" * 12, 1, 0.08)  # a byte every 0.08 s: 0.88 s at least
        return False

    def long_head_trickle(conn: HostileConn, head: bytes) -> bool:
        conn.send(response(b"ok"), 3, 0.07)  # the head 3 bytes at a time: 0.84 s at least
        return False

    return {
        "/ok": response(b"hello"),
        "/stall": _hold,
        "/midhead": then_hold(b"HTTP/1.1 200 OK\r\nContent-Le"),
        "/midbody": then_hold(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"),
        "/midchunk": then_hold(CHUNKED + b"5\r\nhello\r\n"),
        "/trickle": trickle,
        "/headtrickle": head_trickle,
        "/longtrickle": long_trickle,
        "/longheadtrickle": long_head_trickle,
        "/redirect": response(b"", "302 Found", ["Location: /stall"]),
    }


def by_path(conn: HostileConn) -> None:
    """A keep-alive script that answers each request by its path (see :func:`_answers`)."""
    answers = _answers()
    conn.sock.settimeout(HOLD + 1)
    while True:
        head = conn.read_request()
        if head is None:
            return
        path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
        answer = answers[path]
        if callable(answer):
            if answer(conn, head):
                return
        else:
            conn.send(answer)


@pytest.fixture
def server(hostile: Any) -> Any:
    return hostile(by_path)


class RawServer:
    """A loopback listener that runs ``handler(number, sock, stopping)`` on each connection it
    accepts, in a thread of its own (``number``: 1, 2, ... in accept order). ``stop()`` sets
    ``stopping`` (handlers wait on it), closes everything and joins the threads."""

    def __init__(self, handler: Callable[[int, socket.socket, threading.Event], None]) -> None:
        self.handler = handler
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.errors: list[str] = []
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            self.accepted += 1
            sock.settimeout(HOLD + 1)
            self.socks.append(sock)
            thread = threading.Thread(target=self._run, args=(self.accepted, sock), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, number: int, sock: socket.socket) -> None:
        try:
            self.handler(number, sock, self.stopping)
        except (OSError, ssl.SSLError):
            pass
        except Exception as e:  # noqa: BLE001 - reported by the fixture
            self.errors.append(repr(e))
        finally:
            sock.close()

    def stop(self) -> None:
        self.stopping.set()
        for sock in list(self.socks):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def make(handler: Callable[[int, socket.socket, threading.Event], None]) -> RawServer:
        started.append(RawServer(handler))
        return started[-1]

    yield make
    for one in started:
        one.stop()
    assert not [e for one in started for e in one.errors]


@pytest.fixture(scope="module")
def blackhole() -> Iterator[Blackhole]:
    """An address whose connect hangs (its backlog full): shared, nothing there changes."""
    hole = Blackhole()
    yield hole
    hole.close()


def _read_head(sock: Any) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return None
        data += piece
    return data


# --- the clients -------------------------------------------------------------------------------
@dataclass
class Outcome:
    kind: str
    error: str | None = None  # the exception's class name
    message: str = ""
    elapsed: float = 0.0
    data: bytes | None = None
    #: fastpool's: no slot left checked out, and the next request answered (None: not known)
    clean: bool | None = None


@dataclass
class Case:
    """One request, as each client makes it."""

    path: str
    timeout: Any = _UNSET  # _UNSET: none passed (the pool's, or requests' None)
    stream: bool = False
    kw: dict[str, Any] = field(default_factory=dict)  # more request arguments (PoolManager)
    manager: dict[str, Any] = field(default_factory=dict)  # PoolManager(**manager)
    #: ``setup(manager, url)`` before the request (e.g. a pool's timeout set afterwards)
    setup: Callable[[Any, str], None] | None = None


def pm_attempt(kind: str, base: str, case: Case, then: str | None) -> Outcome:
    """``case`` through one PoolManager client: stock urllib3, ``request``, ``map`` or
    ``map(light=True)``; a fresh manager each."""
    out = Outcome(kind)
    url = base + case.path
    kw: dict[str, Any] = {"retries": False, **case.kw}
    if case.timeout is not _UNSET:
        kw["timeout"] = case.timeout
    if case.stream:
        kw["preload_content"] = False
    cls = urllib3.PoolManager if kind == "urllib3" else fastpool.PoolManager
    manager = cls(**case.manager)
    try:
        if case.setup is not None:
            case.setup(manager, url)
        start = time.monotonic()
        try:
            if kind in ("urllib3", "one"):
                answer = manager.request("GET", url, **kw)
            else:
                (result,) = list(manager.map([("GET", url, kw)], light=kind == "light"))
                if result.error is not None:
                    raise result.error
                answer = result.response
            out.data = answer.read() if case.stream else answer.data
        except Exception as e:  # noqa: BLE001 - compared
            out.error, out.message = type(e).__name__, str(e)
        out.elapsed = time.monotonic() - start
        if kind != "urllib3":
            out.clean = manager.stats().total.in_use == 0
            if then is not None:
                again = manager.request("GET", then, timeout=LONG, retries=False)
                out.clean = out.clean and again.data == b"hello"
    finally:
        manager.clear()
    return out


def s_attempt(kind: str, base: str, case: Case, then: str | None) -> Outcome:
    """``case`` through one Session client: stock requests, ``Session.get`` or
    ``Session.map``; a fresh Session each."""
    out = Outcome(kind)
    url = base + case.path
    timeout = None if case.timeout is _UNSET else case.timeout
    session = requests.Session() if kind == "requests" else fastpool.Session()
    with session:
        start = time.monotonic()
        try:
            if kind == "smap":
                (result,) = list(session.map([url], timeout=timeout, stream=case.stream))
                if result.error is not None:
                    raise result.error
                answer = result.response
            else:
                answer = session.get(url, timeout=timeout, stream=case.stream)
            out.data = answer.content
        except Exception as e:  # noqa: BLE001 - compared
            out.error, out.message = type(e).__name__, str(e)
        out.elapsed = time.monotonic() - start
        if kind != "requests":
            out.clean = session.pool_stats().total.in_use == 0
            if then is not None:
                out.clean = out.clean and session.get(then, timeout=LONG).content == b"hello"
    return out


def parallel(calls: dict[Any, Callable[[], Any]]) -> dict[Any, Any]:
    """Each call at once, in a thread of its own: its result by its key (the first exception
    is raised here)."""
    results: dict[Any, Any] = {}
    failures: list[BaseException] = []

    def run(key: Any) -> None:
        try:
            results[key] = calls[key]()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            failures.append(e)

    threads = [threading.Thread(target=run, args=(key,)) for key in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    if failures:
        raise failures[0]
    return results


def sweep_calls(
    base: str,
    cases: dict[str, Case],
    kinds: tuple[str, ...],
    attempt: Callable[[str, str, Case, str | None], Outcome],
    then: str | None = "/ok",
) -> dict[tuple[str, str], Callable[[], Outcome]]:
    """Every case through every client (light reads every body whole: not a streamed one)."""
    follow = None if then is None else base + then
    return {
        (name, kind): functools.partial(attempt, kind, base, case, follow)
        for name, case in cases.items()
        for kind in kinds
        if not (kind == "light" and case.stream)
    }


def sweep(
    base: str,
    cases: dict[str, Case],
    kinds: tuple[str, ...],
    attempt: Callable[[str, str, Case, str | None], Outcome],
    then: str | None = "/ok",
) -> dict[tuple[str, str], Outcome]:
    """Every case through every client, all at once."""
    return parallel(sweep_calls(base, cases, kinds, attempt, then))


def sweep_both(
    base: str,
    pm_cases: dict[str, Case],
    s_cases: dict[str, Case],
    then: str | None = "/ok",
) -> tuple[dict[tuple[str, str], Outcome], dict[tuple[str, str], Outcome]]:
    """The PoolManager cases and the Session cases, all at once."""
    calls = {
        ("pm", *key): call
        for key, call in sweep_calls(base, pm_cases, PM_KINDS, pm_attempt, then).items()
    }
    calls.update(
        {
            ("s", *key): call
            for key, call in sweep_calls(base, s_cases, S_KINDS, s_attempt, then).items()
        }
    )
    results = parallel(calls)
    pm = {key[1:]: o for key, o in results.items() if key[0] == "pm"}
    s = {key[1:]: o for key, o in results.items() if key[0] == "s"}
    return pm, s


_VALUE = re.compile(r"\((read|connect) timeout=([^)]*)\)")


def timeout_in(message: str) -> tuple[str, float] | None:
    """The ``(read timeout=X)`` or ``(connect timeout=X)`` of an error's message."""
    found = _VALUE.search(message)
    if found is None:
        return None
    return found.group(1), float(found.group(2))


def same_timeout(got: tuple[str, float] | None, want: tuple[str, float] | None) -> bool:
    """The same kind of timeout and about the same value: never more, and less only by what a
    connect may take (a ``total`` leaves the read what the connect left of it, and a loaded
    machine took 0.1 s to connect on loopback, stock requests included)."""
    if got is None or want is None:
        return got is want
    return got[0] == want[0] and -0.2 < got[1] - want[1] < 0.05


def in_band(elapsed: float, expected: float) -> bool:
    """Ended after about ``expected`` seconds: not at once, not the other timeout."""
    return expected * 0.8 - 0.05 <= elapsed <= expected * 3 + 0.5


def check(
    outcomes: dict[tuple[str, str], Outcome],
    name: str,
    error: str | dict[str, str] | None,
    expected: float,
    value: tuple[str, float] | None | object = _UNSET,
) -> None:
    """Every client of case ``name`` ended with ``error`` (by client kind when a dict, stock's
    class names differ for requests) after about ``expected`` seconds, with the timeout
    ``value`` in the message (_UNSET: stock's), every fastpool pool clean."""
    mine = {kind: o for (case, kind), o in outcomes.items() if case == name}
    stock = mine.get("urllib3") or mine.get("requests")
    for kind, o in mine.items():
        want = error.get(kind, error.get("*")) if isinstance(error, dict) else error
        assert o.error == want, (name, o)
        assert in_band(o.elapsed, expected), (name, o)
        if value is not _UNSET:
            assert same_timeout(timeout_in(o.message), value), (name, o)  # type: ignore[arg-type]
        elif stock is not None:
            assert same_timeout(timeout_in(o.message), timeout_in(stock.message)), (name, o, stock)
        assert o.clean in (None, True), ("a slot leaked or the pool does not serve", name, o)


def _set_pool_timeout(timeout: Any) -> Callable[[Any, str], None]:
    def setup(manager: Any, url: str) -> None:
        manager.connection_from_url(url).timeout = timeout

    return setup


# --- 1. the read side: before the first byte, mid-head, mid-body, a body read later ----------
READ_FORMS: dict[str, dict[str, Any]] = {
    "number": {"timeout": T},
    "read-shorter": {"timeout": Timeout(connect=LONG, read=T)},
    "total": {"timeout": Timeout(total=T)},
    "total-and-read": {"timeout": Timeout(total=LONG, read=T)},
    "pool-default": {"manager": {"timeout": Timeout(connect=LONG, read=T)}},
    "pool-timeout-set-later": {"setup": _set_pool_timeout(Timeout(connect=LONG, read=T))},
}
WHERE = ("/stall", "/midhead", "/midbody", "/midchunk")


def _read_side_cases(forms: dict[str, dict[str, Any]]) -> dict[str, Case]:
    cases = {f"{form}{path}": Case(path, **kw) for form, kw in forms.items() for path in WHERE}
    for form, kw in forms.items():
        for path in ("/midbody", "/midchunk"):
            cases[f"{form}{path}-later"] = Case(path, stream=True, **kw)
    return cases


def _check_read_side(outcomes: dict[tuple[str, str], Outcome], cases: dict[str, Case]) -> None:
    for name in cases:
        # a head's timeout names its value; a body's is "Read timed out." (urllib3's words)
        value = None if ("body" in name or "chunk" in name) else ("read", T)
        check(outcomes, name, "ReadTimeoutError", T, value)


@pytest.mark.parametrize("forms", [["number", "read-shorter", "total"], ["total-and-read",
                         "pool-default", "pool-timeout-set-later"]], ids=["call", "pool"])  # fmt: skip
def test_pool_manager_read_side_stalls(server: Any, forms: list[str]) -> None:
    """Each timeout form (given to the request, or the pool's) against each stall on the read
    side; the request's own read, mid-head and mid-body, and a body read later."""
    cases = _read_side_cases({form: READ_FORMS[form] for form in forms})
    _check_read_side(sweep(server.url, cases, PM_KINDS, pm_attempt), cases)


def test_pool_manager_read_side_stalls_with_the_sockets_default_timeout(server: Any) -> None:
    """``socket.setdefaulttimeout``: the pool's default timeout (urllib3's DEFAULT_TIMEOUT)."""
    cases = _read_side_cases({"socket-default": {}})
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(T)
    try:
        outcomes = sweep(server.url, cases, PM_KINDS, pm_attempt)
    finally:
        socket.setdefaulttimeout(previous)
    _check_read_side(outcomes, cases)


SESSION_FORMS: dict[str, Any] = {
    "number": T,
    "tuple": (LONG, T),
    "urllib3-timeout": Timeout(connect=LONG, read=T),
    "total": Timeout(total=T),
}


def test_session_read_side_stalls(server: Any) -> None:
    cases = {}
    for form, timeout in SESSION_FORMS.items():
        cases[f"{form}/stall"] = Case("/stall", timeout)
        cases[f"{form}/midhead"] = Case("/midhead", timeout)
        cases[f"{form}/midbody"] = Case("/midbody", timeout)
        cases[f"{form}/midchunk-later"] = Case("/midchunk", timeout, stream=True)
    outcomes = sweep(server.url, cases, S_KINDS, s_attempt)
    for name in cases:
        if name.endswith(("/stall", "/midhead")):
            check(outcomes, name, "ReadTimeout", T, ("read", T))
        else:
            # requests' iter_content turns urllib3's ReadTimeoutError in a body into this
            check(outcomes, name, "ConnectionError", T, None)


#: the read timeout of the trickle test: its trickles pause 0.08 s at most and last 0.84 s at
#: least. Forty-four exchanges run at once there, each beside a server thread that must wake
#: for each piece; on a loaded 2-core machine (CPython 3.9 beside another suite) stock urllib3
#: itself saw a 0.25 s gap in a trickle paced 0.07 s, so the margin is wide
TRICKLE_T = 0.6


def test_a_trickle_that_keeps_making_progress_is_not_cut(server: Any) -> None:
    """A read timeout is per read: a body (or head) that trickles for longer than the timeout,
    never pausing that long, ends whole, with ``total`` too (urllib3's total bounds each read
    with what the connect left of it, not the whole answer)."""
    pm_cases = {
        f"{path}-{name}-{stream}": Case(path, timeout, stream=stream)
        for path in ("/longtrickle", "/longheadtrickle")
        for name, timeout in (("number", TRICKLE_T), ("total", Timeout(total=TRICKLE_T)))
        for stream in (False, True)
    }
    s_cases = {
        f"{path}-{stream}": Case(path, (LONG, TRICKLE_T), stream=stream)
        for path in ("/longtrickle", "/longheadtrickle")
        for stream in (False, True)
    }
    for outcomes in sweep_both(server.url, pm_cases, s_cases, then=None):
        for (name, _), o in outcomes.items():
            assert o.error is None, (name, o)
            body = b"x" * 12 if name.startswith("/longtrickle") else b"ok"
            assert o.data == body, (name, o)
            assert TRICKLE_T < 0.8 <= o.elapsed < LONG, (name, o)  # outlasted the timeout
            assert o.clean in (None, True), (name, o)


# --- 2. the dial: TCP connect, TLS handshake --------------------------------------------------
def test_a_connect_that_hangs(blackhole: Blackhole) -> None:
    base = f"http://127.0.0.1:{blackhole.port}"
    pm_cases = {
        "number": Case("/", T),
        "connect-shorter": Case("/", Timeout(connect=T, read=LONG)),
        "total": Case("/", Timeout(total=T)),
        "total-and-connect": Case("/", Timeout(connect=T, total=LONG)),
        "pool-default": Case("/", manager={"timeout": Timeout(connect=T, read=LONG)}),
        "pool-timeout-set-later": Case("/", setup=_set_pool_timeout(Timeout(connect=T, read=LONG))),
        "socket-default": Case("/"),  # socket.setdefaulttimeout(T)
    }
    s_cases = {
        "number": Case("/", T),
        "tuple": Case("/", (T, LONG)),
        "urllib3-timeout": Case("/", Timeout(connect=T, read=LONG)),
    }
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(T)
    try:
        pm, s = sweep_both(base, pm_cases, s_cases, then=None)
    finally:
        socket.setdefaulttimeout(previous)
    for name in pm_cases:
        check(pm, name, "ConnectTimeoutError", T, ("connect", T))
    for name in s_cases:
        check(s, name, "ConnectTimeout", T, ("connect", T))


def test_a_tls_handshake_that_never_comes(server: Any) -> None:
    """A server that takes the TCP connection and never speaks TLS: the handshake is bounded
    by the connect timeout, a ReadTimeoutError naming it (urllib3's ``_validate_conn``)."""
    base = server.url.replace("http://", "https://")
    no_verify = {"cert_reqs": "CERT_NONE"}
    pm_cases = {
        "number": Case("/stall", T, manager=no_verify),
        "connect-shorter": Case("/stall", Timeout(connect=T, read=LONG), manager=no_verify),
        "total": Case("/stall", Timeout(total=T), manager=no_verify),
    }
    s_cases = {"number": Case("/stall", T), "tuple": Case("/stall", (T, LONG))}
    pm, s = sweep_both(base, pm_cases, s_cases, then=None)
    for name in pm_cases:
        check(pm, name, "ReadTimeoutError", T, ("read", T))
    for name in s_cases:
        check(s, name, "ReadTimeout", T, ("read", T))


# --- 3. a redirect's second hop, urllib3's Retry, the keep-alive replay ------------------------
def test_a_redirects_second_hop_stalls(server: Any) -> None:
    follow = Retry(total=None, connect=0, read=False, redirect=3)
    pm_cases = {
        "read-shorter": Case("/redirect", Timeout(connect=LONG, read=T), kw={"retries": follow}),
        "total": Case("/redirect", Timeout(total=T), kw={"retries": follow}),
    }
    s_cases = {"tuple": Case("/redirect", (LONG, T))}
    pm, s = sweep_both(server.url, pm_cases, s_cases)
    for name in pm_cases:
        check(pm, name, "ReadTimeoutError", T, ("read", T))
    check(s, "tuple", "ReadTimeout", T, ("read", T))


def test_a_retry_waits_its_timeout_again(server: Any, blackhole: Blackhole) -> None:
    """``Retry(read=1)``: two stalls of one read timeout each, then MaxRetryError (a connect
    retry likewise); the map's retry goes back to its runner and is timed as urlopen's."""
    read_once = Retry(total=None, connect=0, read=1, redirect=0)
    connect_once = Retry(total=None, connect=1, read=0, redirect=0)
    read = sweep_calls(
        server.url,
        {"read": Case("/stall", Timeout(connect=LONG, read=T), kw={"retries": read_once})},
        PM_KINDS,
        pm_attempt,
    )
    connect = sweep_calls(
        f"http://127.0.0.1:{blackhole.port}",
        {"connect": Case("/", Timeout(connect=T, read=LONG), kw={"retries": connect_once})},
        PM_KINDS,
        pm_attempt,
        then=None,
    )
    outcomes = parallel({**read, **connect})
    check(outcomes, "read", "MaxRetryError", 2 * T)
    check(outcomes, "connect", "MaxRetryError", 2 * T)


def _answer_once_then_drop(close_after: float) -> list[Callable[[HostileConn], None]]:
    """The first connection answers one request, reads the next and closes ``close_after``
    seconds later without an answer (the keep-alive race: fastpool sends it again on a new
    connection); later connections stall."""

    def first(conn: HostileConn) -> None:
        conn.sock.settimeout(HOLD + 1)
        if conn.read_request() is None:
            return
        conn.send(response(b"hello"))
        if conn.read_request() is None:
            return
        conn.sleep(close_after)

    def later(conn: HostileConn) -> None:
        conn.sock.settimeout(HOLD + 1)
        if conn.read_request() is not None:
            conn.sleep(HOLD)

    return [first, later]


def pm_attempt_on(manager: Any, kind: str, base: str, case: Case, method: str = "GET") -> Outcome:
    """``case`` through ``manager`` (its ``request``, ``map`` or ``map(light=True)``)."""
    out = Outcome(kind)
    kw: dict[str, Any] = {"retries": False, "timeout": case.timeout, **case.kw}
    start = time.monotonic()
    try:
        if kind in ("urllib3", "one"):
            out.data = manager.request(method, base + case.path, **kw).data
        else:
            items = [(method, base + case.path, kw)]
            (result,) = list(manager.map(items, light=kind == "light"))
            if result.error is not None:
                raise result.error
            out.data = result.response.data
    except Exception as e:  # noqa: BLE001 - compared
        out.error, out.message = type(e).__name__, str(e)
    out.elapsed = time.monotonic() - start
    if kind != "urllib3":
        out.clean = manager.stats().total.in_use == 0
    return out


def _second_request(
    base: str, kind: str, timeout: Any, manager_kw: dict[str, Any] | None = None
) -> Outcome:
    """A request, then a second one on its kept-alive connection: the second's outcome."""
    cls = urllib3.PoolManager if kind == "urllib3" else fastpool.PoolManager
    with cls(retries=False, maxsize=1, **(manager_kw or {})) as manager:
        assert manager.request("GET", base + "/").data == b"hello"
        return pm_attempt_on(manager, kind, base, Case("/", timeout))


def _replayed(hostile: Any, kinds: tuple[str, ...], timeout: Any, close_after: float) -> Any:
    """Each client's second request, the keep-alive race (a server of its own each)."""
    calls = {}
    for kind in kinds:
        server = hostile(_answer_once_then_drop(close_after))
        calls[kind] = functools.partial(_second_request, server.url, kind, timeout)
    return parallel(calls)


def test_the_replayed_request_gets_its_own_read_timeout(hostile: Any) -> None:
    """The keep-alive replay (docs/differences.md: stock raises at once instead) sends the
    request again on a new connection, which stalls: map waits the read timeout, as
    ``request`` does, not the connect timeout."""
    kinds = ("one", "map", "light")
    timeouts = {
        "read-shorter": Timeout(connect=LONG, read=T),
        "longer": Timeout(connect=0.1, read=2 * T),
    }
    outcomes = parallel(
        {
            form: functools.partial(_replayed, hostile, kinds, timeout, 0.05)
            for form, timeout in timeouts.items()
        }
    )
    for form, timeout in timeouts.items():
        expected = timeout.read_timeout
        for o in outcomes[form].values():
            assert o.error == "ReadTimeoutError", o
            assert same_timeout(timeout_in(o.message), ("read", expected)), o
            assert in_band(o.elapsed, expected + 0.05), o
            assert o.clean, o


def test_the_replayed_request_gets_what_total_left(hostile: Any) -> None:
    # The first attempt waits 0.3 s for an answer that never comes (the server closes);
    # request() then reads with total - 0.3 = 0.3 s; the map reads with 0.6 s again.
    outcomes = _replayed(hostile, ("one", "map", "light"), Timeout(total=0.6), 0.3)
    one = outcomes["one"]
    assert one.error == "ReadTimeoutError" and in_band(one.elapsed, 0.6), one
    for kind in ("map", "light"):
        o = outcomes[kind]
        assert o.error == "ReadTimeoutError", o
        assert o.clean, o
        assert abs(o.elapsed - one.elapsed) < 0.2, (o, one)  # 0.3 s late
        assert same_timeout(timeout_in(o.message), timeout_in(one.message)), (o, one)


# --- 4. deadlines with timeouts ----------------------------------------------------------------
def _pm_map_deadline(url: str, timeout: Any, deadline: float) -> tuple[str, float, bool]:
    with fastpool.PoolManager(retries=False, cert_reqs="CERT_NONE") as manager:
        start = time.monotonic()
        (result,) = list(manager.map([("GET", url, {"timeout": timeout})], deadline=deadline))
        took = time.monotonic() - start
        return type(result.error).__name__, took, manager.stats().total.in_use == 0


def _session_map_deadline(url: str, timeout: Any, deadline: float) -> tuple[str, float, bool]:
    with fastpool.Session() as session:
        session.verify = False
        start = time.monotonic()
        (result,) = list(session.map([url], timeout=timeout, deadline=deadline))
        took = time.monotonic() - start
        return type(result.error).__name__, took, session.pool_stats().total.in_use == 0


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_deadline_or_the_timeout_whichever_comes_first(
    server: Any, blackhole: Blackhole
) -> None:
    """A stall at the read, the connect or the TLS handshake, under a deadline shorter than the
    timeout (DeadlineExceeded at the deadline) or longer (the timeout's error at the
    timeout); every slot given back either way."""
    urls = {
        "read": server.url + "/stall",
        "connect": f"http://127.0.0.1:{blackhole.port}/",
        "tls": server.url.replace("http://", "https://") + "/stall",
    }
    calls = {}
    for first, (deadline, timeout) in {"deadline": (T, 3 * T), "timeout": (3 * T, T)}.items():
        for where, url in urls.items():
            calls[first, where, "pm"] = functools.partial(_pm_map_deadline, url, timeout, deadline)
            calls[first, where, "s"] = functools.partial(
                _session_map_deadline, url, timeout, deadline
            )
    results = parallel(calls)
    for (first, where, what), (error, took, clean) in results.items():
        if first == "deadline":
            want = "DeadlineExceeded"
        else:
            want = "Connect" if where == "connect" else "Read"
            want += "TimeoutError" if what == "pm" else "Timeout"
        assert error == want, (first, where, what, error)
        assert in_band(took, T), (first, where, what, took)
        assert clean, (first, where, what)


def test_a_deadline_with_a_body_for_on_body_that_stalls(server: Any) -> None:
    """The deadline covers an ``on_body`` body: a body stalled longer than the deadline and
    shorter than its read timeout ends at the deadline, what arrived handed over."""
    pieces: list[bytes] = []
    with fastpool.PoolManager(retries=False) as manager:
        start = time.monotonic()
        (result,) = list(
            manager.map(
                [("GET", server.url + "/midbody", {"timeout": 3 * T})],
                deadline=T,
                on_body=lambda request, response, piece: pieces.append(piece),
            )
        )
        took = time.monotonic() - start
        assert isinstance(result.error, fastpool.DeadlineExceeded), result
        assert in_band(took, T), took
        assert pieces == [b"hello"]
        assert manager.stats().total.in_use == 0
        assert manager.request("GET", server.url + "/ok").data == b"hello"


# --- 5. many at once, each with its own timeout ------------------------------------------------
MIXED = {
    "ok": ("/ok", T, None, 0.0),
    "stall-0.2": ("/stall", 0.2, "ReadTimeoutError", 0.2),
    "stall-0.45": ("/stall", Timeout(connect=LONG, read=0.45), "ReadTimeoutError", 0.45),
    "stall-total": ("/stall", Timeout(total=0.35), "ReadTimeoutError", 0.35),
    "midbody-0.3": ("/midbody", 0.3, "ReadTimeoutError", 0.3),
    "trickle": ("/trickle", T, None, 0.5),
    "midchunk-0.6": ("/midchunk", Timeout(connect=0.1, read=0.6), "ReadTimeoutError", 0.6),
}


def _mixed_map(base: str, light: bool) -> tuple[dict[str, tuple[float, Any]], bool]:
    given = {name: ("GET", f"{base}{path}?{name}", {"timeout": t})
             for name, (path, t, _, _) in MIXED.items()}  # fmt: skip
    by_item = {id(item): name for name, item in given.items()}
    ended: dict[str, tuple[float, Any]] = {}
    with fastpool.PoolManager(retries=False) as manager:
        start = time.monotonic()
        for result in manager.map(list(given.values()), light=light):
            ended[by_item[id(result.request)]] = (time.monotonic() - start, result)
        clean = manager.stats().total.in_use == 0
        clean = clean and manager.request("GET", base + "/ok").data == b"hello"
    return ended, clean


def test_each_request_of_one_map_ends_at_its_own_timeout(server: Any) -> None:
    """One map, requests with different timeouts and stalls: each ends at its own time, none
    held up by another's timer (the loop's one timer heap), the trickle not cut."""
    runs = parallel(
        {light: functools.partial(_mixed_map, server.url, light) for light in (False, True)}
    )
    for light, (ended, clean) in runs.items():
        for name, (_, _, error, expected) in MIXED.items():
            took, result = ended[name]
            got = None if result.error is None else type(result.error).__name__
            assert got == error, (light, name, result)
            assert expected * 0.8 - 0.05 <= took <= expected + 0.4, (light, name, took)
        assert clean, light


# --- 6. on_body, a pool's cap -----------------------------------------------------------------
def _on_body(base: str, what: str, connect: float, read: float) -> tuple[Any, float, list, bool]:
    pieces: list[bytes] = []

    def keep(request: Any, response: Any, piece: bytes) -> None:
        pieces.append(piece)

    url = base + "/midbody"
    start = time.monotonic()
    if what == "pm":
        with fastpool.PoolManager(retries=False) as manager:
            timeout = Timeout(connect=connect, read=read)
            (result,) = list(manager.map([("GET", url, {"timeout": timeout})], on_body=keep))
            took = time.monotonic() - start
            clean = manager.stats().total.in_use == 0
    else:
        with fastpool.Session() as session:
            (result,) = list(session.map([url], timeout=(connect, read), on_body=keep))
            took = time.monotonic() - start
            clean = session.pool_stats().total.in_use == 0
    return result, took, pieces, clean


def test_on_body_waits_the_read_timeout_between_pieces(server: Any) -> None:
    calls = {
        (what, connect, read): functools.partial(_on_body, server.url, what, connect, read)
        for what in ("pm", "session")
        for connect, read in ((LONG, T), (0.1, 2 * T))
    }
    for (what, _, read), (result, took, pieces, clean) in parallel(calls).items():
        # urllib3's error; Session.map's as iter_content raises it
        error = "ReadTimeoutError" if what == "pm" else "ConnectionError"
        assert type(result.error).__name__ == error, (what, read, result)
        assert in_band(took, read), (what, read, took)
        assert pieces == [b"hello"]
        assert clean


def test_a_wait_at_a_full_pool_ends_at_pool_timeout(server: Any) -> None:
    """Another holder has the pool's one connection (block=True): the map's request waits
    ``pool_timeout`` for it, as ``request`` does, and raises urllib3's EmptyPoolError."""
    with fastpool.PoolManager(retries=False, maxsize=1, block=True) as manager:
        held = manager.request("GET", server.url + "/midbody", preload_content=False)
        try:
            start = time.monotonic()
            (result,) = list(manager.map([("GET", server.url + "/ok", {"pool_timeout": T})]))
            took = time.monotonic() - start
            assert isinstance(result.error, urllib3.exceptions.EmptyPoolError), result
            assert in_band(took, T), took
            start = time.monotonic()
            with pytest.raises(urllib3.exceptions.EmptyPoolError):
                manager.request("GET", server.url + "/ok", pool_timeout=T)
            assert in_band(time.monotonic() - start, T)
        finally:
            held.release_conn()
        assert manager.stats().total.in_use == 0


# --- 7. found by this sweep and fixed: the send, a total after a slow dial, the replay ----
#: a request body larger than the socket buffers of loopback: a server that reads nothing
#: leaves its send blocked
BIG = 16 << 20


def _reads_nothing(number: int, sock: socket.socket, stopping: threading.Event) -> None:
    stopping.wait(HOLD)


def _post_attempt(kind: str, base: str, case: Case, then: str | None) -> Outcome:
    """A POST of ``BIG`` bytes through one PoolManager client."""
    cls = urllib3.PoolManager if kind == "urllib3" else fastpool.PoolManager
    with cls() as manager:
        upload = Case(case.path, case.timeout, kw={**case.kw, "body": b"x" * BIG})
        return pm_attempt_on(manager, kind, base, upload, "POST")


@pytest.mark.parametrize(
    ("connect", "read"), [(T, 1.5), (1.0, T)], ids=["connect-shorter", "read-shorter"]
)
def test_a_send_that_stalls_is_bounded_by_the_connect_timeout(
    raw_server: Callable[..., RawServer], connect: float, read: float
) -> None:
    server = raw_server(_reads_nothing)
    base = f"http://127.0.0.1:{server.port}"
    cases = {"upload": Case("/", Timeout(connect=connect, read=read))}
    outcomes = sweep(base, cases, PM_KINDS, _post_attempt, then=None)
    # stock: ProtocolError('Connection aborted.', TimeoutError('timed out')) after `connect`
    check(outcomes, "upload", "ProtocolError", connect, None)


def test_a_small_send_meets_the_read_timeout_not_the_connect_timeout(server: Any) -> None:
    """The ordinary case beside the stalled send above: a request with a body that goes out
    at once and then waits for its answer ends at the read timeout."""
    cases = {
        "read-shorter": Case("/stall", Timeout(connect=LONG, read=T), kw={"body": b"x" * 1000}),
    }
    outcomes = sweep(server.url, cases, PM_KINDS, pm_attempt)
    check(outcomes, "read-shorter", "ReadTimeoutError", T, ("read", T))


SLOW_HANDSHAKE = 0.5
TOTAL = 0.9


@pytest.fixture
def slow_tls(raw_server: Callable[..., RawServer], server_ssl_context: ssl.SSLContext) -> RawServer:
    """An HTTPS server that starts its TLS handshake ``SLOW_HANDSHAKE`` s after the connect,
    then answers ``/midbody`` with half a body and ``/stall`` with nothing."""

    def handler(number: int, sock: socket.socket, stopping: threading.Event) -> None:
        if stopping.wait(SLOW_HANDSHAKE):
            return
        tls = server_ssl_context.wrap_socket(sock, server_side=True)
        head = _read_head(tls)
        if head is not None and head.startswith(b"GET /midbody "):
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        stopping.wait(HOLD)
        tls.close()

    return raw_server(handler)


def _on_body_attempt(kind: str, base: str, case: Case, then: str | None) -> Outcome:
    """``case`` through PoolManager.map(on_body=...)."""
    out = Outcome(kind)
    with fastpool.PoolManager(retries=False, **case.manager) as manager:
        start = time.monotonic()
        (result,) = list(
            manager.map(
                [("GET", base + case.path, {"timeout": case.timeout})],
                on_body=lambda request, response, piece: None,
            )
        )
        out.elapsed = time.monotonic() - start
        if result.error is not None:
            out.error, out.message = type(result.error).__name__, str(result.error)
        out.clean = manager.stats().total.in_use == 0
    return out


def test_a_body_read_later_gets_what_total_left_after_a_slow_dial(
    slow_tls: RawServer, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # urllib3 and request(): read timeout = TOTAL - 0.5 s of handshake = 0.4 s, so the body
    # stall ends TOTAL after the start; the map's waits TOTAL again after the head (1.4 s).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    base = f"https://127.0.0.1:{slow_tls.port}"
    pm_case = Case("/midbody", Timeout(total=TOTAL), stream=True, manager={"ca_certs": ca_bundle})
    s_case = Case("/midbody", Timeout(total=TOTAL), stream=True)
    calls = sweep_calls(base, {"pm": pm_case}, ("urllib3", "one", "map"), pm_attempt, None)
    calls.update(sweep_calls(base, {"s": s_case}, S_KINDS, s_attempt, None))
    calls.update(sweep_calls(base, {"pm": pm_case}, ("on_body",), _on_body_attempt, None))
    outcomes = parallel(calls)
    for (name, _), o in outcomes.items():
        want = "ReadTimeoutError" if name == "pm" else "ConnectionError"
        assert o.error == want, o
        assert in_band(o.elapsed, TOTAL), o
        assert o.clean in (None, True), o
    for mine in ("map", "on_body", "smap"):
        o = outcomes["s" if mine == "smap" else "pm", mine]
        assert o.elapsed < TOTAL + 0.3, o  # 0.5 s late


def test_a_head_timeout_after_a_slow_dial_names_the_timeout_it_waited(
    slow_tls: RawServer, ca_bundle: str
) -> None:
    base = f"https://127.0.0.1:{slow_tls.port}"
    case = Case("/stall", Timeout(total=TOTAL), manager={"ca_certs": ca_bundle})
    outcomes = sweep(base, {"x": case}, PM_KINDS, pm_attempt, then=None)
    check(outcomes, "x", "ReadTimeoutError", TOTAL)  # the value: stock's, ~0.4


def _tls_once_then_mute(
    context: ssl.SSLContext,
) -> Callable[[int, socket.socket, threading.Event], None]:
    """Connection 1: TLS, answers one request, reads the next and closes without an answer
    (the keep-alive race). Later connections: TCP accepted, TLS never spoken."""

    def handler(number: int, sock: socket.socket, stopping: threading.Event) -> None:
        if number > 1:
            stopping.wait(HOLD)
            return
        tls = context.wrap_socket(sock, server_side=True)
        if _read_head(tls) is None:
            return
        tls.sendall(response(b"hello"))
        _read_head(tls)
        tls.close()

    return handler


def test_a_replays_handshake_timeout_is_the_same_error_in_map_and_request(
    raw_server: Callable[..., RawServer], server_ssl_context: ssl.SSLContext, ca_bundle: str
) -> None:
    calls = {}
    for kind in ("one", "map", "light"):
        server = raw_server(_tls_once_then_mute(server_ssl_context))
        calls[kind] = functools.partial(
            _second_request,
            f"https://127.0.0.1:{server.port}",
            kind,
            Timeout(connect=T, read=LONG),
            {"ca_certs": ca_bundle},
        )
    outcomes = parallel(calls)
    one = outcomes["one"]
    for o in outcomes.values():
        assert in_band(o.elapsed, T), o
        assert o.clean, o
    assert outcomes["map"].error == outcomes["light"].error == one.error, outcomes
