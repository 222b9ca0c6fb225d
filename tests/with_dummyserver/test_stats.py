"""fastpool.stats: snapshots read from real HostQueues (both backends) and from a real
PoolManager against local servers; merge; the table; the advice."""

from __future__ import annotations

import json
import threading
from dataclasses import FrozenInstanceError
from typing import Any, Callable

import pytest

import fastpool
from fastpool.exceptions import PoolTimeoutError
from fastpool.stats import COUNTERS, HostStats, PoolStats, advise, host_stats, merge, snapshot


class Pool:
    """The attributes stats reads from a pool, around a real HostQueue of the backend."""

    def __init__(self, queue: Any, host: str = "127.0.0.2", **counters: int) -> None:
        self.scheme = "http"
        self.host = host
        self.port = 8080
        self.pool = queue
        for name, value in counters.items():
            setattr(self, name, value)


class Manager:
    """The attributes stats reads from a pool manager, around a real LRUMap of the backend."""

    def __init__(self, pools: Any, **extra: Any) -> None:
        self.pools = pools
        for name, value in extra.items():
            setattr(self, name, value)


def stats_for(**fields: Any) -> HostStats:
    values: dict[str, Any] = dict.fromkeys(HostStats.__dataclass_fields__, 0)
    values.update(scheme="http", host="127.0.0.2", port=80, wait_time=0.0, maxsize=10)
    values["block"] = False
    values.update(fields)
    return HostStats(**values)


def pool_stats(*hosts: HostStats, num_pools: int = 10, evicted_pools: int = 0) -> PoolStats:
    manager_total = HostStats(
        scheme="*",
        host="*",
        port=None,
        block=any(h.block for h in hosts),
        **{
            name: sum(getattr(h, name) for h in hosts)
            for name in HostStats.__dataclass_fields__
            if name not in ("scheme", "host", "port", "block")
        },
    )
    return PoolStats(hosts, manager_total, num_pools, evicted_pools)


# --- reading the cores ---------------------------------------------------------------------------


def test_host_stats_reads_the_queue_counters(hostqueue_cls: type) -> None:
    queue = hostqueue_cls(maxsize=1, block=False)
    first, second = queue.checkout(), queue.checkout()  # two new slots
    assert (first, second) == (None, None)
    queue.checkin("conn-a")
    queue.checkin("conn-b")  # the pool already holds one idle: discarded
    assert queue.checkout() == "conn-a"  # reused

    stats = host_stats(Pool(queue, expired_idle=2, dropped_stale=1, retried=3))
    assert (stats.open, stats.idle, stats.in_use, stats.waiters) == (1, 0, 1, 0)
    assert (stats.created, stats.reused, stats.discarded_full) == (2, 1, 1)
    assert (stats.expired_idle, stats.expired_lifetime) == (2, 0)  # a missing counter reads 0
    assert (stats.dropped_stale, stats.retried) == (1, 3)
    assert (stats.maxsize, stats.block) == (1, False)
    assert stats.origin == "http://127.0.0.2:8080"


def test_host_stats_counts_waits(hostqueue_cls: type) -> None:
    queue = hostqueue_cls(maxsize=1, block=True)
    queue.checkout()
    with pytest.raises(PoolTimeoutError):
        queue.checkout(timeout=0.02)
    stats = host_stats(Pool(queue))
    assert stats.wait_count == 1
    assert stats.wait_time >= 0.015
    assert stats.block is True


def test_snapshot_totals_include_evicted_pools(hostqueue_cls: type, lru_cls: type) -> None:
    pools = lru_cls(3)
    for number, host in enumerate(("127.0.0.2", "127.0.0.3")):
        queue = hostqueue_cls(maxsize=2)
        for _ in range(number + 1):
            queue.checkout()
        for _ in range(number + 1):
            queue.checkin(object())
        pools[host] = Pool(queue, host=host, retried=number)
    evicted = {"created": 40, "reused": 7, "wait_time": 0.5, "discarded_full": 2}
    stats = snapshot(Manager(pools, evicted_pools=5, evicted_totals=evicted))

    assert [h.host for h in stats.hosts] == ["127.0.0.2", "127.0.0.3"]  # least recent first
    assert stats.num_pools == 3
    assert stats.evicted_pools == 5
    total = stats.total
    assert (total.scheme, total.host, total.port, total.origin) == ("*", "*", None, "*")
    assert (total.open, total.idle, total.in_use) == (3, 3, 0)  # live pools only
    assert total.created == 1 + 2 + 40
    assert total.reused == 7
    assert total.discarded_full == 2
    assert total.retried == 1
    assert total.wait_time == 0.5
    assert total.maxsize == 4


