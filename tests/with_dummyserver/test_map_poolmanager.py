"""PoolManager.map: many requests from one thread, each ending as PoolManager.request ends it.

The corpus runs through ``PoolManager.map`` and through ``PoolManager.request`` (a fresh
manager each, same settings, same servers), and everything observable is compared: status,
headers, body, the URL, the redirect history in ``retries``, or the exception's class and its
reason's class.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from dummyserver import AppServer
from urllib3.util.retry import Retry

import fastpool

pytestmark = pytest.mark.filterwarnings("error")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def observe(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, BaseException):
        reason = getattr(outcome, "reason", None)
        return {"error": type(outcome).__name__, "reason": type(reason).__name__}
    body: Any = outcome.data
    skip = {"date"}
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict) and "connection" in data:
            del data["connection"]  # the server's connection counter differs, and its length
            skip.add("content-length")
            body = data
    retries = outcome.retries
    return {
        "status": outcome.status,
        "headers": [(k, v) for k, v in outcome.headers.items() if k.lower() not in skip],
        "body": body,
        "url": outcome.url,
        "history": [(h.method, h.url, h.status, h.redirect_location) for h in retries.history]
        if retries is not None
        else None,
    }


def corpus(http: str, https: str) -> list[Any]:
    dead = f"http://127.0.0.1:{closed_port()}/"
    return [
        f"{http}/bytes/100",
        f"{https}/bytes/70000",
        f"{http}/chunked/3000?chunk=5",
        f"{http}/gzip",
        ("HEAD", f"{http}/bytes/10"),
        ("GET", f"{http}/echo", {"fields": {"a": "1", "b": "two"}}),
        ("POST", f"{http}/echo", {"fields": {"a": "1"}, "multipart_boundary": "b0undary"}),
        ("POST", f"{https}/echo", {"json": {"k": [1, 2]}}),
        ("PUT", f"{http}/echo", {"body": b"x" * 3000, "headers": {"X-A": "1"}}),
        f"{http}/status/404",
        f"{http}/status/204",
        f"{http}/redirect/3",
        f"{http}/redirect-to?url={https}/echo",
        ("POST", f"{http}/redirect-to?url=/echo&status_code=303", {"body": b"secret"}),
        ("GET", f"{http}/redirect/3", {"redirect": False}),
        ("GET", f"{http}/redirect/5", {"retries": Retry(redirect=2)}),
        ("GET", f"{http}/redirect/5", {"retries": Retry(redirect=2, raise_on_redirect=False)}),
        ("GET", f"{http}/slow?delay=2", {"timeout": 0.2, "retries": False}),
        ("GET", f"{http}/bytes/50", {"preload_content": False}),
        f"{http}/no-length?n=3000",
        f"{http}/close",
        ("GET", dead, {"retries": 1}),
        ("GET", "http://fastpool-test.invalid/", {"retries": False}),
    ]


def run_single(given: Any, make: Callable[[], fastpool.PoolManager]) -> dict[str, Any]:
    with make() as manager:
        method, url, kwargs = ("GET", given, {}) if isinstance(given, str) else (*given, {})[:3]
        try:
            outcome: Any = manager.request(method, url, **kwargs)
        except Exception as e:  # noqa: BLE001 - the outcome compared
            outcome = e
        return observe(outcome)


def run_mapped(given: Any, make: Callable[[], fastpool.PoolManager]) -> dict[str, Any]:
    with make() as manager:
        (result,) = list(manager.map([given]))
        assert result.request is given
        assert (result.response is None) != (result.error is None)
        return observe(result.error or result.response)


@pytest.fixture
def make_manager(ca_bundle: str) -> Callable[[], fastpool.PoolManager]:
    return lambda: fastpool.PoolManager(ca_certs=ca_bundle)


def test_map_answers_as_request(
    app_server: AppServer,
    https_server: AppServer,
    make_manager: Callable[[], fastpool.PoolManager],
) -> None:
    for given in corpus(app_server.url, https_server.url):
        assert run_mapped(given, make_manager) == run_single(given, make_manager), given


def test_the_whole_corpus_at_once(
    app_server: AppServer,
    https_server: AppServer,
    make_manager: Callable[[], fastpool.PoolManager],
) -> None:
    items = corpus(app_server.url, https_server.url)
    expected = {id(given): run_single(given, make_manager) for given in items}
    with make_manager() as manager:
        results = list(manager.map(items, concurrency=12))
        assert len(results) == len(items)
        for result in results:
            got = observe(result.error or result.response)
            assert got == expected[id(result.request)], result.request


def test_through_a_proxy_manager(
    app_server: AppServer, https_server: AppServer, proxy_server: Any, ca_bundle: str
) -> None:
    def make() -> fastpool.PoolManager:
        return fastpool.ProxyManager(proxy_server.url, ca_certs=ca_bundle)

    for given in [
        f"{app_server.url}/echo",
        f"{https_server.url}/echo",
        f"{app_server.url}/redirect-to?url={https_server.url}/bytes/5",
    ]:
        assert run_mapped(given, make) == run_single(given, make), given


def test_bad_items_are_named(app_server: AppServer) -> None:
    with fastpool.PoolManager() as manager:
        (result,) = list(manager.map([42]))
    assert isinstance(result.error, TypeError)
    assert "PoolManager.map takes URLs" in str(result.error)


def test_a_connection_class_with_its_own_request_sees_each_request_once(
    app_server: AppServer,
) -> None:
    from fastpool.connection import HTTPConnection

    calls: list[str] = []

    class Counting(HTTPConnection):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
            calls.append(url)
            super().request(method, url, *args, **kwargs)

    urls = [f"{app_server.url}/bytes/{n}" for n in (1, 2, 3)]
    with fastpool.PoolManager() as manager:
        manager.connection_from_url(app_server.url).ConnectionCls = Counting
        results = list(manager.map(urls))
    assert sorted(len(r.response.data) for r in results) == [1, 2, 3]  # type: ignore[union-attr]
    assert sorted(calls) == ["/bytes/1", "/bytes/2", "/bytes/3"]
