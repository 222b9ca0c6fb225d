# cython: language_level=3
"""The plainest hop of ``PoolManager.map`` in one call each way, compiled: the twin of
``_lane_py.py``, which documents it.

The two change together, method for method. Here the steps run as C calls on the same Python
objects (the manager's tables, the pool, its queue, the connection), so every decision and
every error is the pure twin's.
"""

import logging
import socket

from urllib3.connectionpool import HTTPConnectionPool as _U3Pool
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from cpython.object cimport PyObject, PyTypeObject

from ._http11_c cimport ResponseHead
from ._loop_c cimport (
    C_HEAD_STARTED, C_HOST_VALUE, C_IDLE_SINCE, C_KEPT_HEAD, C_LOOP_QUEUE, C_POLLER, C_REQUESTS,
    C_REQUEST_STARTED, C_REST, C_REUSABLE, C_SENT_AHEAD, C_SOCK, C_TIMEOUT, P_CHECK_CONN,
    P_KEPT_WATCH, P_LAST_NUMBER, P_LAST_TIMEOUT, P_LIMITER, P_LOG, P_NUM_REQUESTS, P_POOL,
    P_PROXY, P_TIMEOUT, P_TRACE_NOW, Exchange, _plain_getattr, _stock_tls, conn_slot,
    fastpool_valid_tag, pool_slot, set_conn_slot, set_pool_slot,
)


cdef extern from "Python.h":
    # the type's attribute as its MRO holds it (borrowed; NULL: none), through the type cache:
    # for a function, what reading it on the class gives, without the descriptor call
    PyObject *_PyType_Lookup(PyTypeObject *cls, object name)

from .tls import has_buffered_bytes

__all__ = (
    "LANE_ARGUMENTS", "Lane", "begin_on", "hand_back", "lane_target", "plain_answer",
    "plain_origin_form",
)

# fastpool's own names, imported by the first Lane: fastpool._compat imports this module while
# fastpool loads, before the modules these come from can be. The functions to compare with are
# fastpool.pool's constants, taken when it was imported (a patch on a class is not one).
cdef bint _loaded = False
cdef object new_exchange, FailedSocket, STOCK_URLOPEN, RENDERED, LightResponse, _connection
cdef object OWN_CONNECT, OWN_CONNECTIONS, OWN_GET_CONN, OWN_POOLS, OWN_RENDER_REQUEST
cdef object OWN_REQUEST, OWN_URLOPEN, OWN_VALIDATE_CONN, PLAIN_FIT, TotalLeft, OWN_MAKE_REQUEST
cdef object connect_in_worker, _REDIRECTS, PAIR_STORE_TYPES, OWN_IS_CONNECTED
cdef object OWN_CHECKIN_FINISHED, OWN_REVIVE, OWN_PUT_CONN, _pool_module
cdef object OWN_RESPONSE
cdef tuple FINISH_CONNECTION_STEPS, FINISH_RESPONSE_STEPS, REQUEST_STEPS
cdef tuple STOCK_POOL_STEPS, POOL_LANE_STEPS, CONN_LANE_STEPS, POOL_FINISH_STEPS
cdef object _DEFAULT_TIMEOUT = Timeout.DEFAULT_TIMEOUT
cdef object _IS_RETRY = None  # fastpool.pool._STOCK_IS_RETRY (see _load)
#: the urlopen arguments a hop may carry and still take the lane (see the twin)
LANE_ARGUMENTS = frozenset(
    ("headers", "timeout", "retries", "redirect", "assert_same_host", "pool_timeout")
    + ("body", "preload_content")
)
cdef int _DEBUG = logging.DEBUG