def test_snapshot_of_a_manager_without_the_optional_counters(lru_cls: type) -> None:
    stats = snapshot(Manager(lru_cls(10)))
    assert stats.hosts == ()
    assert stats.evicted_pools == 0
    assert stats.total.created == 0
    assert advise(stats) == []


# --- the value objects ---------------------------------------------------------------------------


def test_stats_are_frozen_and_json_able() -> None:
    stats = pool_stats(stats_for(created=3, reused=5), stats_for(host="::1", created=1))
    with pytest.raises(FrozenInstanceError):
        stats.total.created = 1  # type: ignore[misc]
    data = json.loads(json.dumps(stats.as_dict()))
    assert data["total"]["created"] == 4
    assert data["hosts"][0]["reused"] == 5
    assert data["num_pools"] == 10
    assert "managers" not in data
    assert set(COUNTERS) <= set(data["total"])
    assert stats.hosts[1].origin == "http://[::1]:80"


def test_str_is_an_aligned_table_with_a_total_row() -> None:
    stats = pool_stats(
        stats_for(host="127.0.0.2", created=12, reused=1234, wait_count=2, wait_time=1.5),
        stats_for(host="127.0.0.3", created=1, discarded_full=4, block=True, maxsize=4),
        evicted_pools=3,
    )
    lines = str(stats).splitlines()
    assert len(lines) == 4
    assert lines[0].split() == [
        "host", "open", "idle", "in", "use", "waiting", "created", "reused", "full",
        "expired", "stale", "retried", "waits", "waited", "max",
    ]  # fmt: skip
    assert lines[1].startswith("http://127.0.0.2:80 ")
    assert "1,234" in lines[1]
    assert lines[1].split()[-2:] == ["1.50s", "10"]
    assert lines[2].split()[-1] == "4b"  # blocking pool
    assert lines[3].startswith("total (2 pools of 10, 3 evicted)")
    assert len({len(line) for line in lines}) == 1  # right-aligned columns end together


def test_table_lists_the_busiest_hosts_when_asked() -> None:
    hosts = [stats_for(host=f"127.0.0.{n}", reused=n) for n in range(2, 12)]
    lines = pool_stats(*hosts).table(max_hosts=3)
    assert [line.split()[0] for line in lines[1:4]] == [
        "http://127.0.0.11:80",
        "http://127.0.0.10:80",
        "http://127.0.0.9:80",
    ]
    assert lines[4].startswith("(7 more hosts)")
    assert lines[5].startswith("total (10 pools of 10)")


def test_compact_table_leaves_out_columns_of_zeros() -> None:
    stats = pool_stats(stats_for(created=2, discarded_full=1), stats_for(host="127.0.0.3"))
    lines = stats.table(compact=True)
    assert lines[0].split() == ["host", "open", "idle", "created", "reused", "full", "max"]
    assert lines[-1].split()[-4:] == ["2", "0", "1", "20"]
    assert len(str(stats).splitlines()[0].split()) == 15  # the full table keeps them all


def test_merge_sums_and_keeps_each_manager() -> None:
    plain = pool_stats(stats_for(created=2), num_pools=10, evicted_pools=4)
    proxied = pool_stats(stats_for(host="127.0.0.3", created=5, block=True), num_pools=2)
    merged = merge([plain, proxied])
    assert [h.host for h in merged.hosts] == ["127.0.0.2", "127.0.0.3"]
    assert merged.total.created == 7
    assert merged.total.block is True
    assert (merged.num_pools, merged.evicted_pools) == (12, 4)
    assert merged.managers == (plain, proxied)
    assert merge([merged, plain]).managers == (plain, proxied, plain)  # flat, never nested
    assert [part["num_pools"] for part in merged.as_dict()["managers"]] == [10, 2]
    assert merged.table()[-1].startswith("total (2 pools of 10+2, 4 evicted)")
    empty = merge([])
    assert (empty.hosts, empty.num_pools, empty.total.created) == ((), 0, 0)


# --- advice --------------------------------------------------------------------------------------


