"""``Session.map`` answers as a loop of ``Session.get``, ``request`` or ``send`` on the same
Session does: each test runs both on the same server and compares what the caller and the
server see. Found by a hostile review (each used to differ). Where the behaviour is stock's
too, a loop of stock ``requests.Session`` (``urllib3.PoolManager`` for a manager) on the same
server is the third column, the oracle.
"""

from __future__ import annotations

import gc
import hashlib
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
import requests
import requests.adapters
import requests.cookies
import urllib3
from dummyserver import AppServer
from requests.auth import HTTPDigestAuth
from urllib3.util.retry import Retry

import fastpool


def _answers(results: Any) -> list[Any]:
    return [r.response if r.error is None else r.error for r in results]


def _lines(server: AppServer) -> list[str]:
    return [line for _, line in server.request_log]


# --- a redirect to another host name -------------------------------------------------------------
@pytest.mark.parametrize("per_host", [None, 1])
def test_a_redirect_to_another_host_name_is_followed(app_server: AppServer, per_host: Any) -> None:
    # 127.0.0.1 -> localhost (the same server): the hop's slot ends at its own host (the map
    # raised ValueError when the redirect's hop ended, and lost every other result)
    target = f"http://localhost:{app_server.port}/echo"
    url = f"{app_server.url}/redirect-to?url={target}"
    other = f"http://localhost:{app_server.port}/slow?delay=0.2"
    with requests.Session() as stock:
        oracle = stock.get(url, timeout=5)
    with fastpool.Session() as session:
        one = session.get(url, timeout=5)
        results = list(session.map([url, other], concurrency=2, per_host=per_host, timeout=5))
    first, second = _answers(results) if results[0].request == url else _answers(results[::-1])
    assert (first.status_code, first.url) == (one.status_code, one.url) == (200, target)
    assert (oracle.status_code, oracle.url) == (one.status_code, one.url)
    hops = [[(r.status_code, r.url) for r in x.history] for x in (first, one, oracle)]
    assert hops[0] == hops[1] == hops[2] == [(302, url)]
    assert second.status_code == 200


def test_a_manager_map_follows_a_redirect_to_another_host_name(app_server: AppServer) -> None:
    # stock urllib3.PoolManager, a loop on the same server, is the oracle: the same answers,
    # the same hop in each one's retries.history, the same requests (in the map's own order)
    target = f"http://localhost:{app_server.port}/echo"
    url = f"{app_server.url}/redirect-to?url={target}"

    def seen(response: Any) -> tuple[Any, ...]:
        hops = [(h.method, h.url, h.status, h.redirect_location) for h in response.retries.history]
        return (response.status, response.url, hops)

    app_server.reset_counts()
    with urllib3.PoolManager() as stock:
        expected = [seen(stock.request("GET", url)) for _ in range(2)]
    stock_lines = _lines(app_server)
    app_server.reset_counts()
    with fastpool.PoolManager() as manager:
        results = list(manager.map([url, url], concurrency=2, per_host=1))
        assert [r.error for r in results] == [None, None]
        assert [seen(r.response) for r in results] == expected
        assert manager.stats().total.in_use == 0
    assert expected[0] == (200, target, [("GET", url, 302, target)])
    assert sorted(_lines(app_server)) == sorted(stock_lines)
    assert stock_lines == [f"GET /redirect-to?url={target} HTTP/1.1", "GET /echo HTTP/1.1"] * 2


# --- digest auth: a 401 answered from a response hook ------------------------------------------
_REALM, _NONCE = "fastpool", "abc123"


class _DigestHandler(BaseHTTPRequestHandler):
    """401 with a digest challenge, or 200 with the nonce count it was given."""

    seen: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        given = self.headers.get("Authorization", "")
        nc = re.search(r"nc=(\w+)", given)
        if given.startswith("Digest ") and nc and self._valid(given):
            body = f"nc={nc.group(1)}".encode()
            self.send_response(200)
        else:
            body = b""
            self.send_response(401)
            challenge = f'Digest realm="{_REALM}", nonce="{_NONCE}", qop="auth", algorithm=MD5'
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _valid(self, given: str) -> bool:
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', given[len("Digest ") :]))

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"u:{_REALM}:p")
        ha2 = md5(f"GET:{fields.get('uri', '')}")
        expected = md5(
            f"{ha1}:{_NONCE}:{fields.get('nc')}:{fields.get('cnonce')}:{fields.get('qop')}:{ha2}"
        )
        return fields.get("response") == expected