cdef _load():
    global _loaded, new_exchange, FailedSocket, STOCK_URLOPEN, RENDERED, LightResponse
    global _connection, OWN_CONNECT, OWN_CONNECTIONS, OWN_GET_CONN, OWN_POOLS
    global OWN_RENDER_REQUEST, OWN_REQUEST, OWN_URLOPEN, OWN_VALIDATE_CONN, PLAIN_FIT
    global OWN_MAKE_REQUEST
    global TotalLeft, connect_in_worker, _REDIRECTS, _IS_RETRY, PAIR_STORE_TYPES
    global OWN_IS_CONNECTED, OWN_CHECKIN_FINISHED, OWN_REVIVE, OWN_PUT_CONN, _pool_module
    global OWN_RESPONSE, FINISH_CONNECTION_STEPS, FINISH_RESPONSE_STEPS, REQUEST_STEPS
    global STOCK_POOL_STEPS, POOL_LANE_STEPS, CONN_LANE_STEPS, POOL_FINISH_STEPS
    from . import _failed_socket, _loop_c, _patches, connection, light, pool, response

    new_exchange = _loop_c.new_exchange
    FailedSocket = _failed_socket.FailedSocket
    STOCK_URLOPEN = _patches.STOCK_URLOPEN
    RENDERED = connection.RENDERED
    PAIR_STORE_TYPES = connection.PAIR_STORE_TYPES
    _connection = connection  # its default_user_agent is read at each request, as render's
    LightResponse = light.LightResponse
    OWN_CONNECT = pool.OWN_CONNECT
    OWN_CONNECTIONS = pool.OWN_CONNECTIONS
    OWN_GET_CONN = pool.OWN_GET_CONN
    OWN_POOLS = pool.OWN_POOLS
    OWN_RENDER_REQUEST = pool.OWN_RENDER_REQUEST
    OWN_REQUEST = pool.OWN_REQUEST
    OWN_URLOPEN = pool.OWN_URLOPEN
    OWN_VALIDATE_CONN = pool.OWN_VALIDATE_CONN
    OWN_MAKE_REQUEST = pool.OWN_MAKE_REQUEST
    PLAIN_FIT = pool.PLAIN_FIT
    OWN_IS_CONNECTED = pool.OWN_IS_CONNECTED
    OWN_CHECKIN_FINISHED = pool.OWN_CHECKIN_FINISHED
    OWN_REVIVE = pool.OWN_REVIVE
    OWN_PUT_CONN = pool.OWN_PUT_CONN
    OWN_RESPONSE = pool.OWN_RESPONSE
    FINISH_CONNECTION_STEPS = pool.FINISH_CONNECTION_STEPS
    FINISH_RESPONSE_STEPS = pool.FINISH_RESPONSE_STEPS
    REQUEST_STEPS = connection.REQUEST_STEPS
    _pool_module = pool  # its monotonic is read at each check-in, as _put_conn reads it
    TotalLeft = pool.TotalLeft
    connect_in_worker = pool.connect_in_worker
    _REDIRECTS = response.HTTPResponse.REDIRECT_STATUSES
    _IS_RETRY = pool._STOCK_IS_RETRY
    # the class-level halves of the lane's checks (a tuple: any of its functions)
    STOCK_POOL_STEPS = (("urlopen", STOCK_URLOPEN),)
    POOL_LANE_STEPS = (
        ("urlopen", OWN_URLOPEN), ("_get_conn", OWN_GET_CONN),
        ("_validate_conn", OWN_VALIDATE_CONN), ("_make_request", OWN_MAKE_REQUEST),
    )
    CONN_LANE_STEPS = (("request", OWN_REQUEST), ("render_request", OWN_RENDER_REQUEST))
    POOL_FINISH_STEPS = (("_make_request", OWN_MAKE_REQUEST), ("_validate_conn", OWN_VALIDATE_CONN))
    _loaded = True


# The characters of PLAIN_ORIGIN_FORM (a path and an optional query): after its "/", a target
# of these only is one (a "?" starts the query; more of them are in it).
cdef bint _PLAIN[128]
for _c in range(128):
    _PLAIN[_c] = chr(_c).isascii() and (chr(_c).isalnum() or chr(_c) in "._~!$&'()*+,;=:@/-?")


cdef inline bint _plain_origin_form(str target):
    cdef Py_ssize_t i, n = len(target)
    cdef Py_UCS4 c
    if n == 0 or target[0] != "/":
        return False
    for i in range(1, n):
        c = target[i]
        if c >= 128 or not _PLAIN[c]:
            return False
    return True


def plain_origin_form(target):
    """Whether ``target`` is one ``PLAIN_ORIGIN_FORM`` matches whole (the twin asks the
    regular expression; ``tests/unit/test_lane.py`` holds the two alike)."""
    return type(target) is str and _plain_origin_form(target)


