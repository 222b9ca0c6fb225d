"""Deliberate differences from stock urllib3 and requests in the end of a chunked body and in
the dial, each pinned side by side: the same bytes (or the same addresses) go to stock and to
fastpool, and both outcomes are asserted, so that a test fails if either side changes.
Each one is listed in ``docs/differences.md`` (and the dial's in ``docs/dns.md``):

- EOF after the last chunk (``0\\r\\n``) or inside the trailer section: stock returns the body,
  fastpool raises "Response ended prematurely" (the message is incomplete; Go's net/http errors
  too);
- a trailer section over 64 KiB (65,536 bytes with its blank line) is refused; stock reads
  and discards any number of trailer lines;
- the connect timeout bounds the whole Happy Eyeballs race: an address whose turn (250 ms
  after the one before, when that one hangs) comes after the timeout is never tried, where
  urllib3 gives each address the whole timeout in turn;
- a ``source_address`` that a socket of the target's family cannot bind (``socket.gaierror``
  from ``bind``) is a ``NewConnectionError``; urllib3 reports it as a ``NameResolutionError``
  for the target's name, which resolved.

Real sockets on loopback only; the dial tests replace ``socket.getaddrinfo`` for a made-up
name, as ``test_happy_eyeballs.py`` does (stock urllib3 takes no resolver).
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
import urllib3
from dummyserver.addresses import Blackhole, Server, closed_after, resolve_name
from dummyserver.hostile import answer_then_close
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

import fastpool
from fastpool.connection import HTTPConnection
from fastpool.exceptions import IncompleteResponseError, InvalidChunkError

NAME = "stock-differences.test"  # the made-up name the dial tests resolve


def _read(manager: Any, url: str) -> bytes:
    data: bytes = manager.request("GET", url, retries=False, timeout=5).data
    return data


def _stream(manager: Any, url: str) -> bytes:
    r = manager.request("GET", url, retries=False, timeout=5, preload_content=False)
    return b"".join(r.stream())


READERS: dict[str, Callable[[Any, str], bytes]] = {"read()": _read, "stream()": _stream}


def _outcome(read: Callable[[Any, str], bytes], manager: Any, url: str) -> Any:
    try:
        return read(manager, url)
    except Exception as e:  # noqa: BLE001 - the outcome is compared
        return e
    finally:
        manager.clear()


def _requests_outcome(session: requests.Session, url: str) -> Any:
    session.trust_env = False
    with session:
        try:
            return session.get(url, timeout=5).content
        except Exception as e:  # noqa: BLE001 - the outcome is compared
            return e


# --- EOF after the last chunk -------------------------------------------------------------------

#: The body ends (the server's FIN) after "5\r\nhello\r\n" and the start of the end of the
#: message: the last chunk, its line cut, a trailer line cut or whole, the blank line cut.
LAST_CHUNK_CUTS = {
    "after-the-last-chunk": b"5\r\nhello\r\n0\r\n",
    "inside-the-last-chunk-line": b"5\r\nhello\r\n0",
    "inside-a-trailer-line": b"5\r\nhello\r\n0\r\nX-T: 1",
    "after-a-trailer-line": b"5\r\nhello\r\n0\r\nX-T: 1\r\n",
    "inside-the-blank-line": b"5\r\nhello\r\n0\r\n\r",
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("cut", list(LAST_CHUNK_CUTS))
def test_unlike_stock_eof_after_the_last_chunk_is_an_incomplete_response(
    hostile: Any, cut: str, reader: str
) -> None:
    # docs/differences.md: without the blank line that ends the trailer section the message
    # is not complete (RFC 9112 7.1); http.client and urllib3's read_chunked stop at EOF there.
    server = hostile(answer_then_close(LAST_CHUNK_CUTS[cut]))
    ours = fastpool.PoolManager()
    stock = _outcome(READERS[reader], urllib3.PoolManager(), server.url)
    r = ours.request("GET", server.url, retries=False, timeout=5, preload_content=False)
    pieces: list[bytes] = []
    try:
        with pytest.raises(IncompleteResponseError) as info:
            if reader == "read()":
                pieces.append(r.read())
            else:
                pieces.extend(r.stream())
        total = ours.stats().total
        assert (total.in_use, total.idle) == (0, 0)  # released, and never pooled
    finally:
        ours.clear()
    assert stock == b"hello"
    assert isinstance(info.value, ProtocolError)
    assert info.value.args == ("Response ended prematurely",)
    # stream() had handed out the chunk before the end was found missing
    assert pieces == ([b"hello"] if reader == "stream()" else [])


def test_unlike_stock_requests_eof_after_the_last_chunk_is_a_chunked_encoding_error(
    hostile: Any,
) -> None:
    server = hostile(answer_then_close(LAST_CHUNK_CUTS["after-the-last-chunk"]))
    stock = _requests_outcome(requests.Session(), server.url)
    ours = _requests_outcome(fastpool.Session(), server.url)
    assert stock == b"hello"
    assert isinstance(ours, requests.exceptions.ChunkedEncodingError)
    assert "Response ended prematurely" in str(ours)


def test_like_stock_a_whole_chunked_body_then_eof_is_read(hostile: Any) -> None:
    # the control: with the blank line, both read the body before the close
    server = hostile(answer_then_close(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"))
    outcomes = [
        _outcome(read, cls(), server.url)
        for read in READERS.values()
        for cls in (urllib3.PoolManager, fastpool.PoolManager)
    ]
    assert outcomes == [b"hello"] * 4


# --- the size of the trailer section ------------------------------------------------------------


def _trailers(size: int) -> bytes:
    """A trailer section of exactly ``size`` bytes, its blank line included (8-byte lines)."""
    lines, rest = divmod(size - 2, 8)
    assert rest == 0 or rest >= 5
    last = b"X: " + b"v" * (rest - 5) + b"\r\n" if rest else b""
    section = b"X-T: v\r\n" * lines + last + b"\r\n"
    assert len(section) == size
    return section


TRAILER_SECTIONS = {
    "65536-bytes": 65536,  # the bound: accepted
    "65537-bytes": 65537,
    "9000-lines": 9000 * 8 + 2,
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("section", list(TRAILER_SECTIONS))
def test_unlike_stock_a_trailer_section_over_64_kib_is_refused(
    hostile: Any, section: str, reader: str
) -> None:
    # docs/differences.md: a bounded trailer section, as heads are bounded (max_head_bytes);
    # stock reads and discards trailer lines (each up to 64 KiB) without any total bound.
    size = TRAILER_SECTIONS[section]
    server = hostile(answer_then_close(b"5\r\nhello\r\n0\r\n" + _trailers(size)))
    stock = _outcome(READERS[reader], urllib3.PoolManager(), server.url)
    ours = _outcome(READERS[reader], fastpool.PoolManager(), server.url)
    assert stock == b"hello"
    if size <= 65536:
        assert ours == b"hello"
    else:
        assert isinstance(ours, InvalidChunkError)
        assert isinstance(ours, ProtocolError)
        assert ours.args == ("chunked trailers larger than max_trailer_bytes=65536 bytes",)


def test_unlike_stock_requests_refuses_a_trailer_section_over_64_kib(hostile: Any) -> None:
    server = hostile(answer_then_close(b"5\r\nhello\r\n0\r\n" + _trailers(9000 * 8 + 2)))
    stock = _requests_outcome(requests.Session(), server.url)
    ours = _requests_outcome(fastpool.Session(), server.url)
    assert stock == b"hello"
    assert isinstance(ours, requests.exceptions.ChunkedEncodingError)
    assert "max_trailer_bytes=65536" in str(ours)


# --- the dial -----------------------------------------------------------------------------------


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    with closed_after() as things:
        yield things


@pytest.fixture
def name_resolves_to(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``name_resolves_to(*addrs)``: ``socket.getaddrinfo`` answers ``NAME`` with the
    ``addrs``, in that order, for both libraries."""
    return functools.partial(resolve_name, monkeypatch, NAME)


