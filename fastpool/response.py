"""The response body: Content-Length, chunked, read-to-close or no framing; content decoding;
the connection goes back to its pool exactly when the body has been read to its end.

:class:`HTTPResponse` is a subclass of urllib3's ``HTTPResponse`` that overrides every public
method and the attributes tools read (``_fp``, ``chunked``, ``chunk_left``), so requests uses
it as ``Response.raw`` unchanged and ``isinstance(r, urllib3.HTTPResponse)`` holds.
"""

from __future__ import annotations

import importlib
import io
import socket
import ssl
import typing
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Generator, Iterable, Iterator
from typing import Any

from urllib3 import HTTPHeaderDict
from urllib3.exceptions import DecodeError, HTTPError, IncompleteRead, ReadTimeoutError
from urllib3.response import HTTPResponse as _U3HTTPResponse

from ._http11 import ChunkedDecoder, header_store
from .exceptions import (
    MAX_DECODE_LINKS,
    MSG_TOO_MANY_ENCODINGS,
    IncompleteResponseError,
    ProtocolError,
)

if typing.TYPE_CHECKING:
    from ._http11_py import ResponseHead
    from .connection import HTTPConnection


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - optional codecs
        return None


brotli = _optional("brotli")
zstandard = _optional("zstandard")

__all__ = ("WOULD_BLOCK", "HTTPResponse", "headers_from_pairs")

# Draining a remainder this small on close() is cheaper than a new connection.
_DRAIN_LIMIT = 65536
_RECV_SIZE = 65536
# A Content-Length body is read into one buffer of its size up to this, in pieces beyond.
_PREALLOC_LIMIT = 4 * 1024 * 1024
# A bounded decoded read decodes at least this much per step (the rest waits in a buffer).
_DECODE_STEP = 65536


# --- content decoding ---------------------------------------------------------------------------
# Every decoder takes ``max_length``: the most output one call may produce (-1: no bound). Input
# that would decode beyond it stays inside the decoder (``has_unconsumed_tail``) for the next
# call, so a small hostile body (a "decompression bomb") never expands all at once.
_UNBOUNDED = -1
# Input fed to zstandard per call when the output is bounded: the format expands at most about
# 32768:1 (a 4-byte RLE block yields 128 KiB), so a slice bounds what one call can produce
# (64 input bytes per 64 KiB asked: about 2 MiB at worst).
_ZSTD_MIN_SLICE = 64


class _GzipDecoder:
    """gzip with several members (RFC 1952 allows them; urllib3 decodes them all)."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._members = 0
        self._tail = b""  # input not decoded yet: the output bound was reached
        self._garbage = False

    @property
    def has_unconsumed_tail(self) -> bool:
        return bool(self._tail)

    def decompress(self, data: bytes, max_length: int = _UNBOUNDED) -> bytes:
        if self._tail:
            data, self._tail = self._tail + data, b""
        if self._garbage:
            return b""
        out: list[bytes] = []
        size = 0
        while data:
            room = 0 if max_length < 0 else max_length - size  # zlib: 0 means no bound
            if max_length >= 0 and room <= 0:
                self._tail = data
                break
            try:
                piece = self._obj.decompress(data, room)
            except zlib.error:
                if self._members:
                    self._garbage = True  # trailing garbage after a complete member: ignored
                    break
                raise
            out.append(piece)
            size += len(piece)
            if self._obj.eof:
                data = self._obj.unused_data
                self._members += 1
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                data = self._obj.unconsumed_tail
                if data:
                    self._tail = data
                break
        return b"".join(out)

    def flush(self) -> bytes:
        return self._obj.flush()


class _DeflateDecoder:
    """``deflate`` is zlib-wrapped by the RFC but raw deflate in the wild: try both."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj()
        self._first = True
        self._seen = b""
        self._tail = b""

    @property
    def has_unconsumed_tail(self) -> bool:
        return bool(self._tail)

    def _bounded(self, data: bytes, max_length: int) -> bytes:
        if self._tail:
            data, self._tail = self._tail + data, b""
        out = self._obj.decompress(data, max(max_length, 0))
        self._tail = self._obj.unconsumed_tail
        return out

    def decompress(self, data: bytes, max_length: int = _UNBOUNDED) -> bytes:
        if not self._first:
            return self._bounded(data, max_length)
        self._seen += data
        try:
            out = self._bounded(data, max_length)
            if out:
                self._first = False
                self._seen = b""
            return out
        except zlib.error:
            self._first = False
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            seen, self._seen, self._tail = self._seen, b"", b""
            return self._bounded(seen, max_length)

    def flush(self) -> bytes:
        return self._obj.flush()


class _BrotliDecoder:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()
        self._tail = b""
        self._more = False  # the output bound was reached: more output may be waiting

    @property
    def has_unconsumed_tail(self) -> bool:
        return bool(self._tail) or self._more or not self._obj.can_accept_more_data()

    def decompress(self, data: bytes, max_length: int = _UNBOUNDED) -> bytes:
        if self._tail:
            data, self._tail = self._tail + data, b""
        if max_length < 0:
            out = self._obj.process(data)
            while not self._obj.can_accept_more_data():
                out += self._obj.process(b"")
            self._more = False
            return out  # type: ignore[no-any-return]
        buf = bytearray()
        while len(buf) < max_length:
            if data and self._obj.can_accept_more_data():
                piece = self._obj.process(data, output_buffer_limit=max_length - len(buf))
                data = b""
            else:
                piece = self._obj.process(b"", output_buffer_limit=max_length - len(buf))
                if not piece and self._obj.can_accept_more_data() and not data:
                    self._more = False
                    return bytes(buf)
            buf += piece
        self._tail = data
        self._more = True
        return bytes(buf)

    def flush(self) -> bytes:
        return b""


