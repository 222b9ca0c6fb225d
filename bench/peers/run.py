"""fastpool side by side with its peers on nginx over loopback: req/s, ratios, connections.

``python bench/peers/run.py [--quick] [--shapes KEY ...] [--clients KEY ...]`` starts nginx
(bench/nginx_server.py, 1 worker, 200 crawl addresses), runs every client on every shape and
stops nginx by its pid. Per shape, each client is opened once, warmed up, then measured in
``--repeats`` bounded runs (``--requests`` requests or ``--seconds`` seconds, whichever comes
first), interleaved across the clients in a rotating order so load noise meets all of them
alike. Medians; ratios against requests' default Session in the same run; new connections from
nginx's stub_status ``accepts``. Writes bench/results/peers.md and peers.png (and the raw
numbers to bench/.run/peers.json; ``--out DIR`` elsewhere). ``--awake`` keeps every CPU out of
halt while measuring (bench/awake.py). Install the peers first:
``pip install -r bench/requirements-peers.txt`` (niquests gets its own venv, made here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
# This folder's modules, bench/ (nginx_server), and this checkout's fastpool.
sys.path[:0] = [str(HERE), str(BENCH), str(BENCH.parent)]

from awake import cpus_kept_awake
from clients import BASELINE, Client, all_clients, version_of
from measure import HUNG, quiet_pool_logs
from nginx_server import FILES, RUN_ROOT, NginxServer

RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Shape:
    """A workload: ``threads`` workers GET ``path`` over ``scheme`` from ``hosts`` hosts
    (0: 127.0.0.1 only; else 127.0.0.2 ... round-robin)."""

    key: str
    title: str
    scheme: str
    path: str
    threads: int
    hosts: int = 0

    def urls(self, nginx: NginxServer) -> list[str]:
        if self.hosts:
            bases = nginx.https_urls() if self.scheme == "https" else nginx.http_urls()
            return [base + self.path for base in bases[: self.hosts]]
        base = nginx.https_url if self.scheme == "https" else nginx.http_url
        return [base + self.path]

    @property
    def expected(self) -> int:
        return FILES[self.path.lstrip("/")]


SHAPES = [
    Shape("1t-http-100b", "1 thread, keep-alive, HTTP, 100 B", "http", "/100b", 1),
    Shape("1t-https-100b", "1 thread, keep-alive, HTTPS, 100 B", "https", "/100b", 1),
    Shape("1t-http-64k", "1 thread, keep-alive, HTTP, 64 KiB", "http", "/64k", 1),
    Shape("1t-https-64k", "1 thread, keep-alive, HTTPS, 64 KiB", "https", "/64k", 1),
    Shape("8t-http-100b", "8 threads, 1 host, HTTP, 100 B", "http", "/100b", 8),
    Shape("32t-http-100b", "32 threads, 1 host, HTTP, 100 B", "http", "/100b", 32),
    *(
        Shape(
            f"crawl{hosts}-{scheme}",
            f"crawl: {hosts} hosts round-robin, 16 threads, {scheme.upper()}, 100 B",
            scheme,
            "/100b",
            16,
            hosts,
        )
        for scheme in ("http", "https")
        for hosts in (5, 50, 200)
    ),
]


@dataclass(frozen=True)
class Budget:
    """Bounds of one run and of the warm-up; ``repeats`` measured runs per client and shape."""

    repeats: int
    seconds: float
    requests: int
    warmup_seconds: float
    timeout: float  # per request; a worker busy 1.5x this past a run's end is "hung"


FULL = Budget(repeats=3, seconds=1.0, requests=50_000, warmup_seconds=0.5, timeout=10.0)
QUICK = Budget(repeats=3, seconds=0.05, requests=2_000, warmup_seconds=0.05, timeout=2.5)


def measure_shape(
    shape: Shape, clients: list[Client], nginx: NginxServer, budget: Budget, ca_bundle: str
) -> dict[str, dict[str, Any]]:
    """Open, warm up, measure (interleaved, rotating order) and close every client."""
    urls = shape.urls(nginx)
    out: dict[str, dict[str, Any]] = {c.key: {"runs": [], "error": ""} for c in clients}
    live: list[Client] = []
    for client in clients:
        try:
            client.open(ca_bundle, budget.timeout)
        except Exception as exc:  # noqa: BLE001 - reported as a failed client, not dropped
            out[client.key]["error"] = f"open: {type(exc).__name__}: {exc}"[:300]
            continue
        out[client.key]["versions"] = client.versions()
        live.append(client)
    # The warm-up visits every host at least twice (bounded in time): pools fill, caches warm.
    warmup_requests = max(20, 2 * len(urls), 4 * shape.threads)
    for client in live:
        entry = out[client.key]
        try:
            entry["warmup"] = _run(
                client, shape, urls, nginx, warmup_requests, budget.warmup_seconds
            )
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"warm-up: {type(exc).__name__}: {exc}"[:300]
        else:
            if entry["warmup"]["error"].startswith(HUNG):
                entry["error"] = f"warm-up: {entry['warmup']['error']}"
    for repeat in range(budget.repeats):
        shift = repeat % len(live) if live else 0
        for client in live[shift:] + live[:shift]:
            entry = out[client.key]
            if entry["error"]:
                continue
            try:
                run = _run(client, shape, urls, nginx, budget.requests, budget.seconds)
            except Exception as exc:  # noqa: BLE001
                entry["error"] = f"run: {type(exc).__name__}: {exc}"[:300]
                continue
            entry["runs"].append(run)
            if run["error"].startswith(HUNG):  # its threads still hang: no more runs of it
                entry["error"] = f"run {len(entry['runs'])}: {run['error']}"
    for client in live:
        try:
            client.close()
        except Exception as exc:  # noqa: BLE001
            out[client.key]["error"] = out[client.key]["error"] or f"close: {exc}"[:300]
    return out


def _run(
    client: Client, shape: Shape, urls: list[str], nginx: NginxServer, requests: int, seconds: float
) -> dict[str, Any]:
    before = nginx.connections()
    result = client.run(urls, shape.threads, requests, seconds, shape.expected)
    return {**result.as_dict(), "connections": nginx.connections() - before}


def machine() -> dict[str, str]:
    """What the report says about the machine and the software under the clients."""
    import platform
    import ssl
    import subprocess

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from nginx_server import find_nginx

    binary = find_nginx()
    nginx_version = ""
    if binary:
        nginx_version = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, check=False
        ).stderr
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model or platform.processor(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "nginx": nginx_version.strip().removeprefix("nginx version: "),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 0.05 s runs, under a minute"
    )
    parser.add_argument(
        "--shapes", nargs="+", metavar="KEY", choices=[s.key for s in SHAPES], help="default: all"
    )
    parser.add_argument("--clients", nargs="+", metavar="KEY", help="default: all")
    parser.add_argument("--repeats", type=int, help="measured runs per client and shape (3)")
    parser.add_argument("--seconds", type=float, help="time bound of one run (1.0; quick 0.05)")
    parser.add_argument("--requests", type=int, help="count bound of one run (50000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where peers.md/.png go")
    parser.add_argument("--note", default="", help="a line for the report (e.g. 'quiet machine')")
    parser.add_argument(
        "--awake",
        action="store_true",
        help="keep every CPU awake with SCHED_IDLE busy loops (bench/awake.py): no vCPU halts",
    )
    args = parser.parse_args(argv)
    if args.awake:
        awake_note = "CPUs kept awake with SCHED_IDLE busy loops (`--awake`, bench/awake.py)."
        args.note = f"{awake_note} {args.note}".strip()
    budget = QUICK if args.quick else FULL
    budget = Budget(
        repeats=args.repeats or budget.repeats,
        seconds=args.seconds or budget.seconds,
        requests=args.requests or budget.requests,
        warmup_seconds=budget.warmup_seconds,
        timeout=budget.timeout,
    )
    if budget.repeats < 1 or not 0 < budget.seconds <= 60 or not 1 <= budget.requests <= 10**7:
        parser.error("--repeats >= 1, --seconds in (0, 60], --requests in 1..10^7")
    shapes = [s for s in SHAPES if not args.shapes or s.key in args.shapes]
    clients = all_clients(RUN_ROOT)
    if args.clients:
        unknown = set(args.clients) - {c.key for c in clients}
        if unknown:
            parser.error(f"unknown clients {sorted(unknown)}; known: {[c.key for c in clients]}")
        clients = [c for c in clients if c.key in args.clients or c.key == BASELINE]

    quiet_pool_logs()
    started = time.time()
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    run_dir = RUN_ROOT / f"nginx-peers-{os.getpid()}"
    nginx_server = NginxServer(run_dir, hosts=max([s.hosts for s in shapes] + [0]), workers=1)
    with nginx_server as nginx, cpus_kept_awake(args.awake):
        for shape in shapes:
            t0 = time.monotonic()
            results[shape.key] = measure_shape(shape, clients, nginx, budget, nginx.ca_bundle)
            print(f"peers: {shape.key} done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    shutil.rmtree(run_dir, ignore_errors=True)

    versions = {"matplotlib (chart)": version_of("matplotlib")}
    for per_client in results.values():
        for entry in per_client.values():
            versions.update(entry.get("versions", {}))
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "quick": args.quick,
        "note": args.note,
        "budget": budget.__dict__,
        "load": {"before": load_before, "after": os.getloadavg()},
        "machine": machine(),
        "versions": versions,
        "shapes": [{"key": s.key, "title": s.title, "threads": s.threads} for s in shapes],
        "clients": [{"key": c.key, "name": c.name, "note": c.note} for c in clients],
        "baseline": BASELINE,
        "results": results,
    }
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    (RUN_ROOT / "peers.json").write_text(json.dumps(report, indent=1))

    from chart import write_chart
    from report import write_markdown

    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(report, args.out / "peers.md")
    write_chart(report, args.out / "peers.png")
    print(
        f"peers: wrote {args.out / 'peers.md'} and peers.png in {report['seconds']} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
