"""TLS for fastpool's connections: SSLContexts by urllib3's rules, the contexts of one pool,
and the handshake with urllib3's checks after it (TLS inside TLS for an ``https://`` proxy).

What urllib3 keeps in ``util/ssl_.py`` and ``util/ssltransport.py``. The connection
(``connection.py``) and the pool (``pool.py``) ask this module; neither builds, caches or
checks TLS itself:

* :func:`build_ssl_context`: one context from urllib3's TLS arguments;
* :class:`PoolContexts`: an ``HTTPSConnectionPool``'s context for its current settings, and
  its context for TLS to an ``https://`` proxy (:func:`proxy_policy`);
* :func:`context_for_proxy`: the proxy's context for a connection without a pool's;
* :func:`wrap_and_verify`: the handshake, then a pinned fingerprint or ``assert_hostname``;
* :class:`TLSInTLS`: a TLS session through another one (an ``https://`` proxy's tunnel);
* :func:`has_buffered_bytes`: whether a TLS socket holds bytes a poll cannot see;
* :func:`stock_tls`: the TLS object under the stdlib's own ``SSLSocket``, for the loop to call
  without that class's Python frames.
"""

from __future__ import annotations

import operator
import socket
import ssl
import sys
import threading
import types
import typing
from typing import Any, Protocol

from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs, resolve_ssl_version

__all__ = (
    "TLS_SETTINGS",
    "PoolContexts",
    "TLSInTLS",
    "build_ssl_context",
    "check_peer",
    "context_for_proxy",
    "has_buffered_bytes",
    "is_forwarding",
    "proxy_policy",
    "stock_tls",
    "tls_recv_into",
    "wrap_and_verify",
)

#: urllib3's TLS arguments of a connection or pool that :func:`build_ssl_context` takes (besides
#: ``ssl_context``, ``assert_hostname`` and ``assert_fingerprint``).
TLS_SETTINGS = (
    "cert_reqs",
    "ca_certs",
    "ca_cert_dir",
    "ca_cert_data",
    "cert_file",
    "key_file",
    "key_password",
    "ssl_version",
    "ssl_minimum_version",
    "ssl_maximum_version",
)


# --- contexts -----------------------------------------------------------------------------------
def build_ssl_context(
    ssl_context: ssl.SSLContext | None = None,
    *,
    cert_reqs: int | str | None = None,
    ca_certs: str | None = None,
    ca_cert_dir: str | None = None,
    ca_cert_data: str | bytes | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    key_password: str | None = None,
    ssl_version: int | str | None = None,
    ssl_minimum_version: ssl.TLSVersion | None = None,
    ssl_maximum_version: ssl.TLSVersion | None = None,
    assert_hostname: None | str | typing.Literal[False] = None,
    assert_fingerprint: str | None = None,
) -> ssl.SSLContext:
    """An SSLContext set up by urllib3's rules (built once per pool, shared by its connections).

    Without ``ssl_context`` a new one comes from urllib3's ``create_urllib3_context`` (TLS 1.2+,
    its ciphers). ``cert_reqs`` (default ``CERT_REQUIRED``: verification on) is applied to a
    given context too, as urllib3 does. ``ca_certs``/``ca_cert_dir``/``ca_cert_data`` are
    loaded, else the system's default CAs (for a context built here). ``cert_file``,
    ``key_file`` and ``key_password`` load a client certificate. ``assert_hostname`` or
    ``assert_fingerprint`` turn the built-in hostname check off: the connection checks them.
    """
    context = ssl_context
    if context is None:
        context = create_urllib3_context(
            ssl_version=resolve_ssl_version(ssl_version),
            ssl_minimum_version=ssl_minimum_version,
            ssl_maximum_version=ssl_maximum_version,
            cert_reqs=resolve_cert_reqs(cert_reqs),
        )
    if not isinstance(context, ssl.SSLContext):
        # urllib3.contrib.pyopenssl.inject_into_urllib3() makes urllib3 build pyOpenSSL's
        # contexts; fastpool's engine reads and writes through the ssl module's sockets.
        raise TypeError(
            "fastpool speaks TLS through Python's ssl module and needs an ssl.SSLContext, got "
            f"{type(context).__module__}.{type(context).__qualname__} (is urllib3's pyOpenSSL "
            "injection in effect? urllib3.contrib.pyopenssl.extract_from_urllib3() undoes it)"
        )
    verify_mode = resolve_cert_reqs(cert_reqs)
    if verify_mode == ssl.CERT_NONE:
        context.check_hostname = False
    context.verify_mode = verify_mode
    if assert_fingerprint or assert_hostname or assert_hostname is False:
        context.check_hostname = False  # checked by the connection instead
    if ca_certs or ca_cert_dir or ca_cert_data:
        context.load_verify_locations(ca_certs, ca_cert_dir, ca_cert_data)
    elif ssl_context is None:
        context.load_default_certs()
    if cert_file:
        # Without a password an encrypted key fails at once, with urllib3's error; OpenSSL's
        # own fallback would prompt for one on the terminal.
        context.load_cert_chain(
            cert_file, key_file, _no_key_password if key_password is None else key_password
        )
    try:
        context.set_alpn_protocols(["http/1.1"])
    except NotImplementedError:  # pragma: no cover - very old OpenSSL
        pass
    return context


