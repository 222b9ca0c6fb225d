"""fastpool's exceptions: one hierarchy, compatible with the urllib3 exceptions requests catches.

Every error fastpool raises derives from :class:`FastpoolError`. Where urllib3 has a counterpart
that requests maps to one of its own exceptions, ours subclasses it too, so code written against
urllib3 or requests catches ours unchanged.

Messages that both backends of a core raise are constants here, so the compiled module and its
pure twin cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any

from urllib3 import exceptions as _u3

# --- messages shared by the compiled cores and their twins -------------------------------------
MSG_NOT_INT = "{name} must be an int, got {type}"
MSG_NEGATIVE = "{name} must be >= 0, got {value}"
MSG_NOT_STR = "{name} must be a str, got {type}"
MSG_NOT_CALLABLE = "{name} must be callable or None, got {type}"
MSG_POOL_CLOSED = "Pool is closed."
MSG_POOL_TIMEOUT = (
    "Timed out after {timeout} s waiting for a free connection "
    "(all {limit} connections of this pool are in use)"
)
MSG_CAP_TIMEOUT = (
    "Timed out after {timeout} s waiting for a free connection "
    "(all {limit} connections of max_connections are open)"
)
MSG_POOL_EMPTY_NOWAIT = (
    "No free connection and waiting is disabled (all {limit} connections of this pool are in use)"
)
MSG_NO_MATCH = "No connection adapters were found for {url!r}"
MSG_NOT_POSITIVE = "{name} must be >= 1 or None, got {value}"
MSG_NOT_NUMBER = "{name} must be an int or float or None, got {type}"
MSG_NAN = "{name} must not be NaN"
MSG_CHECKIN_UNMATCHED = "checkin without a matching checkout"
MSG_TOO_LARGE = "{name} must be <= {max}, got {value}"


class FastpoolError(Exception):
    """Base class of every exception fastpool raises."""


class _PoolErrorMixin(Exception):
    """urllib3's PoolError takes ``(pool, message)`` and prefixes the message with the pool.

    The cores do not know their pool, so ours take ``(message, pool=None)`` and print just the
    message; ``pool`` is kept for urllib3 compatibility.
    """

    def __init__(self, message: str, pool: Any = None) -> None:
        self.pool = pool
        Exception.__init__(self, message)

    def __reduce__(self) -> tuple[type, tuple[str, None]]:
        return (self.__class__, (str(self), None))


class PoolTimeoutError(_PoolErrorMixin, FastpoolError, _u3.EmptyPoolError):
    """No connection became free within the pool timeout (blocking mode or a hard limit)."""


class PoolClosedError(_PoolErrorMixin, FastpoolError, _u3.ClosedPoolError):
    """The pool was closed: it hands out no more connections."""


class DeadlineExceeded(FastpoolError, _u3.TimeoutError):
    """A request of ``map`` did not end within its ``deadline``: it was cancelled (its
    connection closed, its slot given back). ``Session.map`` yields it as a
    :class:`requests.exceptions.Timeout` too."""


class NoMatchError(FastpoolError, LookupError):
    """No mounted prefix matches the URL (requests raises ``InvalidSchema`` for this)."""


class InvalidRequestError(FastpoolError, ValueError):
    """A request cannot be written as given: a bad method, target or header.

    Raised before anything is sent, for example for CR, LF or NUL in a header value.
    """


class ProtocolError(FastpoolError, _u3.ProtocolError):
    """The server broke HTTP/1.1: the connection is closed and never reused."""


class InvalidResponseError(ProtocolError):
    """A malformed response: status line, header line, framing or chunk."""


class ResponseHeadTooLarge(InvalidResponseError):
    """The response head exceeded the byte or header-count limit (a guard against hostile servers)."""


class InvalidChunkError(InvalidResponseError):
    """A malformed chunk size, chunk terminator or trailer in a chunked body."""


class IncompleteResponseError(ProtocolError):
    """The connection closed before the response (head or body) was complete."""


# --- messages of the _http11 core (request-head writer, response-head parser, chunked decoder) --
MSG_HTTP_NOT_STR_OR_BYTES = "{name} must be str or bytes, got {type}"
MSG_HTTP_SKIP_HEADER = "urllib3.util.SKIP_HEADER only supports '{names}'"  # urllib3's
MSG_HTTP_NOT_BUFFER = "{name} must be bytes, bytearray or memoryview, got {type}"
MSG_HTTP_NOT_POSITIVE = "{name} must be > 0, got {value}"
MSG_HTTP_NOT_PAIR = "headers must be (name, value) pairs, got {type}"
MSG_HTTP_BAD_METHOD = "method {method!r} is not an HTTP token"
MSG_HTTP_EMPTY_TARGET = "request target must not be empty"
MSG_HTTP_BAD_TARGET = (
    "request target {target!r} contains a control character, space, DEL or non-ASCII character"
)
MSG_HTTP_BAD_HEADER_NAME = "header name {name!r} is not an HTTP token"
MSG_HTTP_BAD_HEADER_VALUE = "header {name!r} value contains CR/LF/NUL"
MSG_HTTP_HEADER_NOT_LATIN1 = "header {name!r} value is not encodable in latin-1"
MSG_HTTP_HEAD_TOO_LARGE = "response head larger than max_head_bytes={limit} bytes"
MSG_HTTP_TOO_MANY_HEADERS = "response head has more than max_headers={limit} header lines"
MSG_HTTP_LINE_TOO_LONG = "response head line longer than max_line_bytes={limit} bytes"
MSG_HTTP_BAD_STATUS_LINE = "invalid HTTP/1.x status line: {line!r}"
MSG_HTTP_BAD_HEADER_LINE = "invalid response header line: {line!r}"
MSG_HTTP_HEADER_NAME_SPACE = "whitespace between header name and colon: {line!r}"
MSG_HTTP_BAD_CHAR = "forbidden character {char!r} in response head line: {line!r}"
MSG_HTTP_BAD_CONTENT_LENGTH = "invalid Content-Length: {value!r}"
MSG_HTTP_BAD_TRANSFER_ENCODING = "invalid Transfer-Encoding: {value!r}"
MSG_HTTP_BAD_CHUNK_SIZE = "invalid chunk size line: {line!r}"
# urllib3's words first, so code matching on its message keeps working
MSG_HTTP_CHUNK_LINE_TOO_LONG = (
    "chunk size line exceeded maximum allowed length (max_line_bytes={limit} bytes)"
)
MSG_HTTP_CHUNK_NO_CRLF = "chunk data not followed by CRLF: got {got!r}"
MSG_HTTP_TRAILERS_TOO_LARGE = "chunked trailers larger than max_trailer_bytes={limit} bytes"
MSG_HTTP_BAD_TRAILER = "invalid chunked trailer line: {line!r}"
MSG_HTTP_TE_WITH_LENGTH = (
    "Transfer-Encoding {value!r} does not end in chunked, yet a Content-Length is present"
)
# a body the server coded (gzip, ...) before chunking: read, it would be that coding's bytes
MSG_HTTP_TRANSFER_CODING = (
    "Transfer-Encoding {value!r} applies a coding other than chunked, which is not decoded"
)
MSG_HTTP_TOO_MANY_INTERIM = "more than {limit} interim (1xx) responses before the final one"

# --- response body decoding --------------------------------------------------------------------
# urllib3's limit and message: a longer Content-Encoding chain is refused with DecodeError.
MAX_DECODE_LINKS = 5
MSG_TOO_MANY_ENCODINGS = "Too many content encodings in the chain: {count} > {limit}"


class UnusedConnectionClassWarning(UserWarning):
    """urllib3's pools were given another connection class (``urllib3.http2.inject_into_urllib3()``,
    a vcrpy cassette), which fastpool's own pools do not use: their requests go out on
    fastpool's HTTP/1.1 connections, not through that class."""


