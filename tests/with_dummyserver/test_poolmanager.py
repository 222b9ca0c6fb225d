"""PoolManager / ProxyManager against real local servers: reuse, pools per host, LRU eviction,
pool keys, HTTPS verification, proxies, redirects, retries and the urllib3 log lines."""

from __future__ import annotations

import json
import logging
import ssl
import threading

import pytest
import urllib3
from urllib3.exceptions import MaxRetryError, ProxyError, SSLError
from urllib3.util.retry import Retry

from fastpool.poolmanager import PoolManager, ProxyManager, proxy_from_url


def _echo(response: urllib3.BaseHTTPResponse) -> dict:  # type: ignore[type-arg]
    return json.loads(response.data)  # type: ignore[no-any-return]


def _assert_idle(pm: PoolManager) -> None:
    for pool in pm.pools.values():
        assert pool.pool.in_use == 0, pool


def test_keep_alive_reuses_one_connection(app_server):
    with PoolManager() as pm:
        for i in range(20):
            r = pm.request("GET", f"{app_server.url}/bytes/{i * 10}")
            assert r.status == 200 and len(r.data) == i * 10
        assert app_server.connections == 1
        assert app_server.requests == 20
        _assert_idle(pm)


def test_one_pool_per_origin(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    with PoolManager() as pm:
        for _ in range(3):
            assert pm.request("GET", a.url + "/bytes/5").status == 200
            assert pm.request("GET", b.url + "/bytes/5").status == 200
        assert len(pm.pools) == 2
        assert (a.connections, b.connections) == (1, 1)


def test_lru_eviction_closes_idle_at_once_and_in_flight_survives(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    pm = PoolManager(num_pools=1)
    assert pm.request("GET", a.url + "/bytes/3").status == 200
    pool_a = pm.connection_from_url(a.url)
    # a response in flight on A (body not read yet) ...
    streaming = pm.request("GET", a.url + "/bytes/200000", preload_content=False)
    assert pool_a.pool.in_use == 1
    # ... survives the eviction of A's pool by B
    assert pm.request("GET", b.url + "/bytes/3").status == 200
    assert len(pm.pools) == 1
    assert pool_a.retired and not pool_a.closed  # retired, not closed: in-flight work goes on
    assert pool_a.pool.idle == 0
    assert pm.evicted_pools == 1 and pm.evicted_totals["created"] == 1
    assert len(streaming.read()) == 200000
    # the in-flight connection was closed on return, not kept
    assert pool_a.pool.in_use == 0 and pool_a.pool.idle == 0
    # and A again means a new pool and a new connection
    assert pm.request("GET", a.url + "/bytes/3").status == 200
    assert a.connections == 2
    pm.clear()


def test_article_pool_connections_counts(server_factory, caplog):
    """The article's first scenario: pool_connections=1 vs 2, three requests over two hosts."""
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    for num_pools, expected in ((1, 3), (2, 2)):
        caplog.clear()
        with PoolManager(num_pools=num_pools) as pm:
            for server in (a, b, a):
                pm.request("GET", server.url + "/bytes/10")
        starts = [r for r in caplog.records if r.getMessage().startswith("Starting new HTTP")]
        assert len(starts) == expected
        assert starts[0].getMessage() == f"Starting new HTTP connection (1): 127.0.0.2:{a.port}"


def test_log_lines_match_urllib3(app_server, caplog):
    def lines(manager_cls, logger):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=logger):
            pm = manager_cls()
            pm.request("GET", app_server.url + "/bytes/10")
            pm.request("GET", app_server.url + "/bytes/10", preload_content=False).read()
            pm.clear()
        return [
            (r.levelname, r.getMessage())
            for r in caplog.records
            if r.name.endswith("connectionpool")
        ]

    assert lines(PoolManager, "urllib3") == lines(urllib3.PoolManager, "urllib3")


def test_pool_key_separates_settings(https_server, ca_bundle):
    with PoolManager(ca_certs=ca_bundle) as pm:
        url = https_server.url + "/bytes/4"
        assert pm.request("GET", url).status == 200
        verified = pm.connection_from_url(url)
        unverified = pm.connection_from_url(url, pool_kwargs={"cert_reqs": "CERT_NONE"})
        assert unverified is not verified
        with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
            assert unverified.urlopen("GET", "/bytes/4").status == 200
        # CVE-2024-35195: the verified pool never got the unverified connection
        assert verified.pool.idle == 1 and unverified.pool.idle == 1
        assert verified.urlopen("GET", "/bytes/4").status == 200
        other = pm.connection_from_url(url, pool_kwargs={"ca_certs": None})
        assert other is not verified
        assert pm.connection_from_url(url) is verified


def test_https_verified_with_ca(https_server, ca_bundle):
    with PoolManager(ca_certs=ca_bundle) as pm:
        r = pm.request("GET", https_server.url + "/bytes/100")
        assert r.status == 200 and len(r.data) == 100
        pm.request("GET", https_server.url + "/bytes/100")
        assert https_server.connections == 1


def test_https_bad_ca_is_sslerror(untrusted_https_server, ca_bundle):
    with PoolManager(ca_certs=ca_bundle, retries=False) as pm:
        with pytest.raises(SSLError):
            pm.request("GET", untrusted_https_server.url + "/bytes/1")
        _assert_idle(pm)
    with PoolManager(ca_certs=ca_bundle, retries=1) as pm:
        with pytest.raises(MaxRetryError) as info:
            pm.request("GET", untrusted_https_server.url + "/bytes/1")
        assert isinstance(info.value.reason, SSLError)
        _assert_idle(pm)


def test_https_hostname_mismatch(server_factory, wrong_host_ssl_context, ca_bundle):
    server = server_factory(tls=wrong_host_ssl_context)
    with PoolManager(ca_certs=ca_bundle, retries=False) as pm, pytest.raises(SSLError):
        pm.request("GET", server.url + "/bytes/1")
    # assert_hostname names the certificate's host instead
    with PoolManager(ca_certs=ca_bundle, assert_hostname="wrong.example") as pm:
        assert pm.request("GET", server.url + "/bytes/1").status == 200


def test_https_client_cert(mtls_server, ca_bundle, client_cert):
    with PoolManager(ca_certs=ca_bundle, cert_file=client_cert) as pm:
        assert pm.request("GET", mtls_server.url + "/bytes/3").status == 200


def test_https_user_ssl_context(https_server, ca_bundle):
    ctx = ssl.create_default_context(cafile=ca_bundle)
    with PoolManager(ssl_context=ctx) as pm:
        assert pm.request("GET", https_server.url + "/bytes/3").data == b"abc"


def test_redirect_across_hosts_strips_authorization(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    target = f"{b.url}/echo"
    with PoolManager() as pm:
        r = pm.request(
            "GET",
            f"{a.url}/redirect-to?url={target}",
            headers={"Authorization": "secret", "X-Keep": "1"},
        )
        names = [k.lower() for k, _ in _echo(r)["headers"]]
        assert "authorization" not in names and "x-keep" in names


def test_redirect_limit(app_server):
    with PoolManager() as pm:
        with pytest.raises(MaxRetryError):
            pm.request("GET", app_server.url + "/redirect/5", retries=Retry(redirect=2))
        r = pm.request("GET", app_server.url + "/redirect/5", redirect=False)
        assert r.status == 302
        _assert_idle(pm)


def test_303_turns_post_into_get(app_server):
    with PoolManager() as pm:
        r = pm.request(
            "POST",
            f"{app_server.url}/redirect-to?url=/echo&status_code=303",
            body=b"payload",
        )
        data = _echo(r)
        assert data["method"] == "GET" and data["body"] == ""


def test_status_retry_with_retry_after(app_server):
    retries = Retry(total=2, status_forcelist=[503], backoff_factor=0)
    with PoolManager() as pm:
        with pytest.raises(MaxRetryError):
            pm.request("GET", app_server.url + "/status/503", retries=retries)
        assert app_server.requests == 3
        _assert_idle(pm)


def test_fields_and_json(app_server):
    with PoolManager() as pm:
        data = _echo(pm.request("GET", app_server.url + "/echo", fields={"a": "1", "b": "x y"}))
        assert data["query"] == "a=1&b=x+y"
        data = _echo(pm.request("POST", app_server.url + "/echo", json={"k": [1, 2]}))
        assert json.loads(data["body"]) == {"k": [1, 2]}
        data = _echo(pm.request("POST", app_server.url + "/echo", fields={"f": "v"}))
        assert "multipart/form-data" in dict(data["headers"])["Content-Type"]


def test_threads_share_pool(app_server):
    with PoolManager(maxsize=4) as pm:
        errors = []

        def work() -> None:
            try:
                for _ in range(20):
                    assert pm.request("GET", app_server.url + "/bytes/50").status == 200
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert app_server.requests == 80
        assert app_server.connections <= 4
        _assert_idle(pm)


def test_proxy_absolute_form(app_server, proxy_server):
    with ProxyManager(proxy_server.url) as pm:
        r = pm.request("GET", app_server.url + "/echo")
        assert r.status == 200
        assert proxy_server.request_lines[0] == f"GET {app_server.url}/echo HTTP/1.1"
        assert _echo(r)["path"] == "/echo"


def test_proxy_connect_for_https(https_server, proxy_server, ca_bundle):
    with proxy_from_url(proxy_server.url, ca_certs=ca_bundle) as pm:
        for _ in range(3):
            r = pm.request("GET", https_server.url + "/bytes/10")
            assert r.status == 200 and len(r.data) == 10
        assert proxy_server.request_lines == [f"CONNECT 127.0.0.1:{https_server.port} HTTP/1.1"]
        assert https_server.connections == 1


def test_proxy_auth(app_server, https_server, proxy_server_factory, ca_bundle):
    proxy = proxy_server_factory(auth=("u", "p"))
    auth = urllib3.make_headers(proxy_basic_auth="u:p")
    with ProxyManager(proxy.url, proxy_headers=auth, ca_certs=ca_bundle) as pm:
        assert pm.request("GET", app_server.url + "/bytes/3").status == 200
        assert pm.request("GET", https_server.url + "/bytes/3").status == 200
    with ProxyManager(proxy.url, ca_certs=ca_bundle, retries=False) as pm:
        assert pm.request("GET", app_server.url + "/bytes/3").status == 407
        with pytest.raises(ProxyError) as info:
            pm.request("GET", https_server.url + "/bytes/3")
        assert "407" in str(info.value.original_error)
        _assert_idle(pm)


@pytest.fixture
def https_proxy(server_ssl_context):  # type: ignore[no-untyped-def]
    """A forward proxy reached over TLS (its certificate from the test CA)."""
    from dummyserver import ProxyServer

    proxy = ProxyServer()
    proxy.tls = server_ssl_context
    with proxy:
        yield proxy
    assert not proxy.errors


def test_https_proxy_forwards_http(app_server, https_proxy, ca_bundle):
    with ProxyManager(https_proxy.url, ca_certs=ca_bundle) as pm:
        for _ in range(2):
            assert _echo(pm.request("GET", app_server.url + "/echo"))["path"] == "/echo"
        assert https_proxy.request_lines[0] == f"GET {app_server.url}/echo HTTP/1.1"
        assert https_proxy.connections == 1


def test_https_proxy_tunnels_https_tls_in_tls(https_server, https_proxy, ca_bundle):
    with ProxyManager(https_proxy.url, ca_certs=ca_bundle) as pm:
        for size in (10, 100000, 10):
            r = pm.request("GET", f"{https_server.url}/bytes/{size}")
            assert r.status == 200 and len(r.data) == size
        r = pm.request("GET", f"{https_server.url}/chunked/50000", preload_content=False)
        assert len(b"".join(r.stream(1000))) == 50000
        assert https_proxy.request_lines == [f"CONNECT 127.0.0.1:{https_server.port} HTTP/1.1"]
        assert https_server.connections == 1
        conn = pm.connection_from_url(https_server.url).pool.checkout(0)
        assert conn.is_verified and conn.proxy_is_verified
        pm.connection_from_url(https_server.url).pool.checkin(conn)


def test_https_proxy_certificate_is_verified(https_server, untrusted_ssl_context, ca_bundle):
    from dummyserver import ProxyServer

    proxy = ProxyServer()
    proxy.tls = untrusted_ssl_context
    with proxy, ProxyManager(proxy.url, ca_certs=ca_bundle, retries=False) as pm:
        with pytest.raises(ProxyError) as info:  # as urllib3: a failure to reach the proxy
            pm.request("GET", https_server.url + "/bytes/1")
        assert isinstance(info.value.original_error, SSLError)
        _assert_idle(pm)


def test_url_cache_follows_pool_eviction(server_factory):
    a, b = server_factory("127.0.0.2"), server_factory("127.0.0.3")
    pm = PoolManager(num_pools=1)
    url = a.url + "/bytes/1"
    pm.request("GET", url)
    pool = pm.connection_from_url(url)
    pm.request("GET", b.url + "/bytes/1")
    pm.request("GET", url)  # a cached URL must not reach the evicted, closed pool
    assert pm.connection_from_url(url) is not pool
    pm.clear()


def test_lru_order_kept_on_repeated_urls(server_factory):
    a, b, c = (server_factory(f"127.0.0.{i}") for i in (2, 3, 4))
    with PoolManager(num_pools=2) as pm:
        pm.request("GET", a.url + "/bytes/1")
        pm.request("GET", b.url + "/bytes/1")
        pm.request("GET", a.url + "/bytes/1")  # A is now the most recently used
        pool_a = pm.connection_from_url(a.url)
        pm.request("GET", c.url + "/bytes/1")  # evicts B, not A
        assert not pool_a.closed
        assert a.connections == 1


ROUTES = [
    ("GET", "/bytes/1000"),
    ("GET", "/chunked/5000"),
    ("GET", "/stream/5"),
    ("GET", "/gzip"),
    ("GET", "/deflate"),
    ("GET", "/br"),
    ("GET", "/zstd"),
    ("HEAD", "/bytes/10"),
    ("GET", "/status/204"),
    ("GET", "/status/304"),
    ("GET", "/status/404"),
    ("GET", "/redirect/3"),
    ("GET", "/no-length?n=3000"),
    ("GET", "/http10"),
    ("GET", "/close"),
    ("GET", "/headers"),
    ("GET", "/cookies/set?a=1"),
    ("DELETE", "/echo"),
    ("PUT", "/echo"),
]


def _comparable_headers(response) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(k.lower(), v) for k, v in response.headers.items() if k.lower() != "date"]


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("preload", [True, False], ids=["preload", "stream"])
def test_differential_against_urllib3(app_server, method, path, preload):
    """The same request through urllib3 and fastpool: the same status, headers and body."""
    # urllib3 names the encodings it decodes (zstd: with zstandard before 2.6, then with
    # backports.zstd or compression.zstd); response.HAS_ZSTD is missing from urllib3 2.0.
    if path == "/zstd" and "zstd" not in urllib3.util.request.ACCEPT_ENCODING:
        pytest.skip("this urllib3 does not decode zstd (fastpool does, with zstandard)")
    results = []
    for manager in (urllib3.PoolManager(), PoolManager()):
        with manager:
            r = manager.request(
                method, app_server.url + path, preload_content=preload, headers={"X-T": "1"}
            )
            body = r.data if preload else b"".join(r.stream(7))
            results.append((r.status, r.reason, r.version, _comparable_headers(r), body))
    if path in ("/redirect/3", "/headers") or path.startswith(("/echo", "/cookies")):
        # these bodies echo the request headers, which name the client: compare the rest
        results = [
            (s, rs, v, [x for x in h if x[0] != "content-length"], len(b) > 0)
            for s, rs, v, h, b in results
        ]
    assert results[0] == results[1]


FAULTS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    b"",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
]


