"""LRUMap and PrefixRouter timings for the cores ratio table.

``measure_lru()`` and ``measure_prefix()`` return rows of ``(name, backend, ns_per_op,
reference_name, reference_ns_per_op)``, medians of ``timeit`` repeats, all measured in the same
run. The timed statement is the operation itself (``m[key]``, ``match(url)``), with no wrapper
function around it, so the ratios are not diluted by call overhead:

- LRUMap vs urllib3's ``RecentlyUsedContainer`` (maxsize 10, keys ``(scheme, host, port)``
  tuples, no ``dispose_func``): a get that hits, and a put of a new key that evicts.
- PrefixRouter.match vs ``requests.Session.get_adapter`` with the same mounts: 20 mounts
  (``http://``, ``https://`` and 18 host prefixes) for a URL under a mounted host and for one
  that falls through to ``https://``; then 2, 100 and 10,000 mounts (the match should stay flat).

Run ``python bench/cores_lru_prefix.py`` for a table.
"""

from __future__ import annotations

import functools
import importlib
import statistics
import timeit
from typing import Any, Callable

import requests
from urllib3._collections import RecentlyUsedContainer

Row = tuple[str, str, float, str, float]

LRU_MAXSIZE = 10  # requests' pool_connections default


def backends(core: str, cls_name: str) -> list[tuple[str, type]]:
    """The classes to time: compiled (when built) and pure, as ``(backend, class)``."""
    found = []
    for backend, suffix in (("cython", "_c"), ("python", "_py")):
        try:
            module = importlib.import_module(f"fastpool.{core}{suffix}")
        except ImportError:
            continue
        found.append((backend, getattr(module, cls_name)))
    return found


Case = tuple[str, dict[str, Any], int, int]  # (statement, globals, ops per statement, number)


