"""Fixtures for fastpool's benchmarks (run them with ``pytest bench/... --benchmark-enable``).

``nginx``: a real nginx on loopback for the whole session (see ``bench/nginx_server.py``),
skipped with the reason when nginx cannot start. ``floor``: the raw-socket lower bound
(``bench/floor.py``) for a path on that nginx, to report engine timings as ratios.
"""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Iterator
from typing import Callable

import pytest
from floor import floor_seconds_per_request
from nginx_server import RUN_ROOT, NginxError, NginxServer


@pytest.fixture(scope="session")
def nginx() -> Iterator[NginxServer]:
    """nginx serving ``/100b`` and ``/64k`` over HTTP (``nginx.http_url``) and HTTPS
    (``nginx.https_url``, verify with ``nginx.ca_bundle``) on 127.0.0.1 and the crawl hosts
    (``nginx.http_urls()``/``https_urls()``: 127.0.0.2 ... 127.0.0.201).
    ``nginx.connections()`` counts the TCP connections it accepted since start.
    """
    run_dir = RUN_ROOT / f"nginx-session-{os.getpid()}"  # private: parallel runs do not clash
    server = NginxServer(run_dir)
    try:
        server.start()
    except (NginxError, ImportError, OSError) as exc:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        pytest.skip(f"cannot start nginx for the benchmarks: {exc}")
    yield server
    server.stop()
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def floor(nginx: NginxServer) -> Callable[..., float]:
    """``floor(path="/100b", https=False, n=2000)`` -> seconds per request of the raw-socket
    floor against ``nginx`` (one keep-alive socket, fixed request, no parsing).
    """
    context = ssl.create_default_context(cafile=nginx.ca_bundle)

    def measure(path: str = "/100b", https: bool = False, n: int = 2000) -> float:
        port = nginx.https_port if https else nginx.http_port
        return floor_seconds_per_request("127.0.0.1", port, path, n, context if https else None)

    return measure
