"""The crawl shape on a Dask cluster (issue 18): 200 loopback HTTPS hosts on nginx, on 1 worker
process against 2, with nginx on the same cores. Indicative on a shared box.

Each configuration starts its own ``LocalCluster`` (worker processes, one task thread each),
warms the workers up (imports, the Session plugin), then runs ``fastpool.dask.crawl`` over
``--rounds`` URLs per host, interleaved, ``--repeat`` times; the median run is reported with
its throughput; the first run's TCP connections per host (counted by nginx) and the most one
host got (the workers' pool counters); the later runs' connections (0: they reuse the workers'
long-lived Sessions); and how many hosts were ever served by more than one worker (0 is host
affinity). ``scheduler_noop_tasks_per_s``: tasks per second the scheduler turns around when
they do nothing (the ceiling on tasks, hence on URLs per second = that x the batch size). The same crawl with one ``fastpool.Session`` and ``--threads`` threads in this
process, no Dask, is the baseline (its first run's connections).

``python bench/dask_crawl.py [--hosts 200] [--rounds 25] [--threads 8] [--batch-size 100]
[--repeat 3] [--workers 1,2] [--scheme https|http]`` prints one JSON line. Needs nginx and
the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))


def _urls(nginx: Any, rounds: int, scheme: str) -> list[str]:
    bases = nginx.https_urls() if scheme == "https" else nginx.http_urls()
    return [f"{base}/100b" for _ in range(rounds) for base in bases]


def _baseline(nginx: Any, urls: list[str], threads: int, verify: Any) -> dict[str, Any]:
    """The same URLs with one fastpool.Session and ``threads`` threads here, no Dask."""
    import fastpool

    session = fastpool.Session()
    position = iter(range(len(urls)))
    lock = threading.Lock()
    failed = [0]

    def work() -> None:
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                return
            try:
                # verify per request: REQUESTS_CA_BUNDLE would override session.verify
                if session.get(urls[i], timeout=30, verify=verify).status_code != 200:
                    failed[0] += 1
            except Exception:  # noqa: BLE001 - counted, the run goes on
                failed[0] += 1

    before = nginx.connections()
    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    seconds = time.perf_counter() - started
    connections = nginx.connections() - before
    session.close()
    return {"seconds": seconds, "connections": connections, "failed": failed[0]}


def _noop(i: int) -> int:
    return i


def _scheduler_probe(client: Any, tasks: int = 2000) -> float:
    """Tasks per second this scheduler turns around when the tasks do nothing: the crawl's
    submission pattern (pinned to a worker, not pure), all submitted at once."""
    from distributed import wait

    workers = sorted(client.nthreads())
    started = time.perf_counter()
    futures = [
        client.submit(_noop, i, workers=[workers[i % len(workers)]], pure=False)
        for i in range(tasks)
    ]
    wait(futures)
    seconds = time.perf_counter() - started
    del futures
    return tasks / seconds


def _cluster_runs(
    nginx: Any, urls: list[str], workers: int, args: argparse.Namespace, verify: Any
) -> dict[str, Any]:
    from distributed import Client

    import fastpool.dask as fd
    from fastpool.stats import merge

    runs = []
    started = time.perf_counter()
    with fd.local_cluster(workers) as cluster, Client(cluster, direct_to_workers=True) as client:
        client.wait_for_workers(workers, timeout=120)
        ready = time.perf_counter() - started
        settings = {"verify": verify}
        name = fd.register(client, settings, args.threads)
        client.run(importlib.import_module, "fastpool.dask")  # imports, once per worker

        def created() -> dict[tuple[str, str], int]:
            # Connections opened per (worker, origin), from each worker's own pool counters.
            return {
                (worker, h.origin): h.created
                for worker, st in fd.cluster_stats(client, name).items()
                for h in st.hosts
            }

        for _ in range(args.repeat):
            before_nginx = nginx.connections()
            before = created()
            t0 = time.perf_counter()
            job = fd.crawl(
                client, urls, settings=settings, threads=args.threads,
                batch_size=args.batch_size, timeout=30,
            )  # fmt: skip
            results = list(job)
            seconds = time.perf_counter() - t0
            connections = nginx.connections() - before_nginx
            after = created()
            per_worker = fd.cluster_stats(client, name)
            per_host = Counter[str]()
            for key, n in after.items():
                per_host[key[1]] += n - before.get(key, 0)
            # Affinity over the cluster's life: the workers that ever opened a host's connections.
            owners: dict[str, set[str]] = {}
            for worker, origin in after:
                owners.setdefault(origin, set()).add(worker)
            runs.append(
                {
                    "seconds": seconds,
                    "req_per_s": len(urls) / seconds,
                    "connections": connections,
                    "max_connections_one_host": max(per_host.values(), default=0),
                    "hosts_on_several_workers": sum(1 for w in owners.values() if len(w) > 1),
                    "failed": sum(1 for r in results if r.error is not None),
                    "results": len(results),
                    "tasks": job.submitted,
                    "hosts_per_worker": sorted(job.hosts_per_worker.values()),
                    "advice": job.advice(merge(per_worker.values())),
                }
            )
        noop_rate = _scheduler_probe(client)
    median = sorted(runs, key=lambda run: run["req_per_s"])[len(runs) // 2]
    cold = runs[0]  # the first crawl opens the connections; later ones reuse the workers' pools
    return {
        "workers": workers,
        "cluster_ready_s": round(ready, 2),
        "req_per_s": round(median["req_per_s"]),
        "req_per_s_runs": [round(run["req_per_s"]) for run in runs],
        "seconds": round(median["seconds"], 3),
        "first_run_connections": cold["connections"],
        "first_run_connections_per_host": round(cold["connections"] / args.hosts, 2),
        "first_run_max_connections_one_host": cold["max_connections_one_host"],
        "first_run_req_per_s": round(cold["req_per_s"]),
        "later_runs_connections": [run["connections"] for run in runs[1:]],
        "hosts_on_several_workers": median["hosts_on_several_workers"],
        "hosts_per_worker": median["hosts_per_worker"],
        "tasks": median["tasks"],
        "tasks_per_s": round(median["tasks"] / median["seconds"], 1),
        "scheduler_noop_tasks_per_s": round(noop_rate),
        "failed": median["failed"],
        "results": median["results"],
        "advice": median["advice"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=25, help="URLs per host (default 25)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--scheme", choices=("https", "http"), default="https")
    args = parser.parse_args(argv)
    from nginx_server import RUN_ROOT, NginxServer

    result: dict[str, Any] = {
        "bench": "dask_crawl",
        "hosts": args.hosts,
        "rounds": args.rounds,
        "threads_per_worker": args.threads,
        "batch_size": args.batch_size,
        "scheme": args.scheme,
        "cores": os.cpu_count(),
    }
    with NginxServer(RUN_ROOT / f"nginx-dask-{os.getpid()}", hosts=args.hosts) as nginx:
        urls = _urls(nginx, args.rounds, args.scheme)
        verify: Any = nginx.ca_bundle if args.scheme == "https" else True
        result["urls"] = len(urls)
        base = [_baseline(nginx, urls, args.threads, verify) for _ in range(args.repeat)]
        median = sorted(base, key=lambda run: run["seconds"])[len(base) // 2]
        result["no_dask"] = {
            "req_per_s": round(len(urls) / median["seconds"]),
            "req_per_s_runs": [round(len(urls) / run["seconds"]) for run in base],
            "connections_per_host": round(base[0]["connections"] / args.hosts, 2),
            "failed": median["failed"],
        }
        for workers in (int(n) for n in args.workers.split(",")):
            result[f"workers_{workers}"] = _cluster_runs(nginx, urls, workers, args, verify)
    counts = [int(n) for n in args.workers.split(",")]
    if len(counts) >= 2:
        first, last = result[f"workers_{counts[0]}"], result[f"workers_{counts[-1]}"]
        result["speedup"] = round(last["req_per_s"] / first["req_per_s"], 2)
    result["repeat"] = args.repeat
    print(json.dumps(result))


if __name__ == "__main__":
    main()