cdef inline bint _no_status_retry(retries, status) except -1:
    # fastpool.pool.no_status_retry, inline: the stock Retry.is_retry is certain to say no
    return (
        getattr(retries.is_retry, "__func__", None) is _IS_RETRY
        and not (retries.status_forcelist and status in retries.status_forcelist)
        and status not in retries.RETRY_AFTER_STATUS_CODES
    )


cdef inline bint _lane_target(str target):
    # a target the lane takes as it is (see the twin)
    return "/." not in target and _plain_origin_form(target)


def lane_target(target):
    """Whether the lane takes ``target`` as it is: a str in plain origin-form, no dot segment
    (which urllib3 would remove)."""
    return type(target) is str and _lane_target(<str>target)


cdef inline object _on_class(cls, name):
    """``cls.<name>`` as the class's MRO holds it (None: none). For a function this is what
    reading it on the class gives; any other kind of value (a staticmethod, a mock) is itself,
    which never equals fastpool's own function: a check through this is never more lenient
    than one through ``getattr`` (it may send a hop the longer way, never past a patch)."""
    if not isinstance(cls, type):  # (a ConnectionCls that only compares equal to a class)
        return None
    cdef PyObject *found = _PyType_Lookup(<PyTypeObject *>cls, name)
    if found is NULL:
        return None
    return <object>found


cdef inline object _bound_function(obj, name):
    # fastpool._patches.bound_function: another object's method set on this one is a patch
    method = getattr(obj, name)
    if getattr(method, "__self__", None) is not obj:
        return None
    return getattr(method, "__func__", None)


ctypedef struct _Own:
    # a class found to hold the steps asked of it, and its version tag then (see _steps_own)
    PyTypeObject *type
    unsigned int tag

# one pair for each kind of check (HTTP's class and HTTPS's take one each)
cdef _Own _stock_pool_own[2]
cdef _Own _pool_lane_own[2]
cdef _Own _conn_lane_own[2]
cdef _Own _pool_finish_own[2]
cdef _Own _conn_finish_own[2]
cdef _Own _response_finish_own[2]
for _i in range(2):
    _stock_pool_own[_i].type = _pool_lane_own[_i].type = _conn_lane_own[_i].type = NULL
    _pool_finish_own[_i].type = _conn_finish_own[_i].type = NULL
    _response_finish_own[_i].type = NULL


cdef bint _steps_own(_Own *seen, cls, tuple steps) except -1:
    """Whether ``cls`` holds each of ``steps`` (``(name, function)``, or a tuple of functions
    any of which will do) as :func:`_on_class` reads it. A yes is kept with the class's version
    tag and stands while the tag does: the tag changes with any change to the class or a base
    (an attribute set or deleted, ``__bases__`` assigned), the same condition under which
    CPython's type cache, which _on_class reads through, stops answering from memory."""
    cdef PyTypeObject *t = <PyTypeObject *>cls
    cdef unsigned int tag = fastpool_valid_tag(t)
    cdef tuple step
    if tag and (
        (seen[0].type == t and seen[0].tag == tag) or (seen[1].type == t and seen[1].tag == tag)
    ):
        return True
    _PyType_Lookup(t, (<tuple>steps[0])[0])  # (gives the class a tag if it has none)
    tag = fastpool_valid_tag(t)
    for step in steps:
        found = _on_class(cls, step[0])
        expected = step[1]
        if type(expected) is tuple:
            if found not in <tuple>expected:  # (may run Python code: an __eq__)
                return False
        elif found is not expected:
            return False
    # kept only if the class did not change while it was asked (the tag the same)
    if tag and fastpool_valid_tag(t) == tag:
        seen[1] = seen[0]
        seen[0].type, seen[0].tag = t, tag
    return True


cdef inline bint _own_method(obj, dict own, name, function) except -1:
    """``getattr(obj.<name>, "__func__", None) is function`` without making the bound method,
    for an object read the generic way whose ``__dict__`` is ``own``: the class holds
    ``function`` itself and the object nothing of that name."""
    return _on_class(type(obj), name) is function and name not in own


