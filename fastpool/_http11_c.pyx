# cython: language_level=3, embedsignature=True
"""HTTP/1.1 wire format, compiled: request heads, response heads, chunks.

The compiled twin of ``_http11_py`` (read its docstring for the rules and every choice): the
same names, results, exceptions and messages. It scans the buffer with C pointers and builds
header strings straight from it (latin-1), without regular expressions.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeLatin1
from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport PyObject
from libc.string cimport memchr, memcmp, memcpy, memset

from collections import OrderedDict

from .exceptions import (
    MSG_HTTP_BAD_CHAR,
    MSG_HTTP_BAD_CHUNK_SIZE,
    MSG_HTTP_BAD_CONTENT_LENGTH,
    MSG_HTTP_BAD_HEADER_LINE,
    MSG_HTTP_BAD_HEADER_NAME,
    MSG_HTTP_BAD_HEADER_VALUE,
    MSG_HTTP_BAD_METHOD,
    MSG_HTTP_BAD_STATUS_LINE,
    MSG_HTTP_BAD_TARGET,
    MSG_HTTP_BAD_TRAILER,
    MSG_HTTP_BAD_TRANSFER_ENCODING,
    MSG_HTTP_CHUNK_LINE_TOO_LONG,
    MSG_HTTP_CHUNK_NO_CRLF,
    MSG_HTTP_EMPTY_TARGET,
    MSG_HTTP_HEAD_TOO_LARGE,
    MSG_HTTP_HEADER_NAME_SPACE,
    MSG_HTTP_HEADER_NOT_LATIN1,
    MSG_HTTP_LINE_TOO_LONG,
    MSG_HTTP_TE_WITH_LENGTH,
    MSG_HTTP_TRANSFER_CODING,
    MSG_HTTP_NOT_BUFFER,
    MSG_HTTP_NOT_PAIR,
    MSG_HTTP_NOT_POSITIVE,
    MSG_HTTP_NOT_STR_OR_BYTES,
    MSG_HTTP_SKIP_HEADER,
    MSG_HTTP_TOO_MANY_HEADERS,
    MSG_HTTP_TOO_MANY_INTERIM,
    MSG_HTTP_TRAILERS_TOO_LARGE,
    MSG_NOT_INT,
    MSG_NOT_STR,
    InvalidChunkError,
    InvalidContentLengthError,
    InvalidRequestError,
    InvalidResponseError,
    ResponseHeadTooLarge,
)

cdef extern from *:
    """
    /* PyUnicode_READY is a deprecated no-op since 3.12: call it only where it matters. */
    #if PY_VERSION_HEX < 0x030C0000
    #define fastpool_unicode_ready(o) PyUnicode_READY(o)
    #else
    #define fastpool_unicode_ready(o) 0
    #endif
    """
    int fastpool_unicode_ready(object o) except -1

cdef extern from "Python.h":
    enum: PyUnicode_1BYTE_KIND
    int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    const Py_ssize_t PY_SSIZE_T_MAX

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

#: collect_request_headers' bits: which of these header names a request holds.
HAS_HOST = 1
HAS_USER_AGENT = 2
HAS_CONTENT_LENGTH = 4
HAS_TRANSFER_ENCODING = 8
HAS_ACCEPT_ENCODING = 16

#: Error messages show at most this many bytes of the offending line.
SHOW_BYTES = 80
#: Content-Length and chunk sizes must stay below this (what a C ``int64`` holds).
MAX_SIZE = 2**63 - 1
#: At most this many 1xx interim responses before the final one (see ``_http11_py``).
MAX_INTERIM_RESPONSES = 100
MAX_HEAD_BYTES = 1048576
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100

cdef Py_ssize_t _SHOW = 80
cdef unsigned long long _MAX_SIZE = 0x7FFFFFFFFFFFFFFFULL

# Byte classes, filled in once at import.
cdef unsigned char _IS_TOKEN[256]
cdef unsigned char _IS_BAD_IN_HEADER[256]  # control characters but HT, and DEL
cdef signed char _HEX_VALUE[256]


cdef void _init_tables():
    cdef int c
    for c in range(256):
        _IS_TOKEN[c] = 0
        _IS_BAD_IN_HEADER[c] = 1 if (c < 0x20 and c != 0x09) or c == 0x7F else 0
        _HEX_VALUE[c] = -1
    for c in b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        _IS_TOKEN[c] = 1
    for c in range(10):
        _HEX_VALUE[0x30 + c] = c
    for c in range(6):
        _HEX_VALUE[0x61 + c] = 10 + c
        _HEX_VALUE[0x41 + c] = 10 + c


_init_tables()


cdef inline bytes _show(const unsigned char* line, Py_ssize_t length):
    """The offending line as received, cut short, for an error message."""
    return PyBytes_FromStringAndSize(<const char*>line, length if length < _SHOW else _SHOW)


cdef inline str _latin1(const unsigned char* p, Py_ssize_t length):
    return PyUnicode_DecodeLatin1(<const char*>p, length, NULL)


cdef object _check_limit(str name, object value):
    if type(value) is not int:
        raise TypeError(MSG_NOT_INT.format(name=name, type=type(value).__name__))
    if value <= 0:
        raise ValueError(MSG_HTTP_NOT_POSITIVE.format(name=name, value=value))
    return value


cdef Py_ssize_t _clamp(object value):
    """A positive int limit as a Py_ssize_t (a bigger limit is no limit)."""
    if value > PY_SSIZE_T_MAX:
        return PY_SSIZE_T_MAX
    return value


cdef inline bint _token(const unsigned char* p, Py_ssize_t length) noexcept:
    cdef Py_ssize_t i
    if length == 0:
        return False
    for i in range(length):
        if not _IS_TOKEN[p[i]]:
            return False
    return True


cdef inline bint _lower_equals(const unsigned char* p, Py_ssize_t length, const char* word,
                               Py_ssize_t word_length) noexcept:
    """ASCII case-insensitive comparison with a lowercase ``word``."""
    cdef Py_ssize_t i
    cdef unsigned char c
    if length != word_length:
        return False
    for i in range(length):
        c = p[i]
        if 0x41 <= c <= 0x5A:
            c += 0x20
        if c != <unsigned char>word[i]:
            return False
    return True


cdef inline bint _is_ows(unsigned char c) noexcept:
    return c == 0x20 or c == 0x09


cdef inline void _trim_ows(const unsigned char* p, Py_ssize_t* v, Py_ssize_t* w) noexcept:
    """Narrow ``p[v:w]`` to leave out the SP/HT around it."""
    while v[0] < w[0] and _is_ows(p[v[0]]):
        v[0] += 1
    while w[0] > v[0] and _is_ows(p[w[0] - 1]):
        w[0] -= 1


cdef inline str _latin1_trimmed(const unsigned char* p, Py_ssize_t v, Py_ssize_t w):
    """``p[v:w]`` as latin-1 text without the SP/HT around it (a header value, a reason)."""
    _trim_ows(p, &v, &w)
    return _latin1(p + v, w - v)


# --- request head ------------------------------------------------------------------------------


cdef object _as_str(str name, object value):
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return (<bytes>value).decode("latin-1")
    raise TypeError(MSG_HTTP_NOT_STR_OR_BYTES.format(name=name, type=type(value).__name__))


cdef inline bint _part(object value, const unsigned char** data, Py_ssize_t* length) except -1:
    """Point at ``value``'s latin-1 bytes; False for a str beyond latin-1."""
    if isinstance(value, bytes):
        data[0] = <const unsigned char*>PyBytes_AS_STRING(value)
        length[0] = len(<bytes>value)
        return True
    fastpool_unicode_ready(value)
    if PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND:
        return False
    data[0] = <const unsigned char*>PyUnicode_DATA(value)
    length[0] = PyUnicode_GET_LENGTH(value)
    return True


