"""fastpool.HTTPAdapter as a drop-in for requests.adapters.HTTPAdapter: construction, defaults,
bad arguments, pickling, close(), ``pool_timeout``, the overridable hooks, and subclasses.

Behaviour per request (bodies, errors, redirects ...) is compared with the stock adapter in
test_adapter_diff.py; the article's pooling scenarios are in test_article.py.
"""

from __future__ import annotations

import inspect
import pickle
import threading
import time
from typing import Any, Callable

import pytest
import requests
import requests.adapters
from dummyserver import AppServer
from hypothesis import given
from hypothesis import strategies as st
from urllib3.util import Retry

import fastpool
from fastpool.adapters import HTTPAdapter, PoolTimeout, _split_url

STOCK = requests.adapters.HTTPAdapter
# requests 2.32.3 and 2.32.4 share one preloaded SSLContext between every verify=True pool.
# fastpool keeps it out of the pool key and loads requests' default CA bundle into each pool
# instead, as requests 2.32.5 does (HTTPAdapter.build_connection_pool_key_attributes).
PRELOADED_SSL_CONTEXT = getattr(requests.adapters, "_preloaded_ssl_context", None)
_JOIN_SECONDS = 10.0


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests would replace verify=True by these; the tests choose verify themselves.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def _session(adapter: requests.adapters.BaseAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- construction --------------------------------------------------------------------------------


def test_is_exported_and_subclasses_stock() -> None:
    assert fastpool.HTTPAdapter is HTTPAdapter
    assert issubclass(HTTPAdapter, STOCK)
    assert issubclass(PoolTimeout, requests.exceptions.ConnectionError)
    assert issubclass(PoolTimeout, requests.exceptions.Timeout)


def test_signature_is_stock_plus_keyword_only_options() -> None:
    ours = inspect.signature(HTTPAdapter)
    stock = inspect.signature(STOCK)
    keyword_only = inspect.Parameter.KEYWORD_ONLY
    shared = [p for p in ours.parameters.values() if p.kind is not keyword_only]
    assert [(p.name, p.default, p.kind) for p in shared] == [
        (p.name, p.default, p.kind) for p in stock.parameters.values()
    ]
    extra = {p.name: p.default for p in ours.parameters.values() if p.kind is keyword_only}
    assert extra == {
        "pool_timeout": None,
        "idle_timeout": None,
        "max_lifetime": None,
        "max_connections_per_host": None,
        "max_connections": None,
        "pool_full_warning": "always",
        "source_address": None,
        "socket_options": None,
        "max_line_bytes": None,
        "max_headers": None,
        "max_head_bytes": None,
        "resolver": None,
    }


def _state(adapter: Any) -> dict[str, Any]:
    state = adapter.__getstate__()
    state["max_retries"] = repr(state["max_retries"])
    return state


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((3, 4, 5, True), {}),
        ((), {"max_retries": Retry(total=2, status_forcelist=[503])}),
        ((), {"max_retries": None}),
        ((1, 1), {"pool_block": True}),
        ((0, 0), {}),
    ],
)
def test_state_equals_stock(args: tuple, kwargs: dict[str, Any]) -> None:
    ours = HTTPAdapter(*args, **kwargs)
    stock = STOCK(*args, **kwargs)
    assert _state(ours) == {
        **_state(stock),
        "_pool_timeout": None,
        "_pool_options": {},
        "_connection_kw": {},
    }
    assert ours.proxy_manager == {} and ours.config == {}
    assert type(ours.poolmanager) is fastpool.PoolManager
    assert ours.pool_timeout is None


def test_retry_instance_is_kept() -> None:
    retry = Retry(total=4)
    assert HTTPAdapter(max_retries=retry).max_retries is retry


