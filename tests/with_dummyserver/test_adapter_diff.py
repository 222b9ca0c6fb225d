"""Differential tests: the same requests through a Session with the stock
``requests.adapters.HTTPAdapter`` and through a Session with ``fastpool.HTTPAdapter``, against the
same local servers, must give the same observable results.

Compared: status, reason, URL, headers (minus Date), body, encoding, cookies (response and
session), history (status and URL), what the server received (method, target, headers, body),
connections and requests counted by the servers, and for failures the requests exception class
and the key words of its message. Each case also asserts what stock does, so a comparison cannot
pass by both sides failing the same way by accident.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import logging
import pickle
import re
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import requests
import requests.adapters
import urllib3
from dummyserver import HAS_BROTLI, HAS_ZSTD, AppServer, close_after, pattern_bytes, send_raw
from urllib3.util import Retry
from urllib3.util import Timeout as Urllib3Timeout

import fastpool

STOCK = requests.adapters.HTTPAdapter
OURS = fastpool.HTTPAdapter
URLLIB3_VERSION = tuple(int(part) for part in urllib3.__version__.split(".")[:2])
# requests 2.32.3 and 2.32.4 give verify=True pools a context preloaded at import time.
PRELOADED_SSL_CONTEXT = getattr(requests.adapters, "_preloaded_ssl_context", None)


@dataclass
class Env:
    """The servers of one test: ``app`` (http, 127.0.0.1), ``app2`` (http, 127.0.0.2),
    ``tls`` (https, 127.0.0.1, trusted through ``ca``)."""

    app: AppServer
    app2: AppServer
    tls: AppServer
    ca: str
    extra: list[Any] = field(default_factory=list)

    @property
    def servers(self) -> list[Any]:
        return [self.app, self.app2, self.tls, *self.extra]

    def add(self, server: Any) -> Any:
        """Count (and reset between runs) another server too; returns it."""
        self.extra.append(server)
        return server


@pytest.fixture
def env(
    server_factory: Callable[..., AppServer], ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> Env:
    # These would replace verify=True (requests reads them per request): keep it True here.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return Env(server_factory(), server_factory("127.0.0.2"), server_factory(tls=True), ca_bundle)


@pytest.fixture
def fixed_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed multipart boundary, so two uploads of the same files are byte-identical."""
    import urllib3.filepost

    monkeypatch.setattr(urllib3.filepost, "choose_boundary", lambda: "fastpool-test-boundary")


Call = Callable[[requests.Session, Env], Any]


