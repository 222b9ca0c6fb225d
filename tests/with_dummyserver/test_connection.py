"""HTTPConnection / HTTPSConnection on their own: request writing, head reading, liveness,
tunnels and input validation."""

from __future__ import annotations

import socket
import ssl

import pytest
from dummyserver import send_raw

from fastpool.connection import HTTPConnection, HTTPSConnection, default_user_agent
from fastpool.exceptions import InvalidRequestError


def _captured_request(fault_server_factory, write):  # type: ignore[no-untyped-def]
    """Run ``write(conn)`` against a server that records the raw request and answers 204."""
    seen = []

    def handler(c):  # type: ignore[no-untyped-def]
        request = c.read_request()
        if request is not None:
            seen.append(request)
            c.send(b"HTTP/1.1 204 No Content\r\n\r\n")

    server = fault_server_factory(handler)
    conn = HTTPConnection(server.host, server.port, timeout=5)
    write(conn)
    head = conn.read_response_head("GET")
    assert head.status == 204
    conn.close()
    return seen[0], server


def test_default_headers_and_host(fault_server_factory):
    request, server = _captured_request(
        fault_server_factory, lambda c: c.request("GET", "/p?q=1", headers={"X-A": "b"})
    )
    assert request.start_line == "GET /p?q=1 HTTP/1.1"
    assert request.header("host") == f"127.0.0.1:{server.port}"
    assert request.header("user-agent") == default_user_agent
    assert request.header("content-length") is None  # GET without a body: none
    # urllib3's order: its defaults first, then the caller's headers
    assert [k for k, _ in request.headers] == ["Host", "Accept-Encoding", "User-Agent", "X-A"]
    assert request.header("accept-encoding") == "identity"


def test_bytes_header_names_replace_the_defaults_as_in_urllib3(fault_server_factory):
    # urllib3 compares to_str(name.lower()): a bytes Host or User-Agent is the one sent
    request, _ = _captured_request(
        fault_server_factory,
        lambda c: c.request("GET", "/", headers={b"HOST": b"example.org", b"User-Agent": b"me"}),
    )
    names = [name.lower() for name, _ in request.headers]
    assert names.count("host") == 1 and names.count("user-agent") == 1
    assert request.header("host") == "example.org"
    assert request.header("user-agent") == "me"


def test_absolute_form_host_header(fault_server_factory):
    request, _ = _captured_request(
        fault_server_factory, lambda c: c.request("GET", "http://origin.test:8080/x")
    )
    assert request.start_line == "GET http://origin.test:8080/x HTTP/1.1"
    assert request.header("host") == "origin.test:8080"


def test_chunked_iterable_body(fault_server_factory):
    request, _ = _captured_request(
        fault_server_factory, lambda c: c.request("PUT", "/", body=iter([b"ab", b"", "cd"]))
    )
    assert request.header("transfer-encoding") == "chunked"
    assert request.body == b"abcd"


def test_caller_content_length_wins(fault_server_factory):
    request, _ = _captured_request(
        fault_server_factory,
        lambda c: c.request("POST", "/", body=iter([b"abc"]), headers={"Content-Length": "3"}),
    )
    assert request.header("transfer-encoding") is None and request.body == b"abc"


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "a\r\nInjected: 1"}, {"X-A": "a\nb"}, {"X-A": "a\x00"}, {"Bad Name": "v"}],
)
def test_header_injection_rejected_before_sending(fault_server_factory, headers):
    server = fault_server_factory(send_raw(b"HTTP/1.1 204 No Content\r\n\r\n"))
    conn = HTTPConnection(server.host, server.port, timeout=5)
    with pytest.raises(InvalidRequestError):
        conn.request("GET", "/", headers=headers)
    assert not conn.request_started
    conn.close()


def test_request_started_tracks_writes(app_server):
    conn = HTTPConnection(app_server.host, app_server.port, timeout=5)
    assert not conn.request_started
    conn.request("GET", "/bytes/1")
    assert conn.request_started
    conn.close()
    assert not conn.request_started


