"""Facade: PrefixRouter from the compiled core or its pure-Python twin (see ``_compat``)."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._prefix_py import PrefixRouter
else:  # pragma: no cover - depends on the build
    from ._prefix_c import PrefixRouter

__all__ = ("PrefixRouter",)