def test_pool_timeout_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        HTTPAdapter(1, 1, 0, True, 5)  # type: ignore[misc]
    assert HTTPAdapter(pool_block=True, pool_timeout=2.5).pool_timeout == 2.5


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"pool_connections": "10"}, TypeError, "pool_connections must be an int, got str"),
        ({"pool_connections": 2.0}, TypeError, "pool_connections must be an int, got float"),
        ({"pool_connections": True}, TypeError, "pool_connections must be an int, got bool"),
        ({"pool_connections": -1}, ValueError, "pool_connections must be >= 0, got -1"),
        ({"pool_maxsize": None}, TypeError, "pool_maxsize must be an int, got NoneType"),
        ({"pool_maxsize": -5}, ValueError, "pool_maxsize must be >= 0, got -5"),
        ({"pool_timeout": "1"}, TypeError, "pool_timeout must be an int or float or None, got str"),
        (
            {"pool_timeout": True},
            TypeError,
            "pool_timeout must be an int or float or None, got bool",
        ),
        ({"pool_timeout": -0.5}, ValueError, "pool_timeout must be >= 0, got -0.5"),
        ({"pool_timeout": float("nan")}, ValueError, "pool_timeout must not be NaN"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(")):
        HTTPAdapter(**kwargs)


# --- pickling ------------------------------------------------------------------------------------


def test_pickle_round_trip_then_request(app_server: AppServer) -> None:
    adapter = HTTPAdapter(3, 4, Retry(total=2), True, pool_timeout=1.5)
    with _session(adapter) as session:
        assert session.get(app_server.url + "/bytes/5").status_code == 200
    clone = pickle.loads(pickle.dumps(adapter))
    assert type(clone) is HTTPAdapter
    assert _state(clone) == _state(adapter)
    assert clone.pool_timeout == 1.5
    assert clone.poolmanager is not adapter.poolmanager
    with _session(clone) as session:
        assert session.get(app_server.url + "/bytes/5").content == b"abcde"


def test_unpickles_a_state_without_the_new_options(app_server: AppServer) -> None:
    state = STOCK(2, 3).__getstate__()  # what an adapter pickled by stock-like code holds
    adapter = HTTPAdapter.__new__(HTTPAdapter)
    adapter.__setstate__(state)
    assert adapter.pool_timeout is None
    assert (adapter._pool_connections, adapter._pool_maxsize) == (2, 3)
    with _session(adapter) as session:
        assert session.get(app_server.url + "/bytes/2").status_code == 200


def test_session_with_adapter_pickles(app_server: AppServer) -> None:
    with _session(HTTPAdapter(pool_timeout=1.0)) as session:
        session.get(app_server.url + "/bytes/1")
        clone = pickle.loads(pickle.dumps(session))
    assert clone.get_adapter(app_server.url).pool_timeout == 1.0
    with clone:
        assert clone.get(app_server.url + "/bytes/1").status_code == 200


# --- close ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter_cls", [STOCK, HTTPAdapter], ids=["stock", "fastpool"])
def test_close_drops_pooled_connections(
    adapter_cls: type, server_factory: Callable[..., AppServer], proxy_server: Any
) -> None:
    app, other = server_factory(), server_factory("127.0.0.2")
    adapter = adapter_cls()
    with _session(adapter) as session:
        session.get(app.url + "/bytes/1")
        session.get(other.url + "/bytes/1", proxies={"http": proxy_server.url})
        adapter.close()
        assert len(adapter.poolmanager.pools) == 0
        assert all(len(manager.pools) == 0 for manager in adapter.proxy_manager.values())
        session.get(app.url + "/bytes/1")
        session.get(other.url + "/bytes/1", proxies={"http": proxy_server.url})
    assert app.connections == 2  # the pooled connection was closed, a new one opened
    assert proxy_server.connections == 2


def test_session_close_closes_the_adapter(app_server: AppServer) -> None:
    adapter = HTTPAdapter()
    with _session(adapter) as session:
        session.get(app_server.url + "/bytes/1")
        assert len(adapter.poolmanager.pools) == 1
    assert len(adapter.poolmanager.pools) == 0


# --- pool_timeout --------------------------------------------------------------------------------


def test_pool_timeout_raises_a_connection_error_and_keeps_slots_right(
    app_server: AppServer,
) -> None:
    adapter = HTTPAdapter(pool_maxsize=1, pool_block=True, pool_timeout=0.2)
    url = app_server.url + "/bytes/10"
    with _session(adapter) as session:
        held = session.get(url, stream=True)  # holds the pool's only connection
        with pytest.raises(PoolTimeout) as info:
            session.get(url)
        assert isinstance(info.value, requests.exceptions.ConnectionError)
        assert info.value.request is not None and info.value.request.url == url
        assert "0.2" in str(info.value)  # the engine's message names the timeout it waited
        assert held.content == b"abcdefghij"  # body read: the connection goes back
        assert session.get(url).status_code == 200
        pool = adapter.get_connection_with_tls_context(_prepared(url), True)
        assert pool.num_connections == 1
        queue = pool.pool  # the slot accounting: nothing in use, nobody waiting, one idle
        assert (queue.in_use, queue.waiters, queue.open, queue.idle) == (0, 0, 1, 1)
    assert app_server.connections == 1


def test_pool_block_waits_for_a_connection_without_pool_timeout(app_server: AppServer) -> None:
    adapter = HTTPAdapter(pool_maxsize=1, pool_block=True)
    url = app_server.url + "/bytes/10"
    results: list[int] = []
    with _session(adapter) as session:
        held = session.get(url, stream=True)
        waiter = threading.Thread(target=lambda: results.append(session.get(url).status_code))
        waiter.start()
        queue = adapter.get_connection_with_tls_context(_prepared(url), True).pool
        deadline = time.monotonic() + _JOIN_SECONDS  # a hang guard, not a measurement
        while queue.waiters == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert queue.waiters == 1 and results == []  # waiting for the held connection
        assert held.content == b"abcdefghij"  # the body is read: the connection goes back
        waiter.join(_JOIN_SECONDS)
        assert not waiter.is_alive()
    assert results == [200]
    assert app_server.connections == 1


def test_pool_timeout_does_nothing_without_pool_block(app_server: AppServer) -> None:
    adapter = HTTPAdapter(pool_maxsize=1, pool_timeout=0.01)
    url = app_server.url + "/bytes/10"
    with _session(adapter) as session:
        held = session.get(url, stream=True)
        assert session.get(url).status_code == 200  # an extra connection, as stock opens
        held.close()
    assert app_server.connections == 2


# --- the overridable hooks -----------------------------------------------------------------------


def _prepared(url: str, **kwargs: Any) -> requests.PreparedRequest:
    return requests.Request("GET", url, **kwargs).prepare()


@pytest.mark.parametrize(
    ("url", "proxies"),
    [
        ("http://h.example/a/b?q=1#frag", None),
        ("http://h.example/a/b?q=1", {"http": "http://proxy:3128"}),
        ("https://h.example/a", {"https": "http://proxy:3128"}),
        ("http://u:p@h.example/a", {"http": "socks5://proxy:1080"}),
        ("http://h.example", {}),
    ],
)
def test_request_url_equals_stock(url: str, proxies: Any) -> None:
    request = _prepared(url)
    assert HTTPAdapter().request_url(request, proxies) == STOCK().request_url(request, proxies)


def test_proxy_headers_equal_stock() -> None:
    for proxy in ("http://proxy:1", "http://user:p%40ss@proxy:1"):
        assert HTTPAdapter().proxy_headers(proxy) == STOCK().proxy_headers(proxy)


@pytest.mark.parametrize("verify", [True, False, __file__])
@pytest.mark.parametrize("cert", [None, "c.pem", ("c.pem", "k.pem")])
def test_pool_key_attributes_equal_stock(verify: Any, cert: Any) -> None:
    request = _prepared("https://h.example:8443/x")
    ours = HTTPAdapter().build_connection_pool_key_attributes(request, verify, cert)
    host_params, pool_kwargs = STOCK().build_connection_pool_key_attributes(request, verify, cert)
    if (
        PRELOADED_SSL_CONTEXT is not None
        and pool_kwargs.get("ssl_context") is PRELOADED_SSL_CONTEXT
    ):
        del pool_kwargs["ssl_context"]  # the deliberate difference on requests 2.32.3/2.32.4
    assert ours == (host_params, pool_kwargs)


def test_get_connection_with_tls_context_gives_fastpool_pools(ca_bundle: str) -> None:
    adapter = HTTPAdapter()
    request = _prepared("https://127.0.0.1:8443/x")
    pool = adapter.get_connection_with_tls_context(request, ca_bundle)
    assert (pool.scheme, pool.host, pool.port) == ("https", "127.0.0.1", 8443)
    assert pool is adapter.get_connection_with_tls_context(request, ca_bundle)
    assert type(pool).__module__.startswith("fastpool.")
    proxied = adapter.get_connection_with_tls_context(
        request, True, proxies={"https": "http://127.0.0.1:3128"}
    )
    assert proxied is not pool
    assert list(adapter.proxy_manager) == ["http://127.0.0.1:3128"]


def test_invalid_proxy_url_from_the_hook() -> None:
    with pytest.raises(requests.exceptions.InvalidProxyURL):
        HTTPAdapter().get_connection_with_tls_context(
            _prepared("http://h.example/"), True, proxies={"http": "http://"}
        )


def test_get_connection_is_deprecated_but_works() -> None:
    adapter = HTTPAdapter()
    with pytest.warns(DeprecationWarning, match="get_connection_with_tls_context"):
        pool = adapter.get_connection("http://h.example:81/x")
    assert (pool.host, pool.port) == ("h.example", 81)


@pytest.mark.parametrize("adapter_cls", [STOCK, HTTPAdapter], ids=["stock", "fastpool"])
@pytest.mark.parametrize(
    ("url", "verify", "cert"),
    [
        ("https://h.example/", True, None),
        ("https://h.example/", False, None),
        ("http://h.example/", True, None),
        ("https://h.example/", "CA_FILE", (__file__, __file__)),
        ("https://h.example/", "CA_DIR", __file__),
    ],
)
def test_cert_verify_sets_the_pool_like_stock(
    adapter_cls: type, url: str, verify: Any, cert: Any, ca_bundle: str
) -> None:
    import os

    verify = {"CA_FILE": ca_bundle, "CA_DIR": os.path.dirname(ca_bundle)}.get(verify, verify)
    adapter = adapter_cls()
    pool = adapter.get_connection_with_tls_context(_prepared(url), verify, cert=cert)
    adapter.cert_verify(pool, url, verify, cert)
    seen = {n: getattr(pool, n, None) for n in ("cert_reqs", "ca_certs", "ca_cert_dir",
                                                 "cert_file", "key_file")}  # fmt: skip
    reference = STOCK()
    stock_pool = reference.get_connection_with_tls_context(_prepared(url), verify, cert=cert)
    reference.cert_verify(stock_pool, url, verify, cert)
    expected = {n: getattr(stock_pool, n, None) for n in seen}
    if (
        adapter_cls is HTTPAdapter
        and PRELOADED_SSL_CONTEXT is not None
        and verify is True
        and url.startswith("https")
    ):
        # requests 2.32.3/2.32.4 trust the default bundle through the preloaded context;
        # fastpool loads that bundle into the pool instead, as requests 2.32.5 does.
        expected["ca_certs"] = requests.utils.extract_zipped_paths(
            requests.adapters.DEFAULT_CA_BUNDLE_PATH
        )
    assert seen == expected


def test_cert_verify_missing_files_raise_like_stock() -> None:
    for verify, cert, words in [
        ("/nonexistent/ca.pem", None, "TLS CA certificate bundle"),
        (True, "/nonexistent/cert.pem", "TLS certificate file"),
        (True, (__file__, "/nonexistent/key.pem"), "TLS key file"),
    ]:
        pool = HTTPAdapter().get_connection_with_tls_context(_prepared("https://h/"), True)
        with pytest.raises(OSError, match=words):
            HTTPAdapter().cert_verify(pool, "https://h/", verify, cert)


def test_socks_proxy_manager_like_stock() -> None:
    try:
        import socks  # noqa: F401
    except ImportError:
        for adapter in (STOCK(), HTTPAdapter()):
            with pytest.raises(requests.exceptions.InvalidSchema, match="SOCKS"):
                adapter.proxy_manager_for("socks5://127.0.0.1:1080")
    else:
        from urllib3.contrib.socks import SOCKSProxyManager

        assert isinstance(HTTPAdapter().proxy_manager_for("socks5://h:1"), SOCKSProxyManager)


def test_proxy_manager_for_is_cached_and_carries_sizes() -> None:
    adapter = HTTPAdapter(3, 7, pool_block=True)
    manager = adapter.proxy_manager_for("http://user:pw@127.0.0.1:3128")
    assert adapter.proxy_manager_for("http://user:pw@127.0.0.1:3128") is manager
    assert manager.proxy_headers == {"Proxy-Authorization": "Basic dXNlcjpwdw=="}
    assert type(manager).__module__.startswith("fastpool.")


# --- subclasses ----------------------------------------------------------------------------------


def test_subclass_add_headers_is_honoured(app_server: AppServer) -> None:
    seen: list[dict[str, Any]] = []

    class Tagging(HTTPAdapter):
        def add_headers(self, request: Any, **kwargs: Any) -> None:
            seen.append(kwargs)
            request.headers["X-Tag"] = "tagged"

    with _session(Tagging()) as session:
        echo = session.get(app_server.url + "/echo", timeout=4).json()
    assert ["X-Tag", "tagged"] in echo["headers"]
    assert seen == [{"stream": False, "timeout": 4, "verify": True, "cert": None, "proxies": {}}]


def test_subclass_cert_verify_is_honoured(https_server: AppServer, ca_bundle: str) -> None:
    class PinnedCA(HTTPAdapter):
        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            super().cert_verify(conn, url, ca_bundle, cert)  # trusts the test CA always

    with _session(PinnedCA()) as session:
        assert session.get(https_server.url + "/echo", verify=True).status_code == 200
    with _session(HTTPAdapter()) as session, pytest.raises(requests.exceptions.SSLError):
        session.get(https_server.url + "/echo", verify=True)


@pytest.mark.parametrize("base", [STOCK, HTTPAdapter], ids=["stock", "fastpool"])
def test_subclass_init_poolmanager_ssl_context(
    base: type, https_server: AppServer, tls_ca: Any
) -> None:
    """The common recipe: a subclass passes its own ssl_context to the PoolManager."""
    import ssl

    context = ssl.create_default_context()
    tls_ca.configure_trust(context)

    class ContextAdapter(base):  # type: ignore[misc,valid-type]
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)

    with _session(ContextAdapter()) as session:
        assert session.get(https_server.url + "/echo").status_code == 200


def test_subclass_build_response_is_honoured(app_server: AppServer) -> None:
    class Marking(HTTPAdapter):
        def build_response(self, req: Any, resp: Any) -> requests.Response:
            response = super().build_response(req, resp)
            response.marked = True  # type: ignore[attr-defined]
            return response

    with _session(Marking()) as session:
        assert session.get(app_server.url + "/bytes/1").marked  # type: ignore[attr-defined]


def test_fast_route_is_taken_for_the_common_case(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The differential suite covers the fast route only if plain requests really take it."""
    adapter = HTTPAdapter()
    general: list[str] = []
    original = adapter._general_target

    def spy(request: Any, *args: Any) -> Any:
        general.append(request.url)
        return original(request, *args)

    monkeypatch.setattr(adapter, "_general_target", spy)
    with _session(adapter) as session:
        session.get(app_server.url + "/bytes/1", timeout=(3, 4))
        session.get(app_server.url + "/bytes/1", verify=False)
        assert general == []
        session.get(app_server.url + "/bytes/1", cert=__file__)  # a client cert: general
    assert general == [app_server.url + "/bytes/1"]


def test_subclass_wrapping_send_keeps_the_fast_route(
    app_server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common recipe "a default timeout" overrides send only: still honoured, still fast."""
    seen: list[Any] = []

    class DefaultTimeout(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = 7
            seen.append(kwargs["timeout"])
            return super().send(request, **kwargs)

    adapter = DefaultTimeout()
    monkeypatch.setattr(adapter, "_general_target", None)  # calling it would fail the test
    with _session(adapter) as session:
        assert session.get(app_server.url + "/bytes/3").content == b"abc"
    assert seen == [7]


def test_shared_adapter_across_threads(app_server: AppServer) -> None:
    """One adapter, four threads (each with its own Session): no errors, at most 4 connections."""
    adapter = HTTPAdapter(pool_maxsize=4)
    errors: list[BaseException] = []

    def fetch() -> None:
        session = _session(adapter)  # not closed: closing would close the shared adapter
        try:
            for i in range(25):
                assert len(session.get(f"{app_server.url}/bytes/{i}").content) == i
        except Exception as exc:  # noqa: BLE001 - reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(_JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert app_server.requests == 100
    assert app_server.connections <= 4
    adapter.close()


# --- the fast route's URL split ------------------------------------------------------------------

_URL_TEXT = st.text(
    alphabet=st.sampled_from(list("aZ09/?#;=&%:@.-_~ !$'()*+,[]\t\n\r\u00e9\u2603")), max_size=20
)


@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "hTTps", "ftp", "1http"]),
    netloc=st.sampled_from(["h.example", "H.Example:8080", "127.0.0.1:1", "[::1]:80", "u:p@h"]),
    rest=_URL_TEXT,
)
def test_split_url_agrees_with_path_url(scheme: str, netloc: str, rest: str) -> None:
    """Where the quick split answers, it says what PreparedRequest.path_url and urlsplit say."""
    from urllib.parse import urlsplit

    request = requests.PreparedRequest()
    request.url = f"{scheme}://{netloc}/{rest}"
    split = _split_url(request.url)
    if split is None:
        return  # declined: the general route answers
    origin, path = split
    assert path == request.path_url
    parts = urlsplit(request.url)
    assert origin == f"{parts.scheme and request.url[: len(parts.scheme)]}://{parts.netloc}"


