# cython: language_level=3
"""A map item's job and its politeness key, compiled: the twin of ``_job_py.py``, which
documents them.

The two change together. ``host_of`` reads a plain URL's scheme and authority with a scan of
its characters where the twin asks a regular expression; ``tests/unit/test_job.py`` holds
the two alike, and both to ``urllib.parse.urlsplit``.
"""

cimport cython

from urllib.parse import urlsplit

__all__ = ("ENCODED", "URL_METHODS", "ManagerJob", "PlainJobs", "host_of", "plain_job")

# (see the twin)
cdef frozenset _URL_METHODS = frozenset(("DELETE", "GET", "HEAD", "OPTIONS"))
cdef frozenset _ENCODED = frozenset(
    ("body", "fields", "headers", "json", "encode_multipart", "multipart_boundary")
)
URL_METHODS = _URL_METHODS
ENCODED = _ENCODED

#: authority ("Host:port") -> host name (see the twin); the module's attribute of the same
#: name is this very dict (C reads it here without a lookup): clear it, never rebind it
cdef dict _HOST_OF_AUTHORITY = {}
globals()["_HOST_OF_AUTHORITY"] = _HOST_OF_AUTHORITY
cdef Py_ssize_t _HOST_CACHE_SIZE = 4096
cdef Py_ssize_t _CACHED_AUTHORITY_MAX = 300  # a longer one is parsed each time (see the twin)
globals()["_HOST_CACHE_SIZE"] = _HOST_CACHE_SIZE  # (read-only here: for the tests to see)
globals()["_CACHED_AUTHORITY_MAX"] = _CACHED_AUTHORITY_MAX


cdef inline bint _alpha(Py_UCS4 c):
    return (c >= u"a" and c <= u"z") or (c >= u"A" and c <= u"Z")


cdef inline bint _alnum(Py_UCS4 c):
    return _alpha(c) or (c >= u"0" and c <= u"9")


cdef object _plain_authority(str url):
    """The twin's ``_PLAIN_AUTHORITY.match(url).group(1)`` for an ASCII ``url``, or None: an
    alphanumeric scheme, "://", then an authority with no userinfo, brackets, tabs or
    newlines, up to a "/", "?" or "#" or the end."""
    cdef Py_ssize_t n = len(url), i = 1, start, end
    cdef Py_UCS4 c
    if n == 0 or not _alpha(url[0]):
        return None
    while i < n and _alnum(url[i]):
        i += 1
    if i + 3 > n or url[i] != u":" or url[i + 1] != u"/" or url[i + 2] != u"/":
        return None
    start = end = i + 3
    while end < n:
        c = url[end]
        if c == u"/" or c == u"?" or c == u"#":
            break
        if c == u"@" or c == u"[" or c == u"]" or c == u"\t" or c == u"\r" or c == u"\n":
            return None
        end += 1
    return url[start:end]


cpdef host_of(url):
    """The politeness key: the host name, lower-cased; every port and scheme of a host share
    it. The same as ``urlsplit(url).hostname`` (or ``""``) (see the twin)."""
    cdef str text
    if type(url) is str:
        text = <str>url
        if text.isascii():
            authority = _plain_authority(text)
            if authority is not None:
                host = _HOST_OF_AUTHORITY.get(authority)
                if host is not None:
                    return host
        start = text.find("://")
        if start > 0 and _alpha(text[0]) and text[:start].isalnum() and text.isascii():
            authority = text[start + 3 :]
            for stop in "/?#":
                end = authority.find(stop)
                if end >= 0:
                    authority = authority[:end]
            # without the userinfo, as urlsplit finds the host (see the twin)
            userinfo, _, authority = authority.rpartition("@")
            if not (
                "\t" in authority
                or "\r" in authority
                or "\n" in authority
                or "[" in userinfo
                or "]" in userinfo
            ):
                host = _HOST_OF_AUTHORITY.get(authority)
                if host is None:
                    host = _hostname("//" + authority)
                    if len(authority) <= _CACHED_AUTHORITY_MAX:
                        if len(_HOST_OF_AUTHORITY) >= _HOST_CACHE_SIZE:
                            _HOST_OF_AUTHORITY.clear()
                        _HOST_OF_AUTHORITY[authority] = host
                return host
    return _hostname(url)


cdef object _hostname(url):
    try:
        return urlsplit(url).hostname or ""
    except (ValueError, TypeError, AttributeError):  # not a URL (only these: see the twin)
        return ""


@cython.auto_pickle(False)
@cython.final
@cython.trashcan(True)  # a long chain of jobs is freed without a deep C recursion
cdef class ManagerJob:
    """One item of ``PoolManager.map`` (see the twin)."""

    cdef public object conn, given, host, kw, method, redirect, target, url, whole

    def __init__(self, given, method, url, kw):
        self.given = given
        self.method = method
        self.url = url
        self.redirect = kw.pop("redirect", True)
        self.kw = kw
        self.host = host_of(url)
        self.conn = None
        self.target = url
        self.whole = None


cpdef plain_job(given, headers):
    """The job for an item with nothing to encode, or None (see the twin)."""
    cdef Py_ssize_t size
    cdef dict kwargs
    if type(given) is str:
        return ManagerJob(given, "GET", given, {"headers": headers})
    if type(given) is not tuple:  # (a subclass may index otherwise: the general steps)
        return None
    size = len(<tuple>given)
    if size == 2:
        kwargs = {}
    elif size == 3:
        if type((<tuple>given)[2]) is not dict:
            return None
        kwargs = <dict>(<tuple>given)[2]
    else:
        return None
    method = (<tuple>given)[0]
    url = (<tuple>given)[1]
    if type(method) is not str or type(url) is not str:
        return None
    method = (<str>method).upper()
    if method not in _URL_METHODS or not _ENCODED.isdisjoint(kwargs) or "preload_content" in kwargs:
        return None
    for name in kwargs:
        if type(name) is not str:
            return None
    kw = {"headers": headers}
    kw.update(kwargs)
    return ManagerJob(given, method, url, kw)


@cython.auto_pickle(False)
@cython.final
cdef class PlainJobs:
    """plain_job for one manager's items while its request is fastpool's own (see the twin)."""

    cdef public object manager, own

    def __init__(self, manager, own):
        self.manager = manager
        self.own = own

    def __call__(self, given):
        manager = self.manager
        request = manager.request
        if (
            getattr(request, "__func__", None) is not self.own
            or getattr(request, "__self__", None) is not manager
        ):
            return None
        return plain_job(given, manager.headers)
