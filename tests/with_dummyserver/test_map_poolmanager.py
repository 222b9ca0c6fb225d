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
import types
from collections.abc import Callable
from typing import Any, ClassVar
from unittest import mock

import pytest
from dummyserver import AppServer
from lane_counts import count_lanes
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


# --- light=True: LightResponse results --------------------------------------------------------
def light_corpus(http: str, https: str) -> list[Any]:
    """The corpus without what light=True refuses (preload_content=False), plus statuses a
    Retry may retry."""
    items = [
        given
        for given in corpus(http, https)
        if not (isinstance(given, tuple) and len(given) == 3 and "preload_content" in given[2])
    ]
    retry_503 = Retry(total=2, status_forcelist=[503], backoff_factor=0, raise_on_status=False)
    return [
        *items,
        ("GET", f"{http}/status/503", {"retries": retry_503}),
        f"{http}/status/429",  # a status Retry-After may make retryable: the full path decides
        ("GET", f"{http}/status/302", {"redirect": False}),  # a redirect not followed
        f"{http}/headers",  # repeated header names
        ("GET", f"{http}/bytes/7", {"retries": False, "timeout": 5.0}),
    ]


def observe_light(outcome: Any) -> dict[str, Any]:
    """What a LightResponse shows (or the error), in ``observe``'s terms."""
    if isinstance(outcome, BaseException):
        return observe(outcome)
    assert type(outcome) is fastpool.LightResponse, type(outcome)
    seen = observe(outcome if hasattr(outcome, "retries") else _WithoutRetries(outcome))
    del seen["url"], seen["history"]
    return seen


class _WithoutRetries:
    """A LightResponse seen through ``observe`` (which reads ``retries``: it has none)."""

    def __init__(self, light: Any) -> None:
        self.status, self.headers, self.data = light.status, light.headers, light.data
        self.url, self.retries = light.url, None


def run_single_light(given: Any, make: Callable[[], fastpool.PoolManager]) -> dict[str, Any]:
    seen = run_single(given, make)
    seen.pop("url", None)
    seen.pop("history", None)
    return seen


