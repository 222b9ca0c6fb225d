"""The tools requests users bring along, each through its own first example, in three modes.

Modes: ``requests`` (plain ``requests.Session``, the reference), ``adapter``
(``requests.Session`` with ``fastpool.HTTPAdapter`` mounted) and ``session``
(``fastpool.Session``). Every test runs against a real local server and asserts what plain
requests gives: what was intercepted, traced or cached, and how many requests reached the
server (a tool that fastpool bypassed would let a mocked request through, and the server would
count it). Traffic a tool passes through to the network must use fastpool's pools in the two
fastpool modes. A tool that is not installed skips its tests (the ``ecosystem`` extra installs
them all).
"""

from __future__ import annotations

import email.utils
import functools
import importlib
import io
import json
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import requests
import requests.sessions
import urllib3
import urllib3.connectionpool
from dummyserver import AppServer
from urllib3.response import HTTPResponse as Urllib3Response

import fastpool
from fastpool import _patches
from fastpool.adapters import ForeignPoolManagerWarning, stock_function
from fastpool.exceptions import ForeignPatchWarning
from fastpool.response import HTTPResponse as EngineResponse

MODES = ("requests", "adapter", "session")


def _tool(name: str) -> Any:
    """The tool's module, or a skip naming the missing distribution."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (pip install -e '.[ecosystem]')")


def make_session(mode: str) -> requests.Session:
    if mode == "requests":
        return requests.Session()
    if mode == "adapter":
        session = requests.Session()
        adapter = fastpool.HTTPAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session
    return fastpool.Session()


def assert_transport(mode: str, response: requests.Response) -> None:
    """The response came from the network through the mode's own pools."""
    expected = Urllib3Response if mode == "requests" else EngineResponse
    assert type(response.raw) is expected, type(response.raw)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def session(mode: str) -> Iterator[requests.Session]:
    with make_session(mode) as s:
        yield s


@pytest.fixture(autouse=True)
def _no_install_left() -> Iterator[None]:
    stock = requests.sessions.Session
    yield
    fastpool.uninstall()
    assert requests.sessions.Session is stock and requests.Session is stock


# --- responses ---------------------------------------------------------------------------------
def test_responses_requestsmock(
    mode: str, session: requests.Session, app_server: AppServer
) -> None:
    responses = _tool("responses")
    base = app_server.url
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, base + "/api/1", json={"id": 1}, status=200)
        rsps.add_passthru(base + "/echo")
        r = session.get(base + "/api/1")
        assert r.json() == {"id": 1}
        assert app_server.requests == 0  # intercepted: nothing reached the server
        passed = session.get(base + "/echo?x=1")
        assert passed.json()["query"] == "x=1"
        assert_transport(mode, passed)
        with pytest.raises(requests.exceptions.ConnectionError, match="Connection refused by"):
            session.get(base + "/not-registered")
        # responses records matched and refused requests, not its pass-through prefixes
        assert [call.request.url for call in rsps.calls] == [
            base + "/api/1",
            base + "/not-registered",
        ]
    assert app_server.requests == 1  # the pass-through only
    # After the mock: the real server again, through the mode's pools.
    r = session.get(base + "/api/1")
    assert r.status_code == 404
    assert_transport(mode, r)
    assert app_server.requests == 2


def test_responses_activate_decorator(
    mode: str, session: requests.Session, app_server: AppServer
) -> None:
    responses = _tool("responses")
    url = app_server.url + "/api/1"

    @responses.activate
    def first_example() -> None:
        responses.add(responses.GET, url, json={"error": "not found"}, status=404)
        resp = session.get(url)
        assert resp.json() == {"error": "not found"}
        assert len(responses.calls) == 1
        assert responses.calls[0].request.url == url
        assert responses.calls[0].response.text == '{"error": "not found"}'

    first_example()
    assert app_server.requests == 0


def test_responses_passthrough_response_and_retries(
    mode: str, session: requests.Session, app_server: AppServer
) -> None:
    responses = _tool("responses")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.PassthroughResponse(responses.GET, app_server.url + "/bytes/5"))
        r = session.get(app_server.url + "/bytes/5")
        assert len(r.content) == 5
        assert_transport(mode, r)
        assert len(rsps.calls) == 1
    assert app_server.requests == 1


