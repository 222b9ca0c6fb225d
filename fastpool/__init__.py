"""fastpool: fast, observable, thread-safe HTTP connection pooling for requests users and crawlers.

The public names are imported lazily, so ``import fastpool`` stays cheap and the pool layer
(``PoolManager``) never imports requests.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._compat import IMPLEMENTATION

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "PoolManager": "fastpool.poolmanager",
    "ProxyManager": "fastpool.poolmanager",
    "proxy_from_url": "fastpool.poolmanager",
    "HTTPConnectionPool": "fastpool.pool",
    "HTTPSConnectionPool": "fastpool.pool",
    "connection_from_url": "fastpool.pool",
    "HTTPAdapter": "fastpool.adapters",
    "PoolTimeout": "fastpool.adapters",
    "DeadlineExceeded": "fastpool.exceptions",
    "LightResponse": "fastpool.light",
    "Session": "fastpool.sessions",
    "ThreadSafeCookieJar": "fastpool.cookies",
    "PoolStats": "fastpool.stats",
    "HostStats": "fastpool.stats",
    "advise": "fastpool.stats",
    "Trace": "fastpool.trace",
    "install": "fastpool._install",
    "uninstall": "fastpool._install",
    "installed": "fastpool._install",
    "Installation": "fastpool._install",
}

__all__ = (
    "DeadlineExceeded",
    "HTTPAdapter",
    "HTTPConnectionPool",
    "HTTPSConnectionPool",
    "HostStats",
    "Installation",
    "LightResponse",
    "PoolManager",
    "PoolStats",
    "PoolTimeout",
    "ProxyManager",
    "Session",
    "ThreadSafeCookieJar",
    "Trace",
    "__version__",
    "advise",
    "connection_from_url",
    "implementation",
    "install",
    "installed",
    "proxy_from_url",
    "uninstall",
)


def implementation() -> str:
    """Return the active core backend: ``"cython"`` (compiled) or ``"python"`` (pure twins)."""
    return IMPLEMENTATION


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastpool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
