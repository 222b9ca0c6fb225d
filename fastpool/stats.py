"""Pool stats: a snapshot of what every host pool is doing, and advice on sizing them.

:func:`snapshot` reads a PoolManager's pools on demand: the counters already live in each
pool's HostQueue and on the pool, so the request path pays nothing for stats.
``PoolManager.stats()``, ``HTTPAdapter.pool_stats()`` and ``Session.pool_stats()`` return
it; :func:`merge` combines several (an adapter has a pool manager plus one per proxy; a Session
has several adapters). :func:`advise` turns a snapshot into plain advice with numbers.

This module reads pools and managers by attribute name only (it imports none of them): a pool
needs ``scheme host port pool`` (its HostQueue) and may have the counters ``expired_idle
expired_lifetime dropped_stale retried``; a manager needs ``pools`` and may have
``evicted_pools``, ``evicted_totals`` and ``limit`` (its ``max_connections`` cap, with
``evicted_idle``: idle connections closed to stay under it). Missing counters read as 0.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ("COUNTERS", "HostStats", "PoolStats", "advise", "host_stats", "merge", "snapshot")

# Frozen value objects; slots where dataclasses support them (3.10+).
_SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}

#: HostStats fields that only grow over a pool's life (kept for evicted pools in ``total``).
COUNTERS = (
    "created",
    "reused",
    "discarded_full",
    "expired_idle",
    "expired_lifetime",
    "dropped_stale",
    "retried",
    "wait_count",
    "wait_time",
)
# Fields that say how things are right now.
_GAUGES = ("open", "idle", "in_use", "waiters")


@dataclass(frozen=True, **_SLOTS)
class HostStats:
    """One host pool (one origin and settings) at the moment of the snapshot.

    Gauges: ``open`` connections (``idle + in_use``), ``idle`` ones kept for reuse, ``in_use``
    (checked out, including those being dialed), ``waiters`` (requests waiting for a slot).
    Counters since the pool was created: ``created`` (checkouts that dialed a new
    connection), ``reused`` (checkouts given an idle connection; one found dropped or expired
    there is re-dialed in place and counted in ``dropped_stale``/``expired_*`` as well),
    ``discarded_full`` (connections closed because ``maxsize`` were already idle: "Connection
    pool is full"), ``expired_idle`` and ``expired_lifetime`` (closed at checkout for
    ``idle_timeout``/``max_lifetime``), ``dropped_stale`` (found closed by the server when
    about to be reused), ``retried`` (requests sent again after the connection failed),
    ``wait_count`` and ``wait_time`` (requests that waited for a slot, and their total
    seconds). Settings: ``maxsize`` (idle connections kept: ``pool_maxsize``) and ``block``
    (``pool_block``).
    """

    scheme: str
    host: str
    port: int | None
    open: int
    idle: int
    in_use: int
    waiters: int
    created: int
    reused: int
    discarded_full: int
    expired_idle: int
    expired_lifetime: int
    dropped_stale: int
    retried: int
    wait_count: int
    wait_time: float
    maxsize: int
    block: bool

    @property
    def origin(self) -> str:
        """``scheme://host:port`` (``*`` for totals)."""
        if self.host == "*":
            return "*"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port is not None else "")

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


def host_stats(pool: Any) -> HostStats:
    """Read one pool (duck-typed, see the module docstring) into a :class:`HostStats`.

    Each field is read once; under traffic the fields may come from slightly different
    instants (no lock is taken, so a snapshot never slows requests down).
    """
    queue = pool.pool
    # A checkout that waited at the global cap and was handed a connection coming back counted
    # as a dial in the queue; it reused one.
    handed = getattr(pool, "handed_over", 0)
    return HostStats(
        scheme=str(pool.scheme),
        host=str(pool.host),
        port=pool.port,
        open=queue.open,
        idle=queue.idle,
        in_use=queue.in_use,
        waiters=queue.waiters,
        created=queue.created - handed,
        reused=queue.reused + handed,
        discarded_full=queue.discarded,
        expired_idle=getattr(pool, "expired_idle", 0),
        expired_lifetime=getattr(pool, "expired_lifetime", 0),
        dropped_stale=getattr(pool, "dropped_stale", 0),
        retried=getattr(pool, "retried", 0),
        wait_count=queue.wait_count,
        wait_time=float(queue.wait_time),
        maxsize=queue.maxsize,
        block=bool(queue.block),
    )