def ns_per_op(cases: dict[str, Case], repeat: int = 7) -> dict[str, float]:
    """Median nanoseconds per operation of each case.

    The repeats of all cases are interleaved (ours, reference, ours, ...), so a load spike on
    a shared machine hits both sides of a ratio alike.
    """
    timers = {
        name: (timeit.Timer(stmt, globals=env), ops, n)
        for name, (stmt, env, ops, n) in cases.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (timer, ops, n) in timers.items():
            samples[name].append(timer.timeit(n) / (n * ops) * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def unrolled(stmt: str, env: dict[str, Any], times: int = 100) -> Callable[[], None]:
    """A function running ``stmt`` ``times`` times in straight-line code, for pytest-benchmark.

    Its per-call overhead (about 100 ns) would otherwise swamp operations of about 50 ns.
    """
    body = "".join(f"    {stmt}\n" for _ in range(times))
    namespace = dict(env)
    exec(f"def run():\n{body}", namespace)  # noqa: S102 - our own constant statement
    return namespace["run"]  # type: ignore[no-any-return]


# --- LRUMap -------------------------------------------------------------------------------------


def pool_key(i: int) -> tuple[str, str, int]:
    """A pool key shaped like the ones PoolManager uses for its map."""
    return ("https", f"host{i}.example.com", 443)


def lru_get_env(cls: type) -> dict[str, Any]:
    """A full map and a key in it: ``m[key]`` is a hit."""
    m = cls(LRU_MAXSIZE)
    for i in range(LRU_MAXSIZE):
        m[pool_key(i)] = object()
    return {"m": m, "key": pool_key(LRU_MAXSIZE // 2)}


EVICT_KEYS = LRU_MAXSIZE + 1
# Cycling through maxsize+1 keys in order makes every put a new key that evicts the oldest.
EVICT_STMT = "; ".join(f"m[k{i}] = v" for i in range(EVICT_KEYS))


def lru_evict_env(cls: type) -> dict[str, Any]:
    """A full map and ``maxsize + 1`` keys: each put in EVICT_STMT inserts and evicts."""
    m = cls(LRU_MAXSIZE)
    env: dict[str, Any] = {"m": m, "v": object()}
    for i in range(EVICT_KEYS):
        env[f"k{i}"] = pool_key(i)
        m[env[f"k{i}"]] = env["v"]
    return env


def measure_lru(number: int = 100_000, repeat: int = 7) -> list[Row]:
    """Rows (name, backend, ns_per_op, reference_name, reference_ns_per_op) for the table."""
    classes = [("urllib3", RecentlyUsedContainer), *backends("_lru", "LRUMap")]
    cases: dict[str, Case] = {}
    for backend, cls in classes:
        cases[f"get {backend}"] = ("m[key]", lru_get_env(cls), 1, number)
        cases[f"put {backend}"] = (EVICT_STMT, lru_evict_env(cls), EVICT_KEYS, number // 10)
    ns = ns_per_op(cases, repeat)
    rows: list[Row] = []
    for backend, _ in classes[1:]:
        rows.append(
            (
                "LRUMap get (hit)",
                backend,
                ns[f"get {backend}"],
                "RecentlyUsedContainer get",
                ns["get urllib3"],
            )
        )
        rows.append(
            (
                "LRUMap put (evicts)",
                backend,
                ns[f"put {backend}"],
                "RecentlyUsedContainer put",
                ns["put urllib3"],
            )
        )
    return rows


# --- PrefixRouter -------------------------------------------------------------------------------

HOST_URL = "https://api9.example.com/v1/users?id=3"
DEFAULT_URL = "https://elsewhere.example.org/index.html"


def mounts(n: int) -> list[tuple[str, str]]:
    """``n`` prefixes as a crawler might mount them: the two schemes, then host prefixes."""
    prefixes = ["https://", "http://"]
    prefixes += [f"https://api{i}.example.com/" for i in range(n - 2)]
    return [(prefix, f"adapter for {prefix}") for prefix in prefixes[:n]]


def router_env(cls: type, n: int, url: str) -> dict[str, Any]:
    router = cls()
    for prefix, value in mounts(n):
        router.mount(prefix, value)
    return {"match": router.match, "url": url}


@functools.cache
def mounted_session(n: int) -> requests.Session:
    """A Session with only ``mounts(n)`` mounted (cached: requests' mount is O(n) each)."""
    session = requests.Session()
    session.adapters.clear()
    for prefix, value in mounts(n):
        session.mount(prefix, value)  # type: ignore[arg-type]
    return session


def session_env(n: int, url: str) -> dict[str, Any]:
    return {"match": mounted_session(n).get_adapter, "url": url}


PREFIX_CASES = [
    ("20 mounts, host URL", 20, HOST_URL),
    ("20 mounts, default URL", 20, DEFAULT_URL),
    ("2 mounts", 2, HOST_URL),
    ("100 mounts", 100, HOST_URL),
    ("10,000 mounts", 10_000, HOST_URL),
]


def measure_prefix(number: int = 100_000, repeat: int = 7) -> list[Row]:
    """Rows (name, backend, ns_per_op, reference_name, reference_ns_per_op) for the table."""
    rows: list[Row] = []
    classes = backends("_prefix", "PrefixRouter")
    for label, n, url in PREFIX_CASES:
        # requests scans every mount: keep its loop count reasonable for 10,000 of them.
        ref_number = max(number * 20 // n // 10, 20)
        cases: dict[str, Case] = {"requests": ("match(url)", session_env(n, url), 1, ref_number)}
        for backend, cls in classes:
            cases[backend] = ("match(url)", router_env(cls, n, url), 1, number)
        ns = ns_per_op(cases, repeat)
        for backend, _ in classes:
            rows.append(
                (
                    f"PrefixRouter.match ({label})",
                    backend,
                    ns[backend],
                    "Session.get_adapter",
                    ns["requests"],
                )
            )
    return rows


def main() -> None:
    print(f"{'operation':44} {'backend':8} {'ns/op':>8}  {'reference':28} {'ns/op':>9} {'x':>7}")
    for name, backend, ours, reference_name, theirs in measure_lru() + measure_prefix():
        print(
            f"{name:44} {backend:8} {ours:8.0f}  {reference_name:28} {theirs:9.0f} "
            f"{theirs / ours:7.1f}"
        )


if __name__ == "__main__":
    main()
