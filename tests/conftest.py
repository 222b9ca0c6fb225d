"""Fixtures for the local test servers of ``tests/dummyserver/`` (real sockets on 127.0.0.0/8).

Servers whose counters a test reads are function-scoped, so ``connections``/``requests`` count
that test only; the TLS material is built once per session. Every server fixture fails the test
if a server handler crashed (``server.errors``), so a broken script cannot pass silently.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import trustme
from dummyserver import AppServer, FaultServer, Handler, ProxyServer, _Server
from dummyserver.hostile import HostileServer
from dummyserver.tls import LOOPBACK_HOSTS, TLSArg, server_context, tls_context


class _Servers:
    """Starts servers for one test and stops them (and checks their handlers) afterwards."""

    def __init__(self) -> None:
        self.started: list[_Server] = []

    def start(self, server: _Server) -> _Server:
        self.started.append(server.start())
        return server

    def close(self) -> None:
        for server in self.started:
            server.stop()
        errors = [text for server in self.started for text in server.errors]
        if errors:
            pytest.fail("a test server handler failed:\n" + "\n".join(errors))


@pytest.fixture
def _servers() -> Iterator[_Servers]:
    servers = _Servers()
    yield servers
    servers.close()


# --- a clock the test moves -------------------------------------------------------------------
class FakeClock:
    """A ``time.monotonic`` stand-in that moves only when the test calls :meth:`advance`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of connection ages: ``fastpool.pool`` (idle stamps, ``idle_timeout`` and
    ``max_lifetime`` checks) and ``fastpool.connection`` (``connected_at``) read it instead of
    ``time.monotonic`` for this test, so expiry tests advance it rather than sleep. Waits (the
    host queue's, the limiter's, socket timeouts) keep the real clock."""
    import fastpool.connection
    import fastpool.pool

    fake = FakeClock()
    monkeypatch.setattr(fastpool.pool, "monotonic", fake)
    monkeypatch.setattr(fastpool.connection, "monotonic", fake)
    return fake


# --- TLS material ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """The trusted test CA (trustme); its PEM is ``ca_bundle``."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of the trusted CA's PEM file, for ``verify=``/``ca_certs=``."""
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def server_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server-side context with a cert for ``localhost`` and 127.0.0.1-127.0.0.16."""
    return server_context(tls_ca, "localhost", *LOOPBACK_HOSTS)


@pytest.fixture(scope="session")
def untrusted_ca() -> trustme.CA:
    """A second CA that nothing trusts, for bad-certificate tests."""
    return trustme.CA()


@pytest.fixture(scope="session")
def untrusted_ssl_context(untrusted_ca: trustme.CA) -> ssl.SSLContext:
    """Server-side context whose cert (right hosts) is signed by ``untrusted_ca``."""
    return server_context(untrusted_ca, "localhost", *LOOPBACK_HOSTS)


@pytest.fixture(scope="session")
def wrong_host_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server-side context, trusted CA, but a cert only for ``wrong.example``."""
    return server_context(tls_ca, "wrong.example")


