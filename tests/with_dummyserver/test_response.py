"""HTTPResponse: framing, streaming, decoding, the connection's return, and the urllib3/requests
compatibility surface."""

from __future__ import annotations

import gc
import gzip
import io
import tracemalloc
import warnings
import weakref
import zlib
from typing import Any

import brotli
import pytest
import requests
import requests.adapters
import requests.cookies
import urllib3
import zstandard
from dummyserver import pattern_bytes, send_raw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.exceptions import DecodeError, ProtocolError
from urllib3.util.retry import Retry

import fastpool
from fastpool.exceptions import MAX_DECODE_LINKS, InvalidContentLengthError, InvalidResponseError
from fastpool.pool import HTTPConnectionPool


def _raw(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers)
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


@pytest.fixture
def pool(app_server):  # type: ignore[no-untyped-def]
    with HTTPConnectionPool(app_server.host, app_server.port, retries=False) as p:
        yield p
    assert p.pool.in_use == 0


def test_preloaded_body_releases_connection(pool):
    r = pool.request("GET", "/bytes/1000")
    assert r.data == pattern_bytes(1000)
    assert r.connection is None and pool.pool.idle == 1
    assert r.closed and r.tell() == 1000 and r.length_remaining == 0
    assert r.version == 11 and r.version_string == "HTTP/1.1" and r.reason == "OK"


@pytest.mark.parametrize(
    "path", ["/bytes/70000", "/chunked/70000?chunk=3000", "/no-length?n=70000"]
)
def test_read_amt_returns_exact_sizes(pool, path):
    r = pool.request("GET", path, preload_content=False)
    assert pool.pool.in_use == 1
    parts = []
    while True:
        part = r.read(4096)
        if not part:
            break
        assert len(part) == 4096 or len(b"".join(parts)) + len(part) == 70000
        parts.append(part)
    assert b"".join(parts) == pattern_bytes(70000)
    assert pool.pool.in_use == 0
    assert r.read() == b"" and r.closed


@pytest.mark.parametrize("path", ["/bytes/100000", "/chunked/100000", "/stream/50"])
def test_stream_and_reuse(pool, app_server, path):
    for _ in range(2):
        r = pool.request("GET", path, preload_content=False)
        chunks = list(r.stream(10000))
        assert all(0 < len(c) <= 10000 for c in chunks)
        assert pool.pool.in_use == 0
    if path.startswith("/bytes"):
        assert b"".join(chunks) == pattern_bytes(100000)
    assert app_server.connections == 1


def test_readinto_and_read1(pool):
    r = pool.request("GET", "/bytes/50000", preload_content=False)
    buf = bytearray(20000)
    assert r.readinto(buf) == 20000 and bytes(buf) == pattern_bytes(50000)[:20000]
    one = r.read1(100000)
    assert 0 < len(one) <= 30000
    rest = r.read()
    assert bytes(buf) + one + rest == pattern_bytes(50000)
    # io wrappers work on it
    r = pool.request("GET", "/stream/3", preload_content=False)
    r.auto_close = False  # as with urllib3: io wrappers need it
    lines = list(io.BufferedReader(r, 64))  # type: ignore[arg-type]
    assert len(lines) == 3


def test_chunked_trailers_and_keep_alive(pool, app_server):
    for _ in range(3):
        assert pool.request("GET", "/chunked/1000?chunk=7").data == pattern_bytes(1000)
    assert app_server.connections == 1


@pytest.mark.parametrize(
    "method,path", [("HEAD", "/bytes/100"), ("GET", "/status/204"), ("GET", "/status/304")]
)
def test_no_body_responses(pool, app_server, method, path):
    for _ in range(2):
        r = pool.request(method, path, preload_content=False)
        assert r.read() == b""
        assert pool.pool.in_use == 0  # released without reading anything
    assert app_server.connections == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_decoding(pool, encoding):
    r = pool.request("GET", "/" + encoding)
    assert r.data == f'{{"encoding": "{encoding}", "method": "GET"}}'.encode()
    raw = pool.request("GET", "/" + encoding, decode_content=False).data
    assert raw != r.data and len(raw) > 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_decoding_streamed_small_reads(pool, encoding):
    r = pool.request("GET", "/" + encoding, preload_content=False)
    data = b"".join(r.stream(3))
    assert data == f'{{"encoding": "{encoding}", "method": "GET"}}'.encode()