cdef bint _own_plain_pool(pool) except -1:
    if type(pool) not in OWN_POOLS or not _plain_getattr(pool):
        return False
    cls = pool.ConnectionCls
    cdef dict own = pool.__dict__  # (a patch on the pool itself, as mock.patch.object makes)
    kind = type(pool)
    return (
        cls in OWN_CONNECTIONS
        and pool_slot(pool, P_PROXY) is None
        and pool_slot(pool, P_TRACE_NOW) is None
        and pool_slot(pool, P_LIMITER) is None
        and _steps_own(_stock_pool_own, _U3Pool, STOCK_POOL_STEPS)
        # urlopen, _get_conn, _validate_conn and _make_request fastpool's own on the class...
        and _steps_own(_pool_lane_own, kind, POOL_LANE_STEPS)
        # ...and not patched on the pool itself
        and "urlopen" not in own
        and "_get_conn" not in own
        and "_validate_conn" not in own
        and "_make_request" not in own
        and isinstance(cls, type)  # (_on_class's answer for a ConnectionCls that is no class)
        and _steps_own(_conn_lane_own, cls, CONN_LANE_STEPS)
    )


cdef bint _steps_replaced_on(conn) except -1:
    # fastpool.connection.steps_replaced_on
    cdef dict own = conn.__dict__
    if own:  # (most connections: an empty dict)
        for name in REQUEST_STEPS:
            if name in own:
                return True
    return False


cdef bint _buffered(sock) except -1:
    # has_buffered_bytes(sock) for a socket that is not a plain one
    tls = _stock_tls(sock)
    if tls is None:
        return has_buffered_bytes(sock)
    return tls.pending() > 0


cdef bint _is_connected(conn, loop) except -1:
    """``conn.is_connected``: HTTPConnection's steps inline (``_readable_now``, a private
    step), unless the class's property is patched; the map's ``loop`` asked before the
    ``poll`` (see the twin)."""
    if _on_class(type(conn), "is_connected") is not OWN_IS_CONNECTED:
        return conn.is_connected
    sock = conn_slot(conn, C_SOCK)
    if sock is None:
        return False
    if conn_slot(conn, C_REST) or (type(sock) is not socket.socket and _buffered(sock)):
        return False
    if loop is not None and loop.seen_idle(sock):
        return True
    poller = conn_slot(conn, C_POLLER)
    if poller is None:
        return not conn._readable_now()  # (makes the connection's poller)
    return not poller.poll(0)


cdef _checkin_finished(pool, conn, bint keep_alive):
    """``pool._checkin_finished(conn, keep_alive, conn._loop_queue)``, its steps inline when
    the pool's class has fastpool's own (a subclass's override or a patch is called: finish
    serves pools the lane did not check out from)."""
    queue = conn_slot(conn, C_LOOP_QUEUE)
    patched = pool.__dict__  # (a patch on the pool itself, as mock.patch.object makes)
    if (
        _on_class(type(pool), "_checkin_finished") is not OWN_CHECKIN_FINISHED
        or "_checkin_finished" in patched
    ):
        pool._checkin_finished(conn, keep_alive, queue)
        return
    sock = conn_slot(conn, C_SOCK)
    if (
        queue is pool_slot(pool, P_POOL)
        and keep_alive
        and conn_slot(conn, C_REUSABLE)
        and (type(sock) is socket.socket or not _buffered(sock))
    ):
        set_conn_slot(conn, C_REQUESTS, conn_slot(conn, C_REQUESTS) + 1)
        _put_conn(pool, conn, patched)
    else:
        pool._close_and_free(conn, queue)


cdef _put_conn(pool, conn, dict patched):
    """``pool._put_conn(conn)`` for a connection to keep, its steps inline when the pool's
    class has fastpool's own and the pool no global cap (a subclass's override, a patch on the
    class or on the pool (in ``patched``, its ``__dict__``), or a ConnectionLimit's hand-over
    is called)."""
    if (
        _on_class(type(pool), "_put_conn") is not OWN_PUT_CONN
        or "_put_conn" in patched
        or pool_slot(pool, P_LIMITER) is not None
    ):
        pool._put_conn(conn)
        return
    set_conn_slot(conn, C_IDLE_SINCE, _pool_module.monotonic())
    queue = pool_slot(pool, P_POOL)
    if queue.checkin(conn):
        # a retired pool keeps nothing idle; a traced one reports it
        if pool_slot(pool, P_KEPT_WATCH):
            pool._kept(pool, conn)
        return
    if not queue.closed and not pool._retired:
        pool._warn_full()
        pool._discard(conn, "pool_full")
    else:
        pool._discard(conn, "closed")


