"""What one request calls, a map calls: a tool's patch or a subclass's override on the way.

Each test runs the same requests one at a time (``PoolManager.request``, ``Session.get``) and
through ``map`` (with and without ``light``), on the same server, and compares what the patch
or the override saw and what reached the server. Found by a hostile review: each of these was
silently skipped by the map's fast paths.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import time
import warnings
from typing import Any
from unittest import mock

import pytest
import requests
from dummyserver import AppServer, pattern_bytes
from session_map_ways import CONNECTION_STEPS
from urllib3.exceptions import InsecureRequestWarning
from urllib3.util.retry import Retry

import fastpool
from fastpool.resolver import Resolver

MODES = ["request", "map", "light"]


def _run(manager: fastpool.PoolManager, mode: str, items: list[Any]) -> list[Any]:
    """Each item's response (or error) one request at a time, or through a map."""
    if mode == "request":
        out = []
        for item in items:
            method, url, kw = item if isinstance(item, tuple) else ("GET", item, {})
            try:
                out.append(manager.request(method, url, **kw))
            except Exception as e:  # noqa: BLE001 - compared with the map's error
                out.append(e)
        return out
    results = list(manager.map(items, concurrency=2, light=mode == "light"))
    return [r.response if r.error is None else r.error for r in results]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["class", "pool"])
def test_a_wrapped_make_request_sees_every_request(
    app_server: AppServer, mode: str, where: str
) -> None:
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=2) as manager:
        pool = manager.connection_from_url(url)
        target = fastpool.HTTPConnectionPool if where == "class" else pool
        own = fastpool.HTTPConnectionPool._make_request
        calls = []

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if where == "class":
                return own(*args, **kwargs)
            return own(pool, *args, **kwargs)

        with mock.patch.object(target, "_make_request", wrapped):
            out = _run(manager, mode, [url] * 4)
        assert [r.data for r in out] == [pattern_bytes(10)] * 4
        assert len(calls) == 4
        assert manager.stats().total.in_use == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_make_request_that_refuses_keeps_the_request_off_the_wire(
    app_server: AppServer, mode: str
) -> None:
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(retries=False) as manager:
        manager.request("GET", url)  # a kept-alive connection, as a map's would be
        app_server.reset_counts()
        refuse = RuntimeError("mocked: no network")
        with mock.patch.object(
            fastpool.HTTPConnectionPool, "_make_request", side_effect=refuse
        ) as patched:
            out = _run(manager, mode, [url] * 2)
        assert out == [refuse, refuse]
        assert patched.call_count == 2
        assert app_server.requests == 0
        assert manager.stats().total.in_use == 0


@pytest.mark.parametrize("mode", MODES)
def test_an_unverified_https_request_warns_each_time(https_server: AppServer, mode: str) -> None:
    url = f"{https_server.url}/bytes/10"
    with (
        fastpool.PoolManager(cert_reqs="CERT_NONE") as manager,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        manager.request("GET", url)  # a kept-alive connection, as a map's would be
        del caught[:]
        out = _run(manager, mode, [url] * 3)
        assert [r.data for r in out] == [pattern_bytes(10)] * 3
        warned = [w for w in caught if issubclass(w.category, InsecureRequestWarning)]
        assert len(warned) == 3, [str(w.message) for w in caught]


@pytest.mark.parametrize("mode", MODES)
def test_an_insecure_warning_as_error_fails_the_map_s_request_after_it_was_sent(
    https_server: AppServer, mode: str
) -> None:
    # The deliberate difference (docs/differences.md): one request warns before its bytes go
    # out, a map's loop after; either way the request fails with the warning.
    url = f"{https_server.url}/bytes/10"
    with fastpool.PoolManager(cert_reqs="CERT_NONE", retries=False) as manager:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manager.request("GET", url)  # a kept-alive connection, as a map's would be
        https_server.reset_counts()
        with warnings.catch_warnings():
            warnings.simplefilter("error", InsecureRequestWarning)
            out = _run(manager, mode, [url])
        assert [type(r) for r in out] == [InsecureRequestWarning]
        assert https_server.requests == (0 if mode == "request" else 1)
        assert manager.stats().total.in_use == 0


def test_a_verified_https_map_stays_silent(https_server: AppServer, ca_bundle: str) -> None:
    url = f"{https_server.url}/bytes/10"
    with fastpool.PoolManager(ca_certs=ca_bundle) as manager, warnings.catch_warnings():
        warnings.simplefilter("error")
        results = list(manager.map([url] * 3, concurrency=2, light=True))
    assert [r.response.data for r in results] == [pattern_bytes(10)] * 3


class _PinnedResolver(Resolver):
    """A Resolver subclass that knows one name no DNS knows."""

    def __init__(self, answer: list[Any]) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[str] = []

    def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[Any]:
        self.asked.append(host)
        if host == "pinned.invalid":
            return self.answer
        return super().resolve(host, port, family)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["subclass", "patched"])