def _no_key_password() -> str:
    from urllib3.exceptions import SSLError

    raise SSLError("Client private key is encrypted, password is required")


def context_for_proxy(config: Any) -> ssl.SSLContext:
    """The context for TLS to an ``https://`` proxy from its ``ProxyConfig`` (or ``None``)
    alone: for a connection whose pool prepared none."""
    return build_ssl_context(
        config.ssl_context if config else None,
        assert_hostname=config.assert_hostname if config else None,
        assert_fingerprint=config.assert_fingerprint if config else None,
    )


class PoolSettings(Protocol):
    """What :class:`PoolContexts` reads from an ``HTTPSConnectionPool``: its TLS settings
    (urllib3's names, which requests' ``cert_verify`` sets on the pool) and its proxy."""

    @property
    def ssl_context(self) -> ssl.SSLContext | None: ...
    @property
    def cert_reqs(self) -> int | str | None: ...
    @property
    def ca_certs(self) -> str | None: ...
    @property
    def ca_cert_dir(self) -> str | None: ...
    @property
    def ca_cert_data(self) -> str | bytes | None: ...
    @property
    def cert_file(self) -> str | None: ...
    @property
    def key_file(self) -> str | None: ...
    @property
    def key_password(self) -> str | None: ...
    @property
    def ssl_version(self) -> int | str | None: ...
    @property
    def ssl_minimum_version(self) -> ssl.TLSVersion | None: ...
    @property
    def ssl_maximum_version(self) -> ssl.TLSVersion | None: ...
    @property
    def assert_hostname(self) -> str | typing.Literal[False] | None: ...
    @property
    def assert_fingerprint(self) -> str | None: ...
    @property
    def server_hostname(self) -> str | None: ...
    @property
    def proxy(self) -> Any: ...
    @property
    def proxy_config(self) -> Any: ...


def is_forwarding(pool: PoolSettings) -> bool:
    """True for a pool to an ``https://`` proxy that forwards (``use_forwarding_for_https``):
    its only TLS session is with the proxy."""
    config = pool.proxy_config
    return (
        pool.proxy is not None
        and pool.proxy.scheme == "https"
        and config is not None
        and bool(config.use_forwarding_for_https)
    )


