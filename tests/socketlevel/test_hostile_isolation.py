"""Attack suite (issue 12), credentials and isolation: secrets do not follow a redirect to
another host, cookies stay with their host, a connection made under one set of TLS settings
(verify, client certificate, ``connection_pool_kw``) never serves a request made under
another, and proxy credentials stay with the proxy."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import pytest
import requests
import trustme
import urllib3
from dummyserver.hostile import answer_each, response
from hostile_clients import FASTPOOL_KINDS, PAIRS, category
from urllib3.util import Retry

import fastpool

OK = response(b"ok")
SECRET = "s3cr3t-value"

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def _requests_session(kind: str, verify: Any = True) -> requests.Session:
    """A Session of ``kind``: ``requests`` (stock), ``adapter`` or ``session``."""
    if kind == "session":
        session: requests.Session = fastpool.Session()
    else:
        session = requests.Session()
        if kind == "adapter":
            adapter = fastpool.HTTPAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
    session.trust_env = False
    session.verify = verify
    return session


def _outcome(call: Any) -> Any:
    try:
        r = call()
    except Exception as exc:  # noqa: BLE001 - the outcome is the comparison
        return ("error", category(exc))
    return r.status_code if hasattr(r, "status_code") else r.status


# --- redirects -------------------------------------------------------------------------------


def _redirector(location: str):  # type: ignore[no-untyped-def]
    return answer_each(response(b"", "302 Found", [f"Location: {location}"]))


@pytest.mark.parametrize("kind", ["adapter", "session"])
@pytest.mark.parametrize("target", ["other-host", "other-port"])
def test_secrets_do_not_follow_a_redirect_to_another_origin(hostile, kind, target) -> None:
    """requests drops Authorization on a redirect to another host or port and rebuilds the
    Cookie header from the jar; so must the adapter and the Session."""
    seen: dict[str, list[bytes]] = {}
    for client in ("requests", kind):
        b = hostile(answer_each(OK), host="127.0.0.2" if target == "other-host" else "127.0.0.1")
        a = hostile(_redirector(b.url + "/landed"))
        with _requests_session(client) as s:
            headers = {"Authorization": f"Bearer {SECRET}", "Cookie": f"sid={SECRET}"}
            r = s.get(a.url + "/start", headers=headers, timeout=5)
            assert (r.status_code, r.content, len(r.history)) == (200, b"ok", 1)
        assert SECRET.encode() in a.requests[0]
        seen[client] = b.requests
    assert len(seen[kind]) == len(seen["requests"]) == 1
    assert SECRET.encode() not in seen[kind][0]
    assert SECRET.encode() not in seen["requests"][0]


@pytest.mark.parametrize("cls", [urllib3.PoolManager, fastpool.PoolManager], ids=["stock", "pm"])
def test_pool_manager_strips_secrets_on_cross_host_redirect(hostile, cls) -> None:
    """urllib3's Retry.remove_headers_on_redirect: Authorization, Cookie and
    Proxy-Authorization are not sent to another host."""
    b = hostile(answer_each(OK), host="127.0.0.2")
    a = hostile(_redirector(b.url + "/landed"))
    with cls() as pm:
        headers = {
            "Authorization": SECRET,
            "Cookie": f"sid={SECRET}",
            "Proxy-Authorization": SECRET,
            "X-Kept": "yes",
        }
        r = pm.request("GET", a.url + "/", headers=headers, retries=Retry(redirect=2))
        assert (r.status, r.data) == (200, b"ok")
    assert len(b.requests) == 1
    assert SECRET.encode() not in b.requests[0]
    assert b"X-Kept: yes" in b.requests[0]


@pytest.mark.parametrize("kind", ["adapter", "session"])
def test_cookies_stay_with_their_host(hostile, kind: str) -> None:
    """A cookie set by 127.0.0.1 (host-only, and one claiming Domain=127.0.0.2) is not sent
    to 127.0.0.2."""
    sent: dict[str, Any] = {}
    for client in ("requests", kind):
        b = hostile(answer_each(OK), host="127.0.0.2")
        setter = response(
            b"set",
            headers=[
                f"Set-Cookie: own={SECRET}; Path=/",
                f"Set-Cookie: x={SECRET}; Domain=127.0.0.2",
            ],
        )
        a = hostile(answer_each(setter))
        with _requests_session(client) as s:
            s.get(a.url + "/set", timeout=5)
            s.get(b.url + "/other", timeout=5)
            s.get(a.url + "/again", timeout=5)
        sent[client] = (SECRET.encode() in b.requests[0], a.requests[1].count(SECRET.encode()))
    assert sent[kind] == sent["requests"] == (False, 1)


def _cookie_lines(server) -> list[list[bytes]]:  # type: ignore[no-untyped-def]
    """The Cookie lines of each request the server read, in order."""
    return [
        [line for line in head.split(b"\r\n") if line.lower().startswith(b"cookie:")]
        for head in server.requests
    ]


# name -> (Set-Cookie of an https response, the paths then requested, and on which server)
COOKIE_RULES = {
    "secure-not-over-http": ("s=1; Secure; Path=/", [("http", "/x"), ("https", "/x")]),
    "path-restricted": ("p=1; Path=/a", [("https", "/b"), ("https", "/a/x")]),
    "expired": ("e=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Path=/", [("https", "/x")]),
    "deleted-by-max-age-0": ("d=; Max-Age=0; Path=/", [("https", "/x")]),
}


@pytest.mark.parametrize("kind", ["adapter", "session"])
@pytest.mark.parametrize("rule", list(COOKIE_RULES))
def test_cookie_attributes_are_honoured(hostile, ca_bundle, kind: str, rule: str) -> None:
    """The jar's rules (Secure, Path, expiry, deletion) decide what is sent, as in requests:
    fastpool.Session's fast route must not send a cookie the jar would not."""
    set_cookie, follow = COOKIE_RULES[rule]
    sent = {}
    for client in ("requests", kind):
        https = hostile(
            answer_each(response(b"set", headers=[f"Set-Cookie: {set_cookie}"])), tls=True
        )
        plain = hostile(answer_each(OK))
        with _requests_session(client, verify=ca_bundle) as s:
            s.cookies.set("d", "old", domain="127.0.0.1", path="/")  # what Max-Age=0 deletes
            s.get(https.url + "/a/set", timeout=5)
            for scheme, path in follow:
                s.get((https if scheme == "https" else plain).url + path, timeout=5)
        sent[client] = (_cookie_lines(https), _cookie_lines(plain))
    assert sent[kind] == sent["requests"]


