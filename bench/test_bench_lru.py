"""LRUMap benchmarks: compiled and pure backends beside urllib3's RecentlyUsedContainer.

Run ``pytest bench/test_bench_lru.py --benchmark-enable``. Targets (medians, same run): the
compiled LRUMap at least 5x faster than RecentlyUsedContainer on both operations, the pure twin no
slower. ``python bench/cores_lru_prefix.py`` prints the same comparison as a ratio table.
"""

from __future__ import annotations

from typing import Any

import pytest
from cores_lru_prefix import EVICT_KEYS, EVICT_STMT, backends, lru_evict_env, lru_get_env, unrolled
from urllib3._collections import RecentlyUsedContainer

IMPLEMENTATIONS = {"urllib3": RecentlyUsedContainer, **dict(backends("_lru", "LRUMap"))}


@pytest.fixture(params=["cython", "python", "urllib3"])
def lru_impl(request: pytest.FixtureRequest) -> type:
    """An LRU map class: our compiled or pure LRUMap, or urllib3's RecentlyUsedContainer."""
    if request.param not in IMPLEMENTATIONS:
        pytest.skip(f"{request.param} backend not built")
    return IMPLEMENTATIONS[request.param]


OPS = 100  # operations per benchmarked call: divide the times shown by this


def test_get_hit(benchmark: Any, lru_impl: type) -> None:
    """100 hits (``m[key]``) per call."""
    env = lru_get_env(lru_impl)
    benchmark(unrolled("m[key]", env, OPS))
    assert len(env["m"]) == 10


def test_put_evicts(benchmark: Any, lru_impl: type) -> None:
    """110 puts per call, each of a new key that evicts the oldest (10 x EVICT_STMT)."""
    env = lru_evict_env(lru_impl)
    benchmark(unrolled(EVICT_STMT, env, OPS // EVICT_KEYS))
    assert len(env["m"]) == 10
