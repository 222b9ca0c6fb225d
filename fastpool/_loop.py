"""Facade: the multiplexed loop (``Exchange``, ``Loop``) from the compiled core or its
pure-Python twin (see ``_compat``); ``_loop_py`` documents the model."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._loop_py import Exchange, Loop, new_exchange
else:  # pragma: no cover - depends on the build
    from ._loop_c import Exchange, Loop, new_exchange

__all__ = ("Exchange", "Loop", "new_exchange")
