"""Patches other tools put on requests' and urllib3's extension points, and how fastpool honours them.

Tracers, mocks and cassettes patch public extension points (``requests.Session.send``,
``HTTPAdapter.send``, urllib3's ``HTTPConnectionPool.urlopen``). fastpool's own classes do not
inherit those methods, so each entry point compares the class attribute with the function
the library defined, saved at import (one identity check: free when nothing is patched), and
takes the patched route when they differ. This module holds that comparison and the route for
urllib3's ``urlopen``; requests' routes live beside the adapter and the Session.
"""

from __future__ import annotations

import warnings
import weakref
from types import FunctionType, ModuleType
from typing import Any

import urllib3.connectionpool

from .exceptions import ForeignPatchWarning

__all__ = (
    "STOCK_URLOPEN", "ForeignPatchWarning", "bound_function", "is_own_method", "stock_function",
    "urlopen_through_patch",
)  # fmt: skip


def bound_function(obj: Any, name: str) -> Any:
    """The function behind ``obj.<name>`` when that is a method bound to ``obj`` itself, else
    None (see :func:`is_own_method`)."""
    method = getattr(obj, name)
    if getattr(method, "__self__", method) is not obj:
        return None
    return getattr(method, "__func__", None)


def is_own_method(method: Any, obj: Any, function: Any) -> bool:
    """Whether ``method`` (read as ``obj.<name>``) is ``function`` bound to ``obj`` itself:
    how fastpool sees a patch on an object. Another object's method set on this one
    (``m.request = other.request``) runs as that object's, so it is a patch too. The paths
    each request takes write this test out, a frame less: ``getattr(m, "__func__", None) is
    function and getattr(m, "__self__", m) is obj``."""
    return (
        getattr(method, "__func__", None) is function and getattr(method, "__self__", method) is obj
    )


def stock_function(func: Any, module: ModuleType) -> Any:
    """The function ``module`` defines that ``func`` is or wraps, or None.

    fastpool notices a tool that patches one of requests' or urllib3's extension points by
    comparing the class attribute with the function the library defined, saved at import. A
    tool that patched it before fastpool was imported (OpenTelemetry's auto-instrumentation,
    say) leaves a wrapper whose ``__wrapped__`` leads to the library's function
    (``functools.wraps``, wrapt); an unknown replacement gives None, and the patched route is
    then always taken.
    """
    filename = getattr(module, "__file__", None)
    for _ in range(32):  # a chain of wrappers, never a cycle
        if func is None:
            return None
        # a plain function: a proxy (wrapt's wrappers) answers for the __code__ it wraps
        if type(func) is FunctionType and func.__code__.co_filename == filename:
            return func
        func = getattr(func, "__wrapped__", None)
    return None


_U3Pool = urllib3.connectionpool.HTTPConnectionPool
#: urllib3's own ``HTTPConnectionPool.urlopen``: while the class attribute is this function,
#: nothing patched it.
STOCK_URLOPEN = stock_function(_U3Pool.urlopen, urllib3.connectionpool)

# The patches already warned about (weakly: a mock or wrapper goes when its test ends, and a new
# one that reuses its id must still be warned about).
_warned: weakref.WeakSet[Any] = weakref.WeakSet()


def urlopen_through_patch(pool: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``pool.urlopen(*args, **kwargs)`` through the patches on urllib3's ``urlopen``.

    Each layer sees fastpool's pool as its ``instance`` (it has urllib3's ``scheme``, ``host``,
    ``port``), as it would see urllib3's pool: a wrapt wrapper gets fastpool's ``urlopen`` as
    the function it wraps, and a replacement (a mock) answers in its place, bound as attribute
    lookup would bind it.
    """
    return _through(pool, _U3Pool.__dict__.get("urlopen", STOCK_URLOPEN), args, kwargs)


def _through(pool: Any, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if layer is STOCK_URLOPEN or layer is None:
        return pool.urlopen(*args, _routed=True, **kwargs)
    wrapper = getattr(layer, "_self_wrapper", None)
    inner = getattr(layer, "__wrapped__", None)
    if wrapper is not None and inner is not None:  # wrapt: wrapper(wrapped, instance, a, kw)
        return wrapper(lambda *a, **kw: _through(pool, inner, a, kw), pool, args, kwargs)
    if stock_function(layer, urllib3.connectionpool) is None and not _calls_stock(layer):
        bind = getattr(type(layer), "__get__", None)
        bound = layer if bind is None else bind(layer, pool, type(pool))
        return bound(*args, **kwargs)
    if _first_warning(layer):
        warnings.warn(
            f"urllib3's HTTPConnectionPool.urlopen is wrapped by {layer!r}, which calls "
            "urllib3's own urlopen; fastpool's requests do not pass through that wrapper "
            "(patch with wrapt, or instrument fastpool directly)",
            ForeignPatchWarning,
            stacklevel=4,
        )
    return pool.urlopen(*args, _routed=True, **kwargs)


def _calls_stock(layer: Any) -> bool:
    """True for a mock that answers by running urllib3's own ``urlopen`` (a spy:
    ``side_effect=`` or ``wraps=`` it), which cannot run on fastpool's pool."""
    for inner in (getattr(layer, "side_effect", None), getattr(layer, "_mock_wraps", None)):
        if inner is not None and stock_function(inner, urllib3.connectionpool) is not None:
            return True
    return False


def _first_warning(layer: Any) -> bool:
    """True the first time ``layer`` is met (always, for one that takes no weak reference)."""
    try:
        if layer in _warned:
            return False
        _warned.add(layer)
    except TypeError:
        pass
    return True
