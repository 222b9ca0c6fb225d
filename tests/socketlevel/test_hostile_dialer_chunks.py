"""Hostile servers and networks against Happy Eyeballs (``fastpool/_dialer.py``, the race in
``HTTPConnection._dial``) and the chunk-piece reader (``HTTPResponse._read_chunk_piece``,
``ChunkedDecoder.feed_chunk``), each verdict compared with stock urllib3 on the same server.

Real sockets on loopback only. The dial tests use a duck-typed resolver, or replace
``socket.getaddrinfo`` for a made-up name (stock urllib3 takes no resolver), as
``test_happy_eyeballs.py`` does. Wall-clock bounds are loose: the machine is shared.
"""

from __future__ import annotations

import gzip
import http.client
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Callable

import pytest
import urllib3
from dummyserver.addresses import (
    Blackhole,
    Hosts,
    Server,
    closed_after,
    free_port,
    open_sockets,
    resolve_name,
)
from dummyserver.hostile import CHUNKED_HEAD, answer_then_close

import fastpool
from fastpool.connection import HTTPConnection

NAME = "hostile-dial.test"  # the made-up name the dial tests resolve


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    with closed_after() as things:
        yield things


# --- Happy Eyeballs with a fixed source port ----------------------------------------------------


def test_a_fixed_source_port_dials_the_addresses_in_turn(closing: list[Any]) -> None:
    # Only one socket can bind (address, port) at a time: a second attempt racing beside a
    # hanging first one failed with EADDRINUSE, and the dial timed out although the second
    # address answers. As urllib3 does, the addresses are tried in turn, each with the whole
    # connect timeout.
    hole = Blackhole("127.0.0.1")
    good = Server("127.0.0.2")
    closing += [hole, good]
    # sockets, not every descriptor: the server's connection thread opens a selector of its
    # own, which a loaded machine may close only after the wait below (a flake, seen in CI)
    before = open_sockets()
    source = ("127.0.0.9", free_port("127.0.0.9"))
    conn = HTTPConnection(NAME, 80, timeout=0.5, source_address=source)
    conn.resolver = Hosts(NAME, hole.addr, good.addr)
    start = time.monotonic()
    conn.connect()
    took = time.monotonic() - start
    assert conn.sock is not None
    assert conn.sock.getpeername() == good.addr
    assert conn.sock.getsockname() == source
    assert took >= 0.45  # the first address had the whole timeout, as in urllib3
    conn.close()
    deadline = time.monotonic() + 5
    while len(open_sockets() - before) and time.monotonic() < deadline:
        time.sleep(0.02)  # the server's side of the connection ends in its thread
    assert open_sockets() - before == set()
    # A source port of 0 still races: the second attempt starts after the attempt delay.
    conn = HTTPConnection(NAME, 80, timeout=5.0, source_address=("127.0.0.9", 0))
    conn.resolver = Hosts(NAME, hole.addr, good.addr)
    start = time.monotonic()
    conn.connect()
    assert time.monotonic() - start < 2.5
    assert conn.sock is not None and conn.sock.getpeername() == good.addr
    conn.close()


