"""fastpool under httpie's ``http``/``https`` commands: an opt-in pair of transport plugins.

httpie builds one requests Session per command (``httpie.client.build_requests_session``):
its own adapters at ``http://`` and ``https://``, then, for each installed transport plugin
(entry-point group ``httpie.plugins.transport.v1``), ``plugin.get_adapter()`` mounted at
``plugin.prefix``. :class:`FastpoolHTTPTransport` and :class:`FastpoolHTTPSTransport` mount
fastpool adapters at exactly those two prefixes, so every request of the command, redirects
included, goes through fastpool's pools.

The catch with the plugin API: ``get_adapter()`` takes no arguments, while httpie builds its
HTTPS adapter from the command's ``--ssl``, ``--ciphers`` and ``--verify``. A plugin returning
a plain ``fastpool.HTTPAdapter`` would drop ``--ssl`` and ``--ciphers`` without a word.
:class:`FastpoolHTTPSTransport` therefore reads the three values from the
``build_requests_session`` call it is made from (that function's own parameters) and builds
:class:`FastpoolHTTPieHTTPSAdapter` with them: httpie's HTTPS adapter class (the same
SSLContext, the same ``--cert-key-pass`` handling) over fastpool's pools. Called from anywhere
else, or under an httpie whose ``build_requests_session`` no longer has those parameters, it
raises :class:`HTTPieIntegrationError` rather than guess: the command fails, naming the cause.

The adapters also honour ``--max-headers`` (httpie sets ``http.client._MAXHEADERS`` around
each send; its default 0 means no limit, where fastpool's default is 100), and say so with a
:class:`FastpoolHTTPieWarning` when a SOCKS proxy sends a request through urllib3's
``SOCKSProxyManager`` instead of fastpool's pools (as ``fastpool.HTTPAdapter`` always does).

Installing fastpool registers nothing: these plugins take over a user's ``http`` traffic only
through a plugin distribution the user installs (see the "Works with" documentation, httpie).
Importing this module imports httpie; ``import fastpool`` never imports it.
"""

from __future__ import annotations

import http.client
import math
import sys
import warnings
from types import CodeType
from typing import TYPE_CHECKING, Any

import httpie.client as _httpie_client  # type: ignore[import-untyped, import-not-found, unused-ignore]
from httpie.adapters import HTTPieHTTPAdapter  # type: ignore[import-untyped, import-not-found, unused-ignore]
from httpie.plugins import TransportPlugin  # type: ignore[import-untyped, import-not-found, unused-ignore]
from httpie.ssl_ import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    AVAILABLE_SSL_VERSION_ARG_MAPPING,
    HTTPieHTTPSAdapter,
)
from urllib3.util import parse_url

from ..adapters import HTTPAdapter

if TYPE_CHECKING:
    from requests.models import PreparedRequest, Response

__all__ = (
    "FastpoolHTTPSTransport",
    "FastpoolHTTPTransport",
    "FastpoolHTTPieHTTPAdapter",
    "FastpoolHTTPieHTTPSAdapter",
    "FastpoolHTTPieWarning",
    "HTTPieIntegrationError",
    "httpie_tls_settings",
)

#: http.client's default ``_MAXHEADERS``, and fastpool's default ``max_headers``.
_DEFAULT_HEADER_LIMIT = 100
#: The parameters of ``httpie.client.build_requests_session`` the HTTPS adapter is built from.
_TLS_PARAMETERS = ("verify", "ssl_version", "ciphers")
#: How many frames up from ``get_adapter`` to look for that call (a subclass's ``get_adapter``
#: calling ``super().get_adapter()`` adds one).
_MAX_FRAMES = 8


class HTTPieIntegrationError(RuntimeError):
    """The httpie plugin cannot honour httpie's TLS options (``--ssl``, ``--ciphers``,
    ``--verify``): ``get_adapter()`` was not called by ``httpie.client.build_requests_session``,
    or that function changed. Raised instead of mounting an adapter that would ignore them."""


class FastpoolHTTPieWarning(UserWarning):
    """A request of the ``http`` command does not go through fastpool's pools (a SOCKS proxy:
    urllib3's ``SOCKSProxyManager`` serves it, as with ``fastpool.HTTPAdapter``)."""


def _header_limit() -> int:
    """fastpool's ``max_headers`` for the limit httpie set for this send (``--max-headers``,
    as ``http.client._MAXHEADERS``; httpie's default 0 sets no limit)."""
    limit = getattr(http.client, "_MAXHEADERS", _DEFAULT_HEADER_LIMIT)
    if isinstance(limit, float) and math.isinf(limit) and limit > 0:
        return sys.maxsize  # still bounded: fastpool's max_head_bytes (1 MiB a head) holds
    # http.client counts the blank line that ends the head among its _MAXHEADERS lines, so it
    # reads at most N - 1 header fields; fastpool counts fields. (Below 1, fastpool raises a
    # ValueError naming max_headers: the command fails.)
    return int(limit) - 1