class _ZstdDecoder:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._tail = b""
        self._pos = 0  # the tail is consumed from here on (no copy per call)

    @property
    def has_unconsumed_tail(self) -> bool:
        return self._pos < len(self._tail)

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._obj.decompress(data))
            data = self._obj.unused_data if self._obj.eof else b""
            if data:
                self._obj = zstandard.ZstdDecompressor().decompressobj()
        return b"".join(out)

    def decompress(self, data: bytes, max_length: int = _UNBOUNDED) -> bytes:
        if self._pos < len(self._tail):
            data = self._tail[self._pos :] + data
        self._tail, self._pos = b"", 0
        if max_length < 0:
            return self._feed(data)
        step = max(_ZSTD_MIN_SLICE, max_length // 1024)
        out: list[bytes] = []
        size = pos = 0
        while pos < len(data) and size < max_length:
            piece = self._feed(data[pos : pos + step])
            pos += step
            out.append(piece)
            size += len(piece)
        if pos < len(data):
            self._tail, self._pos = data, pos
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._obj.eof:
            raise DecodeError("Zstandard data is incomplete")
        return b""


class _MultiDecoder:
    """``Content-Encoding: gzip, br``: the last coding applied is undone first."""

    def __init__(self, decoders: list[Any]) -> None:
        self._decoders = decoders[::-1]

    @property
    def has_unconsumed_tail(self) -> bool:
        return any(d.has_unconsumed_tail for d in self._decoders)

    def decompress(self, data: bytes, max_length: int = _UNBOUNDED) -> bytes:
        if max_length < 0:
            for d in self._decoders:
                data = d.decompress(data)
            return data
        # Each link is bounded too; a round may yield nothing while an inner link fills up.
        out = bytearray()
        while True:
            progress = False
            for d in self._decoders:
                data = d.decompress(data, max_length - len(out))
                progress = progress or bool(data)
            out += data
            data = b""
            if not progress or len(out) >= max_length:
                return bytes(out)

    def flush(self) -> bytes:
        data = b""
        for d in self._decoders:
            data = d.decompress(data) + d.flush() if data else d.flush()
        return data


_DECODERS: dict[str, Any] = {
    "gzip": _GzipDecoder,
    "x-gzip": _GzipDecoder,
    "deflate": _DeflateDecoder,
}
if brotli is not None:
    _DECODERS["br"] = _BrotliDecoder
if zstandard is not None:
    _DECODERS["zstd"] = _ZstdDecoder


def _make_decoder(content_encoding: str) -> Any:
    codings = [c.strip() for c in content_encoding.lower().split(",") if c.strip()]
    if len(codings) > MAX_DECODE_LINKS:
        # A chain this long is an attack (each link multiplies the work), not a representation.
        raise DecodeError(MSG_TOO_MANY_ENCODINGS.format(count=len(codings), limit=MAX_DECODE_LINKS))
    if len(codings) == 1:
        cls = _DECODERS.get(codings[0])
        return cls() if cls is not None else None
    if not codings or any(c not in _DECODERS for c in codings):
        return None  # an unknown coding anywhere: hand the body over as it came (urllib3 does)
    return _MultiDecoder([_DECODERS[c]() for c in codings])


class _Message:
    """The slice of ``http.client.HTTPMessage`` that http.cookiejar and requests read."""

    __slots__ = ("_headers",)

    def __init__(self, headers: HTTPHeaderDict) -> None:
        self._headers = headers

    def get_all(self, name: str, default: Any = None) -> Any:
        values = self._headers.getlist(name)
        return values if values else default

    def get(self, name: str, default: Any = None) -> Any:
        return self._headers.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self._headers.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._headers

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers.iteritems())

    def getheaders(self, name: str) -> list[str]:
        return self._headers.getlist(name)


class ConnectionHome(typing.Protocol):
    """Where a response gives its connection back at the end of its body
    (``fastpool.pool.HTTPConnectionPool`` is one): named here, one floor down."""

    #: the pool's HostQueue: a response checks its connection in only where its slot came from
    pool: Any

    def _put_conn(self, conn: HTTPConnection | None) -> None: ...

    def _checkin_finished(self, conn: HTTPConnection, keep_alive: bool, queue: Any) -> None:
        """A finished exchange's connection: back to the pool or closed (``queue``: the
        pool's queue its slot came from)."""

    def _release_from_finalizer(self) -> None: ...


class _OriginalResponse:
    """What requests reads from ``raw._original_response``: ``msg`` and ``isclosed()``.

    It holds its response weakly, as http.client's response (urllib3's) holds nothing of
    urllib3's: a strong reference back would make every response whose cookies were read a
    cycle, and a dropped one (an error after the answer) would then wait for the cycle
    collector, which may finalize its socket before it (a ``ResourceWarning``) instead of
    closing it at once. Once the response is gone, it answers what it had then."""

    __slots__ = ("_reason", "_response", "_status", "_version", "msg")

    def __init__(self, response: HTTPResponse) -> None:
        self._response = weakref.ref(response)
        self.msg = _Message(response.headers)
        self._version = response.version
        self._status = response.status
        self._reason = response.reason

    @property
    def headers(self) -> _Message:
        """``http.client``'s other name for ``msg``."""
        return self.msg

    @property
    def version(self) -> int:
        """The HTTP version, as ``http.client`` gives it (10 or 11; httpie shows it)."""
        response = self._response()
        return self._version if response is None else response.version

    @property
    def status(self) -> int:
        """The status code."""
        response = self._response()
        return self._status if response is None else response.status

    @property
    def reason(self) -> str:
        """The reason phrase."""
        response = self._response()
        return self._reason if response is None else response.reason

    def isclosed(self) -> bool:
        response = self._response()
        return response is None or response.closed


