"""Facade: LRUMap from the compiled core or its pure-Python twin (see ``_compat``)."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._lru_py import LRUMap
else:  # pragma: no cover - depends on the build
    from ._lru_c import LRUMap

__all__ = ("LRUMap",)
