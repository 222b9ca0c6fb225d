"""Crawling on a Dask cluster: one long-lived :class:`fastpool.Session` per worker, host-affine
batches, exactly-once results, cluster-wide pool stats. Needs the ``dask`` extra
(``pip install 'fastpool[dask]'``); nothing else in fastpool imports this module.

* :class:`SessionPlugin`, a ``distributed.WorkerPlugin``: each worker builds one
  ``fastpool.Session`` from the caller's *settings* (plain, picklable data) in ``setup``, after
  the worker process started (fork, spawn or forkserver alike), plus a thread pool over it; both
  are closed in ``teardown``. The plugin pickles its settings only, never a Session, and a
  restarted worker runs ``setup`` again: a fresh Session.
* :func:`crawl`: ``for result in crawl(client, urls): ...``. Every URL of a host goes to the same
  worker (rendezvous hashing of the host name with BLAKE2b, which is stable across processes and
  runs, unlike ``hash``), in bounded batches pinned to that worker (``workers=[address]``,
  ``allow_other_workers=False``), a bounded number in flight, results yielded as they arrive as
  :class:`CrawlResult`. A worker that leaves the cluster has its batches cancelled and sent to
  the hosts' next worker; each URL's result is yielded exactly once.
* :func:`cluster_stats` / :meth:`Crawl.stats`: every worker's ``Session.pool_stats()``, merged
  with :func:`fastpool.stats.merge`; :meth:`Crawl.advice` runs :func:`fastpool.stats.advise`
  over them.

Each worker runs ``threads`` requests at a time on a thread pool over its one Session: the
concurrent engine of issue 16 does not exist yet; when it does, the workers will use it.
See docs/cluster.md ("Crawling on a cluster").
"""

from __future__ import annotations

try:
    import distributed
    from distributed import Client, Future, KilledWorker, WorkerPlugin, get_worker, secede
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastpool.dask needs Dask's distributed scheduler, which is an optional extra: "
        "pip install 'fastpool[dask]' (or: pip install 'dask[distributed]')"
    ) from exc

import contextlib
import hashlib
import itertools
import json
import os
import queue
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union
from urllib.parse import urlsplit

from .exceptions import describe_error
from .stats import PoolStats, advise, merge

if TYPE_CHECKING:
    from distributed import Worker

    from .sessions import Session

__all__ = (
    "Crawl",
    "CrawlResult",
    "SessionPlugin",
    "WorkerLost",
    "cluster_stats",
    "crawl",
    "host_key",
    "host_workers",
    "register",
    "worker_session",
)

#: Keys of the settings set as attributes on the Session after it is built (``headers`` is
#: merged into the default headers); every other key except ``adapter`` is a keyword argument
#: of ``fastpool.Session``. ``adapter``, when given, is a dict of ``fastpool.HTTPAdapter``
#: keyword arguments: one such adapter is mounted for ``http://`` and ``https://`` instead.
SESSION_ATTRIBUTES = (
    "headers",
    "verify",
    "cert",
    "proxies",
    "trust_env",
    "max_redirects",
    "params",
)

#: Settings also passed with every request: requests lets ``REQUESTS_CA_BUNDLE``/
#: ``CURL_CA_BUNDLE`` and the proxy variables of the worker's environment override a Session's
#: ``verify`` and ``proxies``; the caller's settings must win on every worker.
REQUEST_SETTINGS = ("verify", "cert", "proxies")

#: Seconds a batch waits on a new worker for the plugin's ``setup`` to have run.
_SETUP_WAIT = 30.0
#: Seconds the client waits at most for a finished batch's results to arrive.
_RESULT_WAIT = 120.0


# --- the worker-resident Session -----------------------------------------------------------------


def build_session(settings: Mapping[str, Any]) -> Session:
    """A ``fastpool.Session`` from ``settings`` (see :data:`SESSION_ATTRIBUTES`); what each
    worker's :class:`SessionPlugin` calls in ``setup``. ``ValueError``/``TypeError`` for a bad
    setting."""
    from .adapters import HTTPAdapter
    from .sessions import Session

    options = dict(settings)
    adapter_options = options.pop("adapter", None)
    attributes = {name: options.pop(name) for name in SESSION_ATTRIBUTES if name in options}
    session = Session(**options)
    try:
        if adapter_options is not None:
            for default in session._distinct_adapters():
                default.close()
            adapter = HTTPAdapter(**dict(adapter_options))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        headers = attributes.pop("headers", None)
        if headers is not None:
            session.headers.update(headers)
        for name, value in attributes.items():
            setattr(session, name, value)
    except BaseException:
        session.close()
        raise
    return session


