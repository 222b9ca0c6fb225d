"""The response body: Content-Length, chunked, read-to-close or no framing; content decoding;
the connection goes back to its pool exactly when the body has been read to its end.

:class:`HTTPResponse` follows urllib3's ``BaseHTTPResponse`` contract, so requests uses it as
``Response.raw`` unchanged.
"""

from __future__ import annotations

import importlib
import io
import socket
import ssl
import typing
import zlib
from collections.abc import Iterator
from typing import Any

from urllib3._collections import HTTPHeaderDict
from urllib3.exceptions import DecodeError, HTTPError, IncompleteRead, ReadTimeoutError
from urllib3.response import BaseHTTPResponse

from ._http11 import ChunkedDecoder
from .exceptions import IncompleteResponseError, ProtocolError

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

__all__ = ("HTTPResponse",)

# Draining a remainder this small on close() is cheaper than a new connection.
_DRAIN_LIMIT = 65536
_RECV_SIZE = 65536
# A Content-Length body is read into one buffer of its size up to this, in pieces beyond.
_PREALLOC_LIMIT = 4 * 1024 * 1024


# --- content decoding ---------------------------------------------------------------------------
class _GzipDecoder:
    """gzip with several members (RFC 1952 allows them; urllib3 decodes them all)."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._members = 0

    def decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            try:
                out.append(self._obj.decompress(data))
            except zlib.error:
                if self._members:
                    return b"".join(out)  # trailing garbage after a complete member: ignored
                raise
            data = self._obj.unused_data
            if not self._obj.eof:
                break
            self._members += 1
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return b"".join(out)

    def flush(self) -> bytes:
        return self._obj.flush()


class _DeflateDecoder:
    """``deflate`` is zlib-wrapped by the RFC but raw deflate in the wild: try both."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj()
        self._first = True
        self._seen = b""

    def decompress(self, data: bytes) -> bytes:
        if not self._first:
            return self._obj.decompress(data)
        self._seen += data
        try:
            out = self._obj.decompress(data)
            if out:
                self._first = False
                self._seen = b""
            return out
        except zlib.error:
            self._first = False
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            seen, self._seen = self._seen, b""
            return self._obj.decompress(seen)

    def flush(self) -> bytes:
        return self._obj.flush()


class _BrotliDecoder:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return self._obj.process(data)  # type: ignore[no-any-return]

    def flush(self) -> bytes:
        return b""


class _ZstdDecoder:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._obj.decompress(data))
            data = self._obj.unused_data if self._obj.eof else b""
            if data:
                self._obj = zstandard.ZstdDecompressor().decompressobj()
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._obj.eof:
            raise DecodeError("Zstandard data is incomplete")
        return b""


class _MultiDecoder:
    """``Content-Encoding: gzip, br``: the last coding applied is undone first."""

    def __init__(self, decoders: list[Any]) -> None:
        self._decoders = decoders[::-1]

    def decompress(self, data: bytes) -> bytes:
        for d in self._decoders:
            data = d.decompress(data)
        return data

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


class _OriginalResponse:
    """What requests reads from ``raw._original_response``: ``msg`` and ``isclosed()``."""

    __slots__ = ("_response", "msg")

    def __init__(self, response: HTTPResponse) -> None:
        self._response = response
        self.msg = _Message(response.headers)

    def isclosed(self) -> bool:
        return self._response.closed


