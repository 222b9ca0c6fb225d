"""Facade: the plainest hop of ``PoolManager.map`` in one call each way (``Lane``), from the
compiled core or its pure-Python twin (see ``_compat``); ``_lane_py`` documents it."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._lane_py import Lane, plain_origin_form
else:  # pragma: no cover - depends on the build
    from ._lane_c import Lane, plain_origin_form

__all__ = ("Lane", "plain_origin_form")