cdef object _ready(pool, conn, loop):
    """``pool._ready(pool, conn, 0.0)`` for a pool that checks every checkout, the liveness
    check through _is_connected (see the twin)."""
    if pool._ready is not OWN_REVIVE:
        return pool._ready(pool, conn, 0.0)
    if pool._expiry:
        pool._expire(conn)
    if conn.sock is not None and not _is_connected(conn, loop):
        pool._drop_stale(conn)
    return conn


cdef object _checkout(pool, loop):
    queue = pool_slot(pool, P_POOL)
    if not queue.idle:
        return None
    try:
        conn = queue.checkout(0.0)
    except Exception:
        return None
    try:
        if conn is None:
            conn = pool._new_conn()
        elif pool_slot(pool, P_CHECK_CONN):
            conn = _ready(pool, conn, loop)
        elif not _is_connected(conn, loop):
            conn = pool._ready(pool, conn, 0.0)
    except BaseException as e:
        if conn is not None:
            conn.close()
        pool._put_conn(None)
        if isinstance(e, Exception):
            return False
        raise
    return conn


cdef object _timeouts_of(pool, timeout):
    """pool._timeouts(timeout), its cached answer inline; (connect, read or TotalLeft)."""
    cdef tuple last = pool_slot(pool, P_LAST_TIMEOUT)
    cdef tuple number
    fixed = pool_slot(pool, P_TIMEOUT) if timeout is _DEFAULT_TIMEOUT else timeout
    if type(fixed) is float or type(fixed) is int:
        # a number: the Timeout _timeouts keeps for the last one (its _last_number)
        number = pool_slot(pool, P_LAST_NUMBER)
        if number[0] == fixed and type(number[0]) is type(fixed):
            fixed = number[1]
    if (
        last[0] is fixed
        and type(fixed) is Timeout
        and fixed.total is None
        and last[1] == socket.getdefaulttimeout()
    ):
        return last[2], last[3]
    connect_timeout, read, total = pool._timeouts(timeout)
    if total is not None:
        read = TotalLeft(total)
    return connect_timeout, read


cdef bint _all_str(tuple pairs) except -1:
    # connection._all_str: every name and value an exact str
    for pair in pairs:
        if (
            type(pair) is not tuple
            or len(<tuple>pair) != 2
            or type((<tuple>pair)[0]) is not str
            or type((<tuple>pair)[1]) is not str
        ):
            return False
    return True


cdef object _rendered(conn, str target, headers):
    """render_request's kept head for a GET of ``target`` with ``headers``, as it looks it
    up (RENDERED without headers, the connection's _kept_head with them); None: render_request
    itself is to render it."""
    host = conn_slot(conn, C_HOST_VALUE)
    if host is None or (<tuple>host)[0] is not None:  # (a tunnel: render_request's)
        return None
    if type(headers) in PAIR_STORE_TYPES:
        pairs = tuple(headers._store.values())
    elif not headers:
        pairs = ()
    else:
        return None
    if not pairs:
        template = RENDERED.get(("GET", (<tuple>host)[1], _connection.default_user_agent))
        if template is None:
            return None
        return (<tuple>template)[0] + target.encode("ascii") + (<tuple>template)[1]
    kept = conn_slot(conn, C_KEPT_HEAD)
    if kept is None or not _all_str(<tuple>pairs):
        return None
    if (<tuple>kept)[0] != ("GET", (<tuple>host)[1], _connection.default_user_agent, pairs):
        return None
    return (<tuple>kept)[1] + target.encode("ascii") + (<tuple>kept)[2]


def begin_on(pool, target, headers, timeout, bint read_body, loop=None):
    """``pool._loop_begin("GET", target, None, headers, False, timeout, read_body)`` in one
    call: an Exchange, False, or None (not taken; see the twin)."""
    if not _loaded:
        _load()
    if (
        headers is None
        or type(target) is not str
        or not _lane_target(<str>target)
        or not _own_plain_pool(pool)
    ):
        return None
    return _begin_at(pool, <str>target, headers, timeout, read_body, loop)