class _RawBody:
    """``response._fp``: the file urllib3's response reads its body from (http.client's), as
    tools that wrap it expect. ``read(amt)`` gives the body after framing (de-chunked), before
    content decoding; ``fp`` turns None and ``closed`` True once the body has been read. A tool
    may set ``response._fp`` to a wrapper of it (CacheControl tees the body into its cache):
    the response then reads its body through that wrapper.

    It holds its response weakly (see :class:`_OriginalResponse`): a tool's wrapper set on the
    response would otherwise make every such response a cycle, its connection then closed (or
    given back) only by the cycle collector. Once the response is gone it is closed, and a
    read raises ``ValueError``: the body went with the response."""

    __slots__ = ("_response",)

    def __init__(self, response: HTTPResponse) -> None:
        self._response = weakref.ref(response)

    def _live(self) -> HTTPResponse:
        response = self._response()
        if response is None:
            raise ValueError("read of a body whose response was dropped (its connection with it)")
        return response

    def read(self, amt: int | None = None) -> bytes:
        return self._live()._read_raw(amt, False, True)

    @property
    def closed(self) -> bool:
        response = self._response()
        return response is None or (response._done and not response._surplus)

    @property
    def fp(self) -> Any:
        return None if self.closed else self._response()

    def close(self) -> None:
        response = self._response()
        if response is not None:
            response.close()


#: what a receive on a non-blocking socket raises when nothing has arrived
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def headers_from_pairs(pairs: Iterable[tuple[str, str]]) -> HTTPHeaderDict:
    """A parsed head's ``(name, value)`` pairs as urllib3's ``HTTPHeaderDict``."""
    # Fill the dict's storage directly: the same layout HTTPHeaderDict.add builds, at a
    # fraction of the cost (this runs on every request).
    container: dict[str, list[str]] = {}
    for name, value in pairs:
        key = name.lower()
        entry = container.get(key)
        if entry is None:
            container[key] = [name, value]
        else:
            entry.append(value)
    headers = HTTPHeaderDict.__new__(HTTPHeaderDict)
    headers._container = container  # private: fastpool._thirdparty
    return headers


