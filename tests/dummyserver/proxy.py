"""The ProxyServer: a forward proxy (absolute-form requests and ``CONNECT`` tunnels)."""

from __future__ import annotations

import base64
import selectors
import socket
import ssl
from urllib.parse import urlsplit

from .server import Conn, Message, _Server

__all__ = ("ProxyServer",)


class ProxyServer(_Server):
    """A forward proxy: absolute-form requests (``GET http://host:port/path``) and ``CONNECT``.

    ``ProxyServer(host="127.0.0.1", auth=None, tls=None)``; ``auth=("user", "pass")`` requires
    ``Proxy-Authorization: Basic ...`` on every request and answers 407 otherwise; ``tls`` (a
    server-side ``ssl.SSLContext``) makes it an HTTPS proxy (TLS between client and proxy,
    so a CONNECT tunnel to an HTTPS origin carries TLS in TLS). The client side is keep-alive;
    each forwarded request uses a fresh upstream connection, and its response is relayed with
    Content-Length framing. ``request_lines`` records every request line seen and ``seen``
    every parsed request (for header checks).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        auth: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, tls)
        self.auth = auth

    def reset_counts(self) -> None:
        """Zero the counters and forget the requests seen."""
        super().reset_counts()
        self.request_lines: list[str] = []
        self.seen: list[Message] = []

    def _count_request(self, conn: Conn, request: Message) -> None:
        super()._count_request(conn, request)
        with self._lock:
            self.request_lines.append(request.start_line)
            self.seen.append(request)

    def _authorized(self, request: Message) -> bool:
        if self.auth is None:
            return True
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return request.header("proxy-authorization") == f"Basic {token}"

    def handle(self, conn: Conn) -> None:
        while True:
            request = conn.read_request()
            if request is None:
                return
            if not self._authorized(request):
                challenge = [("Proxy-Authenticate", 'Basic realm="fastpool-proxy"')]
                conn.respond(407, b"proxy auth required", challenge)
                continue
            if request.method == "CONNECT":
                self._tunnel(conn, request)
                return
            self._forward(conn, request)
            if request.wants_close():
                return

    def _upstream(self, authority: str) -> socket.socket:
        host, _, port = authority.rpartition(":")
        return socket.create_connection((host.strip("[]"), int(port)), timeout=10)

    def _forward(self, conn: Conn, request: Message) -> None:
        url = urlsplit(request.target)
        if url.scheme != "http" or not url.hostname:
            conn.respond(400, b"absolute-form http:// target required")
            return
        origin_target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        hop_by_hop = {"proxy-authorization", "proxy-connection", "connection", "keep-alive",
                      "transfer-encoding", "content-length", "te"}  # fmt: skip
        headers = [(k, v) for k, v in request.headers if k.lower() not in hop_by_hop]
        headers += [("Connection", "close"), ("Content-Length", str(len(request.body)))]
        head = f"{request.method} {origin_target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        try:
            upstream = self._upstream(f"{url.hostname}:{url.port or 80}")
        except OSError as exc:
            conn.respond(502, f"upstream: {exc}".encode())
            return
        with upstream:
            upstream.sendall(head.encode("latin-1") + request.body)
            response = Conn(self, upstream, 0).read_response(request.method)
        if response is None:
            conn.respond(502, b"upstream closed without a response")
            return
        skip = hop_by_hop - {"proxy-authorization"}
        relayed = [(k, v) for k, v in response.headers if k.lower() not in skip]
        if request.wants_close():
            relayed.append(("Connection", "close"))
        if response.status not in (204, 304):
            relayed.append(("Content-Length", str(len(response.body))))
        reason = response.start_line.split(" ", 2)[2] if response.start_line.count(" ") >= 2 else ""
        conn.respond(response.status, response.body, relayed, reason=reason or None,
                     head_only=request.method == "HEAD")  # fmt: skip

    def _tunnel(self, conn: Conn, request: Message) -> None:
        try:
            upstream = self._upstream(request.target)
        except (OSError, ValueError) as exc:
            conn.respond(502, f"upstream: {exc}".encode(), [("Connection", "close")])
            return
        upstream.settimeout(None)
        up = Conn(self, upstream, 0)
        with self._lock:
            self._live.add(up)  # so stop() wakes the relay
        try:
            conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pending = conn.take_buffered()
            if pending:
                upstream.sendall(pending)
            _relay(conn.sock, upstream)
        finally:
            with self._lock:
                self._live.discard(up)
            upstream.close()


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both directions have seen EOF (or an error).

    Between plain sockets a half-close is passed on. A TLS socket cannot be half-closed
    (``SSLSocket.shutdown`` drops the TLS layer), so with one, the first EOF ends the relay.
    """
    peer = {a: b, b: a}
    half_close = not any(isinstance(s, ssl.SSLSocket) for s in peer)
    selector = selectors.DefaultSelector()
    selector.register(a, selectors.EVENT_READ)
    selector.register(b, selectors.EVENT_READ)
    try:
        while peer:
            for key, _ in selector.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(65536)
                # Decrypted bytes can wait inside the TLS object, where select cannot see them.
                while data and isinstance(src, ssl.SSLSocket) and src.pending():
                    data += src.recv(src.pending())
                if data:
                    peer[src].sendall(data)
                    continue
                if not half_close:
                    return
                # EOF one way: pass the half-close on, keep relaying the other way.
                selector.unregister(src)
                try:
                    peer[src].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                del peer[src]
    finally:
        selector.close()
