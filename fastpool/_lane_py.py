"""The plainest hop of ``PoolManager.map`` in one call each way: the pure twin of ``_lane_c``.

Most hops of a crawl are alike: a GET without a body or headers of its own, to an origin the
manager has seen, on a kept-alive connection, answered with a body framed by its length. For
such a hop the general steps (``ManagerDriver.begin`` through ``PoolManager.urlopen``'s first
half and ``HTTPConnectionPool._loop_begin``) make some twenty Python calls that each decide
nothing new. :meth:`Lane.begin` takes the same decisions in one: the origin's pool from the
manager's own tables, an idle connection checked for liveness, the request from its rendered
template, the timeouts. :meth:`Lane.result` ends a ``light=True`` hop whose answer needs
nothing more than its bytes: the connection checked in, a
:class:`~fastpool.light.LightResponse` made.

For ``Session.map``, the pool's halves of the two: :func:`begin_on`, once
``HTTPAdapter._loop_begin`` has found a GET's pool its own way, does the checkout, the
timeouts and the head (from the one render_request kept on the connection for the same
headers) in one call instead of ``HTTPConnectionPool._loop_begin``; :func:`plain_answer` takes
the plainest answer as :meth:`Lane.result` would, and :func:`hand_back` gives its connection
back once ``SessionDriver.plain_result`` has built the Session's response.

Anything else, and anything a tool patched, is left to the general steps (None): the lane only
ever decides what those steps would have decided. ``tests/with_dummyserver/test_map_lane.py``,
``test_session_map_lane.py`` and ``test_session_map_finish.py`` hold it to them side by side,
and every map test runs through it."""

from __future__ import annotations

import logging
import socket
from typing import Any

from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from . import pool as _pool_module
from ._failed_socket import FailedSocket
from ._loop import Exchange, new_exchange
from ._patches import is_own_method
from .connection import steps_replaced_on
from .light import LightResponse
from .pool import (
    FINISH_CONNECTION_STEPS,
    FINISH_RESPONSE_STEPS,
    OWN_CONNECT,
    OWN_CONNECTIONS,
    OWN_GET_CONN,
    OWN_IS_CONNECTED,
    OWN_MAKE_REQUEST,
    OWN_POOLS,
    OWN_RENDER_REQUEST,
    OWN_REQUEST,
    OWN_RESPONSE,
    OWN_REVIVE,
    OWN_VALIDATE_CONN,
    PLAIN_FIT,
    PLAIN_ORIGIN_FORM,
    TotalLeft,
    connect_in_worker,
    no_status_retry,
)
from .response import HTTPResponse
from .tls import has_buffered_bytes

__all__ = (
    "LANE_ARGUMENTS", "Lane", "begin_on", "hand_back", "lane_target", "plain_answer",
    "plain_origin_form",
)  # fmt: skip

#: the urlopen arguments a hop may carry and still take the lane (a body only when None,
#: preload_content only when True); any other takes the general steps
LANE_ARGUMENTS = frozenset(
    ("headers", "timeout", "retries", "redirect", "assert_same_host", "pool_timeout")
    + ("body", "preload_content")
)
_REDIRECTS = HTTPResponse.REDIRECT_STATUSES


def plain_origin_form(target: Any) -> bool:
    """Whether ``target`` is one ``PLAIN_ORIGIN_FORM`` matches whole (the compiled twin scans
    its characters; ``tests/unit/test_lane.py`` holds the two alike)."""
    return type(target) is str and PLAIN_ORIGIN_FORM.fullmatch(target) is not None


def lane_target(target: Any) -> bool:
    """Whether the lane takes ``target`` as it is: a str in plain origin-form, no dot segment
    (which urllib3 would remove)."""
    return type(target) is str and "/." not in target and plain_origin_form(target)