@given(rest=_URL_TEXT)
def test_split_url_serves_prepared_urls(rest: str) -> None:
    """URLs that requests prepared (quoted) are always served by the quick split."""
    request = requests.Request("GET", "http://h.example:81/" + rest.strip()).prepare()
    assert request.url is not None
    assert _split_url(request.url) == ("http://h.example:81", request.path_url)


def test_verify_ca_path_takes_the_fast_route(https_server, ca_bundle, tmp_path):
    # Bug: with REQUESTS_CA_BUNDLE set, every request carried verify=<path> and took the slow
    # route. The fast route caches the path's pool kwargs; answers stay stock's.
    import os

    import requests

    adapter = HTTPAdapter()
    session = requests.Session()
    session.mount("https://", adapter)
    for _ in range(3):
        assert session.get(https_server.url + "/bytes/3", verify=ca_bundle).content == b"abc"
    assert adapter._ca_paths == {ca_bundle: {"ca_certs": ca_bundle, "cert_reqs": "CERT_REQUIRED"}}
    assert https_server.connections == 1
    [(_, pool)] = adapter.poolmanager.pools.items()
    assert pool.ca_certs == ca_bundle and pool.cert_reqs == "CERT_REQUIRED"
    # a directory of CA certificates (c_rehash layout) is ca_cert_dir, as stock
    ca_dir = tmp_path / "cas"
    ca_dir.mkdir()
    assert adapter._ca_path_kwargs(os.fspath(ca_dir)) == {
        "ca_cert_dir": os.fspath(ca_dir),
        "cert_reqs": "CERT_REQUIRED",
    }
    # a missing bundle still fails as stock does
    with pytest.raises(OSError, match="Could not find a suitable TLS CA certificate bundle"):
        session.get(https_server.url + "/bytes/3", verify=os.fspath(tmp_path / "missing.pem"))
    session.close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("other", [None, "path"])
