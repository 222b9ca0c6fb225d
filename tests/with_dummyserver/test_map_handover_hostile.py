"""Hostile servers against the map loop's handover to ``urlopen`` (``take_head_ahead``, and a
socket left non-blocking when the loop read the whole answer).

The loop parses the head (and, when it can, reads the whole body) and ``urlopen`` takes it
from there: the head is not parsed again, and the socket of a whole answer gets no timeout.
Each test here attacks one of the two: interim heads, bytes after the body, framings a parser
may misjudge, answers cut at every byte, GET and HEAD on one connection, the timeouts of the
next request on a socket a whole answer left non-blocking, streamed bodies, stale keep-alive,
TLS that ends without close_notify. Each answer is compared with what one request (fastpool's
``request``/``get``, and stock urllib3 where it is the oracle) makes of the same bytes, and
every test checks that no slot or descriptor is left behind and that the pool serves again.

Real sockets on 127.0.0.1 only; every server and wait is bounded by a few seconds. Run on both
backends (``FASTPOOL_NO_EXTENSIONS=1`` for the pure twins).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import urllib3
from dummyserver.hostile import HostileConn, response
from urllib3.exceptions import ReadTimeoutError
from urllib3.util import Timeout

import fastpool
import fastpool.connection
from fastpool.connection import UNSET_TIMEOUT

pytestmark = [pytest.mark.usefixtures("clean_environment")]

T = 2.0  # the read timeout of requests that are not about timeouts
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


# --- helpers -----------------------------------------------------------------------------------
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def keep_alive(*answers: Any, hold: float = 2.0) -> Callable[[HostileConn], None]:
    """A keep-alive script: the k-th request on a connection gets ``answers[k]`` (bytes sent in
    one write, or ``callable(conn, request_head)``); after the last it reads on (and answers
    nothing) for up to ``hold`` seconds, then closes."""

    def script(conn: HostileConn) -> None:
        conn.sock.settimeout(hold)
        for answer in answers:
            head = conn.read_request()
            if head is None:
                return
            if callable(answer):
                answer(conn, head)
            else:
                conn.send(answer)
        while conn.read_request() is not None:
            pass

    return script


def by_target(answers: dict[str, Any], hold: float = 2.0) -> Callable[[HostileConn], None]:
    """A keep-alive script answering each request by its target's first path segment:
    ``answers["/x"]`` (bytes, or ``callable(conn, head)``: return True to end the connection)
    for ``/x...``; a HEAD request gets the head of its answer only."""

    def script(conn: HostileConn) -> None:
        conn.sock.settimeout(hold)
        while True:
            head = conn.read_request()
            if head is None:
                return
            target = head.split(b" ", 2)[1].decode()
            key = "/" + target.lstrip("/").split("/", 1)[0].split("?", 1)[0]
            answer = answers[key]
            if callable(answer):
                if answer(conn, head):
                    return
                continue
            if head.startswith(b"HEAD "):
                answer = answer[: answer.index(b"\r\n\r\n") + 4]
            conn.send(answer)

    return script


def map_one(manager: Any, method: str, url: str, light: bool = False, **kw: Any) -> Any:
    """One item through ``PoolManager.map``: its response or its error."""
    kw.setdefault("timeout", T)
    kw.setdefault("retries", False)
    (result,) = list(manager.map([(method, url, kw)], light=light))
    return result.response if result.error is None else result.error


def one(manager: Any, method: str, url: str, **kw: Any) -> Any:
    """One request through ``manager.request``: its response or its error."""
    kw.setdefault("timeout", T)
    kw.setdefault("retries", False)
    try:
        return manager.request(method, url, **kw)
    except Exception as e:  # noqa: BLE001 - compared
        return e


def outcome(answer: Any) -> Any:
    """What a caller sees: (status, body, sorted headers) or the error's type name."""
    if isinstance(answer, BaseException):
        return type(answer).__name__
    headers = sorted((k.lower(), v) for k, v in answer.headers.items())
    return (answer.status, answer.data, headers)


def pool_of(manager: Any, url: str) -> Any:
    return manager.connection_from_url(url)


def assert_pool_clean(manager: Any, url: str) -> None:
    pool = pool_of(manager, url)
    assert pool.pool.in_use == 0, "a slot was left checked out"


def idle_connection(pool: Any) -> Any:
    """The pool's one idle connection (the queue's own checkout: no look at the socket)."""
    assert pool.pool.idle == 1
    conn = pool.pool.checkout(0)
    pool.pool.checkin(conn)
    assert conn.sock is not None
    return conn


