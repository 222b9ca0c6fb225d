"""User-space instructions per request, counted by callgrind: a figure this noisy machine repeats.

Wall-clock ratios on a shared 2-core machine move by 10% from run to run, and their ceiling is
set by the loopback latency, which is the same for every client. The instructions a client
executes per request do not move: callgrind counts them, whatever else the machine does. Each
client runs twice under ``valgrind --tool=callgrind``, for ``--small`` and ``--large`` keep-alive
GETs of 100 bytes from nginx on loopback (after 50 unmeasured warm-up requests); the difference
divided by the difference in requests is the cost of one request, start-up excluded. The
kernel's work (the socket calls) is not counted.

The map clients (``session-map``, ``pm-map``, ``pm-light``, ``pm-light-timed``) run each count
as one map of that many requests, 64 in flight to the one host, after a map that dials every
connection; every result is checked for an error (a failed request would count as a cheap one).
``pm-light-timed`` gives each request as bench/multi.py does, ``("GET", url, {"timeout": 10.0,
"retries": False})``: a timeout the loop arms for every request.

``pycurl-perform`` is the map's reference: bench/multi.py's ``pycurl-perform-64`` loop
(pycurl's multi driven by ``perform()`` and ``select()``, libcurl's event loop in C) on 64 easy
handles, in the measured process: libcurl's, pycurl's and the Python loop's instructions
together, each body checked for its length. It needs pycurl (bench/requirements-peers.txt) and
runs by default only when pycurl is installed.

``session-objects`` sends nothing: it builds what requests' API hands back for one
``Session.map`` result (the PreparedRequest and the Response around a copy of a raw response),
the part of ``session-map``'s count no engine can save.

With ``--unique``, every request has a URL of its own (``/100b?n=<count>``), as a crawl's do:
caches keyed by the URL (its parse, its encoded target) then never answer, and the count is
what a new URL costs.

With ``--https``, the requests go to nginx's HTTPS port, verified against the bench's CA (the
managers' ``ca_certs``, the adapters' ``verify``, and ``REQUESTS_CA_BUNDLE`` for the Sessions,
as requests reads it): the count then includes OpenSSL's work in the process (about 11k a
request).

Counts move by a few thousand with things that are not the code on the path: the hash seed
(fixed here), and where the checkout is (the same code counted 1.4k apart in two directories).
Compare two versions in the same directory (a ``git worktree`` swapped in place, or one
checkout rebuilt), and over a few seeds where a difference is under 2%.

``python bench/instructions.py [--clients KEY ...] [--small N] [--large N] [--unique] [--https]`` needs valgrind
(Debian's ``valgrind`` package) and nginx (bench/nginx/run.sh installs it). About 20 s a client.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WARM_UP = 50
#: --https: the CA the measured process verifies nginx's certificate with
_CA_VARIABLE = "FASTPOOL_BENCH_CA"

#: key -> (label, the reference key its ratio is taken against, or None)
CLIENTS: dict[str, tuple[str, str | None]] = {
    "requests": ("requests.Session().get", None),
    "session": ("fastpool.Session().get", "requests"),
    "stock-send": ("stock HTTPAdapter.send + .content", None),
    "send": ("fastpool.HTTPAdapter.send + .content", "stock-send"),
    "urllib3": ("urllib3.PoolManager.request", None),
    "poolmanager": ("fastpool.PoolManager.request", "urllib3"),
    # many in flight from one thread (MAP_CONCURRENCY), one host: the multiplexed loop's paths
    "session-map": ("fastpool.Session.map, 64 in flight", None),
    "pm-map": ("fastpool.PoolManager.map, 64 in flight", None),
    "pm-light": ("fastpool.PoolManager.map(light=True), 64 in flight", None),
    # bench/multi.py's request: ("GET", url, {"timeout": ..., "retries": False})
    "pm-light-timed": ("the same, each with a timeout and retries=False", None),
    # no request sent: the objects requests' API hands back for one Session.map result
    "session-objects": ("requests' objects of a Session.map result, nothing sent", None),
    # the reference for the map: bench/multi.py's pycurl-perform-64 (libcurl's own loop in C,
    # libcurl's and pycurl's instructions counted with the Python driving them)
    "pycurl-perform": ("pycurl multi, perform() + select(), 64 in flight", None),
}
MAP_CLIENTS = frozenset(("session-map", "pm-map", "pm-light", "pm-light-timed"))
#: pm-light-timed's arguments, as bench/multi.py passes them (its TIMEOUT)
TIMED = {"timeout": 10.0, "retries": False}
MAP_CONCURRENCY = 64
#: the body of nginx's /100b, which pycurl-perform checks each answer against
_BODY_SIZE = 100


def _client(key: str, url: str) -> Callable[[str], Any]:
    """One request of client ``key`` to the URL it is given (the body is read); ``url`` is
    the first, to prepare with."""
    import requests
    import urllib3

    sys.path.insert(0, str(HERE.parent))  # this checkout's fastpool
    import fastpool

    ca = os.environ.get(_CA_VARIABLE)  # --https: the bench's CA (else the defaults)
    if key in ("requests", "session"):
        session = requests.Session() if key == "requests" else fastpool.Session()
        return lambda u: session.get(u).content
    if key == "session-objects":
        return _objects_client(url)
    if key in ("stock-send", "send"):
        adapter = requests.adapters.HTTPAdapter() if key == "stock-send" else fastpool.HTTPAdapter()
        with requests.Session() as session:
            prepared = session.prepare_request(requests.Request("GET", url))

        def send(u: str) -> Any:
            prepared.url = u
            return adapter.send(prepared, verify=ca or True).content

        return send
    manager = (urllib3.PoolManager if key == "urllib3" else fastpool.PoolManager)(ca_certs=ca)
    return lambda u: manager.request("GET", u).data


def _objects_client(url: str) -> Callable[[str], Any]:
    """What ``Session.map`` builds for one result, with nothing sent: the PreparedRequest
    (from the Session's preparer: its headers, cookie jar and hooks) and the Response (its
    headers and cookie jar, as the adapter assembles it) around a copy of a real raw response;
    held 64 at a time, as the map holds its requests in flight."""
    sys.path.insert(0, str(HERE.parent))  # this checkout's fastpool
    import fastpool
    from fastpool.response import HTTPResponse

    session = fastpool.Session()
    first = session.get(url)
    adapter = session.get_adapter(url)
    raw_state = dict(first.raw.__dict__)
    held: list[Any] = []

    def build(u: str) -> Any:
        prep = session._prepare_get(u)
        raw = HTTPResponse.__new__(HTTPResponse)
        raw.__dict__.update(raw_state)
        response = adapter._fast_response(prep, raw)
        response._content = first.content
        held.append(response)
        if len(held) == MAP_CONCURRENCY:
            held.clear()
        return response

    return build


def _map_client(key: str) -> Callable[[Iterable[str]], Any]:
    """Map client ``key`` over the URLs it is given, ``MAP_CONCURRENCY`` in flight (each body
    read)."""
    sys.path.insert(0, str(HERE.parent))  # this checkout's fastpool
    import fastpool

    if key == "session-map":
        session = fastpool.Session()
        results = lambda urls: session.map(urls, concurrency=MAP_CONCURRENCY)
        body = "content"
    else:
        manager = fastpool.PoolManager(
            maxsize=MAP_CONCURRENCY, ca_certs=os.environ.get(_CA_VARIABLE)
        )
        light = key in ("pm-light", "pm-light-timed")
        timed = key == "pm-light-timed"

        def results(urls: Iterable[str]) -> Any:
            items: Iterable[Any] = (("GET", u, TIMED) for u in urls) if timed else urls
            return manager.map(items, concurrency=MAP_CONCURRENCY, light=light)

        body = "data"

    def run(urls: Iterable[str]) -> None:
        for result in results(urls):
            if result.error is not None:
                raise result.error
            getattr(result.response, body)

    return run


def _pycurl_perform(url: str, n: int, unique: bool) -> None:
    """bench/multi.py's ``pycurl-perform-64`` loop: a map that opens every connection, then
    ``n`` requests (``unique``: each to a URL of its own); any failure raises."""
    sys.path.insert(0, str(HERE))
    from multi import _PerformLoop

    loop = _PerformLoop(MAP_CONCURRENCY, os.environ.get(_CA_VARIABLE, ""))
    try:
        for count, names in ((max(WARM_UP, 2 * MAP_CONCURRENCY), False), (n, unique)):
            urls = [f"{url}?n={i}" for i in range(count)] if names else [url]
            gc.collect()  # (as child does, below)
            result = loop.run(urls, count, 600.0, _BODY_SIZE)
            if result.failures or result.done != count:
                raise RuntimeError(f"pycurl-perform: {result.done} of {count}: {result.error}")
    finally:
        loop.close()


def child(key: str, url: str, n: int, unique: bool) -> None:
    """Run in the measured process: warm up, then ``n`` requests (``unique``: each to a URL
    of its own)."""
    if key == "pycurl-perform":
        _pycurl_perform(url, n, unique)
        return
    if unique:
        urls: Iterable[str] = (f"{url}?n={i}" for i in itertools.count())
    else:
        urls = itertools.repeat(url)
    if key in MAP_CLIENTS:
        run_map = _map_client(key)
        run_map(itertools.islice(urls, max(WARM_UP, 2 * MAP_CONCURRENCY)))  # every connection
        gc.collect()  # no collection left pending by the imports (as for the others, below)
        run_map(itertools.islice(urls, n))
        return
    run = _client(key, url)
    for u in itertools.islice(urls, WARM_UP):
        run(u)
    # The imports leave the collector's counts part way to a full collection, which then
    # falls inside one run's requests and not the other's by chance: a one-off of millions
    # of instructions that moved a client by 1-2k a request with an unrelated change. A
    # collection the requests themselves cause is counted still.
    gc.collect()
    for u in itertools.islice(urls, n):
        run(u)


def count(key: str, url: str, n: int, unique: bool = False, ca: str | None = None) -> int:
    """Instructions callgrind counted for a whole child process doing ``n`` requests (``ca``:
    the CA to verify an HTTPS ``url`` with)."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, str(Path(__file__).resolve()), "--child", key, url, str(n),
        "unique" if unique else "same",
    ]  # fmt: skip
    # A fixed hash seed: str hashes decide dict layouts, which move counts by a few thousand.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if ca is not None:
        env[_CA_VARIABLE] = env["REQUESTS_CA_BUNDLE"] = ca
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env=env
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {key} failed: {done.stderr[-500:]}")
    return int(found.group(1))


