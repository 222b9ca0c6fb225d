"""Regression tests for the reviewer's confirmed findings (decompression bombs, encoding chains,
GC at a queue's critical moment, Retry subclasses, conflicting Content-Length, proxy TLS)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import brotli
import pytest
import zstandard
from servers import send_raw
from urllib3.exceptions import DecodeError

from fastpool.exceptions import MAX_DECODE_LINKS
from fastpool.pool import HTTPConnectionPool

_BOMB_SIZE = 64 * 1024 * 1024  # decoded: 64 MiB of zeros, a few KiB on the wire


def _raw(body: bytes, *headers: str) -> bytes:
    head = "HTTP/1.1 200 OK\r\n" + "".join(h + "\r\n" for h in headers)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


def _compress(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.compress(data, compresslevel=1)
    if coding == "deflate":
        return zlib.compress(data, 1)
    if coding == "br":
        return brotli.compress(data, quality=1)
    return zstandard.ZstdCompressor(level=1).compress(data)


@pytest.fixture(scope="module")
def zeros() -> bytes:
    return bytes(_BOMB_SIZE)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "gzip, br"])
def test_small_read_of_a_bomb_decodes_little(fault_server_factory, zeros, coding):
    body = zeros
    for c in coding.split(", "):
        body = _compress(c, body)
    server = fault_server_factory(send_raw(_raw(body, f"Content-Encoding: {coding}")))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        r = p.request("GET", "/", preload_content=False)
        tracemalloc.start()
        try:
            data = r.read(1024)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert data == bytes(1024)
        # One bounded decode step (zstd: a slice of input) instead of the whole 64 MiB.
        assert peak < 4 * 1024 * 1024, peak
        r.close()
        assert p.pool.in_use == 0


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "gzip, zstd", "br, deflate"])
@pytest.mark.parametrize("how", ["read-7", "read-100000", "stream-1", "read1-3", "all"])
def test_bounded_decoding_returns_every_byte(fault_server_factory, coding, how):
    # Compressible yet varied, several decode steps long: tails are carried across reads.
    text = b"".join(b"line %d of the body, %s\n" % (i, b"x" * (i % 50)) for i in range(20000))
    body = text
    for c in coding.split(", "):
        body = _compress(c, body)
    server = fault_server_factory(send_raw(_raw(body, f"Content-Encoding: {coding}")))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        r = p.request("GET", "/", preload_content=False)
        kind, _, size = how.partition("-")
        if kind == "all":
            got = r.read()
        elif kind == "stream":
            got = b"".join(r.stream(int(size)))
        else:
            pieces = []
            read = r.read if kind == "read" else r.read1
            for _ in range(len(text) + 10):  # bounded: one byte per call at the least
                piece = read(int(size))
                if not piece:
                    break
                assert len(piece) <= int(size)
                pieces.append(piece)
            got = b"".join(pieces)
        assert got == text
        assert r.closed
        assert p.pool.in_use == 0


def test_too_many_content_encodings(fault_server_factory):
    n = MAX_DECODE_LINKS + 1
    body = b"payload"
    for _ in range(n):
        body = gzip.compress(body)
    server = fault_server_factory(
        send_raw(_raw(body, "Content-Encoding: " + ", ".join(["gzip"] * n)))
    )
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        with pytest.raises(DecodeError, match=f"Too many content encodings in the chain: {n} > 5"):
            p.request("GET", "/")
        assert p.pool.in_use == 0
        # The raw body is still available undecoded.
        assert p.request("GET", "/", decode_content=False).data == body


def test_five_content_encodings_still_decode(fault_server_factory):
    body = b"payload"
    for _ in range(MAX_DECODE_LINKS):
        body = gzip.compress(body)
    header = "Content-Encoding: " + ", ".join(["gzip"] * MAX_DECODE_LINKS)
    server = fault_server_factory(send_raw(_raw(body, header)))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == b"payload"
