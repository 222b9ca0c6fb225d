"""Facade: the HTTP/1.1 wire-format core, compiled or its pure-Python twin (see ``_compat``).

``write_request_head``, ``collect_request_headers``, ``parse_response_head``, ``ResponseHead``,
``header_store`` and ``ChunkedDecoder``;
``_http11_py`` documents the rules and every deliberate choice.
"""

from typing import TYPE_CHECKING

from ._compat import IMPLEMENTATION

if TYPE_CHECKING or IMPLEMENTATION == "python":
    from ._http11_py import (
        HAS_ACCEPT_ENCODING,
        HAS_CONTENT_LENGTH,
        HAS_HOST,
        HAS_TRANSFER_ENCODING,
        HAS_USER_AGENT,
        ChunkedDecoder,
        ResponseHead,
        collect_request_headers,
        header_store,
        parse_response_head,
        write_request_head,
    )
else:  # pragma: no cover - depends on the build
    from ._http11_c import (
        HAS_ACCEPT_ENCODING,
        HAS_CONTENT_LENGTH,
        HAS_HOST,
        HAS_TRANSFER_ENCODING,
        HAS_USER_AGENT,
        ChunkedDecoder,
        ResponseHead,
        collect_request_headers,
        header_store,
        parse_response_head,
        write_request_head,
    )

__all__ = (
    "HAS_ACCEPT_ENCODING",
    "HAS_CONTENT_LENGTH",
    "HAS_HOST",
    "HAS_TRANSFER_ENCODING",
    "HAS_USER_AGENT",
    "ChunkedDecoder",
    "ResponseHead",
    "collect_request_headers",
    "header_store",
    "parse_response_head",
    "write_request_head",
)