def _get(cls: Any, connect: float, **kw: Any) -> tuple[Any, float]:
    """The outcome of one GET to ``NAME`` through a new manager, and how long it took."""
    manager = cls(retries=False, timeout=urllib3.Timeout(connect=connect, read=5), **kw)
    start = time.monotonic()
    try:
        outcome: Any = manager.request("GET", f"http://{NAME}:8080/").data
    except Exception as e:  # noqa: BLE001 - the outcome is compared
        outcome = e
    took = time.monotonic() - start
    manager.clear()
    return outcome, took


@pytest.mark.parametrize("holes", [1, 2])
def test_unlike_urllib3_an_address_whose_turn_comes_after_the_connect_timeout_is_not_tried(
    closing: list[Any], name_resolves_to: Any, holes: int
) -> None:
    # docs/differences.md, docs/dns.md: the connect timeout bounds the whole race, and
    # after a hanging address the next one starts 250 ms later. With 1 hanging address and a
    # 0.15 s timeout, or 2 and 0.3 s, the answering address's turn (0.25 s, 0.5 s) never comes.
    # urllib3 tries the addresses in turn, each with the whole connect timeout: it connects
    # to the last one after the timeout times the hanging ones.
    assert HTTPConnection.happy_eyeballs_delay == 0.25
    hanging = [Blackhole(f"127.0.0.{i + 1}") for i in range(holes)]
    good = Server("127.0.0.9")
    closing += [*hanging, good]
    name_resolves_to(*(h.addr for h in hanging), good.addr)
    timeout = round(0.15 * holes, 2)
    (stock, stock_took), (ours, ours_took) = (
        _get(cls, timeout) for cls in (urllib3.PoolManager, fastpool.PoolManager)
    )
    assert stock == good.name
    assert stock_took >= timeout * holes * 0.95
    assert type(ours) is ConnectTimeoutError
    assert f"Connection to {NAME} timed out. (connect timeout={timeout})" in str(ours)
    assert timeout * 0.95 <= ours_took < 1.5
    assert good.accepted == 1  # stock's connection only


