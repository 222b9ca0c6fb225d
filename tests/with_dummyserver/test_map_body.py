"""``map(on_body=...)``: each body handed to a callback piece by piece as it arrives.

The pieces joined are the body one request reads (``Session.get().content``,
``PoolManager.request().data``); a failure within a body is the error ``iter_content`` (or
urllib3's stream) raises for it, compared with stock requests on the same server. A slow body
is handed over while it still arrives and does not hold up the other requests; leaving early,
an error in the callback and the deadline leave no slot or socket behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import urllib3
from dummyserver import AppServer
from dummyserver.fault import FaultServer, send_raw
from dummyserver.server import Conn

import fastpool

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.usefixtures("clean_environment")]

HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def corpus(http: str, https: str) -> list[str]:
    return [
        f"{http}/bytes/100",
        f"{http}/bytes/300000",  # many pieces
        f"{https}/bytes/70000",
        f"{https}/chunked/3000?chunk=7",
        f"{http}/chunked/3000?chunk=5",
        f"{http}/gzip",
        f"{http}/deflate",
        f"{http}/no-length?n=5000",  # to the close
        f"{http}/status/204",
        f"{http}/redirect/2",
        f"{http}/close",
    ]


def comparable(body: bytes) -> Any:
    """``body``, without the echo server's connection counter (it differs between clients)."""
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict):
            data.pop("connection", None)
            return data
    return body


class Pieces:
    """An ``on_body`` that keeps each request's pieces, and the thread it was called in."""

    def __init__(self) -> None:
        self.got: dict[Any, list[bytes]] = {}
        self.threads: set[int] = set()

    def __call__(self, request: Any, response: Any, piece: bytes) -> None:
        assert isinstance(piece, bytes) and piece
        self.threads.add(threading.get_ident())
        self.got.setdefault(self.key(request), []).append(piece)

    @staticmethod
    def key(request: Any) -> Any:
        return request if isinstance(request, str) else id(request)

    def body(self, request: Any) -> bytes:
        return b"".join(self.got.get(self.key(request), []))


def test_session_pieces_are_the_content(
    app_server: AppServer, https_server: AppServer, ca_bundle: str
) -> None:
    urls = corpus(app_server.url, https_server.url)
    with requests.Session() as stock:
        expected = {url: stock.get(url, verify=ca_bundle) for url in urls}
    pieces = Pieces()
    with fastpool.Session() as session:
        session.verify = ca_bundle
        results = list(session.map(urls, concurrency=4, on_body=pieces))
    assert sorted(r.request for r in results) == sorted(urls)
    for result in results:
        assert result.error is None, (result.request, result.error)
        want = expected[result.request]
        response = result.response
        assert (response.status_code, response.url) == (want.status_code, want.url)
        assert [h.url for h in response.history] == [h.url for h in want.history]
        assert comparable(pieces.body(result.request)) == comparable(want.content), result.request
        # consumed, as after iter_content: the body went to the callback
        with pytest.raises(RuntimeError, match="already consumed"):
            response.content  # noqa: B018
    assert pieces.threads == {threading.get_ident()}  # called in the caller's thread


def test_poolmanager_pieces_are_the_data(
    app_server: AppServer, https_server: AppServer, ca_bundle: str
) -> None:
    urls = corpus(app_server.url, https_server.url)
    with urllib3.PoolManager(ca_certs=ca_bundle) as stock:
        expected = {url: stock.request("GET", url) for url in urls}
    pieces = Pieces()
    with fastpool.PoolManager(ca_certs=ca_bundle) as manager:
        results = list(manager.map(urls, concurrency=4, on_body=pieces))
    for result in results:
        assert result.error is None, (result.request, result.error)
        want = expected[result.request]
        assert result.response.status == want.status
        assert comparable(pieces.body(result.request)) == comparable(want.data), result.request
        assert result.response.data == b""  # read already, as after urllib3's stream()


def test_a_body_is_handed_over_as_it_arrives(
    app_server: AppServer, fault_server_factory: Callable[..., FaultServer]
) -> None:
    # The slow server sends the first chunk, then waits until the callback has had it and the
    # other request has ended: a body handed over only at its end, or read in a way that
    # holds the others up, would keep it waiting 5 s.
    first_seen, quick_done = threading.Event(), threading.Event()

    def slow(conn: Conn) -> None:
        if conn.read_request() is None:
            return
        conn.send(HEAD_CHUNKED + b"5\r\nfirst\r\n")
        first_seen.wait(5)
        quick_done.wait(5)
        conn.send(b"4\r\nlast\r\n0\r\n\r\n")

    server = fault_server_factory(slow)
    slow_url, quick_url = server.url + "/", app_server.url + "/bytes/10"
    pieces = Pieces()
    order: list[str] = []

    def on_body(request: Any, response: Any, piece: bytes) -> None:
        pieces(request, response, piece)
        if piece == b"first":
            order.append("first piece")
            first_seen.set()

    started = time.monotonic()
    with fastpool.Session() as session:
        for result in session.map([slow_url, quick_url], on_body=on_body):
            assert result.error is None, result.error
            order.append(result.request)
            if result.request == quick_url:
                quick_done.set()
    assert time.monotonic() - started < 4
    assert pieces.got[slow_url] == [b"first", b"last"]
    assert order[-1] == slow_url  # after the other request, and after its own first piece
    assert sorted(order[:2]) == sorted(["first piece", quick_url])


CUT = HEAD_CHUNKED + b"5\r\nhello\r\n10\r\nonly"


