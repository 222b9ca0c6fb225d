"""TLS to an ``https://`` proxy, side by side with urllib3: the proxy's policy, never the target's.

A pool whose TLS session is with the proxy (``use_forwarding_for_https``) takes the
ProxyManager's ``proxy_ssl_context`` as given: its verify mode and CAs are not changed, and the
target's settings (``cert_reqs``, ``ca_certs``, a client certificate) neither reach it nor fail
the request. Ports given as 0 stay 0 in pool keys and proxy URLs.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3

import fastpool

MODULES = {"urllib3": urllib3, "fastpool": fastpool}
# Both behaviours came with urllib3 2.8 (its TLS-to-proxy policy for forwarding, and port 0
# kept): older releases are no oracle for them, and fastpool keeps them on every release.
URLLIB3_2_8 = tuple(int(p) for p in urllib3.__version__.split(".")[:2]) >= (2, 8)


def _oracle(name: str) -> None:
    if name == "urllib3" and not URLLIB3_2_8:
        pytest.skip(f"urllib3 {urllib3.__version__} predates this behaviour (2.8)")


@pytest.mark.parametrize("name", MODULES)
def test_forwarding_keeps_the_proxy_context_as_given(
    name: str, app_server: Any, proxy_server_factory: Any, ca_bundle: str, tmp_path: Path
) -> None:
    _oracle(name)
    proxy = proxy_server_factory(tls=True)
    context = ssl.create_default_context(cafile=ca_bundle)
    stats = context.cert_store_stats()
    with MODULES[name].proxy_from_url(
        proxy.url,
        proxy_ssl_context=context,
        use_forwarding_for_https=True,
        cert_reqs="CERT_NONE",  # the target's policy: not the proxy's
        ca_certs=ca_bundle,
        cert_file=str(tmp_path / "missing-cert.pem"),  # never loaded for the proxy
    ) as manager:
        r = manager.request("GET", app_server.url + "/echo", retries=False)
    assert r.status == 200
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.cert_store_stats() == stats
    assert proxy.request_lines == [f"GET {app_server.url}/echo HTTP/1.1"]


@pytest.mark.parametrize("name", MODULES)
def test_port_zero_stays_zero(name: str) -> None:
    _oracle(name)
    module = MODULES[name]
    with module.PoolManager() as manager:
        assert manager.connection_from_host("example.com", port=0, scheme="http").port == 0
        assert manager.connection_from_url("http://example.com/").port == 80
    with module.ProxyManager("http://proxy:0") as manager:
        assert manager.proxy.port == 0


# --- an https:// proxy for http:// URLs: its certificate is verified ----------------------------
def test_untrusted_https_proxy_is_rejected_for_http_urls(
    proxy_server_factory, untrusted_ssl_context, app_server
):
    proxy = proxy_server_factory(tls=untrusted_ssl_context)
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", fastpool.HTTPAdapter())
    proxies = {"http": f"https://{proxy.host}:{proxy.port}"}
    with pytest.raises(requests.exceptions.ProxyError) as info:
        session.get(f"http://{app_server.host}:{app_server.port}/", proxies=proxies)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_trusted_https_proxy_for_http_urls(proxy_server_factory, ca_bundle, app_server):
    proxy = proxy_server_factory(tls=True)
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", fastpool.HTTPAdapter())
    proxies = {"http": f"https://{proxy.host}:{proxy.port}"}
    url = f"http://{app_server.host}:{app_server.port}/bytes/3"
    assert session.get(url, proxies=proxies, verify=ca_bundle).content == b"abc"
    # verify=False still turns verification off, for the proxy too (as requested).
    untrusted = requests.Session()
    untrusted.trust_env = False
    untrusted.mount("http://", fastpool.HTTPAdapter())
    assert untrusted.get(url, proxies=proxies, verify=False).content == b"abc"


def test_the_proxys_tls_follows_the_pools_settings(
    https_server: Any, proxy_server_factory: Any, ca_bundle: str
) -> None:
    # requests' cert_verify sets cert_reqs/ca_certs on a pool it reuses: turning verification
    # on must reach the TLS to the proxy too, and connections made before are not reused.
    proxy = proxy_server_factory(tls=True)
    with fastpool.ProxyManager(proxy.url, cert_reqs="CERT_NONE") as manager:
        pool = manager.connection_from_url(https_server.url)
        r = pool.urlopen("GET", "/echo", preload_content=False, retries=False)
        assert r.connection.proxy_ssl_context.verify_mode == ssl.CERT_NONE
        r.read()
        pool.cert_reqs, pool.ca_certs = "CERT_REQUIRED", ca_bundle
        r = pool.urlopen("GET", "/echo", preload_content=False, retries=False)
        assert r.connection.proxy_ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert r.connection.proxy_is_verified and r.connection.is_verified
        r.read()
    assert proxy.connections == 2  # the unverified connection was not reused


def test_a_tunnel_just_opened_is_not_a_reused_connection(
    proxy_server: Any, fault_server_factory: Any, ca_bundle: str
) -> None:
    # The origin reads the request and closes without answering. The tunnel was opened for
    # this very request, so the keep-alive replay (for reused connections only) must not send
    # it again: one request, one error, as urllib3.
    seen: list[int] = []

    def handler(conn: Any) -> None:
        if conn.read_request() is not None:
            seen.append(conn.number)
        conn.close()

    origin = fault_server_factory(handler, tls=True)
    proxies = {"https": proxy_server.url}
    with fastpool.Session() as session, pytest.raises(requests.exceptions.ConnectionError):
        session.get(f"{origin.url}/once", proxies=proxies, verify=ca_bundle)
    assert seen == [1]
    with requests.Session() as stock, pytest.raises(requests.exceptions.ConnectionError):
        stock.get(f"{origin.url}/once", proxies=proxies, verify=ca_bundle)
    assert seen == [1, 2]