def _compress(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "raw-deflate":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    if coding == "br":
        return brotli.compress(data)
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("client", ["pool", "fastpool.Session", "requests.Session"])
def test_codings_on_separate_header_lines_and_set_cookie(fault_server_factory, client):
    # Two Content-Encoding lines are one chain (RFC 9110 5.3); each route reads the head its own
    # way (the pool scans it, the adapter builds requests' header store), all must decode it.
    import fastpool

    body = pattern_bytes(3000)
    data = _raw(
        _compress("br", _compress("gzip", body)),
        "Set-Cookie: a=1",
        "Content-Encoding: gzip",
        "X-Between: 1",
        "content-encoding: br",
    )
    server = fault_server_factory(send_raw(data))
    if client == "pool":
        with HTTPConnectionPool(server.host, server.port, retries=False) as p:
            r = p.request("GET", "/")
            assert r.data == body
            assert r.headers["content-encoding"] == "gzip, br"
        return
    session = fastpool.Session() if client == "fastpool.Session" else requests.Session()
    with session:
        r = session.get(server.url + "/")
        assert r.content == body
        assert r.headers["Content-Encoding"] == "gzip, br"
        assert r.cookies.get("a") == "1" and session.cookies.get("a") == "1"


def test_multiple_codings_and_raw_deflate(fault_server_factory):
    body = pattern_bytes(5000)
    encoded = _compress("zstd", _compress("br", _compress("gzip", body)))
    server = fault_server_factory(send_raw(_raw(encoded, "Content-Encoding: gzip, br, zstd")))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == body
    raw_deflate = _compress("raw-deflate", body)
    server = fault_server_factory(send_raw(_raw(raw_deflate, "Content-Encoding: deflate")))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == body
    two_members = gzip.compress(b"abc") + gzip.compress(b"def")
    server = fault_server_factory(send_raw(_raw(two_members, "Content-Encoding: gzip")))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == b"abcdef"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_bad_encoded_data_is_decode_error(fault_server_factory, coding):
    server = fault_server_factory(
        send_raw(_raw(b"\x00not compressed at all" * 3, f"Content-Encoding: {coding}"))
    )
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        with pytest.raises(DecodeError, match=f"content-encoding: {coding}"):
            p.request("GET", "/")
        assert p.pool.in_use == 0


def test_unknown_coding_passes_through(fault_server_factory):
    server = fault_server_factory(send_raw(_raw(b"as is", "Content-Encoding: x-unknown")))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == b"as is"


def test_close_unfinished_closes_connection(pool, app_server):
    r = pool.request("GET", "/bytes/1000000", preload_content=False)
    r.read(10)
    r.close()
    assert r.closed and pool.pool.in_use == 0 and pool.pool.idle == 0
    assert pool.request("GET", "/bytes/5").status == 200
    assert app_server.connections == 2


def test_close_drains_small_buffered_remainder(pool, app_server):
    r = pool.request("GET", "/bytes/2000", preload_content=False)
    r.read(10)
    r.close()  # the remainder already arrived: drained, connection reused
    assert pool.pool.idle == 1
    pool.request("GET", "/bytes/5")
    assert app_server.connections == 1


def test_release_conn_is_idempotent(pool):
    r = pool.request("GET", "/bytes/1000000", preload_content=False)
    r.release_conn()
    r.release_conn()
    assert pool.pool.in_use == 0
    r = pool.request("GET", "/bytes/10")
    r.release_conn()
    r.release_conn()
    assert pool.pool.in_use == 0 and pool.pool.idle == 1


def test_drain_conn_keeps_connection(pool, app_server):
    r = pool.request("GET", "/chunked/300000", preload_content=False)
    r.drain_conn()
    assert pool.pool.idle == 1
    pool.request("GET", "/bytes/1")
    assert app_server.connections == 1


def test_headers_and_compat_surface(pool):
    r = pool.request("GET", "/headers")
    assert r.headers.getlist("X-Dup") == ["a", "b"]
    assert r.headers["x-dup"] == "a, b"
    assert r.headers.get("X-Empty") == ""
    assert r.getheader("x-dup") == "a, b" and r.info() is r.headers
    msg = r._original_response.msg
    assert len(msg.get_all("Set-Cookie")) == 2
    assert msg.get_all("X-Missing", []) == []
    assert r.geturl() == "/headers" and r.get_redirect_location() is False


def test_requests_cookie_extraction(pool):
    r = pool.request("GET", "/cookies/set?a=1&b=2", redirect=False)
    assert r.status == 302 and r.get_redirect_location() == "/cookies"
    jar = requests.cookies.RequestsCookieJar()
    req = requests.Request("GET", f"http://{pool.host}:{pool.port}/cookies/set").prepare()
    requests.cookies.extract_cookies_to_jar(jar, req, r)
    assert dict(jar) == {"a": "1", "b": "2"}


def test_http10_response_not_reused(pool, app_server):
    r = pool.request("GET", "/http10")
    assert r.version == 10 and r.version_string == "HTTP/1.0"
    pool.request("GET", "/bytes/1")
    assert app_server.connections == 2


def test_extra_bytes_after_body_prevent_reuse(fault_server_factory):
    raw = _raw(b"ok") + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    server = fault_server_factory(send_raw(raw, then="keep"))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == b"ok"
        assert p.pool.idle == 0 and p.pool.in_use == 0


def test_chunked_stream_yields_what_has_arrived(fault_server_factory):
    import threading

    seen_first = threading.Event()
    released = []

    def live(conn):  # type: ignore[no-untyped-def]
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        released.append(seen_first.wait(3))
        conn.send(b"7\r\nsecond\n\r\n0\r\n\r\n")

    server = fault_server_factory(live)
    with HTTPConnectionPool(server.host, server.port, retries=False, timeout=10) as p:
        r = p.request("GET", "/", preload_content=False)
        pieces = r.stream(1024)
        assert next(pieces) == b"first\n"
        seen_first.set()
        assert b"".join(pieces) == b"second\n"
        assert released == [True]
        assert p.pool.in_use == 0


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_empty_encoded_bodies(fault_server_factory, coding):
    raw = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: 0\r\n\r\n".encode()
    server = fault_server_factory(send_raw(raw))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        assert p.request("GET", "/").data == b""


def test_decode_error_midway_frees_the_connection(fault_server_factory):
    body = b"\x00garbage" * 20000
    server = fault_server_factory(send_raw(_raw(body, "Content-Encoding: gzip"), then="keep"))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        r = p.request("GET", "/", preload_content=False)
        with pytest.raises(DecodeError):
            r.read(10)
        assert p.pool.in_use == 0 and p.pool.idle == 0


# --- property test: any framing, any sequence of reads -------------------------------------------


def _frame(body: bytes, framing: str, chunk_sizes: list[int], coding: str | None) -> bytes:
    headers = [f"Content-Encoding: {coding}"] if coding else []
    payload = _compress(coding, body) if coding else body
    if framing == "length":
        return _raw(payload, *headers)
    if framing == "close":
        return _raw(payload, *headers, "Connection: close", "Transfer-Encoding: identity")
    out, at, sizes = [], 0, chunk_sizes or [7]
    i = 0
    while at < len(payload):
        n = max(1, sizes[i % len(sizes)])
        out.append(b"%x\r\n%s\r\n" % (len(payload[at : at + n]), payload[at : at + n]))
        at += n
        i += 1
    chunked = b"".join(out) + b"0\r\nX-Trailer: t\r\n\r\n"
    return _raw(chunked, *headers, "Transfer-Encoding: chunked")


class _Scripted:
    """Answers each request with the next scripted raw response; closes after ``close`` ones."""

    def __init__(self) -> None:
        import queue

        self.answers: queue.Queue[bytes] = queue.Queue()

    def __call__(self, conn):  # type: ignore[no-untyped-def]
        while conn.read_request() is not None:
            raw = self.answers.get(timeout=10)
            conn.send(raw)
            if b"Connection: close" in raw.split(b"\r\n\r\n", 1)[0]:
                return


reads = st.lists(
    st.tuples(st.sampled_from(["read", "read1", "readinto", "stream"]), st.integers(1, 5000)),
    max_size=12,
)


def _body(size: int, seed: int, random_bytes: bool) -> bytes:
    import random

    if random_bytes:  # incompressible: encoded bodies stay large too
        return random.Random(seed).randbytes(size)
    return pattern_bytes(size)


@pytest.mark.parametrize("coding", [None, "gzip", "deflate", "br", "zstd"])
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    size=st.integers(0, 40000),
    seed=st.integers(0, 2**32),
    random_bytes=st.booleans(),
    chunk_sizes=st.lists(st.integers(1, 5000), max_size=5),
    plan=reads,
    stop_early=st.booleans(),
)
def test_any_reads_give_the_body_and_free_the_connection(
    scripted_pool, coding, framing, size, seed, random_bytes, chunk_sizes, plan, stop_early
):
    """Each example reuses the pool's connection when it was kept, so a connection handed
    back in a bad state would corrupt a later example."""
    body = _body(size, seed, random_bytes)
    pool, script = scripted_pool
    script.answers.put(_frame(body, framing, chunk_sizes, coding))
    r = pool.request("GET", "/", preload_content=False)
    got = []
    for kind, n in plan:
        if kind == "read":
            got.append(r.read(n))
        elif kind == "read1":
            got.append(r.read1(n))
        elif kind == "readinto":
            buf = bytearray(n)
            got.append(bytes(buf[: r.readinto(buf)]))
        else:
            got.append(next(iter(r.stream(n)), b""))
    if stop_early:
        r.close()  # closed or drained: either way the slot is free and nothing half-read stays
        assert body.startswith(b"".join(got))
        assert pool.pool.in_use == 0 and pool.pool.idle <= 1
        return
    got.append(r.read())
    assert b"".join(got) == body
    assert pool.pool.in_use == 0
    assert pool.pool.idle == (0 if framing == "close" else 1)


