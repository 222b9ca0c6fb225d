"""Facade: ManagerJob and host_of from the compiled core or its pure-Python twin (see
``_compat``)."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._job_py import ManagerJob, host_of
else:  # pragma: no cover - depends on the build
    from ._job_c import ManagerJob, host_of

__all__ = ("ManagerJob", "host_of")