# --- 1. interim (1xx) heads --------------------------------------------------------------------
INTERIMS = {
    "100": b"HTTP/1.1 100 Continue\r\n\r\n",
    "103": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    "several": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n",
    "lf-only": b"HTTP/1.1 100 Continue\n\nHTTP/1.1 103 Early Hints\nLink: </a>\n\n",
}
FINALS = {
    "length": response(b"final body", headers=["X-Final: yes"]),
    "chunked": CHUNKED + b"5\r\nfinal\r\n5\r\n body\r\n0\r\n\r\n",
    "empty": response(b""),
}


@pytest.mark.parametrize("final", sorted(FINALS))
@pytest.mark.parametrize("interim", sorted(INTERIMS))
@pytest.mark.parametrize("how", ["map", "light", "one"])
def test_interim_heads_before_the_final_one(
    hostile: Any, interim: str, final: str, how: str
) -> None:
    """The loop's head is the final one (the interim heads' bytes counted in its size), its
    body read whole from after it, and the next request on that connection is answered by its
    own answer: as one request reads the same bytes."""
    first = INTERIMS[interim] + FINALS[final]
    server = hostile(keep_alive(first, response(b"second")))
    url = server.url + "/"
    with fastpool.PoolManager(maxsize=1) as manager:
        if how == "one":
            answers = [one(manager, "GET", url), one(manager, "GET", url)]
        else:
            light = how == "light"
            answers = [map_one(manager, "GET", url, light), map_one(manager, "GET", url, light)]
        assert [a.status for a in answers] == [200, 200], answers
        assert answers[0].data == (b"" if final == "empty" else b"final body")
        assert answers[1].data == b"second"
        assert server.connections == 1  # the connection served both
        assert_pool_clean(manager, url)


@pytest.mark.parametrize("split", [24, 25, 26, 27, 30, 60])
def test_interim_heads_split_mid_line_ending(hostile: Any, split: int) -> None:
    """An interim head and the final one cut in two writes at (and around) the interim head's
    blank line: the loop waits for the final head, and parses it once."""
    data = INTERIMS["100"] + FINALS["length"]

    def answer(conn: HostileConn, head: bytes) -> None:
        conn.send(data[:split])
        conn.sleep(0.02)
        conn.send(data[split:])

    server = hostile(keep_alive(answer, response(b"second")))
    url = server.url + "/"
    with fastpool.PoolManager(maxsize=1) as manager:
        first = map_one(manager, "GET", url)
        second = map_one(manager, "GET", url)
        assert (first.status, first.data, second.data) == (200, b"final body", b"second")
        assert server.connections == 1
        assert_pool_clean(manager, url)


def test_only_interim_heads_then_the_end(hostile: Any) -> None:
    """Interim heads and then the end of the stream: no final answer, the same error as one
    request's, and the connection is not pooled."""
    server = hostile([("read",), ("send", INTERIMS["several"]), ("close",)])
    url = server.url + "/"
    with fastpool.PoolManager() as manager:
        mapped = outcome(map_one(manager, "GET", url))
        light = outcome(map_one(manager, "GET", url, light=True))
        plain = outcome(one(manager, "GET", url))
        # (an IncompleteResponseError inside urllib3's "Connection aborted." shape)
        assert mapped == light == plain == "ProtocolError"
        assert_pool_clean(manager, url)
        assert pool_of(manager, url).pool.idle == 0