def _sum(hosts: Iterable[HostStats], extra: dict[str, Any] | None = None) -> HostStats:
    """Totals over ``hosts`` plus ``extra`` counters (from evicted pools): scheme/host ``*``,
    ``maxsize`` summed (idle connections kept in all), ``block`` if any pool blocks."""
    totals: dict[str, Any] = dict.fromkeys(_GAUGES + COUNTERS + ("maxsize",), 0)
    totals["wait_time"] = 0.0
    block = False
    for host in hosts:
        for name in totals:
            totals[name] += getattr(host, name)
        block = block or host.block
    for name, value in (extra or {}).items():
        if name in COUNTERS:
            totals[name] += value
    return HostStats(scheme="*", host="*", port=None, block=block, **totals)


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of one or more pool managers: :func:`snapshot`, :func:`merge`.

    - ``hosts``: one :class:`HostStats` per live pool, least recently used first.
    - ``total``: the sum over ``hosts`` plus the counters of pools already evicted (their
      connections were closed, so the gauges count live pools only). ``total.maxsize`` is
      the sum of the pools' ``maxsize``.
    - ``num_pools``: how many pools may be kept (``pool_connections``/``num_pools``; summed
      over merged managers).
    - ``evicted_pools``: pools dropped to make room for another host's pool.
    - ``max_connections``: the manager's cap on open connections across its pools, or None.
    - ``closed_for_limit``: idle connections closed to make room under ``max_connections``
      (summed over merged managers).
    - ``managers``: for merged stats, the snapshot of each manager (empty for one manager);
      :func:`advise` reads them for per-manager sizes.
    """

    hosts: tuple[HostStats, ...]
    total: HostStats
    num_pools: int
    evicted_pools: int
    managers: tuple[PoolStats, ...] = ()
    max_connections: int | None = None
    closed_for_limit: int = 0

    def parts(self) -> tuple[PoolStats, ...]:
        """The single-manager snapshots this one is made of (itself when it is one)."""
        return self.managers or (self,)

    def advise(self, *, threads: int | None = None, hosts: int | None = None) -> list[str]:
        """The same as :func:`advise` on this snapshot (``threads``/``hosts`` default None)."""
        return advise(self, threads=threads, hosts=hosts)

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict: ``hosts`` (a list of dicts), ``total``, ``num_pools``,
        ``evicted_pools`` and, for merged stats, ``managers``."""
        data: dict[str, Any] = {
            "hosts": [host.as_dict() for host in self.hosts],
            "total": self.total.as_dict(),
            "num_pools": self.num_pools,
            "evicted_pools": self.evicted_pools,
            "max_connections": self.max_connections,
            "closed_for_limit": self.closed_for_limit,
        }
        if self.managers:
            data["managers"] = [part.as_dict() for part in self.managers]
        return data

    def table(self, max_hosts: int | None = None, compact: bool = False) -> list[str]:
        """The lines of :meth:`__str__`. With ``max_hosts`` (default None: all), only the
        hosts with the most traffic are listed, then a line saying how many were left out.
        ``compact`` (default False) leaves out the columns that are 0 on every row (host,
        open, idle, created, reused and max are always shown)."""
        hosts = list(self.hosts)
        left_out = 0
        if max_hosts is not None and len(hosts) > max_hosts:
            busiest = sorted(hosts, key=lambda h: h.created + h.reused, reverse=True)
            hosts = busiest[:max_hosts]
            left_out = len(self.hosts) - max_hosts
        rows = [_row(host.origin, host) for host in hosts]
        # Merged managers: each one's capacity, "10+10" for a Session's http and https adapters.
        capacity = "+".join(str(part.num_pools) for part in self.parts())
        label = f"total ({_plural(len(self.hosts), 'pool')} of {capacity}"
        if self.evicted_pools:
            label += f", {self.evicted_pools:,} evicted"
        if self.closed_for_limit:
            label += f", {self.closed_for_limit:,} idle closed for max_connections"
        label += ")"
        rows.append(_row(label, self.total))
        shown = [
            i
            for i, name in enumerate(_HEADERS)
            if not compact or name in _ALWAYS_SHOWN or any(row[i] != "0" for row in rows)
        ]
        if left_out:
            rows.insert(-1, [f"({left_out} more hosts)"] + [""] * (len(_HEADERS) - 1))
        table = [[row[i] for i in shown] for row in [list(_HEADERS), *rows]]
        widths = [max(len(row[i]) for row in table) for i in range(len(shown))]
        return [
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
            for row in table
        ]

    def __str__(self) -> str:
        """An aligned table: one row per host and a total row. Columns: open, idle, in use,
        waiting (waiters), created, reused, full (discarded_full), expired (idle + lifetime), stale
        (dropped_stale), retried, waits (wait_count), waited (wait_time), max (maxsize, with
        ``b`` when blocking)."""
        return "\n".join(self.table())