def write_request_head(method, target, headers):
    """Return the request head ``b"METHOD target HTTP/1.1\\r\\nName: value\\r\\n...\\r\\n\\r\\n"``.

    ``headers`` is an iterable of ``(name, value)`` pairs (a list of tuples, a dict's
    ``.items()``); order and duplicates are kept. Names and values may be str (encoded latin-1,
    as http.client does) or bytes. Raises :class:`~fastpool.exceptions.InvalidRequestError`,
    naming the field, for a method that is not a token, an empty target or one with a control
    character, space or DEL, a header name that is not a token, a header value with CR, LF or
    NUL (stricter than http.client, which lets obs-fold through) or one not encodable in
    latin-1; ``TypeError`` for a part that is neither str nor bytes. Nothing is returned then.
    """
    cdef const unsigned char* p = NULL
    cdef Py_ssize_t n = 0, i, k, total
    cdef Py_ssize_t method_length, target_length
    cdef const unsigned char* method_data
    cdef const unsigned char* target_data
    cdef object pair, name, value, not_latin1 = None
    cdef bytes result
    cdef char* out

    if not isinstance(method, (str, bytes)):
        _as_str("method", method)
    if not isinstance(target, (str, bytes)):
        _as_str("target", target)
    if not _part(method, &method_data, &method_length) or not _token(method_data, method_length):
        raise InvalidRequestError(MSG_HTTP_BAD_METHOD.format(method=_as_str("method", method)))
    if not _part(target, &target_data, &target_length):
        raise InvalidRequestError(MSG_HTTP_BAD_TARGET.format(target=target))
    if target_length == 0:
        raise InvalidRequestError(MSG_HTTP_EMPTY_TARGET)
    for i in range(target_length):
        if not 0x21 <= target_data[i] <= 0x7E:
            raise InvalidRequestError(MSG_HTTP_BAD_TARGET.format(target=_as_str("target", target)))

    if type(headers) is not list and type(headers) is not tuple:
        headers = list(headers)
    total = method_length + 1 + target_length + 11 + 2
    # Pass 1: validate every pair and size the result; nothing is built on a bad header. Pass 2
    # copies from the very objects sized here (str and bytes are immutable), whatever the
    # caller's containers do meanwhile.
    cdef list parts = []
    for pair in headers:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(MSG_HTTP_NOT_PAIR.format(type=type(pair).__name__))
        name = pair[0]
        value = pair[1]
        if not isinstance(name, (str, bytes)):
            _as_str("header name", name)
        if not _part(name, &p, &n) or not _token(p, n):
            raise InvalidRequestError(MSG_HTTP_BAD_HEADER_NAME.format(name=_as_str("", name)))
        total += n + 4
        if not isinstance(value, (str, bytes)):
            _as_str(f"header {_as_str('', name)!r} value", value)
        if _part(value, &p, &n):
            for i in range(n):
                if p[i] == 0x0D or p[i] == 0x0A or p[i] == 0:
                    raise InvalidRequestError(
                        MSG_HTTP_BAD_HEADER_VALUE.format(name=_as_str("", name))
                    )
            total += n
        else:
            if "\r" in value or "\n" in value or "\x00" in value:
                raise InvalidRequestError(MSG_HTTP_BAD_HEADER_VALUE.format(name=_as_str("", name)))
            if not_latin1 is None:
                not_latin1 = name
        parts.append(name)
        parts.append(value)
    if not_latin1 is not None:
        raise InvalidRequestError(MSG_HTTP_HEADER_NOT_LATIN1.format(name=_as_str("", not_latin1)))

    # Pass 2: copy.
    result = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(result)
    memcpy(out, method_data, method_length)
    k = method_length
    out[k] = b" "
    k += 1
    memcpy(out + k, target_data, target_length)
    k += target_length
    memcpy(out + k, b" HTTP/1.1\r\n", 11)
    k += 11
    for i in range(0, len(parts), 2):
        _part(parts[i], &p, &n)
        memcpy(out + k, p, n)
        k += n
        out[k] = b":"
        out[k + 1] = b" "
        k += 2
        _part(parts[i + 1], &p, &n)
        memcpy(out + k, p, n)
        k += n
        out[k] = b"\r"
        out[k + 1] = b"\n"
        k += 2
    out[k] = b"\r"
    out[k + 1] = b"\n"
    return result


cdef inline int _request_header_bit(const unsigned char* p, Py_ssize_t n) noexcept:
    if _lower_equals(p, n, b"host", 4):
        return HAS_HOST
    if _lower_equals(p, n, b"user-agent", 10):
        return HAS_USER_AGENT
    if _lower_equals(p, n, b"content-length", 14):
        return HAS_CONTENT_LENGTH
    if _lower_equals(p, n, b"transfer-encoding", 17):
        return HAS_TRANSFER_ENCODING
    if _lower_equals(p, n, b"accept-encoding", 15):
        return HAS_ACCEPT_ENCODING
    return 0


