"""A chunked body streams in urllib3's pieces: one per chunk, or ``amt`` bytes of one.

urllib3's ``stream()`` and ``read_chunked()`` read a chunked body chunk by chunk: with ``amt``
None each chunk is one piece, however it arrived; with ``amt`` each chunk comes in pieces of
``amt`` bytes, its last one shorter; decoded, each piece is decoded (at most ``amt`` bytes a
step) and what it gives is yielded. fastpool used to yield what had arrived instead: chunks that
came in one segment were joined, a chunk split over segments came in parts. Here a raw-socket
server sends the same bytes, in one write or cut at chosen places, to stock urllib3 and to
fastpool, and both must yield the same pieces (the ChunkedDecoder's ``feed_chunk`` first, on
both backends).
"""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import requests
import urllib3
from dummyserver.server import Conn

import fastpool

# --- the wire -----------------------------------------------------------------------------------


def _pattern(size: int, seed: int) -> bytes:
    return bytes((seed + i * 7) % 251 for i in range(size))


def _frame(chunks: list[bytes], trailers: bytes = b"") -> bytes:
    """A chunked body of ``chunks`` (an extension on every other size line)."""
    parts = [
        b"%x%s\r\n%s\r\n" % (len(c), b";ext=1" if i % 2 else b"", c) for i, c in enumerate(chunks)
    ]
    return b"".join(parts) + b"0\r\n" + trailers + b"\r\n"


