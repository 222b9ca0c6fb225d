"""urllib3 parity fixes found by urllib3's own suite (issue 14), each beside stock urllib3 on the
same server: what urllib3 sends and answers, fastpool sends and answers."""

from __future__ import annotations

import json
import socket
import time

import pytest
import urllib3

import fastpool

URLLIB3_VERSION = tuple(int(part) for part in urllib3.__version__.split(".")[:2])


def _stock_since(version: tuple[int, int], fix: str):  # type: ignore[no-untyped-def]
    """The ``module`` parameters [stock, fastpool]; the stock case is skipped when the installed
    urllib3 predates ``version``, where urllib3 fixed ``fix`` (fastpool behaves as the newer
    urllib3 whatever urllib3 is installed: its own case still runs)."""
    older = URLLIB3_VERSION < version
    reason = f"urllib3 {urllib3.__version__} predates {'.'.join(map(str, version))}: {fix}"
    return [
        pytest.param(urllib3, id="stock", marks=pytest.mark.skipif(older, reason=reason)),
        pytest.param(fastpool, id="fastpool"),
    ]


@pytest.fixture(params=["stock", "fastpool"])
def manager(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    pm = urllib3.PoolManager() if request.param == "stock" else fastpool.PoolManager()
    yield pm
    pm.clear()


@pytest.mark.parametrize(
    ("kwargs", "headers"),
    [
        ({"chunked": True}, {}),  # chunked=True with no body
        ({}, {"Transfer-Encoding": "chunked"}),  # the caller's own Transfer-Encoding, no body
        ({"chunked": True}, {"Transfer-Encoding": "chunked"}),
    ],
)
def test_a_chunked_request_without_a_body_ends_its_body(server_factory, manager, kwargs, headers):
    # The last chunk (0 CRLF CRLF) must follow the head, or the server waits for the body
    # until a timeout (fastpool sent the head alone).
    server = server_factory()
    r = manager.urlopen(
        "POST", server.url + "/echo", body=None, headers=headers, timeout=5, retries=False, **kwargs
    )
    echo = json.loads(r.data)
    assert echo["body"] == ""
    sent = {name.lower(): value for name, value in echo["headers"]}
    assert sent["transfer-encoding"] == "chunked"
    assert "content-length" not in sent
    # and the connection is clean for the next request
    assert json.loads(manager.request("GET", server.url + "/echo").data)["connection"] == 1


def test_a_request_refused_before_sending_keeps_its_connection(server_factory):
    # A bad header is refused before a byte is sent: the connection dialed for it stays clean
    # and serves the next request (stock dials lazily, so it opens one connection in all).
    server = server_factory()
    with fastpool.PoolManager() as pm:
        assert pm.request("GET", server.url + "/bytes/1").status == 200
        with pytest.raises(ValueError):
            pm.request("GET", server.url + "/bytes/1", headers={"X": "a\r\nInjected: 1"})
        assert pm.request("GET", server.url + "/bytes/1").status == 200
    assert server.connections == 1
    assert server.requests == 2


# --- TLS: an encrypted client key, and assert_hostname with common-name checks ----------------


def _encrypted_client_key(tls_ca, tmp_path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    leaf = tls_ca.issue_cert("client.example")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_file.write_bytes(encrypted)
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("module", [urllib3, fastpool], ids=["stock", "fastpool"])
def test_an_encrypted_client_key_without_a_password_fails_at_once(
    server_factory, tls_ca, ca_bundle, tmp_path, module
):
    # OpenSSL would prompt for the password on the terminal (and, with none, fail with an
    # OSError retried as a ProtocolError); urllib3 raises its SSLError with this message.
    cert_file, key_file = _encrypted_client_key(tls_ca, tmp_path)
    server = server_factory(tls=True)
    pool = module.HTTPSConnectionPool(
        "127.0.0.1", server.port, cert_file=cert_file, key_file=key_file, ca_certs=ca_bundle
    )
    with pytest.raises(urllib3.exceptions.SSLError, match="password is required"):
        pool.urlopen("GET", "/bytes/1", retries=False)
    pool = module.HTTPSConnectionPool(
        "127.0.0.1",
        server.port,
        cert_file=cert_file,
        key_file=key_file,
        key_password="secret",
        ca_certs=ca_bundle,
    )
    assert pool.urlopen("GET", "/bytes/1", retries=False).status == 200
    pool.close()


def _key_usage(**usages: bool):  # type: ignore[no-untyped-def]
    from cryptography import x509

    names = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    names += ("key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(
        digital_signature=True, **{name: usages.get(name, False) for name in names}
    )


def _common_name_only_context(tmp_path):  # type: ignore[no-untyped-def]
    """A server context whose certificate names cn.example only in its common name (no SAN),
    and the CA file that trusts it. Both certificates carry what the strict X.509 checks of
    Python 3.13+ (VERIFY_X509_STRICT) require: key usages, a critical basicConstraints on the
    CA, subject and authority key identifiers."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fastpool test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cn.example")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "srv.pem").write_bytes(
        cert.public_bytes(pem)
        + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "cn-ca.pem").write_bytes(ca_cert.public_bytes(pem))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(tmp_path / "srv.pem"))
    return server_context, str(tmp_path / "cn-ca.pem")


@pytest.mark.parametrize("module", [urllib3, fastpool], ids=["stock", "fastpool"])
@pytest.mark.parametrize("checks_common_name", [True, False])
def test_assert_hostname_follows_the_contexts_common_name_setting(
    server_factory, tmp_path, module, checks_common_name
):
    import ssl

    server_context, ca_file = _common_name_only_context(tmp_path)
    server = server_factory(tls=server_context)
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False  # assert_hostname does the check
    context.hostname_checks_common_name = checks_common_name
    pool = module.HTTPSConnectionPool(
        "127.0.0.1", server.port, ssl_context=context, assert_hostname="cn.example"
    )
    try:
        if checks_common_name:
            assert pool.urlopen("GET", "/bytes/1", retries=False).status == 200
        else:
            with pytest.raises(urllib3.exceptions.SSLError, match="subjectAltName"):
                pool.urlopen("GET", "/bytes/1", retries=False)
    finally:
        pool.close()


# --- connection_pool_kw changed after the first request (CVE-2024-35195's shape) --------------


def _turn_verification_on(pm, how: str, ca_bundle: str) -> None:  # type: ignore[no-untyped-def]
    if how == "update":
        pm.connection_pool_kw.update(cert_reqs="CERT_REQUIRED")
    elif how == "item":
        pm.connection_pool_kw["cert_reqs"] = "CERT_REQUIRED"
    elif how == "pop":
        pm.connection_pool_kw.pop("cert_reqs")  # back to the default: verified
    else:
        pm.connection_pool_kw = {**pm.connection_pool_kw, "cert_reqs": "CERT_REQUIRED"}


@pytest.mark.parametrize("how", ["update", "item", "pop", "assign"])
@pytest.mark.parametrize("module", [urllib3, fastpool], ids=["stock", "fastpool"])
def test_tls_settings_changed_after_first_use_apply(server_factory, ca_bundle, module, how):
    # The server's CA is not in the system store: verification fails once it is on. urllib3
    # derives the pool key from connection_pool_kw on every call; so must fastpool, also after
    # the unverified pool was evicted and rebuilt.
    import warnings

    server = server_factory(tls=True)
    url = server.url + "/bytes/2"
    pm = module.PoolManager(num_pools=1, cert_reqs="CERT_NONE")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        assert pm.request("GET", url, retries=False).data == b"ab"
    _turn_verification_on(pm, how, ca_bundle)
    with pytest.raises(urllib3.exceptions.SSLError):
        pm.request("GET", url, retries=False)
    # an eviction (another origin) and back: still the settings in force
    other = server_factory("127.0.0.3")
    assert pm.request("GET", other.url + "/bytes/1", retries=False).status == 200
    with pytest.raises(urllib3.exceptions.SSLError):
        pm.request("GET", url, retries=False)
    # and the CA given in place: verified and served
    pm.connection_pool_kw["ca_certs"] = ca_bundle
    assert pm.request("GET", url, retries=False).data == b"ab"
    pm.clear()


def test_key_fn_by_scheme_changed_after_first_use_applies(server_factory):
    server = server_factory()
    pm = fastpool.PoolManager()
    pm.request("GET", server.url + "/bytes/1")
    seen = []
    original = pm.key_fn_by_scheme["http"]

    def key_fn(context):  # type: ignore[no-untyped-def]
        seen.append(context["host"])
        return original(context)

    pm.key_fn_by_scheme["http"] = key_fn
    pm.request("GET", server.url + "/bytes/1")
    assert seen == ["127.0.0.1"]
    pm.clear()


# --- the request head, byte for byte ----------------------------------------------------------


@pytest.fixture(scope="module")
def head_catcher():  # type: ignore[no-untyped-def]
    from dummyserver.oneshot import OneShotServer

    catcher = OneShotServer()
    catcher.payload = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    yield catcher
    catcher.close()


@pytest.mark.parametrize(
    ("method", "body", "headers", "chunked"),
    [
        ("GET", None, {}, False),
        ("GET", None, {"X-A": "1", "x-b": "2"}, False),
        ("POST", None, {}, False),
        ("POST", b"abc", {"Content-Type": "text/plain"}, False),
        ("PUT", "text", {"Accept-Encoding": "gzip"}, False),
        ("POST", [b"a", b"b"], {}, False),
        ("POST", b"abc", {}, True),
        ("GET", None, {"Host": "example.org", "User-Agent": "me"}, False),
        ("DELETE", None, {"Accept-Encoding": urllib3.util.SKIP_HEADER}, False),
        ("PATCH", b"x", {"Content-Length": "1", "X-Z": "z"}, False),
    ],
)
def test_the_default_request_head_is_urllib3s(head_catcher, method, body, headers, chunked):
    # What HTTPConnectionPool.urlopen writes: the same head as urllib3's, line for line, but
    # the default User-Agent, which names fastpool (a deliberate difference).
    def head(module):  # type: ignore[no-untyped-def]
        port = int(head_catcher.url.rsplit(":", 1)[1].strip("/"))
        pool = module.HTTPConnectionPool("127.0.0.1", port, retries=False)
        pool.urlopen(method, "/p?q=1", body=body, headers=dict(headers), chunked=chunked)
        pool.close()
        return head_catcher.heads[-1].split(b"\r\n")

    stock, ours = head(urllib3), head(fastpool)
    ua = f"User-Agent: {fastpool.connection.default_user_agent}".encode()
    stock_ua = f"User-Agent: python-urllib3/{urllib3.__version__}".encode()
    assert [ua if line == stock_ua else line for line in stock] == ours


# --- ConnectionCls: honoured, or refused at once -------------------------------------------


def test_a_connection_subclass_is_used_by_both_pools(server_factory):
    made = []

    class Counting(fastpool.connection.HTTPConnection):
        def connect(self) -> None:
            made.append(type(self).__name__)
            super().connect()

    class CountingTLS(fastpool.connection.HTTPSConnection):
        def connect(self) -> None:
            made.append(type(self).__name__)
            super().connect()

    class Pool(fastpool.HTTPConnectionPool):
        ConnectionCls = Counting

    class TLSPool(fastpool.HTTPSConnectionPool):
        ConnectionCls = CountingTLS

    server, tls_server = server_factory(), server_factory("127.0.0.2", tls=True)
    with Pool("127.0.0.1", server.port) as pool:
        assert pool.request("GET", "/bytes/1").status == 200
    with TLSPool("127.0.0.2", tls_server.port, cert_reqs="CERT_NONE") as pool:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            assert pool.request("GET", "/bytes/1").status == 200
    assert made == ["Counting", "CountingTLS"]


def test_a_connection_class_the_engine_cannot_drive_fails_at_construction():
    class Pool(fastpool.HTTPConnectionPool):
        ConnectionCls = urllib3.connection.HTTPConnection  # type: ignore[assignment]

    with pytest.raises(TypeError, match="ConnectionCls must be fastpool.connection.HTTPConnection"):
        Pool("127.0.0.1", 80)

    class TLSPool(fastpool.HTTPSConnectionPool):
        ConnectionCls = fastpool.connection.HTTPConnection  # plain HTTP for an https pool

    with pytest.raises(TypeError, match="HTTPSConnection"):
        TLSPool("127.0.0.1", 443)
    # set on the instance after construction: refused at the next dial, before any socket
    pool = fastpool.HTTPConnectionPool("127.0.0.1", 80, retries=False)
    pool.ConnectionCls = urllib3.connection.HTTPConnection  # type: ignore[assignment]
    with pytest.raises(TypeError, match="ConnectionCls"):
        pool.request("GET", "/")
    assert pool.pool.in_use == 0


def test_replaced_urllib3_connection_classes_are_not_ignored_silently(monkeypatch):
    # What urllib3.http2.inject_into_urllib3() does: fastpool's pools cannot use that class,
    # and a PoolManager made then says so.
    class H2(urllib3.connection.HTTPSConnection):
        pass

    monkeypatch.setattr(urllib3.connectionpool.HTTPSConnectionPool, "ConnectionCls", H2)
    with pytest.warns(fastpool.exceptions.UnusedConnectionClassWarning, match="H2"):
        fastpool.PoolManager()
    # fastpool's adapter takes urllib3's route itself then (see HTTPAdapter.send): no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", fastpool.exceptions.UnusedConnectionClassWarning)
        fastpool.HTTPAdapter().close()
        fastpool.Session().close()


# --- bugs found by urllib3's own suite (compat/urllib3_suite.py), each beside urllib3 ----------


@pytest.mark.parametrize(
    "module", _stock_since((2, 8), "it sent the URL's fragment to a forwarding proxy (#5079)")
)
def test_a_fragment_never_reaches_a_forwarding_proxy(head_catcher, module):
    with module.ProxyManager(head_catcher.url.rstrip("/"), retries=False) as pm:
        pm.request("GET", "http://example.com/path?x=1#secret")
    assert head_catcher.heads[-1].split(b"\r\n")[0] == b"GET http://example.com/path?x=1 HTTP/1.1"


@pytest.mark.parametrize(
    "module",
    _stock_since((2, 8), "a 303 with a chunked or file-like body went wrong (#5161)"),
)
@pytest.mark.parametrize("kwargs", [{"chunked": True}, {"body_pos": 0}], ids=["chunked", "pos"])
def test_a_303_drops_the_body_and_its_framing(server_factory, module, kwargs):
    # The GET after a 303 has no body: no Transfer-Encoding either (a desync otherwise), and
    # nothing to rewind.
    import io

    server = server_factory()
    url = server.url + "/redirect-to?url=/echo&status_code=303"
    body = io.BytesIO(b"hello") if "body_pos" in kwargs else b"hello"
    with module.PoolManager() as pm:
        r = pm.urlopen("POST", url, body=body, **kwargs)
    echo = json.loads(r.data)
    assert echo["method"] == "GET" and echo["body"] == ""
    assert not {n.lower() for n, _ in echo["headers"]} & {"transfer-encoding", "content-length"}


@pytest.mark.parametrize(
    "module",
    _stock_since((2, 8), "a forwarding HTTPS proxy got the origin's TLS settings (#5093)"),
)
def test_a_forwarding_https_proxy_is_checked_with_its_own_settings(
    server_factory, ca_bundle, module
):
    # use_forwarding_for_https: the TLS session is with the proxy: proxy_assert_hostname
    # applies to it (fastpool used the origin's settings there).
    proxy = server_factory(tls=True)
    with (
        module.ProxyManager(
            proxy.url,
            use_forwarding_for_https=True,
            proxy_assert_hostname="example.com",
            ca_certs=ca_bundle,
            retries=False,
        ) as pm,
        pytest.raises(
            (urllib3.exceptions.SSLError, urllib3.exceptions.ProxyError), match="example.com"
        ),
    ):
        pm.request("GET", "https://origin.example/bytes/1")


def test_a_trailing_dot_matters_to_dns_only():
    # No lookup here (a name with a trailing dot leaves the machine's hosts file): the Host
    # header a connection writes, as urllib3's connection.host gives it (without the dot).
    conn = fastpool.connection.HTTPSConnection("example.com.", 8443)
    assert conn._host_header() == "example.com:8443"
    assert urllib3.connection.HTTPSConnection("example.com.", 8443).host == "example.com"


@pytest.mark.parametrize(
    "module", _stock_since((2, 8), "an explicit port 0 became the scheme's default (#5071)")
)
def test_an_explicit_port_0_is_kept(module):
    assert module.connection_from_url("http://example.com:0/").port == 0


def test_a_failed_pin_closes_its_tls_socket(server_factory):
    # assert_fingerprint refused the peer: the SSLSocket is closed too, not left to the GC
    # (a ResourceWarning under python -X dev, where urllib3 gives none).
    import gc
    import warnings

    server = server_factory(tls=True)
    pool = fastpool.HTTPSConnectionPool(
        "127.0.0.1", server.port, assert_fingerprint="AA:" * 31 + "AA", retries=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(urllib3.exceptions.SSLError):
            pool.request("GET", "/bytes/1")
        gc.collect()
    pool.close()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("module", [urllib3, fastpool], ids=["stock", "fastpool"])
@pytest.mark.parametrize("how", ["pool.timeout", "socket default"])
def test_a_timeout_set_after_the_pool_was_made_applies(mute_listener, module, how):
    # urllib3 reads the pool's timeout, and resolves its socket default, at each request.
    # fastpool took both once, when the pool was made: a request waited forever.
    pool = module.HTTPConnectionPool("127.0.0.1", mute_listener, retries=False)
    if how == "pool.timeout":
        pool.timeout = urllib3.Timeout(connect=5, read=0.2)
    else:
        socket.setdefaulttimeout(0.2)
    try:
        started = time.monotonic()
        with pytest.raises(urllib3.exceptions.ReadTimeoutError, match=r"read timeout=0\.2"):
            pool.request("GET", "/")
        assert time.monotonic() - started < 3
    finally:
        socket.setdefaulttimeout(None)
        pool.close()


@pytest.mark.parametrize("module", [urllib3, fastpool], ids=["stock", "fastpool"])
@pytest.mark.parametrize("via", ["pool", "manager"])
def test_timeout_none_on_the_first_request_means_no_timeout(app_server, module, via):
    # A pool's timeout cache started empty, and None met it as a hit: AttributeError.
    if via == "pool":
        with module.HTTPConnectionPool("127.0.0.1", app_server.port) as pool:
            response = pool.request("GET", "/bytes/3", timeout=None)
    else:
        with module.PoolManager() as manager:
            response = manager.request("GET", app_server.url + "/bytes/3", timeout=None)
    assert (response.status, len(response.data)) == (200, 3)


def _nan_outcome(module, url, timeout):  # type: ignore[no-untyped-def]
    """The error of one request with ``timeout`` on a reused connection (its type and text,
    the port left out), then the next request's answer and how many connections it took."""
    with module.PoolManager(maxsize=1, block=True, timeout=5.0) as manager:
        assert manager.request("GET", url).status == 200  # an idle connection to take
        try:
            manager.request("GET", url, timeout=timeout, retries=False)
            error = None
        except Exception as e:  # noqa: BLE001 - compared below
            error = (
                type(e).__name__,
                str(e).replace(str(url.split(":")[-1].split("/")[0]), "PORT"),
            )
        response = manager.request("GET", url, pool_timeout=1)  # (a slot held: PoolTimeout)
        return error, response.status, response.data


@pytest.mark.parametrize(
    ("timeout", "refused"),
    [(float("nan"), True), ((float("nan"), 5.0), False), ((5.0, float("nan")), True)],
    ids=["both", "connect", "read"],
)
def test_a_nan_timeout_fails_as_urllib3s_and_the_pool_goes_on(app_server, timeout, refused):
    # urllib3's Timeout takes NaN; the socket refuses it when it is set. Side by side on the
    # same server: the same error (ValueError where the socket meets it; a NaN connect
    # timeout on a reused connection ends in urllib3's ReadTimeoutError "read timeout=0"),
    # no slot held, the next request answered.
    # (fastpool's map gives the same error as that request's result: test_map_lane.py.)
    url = app_server.url + "/bytes/3"
    given = timeout if not isinstance(timeout, tuple) else urllib3.Timeout(*timeout)
    stock = _nan_outcome(urllib3, url, given)
    assert _nan_outcome(fastpool, url, given) == stock
    assert stock[1:] == (200, b"abc")
    assert stock[0] is not None
    assert (stock[0][0] == "ValueError" and "NaN" in stock[0][1]) is refused