@pytest.mark.parametrize("raw", FAULTS, ids=["truncated", "chunked-cut", "no-answer", "bad-gzip"])
def test_differential_faults(fault_server_factory, raw):
    """The same broken answer: urllib3 and fastpool raise the same urllib3 exception class."""
    from dummyserver import send_raw

    server = fault_server_factory(send_raw(raw))
    kinds = []
    for manager in (urllib3.PoolManager(retries=False), PoolManager(retries=False)):
        with manager, pytest.raises(urllib3.exceptions.HTTPError) as info:
            manager.request("GET", server.url + "/")
        kinds.append(
            next(
                c
                for c in type(info.value).__mro__
                if c.__module__.startswith("urllib3") and c is not Exception
            )
        )
    assert kinds[0] is kinds[1]


def test_eviction_storm_across_threads(server_factory):
    """More origins than pools, several threads: pools are evicted while others use them.
    Every request succeeds and every evicted pool ends with nothing in use."""
    servers = [server_factory(f"127.0.0.{i}") for i in (2, 3, 4)]
    created = []

    class Recording(PoolManager):
        def _new_pool(self, *args, **kw):  # type: ignore[no-untyped-def]
            pool = super()._new_pool(*args, **kw)
            created.append(pool)
            return pool

    pm = Recording(num_pools=1, maxsize=2)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(30):
                server = servers[(i + offset) % 3]
                r = pm.request("GET", server.url + "/bytes/100", preload_content=i % 2 == 0)
                assert len(r.data) == 100
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    pm.clear()
    assert not errors, errors[:1]
    assert sum(s.requests for s in servers) == 120
    assert len(created) > 3
    assert all(p.pool.in_use == 0 and p.pool.idle == 0 for p in created)


def test_pool_evicted_between_lookup_and_checkout(app_server):
    class Racy(PoolManager):
        raced = False

        def connection_from_host(self, *args, **kw):  # type: ignore[no-untyped-def]
            pool = super().connection_from_host(*args, **kw)
            if not self.raced:
                self.raced = True
                self.clear()  # as if another thread evicted it right after our lookup
            return pool

    with Racy() as pm:
        assert pm.request("GET", app_server.url + "/bytes/2").data == b"ab"
        # the retired pool still served the request it was looked up for
        assert pm.raced and len(pm.pools) == 0


def test_insecure_warning_per_request_like_urllib3(https_server):
    import warnings

    counts = []
    for manager in (urllib3.PoolManager(cert_reqs="CERT_NONE"), PoolManager(cert_reqs="CERT_NONE")):
        with manager, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                manager.request("GET", https_server.url + "/bytes/1")
        counts.append(
            sum(issubclass(w.category, urllib3.exceptions.InsecureRequestWarning) for w in caught)
        )
    assert counts[0] == counts[1] == 3