def proxy_policy(pool: PoolSettings, fallback: ssl.SSLContext | None) -> ssl.SSLContext:
    """TLS to the proxy, by urllib3's rules: the ProxyManager's ``proxy_ssl_context`` as
    given (its own verify mode and CAs: never changed), else the pool's verification
    settings on ``fallback`` (or urllib3's default context), never its client certificate.
    """
    config = pool.proxy_config
    given = config.ssl_context if config else None
    pins = {
        "assert_hostname": config.assert_hostname if config else None,
        "assert_fingerprint": config.assert_fingerprint if config else None,
    }
    if given is not None:
        return build_ssl_context(given, cert_reqs=given.verify_mode, **pins)
    return build_ssl_context(
        fallback,
        cert_reqs=pool.cert_reqs,
        ca_certs=pool.ca_certs,
        ca_cert_dir=pool.ca_cert_dir,
        ca_cert_data=pool.ca_cert_data,
        ssl_version=pool.ssl_version,
        ssl_minimum_version=pool.ssl_minimum_version,
        ssl_maximum_version=pool.ssl_maximum_version,
        **pins,
    )


def _pool_context(pool: PoolSettings) -> ssl.SSLContext:
    """A pool's one SSLContext, with urllib3's defaults and rules."""
    if is_forwarding(pool):
        return proxy_policy(pool, pool.ssl_context)
    return build_ssl_context(
        pool.ssl_context,
        cert_reqs=pool.cert_reqs,
        ca_certs=pool.ca_certs,
        ca_cert_dir=pool.ca_cert_dir,
        ca_cert_data=pool.ca_cert_data,
        cert_file=pool.cert_file,
        key_file=pool.key_file,
        key_password=pool.key_password,
        ssl_version=pool.ssl_version,
        ssl_minimum_version=pool.ssl_minimum_version,
        ssl_maximum_version=pool.ssl_maximum_version,
        assert_hostname=pool.assert_hostname,
        assert_fingerprint=pool.assert_fingerprint,
    )


def _pool_settings(pool: PoolSettings) -> tuple[Any, ...]:
    return (
        pool.ssl_context,
        pool.cert_reqs,
        pool.ca_certs,
        pool.ca_cert_dir,
        pool.ca_cert_data,
        pool.cert_file,
        pool.key_file,
        pool.key_password,
        pool.ssl_version,
        pool.ssl_minimum_version,
        pool.ssl_maximum_version,
        pool.assert_hostname,
        pool.assert_fingerprint,
        pool.server_hostname,
    )


class PoolContexts:
    """The SSLContexts of one ``HTTPSConnectionPool``, which owns one of these.

    The settings are read from the pool at every call, never copied: requests'
    ``cert_verify`` sets ``cert_reqs``/``ca_certs``/``cert_file`` ... on the pool object.
    The pool is passed in, not kept, so a pool dropped without ``close()`` is freed at once
    (its finalizer closes its idle sockets).
    """

    __slots__ = ("_context", "_lock", "_proxy_context", "_proxy_settings", "_settings")

    def __init__(self) -> None:
        self._context: ssl.SSLContext | None = None
        self._settings: tuple[Any, ...] = ()
        self._lock = threading.Lock()
        self._proxy_context: ssl.SSLContext | None = None
        self._proxy_settings: tuple[Any, ...] = ()

    def context(self, pool: PoolSettings) -> ssl.SSLContext:
        """The pool's SSLContext for its current TLS settings.

        A change builds a new context; the pool does not reuse connections made under the old
        one (so an unverified connection never serves a verified request).
        """
        settings = _pool_settings(pool)
        context = self._context
        if context is None or settings != self._settings:
            with self._lock:  # threads dialing at once must share one context
                if self._context is None or settings != self._settings:
                    self._context = _pool_context(pool)
                    self._settings = settings
                context = self._context
        return context

    def proxy_context(self, pool: PoolSettings) -> ssl.SSLContext:
        """The one context for TLS to an ``https://`` proxy that tunnels (see
        :func:`proxy_policy`); a forwarding pool's own context is that already."""
        if is_forwarding(pool):
            return self.context(pool)
        # Rebuilt when the pool's settings change, as the origin's context is (requests'
        # cert_verify turning verification on must reach the proxy's TLS too).
        settings = _pool_settings(pool)
        context = self._proxy_context
        if context is None or settings != self._proxy_settings:
            with self._lock:
                if self._proxy_context is None or settings != self._proxy_settings:
                    self._proxy_context = proxy_policy(pool, None)
                    self._proxy_settings = settings
                context = self._proxy_context
        return context