def measure(
    url: str, keys: list[str], small: int, large: int, unique: bool = False, ca: str | None = None
) -> dict[str, float]:
    """Instructions per request for each client key."""
    return {
        key: (count(key, url, large, unique, ca) - count(key, url, small, unique, ca))
        / (large - small)
        for key in keys
    }


def format_table(per_request: dict[str, float]) -> str:
    """A markdown table: instructions per request, and the ratio to the reference client."""
    lines = ["| client | instructions/request | reference/this |", "|---|---:|---:|"]
    for key, value in per_request.items():
        label, reference = CLIENTS[key]
        ratio = ""
        if reference is not None and reference in per_request:
            ratio = f"{per_request[reference] / value:.2f}x"
        lines.append(f"| {label} | {value:,.0f} | {ratio} |")
    return "\n".join(lines)


def _has_pycurl() -> bool:
    return importlib.util.find_spec("pycurl") is not None


def main(argv: list[str] | None = None) -> int:
    """Start nginx, count every client, print the table."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        child(args[1], args[2], int(args[3]), args[4] == "unique")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # (pycurl, an optional peer, only when installed: bench/requirements-peers.txt)
    default = [key for key in CLIENTS if key != "pycurl-perform" or _has_pycurl()]
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=default)
    parser.add_argument("--small", type=int, default=100, help="requests, first run (100)")
    parser.add_argument("--large", type=int, default=600, help="requests, second run (600)")
    parser.add_argument(
        "--unique", action="store_true", help="a URL of its own for every request, as a crawl"
    )
    parser.add_argument(
        "--https", action="store_true", help="over HTTPS, verified against the bench's CA"
    )
    options = parser.parse_args(args)
    if not 1 <= options.small < options.large <= 100_000:
        parser.error("need 1 <= --small < --large <= 100000")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is missing: apt-get install valgrind")
    sys.path.insert(0, str(HERE))
    from nginx_server import RUN_ROOT, NginxServer

    with NginxServer(RUN_ROOT / "nginx-instructions", hosts=0) as nginx:
        per_request = measure(
            (nginx.https_url if options.https else nginx.http_url) + "/100b",
            options.clients,
            options.small,
            options.large,
            options.unique,
            nginx.ca_bundle if options.https else None,
        )
    print(format_table(per_request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