@pytest.mark.parametrize("kind", ["adapter", "session"])
@pytest.mark.parametrize("how", ["session-auth", "auth-argument", "authorization-header"])
def test_credentials_and_body_on_a_307_to_another_host(hostile, kind: str, how: str) -> None:
    """A 307 to another host: the POST body goes along (as in requests), the credentials
    do not, however they were given."""
    seen = {}
    for client in ("requests", kind):
        b = hostile(answer_each(OK), host="127.0.0.2")
        a = hostile(answer_each(response(b"", "307 Temporary Redirect", [f"Location: {b.url}/x"])))
        with _requests_session(client) as s:
            kwargs: dict[str, Any] = {}
            if how == "session-auth":
                s.auth = ("user", SECRET)
            elif how == "auth-argument":
                kwargs["auth"] = ("user", SECRET)
            else:
                kwargs["headers"] = {"Authorization": SECRET}
            r = s.post(a.url + "/", data=b"the-body", timeout=5, **kwargs)
            assert (r.status_code, r.content) == (200, b"ok")
        token = base64.b64encode(f"user:{SECRET}".encode())
        received = b"".join(bytes(raw) for raw in b.received)
        seen[client] = (
            received.endswith(b"the-body"),
            SECRET.encode() in received,
            token in received,
        )
    assert seen[kind] == seen["requests"] == (True, False, False)


