"""A snapshot of what requests reads from the process environment, read once.

requests looks at ``os.environ`` (and the netrc file) several times for every request: proxies
(``getproxies`` walks the whole environment twice), ``no_proxy``, the netrc file (found and parsed
on every call), and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``. That is about a third of the time
``requests.Session.get`` takes. :class:`Environment` reads all of it once and caches the
per-host answers; the answers are the ones requests' own functions give for the same
environment. :meth:`fastpool.Session.refresh_environment` takes a new snapshot.

An ``Environment`` is never changed after construction except for its answer caches, so threads
share one without a lock; a refresh swaps in a new object.

This module imports requests, as the Session's other modules do (see :mod:`fastpool.sessions`):
it answers for requests' own functions, so it uses requests' helpers (``NETRC_FILES``, the CIDR
tests), calls requests' function where the answer is not the environment's alone (system proxy
settings on macOS and Windows), and calls a ``get_netrc_auth`` a program put on
``requests.sessions``. Only :class:`fastpool.Session` uses it; the engine never does.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from netrc import NetrcParseError, netrc
from typing import Optional
from urllib.parse import urlsplit
from urllib.request import getproxies

from requests import sessions as _requests_sessions
from requests import utils as _requests_utils

__all__ = ("Environment",)

#: Per-host answers kept at most; the cache is emptied when full (a crawler's hosts come and go).
CACHE_SIZE = 4096
# requests' own function: a different object under requests.sessions' name is a replacement.
_GET_NETRC_AUTH = _requests_utils.get_netrc_auth

_Auth = Optional[tuple[str, str]]

# Where requests' proxy_bypass reads nothing but the environment (Linux and other POSIX), the
# snapshot answers exactly. On macOS and Windows it asks the system settings, so there we call
# requests on each cache miss instead.
# typeshed lacks proxy_bypass_environment (python/cpython#145331)
_proxy_bypass_environment = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
_ENV_ONLY_BYPASS = _requests_utils.proxy_bypass is _proxy_bypass_environment  # type: ignore[attr-defined]


def _netrc_path() -> str | None:
    """The netrc file requests would read: ``$NETRC``, else ``~/.netrc``, else ``~/_netrc``."""
    netrc_file = os.environ.get("NETRC")
    if netrc_file is not None:
        locations: tuple[str, ...] = (netrc_file,)
    else:
        locations = tuple(f"~/{name}" for name in _requests_utils.NETRC_FILES)
    for location in locations:
        path = os.path.expanduser(location)
        if os.path.exists(path):
            return path
    return None


class Environment:
    """What requests reads from ``os.environ`` and the netrc file, read once.

    ``proxies`` is ``getproxies()``; ``ca_bundle`` is ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` (``None`` when neither is set); ``netrc_path`` is the netrc file found
    (``None`` when there is none). A netrc file that does not parse, or cannot be read, gives no
    credentials, as in requests.
    """

    __slots__ = (
        "_bypass_cache",
        "_bypass_env",
        "_netrc",
        "_netrc_cache",
        "_no_proxy",
        "ca_bundle",
        "netrc_path",
        "proxies",
    )

    def __init__(self) -> None:
        environ = os.environ
        self.proxies: dict[str, str] = getproxies()
        self.ca_bundle: str | None = (
            environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or None
        )
        # should_bypass_proxies prefers lower case, like curl and wget
        self._no_proxy: str | None = environ.get("no_proxy") or environ.get("NO_PROXY")
        # what urllib's proxy_bypass_environment reads (its "no" entry is no_proxy)
        self._bypass_env: dict[str, str] = urllib.request.getproxies_environment()
        self.netrc_path = _netrc_path()
        self._netrc: netrc | None = None
        if self.netrc_path is not None:
            try:
                self._netrc = netrc(self.netrc_path)
            except (NetrcParseError, OSError):
                self._netrc = None
        self._bypass_cache: dict[tuple[str, str | None], bool] = {}
        self._netrc_cache: dict[str, _Auth] = {}

    def __repr__(self) -> str:
        return (
            f"<Environment proxies={sorted(self.proxies)} ca_bundle={self.ca_bundle!r} "
            f"netrc={self.netrc_path!r}>"
        )

    # --- proxies ------------------------------------------------------------------------------
    def should_bypass_proxies(self, url: str, no_proxy: str | None) -> bool:
        """``requests.utils.should_bypass_proxies(url, no_proxy)`` for this snapshot."""
        netloc = urlsplit(url).netloc
        key = (netloc, no_proxy)
        answer = self._bypass_cache.get(key)
        if answer is None:
            if _ENV_ONLY_BYPASS:
                answer = self._bypass(netloc, no_proxy)
            else:  # pragma: no cover - macOS and Windows consult the system settings
                answer = _requests_utils.should_bypass_proxies(url, no_proxy=no_proxy)
            if len(self._bypass_cache) >= CACHE_SIZE:
                self._bypass_cache.clear()
            self._bypass_cache[key] = answer
        return answer

    def _bypass(self, netloc: str, no_proxy_arg: str | None) -> bool:
        # The same steps as requests.utils.should_bypass_proxies, on the snapshot.
        no_proxy = self._no_proxy if no_proxy_arg is None else no_proxy_arg
        parsed = urlsplit("//" + netloc)
        hostname = parsed.hostname
        if hostname is None:
            return True
        if no_proxy:
            no_proxy_hosts = [host for host in no_proxy.replace(" ", "").split(",") if host]
            if _requests_utils.is_ipv4_address(hostname):
                for proxy_ip in no_proxy_hosts:
                    if _requests_utils.is_valid_cidr(proxy_ip):
                        if _requests_utils.address_in_network(hostname, proxy_ip):
                            return True
                    elif hostname == proxy_ip:
                        return True
            else:
                host_with_port = hostname
                if parsed.port:
                    host_with_port += f":{parsed.port}"
                for host in no_proxy_hosts:
                    host = host.lstrip(".")
                    if hostname == host or host_with_port == host:
                        return True
                    host = "." + host
                    if hostname.endswith(host) or host_with_port.endswith(host):
                        return True
        # requests sets $no_proxy to its argument around urllib's proxy_bypass; the same here.
        bypass_env = self._bypass_env
        if no_proxy_arg is not None:
            bypass_env = dict(bypass_env)
            if no_proxy_arg:
                bypass_env["no"] = no_proxy_arg
            else:
                bypass_env.pop("no", None)
        try:
            return bool(_proxy_bypass_environment(hostname, bypass_env))
        except (TypeError, socket.gaierror):
            return False

    def environ_proxies(self, url: str, no_proxy: str | None = None) -> dict[str, str]:
        """``requests.utils.get_environ_proxies(url, no_proxy)`` for this snapshot.

        The returned dict is shared: read it, do not change it.
        """
        if not self.proxies and no_proxy is None and self._no_proxy is None:
            # Nothing to find and nothing that could raise: requests' answer is {} too.
            return self.proxies
        if self.should_bypass_proxies(url, no_proxy):
            return {}
        return self.proxies

    def resolve_proxies(
        self, url: str, proxies: dict[str, str] | None, trust_env: bool = True
    ) -> dict[str, str]:
        """``requests.utils.resolve_proxies`` for a request to ``url``, on this snapshot."""
        proxies = proxies if proxies is not None else {}
        no_proxy = proxies.get("no_proxy")
        new_proxies = proxies.copy()
        if trust_env:
            environ_proxies = self.environ_proxies(url, no_proxy)
            if environ_proxies:
                scheme = urlsplit(url).scheme
                proxy = environ_proxies.get(scheme, environ_proxies.get("all"))
                if proxy:
                    new_proxies.setdefault(scheme, proxy)
        return new_proxies

    # --- netrc --------------------------------------------------------------------------------
    def netrc_auth(self, url: str) -> _Auth:
        """``requests.utils.get_netrc_auth(url)`` for this snapshot (the file parsed once).

        A ``requests.sessions.get_netrc_auth`` replaced by a test or a program (requests'
        Session calls that name) is called instead, as requests' Session would.
        """
        replaced = _requests_sessions.get_netrc_auth  # type: ignore[attr-defined]
        if replaced is not _GET_NETRC_AUTH:
            return replaced(url)
        if self.netrc_path is None:
            return None
        if isinstance(url, bytes):
            url = url.decode("utf-8")
        try:
            host = urlsplit(url).hostname
        except AttributeError:  # not a str: requests swallows this too
            return None
        if host is None or self._netrc is None:
            return None
        try:
            return self._netrc_cache[host]
        except KeyError:
            pass
        auth: _Auth = None
        entry = self._netrc.authenticators(host)
        if entry and any(entry):
            login_i = 0 if entry[0] else 1
            auth = (entry[login_i] or "", entry[2] or "")
        if len(self._netrc_cache) >= CACHE_SIZE:
            self._netrc_cache.clear()
        self._netrc_cache[host] = auth
        return auth