class HTTPResponse(_U3HTTPResponse):
    """A streamed HTTP response: a urllib3 ``HTTPResponse`` (requests' ``Response.raw``).

    Created by the pool from a parsed response head and the connection it arrived on.

    :param head: the parsed ``ResponseHead``.
    :param connection: the connection to read the body from (``None``: no body reader).
    :param pool: the pool that gets the connection back at the end of the body (or ``None``).
    :param request_method: the request method (default ``"GET"``).
    :param request_url: the request URL, for ``url``/``geturl()`` and errors.
    :param retries: the ``Retry`` state that produced this response.
    :param preload_content: read the whole body now (default ``True``).
    :param decode_content: undo Content-Encoding by default in ``read``/``stream`` (default
        ``True``).
    :param enforce_content_length: a body shorter than Content-Length raises ProtocolError
        (default ``True``).
    """

    CONTENT_DECODERS = list(_DECODERS)  # noqa: RUF012 - urllib3's public, mutable lists
    REDIRECT_STATUSES = [301, 302, 303, 307, 308]  # noqa: RUF012

    # Set by __init__ in one update of the instance dict (declared here for type checkers).
    status: int
    reason: str
    version: int
    _head: ResponseHead
    _connection: HTTPConnection | None  # type: ignore[assignment]  # fastpool's class
    _pool: ConnectionHome | None  # type: ignore[assignment]  # fastpool's pools
    _queue: Any
    _request_method: str
    _request_url: str | None
    decode_content: bool
    enforce_content_length: bool
    auto_close: bool
    chunked: bool
    _framing: str
    _keep_alive: bool
    length_remaining: int | None
    _rest: bytes
    _decoded: bytearray

    # The starting values of the state that most responses never change, kept here rather than
    # set in __init__: an io.IOBase subclass keeps its attributes in a real dict, and each
    # attribute fewer there saves a store and, past a size, a resize on every response.
    # (Immutable values only: an instance gets its own attribute on the first write.)
    _headers: HTTPHeaderDict | None = None
    _retries: Any = None
    _fp_bytes_read = 0
    _chunks: Any = None
    _content_decoder: Any = None
    _content_decoder_ready = False
    _content_fed = False
    _flushed = False
    _surplus = b""  # framed body bytes a read(amt) did not return yet
    _fp_wrapper: Any = None  # what a tool set as ``_fp`` (see _RawBody); reads go through it
    #: urllib3's chunk state, for tools that look at it: fastpool's chunked reader keeps its own
    #: and never calls ``_update_chunk_length`` (a wrapper of it, CacheControl's, is not needed:
    #: ``_fp`` reports the end of the body itself).
    chunk_left: int | None = None
    _body: bytes | None = None
    _done = False
    _closed = False
    _holding = False  # True while _drain_cheaply owns the connection's timeout
    _original: _OriginalResponse | None = None

    def __init__(
        self,
        head: ResponseHead,
        connection: HTTPConnection | None = None,
        pool: Any = None,
        *,
        request_method: str = "GET",
        request_url: str | None = None,
        retries: Any = None,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
        auto_close: bool = True,
    ) -> None:
        framing = head.framing
        # One update of the instance dict, sized once, rather than a store per attribute (and a
        # resize each time it grows past a size). Every attribute a plain request writes later
        # (_fp_bytes_read, _done, _content_decoder_ready, _body) is among them, so
        # those writes never grow the dict: one key more to insert later costs a resize of the
        # whole dict (measured: 5k instructions a request, 5% of PoolManager.request).
        self.__dict__.update(
            status=head.status,
            reason=head.reason,
            version=head.version,
            _head=head,
            _connection=connection,
            _pool=pool,
            # The queue the slot came from: after os.fork() the child's pool has a new one, and
            # a response from the parent's world must not check its connection in there.
            _queue=getattr(pool, "pool", None),
            _request_method=request_method,
            _request_url=request_url,
            decode_content=decode_content,
            enforce_content_length=enforce_content_length,
            auto_close=auto_close,
            chunked=framing == "chunked",
            _framing=framing,
            _keep_alive=head.keep_alive,  # and the connection reusable: the pool's to judge
            length_remaining=head.content_length,
            _rest=connection.take_rest() if connection is not None else b"",
            # Decoded bytes a read(amt) did not return yet: a bytearray, whose front is deleted
            # in O(1), so reading a large body in tiny pieces stays linear.
            _decoded=bytearray(),
            _fp_bytes_read=0,
            _done=False,
            _retries=retries,
            _content_decoder_ready=False,
            _body=None,
        )
        if retries is not None and retries.history:
            self.retries = retries  # urllib3's setter: ``url`` moves to the last redirect
        if framing == "none" or (framing == "length" and head.content_length == 0):
            # No body: the connection stays with the response until it is read, released or
            # closed, as with urllib3 (``r.connection``; ``close()`` first closes it).
            self._done = True
        elif framing == "chunked":
            self._chunks = ChunkedDecoder()
        if preload_content and not self._done:
            self._body = self.read(decode_content=decode_content)

    @classmethod
    def _read_to_its_end(
        cls,
        head: ResponseHead,
        pool: Any,
        queue: Any,
        request_method: str | None,
        request_url: str | None,
        retries: Any,
        body_length: int,
    ) -> HTTPResponse:
        """The response ``urlopen(..., preload_content=False, decode_content=False)`` returns
        for ``head``, as it is once its body (``body_length`` bytes, no Content-Encoding, framed
        by its length or absent) was read to its end with ``read(decode_content=True)`` and its
        connection handed back to ``pool`` (``queue``: the slot's): for the plainest answers of
        ``Session.map``, whose connection ``fastpool._lane.hand_back`` hands back. Its
        attributes are ``__init__``'s and the read's, in their order (held to them by
        tests/with_dummyserver/test_session_map_finish.py)."""
        response = cls.__new__(cls)
        framing = head.framing
        response.__dict__.update(
            status=head.status,
            reason=head.reason,
            version=head.version,
            _head=head,
            _connection=None,
            _pool=pool,
            _queue=queue,
            _request_method=request_method,
            _request_url=request_url,
            decode_content=False,
            enforce_content_length=True,
            auto_close=True,
            chunked=False,
            _framing=framing,
            _keep_alive=head.keep_alive,
            length_remaining=0 if framing == "length" else head.content_length,
            _rest=b"",
            _decoded=bytearray(),
            _fp_bytes_read=body_length,
            _done=True,
            _retries=retries,
            _content_decoder_ready=True,
            _body=None,
        )
        return response

    # --- attributes ---------------------------------------------------------------------------
    @property
    def headers(self) -> HTTPHeaderDict:
        """The response headers (urllib3 ``HTTPHeaderDict``: case-insensitive, duplicates kept)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = headers_from_pairs(self._head.headers)
        return headers

    @headers.setter
    def headers(self, value: Any) -> None:
        self._headers = value if isinstance(value, HTTPHeaderDict) else HTTPHeaderDict(value)

    @property
    def version_string(self) -> str:  # type: ignore[override]
        """``"HTTP/1.1"`` or ``"HTTP/1.0"``."""
        return "HTTP/1.1" if self.version == 11 else "HTTP/1.0"

    @property
    def data(self) -> bytes:
        """The whole (decoded) body, read now if it was not preloaded."""
        if self._body is not None:
            return self._body
        if not self._closed:
            return self.read(cache_content=True)
        return b""

    @property
    def connection(self) -> HTTPConnection | None:  # type: ignore[override]
        """The connection the body is read from; ``None`` once it went back to the pool."""
        return self._connection

    @property
    def url(self) -> str | None:
        """The URL the request went to."""
        return self._request_url

    @url.setter
    def url(self, value: str | None) -> None:
        self._request_url = value

    def geturl(self) -> str | None:
        """The URL the request went to (urllib3 compatibility)."""
        return self._request_url

    def info(self) -> HTTPHeaderDict:
        """The headers (``http.client`` compatibility)."""
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        """One header value (joined with ``", "`` when repeated) or ``default``."""
        return self.headers.get(name, default)

    def getheaders(self) -> HTTPHeaderDict:
        """The headers (``http.client`` compatibility)."""
        return self.headers

    def _requests_store(self) -> OrderedDict[str, tuple[str, str]]:
        """A new ``lower name -> (name as first seen, values joined with ", ")`` mapping: the
        store requests' ``CaseInsensitiveDict(raw.headers)`` would hold. Unless the header dict
        exists already, straight from the parsed head (the dict is not built)."""
        headers = self._headers
        if headers is not None:
            # HTTPHeaderDict's own layout, lower name -> [name as first seen, value, ...]
            return OrderedDict(
                (key, (values[0], ", ".join(values[1:])))
                for key, values in headers._container.items()  # private: fastpool._thirdparty
            )
        return header_store(self._head.headers)

    def _sets_cookies(self) -> bool:
        """Whether a Set-Cookie or Set-Cookie2 header came, without building the header dict."""
        headers = self._headers
        if headers is None:
            return self._head.sets_cookies  # found by the parser's scan
        return "set-cookie" in headers or "set-cookie2" in headers

    @property
    def _original_response(self) -> _OriginalResponse:  # type: ignore[override]  # read-only
        original = self._original
        if original is None:
            # made on first use (cookies), then the same object, as urllib3's is
            original = self._original = _OriginalResponse(self)
        return original

    def get_redirect_location(self) -> str | None | typing.Literal[False]:
        """The Location of a redirect status, ``None`` if missing, ``False`` if no redirect."""
        if self.status in self.REDIRECT_STATUSES:
            return self.headers.get("location")
        return False

    def tell(self) -> int:
        """Body bytes received from the wire so far (before content decoding)."""
        return self._fp_bytes_read

    # --- io.IOBase ----------------------------------------------------------------------------
    def readable(self) -> bool:
        """Always True: the body can be read."""
        return True

    @property
    def closed(self) -> bool:
        """True after ``close()`` or, with ``auto_close``, once the body was read to its end."""
        if not self.auto_close:
            return self._closed
        return self._closed or (
            self._done
            and self._connection is None  # an empty body holds it until read (io's with, too)
            and not self._decoded
            and not self._surplus
            and not self._decoding_pending()
        )

    def isclosed(self) -> bool:
        """``http.client`` compatibility: same as :attr:`closed`."""
        return self.closed

    def fileno(self) -> int:
        """The socket's file descriptor while the body is being read (OSError otherwise)."""
        conn = self._connection
        if conn is None or conn.sock is None:
            raise OSError(
                "The file-like object this HTTPResponse is wrapped around has no file descriptor"
            )
        return conn.sock.fileno()

    def flush(self) -> None:
        """Nothing to flush on a response (io compatibility)."""

    def close(self) -> None:
        """Stop reading. An unfinished body closes the connection (a small remainder that has
        already arrived is drained instead, so the connection can be reused); so does a
        response without a body that was never read, as urllib3's ``close()`` does."""
        if not self._closed:
            self._closed = True
            if not self._done:
                self._drain_cheaply()
                if not self._done:
                    self._abandon()
            elif self._connection is not None and not self._holding:
                self._abandon()
        if not self.auto_close:
            io.IOBase.close(self)

    def shutdown(self) -> None:
        """Shut the socket down, so a read blocked in another thread returns (urllib3 2.3).

        Raises RuntimeError, as urllib3 does, once the connection went back to the pool.
        """
        conn = self._connection
        if conn is None and self._pool is not None:
            raise RuntimeError(
                "Cannot shutdown as connection has already been released to the pool"
            )
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release_conn(self) -> None:
        """Give the connection's slot back to the pool; the body stays readable.

        A body that has ended, or whose rest has already arrived, leaves the connection in the
        pool for reuse (the rest is kept for later reads). Otherwise the slot goes back now and
        the response keeps reading its own socket, which is closed at the body's end and never
        reused (urllib3 pools the connection itself and lets the response read on, so another
        request could meet its unread bytes). Idempotent: a second call does nothing.
        """
        if self._connection is None:
            return
        if not self._done:
            self._drain_cheaply(keep=True)
            if not self._done:
                self._detach()
        elif self._connection is not None:
            self._finish()

    def _detach(self) -> None:
        """Hand the slot back, keep the socket for this response's reads, close it after."""
        self._keep_alive = False  # at the body's end: closed, never pooled
        pool, self._pool = self._pool, None  # _finish, _abandon and __del__: no slot to give
        if pool is not None and getattr(pool, "pool", None) is self._queue:
            pool._put_conn(None)

    def drain_conn(self) -> None:
        """Read and discard the rest of the body so the connection can be reused."""
        try:
            while not self._done:
                self._read_raw(None)
        except (HTTPError, OSError):
            self._abandon()
        if self._connection is not None:
            self._finish()
        self._decoded.clear()

    # --- reading ------------------------------------------------------------------------------
    def read(  # noqa: C901 - every body read, one flat frame as urllib3 (see pyproject)
        self,
        amt: int | None = None,
        decode_content: bool | None = None,
        cache_content: bool = False,
    ) -> bytes:
        """Read up to ``amt`` bytes (all of the body when ``None``), decoded by default.

        With ``amt`` the call returns exactly ``amt`` bytes unless the body ends first.
        """
        if self._done and self._connection is not None:
            self._finish()  # a body that ended before any read (see __init__): released now
        if decode_content is None:
            decode_content = self.decode_content
        if amt is not None and amt < 0:
            amt = None
        if not decode_content:
            decoder = None
        elif self._content_decoder_ready:
            decoder = self._content_decoder
        else:
            decoder = self._get_decoder()
        if decoder is None:
            if self._decoded:  # left over from an earlier decoded read
                return self._take_decoded(amt, lambda n: self._read_raw(n))
            if amt is None:
                data = self._read_raw(None)
                if cache_content:
                    self._body = data
                return data
            return self._read_raw(amt) if amt else b""
        if amt is None:
            data = bytes(self._decoded) + self._decode_with(
                self._read_raw(None), decoder, _UNBOUNDED
            )
            self._decoded.clear()
            if cache_content:
                self._body = data
            return data
        if amt == 0:
            return b""
        buf = self._decoded
        while len(buf) < amt:
            if decoder.has_unconsumed_tail:
                raw = b""
            elif not self._done or self._surplus:
                # once: what has arrived (up to 8 KiB), not a wait for all 8 KiB (urllib3 reads
                # amt raw bytes at a time, so a flushed piece of a slow stream comes out at once)
                raw = self._read_raw(max(amt, 8192), once=True)
            elif self._flushed:
                break
            else:
                raw = b""
            # Decode at most what this read needs (64 KiB at least, so tiny reads stay cheap).
            buf += self._decode_with(raw, decoder, max(amt - len(buf), _DECODE_STEP))
        return self._take_decoded(amt, None)

    def _take_decoded(self, amt: int | None, more: Any) -> bytes:
        buf = self._decoded
        if amt is None:
            data = bytes(buf) + more(None)
            buf.clear()
            return typing.cast(bytes, data)
        data = bytes(buf[:amt])
        del buf[:amt]
        return data

    def _decoding_pending(self) -> bool:
        """Input the content decoder still holds back (or has not flushed)."""
        decoder = self._content_decoder
        if decoder is None:
            return False
        return not self._flushed and (decoder.has_unconsumed_tail or self._content_fed)

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """Return up to ``amt`` bytes with at most one read from the socket."""
        if self._done and self._connection is not None:
            self._finish()  # a body that ended before any read (see __init__): released now
        if decode_content is None:
            decode_content = self.decode_content
        if self._decoded:
            return self._take_decoded(
                amt if amt is not None and amt >= 0 else len(self._decoded), None
            )
        decoder = self._get_decoder() if decode_content else None
        if decoder is None:
            return self._read_raw(amt if amt is not None and amt >= 0 else _RECV_SIZE, once=True)
        if amt == 0:
            return b""
        limit = amt if amt is not None and amt > 0 else None
        step = _DECODE_STEP if limit is None else max(limit, _DECODE_STEP)
        # Raw bytes may decode to nothing yet (a gzip header): read on, as b"" means the end.
        while True:
            if decoder.has_unconsumed_tail:
                raw = b""  # decode what is held back before reading more
            elif not self._done or self._surplus:
                raw = self._read_raw(limit or _RECV_SIZE, once=True)
            elif self._flushed:
                return b""
            else:
                raw = b""
            data = self._decode_with(raw, decoder, step)
            if data:
                break
        if limit is not None and len(data) > limit:
            self._decoded += memoryview(data)[limit:]
            data = data[:limit]
        return data

    def readinto(self, b: Any) -> int:
        """Read into a writable buffer; returns the number of bytes (0 at the end)."""
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def stream(
        self, amt: int | None = 2**16, decode_content: bool | None = None
    ) -> Generator[bytes, None, None]:
        """Yield the body in pieces of up to ``amt`` bytes (default 64 KiB) until it ends.

        A chunked body yields a piece per chunk, as urllib3's ``read_chunked`` does (live
        streams such as server-sent events or JSON lines are seen a chunk at a time): each chunk
        whole when ``amt`` is None, else in pieces of ``amt`` bytes, the chunk's last one
        shorter; decoded, each piece gives what it decodes to (at most ``amt`` bytes a step).
        Other bodies yield full ``amt`` pieces, the last one shorter.
        """
        if self._done and self._connection is not None:
            self._finish()  # a body that ended before any read (see __init__): released now
        if self.chunked:
            if self._fp_wrapper is None:
                yield from self._stream_chunks(amt, decode_content)
                return
            read = self.read1  # through a tool's ``_fp`` (see _RawBody): what has arrived
        else:
            read = self.read
        while not self._done or self._decoded or self._surplus or self._decoding_pending():
            data = read(amt, decode_content)
            if data:
                yield data

    def _stream_chunks(
        self, amt: int | None, decode_content: bool | None
    ) -> Generator[bytes, None, None]:
        """:meth:`stream` of a chunked body: urllib3's ``read_chunked`` pieces."""
        if amt is not None and amt < 0:
            amt = None
        if amt == 0:
            return
        if decode_content is None:
            decode_content = self.decode_content
        decoded = self._decoded
        while decoded:  # left over from an earlier decoded read(amt)
            yield self._take_decoded(amt or len(decoded), None)
        decoder = self._get_decoder() if decode_content else None
        if decoder is None:
            while True:
                data = self._read_chunk_piece(amt)
                if not data:
                    return
                yield data
        max_length = _UNBOUNDED if amt is None else amt
        while True:
            if decoder.has_unconsumed_tail:
                raw = b""  # decode what is held back before reading on
            else:
                raw = self._read_chunk_piece(amt)
                if not raw:
                    break
            data = self._decode_with(raw, decoder, max_length)
            if data:
                yield data
        if not self._flushed:  # the end of the body: what the decoder still holds
            data = self._decode_with(b"", decoder, _UNBOUNDED)
            if data:
                yield data

    def read_chunked(
        self, amt: int | None = None, decode_content: bool | None = None
    ) -> Generator[bytes, None, None]:
        """urllib3 compatibility: :meth:`stream` with ``amt`` None by default (a piece per
        chunk)."""
        return self.stream(amt, decode_content)

    def supports_chunked_reads(self) -> bool:
        """urllib3 compatibility."""
        return self.chunked

    def __iter__(self) -> Iterator[bytes]:
        buffer: list[bytes] = []
        for chunk in self.stream(decode_content=True):
            if b"\n" in chunk:
                parts = chunk.split(b"\n")
                yield b"".join(buffer) + parts[0] + b"\n"
                for x in parts[1:-1]:
                    yield x + b"\n"
                buffer = [parts[-1]] if parts[-1] else []
            else:
                buffer.append(chunk)
        if buffer:
            yield b"".join(buffer)

    # --- decoding -----------------------------------------------------------------------------
    def _get_decoder(self) -> Any:
        if not self._content_decoder_ready:
            self._content_decoder_ready = True
            encoding = self._head.content_encoding
            if encoding:
                try:
                    self._content_decoder = _make_decoder(encoding)
                except DecodeError:
                    self._abandon()  # the body cannot be decoded: do not leave it on the wire
                    raise
        return self._content_decoder

    def _decode_with(self, data: bytes, decoder: Any, max_length: int) -> bytes:
        """Decode ``data`` (and input the decoder held back) into at most ``max_length`` bytes
        (-1: all); the decoder is flushed once the body has ended and nothing is held back."""
        try:
            if data or decoder.has_unconsumed_tail:
                if data:
                    self._content_fed = True
                data = decoder.decompress(data, max_length)
            if (
                self._done
                and not self._surplus
                and not self._flushed
                and not decoder.has_unconsumed_tail
            ):
                self._flushed = True
                if self._content_fed:  # an empty body (HEAD, 204) has nothing to finish
                    data += decoder.flush()
        except Exception as e:
            self._abandon()  # the rest of the body is of no use: do not leave it on the wire
            self._flushed = True
            encoding = self.headers.get("content-encoding", "").lower()
            raise DecodeError(
                f"Received response with content-encoding: {encoding}, but failed to decode it.",
                e,
            ) from e
        return data

    @property
    def _fp(self) -> Any:
        """The body as urllib3's ``_fp`` (see :class:`_RawBody`); settable, as in urllib3."""
        wrapper = self._fp_wrapper
        return _RawBody(self) if wrapper is None else wrapper

    @_fp.setter
    def _fp(self, value: Any) -> None:
        self._fp_wrapper = value

    def _update_chunk_length(self) -> None:
        """urllib3's hook for a chunk size line: never called by fastpool's reader (its
        chunked framing lives in ``_http11``); here for tools that look it up."""

    # --- framing ------------------------------------------------------------------------------
    def _read_raw(self, amt: int | None, once: bool = False, direct: bool = False) -> bytes:
        """Up to ``amt`` body bytes after framing (all when ``None``); b"" at the end.

        Through ``_fp`` when a tool replaced it (``direct``: not, since the wrapper's own read
        lands here)."""
        if self._fp_wrapper is not None and not direct:
            return self._fp_wrapper.read(amt) or b""
        surplus = self._surplus
        if surplus:
            if amt is None:
                self._surplus = b""
                return surplus + self._read_raw(None, False, True)
            if len(surplus) >= amt or once or self._done:
                data, self._surplus = surplus[:amt], surplus[amt:]
                return data
            self._surplus = b""
            return surplus + self._read_raw(amt - len(surplus), False, True)
        if self._done:
            return b""
        conn = self._connection
        if conn is None or conn.sock is None:
            self._done = True
            return b""
        rest = self._rest
        if rest and len(rest) == self.length_remaining and (amt is None or amt >= len(rest)):
            # The common small response: its whole (Content-Length) body came with the head.
            self._rest = b""
            self._fp_bytes_read += len(rest)
            self._consumed_length(len(rest))
            return rest
        try:
            framing = self._framing
            if framing == "length":
                data = self._read_length(conn.sock, amt, once)
            elif framing == "chunked":
                data = self._read_chunked(conn.sock, amt, once)
            else:
                data = self._read_to_close(conn.sock, amt, once)
        except BaseException as e:
            if once and isinstance(e, WOULD_BLOCK):
                # A non-blocking socket with nothing to read yet (map's body reader in
                # fastpool.multi): a read of what has arrived receives before it takes
                # anything, so the same read can be made again later.
                raise
            self._raise_read_failure(e)
        self._fp_bytes_read += len(data)
        if amt is not None and len(data) > amt:
            # A chunk (or a read-to-close segment) longer than asked: keep the surplus.
            data, self._surplus = data[:amt], data[amt:]
        return data

    def _read_failed(self, e: BaseException) -> BaseException:
        """A body read failed with ``e``: close the connection; the error to raise (``e``
        itself, or urllib3's ReadTimeoutError or ProtocolError for a socket error)."""
        self._abandon()
        if isinstance(e, socket.timeout) or (
            isinstance(e, ssl.SSLError) and "read operation timed out" in str(e)
        ):
            return ReadTimeoutError(
                self._pool,  # type: ignore[arg-type]  # fastpool's pool, urllib3's interface
                self._request_url,
                "Read timed out.",
            )
        if isinstance(e, (ProtocolError, DecodeError)) or not isinstance(e, OSError):
            return e
        return ProtocolError(f"Connection broken: {e!r}", e)

    def _raise_read_failure(self, e: BaseException) -> typing.NoReturn:
        """Raise what the failed body read ``e`` means (:meth:`_read_failed`), from ``e``.
        The error's traceback keeps this frame and the reader's: neither keeps the error (no
        cycle with this response, which refcounting then frees at once, as stock's)."""
        error = self._read_failed(e)
        try:
            if error is e:
                raise e
            raise error from e
        finally:
            del error, e

    def _read_length(self, sock: socket.socket, amt: int | None, once: bool) -> bytes:
        remaining = self.length_remaining
        assert remaining is not None
        want = remaining if amt is None or amt > remaining else amt
        rest = self._rest
        if rest:
            if len(rest) >= want:
                if len(rest) == want:
                    data, self._rest = rest, b""
                else:
                    data, self._rest = rest[:want], rest[want:]
                self._consumed_length(len(data))
                return data
            if once:
                self._rest = b""
                self._consumed_length(len(rest))
                return rest
        if want > _PREALLOC_LIMIT and not once:
            # Never trust a huge Content-Length with one allocation: grow with what arrives.
            pieces = []
            # Not past the end: an early EOF (enforce_content_length=False) closed the socket.
            while self.length_remaining and not self._done:
                pieces.append(self._read_length(sock, min(want, _PREALLOC_LIMIT), False))
                want -= len(pieces[-1])
                if not want:
                    break
            return b"".join(pieces)
        buf = bytearray(want)
        got = len(rest)
        if got:
            buf[:got] = rest
            self._rest = b""
        view = memoryview(buf)
        eof = False
        while got < want:
            n = sock.recv_into(view[got:], want - got)
            if not n:
                eof = True  # the peer closed before Content-Length bytes came
                break
            got += n
            if once:
                break
        if eof:
            self._consumed_length(got)
            self._premature_end()
            return bytes(view[:got])
        self._consumed_length(got)
        return bytes(buf) if got == want else bytes(view[:got])

    def _consumed_length(self, n: int) -> None:
        remaining = self.length_remaining - n  # type: ignore[operator]
        self.length_remaining = remaining
        if remaining == 0:
            self._finish()

    def _premature_end(self) -> None:
        if self.enforce_content_length:
            # urllib3 wraps http.client's IncompleteRead in a ProtocolError with this text
            remaining = self.length_remaining or 0
            err = IncompleteRead((self._head.content_length or 0) - remaining, remaining)
            self._abandon()
            raise IncompleteResponseError(f"Connection broken: {err!r}", err)
        self._abandon()

    def _read_chunked(self, sock: socket.socket, amt: int | None, once: bool) -> bytes:
        decoder = self._chunks
        out: list[bytes] = []
        size = 0
        data = self._rest
        self._rest = b""
        while True:
            if data or decoder.held:  # held: input a stream of chunk pieces did not use yet
                piece = decoder.feed(data)
                if piece:
                    out.append(piece)
                    size += len(piece)
                if decoder.done:
                    if decoder.unused:
                        self._keep_alive = False  # bytes nobody asked for: never reuse
                    self._finish()
                    break
            if (amt is not None and size >= amt) or (once and size):
                break
            data = sock.recv(_RECV_SIZE)
            if not data:
                self._chunked_cut_short(size, None)
        return b"".join(out) if len(out) != 1 else out[0]

    def _chunked_cut_short(self, got: int, piece: int | None) -> typing.NoReturn:
        """The peer closed inside a chunked body: close the connection and raise urllib3's
        error for where it stopped. ``got``: the body bytes this call had read; ``piece``: for
        a chunk piece (``read_chunked``), the most bytes it still wanted (-1: the rest of the
        chunk), None for ``read()``.

        Within a chunk's data or the CRLF after it: ``ProtocolError("Connection broken:
        IncompleteRead(...)", IncompleteRead)``, with ``read_chunked``'s numbers for a piece;
        before a chunk-size line (or within one, or the trailers): "Response ended prematurely".
        """
        decoder = self._chunks
        self._abandon()
        expected = decoder.chunk_left
        if expected:
            if piece is not None and 0 < piece < expected:
                expected = piece  # urllib3 reads a piece of at most amt bytes
        else:
            expected = decoder.crlf_left
            if expected and piece is not None:
                got = 2 - expected  # urllib3 reads the CRLF after a piece on its own
        if not expected:
            raise IncompleteResponseError("Response ended prematurely")
        err = IncompleteRead(got, expected)
        raise IncompleteResponseError(f"Connection broken: {err!r}", err)

    def _read_chunk_piece(self, amt: int | None) -> bytes:
        """The next piece of a chunked body, as urllib3's ``read_chunked`` reads them: the rest
        of the current chunk, or ``amt`` bytes of it when more are left (waiting until they
        have arrived); b"" at the end of the body."""
        surplus = self._surplus
        if surplus:  # left over by a read(amt), which does not keep chunk boundaries
            if amt is None or len(surplus) <= amt:
                self._surplus = b""
                return surplus
            data, self._surplus = surplus[:amt], surplus[amt:]
            return data
        if self._done:
            return b""
        conn = self._connection
        if conn is None or conn.sock is None:
            self._done = True
            return b""
        decoder = self._chunks
        limit = -1 if amt is None else amt
        parts: list[bytes] = []
        data = self._rest
        self._rest = b""
        try:
            while True:
                piece = decoder.feed_chunk(data, limit)
                if piece:
                    parts.append(piece)
                    if decoder.chunk_left == 0 or len(piece) == limit:
                        break  # the chunk, or amt bytes of it
                    if limit > 0:
                        limit -= len(piece)
                elif decoder.done:
                    if decoder.unused:
                        self._keep_alive = False  # bytes nobody asked for: never reuse
                    self._finish()
                    break
                # The input ended within the piece (feed_chunk holds nothing back): read on.
                data = conn.sock.recv(_RECV_SIZE)
                if not data:
                    self._chunked_cut_short(sum(map(len, parts)), limit)
        except BaseException as e:  # noqa: BLE001 - raised again, or mapped
            self._raise_read_failure(e)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._fp_bytes_read += len(data)
        return data

    def _read_to_close(self, sock: socket.socket, amt: int | None, once: bool) -> bytes:
        out: list[bytes] = []
        size = 0
        rest, self._rest = self._rest, b""
        if rest:
            out.append(rest)
            size = len(rest)
        while amt is None or size < amt:
            if once and size:
                break
            data = sock.recv(_RECV_SIZE if amt is None else max(amt - size, 1))
            if not data:
                self._keep_alive = False
                self._finish()
                break
            out.append(data)
            size += len(data)
        return b"".join(out)

    # --- the connection's way home ------------------------------------------------------------
    def _finish(self) -> None:
        """The body ended: hand the connection back for reuse (if allowed) or close it."""
        self._done = True
        conn = self._connection
        if conn is None or self._holding:  # _drain_cheaply hands it back itself
            return
        self._connection = None
        rest = self._rest
        if rest:
            self._rest = b""  # bytes after the response: never reused
        keep_alive = self._keep_alive and not rest
        pool = self._pool
        if pool is not None:
            pool._checkin_finished(conn, keep_alive, self._queue)
        elif keep_alive and conn.reusable:
            conn.requests += 1  # no pool: the connection stays its owner's
        else:
            conn.close()

    def _abandon(self) -> None:
        """Close the connection (its state is unknown) and give its slot back."""
        self._done = True
        self._rest = b""
        conn, self._connection = self._connection, None
        if conn is None:
            return
        try:
            conn.close()
        finally:
            pool = self._pool
            if pool is not None and getattr(pool, "pool", None) is self._queue:
                pool._put_conn(None)

    def __del__(self) -> None:
        # A response dropped with its body unread: close the socket, give the slot back.
        # (Not io.IOBase's close(): that could drain, and must not re-enter the queue.)
        conn = self.__dict__.get("_connection")
        if conn is None:
            return
        self._connection = None
        try:
            conn.close()
        finally:
            pool = self._pool
            if pool is not None and getattr(pool, "pool", None) is self.__dict__.get("_queue"):
                pool._release_from_finalizer()

    def _drain_cheaply(self, keep: bool = False) -> None:
        # Only a Content-Length remainder that already sits in our buffer, or arrives without
        # waiting, is drained: close() must never block on a slow server. ``keep``
        # (release_conn): only a remainder already in the buffer, kept for later reads.
        remaining = self.length_remaining
        conn = self._connection
        if (
            self._framing != "length"
            or remaining is None
            or remaining > _DRAIN_LIMIT
            or conn is None
            or conn.sock is None
        ):
            return
        try:
            if len(self._rest) >= remaining:
                if keep:
                    # kept after the bytes a read(amt) left over (framed, not yet decoded)
                    kept, self._surplus = self._surplus, b""
                    try:
                        kept += self._read_raw(remaining, False, True)
                    finally:
                        self._surplus = kept  # on failure too: those bytes are not lost
                else:
                    self._read_raw(remaining, False, True)
                return
            if keep:
                return
            sock = conn.sock
            old = sock.gettimeout()
            # Non-blocking for the drain; the connection goes back only once its socket has
            # its timeout again (another thread may check it out at once).
            self._holding = True
            sock.settimeout(0.0)
            try:
                while not self._done:
                    self._read_raw(remaining, True, True)
                    remaining = self.length_remaining or 0
            finally:
                self._holding = False
                if self._connection is not None and self._connection.sock is not None:
                    sock.settimeout(old)
            self._finish()
        except (HTTPError, OSError):
            self._abandon()
