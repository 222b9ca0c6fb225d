"""A DNS cache and non-blocking resolver (issue #16).

:class:`Resolver` answers ``getaddrinfo``-shaped lists for ``SOCK_STREAM`` from a TTL cache
(clamped to ``[min_ttl, max_ttl]``, with negative caching of NXDOMAIN/NODATA and LRU eviction),
and resolves misses in the background: through ``socket.getaddrinfo`` in a small thread pool
(the default, ``backend="threads"``), or through c-ares (``backend="cares"``, the optional
``pycares`` dependency), which also gives each answer's real TTL. :meth:`Resolver.submit` never
blocks; :meth:`Resolver.resolve` is its blocking twin for the one-request path. Concurrent
lookups of one name share one query.

:func:`happy_eyeballs_order` sorts addresses as RFC 8305 section 4 asks, and
:data:`HAPPY_EYEBALLS_DELAY` is its "Connection Attempt Delay".

Errors are :class:`socket.gaierror` with getaddrinfo's errno classes (``EAI_NONAME`` for NXDOMAIN,
``EAI_AGAIN`` for SERVFAIL and timeouts), so code written for ``socket.getaddrinfo`` keeps
working. See docs/dns.md.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "DEFAULT_TTL",
    "HAPPY_EYEBALLS_DELAY",
    "Resolver",
    "ResolverClosedError",
    "ResolverStats",
    "happy_eyeballs_order",
]

#: RFC 8305 section 5 "Connection Attempt Delay": how long to wait for one connection attempt
#: before starting the next address's (the RFC recommends 250 ms).
HAPPY_EYEBALLS_DELAY = 0.25

#: The lifetime given to answers that carry no TTL (``socket.getaddrinfo``, the "threads"
#: backend), before the ``[min_ttl, max_ttl]`` clamp. libcurl's DNS cache uses the same 60 s.
DEFAULT_TTL = 60.0

#: One getaddrinfo result: (family, type, proto, canonname, sockaddr).
AddrInfo = tuple[Any, ...]

_EAI_NODATA: int = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
_EAI_ADDRFAMILY: int = getattr(socket, "EAI_ADDRFAMILY", socket.EAI_FAMILY)
# the errno classes that mean "this name has no such address" (cached negative_ttl); every
# other failure (EAI_AGAIN: SERVFAIL, timeouts, unreachable servers; EAI_FAIL) is not cached
_NEGATIVE_ERRNOS = frozenset({socket.EAI_NONAME, _EAI_NODATA})
# glibc's gai_strerror texts, so messages read as getaddrinfo's do
_MESSAGES = {
    socket.EAI_NONAME: "Name or service not known",
    _EAI_NODATA: "No address associated with hostname",
    socket.EAI_AGAIN: "Temporary failure in name resolution",
    socket.EAI_FAIL: "Non-recoverable failure in name resolution",
}


class ResolverClosedError(OSError):
    """The :class:`Resolver` was closed: set on lookups pending at :meth:`Resolver.close` and
    raised by lookups started after it. An ``OSError``, so connection code that wraps socket
    errors reports it as a failed connection rather than crashing."""


@dataclass(frozen=True)
class ResolverStats:
    """A read-only snapshot of a :class:`Resolver`'s counters (:attr:`Resolver.stats`)."""

    #: lookups answered from a fresh positive cache entry
    hits: int
    #: lookups that found no fresh entry (each joined or started a query)
    misses: int
    #: lookups answered from a fresh negative (NXDOMAIN/NODATA) entry
    negative_hits: int
    #: distinct queries running now (coalesced lookups share one)
    in_flight: int
    #: entries in the cache now, positive and negative, fresh or not yet swept
    entries: int


def _gaierror(errno: int, host: str) -> socket.gaierror:
    return socket.gaierror(errno, _MESSAGES.get(errno, "Name resolution failed") + f" ({host!r})")


@dataclass
class _Entry:
    expires: float
    # port-less getaddrinfo tuples (positive entry) or None (negative entry)
    infos: list[AddrInfo] | None
    errno: int = 0


class _Flight:
    """One running query and the lookups waiting on it."""

    __slots__ = ("host", "store", "waiters")

    def __init__(self, host: str) -> None:
        self.host = host
        self.waiters: list[tuple[concurrent.futures.Future[list[AddrInfo]], int]] = []
        # cleared by forget() so that an answer to a query started before it is not cached
        self.store = True