@pytest.fixture(scope="session")
def client_cert(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a PEM with a client certificate and its key (for ``cert=``), signed by tls_ca."""
    path = tmp_path_factory.mktemp("tls") / "client.pem"
    tls_ca.issue_cert("client@fastpool.test").private_key_and_cert_chain_pem.write_to_path(
        str(path)
    )
    return str(path)


@pytest.fixture(scope="session")
def mtls_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server-side context that requires a client certificate signed by ``tls_ca``."""
    context = server_context(tls_ca, "localhost", *LOOPBACK_HOSTS)
    context.verify_mode = ssl.CERT_REQUIRED
    tls_ca.configure_trust(context)
    return context


# --- servers -----------------------------------------------------------------------------------
ServerFactory = Callable[..., AppServer]


@pytest.fixture
def server_factory(_servers: _Servers, server_ssl_context: ssl.SSLContext) -> ServerFactory:
    """``server_factory(host="127.0.0.1", tls=False)`` -> a started AppServer, stopped after
    the test. ``tls=True`` uses the trusted server cert; an ``ssl.SSLContext`` is used as is.
    """

    def make(host: str = "127.0.0.1", tls: TLSArg = False) -> AppServer:
        context = tls_context(tls, server_ssl_context)
        return _servers.start(AppServer(host, tls=context))  # type: ignore[return-value]

    return make


@pytest.fixture
def app_server(server_factory: ServerFactory) -> AppServer:
    """A plain-HTTP AppServer on 127.0.0.1 for this test."""
    return server_factory()


@pytest.fixture
def https_server(server_factory: ServerFactory) -> AppServer:
    """An HTTPS AppServer on 127.0.0.1 with a cert from ``tls_ca`` (see ``ca_bundle``)."""
    return server_factory(tls=True)


@pytest.fixture
def untrusted_https_server(
    server_factory: ServerFactory, untrusted_ssl_context: ssl.SSLContext
) -> AppServer:
    """An HTTPS AppServer whose cert is signed by ``untrusted_ca``: verification must fail."""
    return server_factory(tls=untrusted_ssl_context)


@pytest.fixture
def mtls_server(server_factory: ServerFactory, mtls_ssl_context: ssl.SSLContext) -> AppServer:
    """An HTTPS AppServer that requires the ``client_cert``."""
    return server_factory(tls=mtls_ssl_context)


@pytest.fixture
def fault_server_factory(
    _servers: _Servers, server_ssl_context: ssl.SSLContext
) -> Callable[..., FaultServer]:
    """``fault_server_factory(handler, host="127.0.0.1", tls=False)`` -> a started FaultServer
    running ``handler(conn)`` per connection (see ``dummyserver.close_after``/``send_raw``).
    """

    def make(handler: Handler, host: str = "127.0.0.1", tls: TLSArg = False) -> FaultServer:
        context = tls_context(tls, server_ssl_context)
        return _servers.start(FaultServer(handler, host, tls=context))  # type: ignore[return-value]

    return make


@pytest.fixture
def proxy_server_factory(
    _servers: _Servers, server_ssl_context: ssl.SSLContext
) -> Callable[..., ProxyServer]:
    """``proxy_server_factory(host="127.0.0.1", auth=None, tls=False)`` -> a started
    ProxyServer; ``tls=True`` makes it an HTTPS proxy with the trusted server cert.
    """

    def make(
        host: str = "127.0.0.1", auth: tuple[str, str] | None = None, tls: TLSArg = False
    ) -> ProxyServer:
        context = tls_context(tls, server_ssl_context)
        return _servers.start(ProxyServer(host, auth=auth, tls=context))  # type: ignore[return-value]

    return make


@pytest.fixture
def proxy_server(proxy_server_factory: Callable[..., ProxyServer]) -> ProxyServer:
    """A forward proxy on 127.0.0.1 without authentication."""
    return proxy_server_factory()


@pytest.fixture
def mute_listener() -> Iterator[int]:
    """The port of a listener on 127.0.0.1 that takes connections (in its backlog) and never
    reads or answers: a request to it meets its read timeout."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield listener.getsockname()[1]
    listener.close()


# --- the attack suite's hostile servers --------------------------------------------------------
@pytest.fixture(name="hostile")
def hostile_fixture(server_ssl_context: ssl.SSLContext) -> Iterator[Callable[..., HostileServer]]:
    """``hostile(script, tls=False, host="127.0.0.1")`` -> a running :class:`HostileServer`,
    stopped after the test. ``tls=True`` uses the trusted test certificate (see ``ca_bundle``);
    a server-side ``ssl.SSLContext`` is used as is."""
    started: list[HostileServer] = []

    def make(
        script: Any, tls: bool | ssl.SSLContext = False, host: str = "127.0.0.1"
    ) -> HostileServer:
        context = server_ssl_context if tls is True else (tls or None)
        server = HostileServer(script, host, context)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
    errors = [text for server in started for text in server.errors]
    if errors:
        pytest.fail("a hostile-server script failed:\n" + "\n".join(errors))


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No proxy, CA-bundle or netrc settings of the machine leak into a test (use it with
    ``pytest.mark.usefixtures("clean_environment")``)."""
    for name in (
        "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
        "no_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
