"""``read(amt)`` of a content-encoded body returns as soon as ``amt`` decoded bytes have
arrived, as urllib3's does: a gzip stream that flushes a piece and then pauses gives that
piece at once, not after the pause (or a read timeout). Side by side with stock urllib3 on the
same hostile server; both backends."""

from __future__ import annotations

import time
import zlib
from typing import Any

import pytest
import urllib3

import fastpool

PAUSE = 1.5


def _gzip_in_two(first: bytes, rest: bytes) -> tuple[bytes, bytes]:
    """A gzip stream of ``first + rest``, split where ``first`` was flushed (so the first part
    alone decodes to all of ``first``)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    head = comp.compress(first) + comp.flush(zlib.Z_SYNC_FLUSH)
    return head, comp.compress(rest) + comp.flush()


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("client", ["fastpool", "urllib3"])
def test_a_flushed_piece_is_read_before_the_pause(hostile: Any, framing: str, client: str) -> None:
    first = bytes(range(256)) * 12  # 3,072 bytes: more than the read asks for
    one, two = _gzip_in_two(first, b"z" * 5000)
    if framing == "length":
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % (
            len(one) + len(two)
        )
        parts = [one, two]
    elif framing == "chunked":
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        parts = [b"%x\r\n%s\r\n" % (len(one), one), b"%x\r\n%s\r\n0\r\n\r\n" % (len(two), two)]
    else:
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"
        parts = [one, two]
    steps = [("read",), ("send", head + parts[0]), ("sleep", PAUSE), ("send", parts[1])]
    if framing == "close":
        steps.append(("close",))
    if client == "urllib3" and tuple(map(int, urllib3.__version__.split(".")[:2])) < (2, 6):
        pytest.skip("urllib3 before 2.6 decoded read(amt) in other steps")
    server = hostile(steps)
    manager = fastpool.PoolManager() if client == "fastpool" else urllib3.PoolManager()
    with manager:
        r = manager.request(
            "GET", server.url + "/", preload_content=False, retries=False, timeout=5
        )
        began = time.monotonic()
        piece = r.read(100)
        took = time.monotonic() - began
        assert piece == first[:100]
        assert took < PAUSE / 2, f"{client}: read(100) waited {took:.2f} s for the pause"
        assert r.read() == first[100:] + b"z" * 5000  # and the rest after the pause