def test_like_urllib3_a_connect_timeout_past_the_attempt_delay_reaches_the_next_address(
    closing: list[Any], name_resolves_to: Any
) -> None:
    # the control: with a timeout longer than the attempt delay both connect, fastpool first
    hole = Blackhole("127.0.0.1")
    good = Server("127.0.0.9")
    closing += [hole, good]
    name_resolves_to(hole.addr, good.addr)
    (stock, stock_took), (ours, ours_took) = (
        _get(cls, 0.5) for cls in (urllib3.PoolManager, fastpool.PoolManager)
    )
    assert stock == ours == good.name
    assert stock_took >= 0.45
    assert 0.2 <= ours_took < 0.45


@pytest.mark.parametrize("race", [True, False], ids=["race", "in-turn"])
@pytest.mark.parametrize("addresses", [1, 2])
def test_unlike_urllib3_a_source_address_of_the_other_family_is_a_new_connection_error(
    closing: list[Any],
    name_resolves_to: Any,
    monkeypatch: pytest.MonkeyPatch,
    addresses: int,
    race: bool,
) -> None:
    # docs/differences.md: an IPv4 socket cannot bind "::1"; bind() raises socket.gaierror
    # (EAI_ADDRFAMILY), which urllib3 turns into a NameResolutionError for the target's name
    # (a subclass of NewConnectionError). The name resolved: fastpool reports the failed
    # connection, on the race (several addresses) and the one-at-a-time path alike.
    if not race:
        monkeypatch.setattr(HTTPConnection, "happy_eyeballs_delay", None)
    servers = [Server(f"127.0.0.{i + 2}") for i in range(addresses)]
    closing += servers
    name_resolves_to(*(s.addr for s in servers))
    (stock, _), (ours, _) = (
        _get(cls, 2, source_address=("::1", 0))
        for cls in (urllib3.PoolManager, fastpool.PoolManager)
    )
    assert type(stock) is NameResolutionError
    assert type(ours) is NewConnectionError
    for error in (stock, ours):
        assert isinstance(error.__cause__, socket.gaierror)
    gaierror = stock.__cause__
    assert str(stock).endswith(f"Failed to resolve '{NAME}' ({gaierror})")
    assert str(ours).endswith(f"Failed to establish a new connection: {gaierror}")
    assert str(ours.__cause__) == str(gaierror)
    assert [s.accepted for s in servers] == [0] * addresses


@pytest.mark.parametrize("race", [True, False], ids=["race", "in-turn"])
@pytest.mark.parametrize("busy", [False, True], ids=["not-on-this-machine", "port-in-use"])
def test_like_urllib3_a_source_address_that_cannot_be_bound_is_a_new_connection_error(
    closing: list[Any],
    name_resolves_to: Any,
    monkeypatch: pytest.MonkeyPatch,
    busy: bool,
    race: bool,
) -> None:
    # Any other bind failure is an OSError: NewConnectionError in both, with the same words.
    if not race:
        monkeypatch.setattr(HTTPConnection, "happy_eyeballs_delay", None)
    servers = [Server("127.0.0.2"), Server("127.0.0.3")]
    closing += servers
    name_resolves_to(*(s.addr for s in servers))
    if busy:
        holder = socket.socket()
        holder.bind(("127.0.0.9", 0))
        holder.listen(1)
        closing.append(holder)
        source = holder.getsockname()
    else:
        source = ("192.0.2.1", 0)  # TEST-NET-1: on no interface here
    (stock, _), (ours, _) = (
        _get(cls, 2, source_address=source) for cls in (urllib3.PoolManager, fastpool.PoolManager)
    )
    assert type(stock) is type(ours) is NewConnectionError
    assert type(stock.__cause__) is type(ours.__cause__) is OSError
    assert str(stock).split(": ", 1)[1] == str(ours).split(": ", 1)[1]
    assert [s.accepted for s in servers] == [0, 0]
