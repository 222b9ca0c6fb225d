"""Trace hooks: see each step a pool takes for a request, as it happens.

A :class:`Trace` is a registry of callables per event. Register hooks with
``add_trace_hook(event, hook)`` on a PoolManager, an HTTPAdapter or a Session (or pass
``PoolManager(trace=Trace())``): the pools then report the events listed in :data:`EVENTS`,
each through one step of :class:`PoolSteps` (a context manager for the events that come in
pairs, as httpcore's ``Trace``). A pool chooses once, when its Trace is set, between its plain
path and its traced path: without a Trace (the default) a request runs no trace code at all.

>>> trace = Trace()
>>> trace.add("got_conn", lambda event: print(event.name, event["reused"]))

Each hook gets one :class:`TraceEvent`: its ``name``, its ``info`` dict (the payload below) and
``time`` (``time.monotonic()`` when it was emitted, to measure between events). Hooks run in
the thread doing the request, so keep them short. A hook that raises is logged on the
``fastpool.trace`` logger with its traceback and otherwise ignored: a broken hook never breaks
a request nor leaks a connection slot.

Payloads (``host`` and ``port`` are the pool's origin in every event):

- ``get_conn``: ``host, port`` - a request asks its pool for a connection.
- ``got_conn``: ``host, port, reused: bool, idle_time: float | None`` - it has one; ``reused``
  is False for a new connection (then ``idle_time`` is None, and ``connect_start`` follows),
  else ``idle_time`` is the seconds it sat idle.
- ``connect_start``: ``host, port`` - a new connection starts dialing.
- ``connect_done``: ``host, port, seconds: float, error: BaseException | None`` - the TCP
  connect (and proxy tunnel) ended, successfully when ``error`` is None.
- ``tls_done``: ``host, port, seconds: float, error: BaseException | None`` - the TLS handshake
  ended.
- ``wait_start``: ``host, port`` - the pool is at its limit and the request waits for a slot.
- ``wait_end``: ``host, port, seconds: float, timed_out: bool`` - the wait ended.
- ``put_idle``: ``host, port`` - a connection went back to the pool's idle stack.
- ``discard``: ``host, port, reason`` - a connection was closed instead of kept; ``reason`` is
  one of :data:`DISCARD_REASONS`.
- ``evict_pool``: ``host, port, idle_closed: int`` - the least recently used pool was dropped
  to make room (``pool_connections``/``num_pools``), closing its idle connections.
- ``retry``: ``host, port, method, url, error: BaseException`` - a request is sent again.
- ``first_byte``: ``host, port, seconds: float`` - the response head arrived, ``seconds``
  after the request was sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any, Callable

from .exceptions import PoolTimeoutError

__all__ = ("ALL", "DISCARD_REASONS", "EVENTS", "Hook", "PoolSteps", "Trace", "TraceEvent")

log = logging.getLogger("fastpool.trace")

#: Every event a pool emits, roughly in the order they happen for one request.
EVENTS = (
    "get_conn",
    "got_conn",
    "connect_start",
    "connect_done",
    "tls_done",
    "wait_start",
    "wait_end",
    "put_idle",
    "discard",
    "evict_pool",
    "retry",
    "first_byte",
)

#: The ``reason`` of a ``discard`` event.
DISCARD_REASONS = (
    "pool_full",
    "expired_idle",
    "expired_lifetime",
    "stale",
    "not_reusable",
    "error",
    "closed",
)

#: Pass as the event to :meth:`Trace.add` / :meth:`Trace.remove` for every event.
ALL = "*"


class TraceEvent:
    """What a hook receives: ``name`` (one of :data:`EVENTS`), ``info`` (its payload, a dict)
    and ``time`` (``time.monotonic()`` at emission). ``event["host"]`` reads ``info``."""

    __slots__ = ("info", "name", "time")

    def __init__(self, name: str, info: dict[str, Any], time: float) -> None:
        self.name = name
        self.info = info
        self.time = time

    def __getitem__(self, key: str) -> Any:
        return self.info[key]

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.info.items())
        return f"<TraceEvent {self.name} {fields}>"


Hook = Callable[[TraceEvent], object]


class Trace:
    """A registry of hooks per event; see the module docstring for the events and payloads.

    ``Trace()`` starts empty (falsy). Thread-safe: hooks may be added and removed while
    requests run; an emission in progress uses the hooks registered when it started.
    """

    __slots__ = ("_hooks", "_lock")

    def __init__(self) -> None:
        # event -> tuple of hooks, replaced (never mutated) so emit reads without a lock
        self._hooks: dict[str, tuple[Hook, ...]] = dict.fromkeys(EVENTS, ())
        self._lock = threading.Lock()

    @staticmethod
    def _events(event: str) -> tuple[str, ...]:
        if event == ALL:
            return EVENTS
        if event not in EVENTS:
            raise ValueError(f"unknown trace event {event!r}; expected one of {EVENTS} or '*'")
        return (event,)

    def add(self, event: str, hook: Hook) -> None:
        """Call ``hook(TraceEvent)`` on each ``event`` (``"*"``: on every event).

        Raises ``ValueError`` naming an unknown event, ``TypeError`` if ``hook`` is not callable.
        A hook added twice is called twice.
        """
        events = self._events(event)
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        with self._lock:
            for name in events:
                self._hooks[name] += (hook,)

    def remove(self, event: str, hook: Hook) -> None:
        """Stop calling ``hook`` on ``event`` (``"*"``: on every event it was added for).

        Removes one registration (compared with ``==``, so a bound method matches itself).
        Raises ``ValueError`` when ``hook`` is not registered for ``event``.
        """
        events = self._events(event)
        with self._lock:
            found = False
            for name in events:
                hooks = list(self._hooks[name])
                if hook in hooks:
                    hooks.remove(hook)
                    self._hooks[name] = tuple(hooks)
                    found = True
            if not found:
                raise ValueError(f"{hook!r} is not a hook for trace event {event!r}")

    def clear(self) -> None:
        """Remove every hook."""
        with self._lock:
            self._hooks = dict.fromkeys(EVENTS, ())

    def hooks(self, event: str) -> tuple[Hook, ...]:
        """The hooks registered for ``event`` (one of :data:`EVENTS`), in calling order."""
        if event not in EVENTS:
            raise ValueError(f"unknown trace event {event!r}; expected one of {EVENTS}")
        return self._hooks[event]

    def __bool__(self) -> bool:
        """True when at least one hook is registered."""
        return any(self._hooks.values())

    def __len__(self) -> int:
        """How many (event, hook) registrations there are."""
        return sum(len(hooks) for hooks in self._hooks.values())

    def emit(self, event: str, **info: Any) -> None:
        """Call the hooks of ``event`` with a :class:`TraceEvent` carrying ``info``.

        A hook that raises an ``Exception`` is logged on ``fastpool.trace`` (with the
        traceback) and the next hook runs; nothing propagates. Raises ``ValueError`` for an
        unknown event, so a misspelt call point fails in tests instead of going quiet.
        """
        hooks = self._hooks.get(event)
        if hooks is None:
            self._events(event)  # raises the ValueError naming it
            return
        if not hooks:
            return
        record = TraceEvent(event, info, monotonic())
        for hook in hooks:
            try:
                hook(record)
            except Exception:
                log.exception("trace hook %r raised on %r; ignored", hook, event)

    def __repr__(self) -> str:
        counts = {name: len(hooks) for name, hooks in self._hooks.items() if hooks}
        return f"<Trace hooks={counts}>"


class PoolSteps:
    """The traced steps of one pool: each reports its events to ``trace`` with the pool's
    ``host`` and ``port``. Paired events are context managers (``wait``, ``connect``,
    ``first_byte``: the second event when the block ends), single ones plain calls.

    Holds no reference to the pool (a pool keeps its steps: that would be a cycle, and a pool
    closes its idle sockets when it is freed)."""

    __slots__ = ("host", "port", "trace")

    def __init__(self, trace: Trace, host: str, port: int | None) -> None:
        self.trace = trace
        self.host = host
        self.port = port

    def _emit(self, event: str, **info: Any) -> None:
        self.trace.emit(event, host=self.host, port=self.port, **info)

    def checkout(self, queue: Any, timeout: float | None) -> Any:
        """``queue.checkout(timeout)`` (a HostQueue) reporting get_conn, and wait_start and
        wait_end around a wait at the cap: it first tries without waiting, so that a wait is
        reported as one."""
        self._emit("get_conn")
        try:
            return queue.checkout(0)
        except PoolTimeoutError:
            if timeout is not None and timeout <= 0:
                raise
        with self.wait():
            return queue.checkout(timeout)

    @contextmanager
    def wait(self) -> Iterator[None]:
        """wait_start now, wait_end when the block ends (``timed_out``: it raised)."""
        self._emit("wait_start")
        start = monotonic()
        timed_out = True
        try:
            yield
            timed_out = False
        finally:
            self._emit("wait_end", seconds=monotonic() - start, timed_out=timed_out)

    def got_conn(self, conn: Any) -> None:
        """got_conn for ``conn``, about to serve: reused when it is open."""
        reused = conn.sock is not None
        self._emit(
            "got_conn", reused=reused, idle_time=monotonic() - conn.idle_since if reused else None
        )

    @contextmanager
    def connect(self, conn: Any, tls: bool) -> Iterator[None]:
        """Around what may dial ``conn`` (and, ``tls``, handshake): connect_start when it is
        closed, then connect_done (and tls_done) when the block ends, if it dialed."""
        dialing = conn.sock is None
        start = monotonic()
        if dialing:
            self._emit("connect_start")
        error: BaseException | None = None
        try:
            yield
        except BaseException as e:
            error = e
            raise
        finally:
            if dialing or conn.connected_at >= start:
                self._connected(conn, start, error, tls)

    def _connected(self, conn: Any, start: float, error: BaseException | None, tls: bool) -> None:
        now = monotonic()
        tcp_done = conn.connected_at if conn.connected_at >= start else None
        if not tls or tcp_done is None:
            self._emit("connect_done", seconds=now - start, error=error)
            return
        # The dial stamps connected_at: what follows it was the TLS handshake.
        self._emit("connect_done", seconds=tcp_done - start, error=None)
        self._emit("tls_done", seconds=now - tcp_done, error=error)

    @contextmanager
    def first_byte(self) -> Iterator[None]:
        """Around reading a response head: first_byte when it arrived (nothing if it failed)."""
        sent = monotonic()
        yield
        self._emit("first_byte", seconds=monotonic() - sent)

    def put_idle(self) -> None:
        """put_idle: a connection went back to the idle stack."""
        self._emit("put_idle")

    def discard(self, conn: Any, reason: str) -> None:
        """discard, then close ``conn``."""
        self._emit("discard", reason=reason)
        conn.close()

    def retry(self, method: str, url: str, error: BaseException) -> None:
        """retry: the request is sent again."""
        self._emit("retry", method=method, url=url, error=error)