def test_no_advice_when_nothing_is_wrong() -> None:
    healthy = pool_stats(stats_for(created=10, reused=5000, expired_lifetime=3))
    assert advise(healthy, threads=8, hosts=1) == []


def test_advice_on_evictions_names_the_size_to_set() -> None:
    stats = pool_stats(stats_for(created=4300), num_pools=10, evicted_pools=4213)
    [tip] = advise(stats, hosts=57)
    assert stats.advise(hosts=57) == [tip]
    assert tip.startswith("pool_connections=10 but 57 hosts were used: 4,213 pools were evicted")
    assert tip.endswith("set pool_connections >= 57.")
    [tip] = advise(stats)
    assert "set pool_connections above 10" in tip


def test_eviction_advice_is_per_manager_after_merge() -> None:
    crowded = pool_stats(stats_for(), num_pools=2, evicted_pools=1)
    roomy = pool_stats(stats_for(), num_pools=50)
    [tip] = advise(merge([roomy, crowded]), hosts=3)
    assert tip.startswith("pool_connections=2 but 3 hosts were used: 1 pool was evicted")


def test_advice_on_discards_names_hosts_and_threads() -> None:
    stats = pool_stats(
        stats_for(host="127.0.0.2", discarded_full=22),
        stats_for(host="127.0.0.3", discarded_full=3),
        stats_for(host="127.0.0.4"),
    )
    [tip] = advise(stats, threads=32)
    assert tip.startswith(
        "25 connections were discarded because 32 threads shared pool_maxsize=10 "
        "(22 at 127.0.0.2, 3 at 127.0.0.3)"
    )
    assert tip.endswith("set pool_maxsize >= 32.")
    [tip] = advise(stats)
    assert "pool_maxsize=10 was smaller than the requests in flight" in tip


def test_advice_on_discards_of_evicted_pools(lru_cls: type) -> None:
    stats = snapshot(Manager(lru_cls(10), evicted_totals={"discarded_full": 5}))
    [tip] = advise(stats)
    assert tip.startswith("5 connections of pools since evicted were discarded")


def test_advice_on_waits_at_a_connection_limit() -> None:
    stats = pool_stats(stats_for(wait_count=3, wait_time=0.03))
    [tip] = advise(stats, threads=32)
    assert tip.startswith("requests waited 30.0ms in total for a free connection (3 waits, 10.0ms")
    assert tip.endswith("the connection limit was reached; raise it if the servers can take more.")


def test_advice_on_waits_with_pool_block() -> None:
    stats = pool_stats(stats_for(block=True, wait_count=57, wait_time=1.3))
    [tip] = advise(stats, threads=32)
    assert tip.startswith("requests waited 1.30s in total for a free connection (57 waits")
    assert "pool_block=True caps each host at pool_maxsize=10" in tip
    assert tip.endswith("set pool_maxsize >= 32.")


def test_advice_on_stale_expired_and_retried() -> None:
    stats = pool_stats(stats_for(reused=90, dropped_stale=4, expired_idle=6, retried=1))
    tips = advise(stats)
    assert len(tips) == 3
    assert tips[0].startswith("4 idle connections had already been closed by the server")
    assert "set idle_timeout below" in tips[0]
    assert tips[1].startswith("6 idle connections outlived idle_timeout")
    assert "raising it saves those connects" in tips[1]
    assert tips[2].startswith("1 request was sent again")


# --- a real PoolManager --------------------------------------------------------------------------


def _get(manager: Any, url: str) -> None:
    response = manager.request("GET", url)
    assert response.status == 200