class InvalidContentLengthError(InvalidResponseError, _u3.InvalidHeader):
    """A response head whose Content-Length values conflict or are not a number.

    Also urllib3's ``InvalidHeader`` (what urllib3 raises for conflicting values), so requests
    raises ``requests.exceptions.InvalidHeader`` for it, as with the stock adapter. Never
    retried: the server sent it, a retry gets the same.
    """


class ForeignPatchWarning(UserWarning):
    """A tool patched an extension point in a way fastpool's traffic cannot pass through.

    Raised as a warning, once per patch, when urllib3's ``HTTPConnectionPool.urlopen`` is
    wrapped by a plain function that calls urllib3's own ``urlopen`` (a ``functools.wraps``
    decorator): that wrapper would run urllib3's code on fastpool's pool, so fastpool's
    request goes on without it. Wrappers made with ``wrapt`` (OpenTelemetry, ddtrace) and
    outright replacements (``unittest.mock``) are honoured.
    """


# "[Errno 111] Connection refused" inside an exception's text, for describe_error
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def describe_error(exc: BaseException) -> str:
    """``"Kind: detail"`` for a failed request, short enough for one line."""
    kind = type(exc).__name__
    text = str(exc)
    match = _ERRNO_TEXT.search(text)
    if match:
        detail = match.group(1).strip()
    elif "Read timed out" in text:
        detail = "read timed out"
    elif "timed out" in text:
        detail = "timed out"
    else:
        detail = text.splitlines()[0] if text else ""
        if len(detail) > 100:
            detail = detail[:97] + "..."
    return f"{kind}: {detail}" if detail else kind