def _plugin_name(settings: Mapping[str, Any], threads: int) -> str:
    # The same settings give the same name on every client, so crawls with the same settings
    # share the workers' Sessions (and their per-host limits); other settings get their own.
    text = json.dumps({"settings": settings, "threads": threads}, sort_keys=True, default=repr)
    return "fastpool-session-" + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class SessionPlugin(WorkerPlugin):
    """Gives each Dask worker one long-lived ``fastpool.Session`` and a thread pool over it.

    ``SessionPlugin(settings=None, threads=8, name=None)``: ``settings`` are plain, picklable
    data (see :data:`SESSION_ATTRIBUTES`); the plugin is pickled with them only, and each
    worker builds its Session in :meth:`setup` and closes it in :meth:`teardown` (when the
    worker closes or the plugin is unregistered). A worker started or restarted later gets the
    plugin from the scheduler and a fresh Session. ``threads`` (default 8) is the size of each
    worker's thread pool, that is the requests a worker has in flight. ``name`` defaults to
    ``"fastpool-session-"`` and a digest of the settings and threads, so registering the same
    settings twice keeps the existing Sessions (``idempotent``).

    On a worker, :func:`worker_session` returns the Session, for your own tasks.
    """

    idempotent = True

    def __init__(
        self, settings: Mapping[str, Any] | None = None, threads: int = 8, name: str | None = None
    ) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.settings: dict[str, Any] = dict(settings or {})
        self.threads = threads
        self.name = name or _plugin_name(self.settings, threads)
        # Worker-side state, created in setup (never pickled: see __getstate__).
        self.session: Session | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.address: str | None = None
        self.started: float | None = None
        self._limits: dict[tuple[str, int], threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Settings only: a Session, its sockets and its threads never cross a pickle boundary.
        return {"settings": self.settings, "threads": self.threads, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"], state["threads"], state["name"])  # type: ignore[misc]

    def setup(self, worker: Worker) -> None:
        """Build this worker's Session and thread pool (runs in the worker process)."""
        self.session = build_session(self.settings)
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="fastpool-crawl")
        self.address = str(worker.address)
        self.started = time.time()

    def teardown(self, worker: Worker) -> None:
        """Stop the thread pool (queued requests are dropped) and close the Session: its idle
        connections are closed now; requests in flight finish or fail."""
        executor, session = self.executor, self.session
        self.executor = self.session = None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if session is not None:
            session.close()

    def host_limit(self, host: str, limit: int) -> threading.BoundedSemaphore:
        """The semaphore that holds this worker to ``limit`` requests in flight to ``host``
        (shared by every crawl on the worker with that limit)."""
        with self._lock:
            semaphore = self._limits.get((host, limit))
            if semaphore is None:
                semaphore = self._limits[(host, limit)] = threading.BoundedSemaphore(limit)
            return semaphore


def _check_settings(settings: Mapping[str, Any]) -> None:
    # Build (and close) one Session here, so a bad setting fails on the client, not in the
    # setup of every worker.
    build_session(settings).close()


def register(client: Client, settings: Mapping[str, Any] | None = None, threads: int = 8) -> str:
    """Register a :class:`SessionPlugin` for ``settings``/``threads`` on ``client``'s cluster
    (a no-op when one with the same settings is there) and return its name."""
    plugin = SessionPlugin(settings, threads)
    _check_settings(plugin.settings)
    client.register_plugin(plugin)
    return plugin.name


def _plugin_on(worker: Any, name: str, wait: float = _SETUP_WAIT) -> SessionPlugin:
    deadline = time.monotonic() + wait
    while True:
        plugin = worker.plugins.get(name)
        if isinstance(plugin, SessionPlugin) and plugin.session is not None:
            return plugin
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"fastpool.dask: no Session plugin {name!r} on worker {worker.address}; "
                "register it first (fastpool.dask.register)"
            )
        time.sleep(0.05)  # a worker that just started may still be running the plugin's setup