# --- requests-mock -----------------------------------------------------------------------------
def test_requests_mock_mocker(mode: str, session: requests.Session, app_server: AppServer) -> None:
    requests_mock = _tool("requests_mock")
    base = app_server.url
    with requests_mock.Mocker() as m:
        m.get(base + "/api/1", text="resp")
        assert session.get(base + "/api/1").text == "resp"
        with pytest.raises(requests_mock.NoMockAddress):
            session.get(base + "/echo")
        assert m.call_count == 2  # requests-mock counts the unmatched request too
        assert [h.url for h in m.request_history] == [base + "/api/1", base + "/echo"]
    assert app_server.requests == 0
    r = session.get(base + "/echo")  # after the mock: the mode's own route again
    assert_transport(mode, r)
    assert app_server.requests == 1
    if mode == "session":  # the adapter lookup is fastpool's router again
        assert "get_adapter" not in vars(session)


def test_requests_mock_real_http_and_decorator(
    mode: str, session: requests.Session, app_server: AppServer
) -> None:
    requests_mock = _tool("requests_mock")
    base = app_server.url

    @requests_mock.Mocker(real_http=True)
    def first_example(m: Any) -> requests.Response:
        m.get(base + "/api/1", json={"mocked": True})
        assert session.get(base + "/api/1").json() == {"mocked": True}
        return session.get(base + "/echo")

    passed = first_example()
    assert passed.json()["path"] == "/echo"
    assert_transport(mode, passed)
    assert app_server.requests == 1


def test_requests_mock_session_target(
    mode: str, session: requests.Session, app_server: AppServer
) -> None:
    requests_mock = _tool("requests_mock")
    other = make_session(mode)
    with requests_mock.Mocker(session=session) as m:
        m.get(app_server.url + "/api/1", text="mocked")
        assert session.get(app_server.url + "/api/1").text == "mocked"
        assert_transport(mode, other.get(app_server.url + "/echo"))  # another session: real
    assert app_server.requests == 1
    assert_transport(mode, session.get(app_server.url + "/echo"))


def test_requests_mock_fixture(
    mode: str, session: requests.Session, app_server: AppServer, request: pytest.FixtureRequest
) -> None:
    _tool("requests_mock")
    requests_mock = request.getfixturevalue("requests_mock")  # requests-mock's pytest plugin
    requests_mock.get(app_server.url + "/api/1", text="data")
    assert session.get(app_server.url + "/api/1").text == "data"
    assert requests_mock.call_count == 1
    assert app_server.requests == 0


# --- OpenTelemetry's requests instrumentation --------------------------------------------------
def _instrumented(module: str, instrumentor_name: str) -> Iterator[Any]:
    """An OpenTelemetry instrumentor on while the caller runs, with an in-memory exporter
    (yielded)."""
    _tool("opentelemetry.sdk.trace")
    instrumentation = _tool(module)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = getattr(instrumentation, instrumentor_name)()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def otel_spans() -> Iterator[Any]:
    """RequestsInstrumentor on for the test, with an in-memory exporter (yielded)."""
    yield from _instrumented("opentelemetry.instrumentation.requests", "RequestsInstrumentor")


def _traceparent(response: requests.Response) -> str | None:
    for name, value in response.json()["headers"]:
        if name.lower() == "traceparent":
            return value  # type: ignore[no-any-return]
    return None


def _span_summary(exporter: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (span.name, span.kind.name, dict(span.attributes)) for span in exporter.get_finished_spans()
    ]


