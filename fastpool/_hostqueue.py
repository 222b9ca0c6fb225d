"""Facade: HostQueue from the compiled core or its pure-Python twin (see ``_compat``)."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._hostqueue_py import HostQueue
else:  # pragma: no cover - depends on the build
    from ._hostqueue_c import HostQueue

__all__ = ("HostQueue",)
