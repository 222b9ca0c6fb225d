"""Self-test of the local test servers, driven by urllib3, requests and raw sockets."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import zlib

import pytest
import requests
import urllib3
from dummyserver import HAS_BROTLI, HAS_ZSTD, Conn, Message, close_after, pattern_bytes, send_raw


@pytest.fixture
def session() -> requests.Session:
    with requests.Session() as s:
        s.trust_env = False  # no proxies or netrc from the machine
        yield s


def exchange(url_host: str, port: int, raw: bytes) -> Message:
    """Send ``raw`` on a fresh socket and parse one response with the servers' own reader."""
    with socket.create_connection((url_host, port), timeout=5) as sock:
        sock.sendall(raw)
        response = Conn(None, sock, 0).read_response()  # type: ignore[arg-type]
    assert response is not None
    return response


def test_keep_alive_counts_and_routes(app_server):
    pool = urllib3.HTTPConnectionPool(app_server.host, app_server.port, maxsize=1)
    assert pool.request("GET", "/bytes/1000").data == pattern_bytes(1000)
    assert pool.request("GET", "/chunked/1000?chunk=100").data == pattern_bytes(1000)
    lines = pool.request("GET", "/stream/5").data.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2, 3, 4]
    head = pool.request("HEAD", "/bytes/10")
    assert head.headers["Content-Length"] == "10" and head.data == b""
    assert pool.request("GET", "/status/204").status == 204
    assert pool.request("GET", "/status/304").status == 304
    assert pool.request("GET", "/status/503").status == 503
    assert pool.request("GET", "/nope").status == 404
    assert (app_server.connections, app_server.requests) == (1, 8)
    assert {number for number, _ in app_server.request_log} == {1}
    app_server.reset_counts()
    assert (app_server.connections, app_server.requests, app_server.request_log) == (0, 0, [])
    pool.close()


def test_echo_and_chunked_upload(app_server, session):
    body = session.post(f"{app_server.url}/echo?x=1", data=iter([b"ab", b"cd"])).json()
    assert (body["method"], body["path"], body["query"], body["body"]) == (
        "POST",
        "/echo",
        "x=1",
        "abcd",
    )
    assert ["Transfer-Encoding", "chunked"] in body["headers"]
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        echoed = session.request(method, f"{app_server.url}/echo", data=b"\xff").json()
        assert (echoed["method"], echoed["body"]) == (method, "\xff")