def collect_request_headers(items, skip, skippable):
    """One pass over a request's ``(name, value)`` pairs, for the caller's defaults (urllib3's
    rules).

    Returns the pairs to send (those whose value is the str ``skip`` left out) and a bit set of
    the header names present, compared case-insensitively, str or bytes: ``HAS_HOST``,
    ``HAS_USER_AGENT``, ``HAS_CONTENT_LENGTH``, ``HAS_TRANSFER_ENCODING``,
    ``HAS_ACCEPT_ENCODING``. A ``skip`` value on
    a name outside ``skippable`` (lower-case names) raises ValueError; an item that is not a
    pair raises TypeError. Nothing is validated for the wire here: :func:`write_request_head`
    does that.
    """
    cdef list pairs = []
    cdef int present = 0
    cdef const unsigned char* p = NULL
    cdef Py_ssize_t n = 0
    cdef object key
    for pair in items:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(MSG_HTTP_NOT_PAIR.format(type=type(pair).__name__))
        name = pair[0]
        value = pair[1]
        if type(name) is str or type(name) is bytes:
            # Only an ASCII lower() can give these names: compared in place, no new string.
            if _part(name, &p, &n):
                present |= _request_header_bit(p, n)
            key = None
        else:
            key = _lower_key(name)  # what the pure twin does for every name
            present |= _REQUEST_HEADER_BITS.get(key, 0)
        if isinstance(value, str) and value == skip:
            if key is None:
                key = _lower_key(name)
            if key not in skippable:
                names = "', '".join(name.title() for name in sorted(skippable))
                raise ValueError(MSG_HTTP_SKIP_HEADER.format(names=names))
            continue
        pairs.append((name, value))
    return pairs, present


cdef object _lower_key(object name):
    """``name.lower()``, a bytes name as str (urllib3 compares ``to_str(name.lower())``)."""
    key = name.lower()
    if isinstance(key, bytes):
        return (<bytes>key).decode("latin-1")
    return key


_REQUEST_HEADER_BITS = {
    "host": HAS_HOST,
    "user-agent": HAS_USER_AGENT,
    "content-length": HAS_CONTENT_LENGTH,
    "transfer-encoding": HAS_TRANSFER_ENCODING,
    "accept-encoding": HAS_ACCEPT_ENCODING,
}


cdef object _lower_name(str name):
    """``name.lower()``, without a method call for the ASCII names a parsed head holds."""
    cdef char buf[64]
    cdef const unsigned char* p = NULL
    cdef Py_ssize_t n = 0, i
    cdef unsigned char c
    cdef bint upper = False
    if not _part(name, &p, &n) or n > 64:
        return name.lower()
    for i in range(n):
        c = p[i]
        if c >= 0x80:
            return name.lower()  # latin-1 letters have lower-case forms of their own
        if 0x41 <= c <= 0x5A:
            upper = True
            c += 0x20
        buf[i] = <char>c
    if not upper:
        return name
    return _latin1(<const unsigned char*>buf, n)


def header_store(headers):
    """``lower name -> (name as first seen, the values joined with ", ")`` in first-seen order.

    The combination of repeated fields RFC 9110 (5.3) allows, and the store requests'
    ``CaseInsensitiveDict`` keeps; ``headers`` is a :attr:`ResponseHead.headers` list.
    """
    store = OrderedDict()
    cdef object key
    cdef tuple seen_pair
    cdef PyObject* seen
    for pair in headers:
        name, value = pair
        if type(name) is str:
            key = _lower_name(name)
            seen = PyDict_GetItem(store, key)  # a str key: the lookup cannot fail
            seen_pair = None if seen is NULL else <tuple>seen
        else:  # what the pure twin does, errors included
            key = name.lower()
            seen_pair = store.get(key)
        if seen_pair is None:
            # the parser's pair itself (a tuple: nothing can change it), not a copy
            store[key] = pair if type(pair) is tuple else (name, value)
        else:
            store[key] = (seen_pair[0], f"{seen_pair[1]}, {value}")
    return store


# --- response head -----------------------------------------------------------------------------


cdef class ResponseHead:
    """A parsed response head (read-only).

    ``version`` is 10 or 11; ``status`` an int; ``reason`` a str (maybe ``""``); ``headers`` a
    list of ``(name, value)`` str pairs, latin-1 decoded, in order with duplicates, names as
    received and values without surrounding whitespace; ``keep_alive`` tells whether the
    connection may be reused after this response's body; ``framing`` is ``"none"``,
    ``"length"``, ``"chunked"`` or ``"close"`` (read until the server closes);
    ``content_length`` is the body length when framing is ``"length"``, else None;
    ``content_encoding`` the Content-Encoding values joined with ``", "`` (``""``: none);
    ``sets_cookies`` whether a Set-Cookie or Set-Cookie2 header came (found in the framing
    scan, so a response needs no scan of its own).
    """

    # (its fields are declared in _http11_c.pxd, for the other cores to read them directly)

    def __init__(self, int version, int status, str reason, list headers, bint keep_alive,
                 str framing, content_length):
        self._raw = None  # (a head made again keeps no offsets of the one it was)
        self._count = 0
        self.version = version
        self.status = status
        self.reason = reason
        self._headers = headers
        self.keep_alive = keep_alive
        self.framing = framing
        self.content_length = content_length
        encodings = [v for n, v in headers if n.lower() == "content-encoding"]
        self.content_encoding = ", ".join(encodings)
        self.sets_cookies = any(n.lower() in ("set-cookie", "set-cookie2") for n, _ in headers)

    @property
    def headers(self):
        """The ``(name, value)`` pairs (see the class)."""
        if self._raw is not None:
            self._headers = _pairs_of(
                <const unsigned char*>PyBytes_AS_STRING(self._raw),
                _spans_of(self._raw, self._spans_at),
                self._count,
            )
            self._raw = None
            self._count = 0
        return self._headers

    def __reduce__(self):
        # the pairs, not the offsets (native words: not portable, and not to be trusted when
        # read back)
        return (
            ResponseHead,
            (self.version, self.status, self.reason, self.headers, self.keep_alive,
             self.framing, self.content_length),
        )

    def __repr__(self):
        return (
            f"<ResponseHead HTTP/{self.version // 10}.{self.version % 10} {self.status} "
            f"{self.reason!r} framing={self.framing!r} "
            f"content_length={self.content_length!r} keep_alive={self.keep_alive!r} "
            f"headers={len(self.headers)}>"
        )


cdef list _pairs_of(const unsigned char* p, const Py_ssize_t* at, Py_ssize_t count):
    """The ``count`` header pairs whose name and value offsets in ``p`` ``at`` holds (four a
    header: name start and end, value start and end)."""
    cdef Py_ssize_t i
    cdef list pairs = []
    for i in range(count):
        pairs.append((
            _latin1(p + at[4 * i], at[4 * i + 1] - at[4 * i]),
            _latin1(p + at[4 * i + 2], at[4 * i + 3] - at[4 * i + 2]),
        ))
    return pairs