@pytest.fixture
def lanes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each finish took the light lane (True) or left it to urlopen (False)."""
    return count_lanes(monkeypatch).finished


def test_light_answers_as_request(
    app_server: AppServer,
    https_server: AppServer,
    make_manager: Callable[[], fastpool.PoolManager],
    lanes: list[bool],
) -> None:
    items = light_corpus(app_server.url, https_server.url)
    expected = {id(given): run_single_light(given, make_manager) for given in items}
    with make_manager() as manager:
        results = list(manager.map(items, concurrency=12, light=True))
    assert len(results) == len(items)
    for result in results:
        assert (result.response is None) != (result.error is None)
        assert observe_light(result.error or result.response) == expected[id(result.request)], (
            result.request
        )
    # Both lanes ran: the plain answers light, the others through urlopen.
    assert True in lanes and False in lanes


def test_light_takes_its_lane_only_for_the_plainest_answers(
    app_server: AppServer, make_manager: Callable[[], fastpool.PoolManager], lanes: list[bool]
) -> None:
    http = app_server.url
    retry_503 = Retry(total=1, status_forcelist=[503], backoff_factor=0, raise_on_status=False)
    plain = [
        f"{http}/bytes/100",
        ("HEAD", f"{http}/bytes/10"),
        f"{http}/status/204",
        ("GET", f"{http}/status/302", {"redirect": False}),  # not to follow: the answer
    ]
    full = [
        ("GET", f"{http}/status/503", {"retries": retry_503}),  # a status to retry
        f"{http}/status/429",  # Retry-After could make it retryable: urlopen decides
        f"{http}/chunked/300?chunk=5",  # chunked
        f"{http}/gzip",  # a Content-Encoding to decode
        f"{http}/no-length?n=30",  # to the close
        f"{http}/redirect/1",  # a redirect to follow (its last hop, /echo, is plain)
    ]
    with make_manager() as manager:
        for given in plain:
            lanes.clear()
            (result,) = manager.map([given], light=True)
            assert result.error is None, result.error
            assert lanes == [True], given
        for given in full:
            lanes.clear()
            (result,) = manager.map([given], light=True)
            assert result.error is None, result.error
            assert lanes[0] is False, given


def test_light_url_is_the_url_answered(
    app_server: AppServer, https_server: AppServer, make_manager: Callable[[], fastpool.PoolManager]
) -> None:
    http, https = app_server.url, https_server.url
    cases = [
        (f"{http}/bytes/3", f"{http}/bytes/3"),
        (f"{http}/redirect/2", f"{http}/echo"),
        (f"{http}/redirect-to?url={https}/bytes/4", f"{https}/bytes/4"),
        (("GET", f"{http}/echo", {"fields": {"a": "1"}}), f"{http}/echo?a=1"),
    ]
    expected = {id(given): url for given, url in cases}
    with make_manager() as manager:
        for result in manager.map([given for given, _ in cases], light=True):
            assert result.error is None, result.error
            assert result.response.url == expected[id(result.request)]
            assert repr(result.response).startswith("<LightResponse [200] ")


def test_light_hands_connections_back_for_reuse(app_server: AppServer, lanes: list[bool]) -> None:
    url = f"{app_server.url}/bytes/10"
    with fastpool.PoolManager(maxsize=4) as manager:  # room for the 4 in flight
        results = list(manager.map([url] * 60, concurrency=4, light=True))
        pool = manager.connection_from_url(url)
        assert [r.response.data for r in results] == [results[0].response.data] * 60
        assert all(lanes) and len(lanes) == 60
        assert pool.num_requests == 60
        assert pool.num_connections <= 4  # each went back and was used again
        assert pool.pool.idle == pool.num_connections  # none leaked: all back, idle


def test_light_closes_what_the_server_closes(
    app_server: AppServer, make_manager: Callable[[], fastpool.PoolManager], lanes: list[bool]
) -> None:
    url = f"{app_server.url}/close"
    with make_manager() as manager:
        for _ in range(3):
            (result,) = manager.map([url], light=True)
            assert result.response.data == b"closing"
        pool = manager.connection_from_url(url)
        assert lanes == [True] * 3
        assert pool.num_connections == 3  # Connection: close: never reused
        assert pool.pool.idle == 0


def test_light_json_and_headers(
    app_server: AppServer, make_manager: Callable[[], fastpool.PoolManager]
) -> None:
    with make_manager() as manager:
        (result,) = manager.map([f"{app_server.url}/headers"], light=True)
    light = result.response
    assert light.status == 200 and light.reason == "OK" and light.version == 11
    assert light.headers.getlist("x-dup") == ["a", "b"]
    assert light.headers["X-MIXED-CASE"] == "Value"
    assert "headers" in light.json()


def test_light_refuses_what_it_cannot_do(app_server: AppServer) -> None:
    url = f"{app_server.url}/bytes/5"
    with fastpool.PoolManager() as manager:
        with pytest.raises(TypeError, match="light must be True or False"):
            manager.map([url], light=1)  # type: ignore[arg-type]
        (result,) = manager.map([("GET", url, {"preload_content": False})], light=True)
        assert isinstance(result.error, ValueError)
        assert "preload_content=False needs light=False" in str(result.error)
        assert manager.connection_from_url(url).num_requests == 0


def test_light_under_a_mocked_urlopen_is_answered_by_the_mock(
    app_server: AppServer, lanes: list[bool]
) -> None:
    # A test suite's mock of urllib3's urlopen answers every request: none goes to the network.
    import io
    from unittest import mock

    import urllib3

    def canned(*_args: Any, **_kwargs: Any) -> Any:
        return urllib3.HTTPResponse(
            body=io.BytesIO(b"canned"), status=201, headers={"X-Canned": "1"},
            preload_content=False,
        )  # fmt: skip

    urls = [f"{app_server.url}/bytes/{n}" for n in (1, 2, 3)]
    with (
        mock.patch.object(
            urllib3.connectionpool.HTTPConnectionPool, "urlopen", autospec=True, side_effect=canned
        ) as urlopen,
        fastpool.PoolManager() as manager,
    ):
        results = list(manager.map(urls, light=True))
    assert urlopen.call_count == 3
    assert sorted(call.args[2] for call in urlopen.call_args_list) == [
        "/bytes/1", "/bytes/2", "/bytes/3",
    ]  # fmt: skip
    for result in results:
        assert type(result.response) is fastpool.LightResponse, result.error
        assert (result.response.status, result.response.data) == (201, b"canned")
        assert result.response.headers["x-canned"] == "1"
        assert result.response.url == result.request
    assert app_server.requests == 0
    assert lanes == []  # the mock saw every request: none took the light lane


@pytest.mark.parametrize(
    "given",
    [
        "URL",
        ("GET", "URL"),
        ("get", "URL", {"timeout": 2.0, "retries": False, "redirect": False}),
        ("HEAD", "URL", {"preload_content": True}),
        ("DELETE", "URL", {"pool_timeout": 1}),
        ("OPTIONS", "URL", {}),
        ("GET", "URL", types.MappingProxyType({"timeout": 2.0})),  # not a dict: the long way
        ("GET", "URL", {"fields": {"a": "1"}}),  # these encode: the long way
        ("GET", "URL", {"headers": {"X": "1"}}),
        ("POST", "URL", {"body": b"x"}),
    ],
)
def test_an_item_is_prepared_as_request_prepares_it(given: Any, app_server: AppServer) -> None:
    # ManagerDriver.new skips RequestMethods.request where it has nothing to encode: the job
    # must hold what it would hold.
    from urllib3._request_methods import RequestMethods

    from fastpool._job import ManagerJob
    from fastpool.multi import ManagerDriver, _Capture
    from fastpool.poolmanager import OWN_REQUESTS

    url = f"{app_server.url}/bytes/5"
    given = url if given == "URL" else (given[0], url, *given[2:])
    method, target, kwargs = ("GET", given, {}) if isinstance(given, str) else (*given, {})[:3]
    with fastpool.PoolManager(headers={"X-Default": "1"}) as manager:
        driver = ManagerDriver(manager, own_requests=OWN_REQUESTS)
        job = driver.new(given)
        # (the map asks plain_new first: the one call a crawl's items take)
        plain = driver.plain_new(given)
        captured = RequestMethods.request(_Capture(manager.headers), method, target, **kwargs)
    expected = ManagerJob(given, *captured)
    for made in (job, plain):
        if made is None:
            continue
        assert (made.method, made.url, made.kw, made.redirect) == (
            expected.method, expected.url, expected.kw, expected.redirect,
        )  # fmt: skip
    if not kwargs.keys() & {"headers", "fields", "body"}:
        assert job.kw["headers"] is manager.headers
    # an item with nothing to encode (a dict of kwargs, no preload_content) takes the one
    # call; the others the general steps
    plain_way = (
        type(kwargs) is dict
        and method.upper() in ("GET", "HEAD", "DELETE", "OPTIONS")
        and not kwargs.keys() & {"headers", "fields", "body", "preload_content"}
    )
    assert (plain is not None) == plain_way


class CountingManager(fastpool.PoolManager):
    """A subclass with its own urlopen, as a tool or a user's wrapper would write it."""

    calls: ClassVar[list[tuple[str, str, bool]]] = []

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        CountingManager.calls.append((method, url, redirect))
        return super().urlopen(method, url, redirect=redirect, **kw)