def test_a_resolver_s_own_resolve_is_asked(app_server: AppServer, mode: str, how: str) -> None:
    answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", app_server.port))]
    url = f"http://pinned.invalid:{app_server.port}/bytes/10"
    if how == "subclass":
        resolver: Resolver = _PinnedResolver(answer)
        patch: Any = contextlib.nullcontext()
    else:
        resolver = Resolver()
        patch = mock.patch.object(resolver, "resolve", return_value=answer)
    try:
        with patch as patched, fastpool.PoolManager(resolver=resolver, retries=0) as manager:
            out = _run(manager, mode, [url])
        assert [getattr(r, "data", r) for r in out] == [pattern_bytes(10)]
        if how == "subclass":
            assert resolver.asked == ["pinned.invalid"]  # type: ignore[attr-defined]
        else:
            assert patched.call_count == 1
    finally:
        resolver.close()


class _NoSleepRetry(Retry):
    """A Retry whose policy is not to sleep at all."""

    slept = 0

    def sleep(self, response: Any = None) -> None:
        type(self).slept += 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["subclass", "patched", "time.sleep"])
def test_a_retry_s_own_sleep_decides_the_wait(app_server: AppServer, mode: str, how: str) -> None:
    # The second retry's backoff is 10 s: waited out, it would show; the policy's own sleep,
    # called as one request calls it, waits nothing.
    kind = _NoSleepRetry if how == "subclass" else Retry
    retries = kind(total=2, backoff_factor=5, status_forcelist=[500], raise_on_status=False)
    url = f"{app_server.url}/status/500"
    _NoSleepRetry.slept = 0
    with fastpool.PoolManager() as manager:
        manager.request("GET", f"{app_server.url}/bytes/1")
        app_server.reset_counts()
        if how == "patched":
            patch: Any = mock.patch.object(Retry, "sleep")
        elif how == "time.sleep":
            # a test's way to skip urllib3's backoffs: Retry sleeps through it
            patch = mock.patch("time.sleep")
        else:
            patch = contextlib.nullcontext()
        started = time.monotonic()
        with patch as patched:
            out = _run(manager, mode, [("GET", url, {"retries": retries})])
        elapsed = time.monotonic() - started
        if how == "subclass":
            slept = _NoSleepRetry.slept
        elif how == "time.sleep":
            # Retry sleeps only for a backoff above 0: the second retry's 10 s
            slept = sum(1 for c in patched.call_args_list if c.args and c.args[0] >= 5)
        else:
            slept = patched.call_count
    assert [r.status for r in out] == [500]
    assert app_server.requests == 3
    assert slept == (1 if how == "time.sleep" else 2)
    assert elapsed < 5.0, elapsed  # (the backoff waited out would take 10 s)