def test_snapshot_of_a_pool_manager(server_factory: Callable[..., Any]) -> None:
    servers = [server_factory(f"127.0.0.{n}") for n in (2, 3)]
    with fastpool.PoolManager(num_pools=4, maxsize=1) as manager:
        for _ in range(3):
            for server in servers:
                _get(manager, f"{server.url}/bytes/10")
        # Three requests in flight to one host at once; maxsize=1 keeps one connection.
        key = "stats-snapshot"
        threads = [
            threading.Thread(target=_get, args=(manager, f"{servers[0].url}/hold?key={key}&n=3"))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        stats = snapshot(manager)
    by_host = {h.host: h for h in stats.hosts}
    assert set(by_host) == {"127.0.0.2", "127.0.0.3"}
    busy, quiet = by_host["127.0.0.2"], by_host["127.0.0.3"]
    assert (busy.created, busy.discarded_full) == (servers[0].connections, 2)
    assert busy.created + busy.reused == 6
    assert (quiet.created, quiet.reused) == (1, 2)
    assert (busy.open, busy.idle, busy.in_use) == (1, 1, 0)
    assert stats.num_pools == 4
    assert stats.total.created == servers[0].connections + servers[1].connections
    [tip] = advise(stats, threads=3)
    assert tip.startswith("2 connections were discarded because 3 threads shared pool_maxsize=1")


def test_snapshot_reads_a_live_pool_in_use(app_server: Any) -> None:
    with fastpool.PoolManager() as manager:
        response = manager.request("GET", f"{app_server.url}/bytes/100", preload_content=False)
        during = snapshot(manager)
        response.read()
        response.release_conn()
        after = snapshot(manager)
    assert (during.total.in_use, during.total.idle) == (1, 0)
    assert (after.total.in_use, after.total.idle) == (0, 1)


def test_evictions_are_counted_and_their_counters_kept(server_factory: Callable[..., Any]) -> None:
    servers = [server_factory(f"127.0.0.{n}") for n in (2, 3, 4)]
    with fastpool.PoolManager(num_pools=2) as manager:
        for _ in range(2):
            for server in servers:
                _get(manager, f"{server.url}/bytes/1")
        stats = snapshot(manager)
    # Round-robin over three hosts with two pools evicts on every new pool after the second.
    assert stats.evicted_pools == 4
    assert stats.total.created == sum(server.connections for server in servers) == 6
    [tip] = advise(stats, hosts=3)
    assert tip.startswith("pool_connections=2 but 3 hosts were used: 4 pools were evicted")


def test_manager_stats_method_is_the_snapshot(app_server: Any) -> None:
    manager = fastpool.PoolManager()
    _get(manager, f"{app_server.url}/bytes/1")
    assert manager.stats() == snapshot(manager)
    manager.clear()


def test_snapshots_during_traffic(app_server: Any) -> None:
    with fastpool.PoolManager(maxsize=4) as manager:

        def worker() -> None:
            for _ in range(50):
                _get(manager, f"{app_server.url}/bytes/1")

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        seen = 0
        while any(thread.is_alive() for thread in threads) and seen < 10_000:
            stats = snapshot(manager)  # never raises while pools change under it
            assert stats.total.in_use <= 4
            seen += 1
        for thread in threads:
            thread.join(10)
        final = snapshot(manager)
    assert final.total.created + final.total.reused == 200
    assert final.total.created == app_server.connections
    assert (final.total.in_use, final.total.waiters) == (0, 0)


def test_session_and_adapter_pool_stats(server_factory: Callable[..., Any]) -> None:
    servers = [server_factory(f"127.0.0.{n}") for n in (2, 3)]
    with fastpool.Session() as session:
        for server in servers:
            for _ in range(2):
                assert session.get(f"{server.url}/bytes/1").status_code == 200
        stats = session.pool_stats()
        adapter_stats = session.get_adapter(servers[0].url).pool_stats()
    assert isinstance(stats, PoolStats)
    assert sorted(h.host for h in stats.hosts) == ["127.0.0.2", "127.0.0.3"]
    assert (stats.total.created, stats.total.reused) == (2, 2)
    assert len(stats.managers) == 1  # one adapter serves http:// and https://
    assert adapter_stats.total.created == 2


def test_idle_connections_closed_for_max_connections(server_factory: Callable[..., Any]) -> None:
    servers = [server_factory(f"127.0.0.{n}") for n in (2, 3)]
    with fastpool.PoolManager(max_connections=1) as manager:
        for server in (*servers, servers[0]):
            _get(manager, f"{server.url}/bytes/1")
        stats = snapshot(manager)
    # One connection at a time: each new host's dial closed the other host's idle connection.
    assert (stats.max_connections, stats.closed_for_limit) == (1, 2)
    assert stats.total.open == 1
    assert sum(server.connections for server in servers) == 3
    assert stats.table()[-1].startswith("total (2 pools of 10, 2 idle closed for max_connections)")
    assert stats.as_dict()["closed_for_limit"] == 2
    [tip] = advise(stats, hosts=2)
    assert tip.startswith("2 idle connections were closed to stay under max_connections=1")
    assert tip.endswith("2 hosts were used: set max_connections >= 2.")
    assert merge([stats, stats]).closed_for_limit == 4