@pytest.mark.parametrize("light", [False, True], ids=["urllib3", "light"])
@pytest.mark.parametrize("how", ["subclass", "mock"])
def test_a_manager_urlopen_of_its_own_sees_each_request_whole(
    app_server: AppServer, ca_bundle: str, how: str, light: bool
) -> None:
    # Each request goes to the manager's own urlopen as PoolManager.request hands it over
    # (redirects followed there), not to its pool behind its back: never a silent bypass.
    http = app_server.url
    items = [
        f"{http}/bytes/5",
        f"{http}/redirect/2",
        ("GET", f"{http}/redirect/2", {"redirect": False}),
        ("POST", f"{http}/echo", {"body": b"x"}),
        ("GET", f"{http}/echo", {"fields": {"a": "1"}}),
    ]
    seen: list[tuple[str, str, bool]] = []

    @contextlib.contextmanager
    def made() -> Any:
        if how == "subclass":
            CountingManager.calls = seen
            with CountingManager(ca_certs=ca_bundle) as manager:
                yield manager
            return
        with fastpool.PoolManager(ca_certs=ca_bundle) as manager:
            own = manager.urlopen

            def urlopen(method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
                seen.append((method, url, redirect))
                return own(method, url, redirect=redirect, **kw)

            with mock.patch.object(manager, "urlopen", side_effect=urlopen):
                yield manager

    for given in items:
        method, url, kwargs = ("GET", given, {}) if isinstance(given, str) else (*given, {})[:3]
        with made() as manager:
            expected = observe(manager.request(method, url, **kwargs))
        by_request = list(seen)
        seen.clear()
        with made() as manager:
            (result,) = manager.map([given], light=light)
        assert result.error is None, result.error
        assert seen == by_request, given  # the same calls, each whole
        if light:
            light_seen = {k: v for k, v in expected.items() if k not in ("url", "history")}
            assert type(result.response) is fastpool.LightResponse
            body = decoded(result.response.data)
            got = {
                "status": result.response.status,
                "headers": observe_headers(result.response.headers, isinstance(body, dict)),
                "body": body,
            }
            assert got == {k: light_seen[k] for k in ("status", "headers", "body")}, given
        else:
            assert observe(result.response) == expected, given
        seen.clear()


def decoded(body: bytes) -> Any:
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict) and "connection" in data:
            del data["connection"]
            return data
    return body