@pytest.fixture
def digest_url() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DigestHandler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/digest", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_digest_auth_answers_every_item_as_a_loop_of_get(digest_url: Any) -> None:
    base, seen = digest_url
    urls = [f"{base}?i={i}" for i in range(4)]
    got = {}
    for mode in ("stock", "one", "map"):
        seen.clear()
        stock_or_not: Any = requests.Session() if mode == "stock" else fastpool.Session()
        with stock_or_not as session:
            session.auth = HTTPDigestAuth("u", "p")
            if mode in ("stock", "one"):
                answers = [session.get(u, timeout=5) for u in urls]
            else:
                answers = _answers(session.map(urls, concurrency=4, timeout=5))
        got[mode] = (
            sorted((r.url, r.status_code, len(r.history), r.text) for r in answers),
            len(seen),
        )
    assert got["one"] == got["stock"]
    assert got["map"] == got["one"]
    assert [status for _, status, _, _ in got["map"][0]] == [200] * 4
    assert got["map"][1] == 5  # one 401 round trip, then the nonce is reused


# --- a PreparedRequest goes as send() sends it -------------------------------------------------
def test_a_prepared_request_takes_send_s_settings_not_the_environment_s(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # send(prepared) uses the Session's verify (request() would merge REQUESTS_CA_BUNDLE in)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    url = f"{app_server.url}/bytes/4"
    seen: list[tuple[str, Any]] = []

    def hook(response: Any, **kwargs: Any) -> None:
        seen.append(("verify", kwargs.get("verify")))

    with fastpool.Session() as session:
        prep = session.prepare_request(requests.Request("GET", url, hooks={"response": hook}))
        session.send(prep, timeout=5)
        list(session.map([prep], timeout=5))
        session.get(url, hooks={"response": hook}, timeout=5)
    with requests.Session() as stock:
        stock_prep = stock.prepare_request(requests.Request("GET", url, hooks={"response": hook}))
        stock.send(stock_prep, timeout=5)
        stock.get(url, hooks={"response": hook}, timeout=5)
    assert seen[0] == seen[1] == ("verify", True)
    # stock: send() takes the Session's verify, request() the environment's (so it is seen)
    assert seen[3:] == [("verify", True), ("verify", str(bundle))]
    assert seen[2] == seen[4]


# --- the history of a followed redirect --------------------------------------------------------
def test_the_first_response_of_a_followed_redirect_has_no_next(app_server: AppServer) -> None:
    url = f"{app_server.url}/redirect/2"
    with requests.Session() as stock:
        oracle = stock.get(url, timeout=5)
    with fastpool.Session() as session:
        one = session.get(url, timeout=5)
        (mapped,) = _answers(session.map([url], timeout=5))
    assert [r.next is None for r in mapped.history] == [r.next is None for r in one.history]
    assert mapped.history[0].next is None
    # as stock's: a hop sent with allow_redirects=False (the second) has the next one's request
    nexts = [[r.next and r.next.url for r in x.history] for x in (oracle, one, mapped)]
    assert nexts[0] == nexts[1] == nexts[2] == [None, f"{app_server.url}/echo"]


# --- a Session subclass's resolve_redirects follows them ----------------------------------------
@pytest.mark.parametrize("prepared", [False, True], ids=["url", "prepared"])
def test_a_subclass_s_resolve_redirects_follows_them(app_server: AppServer, prepared: bool) -> None:
    calls: list[Any] = []

    class Logging(fastpool.Session):
        def resolve_redirects(self, resp: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append((resp.status_code, kwargs.get("yield_requests", False)))
            yield from super().resolve_redirects(resp, req, *args, **kwargs)

    class StockLogging(requests.Session):
        def resolve_redirects(self, resp: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append((resp.status_code, kwargs.get("yield_requests", False)))
            yield from super().resolve_redirects(resp, req, *args, **kwargs)

    url = f"{app_server.url}/redirect/2"
    with StockLogging() as stock:
        if prepared:
            oracle = stock.send(stock.prepare_request(requests.Request("GET", url)), timeout=5)
        else:
            oracle = stock.get(url, timeout=5)
        stock_calls, calls[:] = list(calls), []
    with Logging() as session:
        item: Any = session.prepare_request(requests.Request("GET", url)) if prepared else url
        one = session.send(item, timeout=5) if prepared else session.get(url, timeout=5)
        expected, calls[:] = list(calls), []
        (mapped,) = _answers(session.map([item], timeout=5))
    assert expected == stock_calls
    assert calls == expected
    assert (False in [y for _, y in calls]) is True  # followed as a generator of responses
    assert [r.status_code for r in one.history] == [r.status_code for r in oracle.history]
    assert [r.status_code for r in mapped.history] == [r.status_code for r in one.history]
    assert mapped.url == one.url == oracle.url


def test_a_redirect_is_followed_before_the_next_item_starts(app_server: AppServer) -> None:
    # With concurrency=1 the map sends what a loop of Session.get sends, in its order: each
    # hop of an item's redirects before the next item (a hop used to wait behind the queued
    # items).
    urls = [
        f"{app_server.url}/redirect/2",
        f"{app_server.url}/echo",
        f"{app_server.url}/redirect/1",
    ]
    with requests.Session() as stock:
        stock.get(urls[1], timeout=5)
        app_server.reset_counts()
        oracle = [stock.get(url, timeout=5) for url in urls]
        stock_lines = _lines(app_server)
    with fastpool.Session() as session:
        session.get(urls[1], timeout=5)  # (a connection to reuse, for both)
        app_server.reset_counts()
        one = [session.get(url, timeout=5) for url in urls]
        looped = _lines(app_server)
        app_server.reset_counts()
        results = list(session.map(urls, concurrency=1, timeout=5))
        mapped = _lines(app_server)
    assert stock_lines == [
        "GET /redirect/2 HTTP/1.1", "GET /redirect/1 HTTP/1.1", "GET /echo HTTP/1.1",
        "GET /echo HTTP/1.1",
        "GET /redirect/1 HTTP/1.1", "GET /echo HTTP/1.1",
    ]  # fmt: skip
    assert looped == stock_lines
    assert mapped == looped
    assert [r.request for r in results] == urls  # each ended before the next began
    assert [r.url for r in one] == [r.url for r in oracle]
    assert [r.response.url for r in results] == [r.url for r in one]
    assert [len(r.history) for r in oracle] == [len(r.history) for r in one] == [2, 0, 1]
    assert [len(r.response.history) for r in results] == [2, 0, 1]


def test_a_cookie_set_by_a_redirect_s_last_hop_goes_with_the_next_item(
    app_server: AppServer,
) -> None:
    # /redirect-to -> /cookies/set?k=v (sets it) -> /cookies; the next item, /cookies, is
    # sent with the cookie, as the loop sends it.
    setter = quote(f"{app_server.url}/cookies/set?k=v", safe="")
    urls = [f"{app_server.url}/redirect-to?url={setter}", f"{app_server.url}/cookies"]
    answers, jars, lines = [], [], []
    for run in ("stock", "loop", "map"):
        app_server.reset_counts()
        stock_or_not: Any = requests.Session() if run == "stock" else fastpool.Session()
        with stock_or_not as session:
            if run in ("stock", "loop"):
                got = [session.get(url, timeout=5) for url in urls]
            else:
                got = [r.response for r in session.map(urls, concurrency=1, timeout=5)]
            jars.append(sorted((c.domain, c.path, c.name, c.value) for c in session.cookies))
        answers.append([(r.status_code, r.url, r.json()) for r in got])
        lines.append(_lines(app_server))
    assert answers[0][1] == (200, urls[1], {"cookies": {"k": "v"}, "header": "k=v"})
    assert answers[1] == answers[0]
    assert answers[2] == answers[1]
    assert jars[0] == [("127.0.0.1", "/", "k", "v")]
    assert jars[2] == jars[1] == jars[0]
    set_k, cookies = "GET /cookies/set?k=v HTTP/1.1", "GET /cookies HTTP/1.1"
    assert lines[0][1:] == [set_k, cookies, cookies]
    assert lines[2] == lines[1] == lines[0]


@pytest.mark.parametrize("api", ["session", "manager"])
def test_a_retry_is_sent_before_the_next_item_starts(app_server: AppServer, api: str) -> None:
    # urllib3's Retry on a 503 (no backoff): with concurrency=1 the retry goes out before the
    # next item, as a loop of one request at a time sends it.
    # stock (requests.Session with the Retry mounted, or urllib3.PoolManager) is the oracle.
    retry = Retry(total=1, status_forcelist=[503], backoff_factor=0, raise_on_status=False)
    urls = [f"{app_server.url}/status/503", f"{app_server.url}/echo"]
    lines = []
    for run in ("stock", "loop", "map"):
        app_server.reset_counts()
        if run == "stock" and api == "session":
            with requests.Session() as stock:
                stock.mount("http://", requests.adapters.HTTPAdapter(max_retries=retry))
                statuses = [stock.get(url, timeout=5).status_code for url in urls]
        elif run == "stock":
            with urllib3.PoolManager(retries=retry) as pool:
                statuses = [pool.request("GET", url).status for url in urls]
        elif api == "session":
            with fastpool.Session() as session:
                session.mount("http://", fastpool.HTTPAdapter(max_retries=retry))
                if run == "loop":
                    statuses = [session.get(url, timeout=5).status_code for url in urls]
                else:
                    mapped = list(session.map(urls, concurrency=1, timeout=5))
                    statuses = [r.response.status_code for r in mapped]
        else:
            with fastpool.PoolManager(retries=retry) as manager:
                if run == "loop":
                    statuses = [manager.request("GET", url).status for url in urls]
                else:
                    mapped = list(manager.map(urls, concurrency=1))
                    statuses = [r.response.status for r in mapped]
        assert statuses == [503, 200]
        lines.append(_lines(app_server))
    assert lines[0] == ["GET /status/503 HTTP/1.1"] * 2 + ["GET /echo HTTP/1.1"]
    assert lines[1] == lines[0]
    assert lines[2] == lines[1]


def test_the_next_item_starts_while_a_retry_waits_out_its_backoff(app_server: AppServer) -> None:
    # The deliberate difference (docs/differences.md): a loop of one request at a time sleeps
    # through urllib3's backoff; the map starts the next item meanwhile, even with
    # concurrency=1, and sends the retry first once the backoff has passed. The loop is
    # stock's: a loop on stock urllib3.PoolManager sends what fastpool's loop sends.
    retry = Retry(total=2, status_forcelist=[503], backoff_factor=0.2, raise_on_status=False)
    urls = [f"{app_server.url}/status/503", f"{app_server.url}/echo"]
    lines = []
    for run in ("stock", "loop", "map"):
        app_server.reset_counts()
        pools: Any = urllib3.PoolManager if run == "stock" else fastpool.PoolManager
        with pools(retries=retry) as manager:
            if run in ("stock", "loop"):
                statuses = [manager.request("GET", url).status for url in urls]
            else:
                statuses = [r.response.status for r in manager.map(urls, concurrency=1)]
        assert sorted(statuses) == [200, 503]
        lines.append(_lines(app_server))
    busy, echo = "GET /status/503 HTTP/1.1", "GET /echo HTTP/1.1"
    assert lines[0] == [busy, busy, busy, echo]  # (the second retry waits 0.4 s)
    assert lines[1] == lines[0]
    assert lines[2] == [busy, busy, echo, busy]


# --- Response.elapsed ---------------------------------------------------------------------------
@pytest.mark.parametrize("redirected", [False, True])
def test_elapsed_is_the_time_to_the_answer_as_stock_measures_it(
    app_server: AppServer, redirected: bool
) -> None:
    # Each hop's elapsed: from sending its request to its answer's head (0.3 s of the server's
    # sleep), the same on stock's loop, fastpool's and the map's. (The map mixed two clocks:
    # every elapsed was 57 years, time.time() less perf_counter().)
    url = f"{app_server.url}/slow?delay=0.3"
    if redirected:
        url = f"{app_server.url}/redirect-to?url={quote(url, safe='')}"

    def hops(response: Any) -> list[float]:
        return [r.elapsed.total_seconds() for r in (*response.history, response)]

    with requests.Session() as stock:
        expected = hops(stock.get(url, timeout=5))
    with fastpool.Session() as session:
        one = hops(session.get(url, timeout=5))
        started = time.monotonic()
        (mapped,) = _answers(session.map([url], timeout=5))
        took = time.monotonic() - started
    for seconds in (expected, one, hops(mapped)):
        assert len(seconds) == (2 if redirected else 1)
        assert 0.3 <= seconds[-1] < 3.0, seconds  # the slow hop
        if redirected:
            assert 0.0 <= seconds[0] < 0.3, seconds  # the redirect's, answered at once
    assert sum(hops(mapped)) <= took


def test_elapsed_stops_at_the_head_as_stock_s_does() -> None:
    # A head at once, then its body 0.4 s later: requests' elapsed runs to the head (the body
    # is read after it), and so does the map's, whose loop reads the body before it yields.
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        for _ in range(3):  # stock's request, fastpool's, the map's: a connection each
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
                time.sleep(0.4)
                conn.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    try:
        with requests.Session() as stock:
            expected = stock.get(url, timeout=5)
        with fastpool.Session() as session:
            one = session.get(url, timeout=5)
            (mapped,) = _answers(session.map([url], timeout=5))
    finally:
        server.close()
        thread.join(5)
    for response in (expected, one, mapped):
        assert response.content == b"ok"
        assert 0.0 <= response.elapsed.total_seconds() < 0.3, response.elapsed


class _RefusingJar(requests.cookies.RequestsCookieJar):
    def extract_cookies(self, response: Any, request: Any) -> None:
        raise ValueError("this jar takes no cookie")


class _SendWrapped(fastpool.HTTPAdapter):
    def send(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return super().send(*args, **kwargs)  # (the map then sends each hop whole)


@pytest.mark.parametrize("way", ["map", "map-sent-whole", "fastpool-get", "stock-get"])
def test_an_error_result_dropped_frees_its_response_at_once(
    app_server: AppServer, way: str
) -> None:
    # Errors kept by the caller (a map's results; a loop's list of exceptions), then dropped:
    # each response the errors' tracebacks held is freed at once, without the collector, as
    # with stock one at a time. A frame of the map kept the last error, making each a cycle
    # with its response, which the collector then freed, at times finalizing its socket first.
    url = f"{app_server.url}/headers"  # (two Set-Cookie)
    raws: list[Any] = []

    def keep(response: Any, **kwargs: Any) -> None:  # (the map then takes the general steps)
        raws.append(weakref.ref(response.raw))

    make = requests.Session if way == "stock-get" else fastpool.Session
    gc.collect()
    gc.disable()
    try:
        with make() as session:
            session.cookies = _RefusingJar()
            if way == "map-sent-whole":
                session.mount("http://", _SendWrapped())
            errors: list[Any] = []
            if way.startswith("map"):
                hooked = [requests.Request("GET", url, hooks={"response": keep})] * 3
                results = session.map(hooked, concurrency=1, timeout=5)
                errors = [r.error for r in results]
            else:
                for _ in range(3):
                    try:
                        session.get(url, hooks={"response": keep}, timeout=5)
                    except ValueError as e:
                        errors.append(e)
            assert [type(e).__name__ for e in errors] == ["ValueError"] * 3
            assert len(raws) == 3
            del errors
            assert [r() for r in raws] == [None] * 3
    finally:
        gc.enable()