# --- the handshake ------------------------------------------------------------------------------
def wrap_and_verify(
    sock: Any,
    context: ssl.SSLContext,
    server_hostname: str,
    assert_hostname: None | str | typing.Literal[False],
    assert_fingerprint: str | None,
) -> Any:
    """TLS over ``sock`` (over a TLS socket too: an origin through an https proxy's tunnel),
    then urllib3's extra checks: a pinned fingerprint, or ``assert_hostname``."""
    name = server_hostname.strip("[]")
    if isinstance(sock, (ssl.SSLSocket, TLSInTLS)):
        tls: Any = TLSInTLS(sock, context, name)
    else:
        tls = context.wrap_socket(sock, server_hostname=name)
    try:
        check_peer(tls, context, name, assert_hostname, assert_fingerprint)
    except BaseException:
        tls.close()  # the caller closes the socket under it; this object too, or it leaks
        raise
    return tls


def check_peer(
    tls: Any,
    context: ssl.SSLContext,
    name: str,
    assert_hostname: None | str | typing.Literal[False],
    assert_fingerprint: str | None,
) -> None:
    """urllib3's checks after the handshake: a pinned fingerprint, or ``assert_hostname``."""
    if assert_fingerprint:
        from urllib3.util.ssl_ import assert_fingerprint as check_fingerprint

        check_fingerprint(tls.getpeercert(binary_form=True), assert_fingerprint)
    elif (
        context.verify_mode != ssl.CERT_NONE
        and not context.check_hostname
        and assert_hostname is not False
    ):
        from urllib3.util.ssl_match_hostname import match_hostname

        match_hostname(
            tls.getpeercert(),
            assert_hostname or name,
            hostname_checks_common_name=context.hostname_checks_common_name,
        )


def has_buffered_bytes(sock: Any) -> bool:
    """True when a TLS socket holds bytes already taken off the wire but not read.

    A TLS record carries more than one read asks for: the rest waits in the ``ssl`` object
    (``pending()``), where polling the socket cannot see it. Bytes after a complete response
    are a protocol error (or an injected response), so such a connection is never reused.
    A plain socket buffers nothing of ours.
    """
    if type(sock) is socket.socket or sock is None:
        return False
    pending = getattr(sock, "pending", None)
    return pending is not None and pending() > 0


#: the stdlib ``SSLSocket``'s methods the loop stands in for: for the calls it makes (a length,
#: no flags), each calls its ``_sslobj``'s ``read``, ``write`` or ``pending`` (reading a ragged
#: EOF as an end when ``suppress_ragged_eofs``), on every Python from 3.9 to 3.13 (read there;
#: a later one keeps calling the socket's methods until its ``ssl.py`` is read too)
STOCK_TLS_METHODS = ("recv_into", "read", "send", "pending", "_checkClosed")


def _stdlib_steps() -> tuple[Any, tuple[Any, ...] | None]:
    """``ssl.SSLSocket`` and its methods in ``STOCK_TLS_METHODS`` as this module found them.
    No methods (the loop then always calls the socket's) on a Python whose ``ssl`` module was
    not checked, when the class is not the stdlib's own (gevent's, say), or when a method is
    not a function of ``ssl.py`` itself: a wrapper a tool installed before fastpool was
    imported (``functools.wraps`` copies ``__module__``, not the globals)."""
    cls = ssl.SSLSocket
    steps = tuple(vars(cls).get(name) for name in STOCK_TLS_METHODS)
    if (
        not (3, 9) <= sys.version_info[:2] <= (3, 13)
        or cls.__module__ != "ssl"
        or any(
            type(step) is not types.FunctionType
            or step.__globals__ is not vars(ssl)
            or step.__qualname__ != f"SSLSocket.{name}"
            for name, step in zip(STOCK_TLS_METHODS, steps)
        )
    ):
        return cls, None
    return cls, steps