cdef object _begin_at(pool, str target, headers, timeout, bint read_body, loop):
    """The pool's half of a lane hop, its checks passed (see the twin)."""
    conn = _checkout(pool, loop)
    if conn is None or conn is False:
        return conn
    if _steps_replaced_on(conn):  # a patch on the connection itself: urlopen calls it
        pool._put_conn(conn)
        return False
    set_conn_slot(conn, C_LOOP_QUEUE, pool_slot(pool, P_POOL))
    try:
        connect_timeout, read = _timeouts_of(pool, timeout)
    except BaseException:
        pool._put_conn(conn)
        raise
    try:
        if _on_class(type(pool), "_fit") is not PLAIN_FIT:
            pool._fit(conn)
        data = _rendered(conn, target, headers)
        if data is None:
            data = conn.render_request("GET", target, None, headers)
    except (ValueError, TypeError):
        if conn.head_refused:
            conn.head_refused = False
            pool._put_conn(conn)
            return False
        pool._close_and_free(conn)
        raise
    except BaseException:
        pool._close_and_free(conn)
        raise
    set_conn_slot(conn, C_TIMEOUT, connect_timeout)
    return new_exchange(
        conn,
        "GET",
        data,
        read,
        read_body,
        connect_in_worker,
        conn_slot(conn, C_REQUESTS) > 0,
        _on_class(type(conn), "connect") in OWN_CONNECT,
        pool,
    )


def plain_answer(Exchange exchange not None, retries):
    """``(head, body)`` for the plainest answer, nothing changed, or None (see the twin)."""
    if not _loaded:
        _load()
    if exchange.conn is None or retries.history:
        return None
    return _plain_answer(exchange, retries, True)


def hand_back(Exchange exchange not None, ResponseHead head not None):
    """The connection of an answer ``plain_answer`` took, handed back (see the twin)."""
    _hand_back(exchange, head)


cdef _hand_back(Exchange exchange, ResponseHead head):
    pool = exchange.tag
    conn = exchange.conn
    exchange.conn = None
    set_conn_slot(conn, C_REST, b"")
    set_conn_slot(conn, C_SENT_AHEAD, False)
    set_conn_slot(conn, C_REQUEST_STARTED, True)
    set_conn_slot(conn, C_HEAD_STARTED, True)
    set_pool_slot(pool, P_NUM_REQUESTS, pool_slot(pool, P_NUM_REQUESTS) + 1)
    _checkin_finished(pool, conn, head.keep_alive)


cdef bint _finish_steps_own(pool, conn) except -1:
    # the steps urlopen and the response's read would take are fastpool's own (see the twin)
    pool_cls = type(pool)
    cls = type(conn)
    if pool_cls not in OWN_POOLS or cls not in OWN_CONNECTIONS:
        return False
    cdef dict own = pool.__dict__
    return not (
        not _steps_own(_pool_finish_own, pool_cls, POOL_FINISH_STEPS)
        or "_make_request" in own
        or "_validate_conn" in own
        or _steps_replaced_on(conn)
        or _pool_module.HTTPResponse is not OWN_RESPONSE
        or not _steps_own(_conn_finish_own, cls, FINISH_CONNECTION_STEPS)
        or not _steps_own(_response_finish_own, OWN_RESPONSE, FINISH_RESPONSE_STEPS)
    )


cdef object _plain_answer(Exchange exchange, retries, bint redirect):
    """The decisions of ``Lane.result`` and ``plain_answer`` (see the twin)."""
    cdef ResponseHead head
    pool = exchange.tag
    conn = exchange.conn
    if conn is None or not conn_slot(conn, C_SENT_AHEAD) or exchange.replayed is not None:
        return None
    sock = conn_slot(conn, C_SOCK)  # (read once)
    if (
        sock is None
        or type(sock) is FailedSocket
        or pool_slot(pool, P_TRACE_NOW) is not None
        or _on_class(_U3Pool, "urlopen") is not STOCK_URLOPEN
        or not _plain_getattr(pool)
        or not _own_method(pool, pool.__dict__, "urlopen", OWN_URLOPEN)
        or pool_slot(pool, P_LOG).isEnabledFor(_DEBUG)
        # an unverified TLS connection: urlopen's _validate_conn warns for each request
        or (pool.scheme == "https" and not conn.is_verified and not conn.proxy_is_verified)
        or not _finish_steps_own(pool, conn)
    ):
        return None
    if exchange.head is None:
        return None
    head = exchange.head
    data = conn_slot(conn, C_REST)
    cdef Py_ssize_t used = exchange.head_size
    status = head.status
    framing = head.framing
    if framing == "length":
        end = used + head.content_length  # (a Python int: no overflow)
    elif framing == "none":
        end = used
    else:
        return None
    if (
        len(data) != end
        or status < 200
        or (redirect and status in _REDIRECTS)
        or head.content_encoding
        or not _no_status_retry(retries, status)
    ):
        return None
    return head, data[used:end]