@pytest.fixture(scope="module", params=["http", "https"])
def scripted_pool(request, server_ssl_context, ca_bundle):  # type: ignore[no-untyped-def]
    from dummyserver import FaultServer

    from fastpool.pool import HTTPSConnectionPool

    script = _Scripted()
    tls = request.param == "https"
    with FaultServer(script, tls=server_ssl_context if tls else None) as server:
        if tls:
            pool = HTTPSConnectionPool(
                server.host, server.port, retries=False, timeout=10, ca_certs=ca_bundle
            )
        else:
            pool = HTTPConnectionPool(server.host, server.port, retries=False, timeout=10)
        with pool:
            yield pool, script
        assert not server.errors


def test_read1_and_close_at_a_premature_end(fault_server_factory):
    # The peer closes after 2 of 9 bytes: read1 reports it instead of returning b"" forever,
    # and close() with a small remainder does not spin on the closed socket.
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok"
    server = fault_server_factory(send_raw(raw))
    with HTTPConnectionPool(server.host, server.port, retries=False, timeout=5) as p:
        r = p.request("GET", "/", preload_content=False)
        assert r.read1(100) == b"ok"
        with pytest.raises(ProtocolError):
            r.read1(100)
        assert p.pool.in_use == 0
        r = p.request("GET", "/", preload_content=False)
        assert r.read(1) == b"o"
        import time

        time.sleep(0.1)  # the FIN has arrived
        r.close()
        assert p.pool.in_use == 0 and p.pool.idle == 0