def _own_plain_pool(pool: Any) -> bool:
    """Whether the lane may take a hop to ``pool``: fastpool's own pool and connection classes
    with their own steps (``HTTPConnectionPool._loop_begin``'s checks), untraced, without a
    proxy or a global cap.

    The steps a tool may patch are urllib3's and requests' names (``urlopen``, ``_get_conn``,
    ``_validate_conn``, ``_make_request``, the connection's ``request``) and ``render_request``:
    a patch of any of
    them, on the class or on the pool, makes the lane step aside. fastpool's own private steps
    behind them (``_loop_begin``, ``_timeouts``, ``_fit``, ``_target``) are not places to
    patch: the lane takes their decisions itself (the compiled twin reads ``_timeouts``'
    cached answer inline, runs ``is_connected``'s steps inline unless the class's property is
    patched, and ``_checkin_finished``'s unless the pool's class has its own or a patch)."""
    return (
        type(pool) in OWN_POOLS
        and pool.ConnectionCls in OWN_CONNECTIONS
        and pool.proxy is None
        and pool._trace_now is None
        and pool._limiter is None
        and pool._urlopen_is_ours()
        and is_own_method(pool._get_conn, pool, OWN_GET_CONN)
        and type(pool)._validate_conn in OWN_VALIDATE_CONN
        and "_validate_conn" not in vars(pool)  # (a patch on the pool itself)
        and type(pool)._make_request is OWN_MAKE_REQUEST
        and "_make_request" not in vars(pool)
        and pool.ConnectionCls.request is OWN_REQUEST
        and pool.ConnectionCls.render_request is OWN_RENDER_REQUEST
    )


def _is_connected(conn: Any, loop: Any) -> bool:
    """``conn.is_connected``, where the map's ``loop`` may answer its last step: an idle
    socket it keeps registered had nothing to read at its last complete wait, a few
    milliseconds ago at most (``Loop.seen_idle``), so no ``poll`` of it is made. The class's
    own property is called where it is not fastpool's (a patch must see the check)."""
    if loop is None or type(conn).is_connected is not OWN_IS_CONNECTED:
        return conn.is_connected  # type: ignore[no-any-return]
    sock = conn.sock
    if sock is None:
        return False
    if conn._rest or (type(sock) is not socket.socket and has_buffered_bytes(sock)):
        return False  # bytes read or decrypted already: nothing the poller can see
    return loop.seen_idle(sock) or not conn._readable_now()


def _ready(pool: Any, conn: Any, loop: Any) -> Any:
    """``pool._ready(pool, conn, 0.0)`` for a pool that checks every checkout (an
    ``idle_timeout`` or ``max_lifetime``): ``_revive``'s steps, the liveness check through
    :func:`_is_connected`, where the pool's step is fastpool's own (a subclass's is called).
    (No global cap on a lane's pool: no room to find for a connection closed here.)"""
    if pool._ready is not OWN_REVIVE:
        return pool._ready(pool, conn, 0.0)
    if pool._expiry:
        pool._expire(conn)
    if conn.sock is not None and not _is_connected(conn, loop):
        pool._drop_stale(conn)
    return conn


def _checkout(pool: Any, loop: Any) -> Any:
    """An idle connection of ``pool``, made ready as ``_get_conn`` makes it (expired or dropped
    by the server: closed, for the loop to dial again); None: no idle one, nothing taken;
    False: the checkout failed, its slot given back (``urlopen`` meets it again, as
    ``_loop_checkout`` leaves it). ``loop``: the map's, asked first whether the connection is
    alive (None: the connection's own check)."""
    queue = pool.pool
    if not queue.idle:
        return None  # a connection to dial: the general steps
    try:
        conn = queue.checkout(0.0)
    except Exception:  # noqa: BLE001 - closed meanwhile: the general steps meet it again
        return None
    try:
        if conn is None:  # another thread took the idle one: a slot to dial, as _get_conn
            conn = pool._new_conn()
        elif pool._check_conn:
            conn = _ready(pool, conn, loop)  # expired or dropped, it is closed
        elif not _is_connected(conn, loop):
            conn = pool._ready(pool, conn, 0.0)  # _revive: dropped, it is closed
    except BaseException as e:
        if conn is not None:
            conn.close()
        pool._put_conn(None)
        if isinstance(e, Exception):
            return False
        raise
    return conn


