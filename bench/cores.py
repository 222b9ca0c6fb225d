"""One ratio table for the five compiled cores, each beside its urllib3/requests/stdlib counterpart.

Run ``python bench/cores.py``. Every row is measured in the same run (``timeit`` medians of
repeats, as the per-core modules document), so the ratios hold even on a noisy machine; the
absolute nanoseconds do not. The targets are issue 2's (and issue 3's for the parser).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the bench helpers, and a source checkout

from cores_hostqueue import measure_hostqueue
from cores_loop import measure_loop
from cores_lru_prefix import measure_lru, measure_prefix
from test_bench_http11 import CASES, check_results, ns_per_call

import fastpool

Row = tuple[str, str, float, str, float]

# operation prefix -> (the reference it is held to, the speed-up the compiled core must reach)
TARGETS = {
    "LRUMap": 5.0,
    "HostQueue": 10.0,
    "PrefixRouter.match (20 mounts": 10.0,
}


def measure_http11(repeat: int = 7) -> list[Row]:
    """The parser and writer rows, in the same shape as the other cores' rows."""
    check_results()
    rows = []
    for group, implementations in CASES.items():
        times = {name: ns_per_call(run, repeat) for name, run in implementations.items()}
        for backend in ("cython", "python"):
            if backend in times:
                rows.append((group, backend, times[backend], "http.client", times["http.client"]))
    return rows


def target_for(name: str, backend: str) -> str:
    """The target a row is held to: pure twins only need to keep up with the reference."""
    if backend != "cython" and backend != "c":
        return ">= 1x"
    for prefix, speedup in TARGETS.items():
        if name.startswith(prefix):
            return f">= {speedup:g}x"
    return ""


def main() -> None:
    rows = (
        measure_lru() + measure_prefix() + measure_hostqueue() + measure_http11() + measure_loop()
    )
    print(f"fastpool {fastpool.__version__}, cores measured side by side (same run, medians)\n")
    header = f"| {'operation':44} | backend | ns/op | reference | ns/op | speed-up | target |"
    print(header)
    print("|---|---|---:|---|---:|---:|---|")
    for name, backend, ours, reference, theirs in rows:
        print(
            f"| {name:44} | {backend} | {ours:,.0f} | {reference} | {theirs:,.0f} "
            f"| {theirs / ours:.1f}x | {target_for(name, backend)} |"
        )


if __name__ == "__main__":
    main()