cdef inline const Py_ssize_t* _spans_of(bytes raw, Py_ssize_t spans_at) noexcept:
    return <const Py_ssize_t*>(PyBytes_AS_STRING(raw) + spans_at)


cdef inline Py_ssize_t _list_element(const unsigned char* p, Py_ssize_t n, Py_ssize_t i,
                                     Py_ssize_t* start, Py_ssize_t* end) noexcept:
    """Bound the comma-separated list element at ``p[i:]`` without OWS into ``start``/``end``;
    return the index just past its comma (``n + 1`` after the last element).
    """
    cdef Py_ssize_t e = i, j
    while e < n and p[e] != b",":
        e += 1
    j = e
    while i < j and _is_ows(p[i]):
        i += 1
    while j > i and _is_ows(p[j - 1]):
        j -= 1
    start[0] = i
    end[0] = j
    return e + 1


cdef Py_ssize_t _find_head_end(const unsigned char* buf, Py_ssize_t start,
                               Py_ssize_t stop) noexcept:
    """The index just past the blank line ending the head at ``start``, or -1 (within stop)."""
    cdef const unsigned char* lf
    cdef Py_ssize_t i = start
    while i < stop:
        lf = <const unsigned char*>memchr(buf + i, b"\n", stop - i)
        if lf == NULL:
            return -1
        i = lf - buf
        if i + 1 < stop and buf[i + 1] == b"\n":
            return i + 2
        if i + 2 < stop and buf[i + 1] == b"\r" and buf[i + 2] == b"\n":
            return i + 3
        i += 1
    return -1


cdef Py_ssize_t _line_end(const unsigned char* buf, Py_ssize_t start, Py_ssize_t stop) noexcept:
    """The end of the line at ``start`` without its LF and one CR before it."""
    cdef const unsigned char* lf = <const unsigned char*>memchr(buf + start, b"\n", stop - start)
    cdef Py_ssize_t end = stop if lf == NULL else lf - buf
    if end > start and buf[end - 1] == b"\r":
        end -= 1
    return end


cdef inline Py_ssize_t _next_line(const unsigned char* buf, Py_ssize_t start,
                                  Py_ssize_t stop) noexcept:
    """The start of the line after the one at ``start`` (``stop`` if there is none)."""
    cdef const unsigned char* lf = <const unsigned char*>memchr(buf + start, b"\n", stop - start)
    return stop if lf == NULL else lf - buf + 1


cdef inline bint _digit(unsigned char c) noexcept:
    return 0x30 <= c <= 0x39


cdef unsigned long long _content_length(list values) except? 0:
    # Every comma-separated element of every value must be the same digit string (as h11
    # demands; "05" and "5" differ), below 2**63.
    cdef unsigned long long number = 0
    cdef const unsigned char* first = NULL
    cdef Py_ssize_t first_length = 0
    cdef Py_ssize_t i, n, j, e, k
    cdef const unsigned char* p
    cdef bint ok = True
    for value in values:
        p = <const unsigned char*>PyUnicode_DATA(value)
        n = PyUnicode_GET_LENGTH(value)
        e = 0
        while ok and e <= n:
            e = _list_element(p, n, e, &i, &j)
            ok = j > i
            for k in range(i, j):
                if not _digit(p[k]):
                    ok = False
                    break
            if not ok:
                break
            if first == NULL:
                first = p + i
                first_length = j - i
            elif j - i != first_length or memcmp(p + i, first, first_length) != 0:
                ok = False
        if not ok:
            break
    if ok:
        j = 0
        while j < first_length and first[j] == b"0":
            j += 1
        if first_length - j <= 19:
            while j < first_length:
                number = number * 10 + (first[j] - 0x30)
                j += 1
            if number <= _MAX_SIZE:
                return number
    raise InvalidContentLengthError(MSG_HTTP_BAD_CONTENT_LENGTH.format(value=", ".join(values)))