def test_tls_settings_of_another_route_never_stick_to_the_fast_route(
    https_server, ca_bundle, other
):
    """The fast route applies cert_verify once per pool; a request through the general route
    (verify=None or a Path) into the same pool changes the pool's TLS settings, and the next
    verify=True request must set them back (the server's CA is not in certifi's bundle)."""
    import pathlib

    import requests

    session = requests.Session()
    session.trust_env = False
    session.mount("https://", HTTPAdapter())
    url = https_server.url + "/bytes/3"
    middle = None if other is None else pathlib.Path(ca_bundle)
    outcomes = []
    for verify in (True, middle, True, True):
        session.verify = verify  # a session-wide None reaches the adapter as None
        try:
            outcomes.append(session.get(url).status_code)
        except requests.exceptions.SSLError:
            outcomes.append("SSLError")
    # verify=None: no verification (requests' cert_verify); then True verifies again
    assert outcomes == ["SSLError", 200, "SSLError", "SSLError"]
    session.close()


def test_foreign_pool_classes_still_work_on_the_fast_route(app_server) -> None:
    import urllib3

    adapter = HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {  # type: ignore[attr-defined]
        "http": urllib3.HTTPConnectionPool,
        "https": urllib3.HTTPSConnectionPool,
    }
    session = requests.Session()
    session.mount("http://", adapter)
    assert session.get(app_server.url + "/bytes/2").content == b"ab"
    assert session.get(app_server.url + "/bytes/2").content == b"ab"
    session.close()


