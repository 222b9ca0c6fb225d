"""Crawler benchmarks (bench/crawl.py) as quick pytest-benchmark runs; indicative only.

``pytest bench/test_bench_crawl.py --benchmark-enable``. The full-size runs (100,000 hosts,
200,000 requests) are ``python bench/crawl.py scale`` and ``python bench/crawl.py soak``.
Invariants are asserted (no failed request, the socket cap held); speed is reported, never
asserted.
"""

from __future__ import annotations

from typing import Any

import crawl


def test_crawl_session_vs_requests(benchmark: Any, nginx: Any) -> None:
    result = benchmark.pedantic(crawl.crawl, kwargs={"rounds": 2}, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["fastpool"]["failed"] == 0 and result["requests"]["failed"] == 0


def test_scale_distinct_hosts_under_a_socket_cap(benchmark: Any) -> None:
    result = benchmark.pedantic(crawl.scale, kwargs={"hosts": 8000}, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["failed"] == 0
    assert result["peak_limit_open"] <= 256
    assert result["peak_open_sockets"] <= 256


def test_soak_random_closes(benchmark: Any) -> None:
    result = benchmark.pedantic(
        crawl.soak, kwargs={"requests_total": 20000}, rounds=1, iterations=1
    )
    benchmark.extra_info.update(result)
    assert result["failed"] == 0