def test_opentelemetry_requests_spans_and_traceparent(
    mode: str, session: requests.Session, app_server: AppServer, otel_spans: Any
) -> None:
    url = app_server.url + "/echo?q=1"
    with requests.Session() as reference:
        reference.get(url)
    expected = _span_summary(otel_spans)
    otel_spans.clear()

    r = session.get(url)
    assert_transport(mode, r)
    spans = otel_spans.get_finished_spans()
    assert _span_summary(otel_spans) == expected
    assert len(spans) == 1
    ctx = spans[0].get_span_context()
    traceparent = _traceparent(r)
    assert traceparent is not None
    assert traceparent.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    # Redirects: the hops as requests traces them.
    otel_spans.clear()
    with requests.Session() as reference:
        reference.get(app_server.url + "/redirect/2")
    expected = _span_summary(otel_spans)
    otel_spans.clear()
    assert session.get(app_server.url + "/redirect/2").status_code == 200
    assert _span_summary(otel_spans) == expected


def test_opentelemetry_uninstrumented_costs_no_span(
    mode: str, session: requests.Session, app_server: AppServer, otel_spans: Any
) -> None:
    instrumentation = _tool("opentelemetry.instrumentation.requests")
    instrumentation.RequestsInstrumentor().uninstrument()
    try:
        r = session.get(app_server.url + "/echo")
        assert otel_spans.get_finished_spans() == ()
        assert _traceparent(r) is None
        if mode == "session":  # the fast route again
            assert requests.sessions.Session.send is fastpool.sessions._STOCK_SEND
    finally:
        instrumentation.RequestsInstrumentor().instrument()


_INSTRUMENT_FIRST = """
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.instrumentation.requests import RequestsInstrumentor
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
RequestsInstrumentor().instrument(tracer_provider=provider)
import fastpool  # after the instrumentation, as with opentelemetry-instrument
with fastpool.Session() as s:
    s.get(sys.argv[1])
print(len(exporter.get_finished_spans()))
"""