def test_like_urllib3_a_fixed_source_port_reaches_the_address_that_answers(
    closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    hole = Blackhole("127.0.0.1")
    good = Server("127.0.0.2")
    closing += [hole, good]
    resolve_name(monkeypatch, NAME, hole.addr, good.addr)
    outcomes = []
    for cls in (urllib3.PoolManager, fastpool.PoolManager):
        # each client its own source port: the other's closed connection holds its port
        # in TIME_WAIT
        source = ("127.0.0.9", free_port("127.0.0.9"))
        manager = cls(
            retries=False,
            timeout=urllib3.Timeout(connect=0.5, read=5),
            source_address=source,
        )
        try:
            outcomes.append(manager.request("GET", f"http://{NAME}:8080/").data)
        except Exception as e:  # noqa: BLE001 - the outcome is compared
            outcomes.append(e)
        finally:
            manager.clear()
        assert good.peers[-1] == source
    assert outcomes == [good.name, good.name]


# --- the chunk-piece reader: a body cut inside a chunk ------------------------------------------

#: A body cut short by the server's FIN: inside chunk data (at its start, within it, across
#: two pieces of 3), between the data and its CRLF, between the CR and the LF, and (the only
#: place urllib3 says "Response ended prematurely") after a whole chunk.
CUTS = {
    "no-data": b"5\r\n",
    "in-data": b"5\r\nhel",
    "in-second-chunk": b"5\r\nhello\r\n3\r\nab",
    "long-chunk": b"1000\r\n" + b"x" * 3000,
    "before-crlf": b"5\r\nhello",
    "between-cr-lf": b"5\r\nhello\r",
    "after-chunk": b"5\r\nhello\r\n",
}

READERS: dict[str, Callable[[Any], Any]] = {
    "stream()": lambda r: r.stream(),
    "stream(1)": lambda r: r.stream(1),
    "stream(3)": lambda r: r.stream(3),
    "stream(None)": lambda r: r.stream(None),
    "read_chunked()": lambda r: r.read_chunked(),
    "read_chunked(2)": lambda r: r.read_chunked(2),
    "stream(decode_content=False)": lambda r: r.stream(decode_content=False),
}


def _outcome(manager: Any, url: str, read: Callable[[Any], Any]) -> tuple[list[bytes], Any]:
    """The pieces read before the error, and the error (None if there was none)."""
    pieces: list[bytes] = []
    r = manager.request("GET", url, preload_content=False, retries=False, timeout=5)
    try:
        for piece in read(r):
            pieces.append(piece)  # noqa: PERF402 - each one kept as it comes, before an error
    except Exception as e:  # noqa: BLE001 - the outcome is compared
        return pieces, e
    return pieces, None


def _assert_released(manager: fastpool.PoolManager, idle: int = 0) -> None:
    """The slot is back; the connection closed (a broken body) or pooled (``idle``)."""
    total = manager.stats().total
    assert (total.in_use, total.idle) == (0, idle)


def _stock_and_ours(
    url: str, read: Callable[[Any], Any], idle: int = 0
) -> list[tuple[list[bytes], Any]]:
    """The ``_outcome`` of ``url`` through a new stock urllib3 manager, then through a new
    fastpool one, whose slot must be back after it (``_assert_released``)."""
    stock, ours = urllib3.PoolManager(), fastpool.PoolManager()
    try:
        outcomes = [_outcome(stock, url, read), _outcome(ours, url, read)]
        _assert_released(ours, idle)
    finally:
        stock.clear()
        ours.clear()
    return outcomes


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("cut", list(CUTS))
def test_like_urllib3_a_chunk_cut_short_is_a_protocol_error_with_its_incomplete_read(
    hostile: Any, cut: str, reader: str
) -> None:
    server = hostile(answer_then_close(CUTS[cut]))
    (stock_pieces, stock_error), (our_pieces, our_error) = _stock_and_ours(
        server.url, READERS[reader]
    )
    assert isinstance(stock_error, urllib3.exceptions.ProtocolError)
    assert isinstance(our_error, urllib3.exceptions.ProtocolError)
    assert our_error.args[0] == stock_error.args[0]
    if cut == "after-chunk":
        assert our_error.args == ("Response ended prematurely",)
    else:
        assert isinstance(our_error.args[1], http.client.IncompleteRead)
        assert repr(our_error.args[1]) == repr(stock_error.args[1])
    # urllib3 drops a chunk's data when its CRLF is cut; fastpool had handed it out already
    assert b"".join(stock_pieces) == b"".join(our_pieces)[: len(b"".join(stock_pieces))]


@pytest.mark.parametrize("cut", [c for c in CUTS if c != "after-chunk"])
def test_read_of_a_chunk_cut_short_carries_an_incomplete_read_as_urllib3s(
    hostile: Any, cut: str
) -> None:
    # urllib3's read() gets http.client's IncompleteRead (its count: the whole chunks read);
    # fastpool's counts the bytes read and says how many of the chunk are missing.
    server = hostile(answer_then_close(CUTS[cut]))
    stock, ours = urllib3.PoolManager(), fastpool.PoolManager()
    errors = []
    try:
        for manager in (stock, ours):
            with pytest.raises(urllib3.exceptions.ProtocolError) as info:
                manager.request("GET", server.url, retries=False, timeout=5)
            errors.append(info.value)
        _assert_released(ours)
    finally:
        stock.clear()
        ours.clear()
    for error in errors:
        assert isinstance(error.args[1], http.client.IncompleteRead)
        assert error.args[0].startswith("Connection broken: IncompleteRead(")


def test_a_gzip_body_cut_inside_a_chunk_is_a_protocol_error_as_urllib3s(hostile: Any) -> None:
    body = gzip.compress(b"hello world " * 400)
    head = CHUNKED_HEAD[:-2] + b"Content-Encoding: gzip\r\n\r\n"
    framed = b"%x\r\n" % len(body) + body[: len(body) // 2]
    server = hostile(answer_then_close(framed, head))

    def read(r: Any) -> Any:
        return r.stream(100, decode_content=True)

    (_, stock_error), (our_pieces, our_error) = _stock_and_ours(server.url, read)
    assert isinstance(stock_error, urllib3.exceptions.ProtocolError)
    assert isinstance(our_error, urllib3.exceptions.ProtocolError)
    assert isinstance(our_error.args[1], http.client.IncompleteRead)
    assert repr(our_error.args[1]) == repr(stock_error.args[1])
    assert b"".join(our_pieces) == (b"hello world " * 400)[: len(b"".join(our_pieces))]


def test_requests_reports_a_chunk_cut_short_as_stock_does(hostile: Any) -> None:
    import requests

    server = hostile(answer_then_close(CUTS["in-data"]))
    messages = []
    for session in (requests.Session(), fastpool.Session()):
        session.trust_env = False
        with session:
            r = session.get(server.url, stream=True, timeout=5)
            with pytest.raises(requests.exceptions.ChunkedEncodingError) as info:
                b"".join(r.iter_content(None))
            messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "IncompleteRead(3 bytes read, 2 more expected)" in messages[1]


# --- the chunk-piece reader: any amt ------------------------------------------------------------


@pytest.mark.parametrize("amt", [2**63 - 1, 2**63, 2**70])
def test_stream_with_an_amt_past_64_bits_reads_a_chunked_body_as_urllib3(
    hostile: Any, amt: int
) -> None:
    body = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    server = hostile(answer_then_close(body))
    results = _stock_and_ours(server.url, lambda r: r.stream(amt), idle=1)
    assert results[0] == results[1] == ([b"hello", b"abc"], None)


@pytest.mark.parametrize("limit", [2**63 - 1, 2**63, 2**70, -2, -(2**70)])
def test_feed_chunk_takes_any_int_limit(http11: ModuleType, limit: int) -> None:
    # The compiled twin took a C long long and raised OverflowError past 2**63 - 1.
    decoder = http11.ChunkedDecoder()
    assert decoder.feed_chunk(b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", limit) == b"hello"
    assert decoder.feed_chunk(b"", limit) == b"abc"
    assert decoder.feed_chunk(b"", limit) == b""
    assert decoder.done


def test_crlf_left_counts_the_crlf_after_a_chunk(http11: ModuleType) -> None:
    decoder = http11.ChunkedDecoder()
    assert (decoder.chunk_left, decoder.crlf_left) == (0, 0)
    # (method, input, what it gives, (chunk_left, crlf_left) after it)
    steps = [
        ("feed_chunk", b"5\r\nhel", b"hel", (2, 0)),
        ("feed_chunk", b"lo", b"lo", (0, 2)),
        ("feed_chunk", b"\r", b"", (0, 1)),
        ("feed_chunk", b"\n", b"", (0, 0)),
        ("feed", b"3\r\nabc", b"abc", (0, 2)),
    ]
    for method, data, given, left in steps:
        assert getattr(decoder, method)(data) == given, data
        assert (decoder.chunk_left, decoder.crlf_left) == left, data
    assert decoder.feed(b"\r\n0\r\n\r\n") == b""
    assert decoder.done and decoder.crlf_left == 0
