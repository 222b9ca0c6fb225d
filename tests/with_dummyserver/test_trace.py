"""fastpool.trace: the hook registry, and the events a real PoolManager emits against local
servers (new connection, reuse, pool-full discard, retry, eviction, a hook that raises)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pytest
from dummyserver import close_after, pattern_bytes

import fastpool
from fastpool.exceptions import PoolTimeoutError
from fastpool.poolmanager import PoolManager
from fastpool.trace import ALL, DISCARD_REASONS, EVENTS, Trace, TraceEvent

# --- the registry --------------------------------------------------------------------------------


class Recorder:
    """A hook that keeps every event it is called with."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: TraceEvent) -> None:
        with self._lock:
            self.events.append(event)

    def names(self) -> list[str]:
        return [event.name for event in self.events]

    def named(self, name: str) -> list[TraceEvent]:
        return [event for event in self.events if event.name == name]


def test_empty_trace_is_falsy_and_emits_nothing() -> None:
    trace = Trace()
    assert not trace
    assert len(trace) == 0
    for name in EVENTS:
        trace.emit(name, host="h", port=1)  # no hooks: nothing to call, no error
    assert repr(trace) == "<Trace hooks={}>"


def test_add_emit_remove() -> None:
    trace = Trace()
    recorder = Recorder()
    trace.add("got_conn", recorder)
    assert trace
    assert len(trace) == 1
    assert trace.hooks("got_conn") == (recorder,)
    trace.emit("got_conn", host="127.0.0.2", port=80, reused=True, idle_time=0.5)
    trace.emit("put_idle", host="127.0.0.2", port=80)  # not registered for it
    [event] = recorder.events
    assert (event.name, event["host"], event["reused"], event["idle_time"]) == (
        "got_conn",
        "127.0.0.2",
        True,
        0.5,
    )
    assert event.info == {"host": "127.0.0.2", "port": 80, "reused": True, "idle_time": 0.5}
    assert isinstance(event.time, float)
    assert repr(event).startswith("<TraceEvent got_conn host='127.0.0.2'")
    trace.remove("got_conn", recorder)
    assert not trace
    trace.emit("got_conn", host="127.0.0.2", port=80, reused=False, idle_time=None)
    assert len(recorder.events) == 1


def test_hooks_run_in_order_and_twice_if_added_twice() -> None:
    trace = Trace()
    calls: list[str] = []
    trace.add("discard", lambda event: calls.append("first"))
    second: Callable[[TraceEvent], None] = lambda event: calls.append("second")
    trace.add("discard", second)
    trace.add("discard", second)
    trace.emit("discard", host="h", port=1, reason="pool_full")
    assert calls == ["first", "second", "second"]
    trace.remove("discard", second)  # one registration at a time
    calls.clear()
    trace.emit("discard", host="h", port=1, reason="pool_full")
    assert calls == ["first", "second"]


def test_star_adds_and_removes_for_every_event() -> None:
    trace = Trace()
    recorder = Recorder()
    trace.add(ALL, recorder)
    assert len(trace) == len(EVENTS)
    for name in EVENTS:
        trace.emit(name, host="h", port=1)
    assert recorder.names() == list(EVENTS)
    trace.remove(ALL, recorder)
    assert not trace


def test_bound_methods_are_removed_by_equality() -> None:
    trace = Trace()
    recorder = Recorder()
    trace.add("retry", recorder.__call__)
    trace.remove("retry", recorder.__call__)  # a new bound-method object, equal to the first
    assert not trace