def test_trailers_and_expect_continue(app_server):
    response = exchange(
        app_server.host, app_server.port, b"GET /chunked/10?chunk=3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert response.body == pattern_bytes(10)
    assert response.trailers == [("X-Trailer", "done")]
    with socket.create_connection((app_server.host, app_server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hi")
        response = Conn(None, sock, 0).read_response()  # type: ignore[arg-type]
    assert json.loads(response.body)["body"] == "hi"


DECODERS = {"gzip": gzip.decompress, "deflate": zlib.decompress}
if HAS_BROTLI:
    import brotli

    DECODERS["br"] = brotli.decompress
if HAS_ZSTD:
    import zstandard

    DECODERS["zstd"] = zstandard.ZstdDecompressor().decompress


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_content_encodings(app_server, encoding):
    if encoding not in DECODERS:
        pytest.skip(f"{encoding} library not installed")
    response = urllib3.request("GET", f"{app_server.url}/{encoding}", decode_content=False)
    assert response.headers["Content-Encoding"] == encoding
    assert json.loads(DECODERS[encoding](response.data)) == {"encoding": encoding, "method": "GET"}


def test_redirects_and_cookies(app_server, session):
    response = session.get(f"{app_server.url}/redirect/3")
    assert [r.status_code for r in response.history] == [302, 302, 302]
    assert response.json()["path"] == "/echo"
    response = session.get(f"{app_server.url}/redirect-to?url=/bytes/3&status_code=307")
    assert response.history[0].status_code == 307 and response.content == b"abc"
    response = session.get(f"{app_server.url}/cookies/set?a=1&b=2")
    assert response.json()["cookies"] == {"a": "1", "b": "2"}
    assert session.get(f"{app_server.url}/basic-auth/u/p").status_code == 401
    assert session.get(f"{app_server.url}/basic-auth/u/p", auth=("u", "p")).json()["user"] == "u"


def test_duplicate_response_headers(app_server):
    response = urllib3.request("GET", f"{app_server.url}/headers")
    assert response.headers.getlist("X-Dup") == ["a", "b"]
    assert len(response.headers.getlist("Set-Cookie")) == 2
    response = urllib3.request("GET", f"{app_server.url}/response-headers?X-A=1&X-A=2")
    assert response.headers.getlist("X-A") == ["1", "2"]


@pytest.mark.parametrize("path", ["/close", "/http10", "/no-length?n=50"])
def test_routes_that_close(app_server, path):
    pool = urllib3.HTTPConnectionPool(app_server.host, app_server.port, maxsize=1)
    first = pool.request("GET", path)
    second = pool.request("GET", path)
    assert first.status == second.status == 200
    assert app_server.connections == 2
    if path.startswith("/no-length"):
        assert first.data == pattern_bytes(50)
    pool.close()


def test_client_connection_close_is_honoured(app_server):
    response = exchange(
        app_server.host,
        app_server.port,
        b"GET /bytes/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert response.header("Connection") == "close" and response.body == b"ab"


def test_hold_releases_a_group(app_server):
    results = []

    def get() -> None:
        results.append(urllib3.request("GET", f"{app_server.url}/hold?key=t1&n=3").json())

    threads = [threading.Thread(target=get) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 3 and all(r["released"] for r in results)
    assert app_server.connections == 3


def test_slow(app_server):
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        urllib3.request("GET", f"{app_server.url}/slow?delay=2", timeout=0.2, retries=False)
    assert urllib3.request("GET", f"{app_server.url}/slow?delay=0.01").data == b"slow"


def test_tls(https_server, ca_bundle, session):
    assert https_server.url.startswith("https://127.0.0.1:")
    assert session.get(f"{https_server.url}/bytes/5", verify=ca_bundle).content == b"abcde"
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{https_server.url}/bytes/5")  # the system store lacks the test CA


def test_tls_untrusted_and_client_cert(
    untrusted_https_server, mtls_server, ca_bundle, client_cert, session
):
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{untrusted_https_server.url}/bytes/1", verify=ca_bundle)
    response = session.get(f"{mtls_server.url}/bytes/1", verify=ca_bundle, cert=client_cert)
    assert response.content == b"a"


def test_several_hosts(server_factory, ca_bundle, session):
    two, three = server_factory("127.0.0.2"), server_factory("127.0.0.3", tls=True)
    assert session.get(f"{two.url}/bytes/1").content == b"a"
    assert session.get(f"{three.url}/bytes/1", verify=ca_bundle).content == b"a"
    assert (two.host, three.host, two.connections, three.connections) == (
        "127.0.0.2",
        "127.0.0.3",
        1,
        1,
    )


def test_stop_closes_everything(server_factory):
    server = server_factory()
    pool = urllib3.HTTPConnectionPool(server.host, server.port)
    pool.request("GET", "/bytes/1")  # leaves an idle keep-alive connection
    server.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("AppServer")]
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=1)
    pool.close()


def test_fault_close_after(fault_server_factory):
    server = fault_server_factory(close_after(2, b"hi"))
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        conn = Conn(None, sock, 0)  # type: ignore[arg-type]
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.read_response().body == b"hi"
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(10) == b""  # FIN, no answer
    assert (server.connections, server.requests) == (1, 2)


def test_fault_reset_and_raw(fault_server_factory):
    server = fault_server_factory(send_raw(b"", then="reset"))  # RST once the request is read
    sock = socket.create_connection((server.host, server.port), timeout=5)
    with sock, pytest.raises(ConnectionResetError):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(10)
    server = fault_server_factory(send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        urllib3.request("GET", f"{server.url}/", retries=False)


def test_fault_handler_script(fault_server_factory):
    seen = []

    def handler(conn: Conn) -> None:
        request = conn.read_request()
        seen.append((conn.number, request.method, request.target, request.body))
        conn.respond(201, b"made", [("X-Num", str(conn.number))])
        conn.stall(0.01)
        conn.shutdown_write()

    server = fault_server_factory(handler)
    response = urllib3.request("POST", f"{server.url}/thing", body=b"xyz")
    assert (response.status, response.data, response.headers["X-Num"]) == (201, b"made", "1")
    assert seen == [(1, "POST", "/thing", b"xyz")]


def test_proxy_forward_and_connect(proxy_server, app_server, https_server, ca_bundle, session):
    proxies = {"http": proxy_server.url, "https": proxy_server.url}
    for _ in range(2):
        assert session.get(f"{app_server.url}/bytes/4", proxies=proxies).content == b"abcd"
    echoed = session.post(f"{app_server.url}/echo", data=b"up", proxies=proxies).json()
    assert echoed["body"] == "up"
    response = session.get(f"{https_server.url}/bytes/3", proxies=proxies, verify=ca_bundle)
    assert response.content == b"abc"
    assert proxy_server.request_lines[0] == f"GET {app_server.url}/bytes/4 HTTP/1.1"
    assert proxy_server.request_lines[-1].startswith(f"CONNECT 127.0.0.1:{https_server.port} ")
    # keep-alive to the proxy for plain HTTP; one tunnel for HTTPS
    assert proxy_server.connections == 2 and https_server.connections == 1


def test_proxy_auth(proxy_server_factory, app_server, session):
    proxy = proxy_server_factory(auth=("user", "secret"))
    response = session.get(f"{app_server.url}/bytes/1", proxies={"http": proxy.url})
    assert response.status_code == 407
    authed = proxy.url.replace("http://", "http://user:secret@")
    response = session.get(f"{app_server.url}/echo", proxies={"http": authed})
    assert response.status_code == 200
    names = {name.lower() for name, _ in response.json()["headers"]}
    assert "proxy-authorization" not in names  # not leaked upstream


def test_https_proxy(proxy_server_factory, app_server, https_server, ca_bundle):
    proxy = proxy_server_factory(tls=True)
    assert proxy.url.startswith("https://")
    with urllib3.ProxyManager(proxy.url, ca_certs=ca_bundle) as manager:
        assert manager.request("GET", f"{app_server.url}/bytes/3").data == b"abc"
        for size in (10, 100_000):  # TLS in TLS through the tunnel
            assert manager.request("GET", f"{https_server.url}/bytes/{size}").data == pattern_bytes(
                size
            )
    assert proxy.request_lines[1].startswith(f"CONNECT 127.0.0.1:{https_server.port} HTTP/1.")
    assert proxy.connections == 2 and https_server.connections == 1