def test_opentelemetry_instrumented_before_fastpool_import(app_server: AppServer) -> None:
    _tool("opentelemetry.instrumentation.requests")
    _tool("opentelemetry.sdk.trace")
    out = subprocess.run(
        [sys.executable, "-c", _INSTRUMENT_FIRST, app_server.url + "/echo"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "1"
    assert app_server.requests == 1


def test_stock_function_sees_through_wrappers() -> None:
    original = requests.Session.send

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    assert stock_function(original, requests.sessions) is original
    assert stock_function(wrapper, requests.sessions) is original
    assert stock_function(lambda: None, requests.sessions) is None
    assert stock_function(None, requests.sessions) is None


# --- fastpool.install() ------------------------------------------------------------------------
def test_install_module_functions_and_session_factory(app_server: AppServer) -> None:
    stock = requests.sessions.Session
    assert type(requests.get(app_server.url + "/echo").raw) is Urllib3Response
    handle = fastpool.install()
    try:
        assert fastpool.installed() is fastpool.Session
        assert requests.Session is requests.sessions.Session is fastpool.Session
        assert type(requests.session()) is fastpool.Session
        assert type(requests.Session()) is fastpool.Session
        for call in (requests.get, requests.head, requests.options):
            assert type(call(app_server.url + "/echo").raw) is EngineResponse
        assert requests.post(app_server.url + "/echo", data=b"x").json()["body"] == "x"
        assert fastpool.install().__exit__(None, None, None) is None  # nested: keeps it
        assert requests.Session is fastpool.Session
    finally:
        handle.__exit__(None, None, None)
    assert requests.Session is requests.sessions.Session is stock
    assert fastpool.installed() is None
    fastpool.uninstall()  # not installed: nothing to do
    assert type(requests.get(app_server.url + "/echo").raw) is Urllib3Response


def test_install_context_manager(app_server: AppServer) -> None:
    with fastpool.install() as installation:
        assert isinstance(installation, fastpool.Installation)
        assert type(requests.get(app_server.url + "/echo").raw) is EngineResponse
    assert requests.Session is not fastpool.Session
    fastpool.install()
    fastpool.uninstall()
    assert requests.sessions.Session is not fastpool.Session


@pytest.mark.parametrize("order", ["tools-first", "install-first"])
def test_install_with_mocks_and_tracing(order: str, app_server: AppServer, otel_spans: Any) -> None:
    responses = _tool("responses")
    requests_mock = _tool("requests_mock")
    url = app_server.url + "/api/1"
    if order == "install-first":
        fastpool.install()
    rsps = responses.RequestsMock()
    rsps.start()
    try:
        if order == "tools-first":
            fastpool.install()
        rsps.add(responses.GET, url, body="from responses")
        assert requests.get(url).text == "from responses"
        assert type(requests.Session()) is fastpool.Session
    finally:
        rsps.stop()
        rsps.reset()
    with requests_mock.Mocker() as m:
        m.get(url, text="from requests-mock")
        assert requests.get(url).text == "from requests-mock"
        assert requests.Session().get(url).text == "from requests-mock"
    assert app_server.requests == 0
    otel_spans.clear()
    r = requests.get(app_server.url + "/echo")
    assert type(r.raw) is EngineResponse
    assert _traceparent(r) is not None
    assert len(otel_spans.get_finished_spans()) == 1
    fastpool.uninstall()


# --- requests-cache ----------------------------------------------------------------------------
def test_requests_cache_cached_session(mode: str, app_server: AppServer) -> None:
    requests_cache = _tool("requests_cache")
    if mode == "session":

        class Cached(requests_cache.CacheMixin, fastpool.Session):  # type: ignore[misc]
            pass

        session = Cached(backend="memory")
    else:
        session = requests_cache.CachedSession(backend="memory")
        if mode == "adapter":
            adapter = fastpool.HTTPAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
    with session:
        first = session.get(app_server.url + "/echo")
        assert first.from_cache is False
        assert_transport(mode, first)
        for _ in range(3):
            again = session.get(app_server.url + "/echo")
            assert again.from_cache is True
            assert again.json() == first.json()
    assert app_server.requests == 1


def test_requests_cache_install_cache_with_fastpool_session_factory(app_server: AppServer) -> None:
    requests_cache = _tool("requests_cache")

    class CachedFastpoolSession(requests_cache.CacheMixin, fastpool.Session):  # type: ignore[misc]
        pass

    requests_cache.install_cache(backend="memory", session_factory=CachedFastpoolSession)
    try:
        first = requests.get(app_server.url + "/echo")
        assert type(first.raw) is EngineResponse
        assert requests.get(app_server.url + "/echo").from_cache is True
    finally:
        requests_cache.uninstall_cache()
    assert app_server.requests == 1


def test_requests_cache_install_cache_then_fastpool_install(app_server: AppServer) -> None:
    requests_cache = _tool("requests_cache")
    requests_cache.install_cache(backend="memory")
    try:
        with fastpool.install():
            assert requests_cache.is_installed()
            first = requests.get(app_server.url + "/echo")
            assert type(first.raw) is EngineResponse
            assert requests.get(app_server.url + "/echo").from_cache is True
        assert requests_cache.is_installed()  # fastpool.uninstall() gave the cache back
    finally:
        requests_cache.uninstall_cache()
    assert app_server.requests == 1


# --- adapters that build their own pool manager (requests-toolbelt) ----------------------------
def test_source_address_and_socket_options(mode: str, app_server: AppServer) -> None:
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if mode == "requests":
        toolbelt = _tool("requests_toolbelt.adapters.source")
        adapter: Any = toolbelt.SourceAddressAdapter(("127.0.0.2", 0))
    else:
        adapter = fastpool.HTTPAdapter(source_address="127.0.0.2", socket_options=options)
    session = make_session(mode)
    session.mount("http://", adapter)
    with session:
        r = session.get(app_server.url + "/echo", stream=True)
        sock = r.raw.connection.sock
        assert sock.getsockname()[0] == "127.0.0.2"
        if mode != "requests":
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            assert not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # replaced
        r.close()
    assert app_server.requests == 1


def test_source_address_survives_pickling() -> None:
    import pickle

    adapter = fastpool.HTTPAdapter(source_address=("127.0.0.2", 0), socket_options=[])
    copy = pickle.loads(pickle.dumps(adapter))
    assert copy.poolmanager.connection_pool_kw["source_address"] == ("127.0.0.2", 0)
    assert copy.poolmanager.connection_pool_kw["socket_options"] == []
    with pytest.raises(TypeError, match="source_address"):
        fastpool.HTTPAdapter(source_address=8080)  # type: ignore[arg-type]


def test_foreign_poolmanager_warns_once(app_server: AppServer) -> None:
    source = _tool("requests_toolbelt.adapters.source")
    keepalive = _tool("requests_toolbelt.adapters.socket_options")

    class SourceAddress(source.SourceAddressAdapter, fastpool.HTTPAdapter):  # type: ignore[misc]
        pass

    class KeepAlive(keepalive.TCPKeepAliveAdapter, fastpool.HTTPAdapter):  # type: ignore[misc]
        pass

    for adapter in (SourceAddress("127.0.0.1"), KeepAlive(idle=60)):
        session = requests.Session()
        session.mount("http://", adapter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                assert session.get(app_server.url + "/echo").status_code == 200
        assert [w.category for w in caught] == [ForeignPoolManagerWarning]
        assert "source_address= or socket_options=" in str(caught[0].message)
    assert app_server.requests == 6


# --- vcrpy -------------------------------------------------------------------------------------
def test_vcrpy_record_then_replay_with_the_server_stopped(
    mode: str, session: requests.Session, app_server: AppServer, tmp_path: Any
) -> None:
    vcr = _tool("vcr")
    cassette_path = str(tmp_path / "synopsis.yaml")
    url = app_server.url + "/echo?a=1"
    with vcr.use_cassette(cassette_path) as cassette:
        recorded = session.get(url, headers={"X-Test": "1"})
        assert recorded.json()["query"] == "a=1"
        assert len(cassette) == 1
    assert app_server.requests == 1
    assert_transport(mode, session.get(url))  # outside the cassette: the mode's own pools
    assert app_server.requests == 2
    app_server.stop()  # replay needs no server

    @vcr.use_cassette(cassette_path, record_mode="none")
    def replay() -> requests.Response:
        return session.get(url, headers={"X-Test": "1"})

    replayed = replay()
    assert replayed.json() == recorded.json()
    assert replayed.headers == recorded.headers
    with (
        vcr.use_cassette(cassette_path, record_mode="none"),
        pytest.raises(vcr.errors.CannotOverwriteExistingCassetteException),
    ):
        session.get(app_server.url + "/not-recorded")


def test_wrapt_wrapper_on_requests_session_send(app_server: AppServer) -> None:
    # ddtrace and others wrap requests.Session.send with wrapt, whose proxies answer for the
    # wrapped function's attributes: still a patch, and still found through __wrapped__.
    wrapt = _tool("wrapt")
    seen: list[str] = []

    def spy(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        seen.append(args[0].url)
        return wrapped(*args, **kwargs)

    original = requests.sessions.Session.__dict__["send"]
    wrapt.wrap_function_wrapper(requests.sessions, "Session.send", spy)
    try:
        assert stock_function(requests.sessions.Session.send, requests.sessions) is original
        with fastpool.Session() as session:
            r = session.get(app_server.url + "/echo")
        assert type(r.raw) is EngineResponse
        assert seen == [app_server.url + "/echo"]
    finally:
        requests.sessions.Session.send = original  # type: ignore[method-assign]
    assert requests.sessions.Session.send is fastpool.sessions._STOCK_SEND


# --- patches on urllib3's HTTPConnectionPool.urlopen -------------------------------------------
U3_MODES = ("urllib3", "poolmanager", "adapter", "session")


def _u3_get(mode: str, url: str) -> Any:
    """GET ``url`` in ``mode``: urllib3's PoolManager (the reference), fastpool's, or requests."""
    if mode == "urllib3":
        return urllib3.PoolManager().request("GET", url)
    if mode == "poolmanager":
        return fastpool.PoolManager().request("GET", url)
    with make_session(mode) as session:
        return session.get(url)


def _u3_body(response: Any) -> bytes:
    return (
        response.data
        if isinstance(response, (Urllib3Response, EngineResponse))
        else response.content
    )


@pytest.fixture
def otel_urllib3_spans() -> Iterator[Any]:
    """URLLib3Instrumentor on for the test, with an in-memory exporter (yielded)."""
    yield from _instrumented("opentelemetry.instrumentation.urllib3", "URLLib3Instrumentor")


@pytest.mark.parametrize("mode", U3_MODES)
def test_opentelemetry_urllib3_spans_and_traceparent(
    mode: str, app_server: AppServer, otel_urllib3_spans: Any
) -> None:
    url = app_server.url + "/echo?q=1"
    _u3_get("urllib3", url)
    expected = _span_summary(otel_urllib3_spans)
    assert len(expected) == 1
    otel_urllib3_spans.clear()

    r = _u3_get(mode, url)
    if mode != "urllib3":
        assert type(getattr(r, "raw", r)) is EngineResponse
    assert _span_summary(otel_urllib3_spans) == expected
    (span,) = otel_urllib3_spans.get_finished_spans()
    ctx = span.get_span_context()
    sent = {k.lower(): v for k, v in json.loads(_u3_body(r))["headers"]}
    assert sent["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    # Redirects followed by the PoolManager: one span a hop, as urllib3 gives.
    otel_urllib3_spans.clear()
    _u3_get("urllib3", app_server.url + "/redirect/2")
    expected = _span_summary(otel_urllib3_spans)
    otel_urllib3_spans.clear()
    _u3_get(mode, app_server.url + "/redirect/2")
    assert _span_summary(otel_urllib3_spans) == expected


def test_opentelemetry_urllib3_uninstrumented_takes_the_plain_route(
    app_server: AppServer, otel_urllib3_spans: Any
) -> None:
    instrumentation = _tool("opentelemetry.instrumentation.urllib3")
    instrumentation.URLLib3Instrumentor().uninstrument()
    try:
        assert urllib3.connectionpool.HTTPConnectionPool.urlopen is _patches.STOCK_URLOPEN
        fastpool.PoolManager().request("GET", app_server.url + "/echo")
        assert otel_urllib3_spans.get_finished_spans() == ()
    finally:
        instrumentation.URLLib3Instrumentor().instrument()


@pytest.mark.parametrize("mode", U3_MODES)
def test_mock_replacing_urllib3_urlopen_intercepts(mode: str, app_server: AppServer) -> None:
    # A test suite that mocks urllib3's urlopen must not send its traffic to the network.
    canned = Urllib3Response(
        body=io.BytesIO(b'{"headers": []}'), status=200, headers={"Content-Type": "application/json"},
        preload_content=False,
    )  # fmt: skip
    with mock.patch.object(
        urllib3.connectionpool.HTTPConnectionPool, "urlopen", autospec=True, return_value=canned
    ) as urlopen:
        r = _u3_get(mode, app_server.url + "/echo")
    assert urlopen.call_count == 1
    pool = urlopen.call_args.args[0]
    assert (pool.scheme, pool.host, pool.port) == ("http", "127.0.0.1", app_server.port)
    assert json.loads(_u3_body(r)) == {"headers": []}
    assert app_server.requests == 0


@pytest.mark.parametrize("how", ["side_effect", "wraps"])
def test_spy_on_urllib3_urlopen_warns_and_is_not_run_on_fastpools_pool(
    how: str, app_server: AppServer
) -> None:
    # A spy runs urllib3's own urlopen, which cannot run on fastpool's pool: like a
    # functools wrapper, fastpool says so once and sends the request without it.
    original = urllib3.connectionpool.HTTPConnectionPool.urlopen
    kw = {"side_effect": original} if how == "side_effect" else {"wraps": original}
    with mock.patch.object(
        urllib3.connectionpool.HTTPConnectionPool, "urlopen", autospec=how == "side_effect", **kw
    ) as spy:
        with pytest.warns(ForeignPatchWarning, match="calls urllib3's own urlopen"):
            r = fastpool.PoolManager().request("GET", app_server.url + "/echo")
        assert spy.call_count == 0
    assert r.status == 200
    assert app_server.requests == 1


def test_functools_wrapper_on_urllib3_urlopen_warns(app_server: AppServer) -> None:
    # A plain wrapper calls urllib3's own urlopen, which cannot run on fastpool's pool: fastpool
    # says so once, and goes on without it.
    original = urllib3.connectionpool.HTTPConnectionPool.urlopen
    seen: list[str] = []

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(args[1])
        return original(self, *args, **kwargs)

    with mock.patch.object(urllib3.connectionpool.HTTPConnectionPool, "urlopen", wrapper):
        with pytest.warns(ForeignPatchWarning, match="calls urllib3's own urlopen"):
            r = fastpool.PoolManager().request("GET", app_server.url + "/echo")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fastpool.PoolManager().request("GET", app_server.url + "/echo")  # once
        urllib3.PoolManager().request("GET", app_server.url + "/echo")
    assert r.status == 200
    assert seen == ["/echo"]  # urllib3's request only
    assert app_server.requests == 3


def test_responses_passthrough_over_tls(
    mode: str, session: requests.Session, https_server: AppServer, ca_bundle: str
) -> None:
    responses = _tool("responses")
    with responses.RequestsMock(passthru_prefixes=(https_server.url,)):
        r = session.get(https_server.url + "/echo", verify=ca_bundle)
        assert r.json()["path"] == "/echo"
        assert_transport(mode, r)
        with pytest.raises(requests.exceptions.SSLError):
            session.get(https_server.url + "/echo")  # the default CAs do not know the test CA
    assert https_server.requests == 1


# --- CacheControl ----------------------------------------------------------------------------


def _cacheable_server(fault_server_factory: Any, chunked: bool) -> Any:
    """Answers every request with a body that may be cached for a minute (chunked or not),
    and counts the requests it answered."""
    body = b"cached body " * 100

    def handler(conn: Any) -> None:
        while conn.read_request() is not None:
            conn.server.answered = getattr(conn.server, "answered", 0) + 1
            headers = [
                ("Cache-Control", "max-age=60"),
                ("Content-Type", "text/plain"),
                ("Date", email.utils.formatdate(usegmt=True)),  # freshness counts from it
            ]
            if chunked:
                head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                head += "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
                pieces = [body[i : i + 300] for i in range(0, len(body), 300)]
                data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
                conn.send(head.encode() + data)
            else:
                conn.respond(200, body, headers)

    return fault_server_factory(handler), body


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_cachecontrol_caches_and_serves_through_fastpool(
    mode: str, fault_server_factory: Any, chunked: bool
) -> None:
    # CacheControl's own first example, CacheControl(session); for the fastpool modes with
    # adapter_class= a class mixing its adapter with fastpool's, as its docs show for others.
    cachecontrol = _tool("cachecontrol")
    server, body = _cacheable_server(fault_server_factory, chunked)
    url = f"http://127.0.0.1:{server.port}/page"
    base = requests.Session() if mode == "requests" else make_session(mode)
    if mode == "requests":
        session = cachecontrol.CacheControl(base)
    else:

        class CachingAdapter(cachecontrol.CacheControlAdapter, fastpool.HTTPAdapter):
            pass

        session = cachecontrol.CacheControl(base, adapter_class=CachingAdapter)
    with session:
        first = session.get(url)
        assert first.content == body and not first.from_cache
        if mode != "requests":
            assert type(first.raw) is EngineResponse  # fetched through fastpool's pools
        second = session.get(url)
        assert second.content == body and second.from_cache
        assert server.answered == 1  # the second came from the cache, not the server


# --- fastpool's own OpenTelemetry instrumentor (fastpool.otel) ---------------------------------
@pytest.fixture
def fastpool_spans() -> Iterator[Any]:
    """FastpoolInstrumentor on for the test, with an in-memory exporter (yielded)."""
    _tool("opentelemetry.sdk.trace")
    _tool("opentelemetry.instrumentation.instrumentor")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fastpool.otel import FastpoolInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = FastpoolInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


def test_fastpool_instrumentor_spans_events_and_traceparent(
    app_server: AppServer, fastpool_spans: Any
) -> None:
    with fastpool.PoolManager() as pm:
        r = pm.request("GET", app_server.url + "/echo?q=1")
        r2 = pm.request("GET", app_server.url + "/status/404")
    first, second = fastpool_spans.get_finished_spans()
    assert (first.name, first.kind.name) == ("GET", "CLIENT")
    assert dict(first.attributes) == {
        "http.request.method": "GET",
        "url.full": app_server.url + "/echo?q=1",
        "server.address": "127.0.0.1",
        "server.port": app_server.port,
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
    }
    ctx = first.get_span_context()
    sent = {n.lower(): v for n, v in json.loads(r.data)["headers"]}
    assert sent["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    # the pool's steps as events: a new connection for the first, the same one reused after
    events = [event.name for event in first.events]
    assert events[:3] == ["fastpool.get_conn", "fastpool.got_conn", "fastpool.connect_start"]
    assert first.events[1].attributes["fastpool.reused"] is False
    assert [
        e.attributes.get("fastpool.reused") for e in second.events if e.name.endswith("got_conn")
    ] == [True]
    assert r2.status == 404
    assert second.attributes["error.type"] == "404"
    assert second.status.status_code.name == "ERROR"


def test_fastpool_instrumentor_error_span_and_uninstrument(app_server: AppServer) -> None:
    _tool("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fastpool.otel import FastpoolInstrumentor
    from fastpool.pool import HTTPConnectionPool

    original = HTTPConnectionPool.urlopen
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = FastpoolInstrumentor()
    pm = fastpool.PoolManager(retries=False)
    pm.request("GET", app_server.url + "/bytes/1")  # a pool made before instrumenting
    instrumentor.instrument(tracer_provider=provider)
    try:
        assert pm.request("GET", app_server.url + "/bytes/1").status == 200
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(Exception):  # noqa: B017 - the class is urllib3's choice
            pm.request("GET", f"http://127.0.0.1:{port}/")
    finally:
        instrumentor.uninstrument()
    ok, failed = exporter.get_finished_spans()
    assert ok.events  # the pool made before instrumenting reports its steps too
    assert failed.status.status_code.name == "ERROR"
    assert failed.attributes["error.type"] == "NewConnectionError"
    # uninstrumented: fastpool's own code again, and no span
    assert HTTPConnectionPool.urlopen is original
    assert pm.connection_from_url(app_server.url)._trace is None
    exporter.clear()
    pm.request("GET", app_server.url + "/bytes/1")
    assert exporter.get_finished_spans() == ()
    pm.clear()


def test_fastpool_instrumentor_under_requests_instrumentation_makes_no_second_span(
    mode: str,
    session: requests.Session,
    app_server: AppServer,
    otel_spans: Any,
    fastpool_spans: Any,
) -> None:
    # requests' span suppresses the HTTP instrumentations below it, as urllib3's does.
    session.get(app_server.url + "/bytes/1")
    assert len(otel_spans.get_finished_spans()) == 1
    assert fastpool_spans.get_finished_spans() == ()


def test_fastpool_instrumentor_alone_traces_the_adapter_and_session(
    mode: str, session: requests.Session, app_server: AppServer, fastpool_spans: Any
) -> None:
    r = session.get(app_server.url + "/echo")
    spans = fastpool_spans.get_finished_spans()
    if mode == "requests":
        assert spans == ()  # plain requests never reaches fastpool's pools
        return
    (span,) = spans
    assert span.attributes["http.response.status_code"] == 200
    sent = {n.lower(): v for n, v in r.json()["headers"]}
    assert sent["traceparent"].split("-")[2] == f"{span.get_span_context().span_id:016x}"


def test_fastpool_instrumentor_entry_point() -> None:
    # what OpenTelemetry's auto-instrumentation loads (needs an install: pip install -e .)
    from importlib.metadata import entry_points

    group = "opentelemetry_instrumentor"
    try:
        points = entry_points(group=group)
    except TypeError:  # Python 3.9: a dict of groups
        points = entry_points().get(group, ())  # type: ignore[attr-defined]
    found = [ep for ep in points if ep.name == "fastpool"]
    assert [ep.value for ep in found] == ["fastpool.otel:FastpoolInstrumentor"]
