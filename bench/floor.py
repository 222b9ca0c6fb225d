"""The raw-socket floor: the least a keep-alive GET can cost on this machine.

:func:`floor_seconds_per_request` sends one fixed request at a time over one plain (or TLS)
socket, reads the head and exactly Content-Length body bytes, and returns seconds per request.
No parsing beyond that, no pool, no objects: every engine benchmark is compared to this as a
ratio measured in the same run.

``python bench/floor.py`` starts nginx (bench/nginx_server.py) and prints the floor for the
served files over HTTP and HTTPS.
"""

from __future__ import annotations

import socket
import ssl
import time

#: Bounds on one measurement (requests and seconds), so a slow machine cannot hang a run.
MAX_REQUESTS = 1_000_000
MAX_SECONDS = 60.0


def floor_seconds_per_request(
    host: str,
    port: int,
    path: str = "/100b",
    n: int = 2000,
    ssl_context: ssl.SSLContext | None = None,
    max_seconds: float = 10.0,
) -> float:
    """Seconds per request for ``n`` keep-alive GETs of ``path`` over one socket.

    ``host``/``port``: the server; ``path`` (default ``/100b``) must answer with Content-Length;
    ``n`` (default 2000, at most 1,000,000) requests; ``ssl_context``: use TLS (default plain);
    ``max_seconds`` (default 10, at most 60): stop early and average the requests done.
    The connection is opened (and the TLS handshake done) before the clock starts.
    """
    if not isinstance(n, int) or not 1 <= n <= MAX_REQUESTS:
        raise ValueError(f"n must be an int in 1..{MAX_REQUESTS}, got {n!r}")
    if not 0 < max_seconds <= MAX_SECONDS:
        raise ValueError(f"max_seconds must be in (0, {MAX_SECONDS}], got {max_seconds!r}")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: floor\r\n\r\n".encode()
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ssl_context is not None:
        sock = ssl_context.wrap_socket(sock, server_hostname=host)
    with sock:
        exchange(sock, request, bytearray())  # warm-up, and a check of the answer
        buf = bytearray()
        deadline = time.perf_counter() + max_seconds
        start = time.perf_counter()
        done = 0
        while done < n:
            exchange(sock, request, buf)
            done += 1
            if not done % 256 and time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - start
    return elapsed / done


def exchange(sock: socket.socket, request: bytes, buf: bytearray) -> int:
    """Send ``request`` and read one 200 answer framed by Content-Length; return its body
    length. ``buf`` carries bytes received past the answer to the next call (keep-alive).
    Raises ValueError for another status or framing, ConnectionAbortedError on a close."""
    sock.sendall(request)
    recv = sock.recv
    while (end := buf.find(b"\r\n\r\n")) < 0:
        buf += _more(recv)
    head = bytes(buf[:end]).lower()
    if not head.startswith(b"http/1.1 200 "):
        raise ValueError(f"the floor needs a 200 answer, got {head[:40]!r}")
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("the floor needs a Content-Length answer")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
    need = end + 4 + length
    while len(buf) < need:
        buf += _more(recv)
    del buf[:need]
    return length


def _more(recv) -> bytes:  # type: ignore[no-untyped-def]
    data: bytes = recv(262144)
    if not data:
        raise ConnectionAbortedError("the server closed the connection")
    return data


def main() -> None:
    import os
    import shutil

    from nginx_server import RUN_ROOT, NginxServer

    run_dir = RUN_ROOT / f"floor-{os.getpid()}"
    with NginxServer(run_dir, hosts=0) as nginx:
        context = ssl.create_default_context(cafile=nginx.ca_bundle)
        for scheme, port, ctx in (
            ("http", nginx.http_port, None),
            ("https", nginx.https_port, context),
        ):
            for path in ("/100b", "/64k"):
                seconds = floor_seconds_per_request("127.0.0.1", port, path, 5000, ctx)
                print(f"{scheme:5} {path:6} {seconds * 1e6:8.1f} µs/request")
        print(f"connections accepted by nginx: {nginx.connections()}")
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