cdef ResponseHead _frame(int version, int status, str reason, list headers, bytes raw,
                         Py_ssize_t spans_at, Py_ssize_t count, str request_method):
    """Decide keep-alive and body framing (RFC 9112 sections 6.3 and 9.3), from the header
    list, or (``headers`` None) from the ``count`` headers' offsets in ``raw`` (see
    _pairs_of)."""
    cdef bint close = False, keep_alive_token = False, keep_alive, chunked = False
    cdef bint sets_cookies = False
    cdef list lengths = None, codings = None, encodings = None
    cdef Py_ssize_t n, v, i = 0, j = 0, e, last_end = 0, k
    cdef bint other = False  # a Transfer-Encoding coding other than chunked
    cdef const unsigned char* p
    cdef const unsigned char* vp
    cdef const unsigned char* base = NULL
    cdef const Py_ssize_t* at = NULL
    cdef ResponseHead head
    cdef str framing
    if headers is None:
        base = <const unsigned char*>PyBytes_AS_STRING(raw)
        at = _spans_of(raw, spans_at)
    else:
        count = len(headers)
    for k in range(count):
        # the name and the value as latin-1 bytes (the list's strings are latin-1 decoded:
        # one byte a character)
        if headers is None:
            p = base + at[4 * k]
            n = at[4 * k + 1] - at[4 * k]
            vp = base + at[4 * k + 2]
            v = at[4 * k + 3] - at[4 * k + 2]
        else:
            name_text, value_text = <tuple>headers[k]
            p = <const unsigned char*>PyUnicode_DATA(name_text)
            n = PyUnicode_GET_LENGTH(name_text)
            vp = <const unsigned char*>PyUnicode_DATA(value_text)
            v = PyUnicode_GET_LENGTH(value_text)
        if n < 10 or n > 17 or n == 12 or n == 13 or n == 15:
            continue
        if _lower_equals(p, n, b"connection", 10):
            e = 0
            while e <= v:
                e = _list_element(vp, v, e, &i, &j)
                if _lower_equals(vp + i, j - i, b"close", 5):
                    close = True
                elif _lower_equals(vp + i, j - i, b"keep-alive", 10):
                    keep_alive_token = True
        elif _lower_equals(p, n, b"content-length", 14):
            if lengths is None:
                lengths = []
            lengths.append(_latin1(vp, v))
        elif _lower_equals(p, n, b"transfer-encoding", 17):
            if codings is None:
                codings = []
            codings.append(_latin1(vp, v))
        elif _lower_equals(p, n, b"content-encoding", 16):
            if encodings is None:
                encodings = []
            encodings.append(_latin1(vp, v))
        elif (_lower_equals(p, n, b"set-cookie", 10)
              or _lower_equals(p, n, b"set-cookie2", 11)):
            sets_cookies = True
    keep_alive = not close and (version == 11 or keep_alive_token)
    # Checked even where framing ignores it: both oracles reject a bad one anywhere.
    length = _content_length(lengths) if lengths is not None else None
    content_length = None
    if status == 101:
        framing = "none"
        keep_alive = False
    elif request_method == "HEAD" or status < 200 or status == 204 or status == 304:
        framing = "none"
    elif request_method == "CONNECT" and status < 300:
        framing = "none"
        keep_alive = True  # the tunnel takes over the socket
    elif codings is not None:
        # the last non-empty coding across all Transfer-Encoding values
        for value in codings:
            p = <const unsigned char*>PyUnicode_DATA(value)
            n = PyUnicode_GET_LENGTH(value)
            e = 0
            while e <= n:
                e = _list_element(p, n, e, &i, &j)
                if j > i:
                    if not _token(p + i, j - i):
                        last_end = 0
                        break
                    chunked = _lower_equals(p + i, j - i, b"chunked", 7)
                    other = other or not chunked
                    last_end = 1
            if not last_end:
                break
        if not last_end:
            raise InvalidResponseError(
                MSG_HTTP_BAD_TRANSFER_ENCODING.format(value=", ".join(codings))
            )
        if chunked:
            if other:  # (gzip, chunked): the body would be gzip's bytes, silently
                raise InvalidResponseError(
                    MSG_HTTP_TRANSFER_CODING.format(value=", ".join(codings))
                )
            framing = "chunked"
            if lengths is not None or version == 10:
                keep_alive = False  # framing the server may not mean: never reuse
        elif lengths is not None:
            raise InvalidResponseError(MSG_HTTP_TE_WITH_LENGTH.format(value=", ".join(codings)))
        else:
            framing = "close"
    elif lengths is not None:
        framing = "length"
        content_length = length
    else:
        framing = "close"
    if framing == "close":
        keep_alive = False
    head = ResponseHead.__new__(ResponseHead)
    head.version = version
    head.status = status
    head.reason = reason
    head._headers = headers
    if headers is None:
        head._raw = raw
        head._spans_at = spans_at
        head._count = count
    head.keep_alive = keep_alive
    head.framing = framing
    head.content_length = content_length
    head.content_encoding = ", ".join(encodings) if encodings is not None else ""
    head.sets_cookies = sets_cookies
    return head


cdef enum:
    # The offsets of this many headers fit on the stack while a head is parsed (more spill to
    # the heap, doubling).
    _LOCAL_HEADERS = 32


cdef ResponseHead _parse_head(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end,
                              str request_method, Py_ssize_t max_headers):
    """Parse one complete head ``buf[start:end]`` (which ends with its blank line).

    The header strings wait until asked for (ResponseHead.headers): the head keeps its bytes
    and each header's offsets in them. An obs-fold line (rare) makes the list at once."""
    cdef Py_ssize_t local[4 * _LOCAL_HEADERS]
    cdef Py_ssize_t* at = local
    cdef Py_ssize_t room = _LOCAL_HEADERS
    try:
        return _parse_head_into(buf, start, end, request_method, max_headers, &at, &room)
    finally:
        if at != local:
            PyMem_Free(at)


cdef ResponseHead _parse_head_into(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end,
                                   str request_method, Py_ssize_t max_headers,
                                   Py_ssize_t** spans, Py_ssize_t* room):
    """_parse_head's steps, the offsets into ``spans[0]`` (room for ``room[0]`` headers; a
    bigger array, when needed, replaces it: the caller frees it)."""
    cdef Py_ssize_t i, n, line, stop, colon, v, w, count = 0, size = end - start, spans_at
    cdef const unsigned char* p
    cdef int version, status
    cdef list headers = None  # made at the first obs-fold line (the list from then on)
    cdef list folds = None  # obs-fold pieces of the last header, joined when it ends
    cdef str reason
    cdef bytes raw
    cdef char* copy
    cdef Py_ssize_t* at = spans[0]
    cdef Py_ssize_t* grown
    # status line
    stop = _line_end(buf, start, end)
    p = buf + start
    for i in range(stop - start):
        if p[i] == 0 or p[i] == b"\r":
            raise InvalidResponseError(
                MSG_HTTP_BAD_CHAR.format(char=chr(p[i]), line=_show(p, stop - start))
            )
    # HTTP/1.<digit>, then status and reason split by runs of SP/HT (RFC 9112 4 lets a
    # recipient parse on whitespace, as http.client does); the reason without SP/HT around it.
    n = stop - start
    i = 8
    while i < n and _is_ows(p[i]):
        i += 1
    if (
        i == 8
        or n < i + 3
        or memcmp(p, b"HTTP/1.", 7) != 0
        or not _digit(p[7])
        or not (0x31 <= p[i] <= 0x39)
        or not _digit(p[i + 1])
        or not _digit(p[i + 2])
        or (n > i + 3 and not _is_ows(p[i + 3]))
    ):
        raise InvalidResponseError(MSG_HTTP_BAD_STATUS_LINE.format(line=_show(p, n)))
    version = 10 if p[7] == b"0" else 11  # another 1.x minor version reads as 1.1
    status = (p[i] - 0x30) * 100 + (p[i + 1] - 0x30) * 10 + (p[i + 2] - 0x30)
    reason = _latin1_trimmed(p, i + 3, n)
    # header lines, up to the blank line
    line = _next_line(buf, start, end)
    while True:
        stop = _line_end(buf, line, end)
        if stop == line:
            break
        p = buf + line
        for i in range(stop - line):
            if _IS_BAD_IN_HEADER[p[i]]:
                raise InvalidResponseError(
                    MSG_HTTP_BAD_CHAR.format(char=chr(p[i]), line=_show(p, stop - line))
                )
        if p[0] == b" " or p[0] == b"\t":  # obs-fold
            if headers is None:
                if not count:
                    raise InvalidResponseError(
                        MSG_HTTP_BAD_HEADER_LINE.format(line=_show(p, stop - line))
                    )
                headers = _pairs_of(buf + start, at, count)  # the list from here on
            folded = _latin1(p, stop - line).strip(" \t")
            if folded:
                if folds is None:
                    folds = []
                folds.append(folded)
        else:
            if folds is not None:
                _join_folds(headers, folds)
                folds = None
            colon = 0
            while colon < stop - line and p[colon] != b":":
                colon += 1
            if colon == 0 or colon == stop - line:
                raise InvalidResponseError(
                    MSG_HTTP_BAD_HEADER_LINE.format(line=_show(p, stop - line))
                )
            if _is_ows(p[colon - 1]):
                raise InvalidResponseError(
                    MSG_HTTP_HEADER_NAME_SPACE.format(line=_show(p, stop - line))
                )
            if not _token(p, colon):
                raise InvalidResponseError(
                    MSG_HTTP_BAD_HEADER_LINE.format(line=_show(p, stop - line))
                )
            if (count if headers is None else len(headers)) == max_headers:
                raise ResponseHeadTooLarge(MSG_HTTP_TOO_MANY_HEADERS.format(limit=max_headers))
            v = colon + 1
            w = stop - line
            _trim_ows(p, &v, &w)  # the value
            if headers is not None:
                headers.append((_latin1(p, colon), _latin1(p + v, w - v)))
            else:
                if count == room[0]:
                    # (at most max_headers, each a line of the head: bounded by both)
                    grown = <Py_ssize_t*>PyMem_Realloc(
                        NULL if room[0] == _LOCAL_HEADERS else at, 8 * room[0] * sizeof(Py_ssize_t)
                    )
                    if grown == NULL:
                        raise MemoryError()
                    if room[0] == _LOCAL_HEADERS:
                        memcpy(grown, at, 4 * count * sizeof(Py_ssize_t))
                    at = spans[0] = grown
                    room[0] *= 2
                at[4 * count] = line - start
                at[4 * count + 1] = line - start + colon
                at[4 * count + 2] = line - start + v
                at[4 * count + 3] = line - start + w
                count += 1
        line = _next_line(buf, stop, end)
    if folds is not None:
        _join_folds(headers, folds)
    if headers is not None:
        return _frame(version, status, reason, headers, None, 0, 0, request_method)
    # one object: the head's bytes, then the offsets (aligned for Py_ssize_t)
    raw = PyBytes_FromStringAndSize(
        NULL, size + <Py_ssize_t>sizeof(Py_ssize_t) * (1 + 4 * count)
    )
    copy = PyBytes_AS_STRING(raw)
    memcpy(copy, buf + start, size)
    spans_at = size
    while (<size_t>(copy + spans_at)) % sizeof(Py_ssize_t):
        spans_at += 1
    # (the padding and the spare word after the offsets: no stray bytes)
    memset(copy + size, 0, sizeof(Py_ssize_t) * (1 + 4 * count))
    memcpy(copy + spans_at, at, 4 * count * sizeof(Py_ssize_t))
    return _frame(version, status, reason, None, raw, spans_at, count, request_method)