def worker_session(name: str | None = None) -> Session:
    """Inside a task: this worker's ``fastpool.Session`` of the plugin ``name`` (default: the
    only fastpool plugin on the worker)."""
    worker = get_worker()
    if name is None:
        names = [key for key, p in worker.plugins.items() if isinstance(p, SessionPlugin)]
        if len(names) != 1:
            raise RuntimeError(f"fastpool.dask: name one of the Session plugins {names!r}")
        name = names[0]
    session = _plugin_on(worker, name).session
    assert session is not None
    return session


# --- host affinity -------------------------------------------------------------------------------


def host_key(url: str) -> str:
    """The affinity key of ``url``: its host name, lower-cased ("" when there is none). Every
    scheme and port of a host shares the key, so politeness holds per host."""
    try:
        return urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""


def _score(host: str, worker: str) -> int:
    digest = hashlib.blake2b(f"{host}\x00{worker}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def host_workers(host: str, workers: Iterable[str], k: int = 1) -> list[str]:
    """The ``k`` workers ``host`` goes to among ``workers`` (addresses): rendezvous hashing,
    highest score first. Stable across processes and runs (BLAKE2b, not ``hash``); when a
    worker leaves, only its hosts move, and they move to their next worker in this order."""
    ranked = sorted(set(workers), key=lambda worker: (_score(host, worker), worker), reverse=True)
    return ranked[: max(1, k)]


# --- results -------------------------------------------------------------------------------------


class CrawlResult(NamedTuple):
    """One URL's outcome, the shape of the single-machine crawl.

    ``status`` is the HTTP status (None when the request failed), ``headers`` the response
    headers (a plain dict; repeated headers joined by ", " as in requests), ``size`` the body
    bytes received (decoded, as ``len(response.content)``), ``elapsed`` the seconds from sending
    to the end of the body (a wait for a per-host slot is not included), ``error`` ``"Kind:
    detail"`` as ``fastpool crawl`` prints it (None on success), ``position`` the URL's index
    in the input, ``path`` where the worker wrote the body (None when not asked), ``worker`` the
    worker's address.
    """

    url: str
    status: Optional[int]  # noqa: UP045 - get_type_hints evaluates these; 3.9 has no X | None
    headers: dict[str, str]
    size: int
    elapsed: float
    error: Optional[str]  # noqa: UP045
    position: int
    path: Optional[str] = None  # noqa: UP045
    worker: Optional[str] = None  # noqa: UP045

    @property
    def ok(self) -> bool:
        """True when a response arrived (any status)."""
        return self.error is None


class WorkerLost(RuntimeError):
    """The error of a URL whose batch was lost with its worker ``max_attempts`` times."""


# One URL on its way: (index in the input, url, body path or None).
_Item = tuple[int, str, Optional[str]]


def _write_body(response: Any, path: str) -> int:
    # Written to a temporary name and renamed: a worker dying mid-body never leaves a partial
    # file at ``path``, and a retried URL simply writes it again.
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    partial = f"{path}.part-{os.getpid()}-{threading.get_ident()}"
    size = 0
    try:
        with open(partial, "wb") as stream:
            for chunk in response.iter_content(65536):
                stream.write(chunk)
                size += len(chunk)
        os.replace(partial, path)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise
    return size


def _fetch(
    session: Any,
    item: _Item,
    options: dict[str, Any],
    slot: threading.BoundedSemaphore | None,
    worker: str,
) -> CrawlResult:
    index, url, path = item
    if slot is not None:
        slot.acquire()
    started = time.perf_counter()
    try:
        if path is None:
            response = session.get(url, **options)
            size = len(response.content)
        else:
            with session.get(url, stream=True, **options) as response:
                size = _write_body(response, path)
    except Exception as exc:  # noqa: BLE001 - a failure is a per-URL result, the crawl goes on
        elapsed = time.perf_counter() - started
        return CrawlResult(url, None, {}, 0, elapsed, describe_error(exc), index, None, worker)
    finally:
        if slot is not None:
            slot.release()
    elapsed = time.perf_counter() - started
    headers = dict(response.headers)
    return CrawlResult(url, response.status_code, headers, size, elapsed, None, index, path, worker)


def _run_batch(
    name: str, items: list[_Item], limits: dict[str, int], timeout: float | None
) -> list[CrawlResult]:
    """The task: fetch ``items`` on this worker's thread pool over its Session."""
    worker = get_worker()
    plugin = _plugin_on(worker, name)
    session, executor = plugin.session, plugin.executor
    assert session is not None and executor is not None
    # Leave the worker's task slot while the pool works: the next batch (the client keeps
    # ``prefetch`` per worker in flight) starts at once and keeps the thread pool busy.
    secede()  # type: ignore[no-untyped-call]
    address = str(worker.address)
    options = {key: plugin.settings[key] for key in REQUEST_SETTINGS if key in plugin.settings}
    options["timeout"] = timeout
    slots = {host: plugin.host_limit(host, limit) for host, limit in limits.items()}
    results: list[CrawlResult | None] = [None] * len(items)
    lock = threading.Lock()
    position = [0]

    def drain() -> None:
        # One loop per pool thread over the batch, rather than a future per URL: the waits
        # and wake-ups of 100 futures cost more CPU than the requests' own Python.
        while True:
            with lock:
                i = position[0]
                position[0] += 1
            if i >= len(items):
                return
            item = items[i]
            slot = slots.get(host_key(item[1])) if slots else None
            results[i] = _fetch(session, item, options, slot, address)

    loops = [executor.submit(drain) for _ in range(min(plugin.threads, len(items)))]
    for loop in loops:
        loop.result()
    return [result for result in results if result is not None]


# --- cluster-wide stats --------------------------------------------------------------------------


def _worker_stats(name: str, dask_worker: Any = None) -> PoolStats | None:
    plugin = dask_worker.plugins.get(name) if dask_worker is not None else None
    if not isinstance(plugin, SessionPlugin) or plugin.session is None:
        return None
    return plugin.session.pool_stats()  # type: ignore[no-any-return]


def cluster_stats(client: Client, name: str) -> dict[str, PoolStats]:
    """``{worker address: PoolStats}`` of the Session of plugin ``name`` on every worker that
    has it (workers that fail to answer are left out). Counters run since each worker's Session
    was created; ``fastpool.stats.merge(result.values())`` gives the cluster's."""
    answers = client.run(_worker_stats, name, on_error="ignore")
    return {address: stats for address, stats in answers.items() if stats is not None}


# --- the crawl -----------------------------------------------------------------------------------


class _Frontier:
    """One worker's URLs not yet submitted, by host; batches take the hosts in turn."""

    def __init__(self) -> None:
        self.hosts: OrderedDict[str, deque[_Item]] = OrderedDict()
        self.count = 0

    def add(self, host: str, item: _Item, front: bool = False) -> None:
        queue_ = self.hosts.get(host)
        if queue_ is None:
            queue_ = self.hosts[host] = deque()
        if front:
            queue_.appendleft(item)
        else:
            queue_.append(item)
        self.count += 1

    def take(self, n: int) -> list[_Item]:
        taken: list[_Item] = []
        while len(taken) < n and self.hosts:
            host, queue_ = next(iter(self.hosts.items()))
            taken.append(queue_.popleft())
            if queue_:
                self.hosts.move_to_end(host)
            else:
                del self.hosts[host]
        self.count -= len(taken)
        return taken

    def drain(self) -> list[tuple[str, _Item]]:
        items = [(host, item) for host, queue_ in self.hosts.items() for item in queue_]
        self.hosts.clear()
        self.count = 0
        return items


class _Batch:
    __slots__ = ("future", "items", "worker")

    def __init__(self, worker: str, items: list[_Item], future: Future[list[CrawlResult]]) -> None:
        self.worker = worker
        self.items = items
        self.future = future


UrlInput = Union[str, tuple[str, Optional[str]]]


class Crawl:
    """A crawl on a Dask cluster; made by :func:`crawl` (see it for the arguments). Iterate it
    once for the :class:`CrawlResult` of every URL, in completion order; then :meth:`stats`
    and :meth:`advice` describe the workers' pools. Leaving the loop early cancels the batches
    still in flight.

    Counters, readable at any time: ``submitted`` batches, ``resubmitted`` URLs (sent again
    after their worker was lost), ``duplicates`` (results dropped because that URL's result
    was already yielded: 0 unless a cancelled batch's result raced in), ``workers_lost``
    (addresses), ``hosts_per_worker`` (a Counter of the hosts each worker was given).
    """

    def __init__(
        self,
        client: Client,
        urls: Iterable[UrlInput],
        *,
        name: str,
        threads: int,
        batch_size: int,
        prefetch: int,
        per_host: int | None,
        split: Mapping[str, int],
        timeout: float | None,
        body_dir: str | None,
        poll_interval: float,
        max_attempts: int,
        worker_wait: float,
        on_event: Callable[[str], None] | None,
    ) -> None:
        self.client = client
        self.name = name
        self.threads = threads
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.per_host = per_host
        self.split = {host.lower(): n for host, n in split.items()}
        self.timeout = timeout
        self.body_dir = body_dir
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.worker_wait = worker_wait
        self.on_event = on_event
        self._source = self._items(urls)
        self._exhausted = False
        self._started = False
        self._id = uuid.uuid4().hex[:12]
        self._seq = itertools.count()
        self.workers: list[str] = []
        self._owners: dict[str, list[str]] = {}  # host -> its workers (several when split)
        self._turn: Counter[str] = Counter()  # round robin over a split host's workers
        self._frontier: dict[str, _Frontier] = {}
        self._buffered = 0
        self._inflight: dict[str, _Batch] = {}
        self._inflight_per_worker: Counter[str] = Counter()
        self._done: queue.Queue[Future[list[CrawlResult]]] = queue.Queue()
        self._attempts: Counter[int] = Counter()  # index -> times its worker was lost
        self._delivered = bytearray()  # one bit per index: belt and braces for exactly-once
        self._ready: deque[CrawlResult] = deque()  # results to yield
        self._last_check = 0.0
        self.submitted = 0
        self.resubmitted = 0
        self.duplicates = 0
        self.workers_lost: list[str] = []
        self.hosts_per_worker: Counter[str] = Counter()

    # --- input ---
    def _items(self, urls: Iterable[UrlInput]) -> Iterator[_Item]:
        for index, entry in enumerate(urls):
            if isinstance(entry, str):
                url, path = entry, None
            else:
                url, path = entry
            if path is None and self.body_dir is not None:
                path = os.path.join(self.body_dir, f"{index:08d}")
            yield index, url, path

    def _buffer_limit(self) -> int:
        return self.batch_size * max(1, self.prefetch * len(self.workers)) * 2

    def _fill(self) -> None:
        while not self._exhausted and self._buffered < self._buffer_limit():
            item = next(self._source, None)
            if item is None:
                self._exhausted = True
                break
            self._route(item)

    # --- affinity ---
    def _limit(self, host: str) -> int | None:
        if self.per_host is None:
            return None
        return max(1, self.per_host // len(self._owners.get(host) or [""]))

    def _workers_of(self, host: str) -> list[str]:
        owners = self._owners.get(host)
        if owners is None:
            owners = host_workers(host, self.workers, self.split.get(host, 1))
            self._owners[host] = owners
            for worker in owners:
                self.hosts_per_worker[worker] += 1
        return owners

    def _route(self, item: _Item, front: bool = False) -> None:
        host = host_key(item[1])
        owners = self._workers_of(host)
        worker = owners[0]
        if len(owners) > 1:
            worker = owners[self._turn[host] % len(owners)]
            self._turn[host] += 1
        self._frontier.setdefault(worker, _Frontier()).add(host, item, front)
        self._buffered += 1

    # --- workers ---
    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def _live_workers(self) -> list[str]:
        return sorted(self.client.nthreads())  # type: ignore[no-untyped-call]

    def _wait_for_workers(self) -> None:
        deadline = time.monotonic() + self.worker_wait
        while True:
            live = self._live_workers()
            if live:
                self.workers = live
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"fastpool.dask: no Dask worker for {self.worker_wait:g} s")
            time.sleep(min(0.5, self.poll_interval))

    def _check_workers(self) -> None:
        self._last_check = time.monotonic()
        live = self._live_workers()
        gone = sorted(set(self.workers) - set(live))
        self.workers = live
        if not gone:
            return
        if not live:
            self._wait_for_workers()
        for worker in gone:
            self._lose(worker)

    def _lose(self, worker: str) -> None:
        """``worker`` left the cluster: cancel its batches, move its hosts and URLs on."""
        self.workers_lost.append(worker)
        requeue: list[_Item] = []
        for key, batch in list(self._inflight.items()):
            if batch.worker == worker:
                del self._inflight[key]
                # Pinned to a worker that is gone, the task would wait forever (no-worker):
                # cancel it, so it never runs again should a worker come back at that address.
                batch.future.cancel()  # type: ignore[no-untyped-call]
                requeue += batch.items
        self._inflight_per_worker.pop(worker, None)
        frontier = self._frontier.pop(worker, None)
        queued = [item for _host, item in frontier.drain()] if frontier else []
        self._buffered -= len(queued)
        moved_hosts = 0
        for host, owners in self._owners.items():
            if worker in owners:
                moved_hosts += 1
                rest = [w for w in owners if w != worker]
                ranked = host_workers(host, self.workers, len(self.workers))
                for candidate in ranked:
                    if len(rest) >= len(owners) or candidate in rest:
                        continue
                    rest.append(candidate)
                    self.hosts_per_worker[candidate] += 1
                    if len(rest) >= len(owners):
                        break
                self._owners[host] = rest or ranked[:1]
        self._event(
            f"worker {worker} lost: {moved_hosts} hosts and {len(requeue) + len(queued)} URLs "
            f"({len(requeue)} in flight) moved to the other workers"
        )
        self._requeue(requeue, lost=True)
        for item in queued:
            self._route(item)

    def _requeue(self, items: list[_Item], lost: bool) -> None:
        """Put ``items`` back at the front of their hosts' queues; those that already lost
        ``max_attempts`` workers get a WorkerLost result instead."""
        for item in items:
            index = item[0]
            if self._is_delivered(index):
                continue
            if lost:
                self._attempts[index] += 1
            if self._attempts[index] >= self.max_attempts:
                self._ready.append(self._lost_result(item))
                continue
            self.resubmitted += 1
            self._route(item, front=True)

    def _lost_result(self, item: _Item) -> CrawlResult:
        index, url, _ = item
        text = describe_error(WorkerLost(f"its worker was lost {self._attempts[index]} times"))
        return CrawlResult(url, None, {}, 0, 0.0, text, index)

    # --- submission ---
    def _submit_ready(self) -> None:
        for worker in sorted(self.workers, key=lambda w: self._inflight_per_worker[w]):
            frontier = self._frontier.get(worker)
            while (
                frontier is not None
                and frontier.count
                and (self._inflight_per_worker[worker] < self.prefetch)
            ):
                full = frontier.count >= self.batch_size
                if not (full or self._exhausted or self._buffered >= self._buffer_limit()):
                    break  # wait for more input to fill the batch
                self._submit(worker, frontier.take(self.batch_size))

    def _submit(self, worker: str, items: list[_Item]) -> None:
        self._buffered -= len(items)
        limits: dict[str, int] = {}
        for _index, url, _path in items:
            host = host_key(url)
            limit = self._limit(host)
            if limit is not None:
                limits[host] = limit
        key = f"fastpool-crawl-{self._id}-{next(self._seq)}"
        future: Future[list[CrawlResult]] = self.client.submit(
            _run_batch,
            self.name,
            items,
            limits,
            self.timeout,
            key=key,
            workers=[worker],
            allow_other_workers=False,
            pure=False,
        )
        self._inflight[key] = _Batch(worker, items, future)
        self._inflight_per_worker[worker] += 1
        self.submitted += 1
        future.add_done_callback(self._done.put)  # type: ignore[no-untyped-call]

    # --- results ---
    def _is_delivered(self, index: int) -> bool:
        byte = index >> 3
        return byte < len(self._delivered) and bool(self._delivered[byte] & (1 << (index & 7)))

    def _deliver(self, result: CrawlResult) -> bool:
        index = result.position
        if self._is_delivered(index):
            self.duplicates += 1
            return False
        byte = index >> 3
        if byte >= len(self._delivered):
            self._delivered.extend(bytes(byte + 1 - len(self._delivered) + 1024))
        self._delivered[byte] |= 1 << (index & 7)
        self._attempts.pop(index, None)
        return True

    def _collect(self, future: Future[list[CrawlResult]]) -> None:
        batch = self._inflight.pop(str(future.key), None)
        if batch is None or batch.future is not future:
            return  # cancelled by us (its worker was lost) or already handled
        self._inflight_per_worker[batch.worker] -= 1
        results: list[CrawlResult] = []
        try:
            status = future.status
            if status == "finished":
                results = self._result(batch)
            elif status == "error":
                error = future.exception()  # type: ignore[no-untyped-call]
                if not isinstance(error, KilledWorker):
                    raise RuntimeError(f"fastpool.dask: a crawl task failed: {error!r}") from error
            # "cancelled" (not by us: a client.restart, say) or KilledWorker: run them again
        finally:
            future.release()  # type: ignore[no-untyped-call]
        self._ready.extend(results)
        returned = {result.position for result in results}
        missing = [item for item in batch.items if item[0] not in returned]
        if missing:
            self._check_workers()
            self._requeue(missing, lost=True)

    def _result(self, batch: _Batch) -> list[CrawlResult]:
        """The finished batch's results, or [] when they were lost with its worker (the
        client then reschedules the task, which, pinned to a worker that is gone, would never
        finish)."""
        deadline = time.monotonic() + _RESULT_WAIT
        while True:
            try:
                return batch.future.result(timeout=max(1.0, 2 * self.poll_interval))
            except TimeoutError:
                if time.monotonic() > deadline or batch.worker not in self._live_workers():
                    return []
            except Exception:  # noqa: BLE001 - lost with its worker: run the URLs again
                return []

    def _cancel_all(self) -> None:
        futures = [batch.future for batch in self._inflight.values()]
        self._inflight.clear()
        self._inflight_per_worker.clear()
        if futures:
            try:
                self.client.cancel(futures)  # type: ignore[no-untyped-call]
            except Exception:  # noqa: BLE001, S110 - a closing client: nothing left to cancel
                pass

    def __iter__(self) -> Iterator[CrawlResult]:
        if self._started:
            raise RuntimeError("a Crawl can be iterated once")
        self._started = True
        try:
            self._wait_for_workers()
            while True:
                self._fill()
                self._submit_ready()
                if not self._inflight and not self._ready:
                    if self._exhausted and self._buffered == 0:
                        return
                    if not self.workers:
                        self._wait_for_workers()
                try:
                    first = self._done.get(timeout=self.poll_interval)
                except queue.Empty:
                    first = None
                batch = [first] if first is not None else []
                while True:
                    try:
                        batch.append(self._done.get_nowait())
                    except queue.Empty:
                        break
                for future in batch:
                    self._collect(future)
                if time.monotonic() - self._last_check >= self.poll_interval:
                    self._check_workers()
                while self._ready:
                    result = self._ready.popleft()
                    if self._deliver(result):
                        yield result
        finally:
            self._cancel_all()

    # --- stats ---
    def stats(self) -> PoolStats:
        """The workers' pools merged (:func:`cluster_stats`, :func:`fastpool.stats.merge`)."""
        return merge(cluster_stats(self.client, self.name).values())

    def advice(self, stats: PoolStats | None = None) -> list[str]:
        """:func:`fastpool.stats.advise` over the cluster (``stats`` default: :meth:`stats`),
        with this crawl's threads per worker and the most hosts any one worker was given (the
        number each worker's ``pool_connections`` must hold)."""
        hosts = max(self.hosts_per_worker.values(), default=None)
        return advise(stats or self.stats(), threads=self.threads, hosts=hosts)


def crawl(
    client: Client,
    urls: Iterable[UrlInput],
    *,
    settings: Mapping[str, Any] | None = None,
    threads: int = 8,
    batch_size: int = 100,
    prefetch: int = 2,
    per_host: int | None = None,
    split: Mapping[str, int] | None = None,
    timeout: float | None = 10.0,
    body_dir: str | None = None,
    poll_interval: float = 0.5,
    max_attempts: int = 3,
    worker_wait: float = 60.0,
    on_event: Callable[[str], None] | None = None,
) -> Crawl:
    """GET every URL on ``client``'s cluster; returns a :class:`Crawl` to iterate for the
    :class:`CrawlResult` of each URL, in completion order, each URL's exactly once.

    - ``urls``: strings, or ``(url, path)`` pairs whose body the worker writes to ``path`` (a
      path on the worker's file system); consumed lazily, a bounded number ahead.
    - ``settings`` (default None: ``fastpool.Session()``'s defaults) and ``threads`` (default 8
      per worker): the workers' :class:`SessionPlugin`, registered here if it is not already.
    - ``batch_size`` (default 100) URLs per task, ``prefetch`` (default 2) tasks in flight per
      worker: the backpressure; results are only fetched as fast as the loop takes them.
    - ``per_host`` (default None: no limit): requests in flight per host across the cluster;
      a host ``split`` over n workers gets ``per_host // n`` (at least 1) on each.
    - ``split``: ``{host: n}`` sends that host's URLs to its first n workers in turn (hot
      hosts); every other host goes to exactly one worker.
    - ``timeout`` (default 10 s): connect and read timeout of each request.
    - ``body_dir``: write each body to ``body_dir/NNNNNNNN`` (the URL's index) on the worker.
    - ``poll_interval`` (default 0.5 s): how often the scheduler's worker list is read to find
      lost workers; ``max_attempts`` (default 3): workers a URL may lose before its result is
      a ``WorkerLost`` error; ``worker_wait`` (default 60 s): how long to wait for a worker.
    - ``on_event(text)``: told when a worker is lost and its URLs move.
    """
    for label, value, minimum in (
        ("threads", threads, 1),
        ("batch_size", batch_size, 1),
        ("prefetch", prefetch, 1),
        ("max_attempts", max_attempts, 1),
    ):
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"{label} must be an int >= {minimum}, got {value!r}")
    if per_host is not None and (not isinstance(per_host, int) or per_host < 1):
        raise ValueError(f"per_host must be None or an int >= 1, got {per_host!r}")
    for host, n in (split or {}).items():
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"split[{host!r}] must be an int >= 1, got {n!r}")
    name = register(client, settings, threads)
    return Crawl(
        client,
        urls,
        name=name,
        threads=threads,
        batch_size=batch_size,
        prefetch=prefetch,
        per_host=per_host,
        split=split or {},
        timeout=timeout,
        body_dir=body_dir,
        poll_interval=poll_interval,
        max_attempts=max_attempts,
        worker_wait=worker_wait,
        on_event=on_event,
    )