def _body(data: bytes) -> Any:
    """A body for comparison: echo JSON without the server's connection number."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return data
    if isinstance(parsed, dict):
        parsed.pop("connection", None)
        if isinstance(parsed.get("headers"), list):
            parsed["headers"] = sorted(map(tuple, parsed["headers"]))
    return parsed


def summarize(response: requests.Response, session: requests.Session) -> dict[str, Any]:
    """Everything a user can observe on a finished Response (the body is read here)."""
    body = response.content
    return {
        "status": response.status_code,
        "reason": response.reason,
        "url": response.url,
        "headers": sorted((k, v) for k, v in response.headers.items() if k.lower() != "date"),
        "raw_headers": sorted(
            (k, v) for k, v in response.raw.headers.items() if k.lower() != "date"
        ),
        "body": _body(body),
        "encoding": response.encoding,
        "cookies": sorted(response.cookies.items()),
        "session_cookies": sorted(session.cookies.items()),
        "history": [(r.status_code, r.url) for r in response.history],
        "elapsed_set": response.elapsed > datetime.timedelta(0),
        "request": (
            response.request.method,
            response.request.url,
            sorted(response.request.headers.items()),
        ),
        "links": response.links,
        "is_redirect": response.is_redirect,
        "attributes": sorted(vars(response)),
        "connection_is_adapter": isinstance(response.connection, requests.adapters.HTTPAdapter),
    }


def observe(adapter_cls: type, call: Call, env: Env, adapter_kwargs: dict[str, Any]) -> dict:
    """Run ``call`` on a fresh Session with ``adapter_cls`` mounted for http and https."""
    for server in env.servers:
        server.reset_counts()
    with requests.Session() as session:
        session.mount("http://", adapter_cls(**adapter_kwargs))
        session.mount("https://", adapter_cls(**adapter_kwargs))
        try:
            result = call(session, env)
        except requests.RequestException as exc:
            outcome: dict[str, Any] = {
                "error": type(exc),
                "message": str(exc),
                "has_request": exc.request is not None,
                "has_response": exc.response is not None,
            }
        else:
            if isinstance(result, requests.Response):
                outcome = summarize(result, session)
            else:
                outcome = {"value": result}
    outcome["connections"] = [server.connections for server in env.servers]
    outcome["requests"] = [server.requests for server in env.servers]
    return outcome


def differential(
    call: Call, env: Env, key: str | None = None, **adapter_kwargs: Any
) -> dict[str, Any]:
    """Run ``call`` with both adapters; assert the same outcome; return stock's.

    Exception messages name the pool and connection classes and addresses, which differ; they
    are compared through ``key``, words both must contain.
    """
    stock = observe(STOCK, call, env, adapter_kwargs)
    ours = observe(OURS, call, env, adapter_kwargs)
    if "error" in stock:
        for outcome in (stock, ours):
            message = outcome.pop("message", "")
            if key is not None:
                assert key in message, (outcome.get("error"), message)
    assert ours == stock
    return stock


# --- the corpus --------------------------------------------------------------------------------


def _gen(parts: list[bytes]) -> Iterator[bytes]:
    yield from parts


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


@pytest.mark.parametrize("method", METHODS)
def test_methods(env: Env, method: str) -> None:
    out = differential(lambda s, e: s.request(method, e.app.url + "/echo?x=1&y=%20"), env)
    assert out["status"] == 200
    if method != "HEAD":
        assert out["body"]["method"] == method


BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "bytes": lambda: {"data": b"\x00\x01binary\xff"},
    "str": lambda: {"data": "text \u00e9"},
    "form": lambda: {"data": {"a": "1", "b": ["2", "3"]}},
    "json": lambda: {"json": {"k": [1, 2, None], "s": "\u2603"}},
    "files": lambda: {"files": {"f": ("a.txt", b"file content"), "g": io.BytesIO(b"g")}},
    "generator": lambda: {"data": _gen([b"chunk-1 ", b"", b"chunk-2"])},
    "file-object": lambda: {"data": io.BytesIO(b"from a file object")},
    "empty": lambda: {"data": b""},
    "large": lambda: {"data": pattern_bytes(300_000)},
}


@pytest.mark.parametrize("kind", list(BODIES))
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_request_bodies(env: Env, kind: str, method: str, fixed_boundary: None) -> None:
    # files= and data=generator need fresh objects for each run, so build them per call.
    out = differential(lambda s, e: s.request(method, e.app.url + "/echo", **BODIES[kind]()), env)
    assert out["status"] == 200
    sent = dict(out["body"]["headers"])
    assert ("Transfer-Encoding" in sent) == (kind == "generator")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_redirect_codes(env: Env, code: int, method: str) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        url = f"{e.app.url}/redirect-to?url=/echo&status_code={code}"
        return s.request(method, url, data=b"payload" if method == "POST" else None)

    out = differential(call, env)
    assert out["status"] == 200
    assert [status for status, _ in out["history"]] == [code]


@pytest.mark.parametrize("absolute", [False, True])
def test_redirect_chain(env: Env, absolute: bool) -> None:
    suffix = "?absolute=1" if absolute else ""
    out = differential(lambda s, e: s.get(e.app.url + "/redirect/3" + suffix), env)
    assert len(out["history"]) == 3
    assert out["connections"] == [1, 0, 0]  # every hop reused the one connection


def test_redirect_cross_host_and_to_https(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        hop2 = f"{e.tls.url}/echo"
        hop1 = f"{e.app2.url}/redirect-to?url={requests.utils.quote(hop2, safe='')}"
        start = f"{e.app.url}/redirect-to?url={requests.utils.quote(hop1, safe='')}"
        return s.get(start, verify=e.ca)

    out = differential(call, env)
    assert out.get("status") == 200, out
    assert out["url"].startswith("https://")
    assert out["connections"] == [1, 1, 1]


def test_redirect_limit(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        s.max_redirects = 2
        return s.get(e.app.url + "/redirect/5")

    out = differential(call, env, key="Exceeded 2 redirects")
    assert out["error"] is requests.TooManyRedirects


def test_redirect_not_followed(env: Env) -> None:
    out = differential(lambda s, e: s.get(e.app.url + "/redirect/2", allow_redirects=False), env)
    assert out["status"] == 302 and out["is_redirect"]


def test_cookies_set_and_sent(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        s.get(e.app.url + "/cookies/set?a=1&b=two")
        s.cookies.set("manual", "m")
        return s.get(e.app.url + "/cookies", cookies={"per_request": "p"})

    out = differential(call, env)
    assert out["body"]["cookies"] == {"a": "1", "b": "two", "manual": "m", "per_request": "p"}


def test_cookies_on_the_response(env: Env) -> None:
    out = differential(lambda s, e: s.get(e.app.url + "/headers"), env)
    assert out["cookies"] == [("first", "1"), ("second", "2")]
    assert ("X-Dup", "a, b") in out["headers"]


def test_cookies_through_redirect_history(env: Env) -> None:
    out = differential(lambda s, e: s.get(e.app.url + "/cookies/set?c=3"), env)
    assert out["session_cookies"] == [("c", "3")]
    assert out["body"]["cookies"] == {"c": "3"}


def test_response_headers_and_encoding(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        query = "Content-Type=text/html%3B%20charset%3Dlatin-1&X-A=1&X-A=2&Link=%3C/n%3E;rel=next"
        return s.get(e.app.url + "/response-headers?" + query)

    out = differential(call, env)
    assert out["encoding"] == "latin-1"
    assert out["links"] == {"next": {"url": "/n", "rel": "next"}}


@pytest.mark.parametrize("path", ["/status/204", "/status/304", "/status/404", "/status/500"])
def test_statuses_without_or_with_empty_body(env: Env, path: str) -> None:
    out = differential(lambda s, e: s.get(e.app.url + path), env)
    assert out["status"] == int(path.rsplit("/", 1)[1])


def test_head_keeps_the_connection(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        s.head(e.app.url + "/bytes/50")
        return s.get(e.app.url + "/bytes/10")

    out = differential(call, env)
    assert out["connections"] == [1, 0, 0]


@pytest.mark.parametrize(
    "path", ["/close", "/http10", "/no-length?n=5000", "/chunked/1000?chunk=7"]
)
def test_framings(env: Env, path: str) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        first = s.get(e.app.url + path)
        second = s.get(e.app.url + path)
        assert first.content == second.content
        return second

    out = differential(call, env)
    assert out["status"] == 200


# --- streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/bytes/1000", "/chunked/1000?chunk=64", "/no-length?n=1000"])
def test_stream_iter_content(env: Env, path: str) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        with s.get(e.app.url + path, stream=True) as r:
            return b"".join(r.iter_content(100)), r.raw.closed

    out = differential(call, env)
    assert out["value"][0] == pattern_bytes(1000)


def test_stream_delivers_each_chunk_as_it_arrives(
    env: Env, fault_server_factory: Callable[..., Any]
) -> None:
    """The server sends one chunk, then waits until the client says it has seen that line
    (at most 3 s) before sending the rest: a client that waits for more bytes first is late."""
    released: list[bool] = []
    first_line_seen = threading.Event()

    def live_stream(conn: Any) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        released.append(first_line_seen.wait(3))
        conn.send(b"7\r\nsecond\n\r\n0\r\n\r\n")

    fault = env.add(fault_server_factory(live_stream))

    def call(s: requests.Session, e: Env) -> Any:
        first_line_seen.clear()
        with s.get(fault.url + "/", stream=True, timeout=10) as r:
            lines = r.iter_lines()
            first = next(lines)
            first_line_seen.set()
            return [first, *lines], released[-1]

    out = differential(call, env)
    assert out["value"] == ([b"first", b"second"], True)


def test_stream_iter_lines(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        with s.get(e.app.url + "/stream/5", stream=True) as r:
            return list(r.iter_lines(decode_unicode=True))

    out = differential(call, env)
    assert len(out["value"]) == 5


@pytest.mark.parametrize(
    "path", ["/bytes/1000", "/gzip", "/chunked/1000", "/bytes/200000", "/no-length?n=1000"]
)
@pytest.mark.parametrize("stream", [False, True])
def test_release_conn_in_a_hook_keeps_the_body(env: Env, path: str, stream: bool) -> None:
    """A response hook gives the connection back before requests reads the body: urllib3's
    response still reads it, and so does ours (a rest already arrived is kept and the
    connection pooled; otherwise the response reads on from its socket, then closes it)."""

    def call(s: requests.Session, e: Env) -> Any:
        hook = lambda r, *args, **kwargs: r.raw.release_conn()
        return s.get(e.app.url + path, stream=stream, hooks={"response": hook}).content

    out = differential(call, env)
    assert len(out["value"]) > 0


def test_release_conn_in_a_hook_then_the_pool_goes_on_unlike_stock(env: Env) -> None:
    """A deliberate difference: after a streamed response's connection was released unread,
    stock's next request fails (urllib3 pooled the connection mid-response: http.client's
    ResponseNotReady); ours kept the body, so its connection was clean and is reused."""

    def call(s: requests.Session, e: Env) -> Any:
        hook = lambda r, *args, **kwargs: r.raw.release_conn()
        first = s.get(e.app.url + "/bytes/1000", stream=True, hooks={"response": hook})
        again = s.get(e.app.url + "/bytes/3").content  # before the first body is read
        return len(first.content), again

    stock = observe(STOCK, call, env, {})
    ours = observe(OURS, call, env, {})
    # urllib3 2.7 and 2.8: ResponseNotReady (a later urllib3 may fix it; ours must work anyway)
    if "error" in stock:
        assert stock["error"] is requests.ConnectionError, stock
    assert ours["value"] == (1000, b"abc")
    assert ours["connections"][0] == 1


def test_stream_raw_read_and_stream(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(e.app.url + "/bytes/1000", stream=True)
        head = r.raw.read(10)
        rest = b"".join(r.raw.stream(300))
        raw = r.raw
        values = (head, rest, raw.status, raw.reason, raw.version, raw.closed, raw.decode_content)
        raw.release_conn()
        r.close()
        again = s.get(e.app.url + "/bytes/3")  # the connection went back to the pool
        return values, again.content

    out = differential(call, env)
    assert out["value"][0][0] == pattern_bytes(10)
    assert out["connections"] == [1, 0, 0]


def test_stream_unread_then_closed_does_not_reuse(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(e.app.url + "/bytes/100000", stream=True)
        r.raw.read(10)
        r.close()
        return s.get(e.app.url + "/bytes/3").content

    out = differential(call, env)
    assert out["connections"] == [2, 0, 0]


def test_raw_data_with_stream_false(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(e.app.url + "/bytes/20")
        return r.content, r.raw.data, r.raw.closed, r.raw.tell()

    out = differential(call, env)
    assert out["value"][0] == pattern_bytes(20)


def test_raw_headers_getlist(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(e.app.url + "/headers")
        return r.raw.headers.getlist("X-Dup"), r.raw.headers.getlist("set-cookie")

    out = differential(call, env)
    assert out["value"] == (["a", "b"], ["first=1; Path=/", "second=2; Path=/"])


# --- content decoding --------------------------------------------------------------------------

# What urllib3 (so the stock adapter) decodes here: what requests advertises in Accept-Encoding.
_STOCK_DECODES = {name.strip() for name in requests.utils.DEFAULT_ACCEPT_ENCODING.split(",")}
ENCODINGS = [
    "gzip",
    "deflate",
    pytest.param("br", marks=pytest.mark.skipif(not HAS_BROTLI, reason="brotli missing")),
    pytest.param("zstd", marks=pytest.mark.skipif(not HAS_ZSTD, reason="zstandard missing")),
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("stream", [False, True])
def test_content_decoding(env: Env, encoding: str, stream: bool) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(f"{e.app.url}/{encoding}", stream=stream)
        return r.json(), r.headers["Content-Encoding"]

    if encoding not in _STOCK_DECODES:
        # A deliberate difference: urllib3 2.x decodes zstd only with backports.zstd (or
        # Python 3.14), fastpool with zstandard too. Stock hands json() the encoded bytes.
        stock = observe(STOCK, call, env, {})
        ours = observe(OURS, call, env, {})
        assert stock["error"] is requests.exceptions.JSONDecodeError
        assert ours["value"][0]["encoding"] == encoding
        return
    out = differential(call, env)
    assert out["value"][0]["encoding"] == encoding, out


def test_raw_read_without_decoding(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(e.app.url + "/gzip", stream=True)
        return gzip.decompress(r.raw.read())

    out = differential(call, env)
    assert json.loads(out["value"])["encoding"] == "gzip"


# --- failures ------------------------------------------------------------------------------------


def _raw_response(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


BAD_GZIP = _raw_response(
    "HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: 12\n", b"not gzipped!"
)


@pytest.mark.parametrize(
    ("name", "data", "stream", "error", "key"),
    [
        ("bad-status-line", b"HTTP/1.1 abc OK\r\n\r\n", False, requests.ConnectionError, None),
        ("not-http", b"SSH-2.0-OpenSSH\r\n\r\n", False, requests.ConnectionError, None),
        ("no-response", b"", False, requests.ConnectionError, "Connection aborted"),
        (
            "truncated-body",
            _raw_response("HTTP/1.1 200 OK\nContent-Length: 100\n", b"only ten b"),
            False,
            requests.exceptions.ChunkedEncodingError,
            "IncompleteRead",
        ),
        (
            "bad-chunk",
            _raw_response("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"zz\r\nabc\r\n"),
            False,
            requests.exceptions.ChunkedEncodingError,
            None,
        ),
        (
            "truncated-chunks",
            _raw_response("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", b"a\r\n12345"),
            True,
            requests.exceptions.ChunkedEncodingError,
            None,
        ),
        ("bad-gzip", BAD_GZIP, False, requests.exceptions.ContentDecodingError, "gzip"),
    ],
)
def test_malformed_responses(
    env: Env,
    fault_server_factory: Callable[..., Any],
    name: str,
    data: bytes,
    stream: bool,
    error: type,
    key: str | None,
) -> None:
    fault = env.add(fault_server_factory(send_raw(data)))

    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(fault.url + "/", stream=stream, timeout=5)
        return r.content if stream else r

    out = differential(call, env, key=key)
    assert out.get("error") is error, out


# The server closes before the blank line that ends the head. http.client takes the end of the
# stream as the end of the head (found by running requests' own suite with fastpool's adapter:
# tests/test_lowlevel.py::test_chunked_encoding_error), so what came is the response.
HEADS_CUT_BY_EOF = {
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
    "length-5": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    "length-0": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
    "status-line": b"HTTP/1.1 200 OK\r\n",
    "cut-header": b"HTTP/1.1 200 OK\r\nX-A: b",
    "cut-header-cr": b"HTTP/1.1 200 OK\r\nX-A: b\r",
    "cut-status-line": b"HTTP/1.1 200 OK",
    "cut-status": b"HTTP/1.1 20",
    "interim-only": b"HTTP/1.1 100 Continue\r\n\r\n",
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", sorted(HEADS_CUT_BY_EOF))
def test_head_cut_by_eof(
    env: Env, fault_server_factory: Callable[..., Any], name: str, stream: bool
) -> None:
    fault = env.add(fault_server_factory(send_raw(HEADS_CUT_BY_EOF[name])))

    def call(s: requests.Session, e: Env) -> Any:
        r = s.get(fault.url + "/", stream=stream, timeout=5)
        return r.status_code, dict(r.headers), r.content

    out = differential(call, env)
    if name in ("length-0", "status-line", "cut-header", "cut-header-cr", "cut-status-line"):
        assert out["value"][0] == 200, out
    elif name in ("chunked", "length-5"):
        assert out["error"] is requests.exceptions.ChunkedEncodingError, out
    else:
        assert out["error"] is requests.ConnectionError, out


def test_stale_keepalive_connection_is_replayed_unlike_stock(
    env: Env, fault_server_factory: Callable[..., Any]
) -> None:
    """A deliberate difference (fastpool's pool, see HTTPConnectionPool.urlopen): the server
    answers one request per connection and closes the next without answering. Stock raises
    ConnectionError for the second GET; fastpool sends a body-less idempotent request that met
    a stale pooled connection once more, on a new connection, and succeeds."""
    fault = env.add(fault_server_factory(close_after(1, how="wait")))

    def call(s: requests.Session, e: Env) -> Any:
        s.get(fault.url + "/", timeout=5)
        return s.get(fault.url + "/", timeout=5)

    stock = observe(STOCK, call, env, {})
    ours = observe(OURS, call, env, {})
    assert stock["error"] is requests.ConnectionError
    assert "Connection aborted" in stock["message"]
    assert ours["status"] == 200
    assert ours["connections"][-1] == 2


def test_refused(env: Env) -> None:
    port = _closed_port()
    out = differential(
        lambda s, e: s.get(f"http://127.0.0.1:{port}/"), env, key="Max retries exceeded"
    )
    assert out["error"] is requests.ConnectionError


@pytest.mark.parametrize("retries", [3, Retry(total=2, backoff_factor=0)])
def test_refused_with_retries(env: Env, retries: Any) -> None:
    port = _closed_port()
    out = differential(
        lambda s, e: s.get(f"http://127.0.0.1:{port}/"),
        env,
        key="Max retries exceeded",
        max_retries=retries,
    )
    assert out["error"] is requests.ConnectionError


def test_retry_warnings_are_logged_like_stock(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_port()
    logged = {}
    for adapter_cls, logger in (
        (STOCK, "urllib3.connectionpool"),
        (OURS, "urllib3.connectionpool"),  # fastpool logs as urllib3 by default
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=logger):
            observe(
                adapter_cls,
                lambda s, e: s.get(f"http://127.0.0.1:{port}/"),
                env,
                {"max_retries": 2},
            )
        logged[adapter_cls] = [r.getMessage() for r in caplog.records if r.name == logger]
    if URLLIB3_VERSION < (2, 6):
        # urllib3 before 2.6 names the connection by its object's repr ("<urllib3.connection.
        # HTTPConnection object at 0x...>"), which fastpool's lines cannot repeat; they use
        # 2.6's "HTTPConnection(host=..., port=...)". The rest of each line must be the same.
        for cls, messages in logged.items():
            logged[cls] = [
                re.sub(
                    r"NewConnectionError\((['\"]).*?: (Failed to establish .*?)\1\)",
                    r"NewConnectionError(<connection>: \2)",
                    message,
                )
                for message in messages
            ]
    assert logged[OURS] == logged[STOCK]
    assert len(logged[STOCK]) == 2 and all(
        m.startswith("Retrying (Retry(total=") for m in logged[STOCK]
    )


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def blackhole() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` where connects hang: a listener that never accepts and whose
    one-entry accept queue is already full, so the kernel drops further SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=2)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        filler.close()
        listener.close()


@pytest.mark.parametrize("timeout", [0.2, (0.2, 5), Urllib3Timeout(connect=0.2, read=5)])
def test_connect_timeout(env: Env, blackhole: str, timeout: Any) -> None:
    out = differential(lambda s, e: s.get(blackhole + "/", timeout=timeout), env, key="timed out")
    assert out["error"] is requests.ConnectTimeout


@pytest.mark.parametrize("timeout", [0.2, (5, 0.2), Urllib3Timeout(connect=5, read=0.2)])
def test_read_timeout(env: Env, timeout: Any) -> None:
    out = differential(
        lambda s, e: s.get(e.app.url + "/slow?delay=2", timeout=timeout),
        env,
        key="Read timed out",
    )
    assert out["error"] is requests.ReadTimeout


def test_read_timeout_while_streaming(env: Env, fault_server_factory: Callable[..., Any]) -> None:
    def stall_in_body(conn: Any) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        conn.stall(3)

    fault = env.add(fault_server_factory(stall_in_body))
    out = differential(
        lambda s, e: s.get(fault.url + "/", timeout=0.3).content,
        env,
        key="Read timed out",
    )
    assert out["error"] is requests.exceptions.ConnectionError


def test_bad_timeout_tuple(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        try:
            s.get(e.app.url + "/echo", timeout=(1, 2, 3))
        except ValueError as exc:
            return str(exc)

    out = differential(call, env)
    assert "Invalid timeout" in out["value"]


# --- TLS -----------------------------------------------------------------------------------------


def test_https_with_ca_bundle(env: Env) -> None:
    out = differential(lambda s, e: s.get(e.tls.url + "/echo", verify=e.ca), env)
    assert out["status"] == 200


def test_https_ca_directory(env: Env, tmp_path: Any) -> None:
    import shutil
    import subprocess

    shutil.copy(env.ca, tmp_path / "ca.pem")
    rehash = shutil.which("c_rehash") or shutil.which("openssl")
    if rehash is None:
        pytest.skip("no openssl to hash a CA directory")
    args = (
        [rehash, str(tmp_path)]
        if rehash.endswith("c_rehash")
        else [rehash, "rehash", str(tmp_path)]
    )
    subprocess.run(args, check=True, capture_output=True)
    out = differential(lambda s, e: s.get(e.tls.url + "/echo", verify=str(tmp_path)), env)
    assert out["status"] == 200


def test_https_default_verify_trusting_the_test_ca(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify=True (the fast route on https) with requests' default bundle pointed at the test
    CA, the way certifi's bundle would trust a public server."""
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", env.ca)

    def call(s: requests.Session, e: Env) -> Any:
        s.get(e.tls.url + "/bytes/5")
        return s.get(e.tls.url + "/echo")

    if PRELOADED_SSL_CONTEXT is not None:
        # Stock's context was loaded from the bundle at import time, so the patch reaches only
        # fastpool, which loads the bundle into each pool as requests 2.32.5 does.
        assert observe(STOCK, call, env, {})["error"] is requests.exceptions.SSLError
        out = observe(OURS, call, env, {})
    else:
        out = differential(call, env)
    assert out["status"] == 200
    assert out["connections"] == [0, 0, 1]


def test_response_pickles(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        r = pickle.loads(pickle.dumps(s.get(e.app.url + "/headers")))
        headers = sorted((k, v) for k, v in r.headers.items() if k.lower() != "date")
        return r.status_code, r.content, headers, r.cookies.get_dict(), r.url

    out = differential(call, env)
    assert out["value"][0] == 200


def test_https_untrusted_with_default_verify(env: Env) -> None:
    out = differential(
        lambda s, e: s.get(e.tls.url + "/echo"), env, key="CERTIFICATE_VERIFY_FAILED"
    )
    assert out["error"] is requests.exceptions.SSLError


def test_https_wrong_ca(env: Env, untrusted_https_server: AppServer) -> None:
    out = differential(
        lambda s, e: s.get(untrusted_https_server.url + "/", verify=e.ca),
        env,
        key="CERTIFICATE_VERIFY_FAILED",
    )
    assert out["error"] is requests.exceptions.SSLError


def test_https_verify_false(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = s.get(e.tls.url + "/echo", verify=False)
        return r.status_code, sorted({type(w.message).__name__ for w in caught})

    out = differential(call, env)
    assert out["value"] == (200, ["InsecureRequestWarning"])


def test_https_missing_ca_path(env: Env) -> None:
    def call(s: requests.Session, e: Env) -> Any:
        try:
            s.get(e.tls.url + "/", verify="/nonexistent/ca.pem")
        except OSError as exc:
            return type(exc).__name__, str(exc)

    out = differential(call, env)
    assert "invalid path: /nonexistent/ca.pem" in out["value"][1]


def test_https_client_certificate(env: Env, mtls_server: AppServer, client_cert: str) -> None:
    out = differential(
        lambda s, e: s.get(mtls_server.url + "/echo", verify=e.ca, cert=client_cert), env
    )
    assert out["status"] == 200


# --- retries -------------------------------------------------------------------------------------


def test_retry_status_forcelist_raises_retry_error(env: Env) -> None:
    retry = Retry(total=2, status_forcelist=[503], backoff_factor=0, allowed_methods=None)
    out = differential(
        lambda s, e: s.get(e.app.url + "/status/503"),
        env,
        key="too many 503 error responses",
        max_retries=retry,
    )
    assert out["error"] is requests.exceptions.RetryError
    assert out["requests"] == [3, 0, 0]


def test_retry_without_raise_on_status_returns_the_last_response(env: Env) -> None:
    retry = Retry(total=2, status_forcelist=[503], backoff_factor=0, raise_on_status=False)
    out = differential(lambda s, e: s.get(e.app.url + "/status/503"), env, max_retries=retry)
    assert out["status"] == 503
    assert out["requests"] == [3, 0, 0]


# --- proxies -------------------------------------------------------------------------------------


def proxied(call: Call, env: Env, proxy: Any) -> tuple[tuple[dict, list], tuple[dict, list]]:
    """observe() with each adapter (stock first), plus the request lines the proxy saw in that
    run; the proxy's connections and requests are counted with the other servers'."""
    env.add(proxy)  # observe() resets its counters and request lines before each run
    stock = observe(STOCK, call, env, {})
    stock_lines = list(proxy.request_lines)
    ours = observe(OURS, call, env, {})
    return (stock, stock_lines), (ours, list(proxy.request_lines))


def test_http_through_proxy(env: Env, proxy_server: Any) -> None:
    (stock, stock_lines), (ours, our_lines) = proxied(
        lambda s, e: s.get(e.app.url + "/echo?p=1", proxies={"http": proxy_server.url}),
        env,
        proxy_server,
    )
    assert ours == stock and our_lines == stock_lines
    assert stock_lines == [f"GET {env.app.url}/echo?p=1 HTTP/1.1"]


def test_https_through_proxy_connect(env: Env, proxy_server: Any) -> None:
    (stock, stock_lines), (ours, our_lines) = proxied(
        lambda s, e: s.get(e.tls.url + "/echo", proxies={"https": proxy_server.url}, verify=e.ca),
        env,
        proxy_server,
    )
    assert ours == stock
    assert stock["status"] == 200
    # http.client says CONNECT ... HTTP/1.0 before Python 3.12, fastpool always HTTP/1.1.
    stock_version = "HTTP/1.1" if sys.version_info >= (3, 12) else "HTTP/1.0"
    assert stock_lines == [f"CONNECT 127.0.0.1:{env.tls.port} {stock_version}"]
    assert our_lines == [f"CONNECT 127.0.0.1:{env.tls.port} HTTP/1.1"]


@pytest.mark.parametrize("credentials", ["user:secret", "user:wrong"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_proxy_auth(
    env: Env, proxy_server_factory: Callable[..., Any], credentials: str, scheme: str
) -> None:
    proxy = proxy_server_factory(auth=("user", "secret"))
    proxy_url = f"http://{credentials}@127.0.0.1:{proxy.port}"

    def call(s: requests.Session, e: Env) -> Any:
        target = e.app if scheme == "http" else e.tls
        return s.get(target.url + "/echo", proxies={scheme: proxy_url}, verify=e.ca)

    out = differential(call, env, key="407" if scheme == "https" else None)
    if credentials == "user:secret":
        assert out["status"] == 200
    elif scheme == "http":
        assert out["status"] == 407
    else:
        assert out["error"] is requests.exceptions.ProxyError


def test_proxy_refused(env: Env) -> None:
    port = _closed_port()
    out = differential(
        lambda s, e: s.get(e.app.url + "/", proxies={"http": f"http://127.0.0.1:{port}"}),
        env,
        key="Unable to connect to proxy",
    )
    assert out["error"] is requests.exceptions.ProxyError


def test_environment_proxies_and_no_proxy(
    env: Env, proxy_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy_server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")

    def call(s: requests.Session, e: Env) -> Any:
        return s.get(e.app.url + "/echo").status_code, s.get(e.app2.url + "/echo").status_code

    (stock, stock_lines), (ours, our_lines) = proxied(call, env, proxy_server)
    assert ours == stock and our_lines == stock_lines
    assert stock["value"] == (200, 200)
    assert stock_lines == [f"GET {env.app.url}/echo HTTP/1.1"]


def test_invalid_proxy_url(env: Env) -> None:
    out = differential(
        lambda s, e: s.get(e.app.url + "/", proxies={"http": "http://"}),
        env,
        key="Please check proxy URL",
    )
    assert out["error"] is requests.exceptions.InvalidProxyURL


# --- bad URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://127.0.0.1:99999/", requests.exceptions.InvalidURL),
        ("http://127.0.0.1:abc/", requests.exceptions.InvalidURL),
        ("http:///nohost", requests.exceptions.InvalidURL),
        ("ftp://127.0.0.1/", requests.exceptions.InvalidSchema),
    ],
)
def test_bad_urls(env: Env, url: str, error: type) -> None:
    out = differential(lambda s, e: s.get(url), env)
    assert out["error"] is error


def test_header_with_newline_is_rejected(env: Env) -> None:
    out = differential(
        lambda s, e: s.get(e.app.url + "/echo", headers={"X-Bad": "a\r\nInjected: 1"}),
        env,
    )
    assert out["error"] is requests.exceptions.InvalidHeader
    assert out["requests"] == [0, 0, 0]