cdef _join_folds(list headers, list folds):
    """Join the obs-fold pieces onto the last header, one SP between non-empty parts: once,
    not a string concatenation per fold line (quadratic in a hostile head of fold lines)."""
    name, value = headers[-1]
    headers[-1] = (name, " ".join([value] + folds) if value else " ".join(folds))


cdef int _check_lines(const unsigned char* buf, Py_ssize_t start, Py_ssize_t stop,
                      bint complete, Py_ssize_t max_line, object max_line_obj) except -1:
    """Raise when a line of ``buf[start:stop]`` (with its LF) is longer than ``max_line``;
    the last piece counts too when the head is not ``complete`` (it can only grow)."""
    cdef const unsigned char* lf
    cdef Py_ssize_t line = start, end
    if stop - start <= max_line:
        return 0
    while True:
        lf = <const unsigned char*>memchr(buf + line, b"\n", stop - line)
        end = stop if lf == NULL else lf - buf + 1
        if end - line > max_line and (lf != NULL or not complete):
            raise ResponseHeadTooLarge(MSG_HTTP_LINE_TOO_LONG.format(limit=max_line_obj))
        if lf == NULL:
            return 0
        line = end


def parse_response_head(data, request_method="GET", max_head_bytes=MAX_HEAD_BYTES,
                        max_headers=MAX_HEADERS, max_line_bytes=MAX_LINE_BYTES):
    """Parse the response head at the start of ``data``; None if it is not complete yet.

    Returns ``(head, consumed)``: ``consumed`` counts the bytes up to and including the head's
    blank line. 1xx interim responses (but 101) are skipped, their bytes counted in
    ``consumed``. ``request_method`` (default ``"GET"``) matters for HEAD and CONNECT.
    Raises :class:`~fastpool.exceptions.ResponseHeadTooLarge` when the heads do not end within
    ``max_head_bytes`` (default 1048576) bytes, a line (with its line ending) is longer than
    ``max_line_bytes`` (default 65536) or a head has more than ``max_headers`` (default 100)
    header lines, and :class:`~fastpool.exceptions.InvalidResponseError` for a malformed head.
    """
    return parse_head_of(data, request_method, max_head_bytes, max_headers, max_line_bytes)


cdef object parse_head_of(data, request_method, max_head_bytes, max_headers, max_line_bytes):
    """parse_response_head, for the other cores to call without a Python call."""
    cdef Py_buffer view
    cdef const unsigned char* buf
    cdef Py_ssize_t size, stop, start, end, seen, limit, header_limit, line_limit, interim = 0
    cdef ResponseHead head
    _check_limit("max_head_bytes", max_head_bytes)
    _check_limit("max_headers", max_headers)
    _check_limit("max_line_bytes", max_line_bytes)
    if not isinstance(request_method, str):
        raise TypeError(
            MSG_NOT_STR.format(name="request_method", type=type(request_method).__name__)
        )
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(MSG_HTTP_NOT_BUFFER.format(name="data", type=type(data).__name__))
    limit = _clamp(max_head_bytes)
    header_limit = _clamp(max_headers)
    line_limit = _clamp(max_line_bytes)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        buf = <const unsigned char*>view.buf
        size = view.len
        stop = size if size < limit else limit
        start = 0
        while True:
            # Fail fast on what cannot become a status line (HTTP/0.9, another protocol).
            seen = stop - start if stop - start < 7 else 7
            if memcmp(buf + start, b"HTTP/1.", seen) != 0:
                raise InvalidResponseError(MSG_HTTP_BAD_STATUS_LINE.format(
                    line=_show(buf + start, _line_end(buf, start, stop) - start)
                ))
            end = _find_head_end(buf, start, stop)
            if end < 0:
                _check_lines(buf, start, stop, False, line_limit, max_line_bytes)
                if size >= limit:
                    raise ResponseHeadTooLarge(MSG_HTTP_HEAD_TOO_LARGE.format(limit=max_head_bytes))
                return None
            _check_lines(buf, start, end, True, line_limit, max_line_bytes)
            head = _parse_head(buf, start, end, request_method, header_limit)
            if head.status >= 200 or head.status == 101:
                return head, end
            interim += 1
            if interim > MAX_INTERIM_RESPONSES:
                raise ResponseHeadTooLarge(
                    MSG_HTTP_TOO_MANY_INTERIM.format(limit=MAX_INTERIM_RESPONSES)
                )
            start = end
    finally:
        PyBuffer_Release(&view)