def test_a_ca_bundle_is_looked_for_once_per_pool_unlike_stock(https_server, ca_bundle, tmp_path):
    """A deliberate difference (docs/differences.md): stock asks the file system for the bundle
    on every request; the fast route once per pool, so a bundle deleted later fails only when a
    new connection has to load it."""
    import shutil

    import requests

    bundle = tmp_path / "ca.pem"
    shutil.copy(ca_bundle, bundle)
    url = https_server.url + "/bytes/3"
    stock, ours = requests.Session(), requests.Session()
    for session, adapter in ((stock, requests.adapters.HTTPAdapter()), (ours, HTTPAdapter())):
        session.trust_env = False
        session.mount("https://", adapter)
        assert session.get(url, verify=str(bundle)).content == b"abc"
    bundle.unlink()
    with pytest.raises(OSError, match="Could not find a suitable TLS CA certificate bundle"):
        stock.get(url, verify=str(bundle))
    assert ours.get(url, verify=str(bundle)).content == b"abc"  # its kept connection
    stock.close()
    ours.close()


def test_crawler_options_reach_the_pools_and_survive_pickling(app_server) -> None:
    adapter = HTTPAdapter(idle_timeout=30, max_lifetime=600, max_connections_per_host=4)
    adapter = pickle.loads(pickle.dumps(adapter))
    session = requests.Session()
    session.mount("http://", adapter)
    assert session.get(app_server.url + "/bytes/2").content == b"ab"
    [(_, pool)] = adapter.poolmanager.pools.items()
    assert (pool.idle_timeout, pool.max_lifetime, pool.pool.limit) == (30.0, 600.0, 4)
    stats = adapter.pool_stats()
    assert stats.total.created == 1
    session.close()
    with pytest.raises(ValueError, match="pool_full_warning"):
        HTTPAdapter(pool_full_warning="never")