@pytest.mark.parametrize(
    ("script", "timeout"),
    [(send_raw(CUT), 5.0), (send_raw(CUT, then="keep"), 0.5)],
    ids=["cut", "read-timeout"],
)
def test_a_failure_within_the_body_is_iter_contents_error(
    script: Any, timeout: float, fault_server_factory: Callable[..., FaultServer]
) -> None:
    server = fault_server_factory(script)
    url = server.url + "/"
    with requests.Session() as stock:
        response = stock.get(url, stream=True, timeout=timeout)
        with pytest.raises(requests.RequestException) as stock_error:
            b"".join(response.iter_content(None))
    pieces = Pieces()
    with fastpool.Session() as session:
        (result,) = session.map([url], timeout=timeout, on_body=pieces)
        assert result.response is None
        assert type(result.error) is type(stock_error.value), result.error
        # urllib3's error under requests' (fastpool's is a subclass of it; the numbers in
        # IncompleteRead count what the failing read got, and its pieces are not stock's)
        assert isinstance(result.error.args[0], type(stock_error.value.args[0]))
        # what arrived before the failure was handed over (stock's read_chunked keeps the
        # piece of a chunk it could not finish: a callback gets bytes as they arrive)
        assert pieces.body(url) == b"helloonly"
        stats = session.pool_stats().total  # the Session's own pools
        assert (stats.idle, stats.in_use) == (0, 0)  # closed, its slot back
    with fastpool.PoolManager() as manager:
        item = ("GET", url, {"timeout": timeout, "retries": False})
        (result,) = manager.map([item], on_body=Pieces())
        stock_reason = type(stock_error.value.args[0])  # urllib3's, under requests'
        assert isinstance(result.error, stock_reason), result.error
        pool = manager.connection_from_url(url)
        assert (pool.pool.idle, pool.pool.in_use) == (0, 0)


def test_the_deadline_ends_a_slow_body(fault_server_factory: Callable[..., FaultServer]) -> None:
    server = fault_server_factory(send_raw(HEAD_CHUNKED + b"5\r\nhello\r\n", then="keep"))
    url = server.url + "/"
    pieces = Pieces()
    with fastpool.Session() as session:
        started = time.monotonic()
        (result,) = session.map([url], timeout=10, deadline=0.5, on_body=pieces)
        assert time.monotonic() - started < 5
        assert isinstance(result.error, fastpool.DeadlineExceeded), result.error
        assert pieces.body(url) == b"hello"
        stats = session.pool_stats().total  # the Session's own pools
        assert (stats.idle, stats.in_use) == (0, 0)  # closed, its slot back


def test_an_error_in_the_callback_leaves_no_slot_behind(
    fault_server_factory: Callable[..., FaultServer],
) -> None:
    server = fault_server_factory(send_raw(HEAD_CHUNKED + b"5\r\nhello\r\n", then="keep"))
    url = server.url + "/"
    seen: list[bytes] = []

    def on_body(request: Any, response: Any, piece: bytes) -> None:
        seen.append(piece)
        raise KeyError("the caller's own error")

    with fastpool.PoolManager(maxsize=1, block=True) as manager:
        with pytest.raises(KeyError, match="the caller's own error"):
            for _ in manager.map([url], on_body=on_body):
                pass
        pool = manager.connection_from_url(url)
        assert seen == [b"hello"]
        assert (pool.pool.idle, pool.pool.in_use) == (0, 0)  # closed, its slot back


def test_leaving_mid_body_gives_the_slot_back(
    app_server: AppServer, fault_server_factory: Callable[..., FaultServer]
) -> None:
    server = fault_server_factory(send_raw(HEAD_CHUNKED + b"5\r\nhello\r\n", then="keep"))
    slow = server.url + "/"
    later = app_server.url + "/slow?delay=0.3"  # ends once the slow body is under way
    seen: list[bytes] = []
    with fastpool.PoolManager(maxsize=1, block=True) as manager:
        results = manager.map([slow, later], on_body=lambda _req, _resp, piece: seen.append(piece))
        first = next(results)
        assert first.request == later
        assert seen[:1] == [b"hello"]  # the slow body is under way, waiting in the loop
        pool = manager.connection_from_url(slow)
        assert pool.pool.in_use == 1
        results.close()
        assert (pool.pool.idle, pool.pool.in_use) == (0, 0)  # closed, its slot back


def test_a_foreign_adapters_body_is_read_as_iter_content_reads_it() -> None:
    # An adapter that is not fastpool's (requests-file's, a test suite's own) may answer with a
    # plain file as ``raw``: it is read whole in this thread, as iter_content reads it.
    class FileAdapter(requests.adapters.BaseAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            response = requests.Response()
            response.status_code, response.url, response.request = 200, request.url, request
            response.raw = io.BytesIO(b"from a file " * 10_000)
            return response

        def close(self) -> None:
            pass

    url = "file-test://here/data"
    pieces = Pieces()
    with fastpool.Session() as session:
        session.mount("file-test://", FileAdapter())
        expected = b"".join(session.get(url, stream=True).iter_content(None))
        (result,) = session.map([url], on_body=pieces)
    assert result.error is None, result.error
    assert pieces.body(url) == expected == b"from a file " * 10_000
    assert len(pieces.got[url]) > 1  # in pieces, as they are read


def test_bad_arguments_are_refused(app_server: AppServer) -> None:
    url = app_server.url + "/bytes/5"
    with fastpool.PoolManager() as manager:
        with pytest.raises(TypeError, match="on_body must be a callable"):
            manager.map([url], on_body="print")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="on_body needs light=False"):
            manager.map([url], light=True, on_body=print)
        (result,) = manager.map([("GET", url, {"preload_content": True})], on_body=print)
        assert isinstance(result.error, ValueError)
        assert "preload_content=True needs on_body=None" in str(result.error)
    with fastpool.Session() as session, pytest.raises(TypeError, match="on_body must be"):
        session.map([url], on_body=42)  # type: ignore[arg-type]
