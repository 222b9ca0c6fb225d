# cython: language_level=3
"""What the other compiled cores (``_loop_c``, ``_lane_c``) read of the parser without a
Python call: a parsed head's fields, and the head parse itself. Needed to build them only."""


cdef class ResponseHead:
    cdef readonly int version
    cdef readonly int status
    cdef readonly str reason
    cdef readonly bint keep_alive
    cdef readonly str framing
    cdef readonly object content_length
    cdef readonly str content_encoding
    cdef readonly bint sets_cookies
    # The header list is made when first asked for (a caller that reads only the status and
    # the body never pays for its strings): until then the head's bytes and, per header, the
    # offsets of its name and trimmed value in them.
    cdef list _headers
    cdef bytes _raw  # the head's bytes, then (8-aligned, at _spans_at) four offsets a header
    cdef Py_ssize_t _spans_at
    cdef Py_ssize_t _count


cdef object parse_head_of(data, request_method, max_head_bytes, max_headers, max_line_bytes)