def begin_on(
    pool: Any, target: Any, headers: Any, timeout: Any, read_body: bool, loop: Any = None
) -> Exchange | bool | None:
    """``pool._loop_begin("GET", target, None, headers, False, timeout, read_body)`` in one
    call, for a hop whose pool its caller found (``HTTPAdapter._loop_begin``: the Session's
    map): an Exchange, or False, as that returns them; None: not taken (a target that is not
    plain, a pool the lane does not take, no idle connection), the general steps decide.
    ``loop``: the map's (see :func:`_is_connected`)."""
    if (
        headers is None  # (the pool's headers then)
        or not lane_target(target)
        or not _own_plain_pool(pool)
    ):
        return None
    return _begin_at(pool, target, headers, timeout, read_body, loop)


def _begin_at(
    pool: Any, target: str, headers: Any, timeout: Any, read_body: bool, loop: Any
) -> Exchange | bool | None:
    """The pool's half of a lane hop, its checks passed: the checkout, the timeouts, the
    head, the Exchange (what ``_loop_begin`` does past its checks)."""
    conn = _checkout(pool, loop)
    if conn is None or conn is False:
        return conn
    if steps_replaced_on(conn):  # a patch on the connection itself: urlopen calls it
        pool._put_conn(conn)
        return False
    conn._loop_queue = pool.pool
    try:
        # urlopen's timeouts (the compiled twin reads the cached ones inline); a timeout
        # urllib3 refuses gives the connection back unused, as _loop_begin does
        connect_timeout, read, total = pool._timeouts(timeout)
        if total is not None:
            read = TotalLeft(total)
    except BaseException:
        pool._put_conn(conn)
        raise
    try:
        if type(pool)._fit is not PLAIN_FIT:  # (the plain pool's fits every connection)
            pool._fit(conn)
        data = conn.render_request("GET", target, None, headers)
    except (ValueError, TypeError):
        if conn.head_refused:  # a header refused: urlopen refuses it again, with this error
            conn.head_refused = False
            pool._put_conn(conn)
            return False
        pool._close_and_free(conn)
        raise
    except BaseException:
        pool._close_and_free(conn)
        raise
    conn.timeout = connect_timeout
    exchange: Exchange = new_exchange(
        conn,
        "GET",
        data,
        read,
        read_body,
        connect_in_worker,  # dial
        conn.requests > 0,  # replay: a GET without a body, Go's rule allows it
        type(conn).connect in OWN_CONNECT,  # direct: the loop may dial it itself
        pool,  # tag
    )
    return exchange


def plain_answer(exchange: Exchange, retries: Retry) -> tuple[Any, bytes] | None:
    """For ``Session.map`` (``SessionDriver.plain_result``): ``(head, body)`` when the answer
    the loop read for ``exchange`` is the plainest one, which ``urlopen(..., _exchange=exchange,
    retries=retries, redirect=False)`` and a read of the body to its end would end with nothing
    more done (:meth:`Lane.result` says which answers); None: ``urlopen`` is to finish it. A
    redirect status is left to ``urlopen`` too (the Session follows it), and so is a hop sent
    again (``retries`` has a history, which urlopen's response reads its url from). Nothing is
    changed: :func:`hand_back` then gives the connection back. It may raise."""
    if exchange.conn is None or retries.history:
        return None
    return _plain_answer(exchange, retries, True)


def hand_back(exchange: Exchange, head: Any) -> None:
    """The connection of an answer :func:`plain_answer` took, handed back to its pool as
    ``urlopen`` and the response's end would hand it back (it is no longer the exchange's)."""
    pool = exchange.tag
    conn = exchange.conn
    exchange.conn = None
    conn._rest = b""
    conn.sent_ahead = False
    conn.request_started = True
    conn.head_started = True
    pool.num_requests += 1
    pool._checkin_finished(conn, head.keep_alive, conn._loop_queue)