_HEADERS = (
    "host", "open", "idle", "in use", "waiting", "created", "reused", "full", "expired",
    "stale", "retried", "waits", "waited", "max",
)  # fmt: skip
_ALWAYS_SHOWN = ("host", "open", "idle", "created", "reused", "max")


def _row(label: str, host: HostStats) -> list[str]:
    numbers = (
        host.open, host.idle, host.in_use, host.waiters, host.created, host.reused,
        host.discarded_full, host.expired_idle + host.expired_lifetime, host.dropped_stale,
        host.retried, host.wait_count,
    )  # fmt: skip
    return [
        label,
        *(f"{n:,}" for n in numbers),
        _seconds(host.wait_time),
        f"{host.maxsize}{'b' if host.block else ''}",
    ]


def _seconds(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:,.2f}s"


def snapshot(manager: Any) -> PoolStats:
    """A :class:`PoolStats` of ``manager``'s pools, read now (duck-typed: see the module).

    ``manager.evicted_totals``, when present, is a dict of :data:`COUNTERS` names to the
    running totals of pools the manager evicted; they are added to ``total`` so a crawl's
    counters are not lost with the pools it dropped.
    """
    hosts = tuple(host_stats(pool) for _, pool in manager.pools.items())
    evicted_totals = dict(getattr(manager, "evicted_totals", None) or {})
    limit = getattr(manager, "limit", None)
    return PoolStats(
        hosts=hosts,
        total=_sum(hosts, evicted_totals),
        num_pools=int(manager.pools.maxsize),
        evicted_pools=int(getattr(manager, "evicted_pools", 0)),
        max_connections=None if limit is None else int(limit.max_connections),
        closed_for_limit=0 if limit is None else int(getattr(limit, "evicted_idle", 0)),
    )


def merge(stats_list: Iterable[PoolStats]) -> PoolStats:
    """One :class:`PoolStats` for several managers: hosts side by side, totals and
    ``num_pools``/``evicted_pools`` summed, each manager's own snapshot kept in ``managers``."""
    parts = tuple(part for stats in stats_list for part in stats.parts())
    totals = [part.total for part in parts]
    return PoolStats(
        hosts=tuple(host for part in parts for host in part.hosts),
        total=_sum(totals),
        num_pools=sum(part.num_pools for part in parts),
        evicted_pools=sum(part.evicted_pools for part in parts),
        managers=parts,
        closed_for_limit=sum(part.closed_for_limit for part in parts),
    )


# --- advice ---------------------------------------------------------------------------------


def _hosts_named(hosts: Sequence[HostStats], field: str, shown: int = 3) -> str:
    """``"22 at 127.0.0.2, 10 at 127.0.0.3 and 5 more hosts"``: the biggest ``field`` values."""
    ranked = sorted(hosts, key=lambda h: getattr(h, field), reverse=True)
    parts = [f"{getattr(h, field):,} at {h.host}" for h in ranked[:shown]]
    if len(ranked) > shown:
        return ", ".join(parts) + f" and {len(ranked) - shown} more hosts"
    return ", ".join(parts)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word if n == 1 else word + 's'}"


def _was(n: int) -> str:
    return "was" if n == 1 else "were"


def _advise_evictions(part: PoolStats, hosts: int | None) -> str | None:
    if not part.evicted_pools:
        return None
    size = part.num_pools
    used = f" but {hosts:,} hosts were used" if hosts is not None and hosts > size else ""
    # A host visited again after its pool was evicted dials anew: its idle connections went.
    text = (
        f"pool_connections={size}{used}: {_plural(part.evicted_pools, 'pool')} "
        f"{_was(part.evicted_pools)} evicted to make room for other hosts, "
        "closing their idle connections, so a host visited again opened a new connection"
    )
    if hosts is not None and hosts > size:
        return text + f"; set pool_connections >= {hosts:,}."
    return text + f"; set pool_connections above {size} to the number of hosts you revisit."


def _advise_limit(part: PoolStats, hosts: int | None) -> str | None:
    if not part.closed_for_limit or part.max_connections is None:
        return None
    cap = part.max_connections
    text = (
        f"{_plural(part.closed_for_limit, 'idle connection')} {_was(part.closed_for_limit)} "
        f"closed to stay under max_connections={cap}, so their hosts had to connect again"
    )
    if hosts is not None and hosts > cap:
        return text + f"; {hosts:,} hosts were used: set max_connections >= {hosts:,}."
    return text + "; raise max_connections if the servers and your file-descriptor limit allow."