_Key = tuple[str, int]
# a backend reports (infos, ttl or None for "no TTL known") or a gaierror
_Done = Callable[[Union[tuple[list[AddrInfo], Optional[float]], socket.gaierror]], None]


def _with_port(infos: list[AddrInfo], port: int) -> list[AddrInfo]:
    return [(f, t, p, c, (sa[0], port, *sa[2:])) for f, t, p, c, sa in infos]


def _numeric(host: str, port: int, family: int) -> list[AddrInfo] | None:
    """getaddrinfo's answer for an IP literal (no query, no cache), or None for a name."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return socket.getaddrinfo(
            host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_NUMERICHOST
        )
    except socket.gaierror as exc:
        if exc.errno in (_EAI_ADDRFAMILY, socket.EAI_FAMILY):
            raise  # an IP literal of the other family than the one asked for
        return None
    except UnicodeError:
        return None


class Resolver:
    """A thread-safe DNS cache in front of a non-blocking resolver backend.

    ``min_ttl``/``max_ttl`` clamp every positive entry's lifetime (the answer's TTL with
    ``backend="cares"``, :data:`DEFAULT_TTL` with ``backend="threads"``, which sees no TTL).
    ``negative_ttl`` is how long NXDOMAIN/NODATA (``EAI_NONAME``/``EAI_NODATA``) is
    remembered; SERVFAIL, timeouts and other temporary failures are never cached (concurrent
    lookups still share the one failing query). ``max_entries`` bounds the cache (least
    recently used entries go first) and the number of distinct queries in flight.

    ``backend="threads"`` runs ``socket.getaddrinfo`` in a pool of ``workers`` threads, so
    ``/etc/hosts``, ``localhost`` and the system's resolver configuration apply as usual.
    ``backend="cares"`` uses c-ares through pycares (``pip install fastpool[pycares]``): A and
    AAAA queried in parallel on c-ares' own event thread, ``nameservers`` such as
    ``["127.0.0.1:5353"]`` instead of the system's. ``clock`` (seconds, monotonic) is for tests.
    """

    def __init__(
        self,
        *,
        min_ttl: float = 1.0,
        max_ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_entries: int = 4096,
        workers: int = 4,
        backend: str = "threads",
        nameservers: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= min_ttl <= max_ttl:
            raise ValueError(f"need 0 <= min_ttl <= max_ttl, got {min_ttl!r} and {max_ttl!r}")
        if negative_ttl < 0:
            raise ValueError(f"negative_ttl must be >= 0, got {negative_ttl!r}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        # what a pickled copy is made from (a new, empty cache: see __reduce__)
        self._settings = {
            "min_ttl": min_ttl, "max_ttl": max_ttl, "negative_ttl": negative_ttl,
            "max_entries": max_entries, "workers": workers, "backend": backend,
            "nameservers": nameservers,
        }  # fmt: skip
        self.min_ttl = float(min_ttl)
        self.max_ttl = float(max_ttl)
        self.negative_ttl = float(negative_ttl)
        self.max_entries = max_entries
        self.backend = backend
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        self._flights: dict[_Key, _Flight] = {}
        self._closed = False
        self._hits = self._misses = self._negative_hits = 0
        self._query: Callable[[str, int, _Done], None]
        self._shutdown: Callable[[], None]
        if backend == "threads":
            if nameservers is not None:
                raise ValueError(
                    'nameservers needs backend="cares": getaddrinfo uses the system resolver'
                )
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="fastpool-resolver"
            )
            self._query = self._query_threads
            self._shutdown = self._shutdown_threads
        elif backend == "cares":
            self._cares = _CaresBackend(nameservers)
            self._query = self._cares.query
            self._shutdown = self._cares.close
        else:
            raise ValueError(f'backend must be "threads" or "cares", got {backend!r}')

    def __reduce__(self) -> tuple[Any, ...]:
        """A pickled Resolver (in a pickled Session, sent to another process) comes back as a
        new one with the same settings and an empty cache: threads and sockets do not travel."""
        return (_rebuild, (self._settings,))

    # -- public interface ------------------------------------------------------------------

    def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[AddrInfo]:
        """Blocking; returns getaddrinfo-shaped tuples (family, type, proto, canonname,
        sockaddr) for SOCK_STREAM, from the cache when fresh. Raises socket.gaierror (same
        errno classes as getaddrinfo: EAI_NONAME for NXDOMAIN, EAI_AGAIN for SERVFAIL/timeouts)
        so callers that handle getaddrinfo's errors keep working."""
        return self.submit(host, port, family).result()

    def submit(
        self, host: str, port: int, family: int = socket.AF_UNSPEC
    ) -> concurrent.futures.Future[list[AddrInfo]]:
        """Non-blocking: a Future of the same list as :meth:`resolve` (already done on a cache
        hit, including a negative hit whose exception is set, and for IP literals). Concurrent
        lookups of one name share one query (coalescing). A caller may cancel its Future; the
        shared query goes on for the others and still fills the cache."""
        future: concurrent.futures.Future[list[AddrInfo]] = concurrent.futures.Future()
        try:
            literal = _numeric(host, port, family)
        except socket.gaierror as exc:
            future.set_exception(exc)
            return future
        if literal is not None:
            future.set_result(literal)
            return future
        key = (host.lower(), int(family))
        start = False
        with self._lock:
            if self._closed:
                future.set_exception(ResolverClosedError("the resolver is closed"))
                return future
            entry = self._fresh(key, negative=True)
            if entry is not None:
                if entry.infos is None:
                    future.set_exception(_gaierror(entry.errno, host))
                else:
                    future.set_result(_with_port(entry.infos, port))
                return future
            self._cache.pop(key, None)  # expired (if there at all): this lookup asks again
            self._misses += 1
            flight = self._flights.get(key)
            if flight is None:
                if len(self._flights) >= self.max_entries:
                    future.set_exception(
                        socket.gaierror(
                            socket.EAI_AGAIN,
                            f"{_MESSAGES[socket.EAI_AGAIN]} ({host!r}: "
                            f"{len(self._flights)} queries in flight, the resolver's limit)",
                        )
                    )
                    return future
                flight = self._flights[key] = _Flight(host)
                start = True
            flight.waiters.append((future, port))
        if start:
            try:
                self._query(host, family, lambda outcome: self._finish(key, flight, outcome))
            except Exception as exc:  # noqa: BLE001 - the backend refused the query (closed meanwhile, ...)
                self._finish(key, flight, _as_gaierror(exc, host))
        return future

    def cached(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[AddrInfo] | None:
        """Non-blocking and asking nothing: what :meth:`resolve` would return at once (an IP
        literal, or a fresh answer in the cache, counted as a hit), else None: a name not in
        the cache, an expired or a negative entry (nothing is counted; :meth:`resolve` asks or
        raises). The multiplexed loop dials such a host itself, without a worker thread."""
        try:
            literal = _numeric(host, port, family)
        except socket.gaierror:
            return None  # resolve() raises it
        if literal is not None:
            return literal
        key = (host.lower(), int(family))
        with self._lock:
            if self._closed:
                return None
            entry = self._fresh(key, negative=False)
            if entry is None or entry.infos is None:  # (never negative here: for the types)
                return None
            return _with_port(entry.infos, port)

    def forget(self, host: str | None = None) -> None:
        """Drop the cache entries of ``host`` (every family), or all entries when ``host`` is
        None. Answers to queries already running for them are not cached either."""
        with self._lock:
            if host is None:
                self._cache.clear()
                for flight in self._flights.values():
                    flight.store = False
                return
            name = host.lower()
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]
            for key, flight in self._flights.items():
                if key[0] == name:
                    flight.store = False

    def close(self) -> None:
        """Stop the backend and fail every pending lookup with :class:`ResolverClosedError`;
        lookups after this fail the same way. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            flights = list(self._flights.values())
            self._flights.clear()
            self._cache.clear()
        for flight in flights:
            for future, _port in flight.waiters:
                _settle(future, exc=ResolverClosedError("the resolver was closed"))
        self._shutdown()

    @property
    def stats(self) -> ResolverStats:
        """A snapshot of the counters: hits, misses, negative hits, queries in flight and
        cache entries."""
        with self._lock:
            return ResolverStats(
                hits=self._hits,
                misses=self._misses,
                negative_hits=self._negative_hits,
                in_flight=len(self._flights),
                entries=len(self._cache),
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _fresh(self, key: _Key, *, negative: bool) -> _Entry | None:
        """The cache entry of ``key`` if it has not expired, counted as a hit (a negative hit
        for a negative entry) and made the most recently used; else None. With ``negative``
        false a negative entry is None too, neither counted nor moved: :meth:`cached` leaves
        it to :meth:`resolve` to raise. An expired entry stays for the caller: :meth:`submit`
        drops it as it asks again, :meth:`cached` only looks. Called with the lock held."""
        entry = self._cache.get(key)
        if entry is None or (entry.infos is None and not negative):
            return None
        if not entry.expires > self._clock():
            return None
        self._cache.move_to_end(key)
        if entry.infos is None:
            self._negative_hits += 1
        else:
            self._hits += 1
        return entry

    def _finish(
        self,
        key: _Key,
        flight: _Flight,
        outcome: tuple[list[AddrInfo], float | None] | socket.gaierror,
    ) -> None:
        with self._lock:
            if self._flights.get(key) is not flight:
                return  # close() already failed its waiters
            del self._flights[key]
            if flight.store:
                if isinstance(outcome, socket.gaierror):
                    if outcome.errno in _NEGATIVE_ERRNOS and self.negative_ttl > 0:
                        self._store(
                            key, _Entry(self._clock() + self.negative_ttl, None, outcome.errno)
                        )
                else:
                    infos, ttl = outcome
                    ttl = DEFAULT_TTL if ttl is None else ttl
                    ttl = min(max(ttl, self.min_ttl), self.max_ttl)
                    if ttl > 0:
                        self._store(key, _Entry(self._clock() + ttl, infos))
            waiters = flight.waiters
        for future, port in waiters:
            if isinstance(outcome, socket.gaierror):
                _settle(future, exc=_gaierror(outcome.errno or socket.EAI_FAIL, flight.host))
            else:
                _settle(future, result=_with_port(outcome[0], port))

    def _store(self, key: _Key, entry: _Entry) -> None:
        cache = self._cache
        cache[key] = entry
        cache.move_to_end(key)
        if len(cache) > self.max_entries:
            # The least recently used goes, in constant time: looking for an expired entry
            # first meant a scan of the whole cache for every new name once it was full (a
            # crawl of new hosts spent a fifth of its time there). An expired entry is
            # dropped when it is next looked up, or when it becomes the least recently used.
            cache.popitem(last=False)

    def _query_threads(self, host: str, family: int, done: _Done) -> None:
        def run() -> None:
            try:
                infos = socket.getaddrinfo(host, 0, family, socket.SOCK_STREAM)
            except socket.gaierror as exc:
                done(exc)
            except Exception as exc:  # noqa: BLE001 - UnicodeError for a bad IDNA name, ...
                done(_as_gaierror(exc, host))
            else:
                done(([tuple(info) for info in infos], None))

        self._executor.submit(run)

    def _shutdown_threads(self) -> None:
        # getaddrinfo cannot be interrupted: queued calls are dropped, running ones finish
        # in the background and their answers are discarded
        self._executor.shutdown(wait=False, cancel_futures=True)


def _as_gaierror(exc: BaseException, host: str) -> socket.gaierror:
    if isinstance(exc, socket.gaierror):
        return exc
    return socket.gaierror(socket.EAI_FAIL, f"{_MESSAGES[socket.EAI_FAIL]} ({host!r}: {exc})")


def _settle(
    future: concurrent.futures.Future[list[AddrInfo]],
    result: list[AddrInfo] | None = None,
    exc: BaseException | None = None,
) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result if result is not None else [])
    except concurrent.futures.InvalidStateError:
        pass  # the caller cancelled its lookup


class _Channel:
    """One pycares Channel and its count of queries (see :class:`_CaresBackend`)."""

    __slots__ = ("channel", "closed", "pending", "retired", "started")

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.started = 0  # queries given to it
        self.pending = 0  # of those, not answered yet
        self.retired = False  # takes no new queries; closed once pending is 0
        self.closed = False


class _CaresBackend:
    """c-ares through pycares, on c-ares' own event thread (so queries never block the
    caller): ``ares_getaddrinfo`` asks A and AAAA in parallel and reports each address's TTL.

    c-ares (1.23+) keeps every answer in its channel's query cache until the answer's TTL runs
    out, with no size bound, and pycares has no switch for it (c-ares' ``qcache_max_ttl``
    option is not among pycares' ``Channel`` arguments). So every
    :attr:`queries_per_channel` queries, new queries go to a fresh channel, whose cache is
    empty, and the old channel is closed when its last query is answered: never cancelled,
    never waited for. Our own cache, with its TTL clamps and bound, is the one meant to
    remember answers.
    """

    #: queries one c-ares channel takes before new ones go to a fresh channel: its cache then
    #: holds at most this many names (some 2 KiB each), and opening a channel (a thread and a
    #: few descriptors, well under a millisecond) is rare next to the queries
    queries_per_channel = 1024
    #: retired channels allowed to wait for their last answers at once. Past it the current
    #: channel takes more queries until one is done: a name that times out keeps its whole
    #: channel (a thread, its descriptors, its cache) alive, and a few of them must not
    #: multiply those by the query rate.
    max_draining = 4

    def __init__(self, nameservers: list[str] | None) -> None:
        try:
            import pycares
        except ImportError as exc:
            raise ImportError(
                'Resolver(backend="cares") needs pycares: pip install fastpool[pycares]'
            ) from exc
        version = getattr(pycares, "__version__", "0")
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        options: dict[str, Any] = {"flags": pycares.ARES_FLAG_NOSEARCH}
        if major == 4:
            options["event_thread"] = True  # 5.x runs the event thread by default
        elif major != 5:
            raise ImportError(
                f'Resolver(backend="cares") supports pycares 4.x (with event_thread) and 5.x, '
                f"found pycares {version}"
            )
        if nameservers and major == 4:
            # 4.x's servers setter takes bare addresses: one port for all, as channel options
            hosts, ports = zip(*(_split_nameserver(ns) for ns in nameservers))
            if len(set(ports)) > 1:
                raise ValueError(f"pycares 4.x needs one port for all nameservers: {nameservers}")
            options["servers"] = list(hosts)
            if ports[0] is not None:
                options["udp_port"] = options["tcp_port"] = ports[0]
        elif nameservers:
            options["servers"] = list(nameservers)  # c-ares' "ip:port" / "[ipv6]:port" form
        self._pycares = pycares
        self._options = options
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._current = _Channel(pycares.Channel(**options))
        except TypeError as exc:  # a 4.x before event_thread
            raise ImportError(
                f'Resolver(backend="cares") needs a pycares with event_thread support (4.x '
                f"from late 2024, or 5.x); found pycares {version}: {exc}"
            ) from exc
        # retired channels that still have queries in flight (closed by their last answer)
        self._draining: set[_Channel] = set()
        #: channels opened so far, the first included (for tests and curiosity)
        self.channels_opened = 1
        errno = pycares.errno
        self._negative = {
            errno.ARES_ENOTFOUND: socket.EAI_NONAME,
            errno.ARES_EBADNAME: socket.EAI_NONAME,
            errno.ARES_ENODATA: _EAI_NODATA,
        }
        self._again = {
            errno.ARES_ESERVFAIL,
            errno.ARES_ETIMEOUT,
            errno.ARES_ECONNREFUSED,
            errno.ARES_EREFUSED,
            errno.ARES_EBADRESP,
        }
        self._strerror: Callable[[int], object] = errno.strerror

    def query(self, host: str, family: int, done: _Done) -> None:
        idle: _Channel | None = None
        with self._lock:
            if self._closed:
                raise ResolverClosedError("the resolver is closed")
            if (
                self._current.started >= self.queries_per_channel
                and len(self._draining) < self.max_draining
            ):
                idle = self._recycle()
            chan = self._current
            chan.started += 1
            chan.pending += 1  # counted before it is sent, so chan cannot be closed under it
        if idle is not None:
            idle.channel.close()

        def callback(result: Any, status: int | None) -> None:
            try:
                # before done(), so that the old channel's close is asked for by the time a
                # caller sees its answer
                self._answered(chan)
                if status is not None:
                    done(self._error(status, host))
                    return
                infos: list[AddrInfo] = []
                ttls: list[int] = []
                for node in result.nodes:
                    addr = node.addr
                    ip = addr[0].decode("ascii") if isinstance(addr[0], bytes) else addr[0]
                    infos.append(
                        (
                            socket.AddressFamily(node.family),
                            socket.SOCK_STREAM,
                            socket.IPPROTO_TCP,
                            "",
                            (ip, 0, *addr[2:]),
                        )
                    )
                    ttls.append(int(node.ttl))
                if not infos:
                    done(_gaierror(_EAI_NODATA, host))
                else:
                    done((infos, float(min(ttls))))
            except Exception as exc:  # noqa: BLE001 - never let an error die silently on c-ares' thread
                done(_as_gaierror(exc, host))

        try:
            chan.channel.getaddrinfo(
                host,
                None,
                family=socket.AddressFamily(family),
                type=socket.SOCK_STREAM,
                proto=socket.IPPROTO_TCP,
                callback=callback,
            )
        except BaseException:
            self._answered(chan)  # refused: pycares will not call back
            raise

    def _recycle(self) -> _Channel | None:
        """Make a fresh channel the current one (called with the lock held). Returns the old
        one when it has nothing in flight, for the caller to close once the lock is released;
        otherwise its last answer closes it."""
        old = self._current
        try:
            self._current = _Channel(self._pycares.Channel(**self._options))
        except Exception:  # noqa: BLE001 - out of descriptors or threads: lookups go on
            old.started = 0  # on the old channel (its cache grows a while); try again later
            return None
        self.channels_opened += 1
        old.retired = True
        if old.pending:
            self._draining.add(old)
            return None
        old.closed = True
        return old

    def _answered(self, chan: _Channel) -> None:
        """One of ``chan``'s queries is answered (or was refused): close ``chan`` if it is
        retired and this was its last."""
        with self._lock:
            chan.pending -= 1
            if not chan.retired or chan.pending or chan.closed:
                return
            chan.closed = True
            self._draining.discard(chan)
        # Outside the lock: ours is never held while calling into a channel that may be busy
        # (c-ares' thread runs this, holding c-ares' lock). pycares' close() (4.11, 5.x) only queues the
        # channel for its shutdown thread, so it neither waits nor joins the thread we are on.
        chan.channel.close()

    def _error(self, status: int, host: str) -> socket.gaierror:
        errno = self._negative.get(status)
        if errno is None:
            errno = socket.EAI_AGAIN if status in self._again else socket.EAI_FAIL
        return socket.gaierror(
            errno, f"{_MESSAGES[errno]} ({host!r}: c-ares {self._strerror(status)!s})"
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            chans = [c for c in (self._current, *self._draining) if not c.closed]
            self._draining.clear()
            for chan in chans:
                chan.retired = chan.closed = True
        # pycares cancels what is still in flight: the Resolver already failed its lookups
        for chan in chans:
            chan.channel.close()


def _split_nameserver(nameserver: str) -> tuple[str, int | None]:
    """("127.0.0.1", 5353) for "127.0.0.1:5353", ("::1", 53) for "[::1]:53", (ns, None) bare."""
    if nameserver.startswith("["):
        host, _, rest = nameserver[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if nameserver.count(":") == 1:
        host, _, port = nameserver.partition(":")
        return host, int(port)
    return nameserver, None


def happy_eyeballs_order(infos: list[AddrInfo]) -> list[AddrInfo]:
    """RFC 8305 section 4: interleave address families, preferred family (of the first result)
    first. Within a family the input (the resolver's, RFC 6724) order is kept: for
    ``[v6a, v6b, v4a, v4b]`` this gives ``[v6a, v4a, v6b, v4b]``; a single-family list comes
    back as it is."""
    if not infos:
        return []
    by_family: dict[int, list[AddrInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())  # insertion order: the first result's family first
    ordered: list[AddrInfo] = []
    for i in range(max(len(q) for q in queues)):
        ordered.extend(q[i] for q in queues if i < len(q))
    return ordered


def _rebuild(settings: dict[str, Any]) -> Resolver:
    return Resolver(**settings)


#: Resolver.resolve as this module defined it: the map's loop asks the cache and submit() in
#: its place only while it is still the one a connection would call (a subclass's or a patch's
#: must be asked, even a patch made before fastpool.connection was first imported)
OWN_RESOLVE = Resolver.resolve
