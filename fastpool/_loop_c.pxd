# cython: language_level=3
"""What the compiled lane (``_lane_c``) reads of the loop without a Python call or
attribute lookup: an exchange's fields, the stock-TLS check, and the helpers that read a
connection's and a pool's state at C speed. Needed to build the cores only."""

from cpython.object cimport PyObject, PyTypeObject


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


cdef extern from *:
    """
    #include "structmember.h"

    /* The type's version tag while it is valid, else 0. CPython gives a type a new tag (0
       until asked again) whenever it or a base changes: an attribute set or deleted on the
       class, __bases__ assigned. From 3.11 a tag is never given twice; CPython 3.9 and 3.10
       start counting again at sys._clear_type_cache(), so there every tag reads as 0 and
       nothing is kept with one. */
    static inline unsigned int fastpool_valid_tag(PyTypeObject *t) {
    #if PY_VERSION_HEX < 0x030B0000
        (void)t;
        return 0;
    #else
    #if PY_VERSION_HEX < 0x030C0000
        if (!PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG)) return 0;
    #endif
        return t->tp_version_tag;
    #endif
    }

    /* The offset of the object slot that descriptor d (found on type t's MRO) reads and
       writes: a __slots__ member of t or a base, writable. -1: d is anything else. */
    static inline Py_ssize_t fastpool_slot_offset(PyObject *d, PyTypeObject *t) {
        PyMemberDef *m;
        if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type) return -1;
        if (!PyType_IsSubtype(t, ((PyDescrObject *)d)->d_type)) return -1;
        m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) return -1;
        return m->offset;
    }

    /* The slot's value (borrowed; NULL: unset). */
    static inline PyObject *fastpool_slot_get(PyObject *o, Py_ssize_t offset) {
        return *(PyObject **)((char *)o + offset);
    }

    /* The member descriptor's own store: the new value in, the old one released after. */
    static inline void fastpool_slot_set(PyObject *o, Py_ssize_t offset, PyObject *v) {
        PyObject **p = (PyObject **)((char *)o + offset);
        PyObject *old = *p;
        Py_INCREF(v);
        *p = v;
        Py_XDECREF(old);
    }

    static inline int fastpool_generic_getattr(PyObject *o) {
        return Py_TYPE(o)->tp_getattro == PyObject_GenericGetAttr;
    }

    static inline int fastpool_generic_setattr(PyObject *o) {
        return Py_TYPE(o)->tp_setattro == PyObject_GenericSetAttr;
    }
    """
    unsigned int fastpool_valid_tag(PyTypeObject *t)
    Py_ssize_t fastpool_slot_offset(PyObject *d, PyTypeObject *t)
    PyObject *fastpool_slot_get(PyObject *o, Py_ssize_t offset)
    void fastpool_slot_set(PyObject *o, Py_ssize_t offset, PyObject *v)
    bint _plain_setattr "fastpool_generic_setattr"(object o)
    bint _plain_getattr "fastpool_generic_getattr"(object o)


# The per-request state of connections and pools, read and written at C speed where their
# class allows it (see _loop_c.pyx): the names by index, then the accessors.
cdef enum:
    C_SOCK, C_REST, C_SENT_AHEAD, C_REQUEST_STARTED, C_HEAD_STARTED, C_LOOP_QUEUE, C_REUSABLE
    C_REQUESTS, C_IDLE_SINCE, C_POLLER, C_TIMEOUT, C_HOST_VALUE, C_KEPT_HEAD, C_SOCK_TIMEOUT
cdef enum:
    P_NUM_REQUESTS, P_POOL, P_LIMITER, P_KEPT_WATCH, P_TRACE_NOW, P_LOG, P_PROXY, P_CHECK_CONN
    P_LAST_TIMEOUT, P_TIMEOUT, P_LAST_NUMBER

cdef object conn_slot(conn, int i)
cdef int set_conn_slot(conn, int i, value) except -1
cdef object pool_slot(pool, int i)
cdef int set_pool_slot(pool, int i, value) except -1