def _gzip_chunks(texts: list[bytes]) -> list[bytes]:
    """gzip ``texts`` one chunk each (a sync flush after each, so each decodes on arrival)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(t) + compressor.flush(zlib.Z_SYNC_FLUSH) for t in texts]
    out.append(compressor.flush())
    return [c for c in out if c]


LAYOUTS: dict[str, tuple[list[bytes], list[tuple[str, str]]]] = {
    # urllib3's test_stream_keepalive body
    "123x4": ([b"123"] * 4, []),
    # tiny, large, and one chunk larger than stream()'s default amt (64 KiB)
    "mixed": (
        [_pattern(n, i) for i, n in enumerate((1, 10, 3000, 2, 70000, 5))],
        [],
    ),
    "gzip": (
        _gzip_chunks([b"a" * 10, b"hello world " * 400, b"x" * 3, _pattern(20000, 3)]),
        [("Content-Encoding", "gzip")],
    ),
}


def _response(layout: str) -> bytes:
    chunks, headers = LAYOUTS[layout]
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    head += b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in headers)
    return head + b"\r\n" + _frame(chunks, b"X-Trailer: 1\r\n" if layout == "mixed" else b"")


def _cuts(data: bytes) -> list[int]:
    """Where the split sender cuts ``data``: right after the head, inside a size line, inside
    chunk data, between the CR and LF after chunk data, and before the last chunk."""
    body = data.index(b"\r\n\r\n") + 4
    first_lf = data.index(b"\n", body)
    second_size = data.index(b"\r\n", first_lf + 1) + 2  # after the first chunk's CRLF
    last = data.rindex(b"0\r\n")
    cuts = {body, body + 1, first_lf + 2, second_size - 1, last, (body + last) // 2}
    return sorted(c for c in cuts if 0 < c < len(data))


def _serve(send: str, layout: str):  # type: ignore[no-untyped-def]
    data = _response(layout)

    def handler(conn: Conn) -> None:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while conn.read_request() is not None:  # keep-alive: every request the same bytes
            if send == "one-write":
                conn.send(data)
                continue
            start = 0
            for cut in [*_cuts(data), len(data)]:
                conn.send(data[start:cut])
                start = cut
                time.sleep(0.01)  # each part its own segment, read before the next arrives

    return handler


# --- the readers --------------------------------------------------------------------------------

READERS = {
    "stream()": lambda r, dc: r.stream(decode_content=dc),
    "stream(None)": lambda r, dc: r.stream(None, decode_content=dc),
    "stream(7)": lambda r, dc: r.stream(7, decode_content=dc),
    "stream(1000)": lambda r, dc: r.stream(1000, decode_content=dc),
    "read_chunked()": lambda r, dc: r.read_chunked(decode_content=dc),
    "read_chunked(7)": lambda r, dc: r.read_chunked(7, decode_content=dc),
}

#: the amt each reader passes (None: a piece per chunk)
_AMT = {"stream(7)": 7, "stream(1000)": 1000, "read_chunked(7)": 7}
URLLIB3_VERSION = tuple(int(part) for part in urllib3.__version__.split(".")[:2])

CASES = [
    pytest.param(layout, reader, decode, id=f"{layout}-{reader}-{'decoded' if decode else 'raw'}")
    for layout in LAYOUTS
    for reader in READERS
    # decoding changes nothing for an identity body
    for decode in ((True, False) if layout == "gzip" else (True,))
]


def _pieces(manager: Any, url: str, reader: str, decode: bool) -> list[bytes]:
    r = manager.request("GET", url, preload_content=False, retries=False, timeout=10)
    pieces = list(READERS[reader](r, decode))
    r.release_conn()
    return pieces


@pytest.fixture
def managers() -> Iterator[tuple[Any, Any]]:
    stock, ours = urllib3.PoolManager(), fastpool.PoolManager()
    yield stock, ours
    stock.clear()
    ours.clear()


@pytest.mark.parametrize("send", ["one-write", "split"])
@pytest.mark.parametrize(("layout", "reader", "decode"), CASES)
def test_stream_yields_urllib3s_pieces(
    fault_server_factory, managers, send, layout, reader, decode
) -> None:
    server = fault_server_factory(_serve(send, layout))
    url = f"http://{server.host}:{server.port}/"
    stock, ours = managers
    expected = _pieces(stock, url, reader, decode)
    got = _pieces(ours, url, reader, decode)
    amt = _AMT.get(reader)
    if layout == "gzip" and decode and amt and URLLIB3_VERSION < (2, 6):
        # urllib3 before 2.6 decoded a whole raw piece at once, however much it gave; 2.6
        # bounds each decoded piece by amt, and fastpool keeps that on every release.
        chunks, _ = LAYOUTS[layout]
        assert all(len(p) <= amt for p in got)
        assert b"".join(got) == b"".join(expected) == zlib.decompress(b"".join(chunks), 31)
        return
    assert [len(p) for p in got] == [len(p) for p in expected]
    assert got == expected
    # the body is whole, and the connection was kept for the next request
    chunks, _ = LAYOUTS[layout]
    if not decode or layout != "gzip":
        assert b"".join(got) == b"".join(chunks)
    assert _pieces(ours, url, reader, decode) == expected
    assert server.connections == 2  # one for stock, one for fastpool


def test_stream_keepalive_one_write(fault_server_factory) -> None:
    # urllib3's test_stream_keepalive, with the four chunks of each response in one segment
    # (what a loaded machine made of its server's writes): a piece per chunk, one connection.
    server = fault_server_factory(_serve("one-write", "123x4"))
    with fastpool.HTTPConnectionPool(server.host, server.port) as pool:
        for _ in range(2):
            r = pool.request("GET", "/", preload_content=False, retries=False)
            assert list(r.stream()) == [b"123"] * 4
        assert pool.num_connections == 1
        assert pool.num_requests == 2


@pytest.mark.parametrize("send", ["one-write", "split"])
def test_requests_iter_content_pieces(fault_server_factory, send) -> None:
    # requests' iter_content(None) streams the raw response: a piece per chunk with both.
    server = fault_server_factory(_serve(send, "mixed"))
    url = f"http://{server.host}:{server.port}/"
    with requests.Session() as stock, requests.Session() as ours:
        ours.mount("http://", fastpool.HTTPAdapter())
        for size in (None, 1000):
            expected = list(stock.get(url, stream=True).iter_content(size))
            got = list(ours.get(url, stream=True).iter_content(size))
            assert [len(p) for p in got] == [len(p) for p in expected]
            assert got == expected


@pytest.mark.parametrize("send", ["one-write", "split"])
@pytest.mark.parametrize("layout", ["mixed", "gzip"])
def test_stream_then_read_keeps_the_rest(fault_server_factory, send, layout) -> None:
    # Input the chunk pieces left unread is the next read's: a few pieces, then read() for
    # the rest, then read(amt) and stream() mixed, give the whole body; the connection is kept.
    server = fault_server_factory(_serve(send, layout))
    with fastpool.HTTPConnectionPool(server.host, server.port, retries=False) as pool:
        whole = pool.request("GET", "/").data
        r = pool.request("GET", "/", preload_content=False)
        pieces = r.stream(1000)
        head = next(pieces) + next(pieces)
        assert head + r.read() == whole
        assert r.connection is None and r.closed

        r = pool.request("GET", "/", preload_content=False)
        got = r.read(5)
        got += next(r.stream(None))
        got += r.read(3001)
        got += b"".join(r.stream(7))
        assert got == whole
        assert pool.num_connections == 1


# --- the decoder ----------------------------------------------------------------------------


def _expected_pieces(chunks: list[bytes], limit: int) -> list[bytes]:
    if limit < 0:
        return list(chunks)
    return [c[i : i + limit] for c in chunks for i in range(0, len(c), limit)]


def _read_pieces(decoder: Any, segments: list[bytes], limit: int) -> list[bytes]:
    """The response's loop: a piece is whole when its chunk ended or it has ``limit`` bytes."""
    pieces: list[bytes] = []
    parts: list[bytes] = []
    left = limit
    feed = iter(segments)
    data = b""
    while not decoder.done:
        piece = decoder.feed_chunk(data, left)
        data = b""
        if piece:
            parts.append(piece)
            if decoder.chunk_left == 0 or len(piece) == left:
                pieces.append(b"".join(parts))
                parts, left = [], limit
            elif left > 0:
                left -= len(piece)
            continue
        if decoder.done:
            break
        assert decoder.held == 0  # it stops early only at the end of a piece
        data = next(feed)
    assert not parts
    return pieces


