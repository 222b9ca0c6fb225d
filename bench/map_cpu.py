"""CPU time per request of ``PoolManager.map(light=True)`` in the crawl shape, two checkouts A/B.

bench/multi.py reports the process's CPU per request beside the throughput, with other clients
in the same process and runs of a few seconds. For a change worth a microsecond (a system call
saved), this runs only the one client, longer, in a fresh process per run, and alternates the
checkouts given so that the machine's drift meets them alike; it reports the medians of
requests a second and of user and system CPU microseconds a request (``getrusage``: the kernel's
work included, which callgrind's counts leave out).

Each run: a ``fastpool.PoolManager(num_pools=464, maxsize=64)``, one warm-up map over the hosts
(every host twice), then one map of ``--requests`` requests round the hosts, 64 in flight, each
given as bench/multi.py gives it, ``("GET", url, {"timeout": 10.0, "retries": False})``; every
result is checked.

    python bench/map_cpu.py [--trees DIR ...] [--runs N] [--requests N] [--https] [--hosts N]
        [--pycurl]

With ``--pycurl``, bench/multi.py's ``pycurl-perform-64`` (pycurl's multi driven by
``perform()`` and ``select()``, 64 easy handles) runs the same requests in the same turns, each
body checked for its length: the reference the map is measured against.

needs nginx started by ``bench/nginx/run.sh start`` (its ports from ``bench/.run/nginx``). Each
tree must have its compiled cores built in place (or set ``FASTPOOL_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INFO = HERE / ".run" / "nginx" / "info.json"

_CHILD = """
import itertools, resource, sys, time
sys.path.insert(0, {tree!r})
import fastpool
bases = [f"{scheme}://127.0.0.{{i}}:{port}/100b" for i in range(2, 2 + {hosts})]
kw = {{"ca_certs": {ca!r}}} if {scheme!r} == "https" else {{}}
manager = fastpool.PoolManager(num_pools=64 + 2 * {hosts}, maxsize=64, **kw)
def items(n):
    for url in itertools.islice(itertools.cycle(bases), n):
        yield ("GET", url, {{"timeout": 10.0, "retries": False}})
for r in manager.map(items(2 * {hosts}), concurrency=64, light=True):
    assert r.error is None, r.error
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for r in manager.map(items({n}), concurrency=64, light=True):
    assert r.error is None and r.response.status == 200, r.error
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print({n} / (t1 - t0), (r1.ru_utime - r0.ru_utime) / {n} * 1e6, (r1.ru_stime - r0.ru_stime) / {n} * 1e6)
"""

#: ``--pycurl``: bench/multi.py's pycurl-perform-64 (pycurl's multi, ``perform()`` + ``select()``)
#: over the same URLs, measured alike
_PYCURL_CHILD = """
import resource, sys, time
sys.path.insert(0, {bench!r})
from multi import _PerformLoop
bases = [f"{scheme}://127.0.0.{{i}}:{port}/100b" for i in range(2, 2 + {hosts})]
loop = _PerformLoop(64, {ca!r})
def run(n):
    result = loop.run(bases, n, 600.0, 100)
    assert result.failures == 0 and result.done == n, result.error
run(2 * {hosts})
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
run({n})
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print({n} / (t1 - t0), (r1.ru_utime - r0.ru_utime) / {n} * 1e6, (r1.ru_stime - r0.ru_stime) / {n} * 1e6)
"""
PYCURL = "pycurl-perform-64"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trees", nargs="+", default=[str(HERE.parent)], metavar="DIR")
    parser.add_argument("--runs", type=int, default=6, help="runs per tree, alternated (6)")
    parser.add_argument("--requests", type=int, default=100_000, help="per run (100000)")
    parser.add_argument("--hosts", type=int, default=200, help="crawl hosts (200)")
    parser.add_argument("--https", action="store_true", help="nginx's HTTPS port")
    parser.add_argument(
        "--pycurl", action="store_true", help="also pycurl-perform-64, alternated alike"
    )
    args = parser.parse_args()
    if not INFO.exists():
        sys.exit(f"no {INFO}: start nginx first (bench/nginx/run.sh start)")
    info = json.loads(INFO.read_text())
    scheme = "https" if args.https else "http"
    port = info["https_port" if args.https else "http_port"]
    hosts = min(args.hosts, info["hosts"])
    clients = [*args.trees, *([PYCURL] if args.pycurl else [])]
    runs: dict[str, list[tuple[float, float, float]]] = {client: [] for client in clients}
    for _ in range(args.runs):
        for tree in clients:
            template, where = (
                (_PYCURL_CHILD, str(HERE))
                if tree == PYCURL
                else (_CHILD, str(Path(tree).resolve()))
            )
            code = template.format(
                tree=where,
                bench=where,
                scheme=scheme,
                port=port,
                hosts=hosts,
                ca=info["ca_bundle"],
                n=args.requests,
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                check=False,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if out.returncode:
                sys.exit(f"{tree}: the run failed:\n{out.stderr}")
            rate, user, system = map(float, re.findall(r"\S+", out.stdout)[-3:])
            runs[tree].append((rate, user, system))
    print(f"{scheme} crawl over {hosts} hosts, {args.requests} requests a run, {args.runs} runs:")
    for tree, got in runs.items():
        rate, user, system = (statistics.median(x[i] for x in got) for i in range(3))
        cpu = statistics.median(x[1] + x[2] for x in got)
        print(
            f"  {tree}: {rate:,.0f} req/s, CPU {cpu:.1f} µs a request "
            f"(user {user:.1f}, system {system:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