STOCK_SSL_SOCKET, STOCK_TLS_STEPS = _stdlib_steps()
#: a class's own entries for STOCK_TLS_METHODS, in one C call (``vars(cls)``: a patch on the
#: class lands there)
_class_steps = operator.itemgetter(*STOCK_TLS_METHODS)


def stock_tls(sock: Any) -> Any:
    """The ``_sslobj`` under ``sock`` when ``sock`` is exactly the stdlib's ``ssl.SSLSocket``
    and its ``recv_into``, ``read``, ``send``, ``pending`` and ``_checkClosed`` are the ``ssl``
    module's own (none patched on the class or on the socket). Calling that object's
    ``read(n, buffer)``, ``write(data)`` and ``pending()`` is then what the socket's
    ``recv_into(buffer, n)``, ``send(data)`` and ``pending()`` do, without their Python frames
    (:func:`tls_recv_into` reads a ragged EOF as ``read`` does). Else None, and None too when
    the session is closed or unwrapped (``_sslobj`` is None): call the socket's methods, so
    that a patch of any of them sees every call."""
    if type(sock) is not STOCK_SSL_SOCKET or STOCK_TLS_STEPS is None:
        return None
    try:
        steps = _class_steps(vars(STOCK_SSL_SOCKET))
    except KeyError:  # one deleted from the class: the socket's class's own is another
        return None
    # (functions compare by identity: the class's own methods as found at import)
    if steps != STOCK_TLS_STEPS or not sock.__dict__.keys().isdisjoint(STOCK_TLS_METHODS):
        return None
    return sock._sslobj


def tls_recv_into(tls: Any, sock: Any, buffer: Any, size: int) -> int:
    """``sock.recv_into(buffer, size)`` through ``tls``, :func:`stock_tls`'s answer for
    ``sock``: what the stdlib's ``SSLSocket.read`` does."""
    try:
        return tls.read(size, buffer)  # type: ignore[no-any-return]
    except ssl.SSLError as e:
        if e.args[0] == ssl.SSL_ERROR_EOF and sock.suppress_ragged_eofs:
            return 0
        raise


class TLSInTLS:
    """A TLS session inside another (``https://`` proxy, CONNECT tunnel, then the origin):
    an ``ssl.SSLObject`` whose records travel through the outer TLS socket. It offers the
    few socket methods the engine uses."""

    def __init__(self, outer: Any, context: ssl.SSLContext, server_hostname: str) -> None:
        self._outer = outer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._run(self._tls.do_handshake)

    def _run(self, operation: Any, *args: Any) -> Any:
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self._outer.recv(65536)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._outer.sendall(data)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        try:
            return int(self._run(self._tls.read, nbytes or len(buffer), buffer))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0  # like SSLSocket's suppress_ragged_eofs

    def recv(self, bufsize: int) -> bytes:
        try:
            return bytes(self._run(self._tls.read, bufsize))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def sendall(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view:
            sent = self._run(self._tls.write, view)
            view = view[sent:]

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form)

    def pending(self) -> int:
        """Bytes taken off the wire but not yet read: decrypted, or still in either TLS layer."""
        return int(self._tls.pending() + self._incoming.pending + has_buffered_bytes(self._outer))

    def settimeout(self, timeout: float | None) -> None:
        self._outer.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return typing.cast("float | None", self._outer.gettimeout())

    def fileno(self) -> int:
        return int(self._outer.fileno())

    def shutdown(self, how: int) -> None:
        self._outer.shutdown(how)

    def close(self) -> None:
        self._outer.close()