def _advise_discards(stats: PoolStats, threads: int | None) -> list[str]:
    tips = []
    discarding = [h for h in stats.hosts if h.discarded_full]
    # Evicted pools' discards are only in the total; report them against the total.
    evicted = stats.total.discarded_full - sum(h.discarded_full for h in discarding)
    by_size: dict[int, list[HostStats]] = {}
    for host in discarding:
        by_size.setdefault(host.maxsize, []).append(host)
    for maxsize, hosts in sorted(by_size.items()):
        count = sum(h.discarded_full for h in hosts)
        if threads is not None and threads > maxsize:
            why = f"{threads} threads shared pool_maxsize={maxsize}"
            fix = f"set pool_maxsize >= {threads}"
        else:
            why = f"pool_maxsize={maxsize} was smaller than the requests in flight to one host"
            fix = "set pool_maxsize to the number of threads that send to one host"
        tips.append(
            f"{_plural(count, 'connection')} {_was(count)} discarded because "
            f"{why} ({_hosts_named(hosts, 'discarded_full')}); each one was opened and closed "
            f"instead of being reused; {fix}."
        )
    if evicted > 0:
        tips.append(
            f"{_plural(evicted, 'connection')} of pools since evicted "
            f"{_was(evicted)} discarded because the pool was full; "
            "set pool_maxsize to the number of threads that send to one host."
        )
    return tips


def _advise_waits(stats: PoolStats, threads: int | None) -> str | None:
    total = stats.total
    if not total.wait_count:
        return None
    waiting = [h for h in stats.hosts if h.wait_count]
    average = total.wait_time / total.wait_count
    sizes = sorted({h.maxsize for h in waiting})
    text = (
        f"requests waited {_seconds(total.wait_time)} in total for a free connection "
        f"({_plural(total.wait_count, 'wait')}, {_seconds(average)} on average"
    )
    text += f"; {_hosts_named(waiting, 'wait_count')})" if waiting else ")"
    if any(h.block for h in waiting) and sizes:
        cap = max(sizes)
        text += f": pool_block=True caps each host at pool_maxsize={cap}"
        if threads is not None and threads > cap:
            return text + f" and {threads} threads share it; set pool_maxsize >= {threads}."
        return text + "; raise pool_maxsize if the servers can take more connections."
    return text + ": the connection limit was reached; raise it if the servers can take more."


def _advise_expiry(total: HostStats) -> str | None:
    if not total.expired_idle:
        return None
    return (
        f"{_plural(total.expired_idle, 'idle connection')} outlived idle_timeout and "
        f"{_was(total.expired_idle)} closed instead of reused: normal for hosts visited "
        "rarely; if the servers keep "
        "connections open longer than idle_timeout, raising it saves those connects."
    )


def _advise_stale(total: HostStats) -> str | None:
    if not total.dropped_stale:
        return None
    return (
        f"{_plural(total.dropped_stale, 'idle connection')} had already been closed by the "
        "server when it was about to be reused, and a new one was opened: the servers close "
        "idle connections sooner than the pool expects; set idle_timeout below the servers' "
        "keep-alive timeout (nginx: 75 s by default)."
    )


def _advise_retries(total: HostStats) -> str | None:
    if not total.retried:
        return None
    return (
        f"{_plural(total.retried, 'request')} {_was(total.retried)} sent "
        "again because the connection failed before any response (a keep-alive connection "
        "the server had closed, or a failed connect); if this grows with dropped connections, "
        "lower idle_timeout."
    )


def advise(stats: PoolStats, *, threads: int | None = None, hosts: int | None = None) -> list[str]:
    """Plain advice, with numbers, for every counter in ``stats`` that signals mis-sizing.

    ``threads`` (default None) is how many threads shared the pools and ``hosts`` (default
    None) how many distinct hosts were visited; when given, the advice names the sizes to set.
    Covers evicted pools (``pool_connections``), idle connections closed for the global cap
    (``max_connections``), connections discarded because the pool was full
    (``pool_maxsize``), waits for a free connection (``pool_block``/limits), idle expiries and
    stale connections (``idle_timeout``) and retries. ``expired_lifetime`` is never advised
    on: it counts ``max_lifetime`` doing its job. Returns ``[]`` when nothing needs changing.
    """
    tips: list[str | None] = [_advise_evictions(part, hosts) for part in stats.parts()]
    tips += [_advise_limit(part, hosts) for part in stats.parts()]
    tips += _advise_discards(stats, threads)
    tips += [
        _advise_waits(stats, threads),
        _advise_stale(stats.total),
        _advise_expiry(stats.total),
        _advise_retries(stats.total),
    ]
    return [tip for tip in tips if tip]