class _OnFastpool:
    """What both adapters add between httpie's adapter class and fastpool's: ``--max-headers``,
    and a visible note when a SOCKS proxy takes a request past fastpool's pools.

    Like httpie's own adapters, meant for one command's session (not shared across threads).
    """

    _header_limit_in_force = _DEFAULT_HEADER_LIMIT

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self._follow_header_limit()
        return super().send(request, *args, **kwargs)  # type: ignore[misc, no-any-return]

    def _follow_header_limit(self) -> None:
        # httpie sets http.client._MAXHEADERS only around Session.send, after the adapters are
        # built; it is the same for every send of one command, so the pool managers are
        # rebuilt once, before their first pool exists.
        limit = _header_limit()
        if limit == self._header_limit_in_force:
            return
        adapter: Any = self
        old_manager, old_options = adapter.poolmanager, adapter._pool_options
        adapter._pool_options = {**old_options, "max_headers": limit}
        try:  # the new manager checks the bound: a ValueError naming max_headers
            adapter.init_poolmanager(
                adapter._pool_connections, adapter._pool_maxsize, block=adapter._pool_block
            )
        except BaseException:
            adapter.poolmanager, adapter._pool_options = old_manager, old_options
            raise
        old_manager.clear()
        for manager in adapter.proxy_manager.values():
            manager.clear()
        adapter.proxy_manager.clear()
        adapter._header_limit_in_force = limit

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        adapter: Any = self
        if proxy.lower().startswith("socks") and proxy not in adapter.proxy_manager:
            parsed = parse_url(proxy)
            warnings.warn(
                "fastpool: requests through the SOCKS proxy "
                f"{parsed.scheme}://{parsed.host}:{parsed.port} use urllib3's "
                "SOCKSProxyManager, not fastpool's pools",
                FastpoolHTTPieWarning,
                stacklevel=2,
            )
        return super().proxy_manager_for(proxy, **proxy_kwargs)  # type: ignore[misc]


class FastpoolHTTPieHTTPAdapter(_OnFastpool, HTTPieHTTPAdapter, HTTPAdapter):  # type: ignore[misc]
    """httpie's ``http://`` adapter (repeated response headers kept apart) on fastpool's
    pools. Takes :class:`fastpool.HTTPAdapter`'s keyword arguments."""


class FastpoolHTTPieHTTPSAdapter(_OnFastpool, HTTPieHTTPSAdapter, HTTPAdapter):  # type: ignore[misc]
    """httpie's ``https://`` adapter on fastpool's pools: the SSLContext httpie builds from
    ``verify``, ``ssl_version`` (an ``ssl.PROTOCOL_*`` constant, as httpie passes it) and
    ``ciphers`` is every pool's (and every proxy pool's), and an ``HTTPieCertificate``'s key
    password reaches the pool. Other keyword arguments are :class:`fastpool.HTTPAdapter`'s."""

    def __init__(
        self,
        verify: bool = True,
        ssl_version: int | None = None,
        ciphers: str | None = None,
        **kwargs: Any,
    ) -> None:
        # httpie's __init__ builds the SSLContext, then goes on up this class's MRO (fastpool's)
        HTTPieHTTPSAdapter.__init__(
            self, verify=verify, ssl_version=ssl_version, ciphers=ciphers, **kwargs
        )


def _is_build_requests_session(code: CodeType) -> bool:
    return code.co_name == "build_requests_session" and code.co_filename == str(
        _httpie_client.__file__
    )


def httpie_tls_settings() -> dict[str, Any]:
    """``verify``, ``ssl_version`` and ``ciphers`` of the ``build_requests_session`` call in
    progress up the stack, as httpie got them from the command line (``ssl_version`` as the
    ``--ssl`` value, e.g. ``"tls1.2"``, or None). Raises :class:`HTTPieIntegrationError`
    when there is no such call, or it lacks one of them."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        if _is_build_requests_session(frame.f_code):
            found = frame.f_locals
            missing = [name for name in _TLS_PARAMETERS if name not in found]
            if missing:
                raise HTTPieIntegrationError(
                    "fastpool's httpie plugin: httpie.client.build_requests_session has no "
                    f"{', '.join(missing)} (httpie {_httpie_version()} is not supported), so "
                    "the command's TLS options cannot be honoured; uninstall the plugin or "
                    "upgrade fastpool"
                )
            return {name: found[name] for name in _TLS_PARAMETERS}
        frame = frame.f_back  # type: ignore[assignment]
    raise HTTPieIntegrationError(
        "fastpool's httpie plugin: get_adapter() was not called by httpie's "
        "build_requests_session, so the command's --ssl, --ciphers and --verify are unknown; "
        "mount FastpoolHTTPieHTTPSAdapter(verify=..., ssl_version=..., ciphers=...) yourself"
    )


def _httpie_version() -> str:
    import httpie

    return str(getattr(httpie, "__version__", "?"))


class FastpoolHTTPTransport(TransportPlugin):  # type: ignore[misc]
    """Transport plugin: ``http://`` URLs through fastpool (httpie's own adapter otherwise)."""

    name = "fastpool (http://)"
    description = "Sends http:// requests through fastpool's connection pools"
    prefix = "http://"

    def get_adapter(self) -> FastpoolHTTPieHTTPAdapter:
        return FastpoolHTTPieHTTPAdapter()


class FastpoolHTTPSTransport(TransportPlugin):  # type: ignore[misc]
    """Transport plugin: ``https://`` URLs through fastpool, with the command's ``--ssl``,
    ``--ciphers`` and ``--verify`` (see :func:`httpie_tls_settings`)."""

    name = "fastpool (https://)"
    description = "Sends https:// requests through fastpool's connection pools"
    prefix = "https://"

    def get_adapter(self) -> FastpoolHTTPieHTTPSAdapter:
        settings = httpie_tls_settings()
        ssl_version = settings["ssl_version"]
        return FastpoolHTTPieHTTPSAdapter(
            verify=settings["verify"],
            # as build_requests_session maps it (an unknown name already failed there)
            ssl_version=AVAILABLE_SSL_VERSION_ARG_MAPPING[ssl_version] if ssl_version else None,
            ciphers=settings["ciphers"],
        )
