"""When a response gives its connection back, side by side with urllib3 (its contract).

A response holds its connection until its body has been read to the end, released
(``release_conn``, ``drain_conn``) or closed, a body that is empty from the start included:
``r.connection`` is set until then, ``close()`` first closes the connection, and
``shutdown()`` after the release raises. Reading, as requests does for every response it does
not stream, gives the connection back for reuse.
"""

from __future__ import annotations

import inspect
import io
from typing import Any

import pytest
import requests
import urllib3
import urllib3.response

import fastpool

MODULES = {"urllib3": urllib3, "fastpool": fastpool}
EMPTY = ["/status/204", "/bytes/0", "/echo-head"]


def _each(app_server: Any, path: str, step: Any) -> dict[str, Any]:
    """``step(pool, response)`` for urllib3 and fastpool, each on a pool of its own."""
    seen = {}
    for name, module in MODULES.items():
        app_server.reset_counts()
        method = "HEAD" if path == "/echo-head" else "GET"
        with module.HTTPConnectionPool("127.0.0.1", app_server.port, maxsize=1) as pool:
            r = pool.urlopen(method, path.replace("-head", ""), preload_content=False)
            seen[name] = step(pool, r)
    assert seen["fastpool"] == seen["urllib3"], seen
    return seen


@pytest.mark.parametrize("path", EMPTY)
def test_an_empty_body_holds_its_connection_until_read(app_server: Any, path: str) -> None:
    def step(pool: Any, r: Any) -> Any:
        held = r.connection is not None
        data = r.read()
        again = pool.urlopen("GET", "/echo", preload_content=True)
        return held, data, r.connection, again.status, app_server.connections

    assert _each(app_server, path, step)["fastpool"] == (True, b"", None, 200, 1)


@pytest.mark.parametrize("path", EMPTY)
def test_close_before_reading_closes_the_connection(app_server: Any, path: str) -> None:
    def step(pool: Any, r: Any) -> Any:
        r.close()
        pool.urlopen("GET", "/echo")
        return app_server.connections

    assert _each(app_server, path, step)["fastpool"] == 2


@pytest.mark.parametrize("how", ["drain_conn", "stream"])
def test_drain_and_stream_give_it_back(app_server: Any, how: str) -> None:
    def step(pool: Any, r: Any) -> Any:
        if how == "stream":
            assert list(r.stream()) == []
        else:
            r.drain_conn()
        pool.urlopen("GET", "/echo")
        return r.connection, app_server.connections

    assert _each(app_server, "/bytes/0", step)["fastpool"] == (None, 1)


def test_release_of_an_unread_empty_body_keeps_the_connection(app_server: Any) -> None:
    # A deliberate difference (docs/differences.md): urllib3 pools the connection with its
    # response unread, http.client then refuses the next request on it, and urllib3 dials
    # again; fastpool's empty body has ended, so the connection goes back clean and is reused.
    def step(pool: Any, r: Any) -> Any:
        r.release_conn()
        pool.urlopen("GET", "/echo")
        return r.connection, app_server.connections

    seen = {}
    for name, module in MODULES.items():
        app_server.reset_counts()
        with module.HTTPConnectionPool("127.0.0.1", app_server.port, maxsize=1) as pool:
            seen[name] = step(pool, pool.urlopen("GET", "/bytes/0", preload_content=False))
    assert seen == {"urllib3": (None, 2), "fastpool": (None, 1)}


@pytest.mark.skipif(
    "already been released" not in inspect.getsource(urllib3.response.HTTPResponse.shutdown),
    reason=f"urllib3 {urllib3.__version__}'s shutdown() predates this rule (fastpool keeps it)",
)
def test_shutdown_after_release_raises(app_server: Any) -> None:
    def step(pool: Any, r: Any) -> Any:
        r.drain_conn()
        r.release_conn()
        with pytest.raises(RuntimeError, match="already been released to the pool") as info:
            r.shutdown()
        return str(info.value)

    _each(app_server, "/bytes/10", step)


def test_shutdown_after_release_raises_on_every_urllib3(app_server: Any) -> None:
    with fastpool.HTTPConnectionPool("127.0.0.1", app_server.port) as pool:
        r = pool.urlopen("GET", "/bytes/10", preload_content=False)
        r.drain_conn()
        r.release_conn()
        with pytest.raises(RuntimeError, match="already been released to the pool"):
            r.shutdown()


def test_the_response_is_a_urllib3_response(app_server: Any) -> None:
    with fastpool.PoolManager() as manager:
        r = manager.request("GET", app_server.url + "/redirect/1")
    assert isinstance(r, urllib3.HTTPResponse)
    assert isinstance(r, urllib3.BaseHTTPResponse)
    assert r._original_response is r._original_response  # one object, as http.client's
    assert r._original_response.headers is r._original_response.msg
    assert r._original_response.version == 11


@pytest.mark.parametrize("method,path", [("GET", "/status/204"), ("HEAD", "/echo")])
def test_requests_reuses_the_connection_after_an_empty_body(
    app_server: Any, method: str, path: str
) -> None:
    # requests reads every response it does not stream: that read gives the connection back,
    # so empty bodies (204, HEAD) do not cost a connection each, with stock or with fastpool.
    for session in (requests.Session(), fastpool.Session()):
        app_server.reset_counts()
        with session:
            for _ in range(3):
                assert session.request(method, app_server.url + path).content == b""
        assert app_server.connections == 1, type(session)


@pytest.mark.parametrize("how", ["with", "BufferedReader"])
def test_an_unread_empty_body_is_not_closed_yet(app_server: Any, how: str) -> None:
    # Until it is read the empty body holds its connection, and io sees an open file: a
    # ``with`` block and a BufferedReader read it (and so give the connection back).
    def step(pool: Any, r: Any) -> Any:
        closed_before = r.closed
        if how == "with":
            with r:
                data = r.read()
        else:
            data = io.BufferedReader(r).read()
        pool.urlopen("GET", "/echo")
        return closed_before, data, app_server.connections

    assert _each(app_server, "/bytes/0", step)["fastpool"] == (False, b"", 1)