@contextlib.contextmanager
def connect(target: str) -> Iterator[tuple[Client, str]]:
    """``with connect(target) as (client, description):`` a Client of the scheduler at
    ``target`` (an address such as ``tcp://10.0.0.5:8786``), or of a :func:`local_cluster` of N
    worker processes for ``"local:N"``, closed (with the local cluster) on exit. The client
    fetches results from the workers directly (``direct_to_workers=True``), not through the
    scheduler: it must be able to reach the workers' addresses."""
    if target.startswith("local:"):
        workers = int(target[len("local:") :])
        with local_cluster(workers) as cluster:
            client = Client(cluster, direct_to_workers=True)  # type: ignore[no-untyped-call]
            try:
                yield client, f"LocalCluster of {workers} worker processes"
            finally:
                client.close()  # type: ignore[no-untyped-call]
        return
    client = Client(target, timeout="30s", direct_to_workers=True)  # type: ignore[no-untyped-call]
    try:
        yield client, f"scheduler {target}"
    finally:
        client.close()  # type: ignore[no-untyped-call]


def local_cluster(workers: int, **kwargs: Any) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` worker processes, one task thread each,
    the scheduler's HTTP server (and dashboard, with bokeh) on a free port, quiet logs (what
    ``fastpool crawl --dask local:N`` starts)."""
    import logging

    options: dict[str, Any] = {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",  # a free port (the dashboard itself needs bokeh)
        "silence_logs": logging.ERROR,
    }
    options.update(kwargs)
    return distributed.LocalCluster(**options)  # type: ignore[no-untyped-call]