CHUNKS = [b"hello", b" ", b"0123456789abcdef", b"0123456789"]


@pytest.mark.parametrize("limit", [-1, 1, 3, 16, 100])
def test_feed_chunk_at_every_split(http11: ModuleType, limit: int) -> None:
    body = _frame(CHUNKS, b"Expires: never\r\n")
    data = body + b"NEXT"
    for cut in range(len(data) + 1):
        for convert in (bytes, bytearray, memoryview):
            decoder = http11.ChunkedDecoder()
            segments = [convert(data[:cut]), convert(data[cut:])]
            assert _read_pieces(decoder, segments, limit) == _expected_pieces(CHUNKS, limit), cut
            assert decoder.trailers == [("Expires", "never")]
            # the second segment is not fed when the body ended in the first
            assert decoder.unused == (data[len(body) : cut] if cut >= len(body) else b"NEXT")


@pytest.mark.parametrize("limit", [-1, 4])
def test_feed_after_feed_chunk_takes_the_held_input(http11: ModuleType, limit: int) -> None:
    data = _frame(CHUNKS) + b"NEXT"
    for cut in range(len(data) + 1):
        decoder = http11.ChunkedDecoder()
        first = decoder.feed_chunk(data[:cut], limit)
        assert decoder.held + len(first) <= cut
        rest = decoder.feed(b"") + decoder.feed(data[cut:])
        assert first + rest == b"".join(CHUNKS), cut
        assert decoder.done and decoder.held == 0
        assert decoder.unused == b"NEXT"


def test_feed_chunk_state(http11: ModuleType) -> None:
    decoder = http11.ChunkedDecoder()
    assert (decoder.chunk_left, decoder.held) == (0, 0)
    assert decoder.feed_chunk(b"5\r\nhel") == b"hel"
    assert (decoder.chunk_left, decoder.held) == (2, 0)
    assert decoder.feed_chunk(b"lo\r\n3\r\nabc\r\n0\r\n\r\n") == b"lo"
    assert (decoder.chunk_left, decoder.held) == (0, 15)
    assert decoder.feed_chunk(b"", 2) == b"ab"
    assert (decoder.chunk_left, decoder.done) == (1, False)
    assert decoder.feed_chunk() == b"c"
    assert decoder.feed_chunk() == b""
    assert decoder.done and decoder.held == 0
    assert decoder.feed_chunk(b"more") == b""
    assert decoder.unused == b"more"
    with pytest.raises(TypeError):
        http11.ChunkedDecoder().feed_chunk("5\r\nhello")


def test_unlike_urllib3_stream_without_decode_content_decodes_a_chunked_body(
    fault_server_factory, managers
) -> None:
    # urllib3 2.x's read_chunked does not fall back to response.decode_content when
    # decode_content is None (its read() does), so a chunked gzip body streams compressed
    # from urllib3 by default. fastpool decodes, as its read() and the documented default do.
    server = fault_server_factory(_serve("one-write", "gzip"))
    stock, ours = managers
    chunks, _ = LAYOUTS["gzip"]
    plain = zlib.decompress(b"".join(chunks), 31)
    stock_pieces = _pieces_default(stock, f"{server.url}/")
    our_pieces = _pieces_default(ours, f"{server.url}/")
    assert b"".join(our_pieces) == plain
    if b"".join(stock_pieces) != plain:  # urllib3 as of 2.8: the compressed bytes
        assert b"".join(stock_pieces) == b"".join(chunks)


def _pieces_default(manager: Any, url: str) -> list[bytes]:
    r = manager.request("GET", url, preload_content=False, retries=False, timeout=10)
    pieces = list(r.stream())
    r.release_conn()
    return pieces