def test_bad_registrations_name_the_problem() -> None:
    trace = Trace()
    with pytest.raises(ValueError, match="unknown trace event 'got_connection'"):
        trace.add("got_connection", print)
    with pytest.raises(TypeError, match="hook must be callable, got int"):
        trace.add("got_conn", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a hook for trace event 'got_conn'"):
        trace.remove("got_conn", print)
    with pytest.raises(ValueError, match="unknown trace event 'nope'"):
        trace.remove("nope", print)
    with pytest.raises(ValueError, match="unknown trace event 'nope'"):
        trace.hooks("nope")
    with pytest.raises(ValueError, match="unknown trace event 'got_connection'"):
        trace.emit("got_connection", host="h", port=1)  # a misspelt call point is loud
    assert not trace


def test_a_raising_hook_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = Trace()
    recorder = Recorder()

    def broken(event: TraceEvent) -> None:
        raise RuntimeError("hook bug")

    trace.add("put_idle", broken)
    trace.add("put_idle", recorder)
    with caplog.at_level(logging.ERROR, logger="fastpool.trace"):
        trace.emit("put_idle", host="h", port=1)
    assert recorder.names() == ["put_idle"]
    [record] = caplog.records
    assert record.name == "fastpool.trace"
    assert "raised on 'put_idle'" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_keyboard_interrupt_in_a_hook_propagates() -> None:
    trace = Trace()

    def interrupted(event: TraceEvent) -> None:
        raise KeyboardInterrupt

    trace.add("get_conn", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trace.emit("get_conn", host="h", port=1)


def test_clear_and_registration_while_emitting() -> None:
    trace = Trace()
    late = Recorder()

    def adds_another(event: TraceEvent) -> None:
        trace.add("first_byte", late)  # takes effect from the next emission

    trace.add("first_byte", adds_another)
    trace.emit("first_byte", host="h", port=1, seconds=0.1)
    assert late.events == []
    trace.emit("first_byte", host="h", port=1, seconds=0.1)
    assert late.names() == ["first_byte"]
    trace.clear()
    assert not trace


def test_discard_reasons_are_the_documented_ones() -> None:
    assert set(DISCARD_REASONS) == {
        "pool_full", "expired_idle", "expired_lifetime", "stale", "not_reusable", "error",
        "closed",
    }  # fmt: skip


# --- a real PoolManager --------------------------------------------------------------------------


def traced_manager(recorder: Recorder, **kw: Any) -> Any:
    trace = Trace()
    trace.add(ALL, recorder)
    return fastpool.PoolManager(trace=trace, **kw)


def _before(names: list[str], first: str, second: str) -> bool:
    return names.index(first) < names.index(second)


def test_events_of_a_new_then_a_reused_connection(app_server: Any) -> None:
    recorder = Recorder()
    with traced_manager(recorder) as manager:
        assert manager.request("GET", f"{app_server.url}/bytes/10").status == 200
        new = recorder.names()
        recorder.events.clear()
        assert manager.request("GET", f"{app_server.url}/bytes/10").status == 200
        reused = recorder.names()
        reused_events = list(recorder.events)
    assert new[0] == "get_conn"
    assert new[-1] == "put_idle"
    assert {"got_conn", "connect_start", "connect_done", "first_byte"} <= set(new)
    assert _before(new, "connect_start", "connect_done")
    assert _before(new, "connect_done", "first_byte")
    assert "discard" not in new
    assert reused[0] == "get_conn"
    assert reused[-1] == "put_idle"
    assert "connect_start" not in reused
    [got] = [e for e in reused_events if e.name == "got_conn"]
    assert got["reused"] is True
    assert got["idle_time"] >= 0.0
    assert (got["host"], got["port"]) == ("127.0.0.1", app_server.port)


def test_new_connection_payloads(app_server: Any) -> None:
    recorder = Recorder()
    with traced_manager(recorder) as manager:
        manager.request("GET", f"{app_server.url}/bytes/10")
    [got] = recorder.named("got_conn")
    assert (got["reused"], got["idle_time"]) == (False, None)
    [done] = recorder.named("connect_done")
    assert done["error"] is None
    assert done["seconds"] >= 0.0
    [first] = recorder.named("first_byte")
    assert first["seconds"] >= 0.0


def test_pool_full_discard_event(app_server: Any) -> None:
    recorder = Recorder()
    url = f"{app_server.url}/hold?key=trace-full&n=2"
    with traced_manager(recorder, maxsize=1) as manager:
        threads = [threading.Thread(target=manager.request, args=("GET", url)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert app_server.connections == 2
    discards = [e["reason"] for e in recorder.named("discard")]
    assert discards.count("pool_full") == 1
    assert len(recorder.named("put_idle")) == 1


def test_retry_event_on_a_connection_the_server_closed(
    fault_server_factory: Callable[..., Any],
) -> None:
    # The server reads the second request, then closes without answering it.
    server = fault_server_factory(close_after(1, how="wait"))
    recorder = Recorder()
    with traced_manager(recorder) as manager:
        assert manager.request("GET", f"{server.url}/a").status == 200
        recorder.events.clear()
        # No response byte came back: a GET is safely sent again on a new connection.
        assert manager.request("GET", f"{server.url}/b").status == 200
    [retry] = recorder.named("retry")
    assert retry["method"] == "GET"
    assert retry["url"].endswith("/b")
    assert isinstance(retry["error"], BaseException)
    assert server.connections == 2
    assert recorder.named("connect_start")


def test_evict_pool_event(server_factory: Callable[..., Any]) -> None:
    servers = [server_factory(f"127.0.0.{n}") for n in (2, 3)]
    recorder = Recorder()
    with traced_manager(recorder, num_pools=1) as manager:
        for server in servers:
            manager.request("GET", f"{server.url}/bytes/1")
        # Read before the manager closes (clear() drops the other pool too).
        [evicted] = recorder.named("evict_pool")
    assert (evicted["host"], evicted["port"]) == ("127.0.0.2", servers[0].port)
    assert evicted["idle_closed"] == 1


def test_a_raising_hook_never_breaks_a_request_nor_leaks_a_slot(
    app_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    trace = Trace()

    def broken(event: TraceEvent) -> None:
        raise RuntimeError(f"broken on {event.name}")

    trace.add(ALL, broken)
    logs = caplog.at_level(logging.ERROR, logger="fastpool.trace")
    with logs, fastpool.PoolManager(trace=trace) as manager:
        for _ in range(3):
            response = manager.request("GET", f"{app_server.url}/bytes/5")
            assert response.data == pattern_bytes(5)
        [(_, pool)] = manager.pools.items()
        assert (pool.pool.in_use, pool.pool.idle) == (0, 1)
    assert app_server.connections == 1
    assert any("broken on got_conn" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_tls_done_follows_connect_done(https_server: Any, ca_bundle: str) -> None:
    recorder = Recorder()
    with traced_manager(recorder, ca_certs=ca_bundle) as manager:
        assert manager.request("GET", f"{https_server.url}/bytes/1").status == 200
    names = recorder.names()
    assert _before(names, "connect_done", "tls_done")
    [tls] = recorder.named("tls_done")
    assert tls["error"] is None
    assert tls["seconds"] >= 0.0


def test_a_proxy_tunnel_is_reported_as_the_dial(
    https_server: Any, proxy_server: Any, ca_bundle: str
) -> None:
    # Through an HTTP proxy's CONNECT tunnel the dial is the tunnel plus the TLS handshake
    # with the origin: the same connect_start / connect_done / tls_done as a direct dial.
    recorder = Recorder()
    trace = Trace()
    trace.add("*", recorder)
    with fastpool.ProxyManager(proxy_server.url, trace=trace, ca_certs=ca_bundle) as manager:
        for _ in range(2):
            assert manager.request("GET", f"{https_server.url}/bytes/1").status == 200
    names = recorder.names()
    assert names.count("connect_start") == names.count("connect_done") == 1
    assert _before(names, "connect_start", "connect_done")
    assert _before(names, "connect_done", "tls_done")
    [tls] = recorder.named("tls_done")
    assert tls["error"] is None
    assert [e["reused"] for e in recorder.named("got_conn")] == [False, True]


def test_tls_done_carries_the_handshake_error(untrusted_https_server: Any, ca_bundle: str) -> None:
    recorder = Recorder()
    with traced_manager(recorder, ca_certs=ca_bundle, retries=False) as manager:
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            manager.request("GET", f"{untrusted_https_server.url}/bytes/1")
        [(_, pool)] = manager.pools.items()
        assert pool.pool.in_use == 0  # the failed dial gave its slot back
    [tls] = recorder.named("tls_done")
    assert isinstance(tls["error"], BaseException)
    assert "put_idle" not in recorder.names()


def test_wait_events_when_the_pool_blocks(app_server: Any) -> None:
    recorder = Recorder()
    with traced_manager(recorder, maxsize=1, block=True) as manager:
        slow = threading.Thread(
            target=manager.request, args=("GET", f"{app_server.url}/slow?delay=0.3")
        )
        slow.start()
        # Once the slow request holds the only connection, this one has to wait for it.
        for _ in range(200):
            if recorder.named("connect_done"):
                break
            threading.Event().wait(0.01)
        assert manager.request("GET", f"{app_server.url}/bytes/1").status == 200
        slow.join(10)
    [start] = recorder.named("wait_start")
    [end] = recorder.named("wait_end")
    assert end["timed_out"] is False
    assert 0.0 < end["seconds"] < 10
    assert end.time >= start.time
    assert app_server.connections == 1


def test_hooks_added_and_removed_while_other_threads_emit() -> None:
    trace = Trace()
    counted = Recorder()
    trace.add("put_idle", counted)
    stop = threading.Event()
    emitted = [0] * 4

    def emitter(index: int) -> None:
        while not stop.is_set() and emitted[index] < 20_000:
            trace.emit("put_idle", host="h", port=1)
            emitted[index] += 1

    threads = [threading.Thread(target=emitter, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    extra = Recorder()
    for _ in range(500):  # bounded: registrations race the emitters
        trace.add("put_idle", extra)
        trace.remove("put_idle", extra)
    stop.set()
    for thread in threads:
        thread.join(10)
    # The permanent hook saw every emission; the registry is back to that one hook.
    assert len(counted.events) == sum(emitted)
    assert trace.hooks("put_idle") == (counted,)


@pytest.mark.parametrize("owner", ["session", "adapter"])
def test_hooks_through_a_session_or_an_adapter(app_server: Any, owner: str) -> None:
    session = fastpool.Session()
    recorder = Recorder()
    if owner == "session":
        session.add_trace_hook(ALL, recorder)
    else:
        session.get_adapter(app_server.url).add_trace_hook(ALL, recorder)
    with session:
        for _ in range(2):
            assert session.get(f"{app_server.url}/bytes/1").status_code == 200
    got = [event["reused"] for event in recorder.named("got_conn")]
    assert got == [False, True]
    assert recorder.names().count("put_idle") == 2


# --- tracing off is free: an empty Trace is not kept --------------------------------------------
def test_empty_trace_is_not_kept(app_server):
    from fastpool.poolmanager import EVICTED_COUNTERS
    from fastpool.stats import COUNTERS
    from fastpool.trace import Trace

    assert EVICTED_COUNTERS == COUNTERS
    url = f"http://{app_server.host}:{app_server.port}/bytes/3"
    with PoolManager(trace=Trace()) as pm:
        assert pm.trace is None
        assert pm.request("GET", url).data == b"abc"
        assert pm.connection_from_url(url)._trace is None
        seen: list[str] = []
        pm.add_trace_hook("put_idle", lambda event: seen.append(event.name))
        pm.request("GET", url)
        assert seen == ["put_idle"]
    traced = Trace()
    traced.add("put_idle", lambda event: None)
    with PoolManager(trace=traced) as pm:
        assert pm.trace is traced
        pm.request("GET", url)
        assert pm.connection_from_url(url)._trace is traced


# --- the traced path and the plain path, chosen once per pool ------------------------------------
def _payloads(recorder: Recorder) -> list[tuple[str, dict[str, Any]]]:
    """The events without their timings (seconds, idle_time) and errors: what is pinned."""
    volatile = ("seconds", "idle_time", "error")
    return [
        (e.name, {k: v for k, v in e.info.items() if k not in volatile}) for e in recorder.events
    ]


def test_the_exact_events_of_a_new_then_a_reused_connection(app_server: Any) -> None:
    recorder = Recorder()
    origin = {"host": "127.0.0.1", "port": app_server.port}
    with traced_manager(recorder) as manager:
        manager.request("GET", f"{app_server.url}/bytes/1")
        manager.request("GET", f"{app_server.url}/bytes/1")
    assert _payloads(recorder) == [
        ("get_conn", origin),
        ("got_conn", {**origin, "reused": False}),
        ("connect_start", origin),
        ("connect_done", origin),
        ("first_byte", origin),
        ("put_idle", origin),
        ("get_conn", origin),
        ("got_conn", {**origin, "reused": True}),
        ("first_byte", origin),
        ("put_idle", origin),
    ]
    got_new, got_reused = recorder.named("got_conn")
    assert got_new["idle_time"] is None
    assert got_reused["idle_time"] >= 0.0
    assert recorder.named("connect_done")[0]["error"] is None


def test_a_wait_that_times_out_at_the_cap(app_server: Any) -> None:
    recorder = Recorder()
    with traced_manager(recorder, maxsize=1, block=True) as manager:
        pool = manager.connection_from_url(app_server.url)
        held = pool._get_conn()
        recorder.events.clear()
        with pytest.raises(PoolTimeoutError):
            pool._get_conn(timeout=0.05)
        pool._put_conn(held)
    assert recorder.names() == ["get_conn", "wait_start", "wait_end", "put_idle"]
    [end] = recorder.named("wait_end")
    assert end["timed_out"] is True
    assert end["seconds"] >= 0.04


def test_a_checkout_at_the_cap_with_no_wait_reports_no_wait(app_server: Any) -> None:
    recorder = Recorder()
    with traced_manager(recorder, maxsize=1, block=True) as manager:
        pool = manager.connection_from_url(app_server.url)
        held = pool._get_conn()
        with pytest.raises(PoolTimeoutError):
            pool._get_conn(timeout=0)
        pool._put_conn(held)
    assert recorder.names() == ["get_conn", "got_conn", "get_conn", "put_idle"]


def test_a_failed_dial_reports_its_error() -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nobody listens there once closed
    recorder = Recorder()
    with traced_manager(recorder, retries=False) as manager:
        with pytest.raises(Exception, match="(?i)refused|connect"):
            manager.request("GET", f"http://127.0.0.1:{port}/")
        [(_, pool)] = manager.pools.items()
        assert pool.pool.in_use == 0
    assert recorder.names() == ["get_conn", "got_conn", "connect_start", "connect_done"]
    [done] = recorder.named("connect_done")
    assert "refused" in str(done["error"]).lower()  # urllib3's NewConnectionError


def test_expired_and_stale_connections_are_discarded_with_their_reason(
    app_server: Any, fault_server_factory: Callable[..., Any]
) -> None:
    recorder = Recorder()
    with traced_manager(recorder, idle_timeout=0.01) as manager:
        manager.request("GET", f"{app_server.url}/bytes/1")
        threading.Event().wait(0.05)
        recorder.events.clear()
        manager.request("GET", f"{app_server.url}/bytes/1")
    assert recorder.names()[:4] == ["get_conn", "discard", "got_conn", "connect_start"]
    assert recorder.named("discard")[0]["reason"] == "expired_idle"
    assert recorder.named("got_conn")[0]["reused"] is False
    # The server closes the idle connection after one response: found dropped at checkout.
    server = fault_server_factory(close_after(1))
    recorder = Recorder()
    with traced_manager(recorder) as manager:
        manager.request("GET", f"{server.url}/a")
        threading.Event().wait(0.1)
        recorder.events.clear()
        assert manager.request("GET", f"{server.url}/b").status == 200
    assert recorder.names()[:4] == ["get_conn", "discard", "got_conn", "connect_start"]
    assert recorder.named("discard")[0]["reason"] == "stale"
    assert "retry" not in recorder.names()


def test_a_retired_pool_reports_its_returning_connection_closed(app_server: Any) -> None:
    recorder = Recorder()
    with traced_manager(recorder) as manager:
        pool = manager.connection_from_url(app_server.url)
        response = manager.request("GET", f"{app_server.url}/bytes/3", preload_content=False)
        manager.clear()  # retires the pool while the response holds its connection
        recorder.events.clear()
        assert response.read() == b"abc"
        response.release_conn()
    assert pool.retired
    assert _payloads(recorder) == [
        ("discard", {"host": "127.0.0.1", "port": app_server.port, "reason": "closed"})
    ]


def test_hooks_added_to_a_pool_already_in_use(app_server: Any) -> None:
    with fastpool.PoolManager() as manager:
        manager.request("GET", f"{app_server.url}/bytes/1")
        pool = manager.connection_from_url(app_server.url)
        assert pool._trace is None
        recorder = Recorder()
        manager.add_trace_hook(ALL, recorder)
        assert pool._trace is manager.trace
        manager.request("GET", f"{app_server.url}/bytes/1")
    assert recorder.names() == ["get_conn", "got_conn", "first_byte", "put_idle"]


def test_set_process_trace_switches_pools_on_and_off(app_server: Any) -> None:
    from fastpool.pool import set_process_trace

    recorder = Recorder()
    trace = Trace()
    trace.add(ALL, recorder)
    with fastpool.PoolManager() as manager:
        manager.request("GET", f"{app_server.url}/bytes/1")
        pool = manager.connection_from_url(app_server.url)
        steps = ("_checkout", "_ready", "_dial", "_read_head", "_discard", "_kept")
        plain = {name: getattr(pool, name) for name in steps}
        previous = set_process_trace(trace)
        try:
            assert pool._trace is trace
            manager.request("GET", f"{app_server.url}/bytes/1")
            assert recorder.names() == ["get_conn", "got_conn", "first_byte", "put_idle"]
        finally:
            assert set_process_trace(previous) is trace
        assert pool._trace is previous
        manager.request("GET", f"{app_server.url}/bytes/1")
        assert len(recorder.events) == 4
        # back on the plain path: the very callables it had before
        for name in steps:
            assert getattr(pool, name) == plain[name], name


def test_a_pool_holds_no_reference_to_itself_either_way(app_server: Any) -> None:
    import gc
    import weakref

    from fastpool.pool import HTTPConnectionPool

    trace = Trace()
    trace.add(ALL, lambda event: None)
    for traced in (None, trace):
        pool = HTTPConnectionPool("127.0.0.1", app_server.port, _trace=traced)
        pool.request("GET", "/bytes/1")
        ref = weakref.ref(pool)
        gc.disable()
        try:
            del pool
            assert ref() is None  # freed at once (its idle sockets closed), not by the collector
        finally:
            gc.enable()
