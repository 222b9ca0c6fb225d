# cython: language_level=3
"""What the compiled lane (``_lane_c``) reads of the loop without a Python call or
attribute lookup: an exchange's fields, and the stock-TLS check. Needed to build the cores
only."""


cdef class Exchange:
    cdef public object conn
    cdef public object method
    cdef public object data
    cdef public object read_timeout
    cdef public object read_timeout_of  # callable: asked at each send (see the twin)
    cdef public bint read_body
    cdef public object dial
    cdef public bint direct
    cdef public bint replay
    cdef public object replayed
    cdef public object retries
    cdef public object tag
    cdef public Py_ssize_t sent
    cdef public object buf
    cdef public int state
    cdef public object error
    cdef public object expires
    cdef public double armed  # its live timer entry's time (0.0: none), as the twin's
    cdef public object decoder
    cdef public Py_ssize_t remaining
    cdef public bint cancelled
    cdef public object future
    cdef public Py_ssize_t line_start
    cdef public object head
    cdef public Py_ssize_t head_size
    cdef public object caller
    cdef public bint dialing
    cdef public int fd
    cdef public int events
    cdef public double started
    cdef public double head_at  # when the answer's head was parsed (0.0: not yet)

    cdef _set(
        self, conn, method, data, read_timeout, bint read_body, dial, bint replay, bint direct, tag
    )


cdef object _stock_tls(sock)
