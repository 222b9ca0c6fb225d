"""The deliberate differences of fastpool's pools from urllib3's, each run side by side.

Every entry of docs/differences.md that urllib3's own suite meets (compat/urllib3_known.txt,
``[deliberate]``) is pinned here: the same request to the same server through urllib3 and
through fastpool, and what each does. A difference that disappears fails its test, so the
docs cannot go stale silently.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import urllib3
from dummyserver import send_raw
from urllib3.util.retry import Retry

import fastpool
from fastpool.exceptions import InvalidRequestError

MODULES = {"urllib3": urllib3, "fastpool": fastpool}


def _get(module: Any, url: str, **kw: Any) -> Any:
    with module.PoolManager() as manager:
        return manager.request("GET", url, retries=False, **kw)


@pytest.mark.parametrize(
    "line", [b": Value", b":", b"Broken Header"], ids=["no-name", "no-name-or-value", "no-colon"]
)
def test_a_header_line_without_a_name_is_refused(fault_server_factory: Any, line: bytes) -> None:
    # http.client (so urllib3) skips such a line, or keeps it as a defect; fastpool refuses the
    # response: a line a proxy may read otherwise is how responses get desynchronised.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + line + b"\r\n\r\nok"
    server = fault_server_factory(send_raw(head))
    url = f"http://127.0.0.1:{server.port}/"
    assert _get(urllib3, url).data == b"ok"
    with pytest.raises(urllib3.exceptions.ProtocolError, match="invalid response header line"):
        _get(fastpool, url)


def test_a_request_header_name_that_is_not_a_token_is_refused(app_server: Any) -> None:
    # http.client sends a name with spaces in it ("For The Proxy"); fastpool refuses it before
    # anything is sent, with an exception that names it (a ValueError, as http.client's own
    # refusal of a name with a colon or line break).
    url = app_server.url + "/echo"
    sent = _get(urllib3, url, headers={"For The Proxy": "1"}).json()["headers"]
    assert ["For The Proxy", "1"] in sent
    before = app_server.requests
    with pytest.raises(InvalidRequestError, match="'For The Proxy' is not an HTTP token"):
        _get(fastpool, url, headers={"For The Proxy": "1"})
    assert issubclass(InvalidRequestError, ValueError)
    assert app_server.requests == before


def test_num_connections_counts_connections_made(fault_server_factory: Any) -> None:
    # A 404 whose body never comes (the server closes), retried once: the drain fails, so the
    # retry needs a new connection. urllib3 reconnects its one connection object and counts
    # it once; fastpool counts the two connections the server accepted.
    head = b"HTTP/1.1 404 NOT FOUND\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n"
    counts = {}
    for name, module in MODULES.items():
        server = fault_server_factory(send_raw(head))
        retries = Retry(total=1, raise_on_status=False, status_forcelist=[404])
        with module.HTTPConnectionPool(
            "127.0.0.1", server.port, maxsize=10, retries=retries, block=True
        ) as pool:
            pool.urlopen("GET", "/not_found", preload_content=False)
            counts[name] = (pool.num_connections, server.connections)
    assert counts == {"urllib3": (1, 2), "fastpool": (2, 2)}


def test_urllib3s_pyopenssl_injection_is_refused_by_name(https_server: Any, ca_bundle: str) -> None:
    # urllib3 then wraps its sockets with pyOpenSSL; fastpool's engine speaks TLS through the
    # ssl module only, so an HTTPS request says why it cannot go, instead of an AttributeError
    # deep in the handshake (or TLS done silently some other way than asked).
    pyopenssl = pytest.importorskip("urllib3.contrib.pyopenssl")
    url = https_server.url + "/echo"

    def get(module: Any) -> Any:
        with module.PoolManager(ca_certs=ca_bundle) as manager:
            return manager.request("GET", url, retries=False)

    pyopenssl.inject_into_urllib3()
    try:
        assert get(urllib3).status == 200
        with pytest.raises(TypeError, match="pyOpenSSL injection in effect"):
            get(fastpool)
    finally:
        pyopenssl.extract_from_urllib3()
    assert get(fastpool).status == 200


def test_the_ssl_version_deprecation_comes_once_per_pool(https_server: Any, ca_bundle: str) -> None:
    # urllib3 builds a TLS context for every connection, and warns at each connect(); fastpool
    # builds one context per pool (shared by its connections), and warns when it builds it.
    def two_connections(module: Any) -> None:
        with module.HTTPSConnectionPool(
            "127.0.0.1", https_server.port, maxsize=2, block=True,
            ca_certs=ca_bundle, ssl_version="PROTOCOL_TLSv1_2",
        ) as pool:  # fmt: skip
            held = [pool.urlopen("GET", "/echo", preload_content=False) for _ in range(2)]
            for r in held:
                r.release_conn()

    counts = {}
    for name, module in MODULES.items():
        # FutureWarning since urllib3 2.7, DeprecationWarning before: whichever it gives
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            two_connections(module)
        counts[name] = sum("'ssl_version' option is deprecated" in str(w.message) for w in seen)
    assert counts == {"urllib3": 2, "fastpool": 1}


@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "read-later"])
def test_a_read_timeout_within_the_body_names_the_pool(
    fault_server_factory: Any, preload: bool
) -> None:
    # urllib3 reads a preloaded body (preload_content=True) before its response knows its pool,
    # so that one read timeout says "None: Read timed out."; fastpool's names the pool there
    # too, as urllib3's own does for a body read later (requests reads bodies later: the same).
    server = fault_server_factory(
        send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", then="keep")
    )
    url = f"http://127.0.0.1:{server.port}/"
    pool_name = f"HTTPConnectionPool(host='127.0.0.1', port={server.port})"
    said = {}
    for name, module in MODULES.items():
        with pytest.raises(urllib3.exceptions.ReadTimeoutError) as caught:
            _get(module, url, timeout=0.2, preload_content=preload).read()
        said[name] = str(caught.value)
    stock = "None" if preload else pool_name
    assert said == {
        "urllib3": f"{stock}: Read timed out.",
        "fastpool": f"{pool_name}: Read timed out.",
    }