def test_requests_store_is_what_case_insensitive_dict_builds():
    # The adapter's Response headers: from the parsed head, or from the header dict once
    # something (a Retry-After lookup) has built it; both as requests' own conversion gives.
    import requests.structures

    from fastpool._http11 import parse_response_head
    from fastpool.response import HTTPResponse

    raw = b"HTTP/1.1 429 X\r\nA: 1\r\nb: 2\r\na: 3\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
    head = parse_response_head(raw, "GET", 65536, 100)[0]
    expected = requests.structures.CaseInsensitiveDict(HTTPResponse(head).headers)._store
    assert HTTPResponse(head)._requests_store() == expected
    built = HTTPResponse(head)
    assert built.headers.get("retry-after") == "1"
    assert built._requests_store() == expected
    assert expected["a"] == ("A", "1, 3")


# --- decompression bombs and encoding chains: bounded decoding ------------------------------
_BOMB_SIZE = 64 * 1024 * 1024  # decoded: 64 MiB of zeros, a few KiB on the wire


def _compress_fast(coding: str, data: bytes) -> bytes:
    """``_compress`` at the fastest level (a 64 MiB bomb compresses in well under a second)."""
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
        body = _compress_fast(c, body)
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
        body = _compress_fast(c, body)
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


# --- conflicting Content-Length: urllib3's InvalidHeader, requests' InvalidHeader ---------------
def test_conflicting_content_length_is_invalid_header(fault_server_factory):
    requests_seen = []

    def handler(conn):  # type: ignore[no-untyped-def]
        while conn.read_request() is not None:
            requests_seen.append(1)
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nokxyz")

    server = fault_server_factory(handler)
    with HTTPConnectionPool(server.host, server.port, retries=Retry(total=3)) as p:
        with pytest.raises(InvalidContentLengthError, match="Content-Length") as info:
            p.request("GET", "/")
        assert isinstance(info.value, urllib3.exceptions.InvalidHeader)
        assert isinstance(info.value, InvalidResponseError)
        assert p.pool.in_use == 0
    assert len(requests_seen) == 1  # not retried, as urllib3

    session = requests.Session()
    session.mount("http://", fastpool.HTTPAdapter())
    with pytest.raises(requests.exceptions.InvalidHeader):
        session.get(f"http://{server.host}:{server.port}/")


