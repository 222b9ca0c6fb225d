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
import urllib3

import fastpool

MODULES = {"urllib3": urllib3, "fastpool": fastpool}


@pytest.mark.parametrize("name", MODULES)
def test_forwarding_keeps_the_proxy_context_as_given(
    name: str, app_server: Any, proxy_server_factory: Any, ca_bundle: str, tmp_path: Path
) -> None:
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
    module = MODULES[name]
    with module.PoolManager() as manager:
        assert manager.connection_from_host("example.com", port=0, scheme="http").port == 0
        assert manager.connection_from_url("http://example.com/").port == 80
    with module.ProxyManager("http://proxy:0") as manager:
        assert manager.proxy.port == 0
