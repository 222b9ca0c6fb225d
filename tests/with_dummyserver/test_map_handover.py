"""What the multiplexed loop hands ``urlopen`` when it has read the answer: the head it parsed
(not parsed a second time), and a socket left non-blocking when the whole answer is read (no
timeout set and unset for nothing), which gets its timeout back whenever it is read from.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from dummyserver import AppServer
from urllib3.exceptions import ReadTimeoutError

import fastpool
import fastpool.connection
from fastpool.connection import UNSET_TIMEOUT

pytestmark = pytest.mark.filterwarnings("error")


def idle_connection(pool: Any) -> Any:
    """The pool's one idle connection (checked out and back in: the pool keeps it)."""
    assert pool.pool.idle == 1
    conn = pool.pool.checkout(0)  # the queue's own checkout: no look at the socket
    pool.pool.checkin(conn)
    assert conn.sock is not None
    return conn


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_head_the_loop_parsed_is_not_parsed_again(
    app_server: AppServer, parses: list[str], method: str
) -> None:
    url = f"{app_server.url}/bytes/100"
    with fastpool.PoolManager() as manager:
        results = list(manager.map([(method, url)] * 12, concurrency=4))
        assert [r.error for r in results] == [None] * 12
        assert {r.response.status for r in results} == {200}
        assert parses == []  # urlopen took the loop's head
        manager.request(method, url)  # one request: its head parsed here, as ever
        assert parses == [method]


def test_a_session_map_takes_the_loops_head_too(app_server: AppServer, parses: list[str]) -> None:
    url = f"{app_server.url}/bytes/100"
    with fastpool.Session() as session:
        results = list(session.map([url] * 8, concurrency=4))
        assert [len(r.response.content) for r in results] == [100] * 8
        assert parses == []
        assert len(session.get(url).content) == 100
        assert parses == ["GET"]


@pytest.mark.parametrize(
    ("method", "path", "size"),
    [("GET", "/bytes/100", 100), ("HEAD", "/bytes/100", 0), ("GET", "/chunked/300?chunk=7", 300)],
)
def test_a_whole_answer_leaves_the_socket_non_blocking(
    app_server: AppServer, method: str, path: str, size: int
) -> None:
    url = f"{app_server.url}{path}"
    with fastpool.PoolManager(maxsize=1) as manager:
        (result,) = manager.map([(method, url, {"timeout": 7.0})])
        assert len(result.response.data) == size
        conn = idle_connection(manager.connection_from_url(url))
        # Neither the connect nor the read timeout was set: nothing read from the socket.
        assert conn._sock_timeout is UNSET_TIMEOUT
        assert conn.sock.gettimeout() == 0.0


def test_the_next_request_on_that_socket_has_its_own_timeout(app_server: AppServer) -> None:
    base = app_server.url
    with fastpool.PoolManager(maxsize=1) as manager:
        # The socket had the very timeout the last request asks for before the map: the map
        # must leave it marked unknown, or settimeout(0.3) would be skipped as unchanged.
        assert manager.request("GET", f"{base}/bytes/3", timeout=0.3).status == 200
        (result,) = manager.map([("GET", f"{base}/bytes/100", {"timeout": 0.3})])
        assert result.error is None, result.error
        pool = manager.connection_from_url(base)
        conn = idle_connection(pool)
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            manager.request("GET", f"{base}/slow?delay=2", timeout=0.3, retries=False)
        waited = time.monotonic() - started
        # It waited for the answer as a blocking socket with its read timeout does (a socket
        # left non-blocking would have failed at once), on the connection the map used.
        assert 0.25 <= waited < 1.5, waited
        assert pool.num_connections == 1
        assert conn.sock is None  # the timed-out connection is closed, not pooled
        (result,) = manager.map([f"{base}/bytes/5"])  # and the map goes on after it
        assert result.response.data and len(result.response.data) == 5


@pytest.mark.parametrize(
    ("path", "size"),
    # more than the loop reads with the head (preload_content=False: the head only, and more
    # than one receive), framed by its length, or chunked
    [("/bytes/70000", 70000), ("/chunked/400000?chunk=4000", 400000)],
)
def test_an_answer_read_later_gets_its_read_timeout_first(
    app_server: AppServer, path: str, size: int
) -> None:
    url = f"{app_server.url}{path}"
    with fastpool.PoolManager(maxsize=1) as manager:
        (result,) = manager.map([("GET", url, {"preload_content": False, "timeout": 7.0})])
        response = result.response
        assert response._connection.sock.gettimeout() == 7.0
        assert len(response.read()) == size
        response.release_conn()


def test_a_session_stream_reads_the_rest_with_its_read_timeout(app_server: AppServer) -> None:
    url = f"{app_server.url}/bytes/70000"
    with fastpool.Session() as session:
        (result,) = session.map([url], stream=True, timeout=(3.0, 6.0))
        response = result.response
        assert isinstance(response, requests.Response)
        assert response.raw._connection.sock.gettimeout() == 6.0
        assert len(response.content) == 70000
