"""Facade: HostScheduler from the compiled core or its pure-Python twin (see ``_compat``)."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._schedule_py import HostScheduler
else:  # pragma: no cover - depends on the build
    from ._schedule_c import HostScheduler

__all__ = ("HostScheduler",)
