"""The one place that decides whether fastpool runs its compiled core or the pure-Python twins.

``FASTPOOL_NO_EXTENSIONS`` selects the pure twins. It is read here at import time and by
``setup.py`` at build time (a pure ``py3-none-any`` build). Its value counts as true unless it
is empty, ``0``, ``false``, ``no`` or ``off`` (in any case). On any interpreter other than
CPython the package is always pure.

The cores never mix backends: either every compiled module imports, or all the twins are used.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ("CORES", "IMPLEMENTATION", "NO_EXTENSIONS", "env_flag")

#: The compiled cores, each a facade ``_x.py`` over ``_x_c.pyx`` and its twin ``_x_py.py``.
CORES = ("_lru", "_hostqueue", "_prefix", "_http11", "_schedule", "_job", "_loop", "_lane")

_FALSE_VALUES = frozenset({"", "0", "false", "no", "off"})


def env_flag(value: str | None) -> bool:
    """Return whether an environment value such as ``FASTPOOL_NO_EXTENSIONS`` counts as true."""
    return value is not None and value.strip().lower() not in _FALSE_VALUES


NO_EXTENSIONS: bool = (
    env_flag(os.environ.get("FASTPOOL_NO_EXTENSIONS")) or sys.implementation.name != "cpython"
)


def _choose() -> str:
    if NO_EXTENSIONS:
        return "python"
    try:
        for core in CORES:
            importlib.import_module(f"fastpool.{core}_c")
    except ImportError:
        # A source checkout that was never compiled: all twins, never a mix.
        return "python"
    return "cython"


#: ``"cython"`` or ``"python"``: the backend every core facade uses.
IMPLEMENTATION: str = _choose()