@pytest.mark.parametrize("kind", ["adapter", "session"])
def test_replacing_session_verify_takes_effect(
    hostile, untrusted_ssl_context, ca_bundle, kind
) -> None:
    """``session.verify`` replaced between requests (docs/threads.md: settings are read by every
    request): an unverified connection never serves a request that wants verification."""
    server = hostile(answer_each(OK), tls=untrusted_ssl_context)
    results = {}
    for client in ("requests", kind):
        with _requests_session(client) as s:
            results[client] = []
            for verify in (False, True, ca_bundle, False, ca_bundle):
                s.verify = verify
                results[client].append(_outcome(lambda: s.get(server.url, timeout=5)))
    tls_error = ("error", "tls")
    assert results[kind] == results["requests"] == [200, tls_error, tls_error, 200, tls_error]


# --- verify and client certificates ------------------------------------------------------


@pytest.mark.parametrize("kind", ["adapter", "session"])
@pytest.mark.parametrize("order", ["unverified-first", "verified-first"])
def test_verify_settings_never_share_a_connection(
    hostile, untrusted_ssl_context, ca_bundle, kind: str, order: str
) -> None:
    """Against a server whose certificate the CA does not sign, verify=False succeeds and
    verify=<ca> fails, whatever came first: the unverified connection is never reused for
    a verified request."""
    server = hostile(answer_each(OK), tls=untrusted_ssl_context)
    verifies: list[Any] = [False, ca_bundle, True, False]
    if order == "verified-first":
        verifies = [ca_bundle, False, ca_bundle, True]
    results = {}
    for client in ("requests", kind):
        with _requests_session(client) as s:
            results[client] = [
                _outcome(lambda v=v: s.get(server.url, verify=v, timeout=5)) for v in verifies
            ]
    assert results[kind] == results["requests"]
    expected = {False: 200, ca_bundle: ("error", "tls"), True: ("error", "tls")}
    assert results[kind] == [expected[v] for v in verifies]


@pytest.mark.parametrize("kind", ["adapter", "session"])
def test_client_certificate_connection_is_not_reused_without_it(
    hostile, mtls_ssl_context, ca_bundle, client_cert, kind: str
) -> None:
    """A connection authenticated with a client certificate must not carry a later request
    made without one (or the server would take it as the certificate's owner)."""
    server = hostile(answer_each(OK), tls=mtls_ssl_context)
    results = {}
    for client in ("requests", kind):
        server.reset()
        with _requests_session(client, verify=ca_bundle) as s:
            with_cert = _outcome(lambda: s.get(server.url, cert=client_cert, timeout=5))
            without = _outcome(lambda: s.get(server.url, timeout=5))
        results[client] = (with_cert, without[0] == "error", server.connections)
    assert results["requests"][:2] == (200, True)
    assert results[kind][:2] == results["requests"][:2]
    assert results[kind][2] >= 2  # a new connection (refused by the server) for the second


# --- connection_pool_kw changes after first use (issue 12 (2)) ------------------------------


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def other_ca_server_context(other_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other_ca.issue_cert("127.0.0.1", "127.0.0.2").configure_cert(context)
    return context


@pytest.mark.parametrize("how", ["update", "assign", "evicted"])
@pytest.mark.parametrize("cls", [urllib3.PoolManager, fastpool.PoolManager], ids=["stock", "pm"])
def test_pool_manager_applies_tls_settings_changed_after_first_use(
    hostile, other_ca_server_context, ca_bundle, cls, how: str
) -> None:
    """Issue 12 (2), CVE-2024-35195's shape: ``cert_reqs="CERT_NONE"``, one request, then
    the settings say verify: the next request verifies (and fails against a certificate the
    CA did not sign), whether the dict was updated in place, replaced, or the pool was
    evicted and rebuilt meanwhile."""
    server = hostile(answer_each(OK), tls=other_ca_server_context)
    other = hostile(answer_each(OK), tls=other_ca_server_context, host="127.0.0.2")
    with cls(num_pools=1, cert_reqs="CERT_NONE", retries=False) as pm:
        assert pm.request("GET", server.url + "/").status == 200
        if how == "evicted":
            assert pm.request("GET", other.url + "/").status == 200
        verify = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_bundle}
        if how == "assign":
            pm.connection_pool_kw = {**pm.connection_pool_kw, **verify}
        else:
            pm.connection_pool_kw.update(verify)
        assert _outcome(lambda: pm.request("GET", server.url + "/")) == ("error", "tls")


