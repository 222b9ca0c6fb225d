"""The whole answer, and nothing else: what ``PoolManager.map(light=True)`` yields.

A urllib3 ``HTTPResponse`` is a stream that owns a connection until its body ends; a crawl that
wants the status, the headers and the body bytes pays for the stream all the same. A
:class:`LightResponse` is made after the body was read and the connection handed back, so
there is nothing to release or close.
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterable
from typing import Any

from urllib3 import HTTPHeaderDict

from . import _http11, _http11_py
from .response import headers_from_pairs

__all__ = ("LightResponse",)

#: the parsed heads the lanes hand over whole (their header strings made when first asked for)
_HEADS = frozenset((_http11.ResponseHead, _http11_py.ResponseHead))


class LightResponse:
    """A whole HTTP answer: ``status``, ``reason``, ``version`` (11 or 10), ``headers`` (a
    urllib3 ``HTTPHeaderDict``), ``data`` (the body, decoded as urllib3 decodes it) and ``url``
    (the absolute URL it answered, after redirects). The names are urllib3's.

    ``headers`` may be given as a dict, as ``(name, value)`` pairs, or as the parser's
    ``ResponseHead``, whose pairs are read only when ``headers`` is first asked for."""

    __slots__ = ("_headers", "_pairs", "data", "reason", "status", "url", "version")

    def __init__(
        self,
        status: int,
        reason: str,
        version: int,
        headers: HTTPHeaderDict | Iterable[tuple[str, str]] | _http11.ResponseHead,
        data: bytes,
        url: str,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.data = data
        self.url = url
        # The header dict is built when first asked for: a crawl that reads only the status
        # and the body never pays for it.
        # (the parser's head first: an isinstance check against HTTPHeaderDict, an ABC's
        # subclass, takes the slow path on every request)
        kind = type(headers)
        if kind is not list and kind not in _HEADS and isinstance(headers, HTTPHeaderDict):
            self._headers: HTTPHeaderDict | None = headers
            self._pairs: Any = ()
        else:
            self._headers = None
            self._pairs = headers

    @classmethod
    def from_response(cls, response: Any, url: str) -> LightResponse:
        """The light form of a urllib3-style ``response`` whose body was read (preloaded)."""
        return cls(
            response.status, response.reason, response.version, response.headers, response.data, url
        )

    @property
    def headers(self) -> HTTPHeaderDict:
        """The response headers (case-insensitive, repeated names kept)."""
        headers = self._headers
        if headers is None:
            pairs = self._pairs
            if type(pairs) in _HEADS:
                pairs = pairs.headers
            headers = self._headers = headers_from_pairs(pairs)
            self._pairs = ()
        return headers

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8), as urllib3's ``HTTPResponse.json()``."""
        return _json.loads(self.data.decode("utf-8"))

    def __repr__(self) -> str:
        return f"<LightResponse [{self.status}] {self.url} ({len(self.data)} bytes)>"