def test_101_without_upgrade_is_final_and_ends_the_connection(hostile: Any) -> None:
    """A 101 without Upgrade: a final answer with no body (as http.client reads it) whose
    connection is never reused (the socket speaks another protocol now)."""
    server = hostile(keep_alive(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", response(b"no")))
    url = server.url + "/"
    with fastpool.PoolManager(maxsize=1) as manager:
        first = map_one(manager, "GET", url)
        assert (first.status, first.data) == (101, b"")
        assert pool_of(manager, url).pool.idle == 0  # closed, not pooled
        second = map_one(manager, "GET", url)
        assert (second.status, second.data) == (101, b"")  # a new connection's first answer
        assert server.connections == 2
        assert_pool_clean(manager, url)


# --- 2. bytes after the body -------------------------------------------------------------------
AFTER_BODY = {
    "pipelined": response(b"first") + response(b"INJECTED"),
    "garbage": response(b"first") + b"garbage that is no answer",
    "chunked-then-answer": CHUNKED + b"5\r\nfirst\r\n0\r\n\r\n" + response(b"INJECTED"),
    "head-then-body": b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nINJECTED",
    "204-with-body": b"HTTP/1.1 204 No Content\r\n\r\n" + response(b"INJECTED"),
    "304-with-length": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\n\r\n"
    + response(b"INJECTED"),
}


@pytest.mark.parametrize("delay", [0.0, 0.03])
@pytest.mark.parametrize("case", sorted(AFTER_BODY))
@pytest.mark.parametrize("how", ["map", "light", "one", "stock"])
def test_bytes_after_the_answer_are_never_the_next_answer(
    hostile: Any, case: str, delay: float, how: str
) -> None:
    """An answer followed by bytes nobody asked for (in the same write, or 30 ms later): the
    next request must get its own answer, never those bytes (stock urllib3, the oracle, drops
    or never reads them too)."""
    extra_at = {
        "pipelined": len(response(b"first")),
        "garbage": len(response(b"first")),
        "chunked-then-answer": len(CHUNKED) + len(b"5\r\nfirst\r\n0\r\n\r\n"),
        "head-then-body": len(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"),
        "204-with-body": len(b"HTTP/1.1 204 No Content\r\n\r\n"),
        "304-with-length": len(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\n\r\n"),
    }[case]
    data = AFTER_BODY[case]

    def first(conn: HostileConn, head: bytes) -> bool:
        if delay:
            conn.send(data[:extra_at])
            conn.sleep(delay)
            conn.send(data[extra_at:])
        else:
            conn.send(data)
        return False

    server = hostile(by_target({"/first": first, "/second": response(b"second")}))
    method = "HEAD" if case == "head-then-body" else "GET"
    manager: Any = (
        urllib3.PoolManager(maxsize=1) if how == "stock" else fastpool.PoolManager(maxsize=1)
    )
    with manager:
        for _ in range(2):
            if how in ("map", "light"):
                answer = map_one(manager, method, server.url + "/first", how == "light")
            else:
                answer = one(manager, method, server.url + "/first")
            assert not isinstance(answer, BaseException), answer
            time.sleep(delay * 3)  # the late bytes have come
            if how in ("map", "light"):
                second = map_one(manager, "GET", server.url + "/second", how == "light")
            else:
                second = one(manager, "GET", server.url + "/second")
            assert not isinstance(second, BaseException), second
            assert (second.status, second.data) == (200, b"second")
        if how != "stock":
            assert_pool_clean(manager, server.url)


# --- 3. framings a parser may misjudge ---------------------------------------------------------
FRAMINGS = {
    "head-claims-length": (
        "HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    ),
    "head-claims-chunked": (
        "HEAD",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    "204-with-length": ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"),
    "304-with-length": ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    "length-and-chunked": (
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"5\r\nhello\r\n0\r\n\r\n",
    ),
    "conflicting-lengths": (
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
    ),
    "repeated-length": (
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ),
    "length-list": ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
    "trailers": ("GET", CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY-Trailer: 2\r\n\r\n"),
    "extensions": ("GET", CHUNKED + b'2;a=b\r\nhe\r\n3 ; c="d;e"\r\nllo\r\n0;last\r\n\r\n'),
    "zero-length": ("GET", response(b"")),
    "http10-keep-alive": (
        "GET",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
    ),
    "http10-chunked": (
        "GET",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    "connection-close": ("GET", response(b"hello", headers=["Connection: close"])),
    "obs-fold": ("GET", b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello"),
}


@pytest.mark.parametrize("case", sorted(FRAMINGS))
def test_framings_as_one_request_reads_them(hostile: Any, case: str) -> None:
    """Each framing through ``map`` (plain and light) and one request: the same answer (or
    error), the same connections dialed for a second request, and no slot left behind."""
    method, data = FRAMINGS[case]
    results = {}
    for how in ("map", "light", "one"):
        server = hostile(keep_alive(data, response(b"second")))
        url = server.url + "/"
        with fastpool.PoolManager(maxsize=1) as manager:
            if how == "one":
                first, second = one(manager, method, url), one(manager, "GET", url)
            else:
                light = how == "light"
                first = map_one(manager, method, url, light)
                second = map_one(manager, "GET", url, light)
            results[how] = (outcome(first), outcome(second), server.connections)
            assert_pool_clean(manager, url)
        server.stop()
    assert results["map"] == results["one"] == results["light"], results


# --- 4. answers cut at every byte, and trickled -----------------------------------------------
CUT_ANSWERS = {
    "length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
    "chunked": CHUNKED + b"3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n",
    "interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "lf-only": b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
}


@pytest.mark.parametrize("case", sorted(CUT_ANSWERS))
@pytest.mark.parametrize("how", ["map", "light", "stream"])
def test_answers_cut_at_every_byte(hostile: Any, case: str, how: str) -> None:
    """The answer in two writes 10 ms apart, cut at each byte in turn (``/<cut>``), two
    requests a connection: every answer whole and right, every connection reused."""
    data = CUT_ANSWERS[case]

    def answer(conn: HostileConn, head: bytes) -> bool:
        cut = int(head.split(b" ", 2)[1].split(b"/")[2])
        conn.send(data[:cut])
        conn.sleep(0.01)
        conn.send(data[cut:])
        return False

    server = hostile(by_target({"/cut": answer}))
    items = [
        ("GET", f"{server.url}/cut/{cut}", {"timeout": T, "preload_content": how != "stream"})
        for cut in range(1, len(data))
        for _ in range(2)
    ]
    with fastpool.PoolManager(maxsize=8) as manager:
        results = list(manager.map(items, concurrency=8, light=how == "light"))
        bodies = []
        for result in results:
            assert result.error is None, (result.request, result.error)
            response_ = result.response
            bodies.append(response_.read() if how == "stream" else response_.data)
            if how == "stream":
                response_.release_conn()
        assert bodies == [b"hello"] * len(items)
        assert_pool_clean(manager, server.url)
        if how != "stream":  # a streamed body holds its connection until it is read
            assert server.connections <= 8


@pytest.mark.parametrize("case", ["length", "chunked", "interim"])
def test_an_answer_trickled_a_byte_at_a_time(hostile: Any, case: str) -> None:
    """One byte every 3 ms with a read timeout of 0.5 s (counted from the last byte, not the
    first): the answer comes whole, and the next one on the same connection too."""
    data = CUT_ANSWERS[case]

    def drip(conn: HostileConn, head: bytes) -> None:
        conn.send(data, 1, 0.003)

    server = hostile(keep_alive(drip, drip))
    url = server.url + "/"
    with fastpool.PoolManager(maxsize=1) as manager:
        for _ in range(2):
            answer = map_one(manager, "GET", url, timeout=0.5)
            assert not isinstance(answer, BaseException), answer
            assert answer.data == b"hello"
        assert server.connections == 1
        assert_pool_clean(manager, url)


CLOSE_AFTER_HEAD = {
    "length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
    "length-part": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
    "chunked": CHUNKED,
    "chunked-part": CHUNKED + b"5\r\nhello\r\n",
    "chunked-no-trailer-end": CHUNKED + b"5\r\nhello\r\n0\r\n",
    "close-delimited": b"HTTP/1.1 200 OK\r\n\r\nhello",
    "no-body": b"HTTP/1.1 204 No Content\r\n\r\n",
    "head-cut": b"HTTP/1.1 200 OK\r\nContent-Len",
}


@pytest.mark.parametrize("case", sorted(CLOSE_AFTER_HEAD))
def test_a_server_that_closes_right_after_the_head(hostile: Any, case: str) -> None:
    """The server closes after (part of) the answer: map, light and one request see the same
    answer or error; nothing is left checked out, and the pool serves the next request."""
    data = CLOSE_AFTER_HEAD[case]

    def cut(conn: HostileConn, head: bytes) -> bool:
        conn.send(data)
        return True

    results = {}
    for how in ("map", "light", "one"):
        server = hostile(by_target({"/cut": cut, "/ok": response(b"ok")}))
        with fastpool.PoolManager(maxsize=1) as manager:
            url = server.url + "/cut"
            if how == "one":
                answer = one(manager, "GET", url)
            else:
                answer = map_one(manager, "GET", url, how == "light")
            results[how] = outcome(answer)
            assert_pool_clean(manager, server.url)
            after = map_one(manager, "GET", server.url + "/ok")
            assert (after.status, after.data) == (200, b"ok")
        server.stop()
    assert results["map"] == results["light"] == results["one"], results


# --- 5. GET and HEAD on one connection ---------------------------------------------------------
@pytest.mark.parametrize("light", [False, True])
def test_get_and_head_take_turns_on_one_connection(
    hostile: Any, parses: list[str], light: bool
) -> None:
    """GET and HEAD to one host take turns on one connection, in one map (concurrency 1) and
    map by map: a HEAD answer that claims a length has no body, the GET after it gets its own,
    and no head is parsed twice (nor with the other method)."""
    body = b"x" * 300
    server = hostile(by_target({"/r": response(body, headers=["X-Kind: r"])}))
    url = server.url + "/r"
    methods = ["GET", "HEAD", "HEAD", "GET", "HEAD", "GET", "GET", "HEAD"]
    with fastpool.PoolManager(maxsize=1) as manager:
        results = list(
            manager.map([(m, url, {"timeout": T}) for m in methods], concurrency=1, light=light)
        )
        for method in methods:
            answer = map_one(manager, method, url, light)
            results.append(type("R", (), {"response": answer, "error": None})())
        datas = [r.response.data for r in results]
        assert datas == [body if m == "GET" else b"" for m in methods * 2]
        assert {r.response.headers["Content-Length"] for r in results} == {"300"}
        assert server.connections == 1
        assert parses == []
        assert_pool_clean(manager, url)


def test_a_head_answer_with_a_body_then_a_get(hostile: Any) -> None:
    """A server that answers HEAD with a body (the bytes of a forged answer): the GET after it
    on that host never reads them as its answer; the HEAD's connection is not reused."""
    forged = response(b"FORGED")

    def head_with_body(conn: HostileConn, head: bytes) -> bool:
        if head.startswith(b"HEAD "):
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(forged) + forged)
        else:
            conn.send(response(b"real"))
        return False

    server = hostile(by_target({"/r": head_with_body}))
    url = server.url + "/r"
    with fastpool.PoolManager(maxsize=1) as manager:
        results = list(manager.map([("HEAD", url), ("GET", url)], concurrency=1))
        assert [r.error for r in results] == [None, None]
        assert [r.response.data for r in results] == [b"", b"real"]
        assert server.connections == 2
        assert_pool_clean(manager, url)


# --- 6. timeouts after a whole answer ----------------------------------------------------------
def stall_script(stall: float = 2.5) -> Callable[[HostileConn], None]:
    """``/ok`` is answered at once; ``/stall`` never (the server holds the connection
    ``stall`` seconds); ``/half`` gets half a body and then nothing; a HEAD gets a head that
    claims a length."""

    def stall_(conn: HostileConn, head: bytes) -> bool:
        conn.sleep(stall)
        return True

    def half(conn: HostileConn, head: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        conn.sleep(stall)
        return True

    def chalf(conn: HostileConn, head: bytes) -> bool:
        conn.send(CHUNKED + b"5\r\nhello\r\n")
        conn.sleep(stall)
        return True

    return by_target(
        {
            "/ok": response(b"hello"),
            "/chunked": CHUNKED + b"5\r\nhello\r\n0\r\n\r\n",
            "/stall": stall_,
            "/half": half,
            "/chalf": chalf,
        }
    )


def _raises_within(
    call: Callable[[], Any], error: type[BaseException], low: float, high: float
) -> None:
    began = time.monotonic()
    with pytest.raises(error):
        call()
    waited = time.monotonic() - began
    assert low <= waited < high, waited


FOLLOWERS = [
    "map-stall",
    "map-half",
    "map-chalf",
    "map-stream-half",
    "urlopen",
    "urlopen-total",
    "thread",
]


@pytest.mark.parametrize("follower", FOLLOWERS)
@pytest.mark.parametrize(("method", "path"), [("GET", "/ok"), ("HEAD", "/ok"), ("GET", "/chunked")])
def test_the_next_request_after_a_whole_answer_keeps_its_timeouts(
    hostile: Any, method: str, path: str, follower: str
) -> None:
    """A whole answer leaves the socket non-blocking with no timeout set; the next request on
    that very connection (through map, ``urlopen`` in this thread or another) then meets a
    server that stalls: it times out after its own read timeout, never at once, never late,
    never with a stale answer; the connection is closed and the pool serves again."""
    server = hostile(stall_script())
    base = server.url
    with fastpool.PoolManager(maxsize=1) as manager:
        first = map_one(manager, method, base + path, timeout=7.0)
        assert not isinstance(first, BaseException), first
        pool = pool_of(manager, base)
        conn = idle_connection(pool)
        assert conn._sock_timeout is UNSET_TIMEOUT
        assert conn.sock.gettimeout() == 0.0

        def via_map(target: str, **kw: Any) -> Any:
            answer = map_one(manager, "GET", base + target, timeout=0.3, **kw)
            if isinstance(answer, BaseException):
                raise answer
            return answer.data if kw.get("preload_content", True) else answer.read()

        calls: dict[str, Callable[[], Any]] = {
            "map-stall": lambda: via_map("/stall"),
            "map-half": lambda: via_map("/half"),
            "map-chalf": lambda: via_map("/chalf"),
            "map-stream-half": lambda: via_map("/half", preload_content=False),
            "urlopen": lambda: pool.urlopen("GET", "/stall", timeout=0.3, retries=False),
            "urlopen-total": lambda: pool.urlopen(
                "GET", "/stall", timeout=Timeout(total=0.3), retries=False
            ),
        }
        if follower == "thread":
            box: list[BaseException] = []

            def in_thread() -> None:
                try:
                    _raises_within(
                        lambda: pool.urlopen("GET", "/half", timeout=0.3, retries=False).data,
                        ReadTimeoutError,
                        0.25,
                        1.5,
                    )
                except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
                    box.append(e)

            thread = threading.Thread(target=in_thread)
            thread.start()
            thread.join(5)
            assert not thread.is_alive()
            if box:
                raise box[0]
        else:
            _raises_within(calls[follower], ReadTimeoutError, 0.25, 1.5)
        assert server.connections == 1  # it met the stall on the connection the map used
        assert conn.sock is None  # the timed-out connection is closed, not pooled
        assert_pool_clean(manager, base)
        again = map_one(manager, "GET", base + "/ok")
        assert again.data == b"hello"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_session_get_after_a_whole_map_answer_keeps_its_timeouts(
    hostile: Any, method: str
) -> None:
    server = hostile(stall_script())
    base = server.url
    with fastpool.Session() as session:
        (result,) = list(session.map([requests.Request(method, base + "/ok")], timeout=7.0))
        assert result.error is None, result.error
        _raises_within(
            lambda: session.get(base + "/stall", timeout=(1.0, 0.3)),
            requests.exceptions.ReadTimeout,
            0.25,
            1.5,
        )
        assert server.connections == 1  # the stall met on the connection the map used
        (result,) = list(session.map([requests.Request(method, base + "/ok")], timeout=7.0))
        assert result.error is None, result.error
        (streamed,) = list(session.map([base + "/half"], timeout=0.3, stream=True))
        assert streamed.error is None, streamed.error
        _raises_within(
            lambda: streamed.response.content, requests.exceptions.ConnectionError, 0.25, 1.5
        )
        assert server.connections == 2
        assert session.pool_stats().total.in_use == 0
        assert session.get(base + "/ok", timeout=T).content == b"hello"


# --- 7. streamed bodies read later -------------------------------------------------------------
@pytest.mark.parametrize("path", ["/ok", "/chunked"])
def test_a_streamed_body_read_later_then_the_connection_reused(hostile: Any, path: str) -> None:
    """``preload_content=False`` through map: the body read after the map moved on, then the
    connection serves a map request and a blocking one, each with its own timeouts."""
    server = hostile(stall_script())
    base = server.url
    with fastpool.PoolManager(maxsize=1) as manager:
        results = list(
            manager.map(
                [("GET", base + path, {"preload_content": False, "timeout": 5.0})] * 3,
                concurrency=3,
            )
        )
        assert [r.error for r in results] == [None] * 3
        assert [r.response.read() for r in results] == [b"hello"] * 3
        for result in results:
            result.response.release_conn()
        assert_pool_clean(manager, base)
        after = map_one(manager, "GET", base + "/ok")
        assert after.data == b"hello"
        pool = pool_of(manager, base)
        _raises_within(
            lambda: pool.urlopen("GET", "/stall", timeout=0.3, retries=False),
            ReadTimeoutError,
            0.25,
            1.5,
        )
        assert_pool_clean(manager, base)


# --- 8. closing answers and stale keep-alive ---------------------------------------------------
def dropped_on_second(how: str) -> Callable[[HostileConn], None]:
    """The first connection answers one request and then, on the next, closes (``close``:
    FIN, ``reset``: RST, ``idle``: FIN while idle, 20 ms after the answer) without answering;
    a later connection answers ``first`` and then ``again``."""

    def script(conn: HostileConn) -> None:
        head = conn.read_request()
        if head is None:
            return
        conn.send(response(b"first"))
        if conn.number == 1:
            if how == "idle":
                conn.sleep(0.02)
                return
            if conn.read_request() is None:
                return
            if how == "reset":
                conn.reset()
            return
        conn.sock.settimeout(2.0)
        while conn.read_request() is not None:
            conn.send(response(b"again"))

    return script


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_stale_keep_alive_replays_only_what_one_request_replays(
    hostile: Any, method: str, how: str
) -> None:
    """A kept-alive connection the server drops as the next request arrives: a GET is sent
    once more on a new connection (Go's rule: GET, HEAD, OPTIONS, TRACE), the others never
    (with ``retries=False`` their error is one request's); map, light and one request alike."""
    body = None if method == "GET" else b"payload"
    results = {}
    for kind in ("map", "light", "one"):
        server = hostile(dropped_on_second(how))
        url = server.url + "/"
        with fastpool.PoolManager(maxsize=1) as manager:
            assert one(manager, method, url, body=body).data == b"first"
            if kind == "one":
                answer = one(manager, method, url, body=body)
            else:
                answer = map_one(manager, method, url, kind == "light", body=body)
            seen = [h.split(b" ", 1)[0] for h in server.requests]
            results[kind] = (outcome(answer), server.connections, len(seen))
            assert_pool_clean(manager, url)
        server.stop()
    assert results["map"] == results["light"] == results["one"], results
    if method == "GET":
        assert results["map"] == ((200, b"first", results["map"][0][2]), 2, 3)
    else:
        assert results["map"] == ("ProtocolError", 1, 2)  # never sent twice


def test_a_post_on_a_stale_connection_as_stock_urllib3(hostile: Any) -> None:
    """Stock urllib3 (the oracle) gives up on the POST too: the server sees it once."""
    server = hostile(dropped_on_second("close"))
    url = server.url + "/"
    with urllib3.PoolManager(maxsize=1) as manager:
        assert one(manager, "POST", url, body=b"payload").data == b"first"
        assert outcome(one(manager, "POST", url, body=b"payload")) == "ProtocolError"
    assert len(server.requests) == 2


@pytest.mark.parametrize("light", [False, True])
def test_closing_answers_are_not_pooled(hostile: Any, light: bool) -> None:
    """``Connection: close`` answers (whole, chunked, and HTTP/1.0 without keep-alive): each
    connection serves one answer, and no slot or descriptor is left behind."""
    answers = [
        response(b"hello", headers=["Connection: close"]),
        CHUNKED[:-2] + b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ]

    def script(conn: HostileConn) -> None:
        if conn.read_request() is not None:
            conn.send(answers[(conn.number - 1) % 3])
            conn.sleep(0.01)

    before = _fds()
    server = hostile(script)
    url = server.url + "/"
    with fastpool.PoolManager(maxsize=2) as manager:
        results = list(manager.map([("GET", url, {"timeout": T})] * 9, concurrency=3, light=light))
        assert [r.error for r in results] == [None] * 9
        assert [r.response.data for r in results] == [b"hello"] * 9
        assert server.connections == 9
        assert_pool_clean(manager, url)
        assert pool_of(manager, url).pool.idle == 0
    server.stop()  # its own sockets are this process's too
    assert _fds() <= before


# --- 9. TLS ending without close_notify --------------------------------------------------------
def ragged(data: bytes) -> list[tuple[Any, ...]]:
    """One request, ``data`` sent, then a TCP close with no TLS close_notify."""
    return [("read",), ("send", data), ("sleep", 0.02), ("close",)]


@pytest.mark.parametrize(
    "case",
    ["whole", "whole-chunked", "mid-length", "mid-chunked", "after-head", "no-trailer-end"],
)
def test_tls_ends_without_close_notify(hostile: Any, ca_bundle: str, case: str) -> None:
    """A ragged TLS end right after a whole answer (its connection is not reused: the next
    request dials) or in its middle (the error one request gets): map and light as one
    request; nothing left checked out, no descriptor kept."""
    data = {
        "whole": response(b"hello"),
        "whole-chunked": CHUNKED + b"5\r\nhello\r\n0\r\n\r\n",
        "mid-length": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        "mid-chunked": CHUNKED + b"5\r\nhello\r\n",
        "after-head": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        "no-trailer-end": CHUNKED + b"5\r\nhello\r\n0\r\n",
    }[case]
    results = {}
    for how in ("map", "light", "one"):
        before = _fds()
        server = hostile(ragged(data), tls=True)
        url = server.url + "/"
        with fastpool.PoolManager(maxsize=1, ca_certs=ca_bundle) as manager:
            outcomes = []
            for _ in range(2):
                if how == "one":
                    answer = one(manager, "GET", url)
                else:
                    answer = map_one(manager, "GET", url, how == "light")
                outcomes.append(outcome(answer))
                time.sleep(0.05)  # the close has come
            results[how] = (outcomes, server.connections)
            assert_pool_clean(manager, url)
        server.stop()
        assert _fds() <= before
    assert results["map"] == results["light"] == results["one"], results
    if case.startswith("whole"):
        assert results["map"][0] == [(200, b"hello", results["map"][0][0][2])] * 2
        assert results["map"][1] == 2


def test_tls_bytes_after_the_body_in_one_record(hostile: Any, ca_bundle: str) -> None:
    """A forged answer behind the body in the same TLS record (decrypted and buffered where a
    poll cannot see it): the next request never reads it."""
    forged = response(b"first") + response(b"FORGED")
    server = hostile(by_target({"/first": forged, "/second": response(b"second")}), tls=True)
    with fastpool.PoolManager(maxsize=1, ca_certs=ca_bundle) as manager:
        for light in (False, True):
            first = map_one(manager, "GET", server.url + "/first", light)
            second = map_one(manager, "GET", server.url + "/second", light)
            assert (first.data, second.data) == (b"first", b"second")
        assert_pool_clean(manager, server.url)


# --- 10. no leaks after failures ---------------------------------------------------------------
def test_failures_leave_no_slot_nor_descriptor(hostile: Any) -> None:
    """A map of answers that each fail a different way (cut short, malformed, reset, a read
    timeout, a bad chunk, a conflicting length) among good ones: every failure is yielded, no
    slot stays checked out, every descriptor is closed with the manager, and the pool serves
    again after."""

    def reset(conn: HostileConn, head: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
        conn.sleep(0.01)
        conn.reset()
        return True

    def stall(conn: HostileConn, head: bytes) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
        conn.sleep(1.0)
        return True

    def cut(conn: HostileConn, head: bytes) -> bool:
        conn.send(CHUNKED + b"5\r\nhel")
        return True

    before = _fds()
    server = hostile(
        by_target(
            {
                "/ok": response(b"ok"),
                "/reset": reset,
                "/stall": stall,
                "/cut": cut,
                "/bad": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "/malformed": b"HTTP/1.1 2OO OK\r\n\r\n",
                "/lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            }
        )
    )
    base = server.url
    paths = ["/ok", "/reset", "/ok", "/stall", "/cut", "/ok", "/bad", "/malformed", "/lengths"]
    with fastpool.PoolManager(maxsize=4) as manager:
        for light in (False, True):
            items = [("GET", base + p, {"timeout": 0.3, "retries": False}) for p in paths]
            results = list(manager.map(items, concurrency=4, light=light))
            by_path = {}
            for result in results:
                path = result.request[1][len(base) :]
                by_path.setdefault(path, set()).add(
                    result.response.data if result.error is None else type(result.error).__name__
                )
            assert by_path == {
                "/ok": {b"ok"},
                "/reset": {"ProtocolError"},
                "/stall": {"ReadTimeoutError"},
                "/cut": {"IncompleteResponseError"},
                "/bad": {"InvalidChunkError"},
                "/malformed": {"ProtocolError"},
                "/lengths": {"InvalidContentLengthError"},
            }, by_path
            assert_pool_clean(manager, base)
            assert map_one(manager, "GET", base + "/ok").data == b"ok"
    server.stop()  # its own sockets are this process's too
    assert _fds() <= before


# --- a connection dialed in place of a stale one is fresh: never replayed -----------------------
def fresh_one_fails(idle_close: bool) -> Callable[[HostileConn], None]:
    """Connection 1 answers once, then closes while idle 20 ms later (``idle_close``) or holds
    the connection; connection 2 reads the next request and closes without a byte of answer;
    any later one answers ``third``."""

    def script(conn: HostileConn) -> None:
        if conn.number == 1:
            if conn.read_request() is not None:
                conn.send(response(b"first"))
                conn.sleep(0.02 if idle_close else 1.0)
            return
        if conn.number == 2:
            conn.read_request()
            return
        conn.sock.settimeout(2.0)
        while conn.read_request() is not None:
            conn.send(response(b"third"))

    return script


@pytest.mark.parametrize("why", ["dropped", "idle_timeout"])
@pytest.mark.parametrize("how", ["map", "one"])
def test_a_fresh_connection_that_fails_is_not_replayed(hostile: Any, how: str, why: str) -> None:
    """The idle connection is closed at checkout (the server dropped it, or it passed
    ``idle_timeout``) and the slot dials anew in place. That new connection is not a reused
    one: if the server closes it before answering, the request fails as a fresh connection's
    does (as stock urllib3's with ``retries=False``), and the server sees it once."""
    server = hostile(fresh_one_fails(idle_close=why == "dropped"))
    url = server.url + "/"
    options = {"idle_timeout": 0.05} if why == "idle_timeout" else {}
    with fastpool.PoolManager(maxsize=1, **options) as manager:
        assert one(manager, "GET", url).data == b"first"
        time.sleep(0.15)  # the server closed the idle connection, or it expired
        answer = map_one(manager, "GET", url) if how == "map" else one(manager, "GET", url)
        assert_pool_clean(manager, url)
    sent = [h for h in server.requests if h.startswith(b"GET / ")]
    assert outcome(answer) == "ProtocolError", outcome(answer)
    assert len(sent) == 2  # the first request, and the second once
    assert server.connections == 2


def test_a_fresh_connection_that_fails_as_stock_urllib3(hostile: Any) -> None:
    """The oracle for the defect above: stock urllib3 sends the request once and fails."""
    server = hostile(fresh_one_fails(idle_close=True))
    url = server.url + "/"
    with urllib3.PoolManager(maxsize=1) as manager:
        assert one(manager, "GET", url).data == b"first"
        time.sleep(0.15)
        assert outcome(one(manager, "GET", url)) == "ProtocolError"
    assert server.connections == 2
    assert len(server.requests) == 2