#: the hooks the fast route stands in for: requests' (inherited) and fastpool's own
_ROUTE_HOOKS = [
    "build_response",
    "request_url",
    "add_headers",
    "get_connection_with_tls_context",
    "build_connection_pool_key_attributes",
    "cert_verify",
]


#: where a test patches a hook: fastpool's class or requests' (whichever defines it), before
#: or after the Session was made; the adapter itself; a subclass of fastpool's adapter, or a
#: mixin of requests' adapter placed after fastpool's, after the adapter was made
_PATCH_PLACES = ["class-first", "session-first", "adapter", "subclass", "mixin"]
_PATCHES = [(hook, where) for hook in _ROUTE_HOOKS for where in _PATCH_PLACES] + [
    # requests' own, which fastpool's two call through super()
    ("build_connection_pool_key_attributes", "requests-class"),
    ("cert_verify", "requests-class"),
]


@pytest.mark.parametrize(("hook", "where"), _PATCHES)
def test_a_patch_of_a_hook_of_the_route_sees_every_request(
    app_server: AppServer, hook: str, where: str
) -> None:
    # A patch of a hook the fast route stands in for, in each place of _PATCH_PLACES: the fast
    # route steps aside for it (it skipped it), on one request and in map, as the stock
    # adapter calls it for each one.
    owner: Any = requests.adapters.HTTPAdapter
    if hook in vars(fastpool.HTTPAdapter) and where != "requests-class":
        owner = fastpool.HTTPAdapter
    real = getattr(owner, hook)
    mounted: Any = None
    if where == "subclass":

        class Mine(fastpool.HTTPAdapter):
            pass

        owner = mounted = Mine
    elif where == "mixin":

        class Mixin(requests.adapters.HTTPAdapter):
            pass

        class Mixed(fastpool.HTTPAdapter, Mixin):
            pass

        # (fastpool's own hooks reach the mixin's through super(): the spy calls requests')
        owner, mounted = Mixin, Mixed
        real = getattr(requests.adapters.HTTPAdapter, hook)
    calls: list[int] = []

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    url = f"{app_server.url}/bytes/10"
    session = fastpool.Session() if where != "class-first" else None
    if mounted is not None:
        assert session is not None
        session.mount("http://", mounted())
    per_request = []
    with pytest.MonkeyPatch.context() as patch:
        if where == "adapter":
            assert session is not None
            adapter = session.get_adapter(url)
            patch.setattr(adapter, hook, lambda *a, **kw: spy(adapter, *a, **kw))
        else:
            patch.setattr(owner, hook, spy)
        with session or fastpool.Session() as fast:
            for run in (lambda: [fast.get(url, timeout=5)], lambda: fast.map([url], timeout=5)):
                before = len(calls)
                outcomes = list(run())
                per_request.append(len(calls) - before)
                assert all(getattr(o, "error", None) is None for o in outcomes)
    assert per_request[0] >= 1 and per_request[1] == per_request[0], per_request
    if owner is requests.adapters.HTTPAdapter and where != "adapter":
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(owner, hook, spy)
            before = len(calls)
            with requests.Session() as stock:
                stock.get(url, timeout=5)
            assert len(calls) - before == per_request[0]  # as often as stock calls it


