"""fastpool.Session against requests.Session on nginx over loopback (ratios in the same run).

Scenarios (each measured for both sessions in one process, interleaved, repeated; medians):

Times are wall-clock medians; the CPU ratio (this process's CPU time per request) is steadier
on a shared machine.

- ``get 100 B``: ``Session().get(url).content``, one thread, keep-alive, default settings and
  ``trust_env`` on (targets: >= 4x requests' throughput, within 2.2x of the raw-socket floor);
- ``32 threads``: 32 threads sharing one Session with its defaults, one host (targets: >= 3x
  requests' throughput, no "pool is full" discards, connections <= threads);
- ``crawl``: one thread visiting 200 hosts round-robin, defaults (fastpool keeps 256 host
  pools, requests 10): time per request and connections opened;
- ``idle memory``: the tracemalloc size of an idle Session holding 1,000 warm host pools (each
  with one idle connection), both sessions sized for 1,000 pools (target: within 2x of
  requests'). A private nginx listens on 250 loopback addresses x 4 ports for it.

``python bench/session.py [--requests N] [--repeats R] [--hosts H] [--awake]`` prints the table
(``--awake``: no virtual CPU halts between packets, see ``bench/awake.py``); the
pytest-benchmark versions are in ``bench/test_bench_session.py``. On a shared machine the
figures are indicative only.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import logging
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import requests
import requests.adapters

if __name__ == "__main__":  # run from a source checkout: import this tree's fastpool
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from floor import floor_seconds_per_request
from nginx_server import RUN_ROOT, find_nginx

import fastpool

SESSIONS: dict[str, Callable[..., requests.Session]] = {
    "requests": requests.Session,
    "fastpool": fastpool.Session,
}
THREADS = 32
MEMORY_POOLS = 1000
_JOIN_SECONDS = 120.0


# --- single thread -----------------------------------------------------------------------------
def get_call(session: requests.Session, url: str) -> Callable[[], None]:
    """One ``session.get(url)`` with the body read (the connection goes back to its pool)."""

    def run() -> None:
        session.get(url).content  # noqa: B018 - reading the body is the point

    return run


Timing = tuple[float, float]  # (wall-clock, CPU of this process) seconds per request


def crawl_call(session: requests.Session, urls: list[str]) -> Callable[[], None]:
    """Each call GETs the next of ``urls``, round-robin (the body is read)."""
    visit = itertools.cycle(urls)

    def run() -> None:
        session.get(next(visit)).content  # noqa: B018

    return run


def per_request(run: Callable[[], None], n: int) -> Timing:
    """Wall-clock and CPU seconds per call of ``run`` over ``n`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        run()
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


# --- threads -----------------------------------------------------------------------------------
class DiscardCounter(logging.Handler):
    """Counts "Connection pool is full, discarding connection" warnings (urllib3's and ours)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage():
            self.count += 1

    def __enter__(self) -> DiscardCounter:  # noqa: PYI034
        for name in ("urllib3", "fastpool"):
            logger = logging.getLogger(name)
            logger.addHandler(self)
            logger.propagate = False  # counted here, not printed 1000 times
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name in ("urllib3", "fastpool"):
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.propagate = True


def threaded(session: requests.Session, url: str, n: int, threads: int = THREADS) -> Timing:
    """Wall-clock and CPU seconds per request: ``threads`` threads, ``n`` GETs each, one Session.

    Every thread is joined by one deadline; an error or a thread still running raises.
    """
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def work() -> None:
        try:
            start.wait(_JOIN_SECONDS)
            for _ in range(n):
                session.get(url).content  # noqa: B018
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start.wait(_JOIN_SECONDS)
    wall, cpu = time.perf_counter(), time.process_time()
    deadline = wall + _JOIN_SECONDS
    for thread in pool:
        thread.join(max(0.0, deadline - time.perf_counter()))
    elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
    if errors or any(thread.is_alive() for thread in pool):
        raise RuntimeError(f"threaded run failed: {errors[:1] or 'a thread did not finish'}")
    return elapsed / (n * threads), used / (n * threads)


# --- idle memory -------------------------------------------------------------------------------
MEMORY_NGINX_CONF = """\
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log warn;
daemon on;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path {run_dir}/tmp;
    proxy_temp_path {run_dir}/tmp;
    fastcgi_temp_path {run_dir}/tmp;
    uwsgi_temp_path {run_dir}/tmp;
    scgi_temp_path {run_dir}/tmp;
    server {{
{listens}
        location / {{ default_type text/plain; return 200 "ok"; }}
    }}
}}
"""


class MemoryNginx:
    """A private nginx answering ``ok`` on ``hosts`` loopback addresses x ``ports`` ports."""

    def __init__(self, hosts: int = 250, ports: int = 4) -> None:
        if not 1 <= hosts <= 250 or not 1 <= ports <= 16:
            raise ValueError(f"hosts must be in 1..250 and ports in 1..16, got {hosts}, {ports}")
        self.run_dir = RUN_ROOT / f"nginx-session-memory-{os.getpid()}"
        self.hosts, self.ports = hosts, ports
        self.port_numbers: list[int] = []

    def urls(self) -> list[str]:
        """One URL per origin: every address on every port."""
        return [
            f"http://127.0.0.{i}:{port}/"
            for port in self.port_numbers
            for i in range(2, self.hosts + 2)
        ]

    def __enter__(self) -> MemoryNginx:  # noqa: PYI034
        import socket

        binary = find_nginx()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        for _ in range(self.ports):
            with socket.socket() as sock:  # free ports: bind, read, release
                sock.bind(("127.0.0.1", 0))
                self.port_numbers.append(sock.getsockname()[1])
        listens = "\n".join(
            f"        listen 127.0.0.{i}:{port};"
            for port in self.port_numbers
            for i in range(2, self.hosts + 2)
        )
        conf = self.run_dir / "nginx.conf"
        conf.write_text(MEMORY_NGINX_CONF.format(run_dir=self.run_dir, listens=listens))
        subprocess.run([binary, "-c", str(conf), "-p", str(self.run_dir)], check=True,
                       capture_output=True, timeout=30)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.2", self.port_numbers[0]), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        pid_file = self.run_dir / "nginx.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 15)  # our own nginx master, by its pid
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and pid_file.exists():
                time.sleep(0.05)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def sized_session(name: str, pools: int) -> requests.Session:
    """A Session of kind ``name`` whose http adapter keeps ``pools`` host pools."""
    if name == "fastpool":
        return fastpool.Session(pool_connections=pools)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=pools))
    return session


def idle_memory(name: str, urls: list[str]) -> int:
    """Bytes (tracemalloc) an idle Session holds after one GET to each URL (one pool each)."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        session = sized_session(name, len(urls))
        for url in urls:
            session.get(url).content  # noqa: B018
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    session.close()
    return used


def measure_memory(hosts: int = 250, ports: int = 4) -> dict[str, Any]:
    """The idle-memory row: bytes per session kind and the fastpool/requests ratio."""
    with MemoryNginx(hosts, ports) as server:
        urls = server.urls()
        for name in SESSIONS:  # warm module-level caches outside the measurement
            idle_memory(name, urls[:20])
        used = {name: idle_memory(name, urls) for name in SESSIONS}
    return {"scenario": f"idle memory, {len(urls)} warm pools", **used,
            "ratio": used["fastpool"] / used["requests"], "unit": "bytes"}  # fmt: skip


# --- the table ---------------------------------------------------------------------------------
def measure(nginx: Any, n: int = 2000, repeats: int = 5) -> list[dict[str, Any]]:
    """The single-thread and 32-thread rows against ``nginx`` (bench/nginx_server)."""
    url = nginx.http_url + "/100b"
    runs = {name: get_call(make(), url) for name, make in SESSIONS.items()}
    for run in runs.values():
        per_request(run, 100)  # warm up: connect, fill caches
    times: dict[str, list[Timing]] = {name: [] for name in SESSIONS}
    floors: list[float] = []
    for _ in range(repeats):
        for name, run in runs.items():  # interleaved, so both meet the same noise
            times[name].append(per_request(run, n))
        floors.append(floor_seconds_per_request("127.0.0.1", nginx.http_port, "/100b", n))
    single = _row("get 100 B, 1 thread", times)
    single["floor"] = statistics.median(floors)
    rows = [single]

    times = {name: [] for name in SESSIONS}
    extra: dict[str, dict[str, int]] = {"connections": {}, "discards": {}}
    for name, make in SESSIONS.items():
        before = nginx.connections()
        with make() as session, DiscardCounter() as discards:
            for _ in range(repeats):
                times[name].append(threaded(session, url, max(1, n // THREADS)))
        extra["connections"][name] = nginx.connections() - before
        extra["discards"][name] = discards.count
    rows.append({**_row(f"{THREADS} threads, 1 host", times), **extra})
    if nginx.hosts:
        rows.append(measure_crawl(nginx, repeats))
    return rows


def measure_crawl(nginx: Any, repeats: int = 3) -> dict[str, Any]:
    """One thread visiting nginx's crawl hosts round-robin, default settings: time per request
    and the connections opened (requests keeps 10 host pools, so it reconnects every time)."""
    urls = [base + "/100b" for base in nginx.http_urls()]
    times: dict[str, list[Timing]] = {name: [] for name in SESSIONS}
    connections: dict[str, int] = {}
    for name, make in SESSIONS.items():
        before = nginx.connections()
        with make() as session:
            run = crawl_call(session, urls)
            for _ in range(repeats):
                times[name].append(per_request(run, len(urls)))
        connections[name] = nginx.connections() - before
    return {**_row(f"crawl {len(urls)} hosts x {repeats}", times), "connections": connections}


def _row(scenario: str, times: dict[str, list[Timing]]) -> dict[str, Any]:
    """Medians of wall-clock (``requests``, ``fastpool``) and CPU time, and their ratios."""
    wall = {name: statistics.median(t[0] for t in values) for name, values in times.items()}
    cpu = {name: statistics.median(t[1] for t in values) for name, values in times.items()}
    return {"scenario": scenario, **wall, "ratio": wall["requests"] / wall["fastpool"],
            "cpu_ratio": cpu["requests"] / cpu["fastpool"]}  # fmt: skip


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows (µs per request, or kB for memory)."""
    lines = [
        (
            "| scenario | requests | fastpool | ratio | CPU ratio | fastpool/floor | conns (r, f) "
            "| discards (r, f) |"
        ),
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        if row.get("unit") == "bytes":
            values = f"{row['requests'] / 1024:.0f} kB | {row['fastpool'] / 1024:.0f} kB"
            ratio = f"{row['ratio']:.2f}x fastpool/requests"
        else:
            values = f"{row['requests'] * 1e6:.0f} µs | {row['fastpool'] * 1e6:.0f} µs"
            ratio = f"{row['ratio']:.2f}x requests/fastpool"
        cpu = f"{row['cpu_ratio']:.2f}x" if "cpu_ratio" in row else ""
        floor = f"{row['fastpool'] / row['floor']:.2f}x" if "floor" in row else ""
        pairs = [
            f"{row[key]['requests']}, {row[key]['fastpool']}" if key in row else ""
            for key in ("connections", "discards")
        ]
        lines.append(
            f"| {row['scenario']} | {values} | {ratio} | {cpu} | {floor} | {' | '.join(pairs)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start nginx, measure, print the table."""
    from awake import cpus_kept_awake
    from nginx_server import NginxServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats (default 5)")
    parser.add_argument("--hosts", type=int, default=250, help="memory hosts x 4 ports (250)")
    parser.add_argument(
        "--awake",
        action="store_true",
        help="keep every CPU awake with SCHED_IDLE busy loops (bench/awake.py): no vCPU halts",
    )
    args = parser.parse_args(argv)
    nginx_server = NginxServer(RUN_ROOT / f"nginx-session-bench-{os.getpid()}", hosts=200)
    with nginx_server as nginx, cpus_kept_awake(args.awake):
        rows = measure(nginx, args.requests, args.repeats)
    rows.append(measure_memory(args.hosts))
    awake = "CPUs kept awake" if args.awake else "idle CPUs may halt"
    print(f"fastpool {fastpool.__version__} ({fastpool.implementation()} core), "
          f"requests {requests.__version__}; medians of {args.repeats} repeats; {awake}; "
          f"REQUESTS_CA_BUNDLE={'set' if os.environ.get('REQUESTS_CA_BUNDLE') else 'unset'}")  # fmt: skip
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