def observe_headers(headers: Any, counted: bool) -> list[tuple[str, str]]:
    # as observe(): a body that counts the server's connections differs in length
    skip = {"date", "content-length"} if counted else {"date"}
    return [(k, v) for k, v in headers.items() if k.lower() not in skip]


def test_a_crawl_s_items_take_the_one_call_and_its_errors_are_results(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # take_input asks the driver's plain_new first: a URL never reaches new's steps
    import fastpool.multi

    asked: list[Any] = []
    made = fastpool.multi.PlainJobs

    class Counted:
        def __init__(self, manager: Any, own: Any) -> None:
            self.inner = made(manager, own)

        def __call__(self, given: Any) -> Any:
            asked.append(given)
            return self.inner(given)

    news: list[Any] = []
    general = fastpool.multi.ManagerDriver.new
    monkeypatch.setattr(fastpool.multi, "PlainJobs", Counted)
    monkeypatch.setattr(
        fastpool.multi.ManagerDriver,
        "new",
        lambda self, given: news.append(given) or general(self, given),
    )
    url = f"{app_server.url}/bytes/5"
    items = [url, ("GET", url, {"timeout": 5.0}), ("POST", url, {"body": b"x"})]
    with fastpool.PoolManager() as manager:
        results = list(manager.map(items, concurrency=2))
    assert [r.error for r in results] == [None] * 3
    assert asked == items
    assert news == [items[2]]  # (a body to encode: new's steps)

    class Refusing(fastpool.PoolManager):
        @property  # type: ignore[override]
        def headers(self) -> Any:
            raise RuntimeError("headers refused")

        @headers.setter
        def headers(self, value: Any) -> None:
            pass

    # an error in the one call is the item's result, as one request raises it
    with Refusing() as manager:
        with pytest.raises(RuntimeError, match="headers refused"):
            manager.request("GET", url)
        (result,) = manager.map([url])
    assert isinstance(result.error, RuntimeError)
    assert str(result.error) == "headers refused"


@pytest.mark.parametrize("light", [False, True])
def test_an_argument_that_is_no_keyword_fails_as_one_request_does(
    app_server: AppServer, light: bool
) -> None:
    # (a review: the one call passed {1: "x"} on to urlopen, where request(**kwargs) refuses it)
    url = f"{app_server.url}/bytes/5"
    with fastpool.PoolManager() as manager:
        with pytest.raises(TypeError) as one:
            manager.request("GET", url, **{1: "x"})  # type: ignore[misc]
        (result,) = manager.map([("GET", url, {1: "x"})], light=light)
    assert type(result.error) is TypeError
    assert str(result.error) == str(one.value)
