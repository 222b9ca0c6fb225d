"""Facade: the plainest hop of ``PoolManager.map`` in one call each way (``Lane``), and of
``Session.map`` at its pool (``begin_on``; ``plain_answer`` then ``hand_back``), from the
compiled core or its pure-Python twin (see ``_compat``); ``_lane_py`` documents it."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._lane_py import Lane, begin_on, hand_back, lane_target, plain_answer, plain_origin_form
else:  # pragma: no cover - depends on the build
    from ._lane_c import Lane, begin_on, hand_back, lane_target, plain_answer, plain_origin_form

__all__ = ("Lane", "begin_on", "hand_back", "lane_target", "plain_answer", "plain_origin_form")