# --- chunked body ------------------------------------------------------------------------------

cdef enum:
    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE


cdef class ChunkedDecoder:
    """Decode a ``Transfer-Encoding: chunked`` body fed in pieces of any size.

    :meth:`feed` returns the body bytes found in each piece. ``done`` turns True after the
    last chunk and the trailers' blank line; ``trailers`` holds the trailer fields as
    ``(name, value)`` str pairs; ``unused`` the bytes fed after the end. Chunk extensions are
    ignored. A chunk-size line may be at most ``max_line_bytes`` (default 65536) bytes, the
    trailer section at most ``max_trailer_bytes`` (default 65536) bytes; beyond that, and for a
    malformed size, a missing CRLF after chunk data or a bad trailer line,
    :class:`~fastpool.exceptions.InvalidChunkError` is raised.

    :meth:`feed_chunk` decodes one piece of one chunk at a time instead (the pieces urllib3's
    ``read_chunked`` yields); the input after that piece is held back (``held``) and decoded
    first by the next call of either method.
    """

    cdef object _max_line_obj
    cdef object _max_trailer_obj
    cdef Py_ssize_t _max_line
    cdef Py_ssize_t _max_trailer
    cdef int _state
    cdef long long _remaining  # body bytes left in this chunk, or CRLF bytes left after it
    cdef bytes _partial  # an incomplete size or trailer line
    cdef Py_ssize_t _trailer_bytes
    cdef list _trailers
    cdef bytes _unused
    cdef bytes _line_out  # the line _line() took last
    cdef bytes _held  # input feed_chunk() stopped before, from _held_pos on
    cdef Py_ssize_t _held_pos

    def __init__(self, max_line_bytes=65536, max_trailer_bytes=65536):
        self._max_line_obj = _check_limit("max_line_bytes", max_line_bytes)
        self._max_trailer_obj = _check_limit("max_trailer_bytes", max_trailer_bytes)
        self._max_line = _clamp(max_line_bytes)
        self._max_trailer = _clamp(max_trailer_bytes)
        self._state = _SIZE
        self._remaining = 0
        self._partial = b""
        self._trailer_bytes = 0
        self._trailers = []
        self._unused = b""
        self._held = b""
        self._held_pos = 0

    @property
    def done(self):
        """True once the last chunk and the trailer section have been read."""
        return self._state == _DONE

    @property
    def trailers(self):
        """The trailer fields, ``(name, value)`` str pairs in order."""
        return self._trailers

    @property
    def unused(self):
        """Bytes fed after the end of the body (the next response, or garbage)."""
        return self._unused

    @property
    def chunk_left(self):
        """Body bytes of the current chunk still to come; 0 between chunks (after a chunk's
        data, before the next chunk's data begins)."""
        return self._remaining if self._state == _DATA else 0

    @property
    def crlf_left(self):
        """Bytes of the CRLF after the current chunk's data still to come (2 or 1), else 0."""
        return self._remaining if self._state == _DATA_END else 0

    @property
    def held(self):
        """How many input bytes :meth:`feed_chunk` held back (not decoded yet)."""
        return len(self._held) - self._held_pos

    cdef Py_ssize_t _line(self, const unsigned char* data, Py_ssize_t pos, Py_ssize_t size,
                          Py_ssize_t limit, object too_long) except -2:
        """Take one CRLF line from ``data[pos:size]`` (joined with a held partial one).

        Sets ``self._line_out`` (without CRLF) and returns the next pos, or -1 if the line is not
        complete. ``limit`` bounds the line with its CRLF.
        """
        cdef Py_ssize_t held = len(self._partial)
        cdef Py_ssize_t window = limit - held
        cdef const unsigned char* lf
        cdef const unsigned char* p
        cdef Py_ssize_t n, i
        if window > size - pos:
            window = size - pos
        lf = <const unsigned char*>memchr(data + pos, b"\n", window) if window > 0 else NULL
        if lf == NULL:
            if held + size - pos >= limit:
                raise InvalidChunkError(too_long.format(limit=(
                    self._max_line_obj if self._state == _SIZE else self._max_trailer_obj
                )))
            self._partial += PyBytes_FromStringAndSize(<const char*>data + pos, size - pos)
            return -1
        whole = PyBytes_FromStringAndSize(<const char*>data + pos, lf - (data + pos))
        if held:
            whole = self._partial + whole
            self._partial = b""
        p = <const unsigned char*>PyBytes_AS_STRING(whole)
        n = len(whole)
        ok = n > 0 and p[n - 1] == b"\r"
        if ok:
            for i in range(n - 1):
                if p[i] == b"\r":
                    ok = False
                    break
        if not ok:
            raise InvalidChunkError(
                (MSG_HTTP_BAD_CHUNK_SIZE if self._state == _SIZE else MSG_HTTP_BAD_TRAILER).format(
                    line=whole[:_SHOW]
                )
            )
        self._line_out = whole[:n - 1]
        return lf - data + 1

    cdef unsigned long long _chunk_size(self, bytes line) except? 0:
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(line)
        cdef Py_ssize_t n = len(line), i = 0, j, k
        cdef unsigned long long size = 0
        while i < n and p[i] == b"0":
            i += 1
        j = i
        while j < n and _HEX_VALUE[p[j]] >= 0:
            if j - i < 16:
                size = size * 16 + _HEX_VALUE[p[j]]
            j += 1
        k = j
        while k < n and (p[k] == b" " or p[k] == b"\t"):  # BWS before an extension
            k += 1
        if j == 0 or j - i > 16 or (k < n and p[k] != b";") or size > _MAX_SIZE:
            raise InvalidChunkError(MSG_HTTP_BAD_CHUNK_SIZE.format(line=line[:_SHOW]))
        return size

    cdef int _trailer(self, bytes line) except -1:
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(line)
        cdef Py_ssize_t n = len(line), colon = 0, i
        while colon < n and p[colon] != b":":
            colon += 1
        ok = 0 < colon < n and _token(p, colon)
        if ok:
            for i in range(n):
                if _IS_BAD_IN_HEADER[p[i]]:
                    ok = False
                    break
        if not ok:
            raise InvalidChunkError(MSG_HTTP_BAD_TRAILER.format(line=line[:_SHOW]))
        value = _latin1_trimmed(p, colon + 1, n)
        if _lower_equals(p, colon, b"content-length", 14):
            # a bad one, or one that conflicts with an earlier one, is an error here too (both
            # oracles agree)
            values = [tv for tn, tv in self._trailers if tn.lower() == "content-length"]
            values.append(value)
            try:
                _content_length(values)
            except InvalidResponseError:
                raise InvalidChunkError(MSG_HTTP_BAD_TRAILER.format(line=line[:_SHOW])) from None
        self._trailers.append((_latin1(p, colon), value))
        return 0

    cdef Py_ssize_t _step(self, const unsigned char* buf, Py_ssize_t pos,
                          Py_ssize_t size) except -2:
        """One step through the framing at ``buf[pos:size]`` (a size line, the CRLF after
        chunk data, a trailer line); returns the next pos, or -1 if the input ends inside a
        line (held in ``_partial``). At the end of the body the rest becomes ``unused``."""
        cdef unsigned long long chunk
        cdef Py_ssize_t start
        cdef bytes line
        if self._state == _SIZE:
            pos = self._line(buf, pos, size, self._max_line, MSG_HTTP_CHUNK_LINE_TOO_LONG)
            if pos < 0:
                return pos
            chunk = self._chunk_size(self._line_out)
            if chunk:
                self._state = _DATA
                self._remaining = chunk
            else:
                self._state = _TRAILER
        elif self._state == _DATA_END:
            if buf[pos] != (0x0D if self._remaining == 2 else 0x0A):  # CR, then LF
                raise InvalidChunkError(MSG_HTTP_CHUNK_NO_CRLF.format(
                    got=PyBytes_FromStringAndSize(<const char*>buf + pos, 1)
                ))
            pos += 1
            self._remaining -= 1
            if self._remaining == 0:
                self._state = _SIZE
        else:  # _TRAILER
            start = pos - len(self._partial)
            pos = self._line(buf, pos, size, self._max_trailer - self._trailer_bytes,
                             MSG_HTTP_TRAILERS_TOO_LARGE)
            if pos < 0:
                return pos
            line = self._line_out
            self._trailer_bytes += pos - start
            if not line:
                self._state = _DONE
                self._unused = PyBytes_FromStringAndSize(<const char*>buf + pos, size - pos)
                return size
            self._trailer(line)
        return pos

    def feed(self, data):
        """Decode the next piece of the body; return the body bytes it holds (maybe ``b""``)."""
        cdef Py_buffer view
        cdef const unsigned char* buf
        cdef Py_ssize_t pos = 0, size, take
        cdef list out = None
        cdef bytes piece = b""
        cdef int pieces = 0
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(MSG_HTTP_NOT_BUFFER.format(name="data", type=type(data).__name__))
        if len(self._held):  # left by feed_chunk(): it comes first
            data = self._held[self._held_pos:] + bytes(data)
            self._held = b""
            self._held_pos = 0
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            buf = <const unsigned char*>view.buf
            size = view.len
            if self._state == _DONE:
                self._unused += PyBytes_FromStringAndSize(<const char*>buf, size)
                return b""
            while pos < size:
                if self._state == _DATA:
                    take = size - pos
                    if self._remaining < take:
                        take = <Py_ssize_t>self._remaining
                    if pieces == 1:
                        out = [piece]
                    piece = PyBytes_FromStringAndSize(<const char*>buf + pos, take)
                    if pieces >= 1:
                        out.append(piece)
                    pieces += 1
                    pos += take
                    self._remaining -= take
                    if self._remaining == 0:
                        self._state = _DATA_END
                        self._remaining = 2
                else:
                    pos = self._step(buf, pos, size)
                    if pos < 0:
                        break
        finally:
            PyBuffer_Release(&view)
        if pieces > 1:
            return b"".join(out)
        return piece

    def feed_chunk(self, data=b"", limit=-1):
        """Decode the body up to the end of the current chunk, or ``limit`` bytes of it (-1: no
        bound), whichever comes first; return them (``b""`` if the input, held back and
        ``data``, ends before any body byte, or the body ends).

        The pieces of urllib3's ``read_chunked``: one chunk, or ``limit`` bytes of one, a piece.
        The input after the piece is held back for the next call of this or :meth:`feed`.
        A piece shorter than ``limit`` with ``chunk_left`` above 0 ends where the input did: the
        rest of its chunk is still to come.
        """
        cdef Py_buffer view
        cdef const unsigned char* buf
        cdef Py_ssize_t pos = 0, size, take
        cdef bytes piece = b""
        cdef long long bound = -1
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(MSG_HTTP_NOT_BUFFER.format(name="data", type=type(data).__name__))
        # Any int, as the pure twin takes it: one past the largest chunk (MAX_SIZE) bounds
        # nothing, and any negative one means no bound.
        if 0 <= limit <= MAX_SIZE:
            bound = limit
        if len(self._held):
            pos = self._held_pos
            data = self._held + bytes(data) if len(data) else self._held
            self._held = b""
            self._held_pos = 0
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            buf = <const unsigned char*>view.buf
            size = view.len
            if self._state == _DONE:
                self._unused += PyBytes_FromStringAndSize(<const char*>buf + pos, size - pos)
                return b""
            while pos < size:
                if self._state == _DATA:
                    take = size - pos
                    if self._remaining < take:
                        take = <Py_ssize_t>self._remaining
                    if 0 <= bound < take:
                        take = <Py_ssize_t>bound
                    piece = PyBytes_FromStringAndSize(<const char*>buf + pos, take)
                    pos += take
                    self._remaining -= take
                    if self._remaining == 0:
                        self._state = _DATA_END
                        self._remaining = 2
                    break  # one piece of one chunk a call
                pos = self._step(buf, pos, size)
                if pos < 0:
                    return b""
        finally:
            PyBuffer_Release(&view)
        if pos < size:
            self._held = data if type(data) is bytes else bytes(data)
            self._held_pos = pos
        return piece