def test_an_adapter_given_another_class_takes_that_class_hooks(app_server: AppServer) -> None:
    # ``adapter.__class__ = Other``: Other's override of a hook of the fast route is called
    # from then on, as it would be on an adapter made as an Other.
    calls: list[str] = []

    class Other(fastpool.HTTPAdapter):
        def build_response(self, req: Any, resp: Any) -> requests.Response:
            calls.append(req.url)
            return super().build_response(req, resp)

    url = f"{app_server.url}/bytes/10"
    with fastpool.Session() as session:
        adapter = session.get_adapter(url)
        assert session.get(url, timeout=5).status_code == 200
        assert calls == []
        adapter.__class__ = Other
        session.get(url, timeout=5)
        list(session.map([url], timeout=5))
    assert calls == [url, url]


def test_a_hook_of_a_mixin_of_requests_adapter_is_called(app_server: AppServer) -> None:
    # class Mixed(fastpool.HTTPAdapter, Mixin), Mixin a subclass of requests' adapter with its
    # own cert_verify (a requests_toolbelt-style combination): fastpool's cert_verify reaches
    # it through super(), on every request, as stock's class reaches it directly.
    calls: list[str] = []

    class Mixin(requests.adapters.HTTPAdapter):
        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            calls.append(url)
            super().cert_verify(conn, url, verify, cert)

    class Mixed(fastpool.HTTPAdapter, Mixin):
        pass

    url = f"{app_server.url}/bytes/10"
    with fastpool.Session() as session:
        session.mount("http://", Mixed())
        for _ in range(2):
            session.get(url, timeout=5)
        list(session.map([url, url], timeout=5))
    assert calls == [url] * 4
