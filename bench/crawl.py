"""Crawler-grade pooling benchmarks (issue 6): crawl, scale and soak. Indicative on a shared box.

* ``crawl``: nginx's 200 loopback HTTPS hosts, 16 threads, round-robin. ``fastpool.Session``
  with its defaults vs ``requests.Session`` with its defaults: throughput ratio and the TCP
  connections nginx accepted (target: >= 3.5x, connections <= 1.2 x hosts x peak concurrency
  per host). Each host's peak concurrency is measured (threads that catch each other up share a
  host), and the connections are also given per the sum of those peaks, a stricter bound.
* ``scale``: ``--hosts`` (default 100,000) distinct host keys (127.x.y.z addresses, all served by
  one listener bound to 0.0.0.0) through ``PoolManager(max_connections=256)``: the process's
  open sockets never exceed 256, memory is flat after warm-up, the cost per request is flat.
* ``soak``: ``--requests`` (default 200,000) GETs across 32 threads against a listener that
  closes connections at random (after a response, or after reading the next request without
  answering: the keep-alive race): zero failed requests, flat memory.

``python bench/crawl.py crawl|scale|soak [--requests N] [--hosts N] [--threads N]``; each prints
one JSON line. The listener for scale and soak runs in a child process (``serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# --- a tiny keep-alive listener (child process) -------------------------------------------------
async def _handle(reader: Any, writer: Any, close_p: float, race_p: float) -> None:
    rng = random.Random()
    served = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            if served and rng.random() < race_p:
                break  # read a reused connection's request, close unanswered: the race
            served += 1
            writer.write(_RESPONSE)
            await writer.drain()
            if rng.random() < close_p:
                break  # answered, then an idle close (FIN) the client meets at checkout
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def serve(port: int, close_p: float, race_p: float) -> None:
    """Serve ``/`` keep-alive on 0.0.0.0:``port`` (any 127.x.y.z reaches it) until killed."""

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _handle(r, w, close_p, race_p), "0.0.0.0", port, backlog=4096
        )
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Listener:
    """The ``serve`` listener in a child process (a context manager)."""

    def __init__(self, close_p: float = 0.0, race_p: float = 0.0) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.args = [str(self.port), str(close_p), str(race_p)]

    def __enter__(self) -> Listener:  # noqa: PYI034 - bench helper, not subclassed
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", *self.args], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the listener did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait(10)


# --- measurements ------------------------------------------------------------------------------
def _open_fds() -> int:
    """Open sockets of this process (file descriptors that are sockets)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass  # closed meanwhile (or the listing's own descriptor)
    return count


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _threads(work: Any, n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 - counted by the caller
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    return errors


def crawl(rounds: int = 5, threads: int = 16) -> dict[str, Any]:
    """fastpool.Session vs requests.Session, defaults, 200 HTTPS hosts round-robin."""
    import requests
    from nginx_server import RUN_ROOT, NginxServer

    import fastpool

    result: dict[str, Any] = {"bench": "crawl", "threads": threads, "rounds": rounds}
    with NginxServer(RUN_ROOT / f"nginx-crawl-{os.getpid()}") as nginx:
        urls = [u + "/100b" for u in nginx.https_urls()]
        result["hosts"] = len(urls)

        def run(session: Any) -> tuple[float, int, int, dict[str, int]]:
            before = nginx.connections()
            failures = []
            # Requests in flight per host, and each host's peak: threads start on distinct
            # hosts, but a faster thread can catch a slower one up and share its host.
            lock = threading.Lock()
            inflight: dict[str, int] = dict.fromkeys(urls, 0)
            peaks: dict[str, int] = dict.fromkeys(urls, 0)

            def work(i: int) -> None:
                for n in range(rounds * len(urls) // threads):
                    url = urls[(i * (len(urls) // threads) + n) % len(urls)]
                    with lock:
                        inflight[url] += 1
                        peaks[url] = max(peaks[url], inflight[url])
                    try:
                        if session.get(url, verify=nginx.ca_bundle).status_code != 200:
                            failures.append(url)
                    finally:
                        with lock:
                            inflight[url] -= 1

            start = time.perf_counter()
            errors = _threads(work, threads)
            seconds = time.perf_counter() - start
            session.close()
            return seconds, nginx.connections() - before, len(errors) + len(failures), peaks

        order = [("requests", requests.Session), ("fastpool", fastpool.Session)]
        for name, make in order:
            seconds, connections, failed, peaks = run(make())
            done = rounds * len(urls) // threads * threads
            result[name] = {
                "seconds": round(seconds, 3),
                "req_per_s": round(done / seconds),
                "connections": connections,
                "failed": failed,
                "peak_concurrency_per_host": max(peaks.values()),
                "sum_of_host_peaks": sum(peaks.values()),
            }
        result["throughput_ratio"] = round(
            result["fastpool"]["req_per_s"] / result["requests"]["req_per_s"], 2
        )
        ours = result["fastpool"]
        # The target's bound (hosts x peak concurrency per host), and a stricter one: the sum
        # of each host's own peak (a connection per request that overlapped on a host).
        result["fastpool_connections_per_host_x_peak"] = round(
            ours["connections"] / (len(urls) * ours["peak_concurrency_per_host"]), 2
        )
        result["fastpool_connections_per_sum_of_host_peaks"] = round(
            ours["connections"] / ours["sum_of_host_peaks"], 2
        )
    return result


def _host(i: int) -> str:
    # 127.1.0.0 onwards: distinct addresses (distinct pool keys) on the loopback net
    i += 1 << 16
    return f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def scale(hosts: int = 100_000, threads: int = 8, cap: int = 256) -> dict[str, Any]:
    """``hosts`` distinct host keys through one PoolManager(max_connections=cap)."""
    import tracemalloc

    from fastpool import PoolManager

    with Listener() as listener:
        pm = PoolManager(num_pools=cap, max_connections=cap, maxsize=1, retries=False)
        fd_base = _open_fds()
        per_thread = hosts // threads
        windows: list[float] = []
        peak_fds = [0]
        peak_open = [0]
        lock = threading.Lock()
        memory: list[int] = []
        tracemalloc.start()

        def work(i: int) -> None:
            start = time.perf_counter()
            for n in range(per_thread):
                host = _host(i * per_thread + n)
                r = pm.request("GET", f"http://{host}:{listener.port}/")
                if r.data != b"ok":
                    raise AssertionError(r.data)
                if n % 500 == 499:
                    assert pm.limit is not None
                    # Under the cap's lock no dial can start, so the listing (not atomic in
                    # /proc) cannot count a socket closed and a new one opened meanwhile.
                    with pm.limit._cond:
                        fds = _open_fds() - fd_base
                    with lock:
                        peak_fds[0] = max(peak_fds[0], fds)
                        assert pm.limit is not None
                        peak_open[0] = max(peak_open[0], pm.limit.open)
                        if i == 0:
                            windows.append((time.perf_counter() - start) / 500)
                            memory.append(tracemalloc.get_traced_memory()[0] // 1024)
                            start = time.perf_counter()

        t0 = time.perf_counter()
        errors = _threads(work, threads)
        seconds = time.perf_counter() - t0
        tracemalloc.stop()
        pm.clear()
    tenth = max(1, len(windows) // 10)
    return {
        "bench": "scale",
        "hosts": per_thread * threads,
        "threads": threads,
        "max_connections": cap,
        "failed": len(errors),
        "first_error": repr(errors[0]) if errors else None,
        "seconds": round(seconds, 2),
        "peak_open_sockets": peak_fds[0],
        "peak_limit_open": peak_open[0],
        "us_per_request_first_tenth": round(1e6 * sorted(windows[:tenth])[tenth // 2], 1)
        if windows
        else None,
        "us_per_request_last_tenth": round(1e6 * sorted(windows[-tenth:])[tenth // 2], 1)
        if windows
        else None,
        "traced_kib_after_warmup": memory[tenth] if len(memory) > tenth else None,
        "traced_kib_at_end": memory[-1] if memory else None,
    }


def soak(requests_total: int = 200_000, threads: int = 32) -> dict[str, Any]:
    """GETs across ``threads`` against random closes and keep-alive races."""
    import fastpool

    with Listener(close_p=0.02, race_p=0.01) as listener:
        session = fastpool.Session()
        url = f"http://127.0.0.1:{listener.port}/"
        per_thread = requests_total // threads
        failures: list[str] = []
        rss: list[int] = []

        def work(i: int) -> None:
            for n in range(per_thread):
                try:
                    r = session.get(url)
                    if r.status_code != 200 or r.content != b"ok":
                        failures.append(f"{r.status_code} {r.content[:20]!r}")
                except Exception as e:  # noqa: BLE001 - the count is the result
                    failures.append(repr(e))
                if i == 0 and n % max(1, per_thread // 20) == 0:
                    rss.append(_rss_kib())

        t0 = time.perf_counter()
        errors = _threads(work, threads)
        seconds = time.perf_counter() - t0
        stats = session.pool_stats()
        session.close()
    done = per_thread * threads
    return {
        "bench": "soak",
        "requests": done,
        "threads": threads,
        "failed": len(failures) + len(errors),
        "first_failure": failures[0] if failures else None,
        "seconds": round(seconds, 2),
        "req_per_s": round(done / seconds),
        "retried": stats.total.retried,
        "dropped_stale": stats.total.dropped_stale,
        "created": stats.total.created,
        "rss_kib_after_warmup": rss[len(rss) // 5] if rss else None,
        "rss_kib_at_end": rss[-1] if rss else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", choices=("crawl", "scale", "soak", "serve"))
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args(argv)
    if ns.bench == "serve":
        port, close_p, race_p = ns.args
        serve(int(port), float(close_p), float(race_p))
        return
    if ns.bench == "crawl":
        out = crawl(ns.rounds, ns.threads or 16)
    elif ns.bench == "scale":
        out = scale(ns.hosts, ns.threads or 8)
    else:
        out = soak(ns.requests, ns.threads or 32)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
