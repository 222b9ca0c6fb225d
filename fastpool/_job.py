"""Facade: ManagerJob and host_of from the compiled core or its pure-Python twin (see
``_compat``)."""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._job_py import ENCODED, URL_METHODS, ManagerJob, PlainJobs, host_of, plain_job
else:  # pragma: no cover - depends on the build
    from ._job_c import ENCODED, URL_METHODS, ManagerJob, PlainJobs, host_of, plain_job

__all__ = ("ENCODED", "URL_METHODS", "ManagerJob", "PlainJobs", "host_of", "plain_job")
