"""fastpool.HTTPAdapter against requests' stock HTTPAdapter, on nginx over loopback.

Three scenarios, each run with both adapters in the same process, interleaved, repeated; the
table shows medians and the ratio stock time / fastpool time (higher is better for fastpool):

- ``session.get``: a ``requests.Session`` with the adapter mounted, one thread, keep-alive,
  ``GET /100b`` (target: ratio >= 1.35);
- ``adapter.send``: ``adapter.send(prepared)`` and reading the body, nothing else (target >= 3);
- ``32 threads``: 32 threads sharing one Session with default pool sizes, one host: throughput
  (target: no lower than stock) and the TCP connections nginx accepted (target: the same).

The client's CPU time per request is shown too: on a shared machine it moves less than the
wall-clock time, whose ratio is the target.

Run ``python bench/adapter.py [--requests N] [--repeats R] [--awake]``; ``--awake`` keeps every
CPU busy with ``SCHED_IDLE`` loops so that no virtual CPU halts between packets (see
``bench/awake.py``: with halting vCPUs every request of every client waits tens of µs more).
The raw-socket floor of the same run is the first row. The pytest-benchmark versions are in
``bench/test_bench_adapter.py``. On a shared machine the figures are indicative only.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import requests
import requests.adapters

if __name__ == "__main__":  # run from a source checkout: import this tree's fastpool
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastpool

ADAPTERS: dict[str, type[requests.adapters.HTTPAdapter]] = {
    "stock": requests.adapters.HTTPAdapter,
    "fastpool": fastpool.HTTPAdapter,
}
THREADS = 32
_JOIN_SECONDS = 60.0


def make_session(adapter: requests.adapters.HTTPAdapter) -> requests.Session:
    """A Session with ``adapter`` mounted for http and https (environment ignored)."""
    session = requests.Session()
    session.trust_env = False  # the same for both adapters, and no per-request env lookups
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def session_get(session: requests.Session, url: str) -> Callable[[], None]:
    """One ``session.get(url)`` (the body is read, so the connection goes back to the pool)."""

    def run() -> None:
        session.get(url).content  # noqa: B018 - reading the body is the point

    return run


def adapter_send(adapter: requests.adapters.HTTPAdapter, url: str) -> Callable[[], None]:
    """One ``adapter.send(prepared)`` plus reading the body, as Session.send does."""
    with make_session(adapter) as session:
        prepared = session.prepare_request(requests.Request("GET", url))

    def run() -> None:
        adapter.send(prepared).content  # noqa: B018 - reading the body releases the connection

    return run


def per_request(run: Callable[[], None], n: int) -> tuple[float, float]:
    """Wall-clock and CPU (this process) seconds per call of ``run`` over ``n`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        run()
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def threaded(
    session: requests.Session, url: str, n: int, threads: int = THREADS
) -> tuple[float, float]:
    """Wall-clock and CPU seconds per request, ``threads`` threads doing ``n`` GETs each on one
    shared Session."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def work() -> None:
        try:
            start.wait(_JOIN_SECONDS)
            for _ in range(n):
                session.get(url).content  # noqa: B018
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start.wait(_JOIN_SECONDS)
    wall, cpu = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join(_JOIN_SECONDS)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if errors or any(thread.is_alive() for thread in pool):
        raise RuntimeError(f"threaded run failed: {errors[:1] or 'a thread did not finish'}")
    return wall / (n * threads), cpu / (n * threads)


def measure(nginx: Any, n: int = 2000, repeats: int = 5) -> list[dict[str, Any]]:
    """Run the three scenarios against ``nginx`` (bench/nginx_server.NginxServer); one row each
    with median wall-clock seconds per request per adapter, the stock/fastpool ratio, and the
    same for the client's CPU time (steadier than wall-clock time on a busy machine). A first
    row holds the raw-socket floor (bench/floor.py) of the same run: the wait no client avoids.
    """
    from floor import floor_seconds_per_request

    url = nginx.http_url + "/100b"
    host, port = nginx.http_url.rsplit("/", 1)[1].rsplit(":", 1)
    floors = [floor_seconds_per_request(host, int(port), n=n) for _ in range(repeats)]
    rows: list[dict[str, Any]] = [{"scenario": "raw-socket floor", "floor": floors}]
    for scenario in ("session.get", "adapter.send"):
        runs: dict[str, Callable[[], None]] = {}
        for name, cls in ADAPTERS.items():
            adapter = cls()
            if scenario == "session.get":
                runs[name] = session_get(make_session(adapter), url)
            else:
                runs[name] = adapter_send(adapter, url)
            per_request(runs[name], 50)  # warm up: connect, fill caches
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in ADAPTERS}
        for _ in range(repeats):
            for name, run in runs.items():  # interleaved, so both meet the same noise
                times[name].append(per_request(run, n))
        rows.append(_row(scenario, times))
    times = {name: [] for name in ADAPTERS}
    connections: dict[str, int] = {}
    for name, cls in ADAPTERS.items():
        before = nginx.connections()
        with make_session(cls()) as session:
            for _ in range(repeats):
                times[name].append(threaded(session, url, max(1, n // THREADS)))
        connections[name] = nginx.connections() - before
    rows.append({**_row(f"{THREADS} threads", times), "connections": connections})
    return rows


def _row(scenario: str, times: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    wall = {name: statistics.median(w for w, _ in values) for name, values in times.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in times.items()}
    return {
        "scenario": scenario,
        **wall,
        "ratio": wall["stock"] / wall["fastpool"],
        "cpu": cpu,
        "cpu_ratio": cpu["stock"] / cpu["fastpool"],
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`measure`'s rows (microseconds per request)."""
    lines = [
        (
            "| scenario | stock µs/req | fastpool µs/req | stock/fastpool "
            "| client CPU µs/req (s, f) | CPU stock/fastpool | connections (s, f) |"
        ),
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if "floor" in row:
            floor = statistics.median(row["floor"]) * 1e6
            lines.append(f"| {row['scenario']} | {floor:.1f} | {floor:.1f} | | | | |")
            continue
        conns = row.get("connections")
        conn_text = f"{conns['stock']}, {conns['fastpool']}" if conns else ""
        cpu = row["cpu"]
        lines.append(
            f"| {row['scenario']} | {row['stock'] * 1e6:.1f} | {row['fastpool'] * 1e6:.1f} "
            f"| {row['ratio']:.2f}x | {cpu['stock'] * 1e6:.1f}, {cpu['fastpool'] * 1e6:.1f} "
            f"| {row['cpu_ratio']:.2f}x | {conn_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start nginx, measure, print the table (``--requests``, ``--repeats``)."""
    from awake import cpus_kept_awake  # bench/ is on sys.path when run as a script
    from nginx_server import RUN_ROOT, NginxServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats (default 5)")
    parser.add_argument(
        "--awake",
        action="store_true",
        help="keep every CPU awake with SCHED_IDLE busy loops (bench/awake.py): no vCPU halts",
    )
    args = parser.parse_args(argv)
    # 32 threads over pool_maxsize=10 discard connections: one warning each, for both adapters.
    for logger in ("urllib3", "fastpool"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    nginx_server = NginxServer(RUN_ROOT / "nginx-adapter-bench", hosts=0)
    with nginx_server as nginx, cpus_kept_awake(args.awake):
        rows = measure(nginx, args.requests, args.repeats)
    awake = "CPUs kept awake" if args.awake else "idle CPUs may halt"
    print(f"fastpool {fastpool.__version__} ({fastpool.implementation()} core), "
          f"requests {requests.__version__}; medians of {args.repeats} repeats; {awake}")  # fmt: skip
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