def test_head_leftover_kept_for_body(fault_server_factory):
    server = fault_server_factory(
        send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", then="keep")
    )
    conn = HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/")
    head = conn.read_response_head("GET")
    assert (head.status, head.framing, head.content_length) == (200, "length", 5)
    assert conn.take_rest() == b"hello"
    conn.close()


def test_head_split_across_segments(fault_server_factory):
    def handler(c):  # type: ignore[no-untyped-def]
        c.read_request()
        for piece in (b"HTTP/1.1 200 OK\r\nConte", b"nt-Length: 2\r\n", b"\r\nok"):
            c.send(piece)
            c.stall(0.02)

    server = fault_server_factory(handler)
    conn = HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/")
    head = conn.read_response_head("GET")
    assert head.content_length == 2
    conn.close()


def test_liveness(fault_server_factory):
    from dummyserver import close_after

    server = fault_server_factory(close_after(1))
    conn = HTTPConnection(server.host, server.port, timeout=5)
    assert not conn.is_connected and conn.is_closed
    conn.request("GET", "/")
    conn.read_response_head("GET")
    assert conn.take_rest() == b"ok"
    import time

    deadline = time.monotonic() + 5
    while conn.is_connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not conn.is_connected  # the server's FIN is visible without blocking
    conn.close()


def test_socket_options_default_nodelay(app_server):
    conn = HTTPConnection(app_server.host, app_server.port)
    conn.connect()
    assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    conn.close()


@pytest.mark.parametrize("value,error", [("x", TypeError), (0, ValueError), (True, TypeError)])
def test_bad_blocksize(value, error):
    with pytest.raises(error, match="blocksize"):
        HTTPConnection("localhost", blocksize=value)


def test_https_connection_verifies(https_server, ca_bundle):
    ctx = ssl.create_default_context(cafile=ca_bundle)
    conn = HTTPSConnection(https_server.host, https_server.port, ssl_context=ctx, timeout=5)
    conn.request("GET", "/bytes/3")
    assert conn.read_response_head("GET").status == 200
    assert conn.is_verified
    conn.close()
    bad = HTTPSConnection(
        https_server.host, https_server.port, ssl_context=ssl.create_default_context(), timeout=5
    )
    with pytest.raises(ssl.SSLError):
        bad.connect()
    assert bad.sock is None


def test_tunnel(https_server, proxy_server, ca_bundle):
    ctx = ssl.create_default_context(cafile=ca_bundle)
    conn = HTTPSConnection(
        proxy_server.host, proxy_server.port, ssl_context=ctx, timeout=5,
        server_hostname="127.0.0.1", proxy=object(),
    )  # fmt: skip
    conn.set_tunnel("127.0.0.1", https_server.port)
    conn.request("GET", "/bytes/2")
    assert conn.read_response_head("GET").status == 200
    assert conn.has_connected_to_proxy
    assert proxy_server.request_lines == [f"CONNECT 127.0.0.1:{https_server.port} HTTP/1.1"]
    conn.close()


def test_https_connection_takes_urllib3_tls_arguments(https_server, ca_bundle, client_cert):
    conn = HTTPSConnection(https_server.host, https_server.port, ca_certs=ca_bundle, timeout=5)
    assert conn.ssl_context.verify_mode == ssl.CERT_REQUIRED and conn.ssl_context.check_hostname
    conn.request("GET", "/bytes/1")
    assert conn.read_response_head("GET").status == 200
    conn.close()
    # verification is on by default: the system CAs do not know the test CA
    default = HTTPSConnection(https_server.host, https_server.port, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        default.connect()
    off = HTTPSConnection(https_server.host, https_server.port, cert_reqs="CERT_NONE", timeout=5)
    off.connect()
    assert not off.is_verified
    off.close()


def test_close_forgets_the_requests_of_its_socket() -> None:
    # The count says whether a socket was reused (Go's replay rule): a socket dialed after
    # close() has answered nothing, whatever the one before it did.
    conn = HTTPConnection("127.0.0.1", 9)
    conn.requests = 3
    conn.close()
    assert conn.requests == 0
