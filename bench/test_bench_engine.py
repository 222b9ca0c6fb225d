"""pytest-benchmark: fastpool.PoolManager vs urllib3.PoolManager vs the raw-socket floor, on nginx.

Run ``pytest bench/test_bench_engine.py --benchmark-enable``. Each group is one case (HTTP or
HTTPS, 100 B or 64 KiB, keep-alive, body read) with the three clients measured in the same run:
compare their medians. ``test_pure_backend`` runs fastpool's pure-Python backend in a child
process (``FASTPOOL_NO_EXTENSIONS=1``) and records its median next to urllib3's in
``extra_info``. ``python bench/engine.py`` prints all ratios as a table. No assert on speed.
"""

from __future__ import annotations

import socket
import ssl
import statistics
from typing import Any

import pytest
from engine import CASES, client_get, managers, per_request, pure_backend_times
from floor import _get as floor_get

CLIENTS = ["urllib3", "fastpool", "floor"]


def _url(nginx: Any, scheme: str, path: str) -> str:
    return (nginx.https_url if scheme == "https" else nginx.http_url) + path


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("scheme,path", CASES, ids=[f"{s}{p}" for s, p in CASES])
def test_get(benchmark: Any, nginx: Any, scheme: str, path: str, client: str) -> None:
    benchmark.group = f"PoolManager.request GET {scheme.upper()} {path}"
    if client == "floor":
        # bench/floor.py's exchange, one request per round on one open keep-alive socket
        port = nginx.https_port if scheme == "https" else nginx.http_port
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: floor\r\n\r\n"
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            context = ssl.create_default_context(cafile=nginx.ca_bundle)
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            buf = bytearray()
            floor_get(sock, request.encode(), buf)
            benchmark(floor_get, sock, request.encode(), buf)
        return
    manager = managers(nginx.ca_bundle)[client]
    run = client_get(manager, _url(nginx, scheme, path))
    run()
    benchmark(run)
    manager.clear()


@pytest.mark.parametrize("scheme,path", CASES[:1] + CASES[2:3], ids=["http/100b", "https/100b"])
def test_pure_backend(benchmark: Any, nginx: Any, scheme: str, path: str) -> None:
    """urllib3 in process (benchmarked) and the pure backend in a child, same nginx, same run."""
    benchmark.group = f"pure backend vs urllib3 {scheme.upper()} {path}"
    url = _url(nginx, scheme, path)
    pure = pure_backend_times(url, nginx.ca_bundle, 1000, 5)
    run = client_get(managers(nginx.ca_bundle)["urllib3"], url)
    run()
    urllib3_median = statistics.median(per_request(run, 1000) for _ in range(5))
    benchmark.extra_info["pure_median_s"] = statistics.median(pure)
    benchmark.extra_info["urllib3_median_s"] = urllib3_median
    benchmark.extra_info["urllib3/pure"] = urllib3_median / statistics.median(pure)
    benchmark(run)