cdef class Lane:
    """One map's plainest hops (see the twin)."""

    cdef public object manager
    cdef object _urlopen
    cdef object _connection_from_host
    cdef tuple _retry_of
    cdef object _result_type

    def __init__(self, manager, urlopen, connection_from_host, result_type):
        if not _loaded:
            _load()
        self.manager = manager
        self._urlopen = urlopen
        self._connection_from_host = connection_from_host
        self._result_type = result_type
        self._retry_of = (None, None, Retry())

    def begin(self, job, loop=None):
        """``job``'s next hop as an Exchange for the loop, False, or None (see the twin)."""
        kw = job.kw
        url = job.url
        if (
            self._urlopen is None
            or job.method != "GET"
            or type(url) is not str
            or type(kw) is not dict
            or not LANE_ARGUMENTS.issuperset(kw)
        ):
            return None
        headers = (<dict>kw).get("headers")
        if (
            headers
            or headers is None
            or (<dict>kw).get("body") is not None
            or (<dict>kw).get("preload_content", True) is not True
        ):
            return None
        manager = self.manager
        if (
            manager.proxy is not None
            # (bound methods, not the manager's __dict__: reading that would turn its compact
            # attribute storage into a dict, slower for every later read of the manager)
            or _bound_function(manager, "urlopen") is not self._urlopen
            or _bound_function(manager, "connection_from_host") is not self._connection_from_host
        ):
            return None
        found = self._pool_of(manager, <str>url)
        if found is None:
            return None
        pool, target = <tuple>found
        exchange = _begin_at(
            pool, <str>target, headers, (<dict>kw).get("timeout", _DEFAULT_TIMEOUT), True, loop
        )
        if exchange is not None and exchange is not False:
            job.conn = pool
            job.target = target
            kw["assert_same_host"] = False
            kw["redirect"] = False
        return exchange

    cdef object _pool_of(self, manager, str url):
        cdef Py_ssize_t slash = url.find("/", 8)
        if slash <= 0:
            return None
        origin = manager._origins.get(url[:slash])
        if origin is None:
            return None
        target = url[slash:]
        if not _lane_target(target):
            return None
        cached = manager._key_cache.get((*origin, None))
        if cached is None:
            return None
        pool = manager.pools.get(cached[0])
        if pool is None or not _own_plain_pool(pool):
            return None
        return pool, target

    def result(self, job, Exchange exchange not None):
        """The map's result for the answer the loop read for ``job``, or None (see the
        twin)."""
        try:
            light = self._finish(job, exchange)
        except Exception as e:
            return tuple.__new__(self._result_type, (job.given, None, e))
        if light is None:
            return None
        return tuple.__new__(self._result_type, (job.given, light, None))

    cdef object _finish(self, job, Exchange exchange):
        if exchange.conn is None:
            return None
        retries = self._retries(exchange.tag, job.kw.get("retries"))
        answer = _plain_answer(exchange, retries, job.redirect)
        if answer is None:
            return None
        head, body = <tuple>answer
        _hand_back(exchange, head)
        return LightResponse(
            (<ResponseHead>head).status, (<ResponseHead>head).reason,
            (<ResponseHead>head).version, head, body, job.url
        )

    cdef object _retries(self, pool, retries):
        if isinstance(retries, Retry):
            return retries
        value, default, made = self._retry_of
        if value is retries and type(value) is type(retries) and default is pool.retries:
            return made
        made = Retry.from_int(retries, redirect=False, default=pool.retries)
        self._retry_of = (retries, pool.retries, made)
        return made