# --- the entry points: PoolManager.request, Session.request and Session.get ----------------------
def _answer(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = b"mocked"
    return response


@pytest.mark.parametrize("light", [False, True], ids=["map", "light"])
def test_a_patched_manager_request_answers_the_map(app_server: AppServer, light: bool) -> None:
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager() as manager:
        fake = mock.MagicMock(status=299, data=b"mocked", headers={})
        with mock.patch.object(manager, "request", return_value=fake) as patched:
            results = list(manager.map([url, ("GET", url, {"timeout": 3})], light=light))
        assert [r.error for r in results] == [None, None]
        assert patched.call_args_list == [mock.call("GET", url), mock.call("GET", url, timeout=3)]
    assert app_server.requests == 0


@pytest.mark.parametrize("where", ["requests.Session.request", "session.request", "session.get"])
def test_a_patched_session_request_or_get_answers_the_map(
    app_server: AppServer, where: str
) -> None:
    url = f"{app_server.url}/bytes/10"
    with fastpool.Session() as session:
        if where == "requests.Session.request":
            patch = mock.patch("requests.Session.request", return_value=_answer(299))
        else:
            patch = mock.patch.object(session, where.split(".")[1], return_value=_answer(299))
        with patch as patched:
            one = session.get(url)
            results = list(session.map([url, url], concurrency=2, timeout=3))
    assert one.status_code == 299
    assert [r.response.status_code for r in results] == [299, 299]
    assert patched.call_count == 3
    assert app_server.requests == 0


def test_a_session_subclass_s_request_sees_each_request_object(app_server: AppServer) -> None:
    seen: list[tuple[str, str]] = []

    class Recording(fastpool.Session):
        def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append((method, url))
            return super().request(method, url, *args, **kwargs)

    url = f"{app_server.url}/echo"
    with Recording() as session:
        items = [url, requests.Request("POST", url, data=b"x", headers={"X-A": "1"})]
        results = list(session.map(items, concurrency=2))
    assert [r.error for r in results] == [None, None]
    assert sorted(seen) == [("GET", url), ("POST", url)]
    echoed = results[1].response.json()
    assert (echoed["method"], echoed["body"]) == ("POST", "x")
    assert ["X-A", "1"] in echoed["headers"]


# --- wrappers that carry fastpool's own names, and a patch on one connection --------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("step", ["urlopen", "request"])
def test_a_functools_wraps_wrapper_on_the_manager_sees_every_request(
    app_server: AppServer, mode: str, step: str
) -> None:
    # functools.wraps copies the wrapped function's __module__ and __name__: the map compares
    # the manager's steps with fastpool's own functions themselves, not with their names
    # (a review found both wrappers silently skipped by the map).
    url = f"{app_server.url}/bytes/10"
    own = getattr(fastpool.PoolManager, step)
    calls = []

    @functools.wraps(own)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return own(self, *args, **kwargs)

    with fastpool.PoolManager() as manager, mock.patch.object(fastpool.PoolManager, step, wrapped):
        out = _run(manager, mode, [url] * 4)
        assert [r.data for r in out] == [pattern_bytes(10)] * 4
        assert manager.stats().total.in_use == 0
    # one request calls request (which calls urlopen) once: the map, each item once as well
    assert len(calls) == 4


@pytest.mark.parametrize("mode", ["map", "light"])
@pytest.mark.parametrize("step", CONNECTION_STEPS)
def test_a_step_patched_on_one_idle_connection_sees_every_request(
    app_server: AppServer, mode: str, step: str
) -> None:
    # mock.patch.object(conn, "request"), or any step of the connection a request runs: a
    # pool's urlopen calls the connection's own; the map's fast paths render, send and read
    # themselves, so they step aside for a connection with a step of its own (a review found
    # the light lane went past ``request``). The map calls it as often as one request does.
    url = f"{app_server.url}/bytes/10"
    counts = []
    for run in ("request", mode):
        with fastpool.PoolManager(maxsize=1) as manager:
            manager.request("GET", url)
            pool = manager.connection_from_url(url)
            conn = pool._get_conn()  # the one kept-alive connection, patched, and given back
            pool._put_conn(conn)
            with mock.patch.object(conn, step, wraps=getattr(conn, step)) as patched:
                out = _run(manager, run, [url] * 3)
                counts.append(patched.call_count)
            assert [r.data for r in out] == [pattern_bytes(10)] * 3
            assert manager.stats().total.in_use == 0
    assert counts[0] == counts[1], counts
    # a kept-alive connection is not dialled again; a pool renders through ``request``, and
    # only the map's loop hands a head ahead: one request calls the other three
    if step in ("request", "read_response_head", "take_rest"):
        assert counts[0] >= 3, counts


def _who(data: bytes) -> list[str]:
    """The X-Who values /echo saw."""
    import json

    return [value for name, value in json.loads(data)["headers"] if name.lower() == "x-who"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["request", "urlopen"])
def test_another_manager_s_method_set_on_a_manager_is_called(
    app_server: AppServer, mode: str, name: str
) -> None:
    # manager.request = other.request sends as other (its default headers): a patch, though
    # its function is fastpool's own; the map once compared only the function, and sent as
    # the manager itself
    url = f"{app_server.url}/echo"
    with (
        fastpool.PoolManager(headers={"X-Who": "manager"}) as manager,
        fastpool.PoolManager(headers={"X-Who": "other"}) as other,
    ):
        setattr(manager, name, getattr(other, name))
        out = _run(manager, mode, [url, ("GET", url, {"timeout": 5.0})])
        total = other.stats().total
        assert total.created + total.reused == 2  # (checked out of other's pools: it sent them)
    # urlopen is given the manager's headers by its request, and sends them (as stock)
    expected = ["other"] if name == "request" else ["manager"]
    assert [_who(r.data) for r in out] == [expected] * 2


@pytest.mark.parametrize("client", ["stock", "fastpool-get", "fastpool-map"])
@pytest.mark.parametrize("name", ["request", "prepare_request", "send", "get"])
def test_another_session_s_method_set_on_a_session_is_called(
    app_server: AppServer, client: str, name: str
) -> None:
    # the same for a Session, beside stock requests: the other Session's headers or adapters
    url = f"{app_server.url}/echo"
    make = requests.Session if client == "stock" else fastpool.Session
    with make() as session, make() as other:
        session.headers["X-Who"] = "session"
        other.headers["X-Who"] = "other"
        setattr(session, name, getattr(other, name))
        if client == "fastpool-map":
            results = list(session.map([url]))  # type: ignore[attr-defined]
            assert results[0].error is None, results[0].error
            response = results[0].response
        else:
            response = session.get(url)
        seen = _who(response.content)
        # (a Session sends its own headers; other's prepare_request or request merges other's)
        assert seen == (["session"] if name == "send" else ["other"]), seen
        sent_by_other = any(
            pool_count > 0
            for adapter in other.adapters.values()
            for pool_count in [len(adapter.poolmanager.pools)]
        )
        assert sent_by_other == (name != "prepare_request")


@pytest.mark.parametrize("way", ["get", "map"])
def test_another_adapter_s_send_set_on_an_adapter_is_called(
    app_server: AppServer, way: str
) -> None:
    # adapter.send = other.send: other's pools send it, on the map as on one request (stock
    # requests calls the adapter's send, which is other's)
    url = f"{app_server.url}/bytes/5"
    other = fastpool.HTTPAdapter()
    with fastpool.Session() as session, contextlib.closing(other):
        adapter = session.get_adapter(url)
        adapter.send = other.send  # type: ignore[method-assign]
        if way == "get":
            assert session.get(url).content == pattern_bytes(5)
        else:
            (result,) = session.map([url])
            assert result.error is None, result.error
            assert result.response.content == pattern_bytes(5)
        assert len(other.poolmanager.pools) == 1
        assert len(adapter.poolmanager.pools) == 0