@pytest.mark.parametrize("kind", ["adapter", "session"])
@pytest.mark.parametrize(
    ("name", "value"),
    [("assert_hostname", "wrong.example"), ("assert_fingerprint", "AB" * 32)],
    ids=["assert_hostname", "assert_fingerprint"],
)
def test_adapter_applies_pool_settings_changed_after_first_use(
    hostile, ca_bundle, kind: str, name: str, value: str
) -> None:
    """Issue 12 (2) through ``adapter.poolmanager.connection_pool_kw``: stock's next
    request builds a new pool with the new setting and fails; fastpool must too."""
    server = hostile(answer_each(OK), tls=True)
    results = {}
    for client in ("requests", kind):
        server.reset()
        with _requests_session(client, verify=ca_bundle) as s:
            first = _outcome(lambda: s.get(server.url, timeout=5))
            s.get_adapter(server.url).poolmanager.connection_pool_kw.update({name: value})
            results[client] = (first, _outcome(lambda: s.get(server.url, timeout=5)))
    assert results["requests"] == (200, ("error", "tls"))
    assert results[kind] == results["requests"]


# --- proxies ---------------------------------------------------------------------------------


def _proxy_manager(kind: str, proxy_url: str, token: str, ca: str) -> Any:
    headers = {"Proxy-Authorization": f"Basic {token}"}
    cls = urllib3.ProxyManager if kind == "urllib3" else fastpool.poolmanager.ProxyManager
    return cls(proxy_url, proxy_headers=headers, retries=False, ca_certs=ca)


@pytest.mark.parametrize("kind", FASTPOOL_KINDS)
def test_proxy_credentials_stay_with_the_proxy(
    hostile, proxy_server_factory, ca_bundle, kind: str
) -> None:
    """Through an authenticating proxy to an HTTPS origin: the CONNECT carries
    Proxy-Authorization; nothing the origin receives inside the tunnel does."""
    proxy = proxy_server_factory(auth=("user", SECRET))
    origin = hostile(answer_each(OK), tls=True)
    token = base64.b64encode(f"user:{SECRET}".encode()).decode()
    for client in (PAIRS[kind], kind):
        origin.reset()
        proxy.reset_counts()
        if client in ("urllib3", "pm"):
            with _proxy_manager(client, proxy.url, token, ca_bundle) as pm:
                r = pm.request("GET", origin.url + "/", headers={}, timeout=5)
                got = (r.status, r.data)
        else:
            with _requests_session(client, verify=ca_bundle) as s:
                s.proxies = {"https": f"http://user:{SECRET}@{proxy.host}:{proxy.port}"}
                r = s.get(origin.url + "/", timeout=5)
                got = (r.status_code, r.content)
        assert got == (200, b"ok"), client
        assert proxy.request_lines == [f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1"] or (
            proxy.request_lines == [f"CONNECT 127.0.0.1:{origin.port} HTTP/1.0"]
        )
        assert proxy.seen[0].header("proxy-authorization") == f"Basic {token}"
        received = b"".join(bytes(raw) for raw in origin.received)
        assert received.startswith(b"GET / HTTP/1.1\r\n")
        assert b"proxy-authorization" not in received.lower()
        assert token.encode() not in received and SECRET.encode() not in received
