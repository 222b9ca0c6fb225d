"""OpenTelemetry for fastpool: one client span per request, with the pool's steps as events.

``FastpoolInstrumentor().instrument(tracer_provider=...)`` (or OpenTelemetry's
auto-instrumentation, which finds it through the ``opentelemetry_instrumentor`` entry point
``fastpool``) wraps :meth:`fastpool.pool.HTTPConnectionPool.urlopen`, which every route takes:
``PoolManager``, ``HTTPAdapter`` and ``fastpool.Session``. Each call becomes a ``CLIENT`` span
named by its method, with the stable HTTP semantic conventions (``http.request.method``,
``url.full``, ``server.address``, ``server.port``, ``network.protocol.version``,
``http.response.status_code``, ``error.type``); the span's context goes into the request's
headers (``traceparent``, by the configured propagator); and the pool's trace events
(:mod:`fastpool.trace`: a connection reused or dialed, TLS, waits, discards, retries) are added
to the span as events, for pools without a Trace of their own. A retry or a redirect inside
``urlopen`` is a child span, as with urllib3's instrumentation. Inside a span of another HTTP
instrumentation (requests') no second span is made.

``uninstrument()`` puts everything back. Not instrumented, fastpool imports nothing of
OpenTelemetry and runs its own code unchanged. Needs the ``opentelemetry`` extra.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode
from urllib3 import HTTPHeaderDict

from . import __version__
from .pool import HTTPConnectionPool, set_process_trace
from .trace import ALL, Trace, TraceEvent

__all__ = ("FastpoolInstrumentor",)

_ATTRIBUTE_TYPES = (str, bool, int, float)


def _full_url(pool: HTTPConnectionPool, url: str) -> str:
    if "://" in url:  # absolute form (through a forwarding proxy)
        return url
    default = 443 if pool.scheme == "https" else 80
    port = "" if pool.port in (None, default) else f":{pool.port}"
    host = f"[{pool.host}]" if ":" in pool.host else pool.host
    return f"{pool.scheme}://{host}{port}{url}"


def _add_event(event: TraceEvent) -> None:
    """A trace hook: the pool's step, as an event of the span of the request it serves."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes = {}
    for name, value in event.info.items():
        if isinstance(value, _ATTRIBUTE_TYPES):
            attributes[f"fastpool.{name}"] = value
        elif isinstance(value, BaseException):
            attributes[f"fastpool.{name}"] = type(value).__qualname__
    span.add_event(f"fastpool.{event.name}", attributes)


class FastpoolInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OpenTelemetry's instrumentor for fastpool (see the module docstring)."""

    _original: Any = None
    _previous_trace: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """What must be installed: fastpool itself."""
        return ("fastpool",)

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(__name__, __version__, kwargs.get("tracer_provider"))
        original = HTTPConnectionPool.urlopen
        type(self)._original = original
        # urlopen's parameters after ``method`` and ``url``, in order: a positional call's
        # arguments become keywords, so that ``headers`` can be replaced
        names = tuple(inspect.signature(original).parameters)[3:]

        @functools.wraps(original)
        def urlopen(pool: HTTPConnectionPool, method: str, url: str, *args: Any, **kw: Any) -> Any:
            if not is_http_instrumentation_enabled():
                return original(pool, method, url, *args, **kw)
            kw.update(zip(names, args))
            full = _full_url(pool, url)
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "url.full": full,
                "server.address": pool.host,
                "server.port": pool.port or (443 if pool.scheme == "https" else 80),
                "network.protocol.version": "1.1",
            }
            with tracer.start_as_current_span(
                method, kind=SpanKind.CLIENT, attributes=attributes
            ) as span:
                headers = kw.get("headers")
                # a copy, so that the caller's headers (or the pool's defaults) stay as they were
                headers = HTTPHeaderDict(pool.headers if headers is None else headers)
                inject(headers)
                kw["headers"] = headers
                try:
                    response = original(pool, method, url, **kw)
                except BaseException as e:
                    span.set_attribute("error.type", type(e).__qualname__)
                    raise
                status = response.status
                span.set_attribute("http.response.status_code", status)
                if status >= 400:
                    span.set_attribute("error.type", str(status))
                    span.set_status(Status(StatusCode.ERROR))
                return response

        HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign,assignment]
        hooks = Trace()
        hooks.add(ALL, _add_event)
        type(self)._previous_trace = set_process_trace(hooks)

    def _uninstrument(self, **kwargs: Any) -> None:
        if type(self)._original is not None:
            HTTPConnectionPool.urlopen = type(self)._original  # type: ignore[method-assign]
            type(self)._original = None
        set_process_trace(type(self)._previous_trace)
        type(self)._previous_trace = None