class HTTPResponse(BaseHTTPResponse):
    """A streamed HTTP response: a urllib3 ``BaseHTTPResponse`` (requests' ``Response.raw``).

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
        self.status: int = head.status
        self.reason: str = head.reason
        self.version: int = head.version
        self._head = head
        self._headers: HTTPHeaderDict | None = None
        self._connection = connection
        self._pool = pool
        self._request_method = request_method
        self._request_url = request_url
        self._retries = None
        self.retries = retries  # urllib3: a redirect history moves ``url`` to the last location
        self.decode_content = decode_content
        self.enforce_content_length = enforce_content_length
        self.auto_close = auto_close
        self.chunked = head.framing == "chunked"
        self._framing = head.framing
        self._keep_alive = head.keep_alive and (connection is None or connection.reusable)
        self.length_remaining: int | None = head.content_length
        self._fp_bytes_read = 0
        self._rest = connection.take_rest() if connection is not None else b""
        self._chunks: Any = None
        self._content_decoder: Any = None
        self._content_decoder_ready = False
        self._content_fed = False
        self._decoded = b""  # decoded bytes a read(amt) did not return yet
        self._surplus = b""  # framed body bytes a read(amt) did not return yet
        self._body: bytes | None = None
        self._done = False
        self._closed = False
        self._holding = False  # True while _drain_cheaply owns the connection's timeout
        if head.framing == "none" or (head.framing == "length" and head.content_length == 0):
            self._finish()
        elif head.framing == "chunked":
            self._chunks = ChunkedDecoder()
        if preload_content and not self._done:
            self._body = self.read(decode_content=decode_content)

    # --- attributes ---------------------------------------------------------------------------
    @property
    def headers(self) -> HTTPHeaderDict:
        """The response headers (urllib3 ``HTTPHeaderDict``: case-insensitive, duplicates kept)."""
        headers = self._headers
        if headers is None:
            # Fill the dict's storage directly: the same layout HTTPHeaderDict.add builds, at a
            # fraction of the cost (this runs on every request).
            container: dict[str, list[str]] = {}
            for name, value in self._head.headers:
                key = name.lower()
                entry = container.get(key)
                if entry is None:
                    container[key] = [name, value]
                else:
                    entry.append(value)
            headers = HTTPHeaderDict.__new__(HTTPHeaderDict)
            headers._container = container
            self._headers = headers
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

    @property
    def _original_response(self) -> _OriginalResponse:
        return _OriginalResponse(self)

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
        return self._closed or (self._done and not self._decoded and not self._surplus)

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
        already arrived is drained instead, so the connection can be reused)."""
        if not self._closed:
            self._closed = True
            if not self._done:
                self._drain_cheaply()
                if not self._done:
                    self._abandon()
        if not self.auto_close:
            io.IOBase.close(self)

    def shutdown(self) -> None:
        """Shut the socket down, so a read blocked in another thread returns (urllib3 2.3)."""
        conn = self._connection
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release_conn(self) -> None:
        """Give the connection back: reused if the body is complete, closed otherwise.

        Idempotent: a second call does nothing.
        """
        if self._connection is None:
            return
        if not self._done:
            self._drain_cheaply()
            if not self._done:
                self._abandon()

    def drain_conn(self) -> None:
        """Read and discard the rest of the body so the connection can be reused."""
        try:
            while not self._done:
                self._read_raw(None)
        except (HTTPError, OSError):
            self._abandon()
        self._decoded = b""

    # --- reading ------------------------------------------------------------------------------
    def read(
        self,
        amt: int | None = None,
        decode_content: bool | None = None,
        cache_content: bool = False,
    ) -> bytes:
        """Read up to ``amt`` bytes (all of the body when ``None``), decoded by default.

        With ``amt`` the call returns exactly ``amt`` bytes unless the body ends first.
        """
        if decode_content is None:
            decode_content = self.decode_content
        if amt is not None and amt < 0:
            amt = None
        decoder = self._get_decoder() if decode_content else None
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
            data = self._decoded + self._decode_with(self._read_raw(None), decoder, flush=True)
            self._decoded = b""
            if cache_content:
                self._body = data
            return data
        if amt == 0:
            return b""
        while len(self._decoded) < amt and (not self._done or self._surplus):
            raw = self._read_raw(max(amt, 8192))
            self._decoded += self._decode_with(raw, decoder, flush=self._done and not self._surplus)
        data = self._decoded[:amt]
        self._decoded = self._decoded[amt:]
        return data

    def _take_decoded(self, amt: int | None, more: Any) -> bytes:
        if amt is None:
            data = self._decoded + more(None)
            self._decoded = b""
            return typing.cast(bytes, data)
        data, self._decoded = self._decoded[:amt], self._decoded[amt:]
        return data

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """Return up to ``amt`` bytes with at most one read from the socket."""
        if decode_content is None:
            decode_content = self.decode_content
        if self._decoded:
            return self._take_decoded(
                amt if amt is not None and amt >= 0 else len(self._decoded), None
            )
        raw = self._read_raw(amt if amt is not None and amt >= 0 else _RECV_SIZE, once=True)
        decoder = self._get_decoder() if decode_content else None
        if decoder is None:
            return raw
        data = self._decode_with(raw, decoder, flush=self._done and not self._surplus)
        if amt is not None and amt >= 0 and len(data) > amt:
            data, self._decoded = data[:amt], data[amt:]
        return data

    def readinto(self, b: Any) -> int:
        """Read into a writable buffer; returns the number of bytes (0 at the end)."""
        view = memoryview(b).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def stream(
        self, amt: int | None = 2**16, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """Yield the body in pieces of up to ``amt`` bytes (default 64 KiB) until it ends.

        A chunked body yields what has arrived without waiting to fill ``amt`` (as urllib3's
        ``read_chunked`` does: live streams such as server-sent events or JSON lines are seen
        at once); other bodies yield full ``amt`` pieces, the last one shorter.
        """
        read = self.read1 if self.chunked else self.read
        while not self._done or self._decoded or self._surplus:
            data = read(amt, decode_content)
            if data:
                yield data

    def read_chunked(
        self, amt: int | None = None, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """urllib3 compatibility: like :meth:`stream` (chunk boundaries are not preserved)."""
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
            # Scan the parsed head rather than build the header dict nobody may ask for.
            codings = [
                v for k, v in self._head.headers if len(k) == 16 and k.lower() == "content-encoding"
            ]
            encoding = ", ".join(codings)
            if encoding:
                self._content_decoder = _make_decoder(encoding)
        return self._content_decoder

    def _decode_with(self, data: bytes, decoder: Any, flush: bool) -> bytes:
        try:
            if data:
                self._content_fed = True
                data = decoder.decompress(data)
            if flush and self._content_fed:  # an empty body (HEAD, 204) has nothing to finish
                data += decoder.flush()
        except Exception as e:
            self._abandon()  # the rest of the body is of no use: do not leave it on the wire
            encoding = self.headers.get("content-encoding", "").lower()
            raise DecodeError(
                f"Received response with content-encoding: {encoding}, but failed to decode it.",
                e,
            ) from e
        return data

    # --- framing ------------------------------------------------------------------------------
    def _read_raw(self, amt: int | None, once: bool = False) -> bytes:
        """Up to ``amt`` body bytes after framing (all when ``None``); b"" at the end."""
        surplus = self._surplus
        if surplus:
            if amt is None:
                self._surplus = b""
                return surplus + self._read_raw(None)
            if len(surplus) >= amt or once or self._done:
                data, self._surplus = surplus[:amt], surplus[amt:]
                return data
            self._surplus = b""
            return surplus + self._read_raw(amt - len(surplus))
        if self._done:
            return b""
        conn = self._connection
        if conn is None or conn.sock is None:
            self._done = True
            return b""
        try:
            framing = self._framing
            if framing == "length":
                data = self._read_length(conn.sock, amt, once)
            elif framing == "chunked":
                data = self._read_chunked(conn.sock, amt, once)
            else:
                data = self._read_to_close(conn.sock, amt, once)
        except BaseException as e:
            self._abandon()
            if isinstance(e, socket.timeout) or (
                isinstance(e, ssl.SSLError) and "read operation timed out" in str(e)
            ):
                raise ReadTimeoutError(self._pool, self._request_url, "Read timed out.") from e
            if isinstance(e, (ProtocolError, DecodeError)) or not isinstance(e, OSError):
                raise
            raise ProtocolError(f"Connection broken: {e!r}", e) from e
        self._fp_bytes_read += len(data)
        if amt is not None and len(data) > amt:
            # A chunk (or a read-to-close segment) longer than asked: keep the surplus.
            data, self._surplus = data[:amt], data[amt:]
        return data

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
            while self.length_remaining:
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
            if data:
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
                self._abandon()
                raise IncompleteResponseError("Response ended prematurely")
        return b"".join(out) if len(out) != 1 else out[0]

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
        if not self._keep_alive or self._rest:
            self._abandon()
            return
        self._connection = None
        conn.requests += 1
        pool = self._pool
        if pool is not None:
            pool._put_conn(conn)

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
            if pool is not None:
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
            if pool is not None:
                pool._release_from_finalizer()

    def _drain_cheaply(self) -> None:
        # Only a Content-Length remainder that already sits in our buffer, or arrives without
        # waiting, is drained: close() must never block on a slow server.
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
                self._read_raw(remaining)
                return
            sock = conn.sock
            old = sock.gettimeout()
            # Non-blocking for the drain; the connection goes back only once its socket has
            # its timeout again (another thread may check it out at once).
            self._holding = True
            sock.settimeout(0.0)
            try:
                while not self._done:
                    self._read_raw(remaining, once=True)
                    remaining = self.length_remaining or 0
            finally:
                self._holding = False
                if self._connection is not None and self._connection.sock is not None:
                    sock.settimeout(old)
            self._finish()
        except (HTTPError, OSError):
            self._abandon()
