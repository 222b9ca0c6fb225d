"""requests' header mappings for the tests of rendered request heads."""

from __future__ import annotations

from typing import Any

from requests.structures import CaseInsensitiveDict

#: what requests' Session sends by default (its version aside)
REQUESTS_HEADERS = (
    ("User-Agent", "python-requests/2"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Accept", "*/*"),
    ("Connection", "keep-alive"),
)


def session_headers(*pairs: tuple[Any, Any]) -> CaseInsensitiveDict[Any]:
    """A requests ``CaseInsensitiveDict`` of these pairs, in order, as a PreparedRequest's."""
    headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict()
    for name, value in pairs:
        headers[name] = value
    return headers