# --- an early EOF on a large Content-Length body without enforce_content_length -----------------
@pytest.mark.parametrize("size", [1 << 20, 20 << 20])  # under and over the one-buffer limit
def test_early_eof_without_enforcement_returns_what_came(fault_server_factory, size):
    sent = b"x" * (1 << 19)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    server = fault_server_factory(send_raw(head + sent))
    with HTTPConnectionPool(server.host, server.port, retries=False) as p:
        r = p.request("GET", "/", enforce_content_length=False)
        assert r.data == sent  # never a read on the socket already closed (EBADF)
        assert p.pool.in_use == 0


class _RefusingJar(requests.cookies.RequestsCookieJar):
    def extract_cookies(self, response: Any, request: Any) -> None:
        raise ValueError("this jar takes no cookie")


@pytest.mark.parametrize("client", ["stock", "fastpool"])
def test_a_response_an_error_dropped_is_freed_at_once(app_server: Any, client: str) -> None:
    # A cookie jar that raises after the answer: Session.send drops the response with its body
    # unread. No cycle holds it (stock's neither): it is freed at once and closes its
    # connection, where a cycle (the raw response and its _original_response, once) left it
    # to the collector, which may finalize the socket first (a ResourceWarning).
    make = requests.Session if client == "stock" else fastpool.Session
    raws: list[Any] = []

    def keep(response: Any, **kwargs: Any) -> None:
        raws.append(weakref.ref(response.raw))

    url = f"{app_server.url}/headers"  # (two Set-Cookie)
    gc.collect()
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as caught, make() as session:
            warnings.simplefilter("always", ResourceWarning)
            session.cookies = _RefusingJar()
            for _ in range(3):
                try:
                    session.get(url, hooks={"response": keep}, timeout=5)
                except ValueError:
                    pass
                assert raws[-1]() is None  # freed already, without the collector
            gc.collect()
        assert [str(w.message) for w in caught] == []
    finally:
        gc.enable()


_HELD = ("Response", "HTTPResponse", "HTTPConnection", "HTTPSConnection", "socket")


def _held_by_cycles(scenario: Any) -> list[str]:
    """The responses, connections and sockets that ``scenario()`` left in reference cycles
    (the collector disabled meanwhile: what refcounting did not free); other garbage (the
    test servers' threads make some) is not counted."""
    gc.collect()
    gc.disable()
    try:
        scenario()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        return sorted(type(o).__name__ for o in gc.garbage if type(o).__name__ in _HELD)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize("scenario", ["truncated", "retries-exhausted", "cachecontrol"])
def test_no_cycle_holds_a_response_as_stock_holds_none(
    app_server: Any, fault_server_factory: Any, scenario: str
) -> None:
    # What refcounting frees with stock requests (urllib3 2.6; 2.3 leaves a cut-short body's
    # response in a cycle), it frees with fastpool: a response (with its connection and
    # socket) an error dropped, or one read through a tool's wrapper of its _fp. A cycle
    # leaves them to the collector, which closes the connection (or gives the slot back)
    # late, and may finalize the socket first (a ResourceWarning). Each of these was a cycle:
    # a frame holding the error its traceback keeps (the adapter's ``mapped``, the response's
    # ``error``), and ``_RawBody`` holding its response.
    if scenario == "truncated":
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        url = fault_server_factory(send_raw(head + b"x" * 50)).url + "/"
    elif scenario == "cachecontrol":
        cachecontrol = pytest.importorskip("cachecontrol")
        url = f"{app_server.url}/bytes/10"
    else:
        url = f"{app_server.url}/status/500"
    held = {}
    for client in ("stock", "fastpool"):
        session = requests.Session() if client == "stock" else fastpool.Session()
        base = requests.adapters.HTTPAdapter if client == "stock" else fastpool.HTTPAdapter
        if scenario == "retries-exhausted":
            session.mount("http://", base(max_retries=Retry(total=1, status_forcelist=[500])))
        elif scenario == "cachecontrol":

            class Caching(cachecontrol.CacheControlAdapter, base):  # type: ignore[misc, valid-type]
                pass

            session.mount("http://", Caching())

        def run(session: Any = session) -> None:
            errors: list[Any] = []
            for i in range(3):
                try:
                    stream = scenario == "cachecontrol"
                    response = session.get(f"{url}?{i}", timeout=5, stream=stream)
                    if stream:
                        response.raw.read()
                except requests.RequestException as e:
                    errors.append(e)
            assert len(errors) == (0 if scenario == "cachecontrol" else 3), errors
            errors.clear()  # (this frame is in their tracebacks: a cycle of the test's own)

        with session:
            held[client] = _held_by_cycles(run)
    assert held["fastpool"] == [], held
