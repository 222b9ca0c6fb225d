"""Facade: the HTTP/1.1 wire-format core, compiled or its pure-Python twin (see ``_compat``).

``write_request_head``, ``parse_response_head``, ``ResponseHead`` and ``ChunkedDecoder``;
``_http11_py`` documents the rules and every deliberate choice.
"""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._http11_py import ChunkedDecoder, ResponseHead, parse_response_head, write_request_head
else:  # pragma: no cover - depends on the build
    from ._http11_c import ChunkedDecoder, ResponseHead, parse_response_head, write_request_head

__all__ = ("ChunkedDecoder", "ResponseHead", "parse_response_head", "write_request_head")
