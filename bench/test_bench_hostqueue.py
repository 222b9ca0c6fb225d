"""HostQueue checkout+checkin with an idle connection, both backends beside urllib3's pair.

Run: ``pytest bench/test_bench_hostqueue.py --benchmark-enable``. Each round runs the pair
1000 times (see ``cores_hostqueue`` for the cases). Targets, as ratios of medians in the same
run: compiled >= 10x faster than the LifoQueue pair, pure twin no slower. The references run
first, so each HostQueue result carries its ratios in ``extra_info`` and the summary test
prints them (visible with ``-s``); nothing here asserts a timing.
"""

from __future__ import annotations

from typing import Any

import pytest
from cores_hostqueue import hostqueue_case, lifoqueue_case, make_timer, urllib3_pool_case

GROUP = "hostqueue checkout+checkin (idle conn), 1000 per round"
INNER = 1000
REFERENCES = {
    "LifoQueue get/put(block=False)": lifoqueue_case,
    "HTTPConnectionPool._get_conn/_put_conn": urllib3_pool_case,
}

medians: dict[str, float] = {}  # name -> median seconds per round, this run


def _run(benchmark: Any, name: str, case: Any) -> None:
    timer = make_timer(case)
    benchmark.group = GROUP
    benchmark(timer.timeit, INNER)
    if benchmark.stats is not None:  # None under --benchmark-disable
        medians[name] = benchmark.stats.stats.median


@pytest.mark.parametrize("reference", list(REFERENCES))
def test_reference_pair(benchmark: Any, reference: str) -> None:
    _run(benchmark, reference, REFERENCES[reference]())


def test_hostqueue_pair(benchmark: Any, hostqueue_cls: type, backend: str) -> None:
    name = f"HostQueue[{backend}]"
    _run(benchmark, name, hostqueue_case(hostqueue_cls))
    if name in medians:
        for reference in REFERENCES:
            if reference in medians:
                benchmark.extra_info[f"x faster than {reference}"] = round(
                    medians[reference] / medians[name], 1
                )


def test_summary() -> None:
    if not medians:
        pytest.skip("benchmarks disabled: nothing measured")
    print()
    for name, seconds in medians.items():
        line = f"{name:42} {seconds / INNER * 1e9:8.0f} ns/pair"
        if name.startswith("HostQueue"):
            ratios = (
                f"{medians[ref] / seconds:.1f}x vs {ref}" for ref in REFERENCES if ref in medians
            )
            line += "  " + ", ".join(ratios)
        print(line)