def _finish_steps_own(pool: Any, conn: Any) -> bool:
    """Whether every step ``urlopen`` and the response's read would take to finish an answer
    on ``conn`` is fastpool's own: the pool's and the connection's classes, their steps (on
    the class and on the object), the response class and its reading steps. A patch of any of
    them (a mock of ``HTTPResponse.read``, a connection class that checks each head) must see
    the answer: the general steps finish it."""
    pool_cls = type(pool)
    cls = type(conn)
    if pool_cls not in OWN_POOLS or cls not in OWN_CONNECTIONS:
        return False
    own = vars(pool)
    if (
        pool_cls._make_request is not OWN_MAKE_REQUEST
        or "_make_request" in own
        or pool_cls._validate_conn not in OWN_VALIDATE_CONN
        or "_validate_conn" in own
        or steps_replaced_on(conn)
        or _pool_module.HTTPResponse is not OWN_RESPONSE  # type: ignore[attr-defined]
    ):
        return False
    for name, step in FINISH_CONNECTION_STEPS:
        if getattr(cls, name) is not step:
            return False
    for name, step in FINISH_RESPONSE_STEPS:
        if getattr(OWN_RESPONSE, name) is not step:
            return False
    return True


def _plain_answer(exchange: Exchange, retries: Retry, redirect: bool) -> tuple[Any, bytes] | None:
    """The decisions of :meth:`Lane.result` and :func:`plain_answer`: ``(head, body)`` for
    the plainest answer (``redirect``: a redirect status is not one), else None; nothing is
    changed."""
    pool = exchange.tag
    conn = exchange.conn
    if (
        conn is None
        or not conn.sent_ahead  # the request did not go out whole
        or exchange.replayed is not None  # counted and traced by urlopen
        or conn.sock is None
        or type(conn.sock) is FailedSocket
        or pool._trace_now is not None
        or not pool._urlopen_is_ours()
        or pool._log.isEnabledFor(logging.DEBUG)
        # an unverified TLS connection: urlopen's _validate_conn warns for each request
        or (pool.scheme == "https" and not conn.is_verified and not conn.proxy_is_verified)
        or not _finish_steps_own(pool, conn)
    ):
        return None
    head = exchange.head  # parsed by the loop
    if head is None:
        return None  # a head to refuse, or cut short: urlopen raises it from the same bytes
    data = conn._rest
    used = exchange.head_size
    status = head.status
    framing = head.framing
    if framing == "length":
        end = used + head.content_length
    elif framing == "none":  # HEAD, 204, 304
        end = used
    else:
        return None
    if (
        len(data) != end
        or status < 200
        or (redirect and status in _REDIRECTS)
        or head.content_encoding  # decoded by the response, as urllib3 decodes it
        or not no_status_retry(retries, status)
    ):
        return None
    return head, data[used:end]


