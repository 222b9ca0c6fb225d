"""fastpool.PoolManager against urllib3.PoolManager and the raw-socket floor, on nginx (loopback).

Cases: ``GET /100b`` and ``GET /64k``, over HTTP and HTTPS, one keep-alive connection, the body
read (``PoolManager.request(...).data``). Per case, in one process and interleaved so all meet
the same noise: urllib3, fastpool with the active core backend, and the floor
(``bench/floor.py``); the pure-Python backend runs in a child process
(``FASTPOOL_NO_EXTENSIONS=1``) against the same nginx in the same run. Medians of the repeats.

Targets: HTTP 100 B urllib3/fastpool >= 2.5x and fastpool/floor <= 1.8x; HTTPS >= 2x;
64 KiB >= 1.3x; the pure backend no slower than urllib3.

``python bench/engine.py [--requests N] [--repeats R]`` prints the table. On a shared machine
the figures are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
if __name__ == "__main__" or "--child" in sys.argv:  # a source checkout: this tree's fastpool
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))

import urllib3

import fastpool
from fastpool.poolmanager import PoolManager

CASES = [("http", "/100b"), ("http", "/64k"), ("https", "/100b"), ("https", "/64k")]
_CHILD_TIMEOUT = 300.0


def client_get(manager: Any, url: str) -> Callable[[], None]:
    """One ``manager.request("GET", url)`` with the body read (the connection goes back)."""

    def run() -> None:
        manager.request("GET", url).data  # noqa: B018 - reading the body is the point

    return run


def per_request(run: Callable[[], None], n: int) -> float:
    """Seconds per call of ``run`` over ``n`` calls."""
    started = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - started) / n


def managers(ca_bundle: str) -> dict[str, Any]:
    """A fresh urllib3 and fastpool PoolManager, both verifying against ``ca_bundle``."""
    return {
        "urllib3": urllib3.PoolManager(ca_certs=ca_bundle),
        "fastpool": PoolManager(ca_certs=ca_bundle),
    }


def pure_backend_times(url: str, ca_bundle: str, n: int, repeats: int) -> list[float]:
    """Seconds per request of fastpool's pure-Python backend, measured in a child process."""
    env = dict(os.environ, FASTPOOL_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, str(HERE / "engine.py"), "--child", url, ca_bundle, str(n), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["implementation"] != "python":
        raise RuntimeError(f"child ran the {result['implementation']} backend, not python")
    return [float(t) for t in result["times"]]


def _child(url: str, ca_bundle: str, n: int, repeats: int) -> None:
    run = client_get(PoolManager(ca_certs=ca_bundle), url)
    per_request(run, 50)
    times = [per_request(run, n) for _ in range(repeats)]
    print(json.dumps({"implementation": fastpool.implementation(), "times": times}))


def measure(nginx: Any, n: int = 2000, repeats: int = 5, pure: bool = True) -> list[dict[str, Any]]:
    """One row per case: medians (seconds per request) of urllib3, fastpool, the floor and,
    with ``pure``, the pure backend; and the ratios."""
    from floor import floor_seconds_per_request

    context = ssl.create_default_context(cafile=nginx.ca_bundle)
    rows = []
    for scheme, path in CASES:
        base = nginx.https_url if scheme == "https" else nginx.http_url
        port = nginx.https_port if scheme == "https" else nginx.http_port
        url = base + path
        runs = {name: client_get(m, url) for name, m in managers(nginx.ca_bundle).items()}
        for run in runs.values():
            per_request(run, 50)  # warm up: connect, fill caches
        times: dict[str, list[float]] = {name: [] for name in [*runs, "floor"]}
        for _ in range(repeats):
            for name, run in runs.items():
                times[name].append(per_request(run, n))
            times["floor"].append(
                floor_seconds_per_request(
                    "127.0.0.1", port, path, n, context if scheme == "https" else None
                )
            )
        if pure:
            times["pure"] = pure_backend_times(url, nginx.ca_bundle, n, repeats)
        med = {name: statistics.median(values) for name, values in times.items()}
        row: dict[str, Any] = {"case": f"{scheme.upper()} {path}", **med}
        row["urllib3/fastpool"] = med["urllib3"] / med["fastpool"]
        row["fastpool/floor"] = med["fastpool"] / med["floor"]
        if pure:
            row["urllib3/pure"] = med["urllib3"] / med["pure"]
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`measure`'s rows (microseconds per request, ratios)."""
    pure = "pure" in rows[0]
    lines = [
        "| case | urllib3 µs | fastpool µs | floor µs |"
        + (" pure µs |" if pure else "")
        + " urllib3/fastpool | fastpool/floor |"
        + (" urllib3/pure |" if pure else ""),
        "|---|---:|---:|---:|"
        + ("---:|" if pure else "")
        + "---:|---:|"
        + ("---:|" if pure else ""),
    ]
    for r in rows:
        line = f"| {r['case']} | {r['urllib3'] * 1e6:.1f} | {r['fastpool'] * 1e6:.1f} | "
        line += f"{r['floor'] * 1e6:.1f} |"
        if pure:
            line += f" {r['pure'] * 1e6:.1f} |"
        line += f" {r['urllib3/fastpool']:.2f}x | {r['fastpool/floor']:.2f}x |"
        if pure:
            line += f" {r['urllib3/pure']:.2f}x |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start nginx, measure every case, print the table (``--requests``, ``--repeats``)."""
    from nginx_server import RUN_ROOT, NginxServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats (default 5)")
    parser.add_argument("--no-pure", action="store_true", help="skip the pure-backend child")
    args = parser.parse_args(argv)
    with NginxServer(RUN_ROOT / "nginx-engine-bench", hosts=0) as nginx:
        rows = measure(nginx, args.requests, args.repeats, pure=not args.no_pure)
    print(
        f"fastpool {fastpool.__version__} ({fastpool.implementation()} core), "
        f"urllib3 {urllib3.__version__}; medians of {args.repeats} repeats x {args.requests}"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
