"""``read(amt)`` of a content-encoded body returns as soon as ``amt`` decoded bytes have
arrived, as urllib3's does: a gzip stream that flushes a piece and then pauses gives that
piece at once, not after the pause (or a read timeout). Side by side with stock urllib3 on the
same hostile server; both backends."""

from __future__ import annotations

import threading
import time
import zlib
from typing import Any

import pytest
import urllib3

import fastpool

#: The server holds the rest of the body until ``read(100)`` has returned, at most this long
#: (as long as the read timeout): a read that waits for the rest waits this whole pause.
PAUSE = 5.0
#: "At once": far below the pause, loose for a loaded machine.
AT_ONCE = 1.0


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
    if client == "urllib3" and tuple(map(int, urllib3.__version__.split(".")[:2])) < (2, 6):
        pytest.skip("urllib3 before 2.6 decoded read(amt) in other steps")
    read_returned = threading.Event()

    def script(conn: Any) -> None:
        if conn.read_request() is None:
            return
        conn.send(head + parts[0])
        read_returned.wait(PAUSE)  # the pause: until the client's read(100) has returned
        conn.send(parts[1])
        if framing == "close":
            conn.close()

    server = hostile(script)
    manager = fastpool.PoolManager() if client == "fastpool" else urllib3.PoolManager()
    with manager:
        r = manager.request(
            "GET", server.url + "/", preload_content=False, retries=False, timeout=PAUSE
        )
        began = time.monotonic()
        try:
            piece = r.read(100)
            took = time.monotonic() - began
        finally:
            read_returned.set()
        assert piece == first[:100]
        assert took < AT_ONCE, f"{client}: read(100) waited {took:.2f} s for the pause"
        assert r.read() == first[100:] + b"z" * 5000  # and the rest after the pause