class Lane:
    """One map's plainest hops, for ``manager``: a PoolManager itself (not a subclass), whose
    ``urlopen`` and ``connection_from_host`` are ``urlopen`` and ``connection_from_host``,
    fastpool's own as imported (a patch's must see each request, so the lane steps aside).
    Given None for them, it begins no hop and only finishes light answers, as ``result_type``
    (the map's ``Result``)."""

    __slots__ = ("_connection_from_host", "_result_type", "_retry_of", "_urlopen", "manager")

    def __init__(
        self, manager: Any, urlopen: Any, connection_from_host: Any, result_type: Any
    ) -> None:
        self.manager = manager
        self._urlopen = urlopen
        self._connection_from_host = connection_from_host
        #: what :meth:`result` makes: the map's Result (a tuple type, built without its __new__)
        self._result_type = result_type
        # the last ``retries`` argument that is not a Retry, and the Retry urlopen makes of it
        self._retry_of: tuple[Any, Any, Retry] = (None, None, Retry())

    def begin(self, job: Any, loop: Any = None) -> Exchange | bool | None:
        """``job``'s next hop as an Exchange for the loop, its pool on ``job.conn`` and its
        target on ``job.target``; False: it must go through ``urlopen`` (as the general steps
        would say); None: nothing was done, the general steps take it. ``loop``: the map's,
        asked whether an idle connection is alive (see :func:`_is_connected`)."""
        kw = job.kw
        url = job.url
        # A GET with no body and no headers (the manager's own included), whose other
        # arguments only time it, retry it or follow its redirects; read whole.
        if (
            self._urlopen is None
            or job.method != "GET"
            or type(url) is not str
            or type(kw) is not dict  # (None: a job for a replaced request(), sent whole)
            or not LANE_ARGUMENTS.issuperset(kw)
        ):
            return None
        headers = kw.get("headers")
        if (
            headers
            or headers is None  # (the pool's headers then)
            or kw.get("body") is not None
            or kw.get("preload_content", True) is not True
        ):
            return None
        manager = self.manager
        if (
            manager.proxy is not None
            or not is_own_method(manager.urlopen, manager, self._urlopen)
            or not is_own_method(manager.connection_from_host, manager, self._connection_from_host)
        ):
            return None
        found = self._pool_of(manager, url)
        if found is None:
            return None
        pool, target = found
        exchange = _begin_at(
            pool, target, headers, kw.get("timeout", Timeout.DEFAULT_TIMEOUT), True, loop
        )
        if exchange is not None and exchange is not False:
            job.conn = pool
            job.target = target
            kw["assert_same_host"] = False  # as PoolManager.urlopen passes a hop on
            kw["redirect"] = False
        return exchange

    @staticmethod
    def _pool_of(manager: Any, url: str) -> tuple[Any, str] | None:
        """The pool and target of ``url`` when its origin is known and its target plain
        (``PoolManager._split_url``'s first way, then ``connection_from_host``'s cache), and
        the pool and its connections are fastpool's own classes with their own steps,
        untraced and uncapped; else None."""
        slash = url.find("/", 8)
        if slash <= 0:
            return None
        origin = manager._origins.get(url[:slash])
        if origin is None:
            return None
        target = url[slash:]
        if not lane_target(target):
            return None
        cached = manager._key_cache.get((*origin, None))
        if cached is None:
            return None
        pool = manager.pools.get(cached[0])
        if pool is None or not _own_plain_pool(pool):
            return None
        return pool, target

    def _finish(self, job: Any, exchange: Exchange) -> LightResponse | None:
        """:meth:`result`'s answer as the LightResponse alone, or None; it may raise."""
        if exchange.conn is None:
            return None
        retries = self._retries(exchange.tag, job.kw.get("retries"))
        answer = _plain_answer(exchange, retries, job.redirect)
        if answer is None:
            return None
        head, body = answer
        hand_back(exchange, head)  # ours now: what urlopen and the response's end would do
        return LightResponse(head.status, head.reason, head.version, head, body, job.url)

    def result(self, job: Any, exchange: Exchange) -> Any:
        """The map's result for the answer the loop read for ``job``: ``(job.given,
        LightResponse, None)``, its connection handed back, what ``urlopen(_exchange=exchange,
        preload_content=True)`` would end with, for the plainest answer only; ``(job.given,
        None, error)`` when finishing it raised ``error`` (it never raises an Exception).
        None (nothing taken: ``urlopen`` is to finish it) for anything else: a failed or
        replayed exchange, a head to refuse, an interim (1xx) answer, a body framed other than
        by its length (chunked, to the close), bytes past the body, a Content-Encoding to
        decode, a redirect to follow or a status the hop's Retry may retry, a pool that is
        traced, logs at DEBUG, or whose ``urlopen`` is patched or overridden since the request
        started, and a TLS connection that is not verified (``urlopen`` warns with
        ``InsecureRequestWarning`` for each request)."""
        try:
            light = self._finish(job, exchange)
        except Exception as e:  # noqa: BLE001 - the request's outcome, as urlopen's would be
            return tuple.__new__(self._result_type, (job.given, None, e))
        if light is None:
            return None
        return tuple.__new__(self._result_type, (job.given, light, None))

    def _retries(self, pool: Any, retries: Any) -> Retry:
        """The Retry ``urlopen`` makes of ``retries`` for one hop (redirects are the
        manager's: ``redirect=False``), kept for the next hop with the same argument."""
        if isinstance(retries, Retry):
            return retries
        value, default, made = self._retry_of
        if value is retries and type(value) is type(retries) and default is pool.retries:
            return made
        made = Retry.from_int(retries, redirect=False, default=pool.retries)
        self._retry_of = (retries, pool.retries, made)
        return made
