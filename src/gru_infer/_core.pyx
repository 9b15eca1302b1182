# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin Cython layer over the C core (src_c/gru.h).

Fills the core's BLAS table from scipy.linalg.cython_blas, packs weights in C
into opaque buffers (repacking when the kernel set changed), checks every
array it hands to C, and releases the GIL.  Friendly argument checking lives
in layers.py; the checks here guard memory.
"""

import os
import warnings

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

import numpy as np

cnp.import_array()

cdef extern from "gru.h" nogil:
    ctypedef enum gru_dtype:
        GRU_FLOAT32
        GRU_FLOAT64
    ctypedef enum gru_precision:
        GRU_PRECISION_NATIVE
        GRU_PRECISION_BF16
        GRU_PRECISION_INT8
    ctypedef int gru_activation
    enum:
        GRU_OK
        GRU_ERR_NOMEM
        GRU_ERR_NO_BLAS
        GRU_ERR_STALE_PACK
        GRU_ERR_BAD_ARG
        GRU_ACT_LINEAR
        GRU_ACT_SOFTMAX
    ctypedef void (*gru_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *,
                                  int *, float *, int *, float *, float *, int *)
    ctypedef void (*gru_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *,
                                  int *, double *, int *, double *, double *, int *)

    int gru_activation_by_name(const char *name)
    const char *gru_error_text(int code)
    int gru_isa_count()
    const char *gru_isa_name(int i)
    int gru_isa_supported(int i)
    const char *gru_isa_current()
    int gru_isa_select(const char *name)
    void gru_set_max_threads(int n)
    int gru_max_threads()
    int gru_has_openmp()

    ctypedef struct gru_layer_desc:
        gru_dtype dtype
        gru_precision precision
        int input_size, hidden_size, num_directions, linear_before_reset
        gru_activation gate_act, cand_act
        int reverse[2]
    size_t gru_layer_packed_bytes(const gru_layer_desc *desc)
    int gru_layer_pack(const gru_layer_desc *desc, const void **W, const void **R,
                       const void **B, void *packed, size_t packed_bytes)
    ctypedef struct gru_io:
        int batch, steps
        const void *x
        const void *h0
        const int64_t *lengths
        const uint8_t *mask
        void *y
        void *h_n
    size_t gru_layer_workspace_bytes(const void *packed, int batch, int steps, int num_threads)
    int gru_layer_forward(const void *packed, const gru_io *io, void *workspace, int num_threads)

    ctypedef struct gru_dense_desc:
        gru_dtype dtype
        gru_precision precision
        int in_features, out_features
        gru_activation act
    size_t gru_dense_packed_bytes(const gru_dense_desc *desc)
    int gru_dense_pack(const gru_dense_desc *desc, const void *kernel, const void *bias,
                       void *packed, size_t packed_bytes)
    int gru_dense_forward(const void *packed, long rows, const void *x, void *y, int num_threads)
    int gru_activation_apply(gru_dtype dtype, gru_activation act, void *values, long rows,
                             long cols)
    void gru_set_blas(gru_sgemm_fn sgemm, gru_dgemm_fn dgemm)
    void gru_set_projection_path(int path)

gru_set_blas(<gru_sgemm_fn>sgemm, <gru_dgemm_fn>dgemm)

ACTIVATION_CODES = {
    name: gru_activation_by_name(name.encode())
    for name in ("sigmoid", "hard_sigmoid_keras2", "hard_sigmoid_keras3", "tanh", "relu",
                 "linear", "softsign", "softmax", "log_softmax")
}
ROW_WISE = ("softmax", "log_softmax")


# ---- kernel sets, threads -----------------------------------------------------------

def isa_list():
    """[(name, supported)] for every kernel set in this build, best first."""
    return [(gru_isa_name(i).decode(), bool(gru_isa_supported(i))) for i in range(gru_isa_count())]


def isa_current():
    """The kernel set in use (chosen from the CPU, or GRU_INFER_ISA, or isa_select)."""
    return gru_isa_current().decode()


def isa_select(name):
    """Use kernel set `name` (or "auto": the best this CPU runs) from now on, process-wide.
    Layers pack their weights again on their next call."""
    status = gru_isa_select(name.encode())
    if status == -1:
        raise ValueError(f"unknown kernel set {name!r}; this build has "
                         f"{[n for n, _ in isa_list()]}")
    if status == -2:
        raise ValueError(f"kernel set {name!r} does not run on this CPU; it runs "
                         f"{[n for n, ok in isa_list() if ok]}")


def has_openmp():
    return bool(gru_has_openmp())


def max_threads():
    """The most threads the core uses when a call leaves the choice to it."""
    return gru_max_threads()


def set_max_threads(n):
    gru_set_max_threads(0 if n is None else n)


_env_isa = os.environ.get("GRU_INFER_ISA")
if _env_isa and _env_isa != isa_current():
    warnings.warn(f"GRU_INFER_ISA={_env_isa!r} is not a kernel set this CPU runs; "
                  f"using {isa_current()!r}", RuntimeWarning)


def set_projection_path(str path):
    """How the generic kernel set computes many-row products: "auto", "blas" or
    "kernel" (tests, measurements).  Process-wide."""
    gru_set_projection_path({"auto": 0, "blas": 1, "kernel": 2, "packed": 2}[path])


# ---- helpers ------------------------------------------------------------------------

cdef int threads_arg(object n) except -1:
    """None (the core chooses) -> 0; else the caller's exact count."""
    if n is None:
        return 0
    if n < 0:
        raise ValueError(f"num_threads must be positive, got {n}")
    return n


cdef object check_status(int status):
    if status == GRU_ERR_NOMEM:
        raise MemoryError("gru_infer: out of memory for the layer's workspace")
    if status != GRU_OK:
        raise RuntimeError(f"gru_infer core failed: {gru_error_text(status).decode()} "
                           f"(status {status})")


cdef const void *checked_data(cnp.ndarray a, object dtype, tuple shape, str name) except NULL:
    """Pointer to a's data after proving it is what C will read."""
    cdef object actual_shape = (<object>a).shape
    if a.dtype != dtype or not cnp.PyArray_IS_C_CONTIGUOUS(a) or actual_shape != shape:
        raise ValueError(
            f"internal: {name} must be a C-contiguous {np.dtype(dtype)} array of shape "
            f"{shape}, got {a.dtype} {actual_shape}"
        )
    if a.size == 0:
        return <const void *>1  # never read: C returns before touching empty data
    return cnp.PyArray_DATA(a)


cdef object aligned_bytes(size_t n):
    """A uint8 array of n bytes whose data starts on a 64-byte boundary."""
    buffer = np.empty(n + 64, np.uint8)
    offset = (-buffer.ctypes.data) % 64
    return buffer[offset:offset + n]


cdef gru_dtype dtype_code(object dtype) except *:
    if dtype == np.float32:
        return GRU_FLOAT32
    if dtype == np.float64:
        return GRU_FLOAT64
    raise TypeError(f"weights must be float32 or float64, got {dtype}")


def apply_activation(str name, cnp.ndarray values):
    """The core's own activation of a float32/float64 array (a copy): for tests."""
    cdef cnp.ndarray out = np.array(values, order="C", copy=True)
    activate_inplace(name, out)
    return out


def activate_inplace(str name, cnp.ndarray values):
    """Apply an activation in place to a C-contiguous float32/float64 array
    (softmax / log_softmax over the last axis)."""
    if values.dtype not in (np.float32, np.float64) or not cnp.PyArray_IS_C_CONTIGUOUS(values):
        raise TypeError("values must be a C-contiguous float32 or float64 array")
    if values.size == 0:
        return
    cdef long cols = values.shape[values.ndim - 1] if values.ndim else 1
    cdef long rows = values.size // cols
    check_status(gru_activation_apply(dtype_code(values.dtype), ACTIVATION_CODES[name],
                                      cnp.PyArray_DATA(values), rows, cols))


def softmax_inplace(cnp.ndarray values):
    """Softmax over the last axis, in place (a streamed step's head)."""
    activate_inplace("softmax", values)


# ---- GRU ------------------------------------------------------------------------------

cdef class GRUCore:
    """One GRU layer packed for the core from its canonical weights
    W (D, 3H, I), R (D, 3H, H), B (D, 6H) or None."""

    cdef gru_layer_desc desc
    cdef object dtype
    cdef object packed
    cdef object isa
    cdef tuple _canonical

    def __init__(self, object dtype, int input_size, int hidden_size, list reverse,
                 bint linear_before_reset, str gate_act, str cand_act,
                 cnp.ndarray W, cnp.ndarray R, object B):
        cdef int D = len(reverse), H = hidden_size
        self.dtype = np.dtype(dtype)
        if not 1 <= D <= 2:
            raise ValueError("a layer has one or two directions")
        self.desc.dtype = dtype_code(self.dtype)
        self.desc.precision = GRU_PRECISION_NATIVE
        self.desc.input_size = input_size
        self.desc.hidden_size = hidden_size
        self.desc.num_directions = D
        self.desc.linear_before_reset = linear_before_reset
        self.desc.gate_act = ACTIVATION_CODES[gate_act]
        self.desc.cand_act = ACTIVATION_CODES[cand_act]
        self.desc.reverse[0] = bool(reverse[0])
        self.desc.reverse[1] = bool(reverse[1]) if D == 2 else 0
        checked_data(W, self.dtype, (D, 3 * H, input_size), "W")
        checked_data(R, self.dtype, (D, 3 * H, H), "R")
        if B is not None:
            checked_data(B, self.dtype, (D, 6 * H), "B")
        self._canonical = (W, R, B)
        self.pack()

    def pack(self):
        """(Re)pack the canonical weights for the current kernel set."""
        cdef const void *w[2]
        cdef const void *r[2]
        cdef const void *b[2]
        cdef int d, D = self.desc.num_directions
        cdef cnp.ndarray buffer
        W, R, B = self._canonical
        for d in range(D):
            w[d] = cnp.PyArray_DATA(W[d])
            r[d] = cnp.PyArray_DATA(R[d])
            b[d] = NULL if B is None else cnp.PyArray_DATA(B[d])
        cdef size_t nbytes = gru_layer_packed_bytes(&self.desc)
        if nbytes == 0:
            raise ValueError("the core cannot pack this layer (unsupported shape or precision)")
        buffer = aligned_bytes(nbytes)
        check_status(gru_layer_pack(&self.desc, w, r, b, cnp.PyArray_DATA(buffer), nbytes))
        self.packed = buffer
        self.isa = isa_current()

    cdef const void *fresh(self) except NULL:
        """The packed buffer, packed again first if the kernel set changed."""
        if self.isa != gru_isa_current().decode():
            self.pack()
        return cnp.PyArray_DATA(self.packed)

    def bind(self, cnp.ndarray x, cnp.ndarray h0, cnp.ndarray y, cnp.ndarray h_n,
             cnp.ndarray workspace, object num_threads, object mask=None):
        """A BoundForward: this layer on these buffers, checked once, so a
        streamed step costs one call and no Python-level work.  mask: a
        (batch, steps) uint8 buffer the caller fills before each call, or None."""
        return BoundForward(self, x, h0, y, h_n, workspace, num_threads, mask)

    def workspace_bytes(self, int batch, int steps, object num_threads=None):
        return gru_layer_workspace_bytes(self.fresh(), batch, steps, threads_arg(num_threads))

    def forward(self, cnp.ndarray x, object h0, object lengths, object mask,
                cnp.ndarray y, cnp.ndarray h_n, object workspace, object num_threads):
        """Run the layer; every array already in the layer's dtype and C order.

        h0, lengths (int64), mask (uint8) and workspace (uint8) may be None.
        """
        cdef gru_io io
        cdef int B, T, D = self.desc.num_directions, H = self.desc.hidden_size
        cdef int status, threads = threads_arg(num_threads)
        cdef void *ws = NULL
        cdef const void *packed = self.fresh()
        if x.ndim != 3:
            raise ValueError("internal: x must be 3-D")
        B = x.shape[0]
        T = x.shape[1]
        io.batch = B
        io.steps = T
        io.x = checked_data(x, self.dtype, (B, T, self.desc.input_size), "x")
        io.y = <void *>checked_data(y, self.dtype, (B, T, D * H), "y")
        io.h_n = <void *>checked_data(h_n, self.dtype, (D, B, H), "h_n")
        io.h0 = NULL
        io.lengths = NULL
        io.mask = NULL
        if h0 is not None:
            io.h0 = checked_data(h0, self.dtype, (D, B, H), "h0")
        if lengths is not None:
            io.lengths = <const int64_t *>checked_data(lengths, np.int64, (B,), "lengths")
        if mask is not None:
            io.mask = <const uint8_t *>checked_data(mask, np.uint8, (B, T), "mask")
        if workspace is not None:
            if workspace.nbytes < gru_layer_workspace_bytes(packed, B, T, threads):
                raise ValueError("internal: workspace too small")
            ws = <void *>checked_data(workspace, np.uint8, workspace.shape, "workspace")
        with nogil:
            status = gru_layer_forward(packed, &io, ws, threads)
        check_status(status)


cdef class BoundForward:
    """gru_layer_forward on fixed buffers (a stream's step): calling it runs
    the layer on whatever the buffers hold now."""

    cdef GRUCore core
    cdef gru_io io
    cdef object workspace
    cdef int num_threads
    cdef tuple _keep_alive

    def __init__(self, GRUCore core, cnp.ndarray x, cnp.ndarray h0, cnp.ndarray y,
                 cnp.ndarray h_n, cnp.ndarray workspace, object num_threads, object mask=None):
        cdef int B = x.shape[0], T = x.shape[1]
        cdef int D = core.desc.num_directions, H = core.desc.hidden_size
        self.core = core
        self.io.batch = B
        self.io.steps = T
        self.io.x = checked_data(x, core.dtype, (B, T, core.desc.input_size), "x")
        self.io.h0 = checked_data(h0, core.dtype, (D, B, H), "h0")
        self.io.y = <void *>checked_data(y, core.dtype, (B, T, D * H), "y")
        self.io.h_n = <void *>checked_data(h_n, core.dtype, (D, B, H), "h_n")
        self.io.lengths = NULL
        self.io.mask = NULL
        if mask is not None:
            self.io.mask = <const uint8_t *>checked_data(mask, np.uint8, (B, T), "mask")
        self.num_threads = threads_arg(num_threads)
        checked_data(workspace, np.uint8, (<object>workspace).shape, "workspace")
        self.workspace = workspace
        self._check_workspace()
        self._keep_alive = (x, h0, y, h_n, mask)

    def _check_workspace(self):
        if self.workspace.nbytes < gru_layer_workspace_bytes(
                self.core.fresh(), self.io.batch, self.io.steps, self.num_threads):
            raise RuntimeError("the kernel set changed since this stream was made and its "
                               "workspace no longer fits: make the stream again")

    def __call__(self):
        cdef int status
        cdef const void *packed = cnp.PyArray_DATA(self.core.packed)
        cdef void *ws = cnp.PyArray_DATA(self.workspace)
        with nogil:
            status = gru_layer_forward(packed, &self.io, ws, self.num_threads)
        if status == GRU_ERR_STALE_PACK:
            self._check_workspace()  # packs again
            packed = cnp.PyArray_DATA(self.core.packed)
            with nogil:
                status = gru_layer_forward(packed, &self.io, ws, self.num_threads)
        check_status(status)


# ---- Dense ----------------------------------------------------------------------------

cdef class BoundDense:
    """A Dense layer on fixed buffers (a stream's step): y = act(x @ kernel + bias)
    in one call.  activation: a core activation name (softmax and log_softmax
    included), or None (the caller applies it)."""

    cdef gru_dense_desc desc
    cdef object packed
    cdef object isa
    cdef const void *x
    cdef void *y
    cdef long rows
    cdef int num_threads
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray x, cnp.ndarray kernel, object bias, cnp.ndarray y,
                 object activation, object num_threads=1):
        dtype = kernel.dtype
        if dtype not in (np.float32, np.float64) or kernel.ndim != 2 or 0 in (<object>kernel).shape:
            raise TypeError(f"internal: kernel must be a non-empty 2-D float32/float64 array, "
                            f"got {kernel.dtype} {(<object>kernel).shape}")
        self.desc.dtype = dtype_code(dtype)
        self.desc.precision = GRU_PRECISION_NATIVE
        self.desc.in_features = kernel.shape[0]
        self.desc.out_features = kernel.shape[1]
        self.desc.act = GRU_ACT_LINEAR if activation is None else ACTIVATION_CODES[activation]
        self.rows = y.size // self.desc.out_features
        self.num_threads = threads_arg(num_threads)
        checked_data(kernel, dtype, (self.desc.in_features, self.desc.out_features), "kernel")
        self.x = checked_data(x, dtype, (<object>x).shape, "x")
        self.y = <void *>checked_data(y, dtype, (<object>y).shape, "y")
        if x.size != self.rows * self.desc.in_features:
            raise ValueError("internal: x and y hold different numbers of rows")
        if bias is not None:
            checked_data(bias, dtype, (self.desc.out_features,), "bias")
        self._keep_alive = (x, kernel, bias, y)
        self.pack()

    def pack(self):
        cdef cnp.ndarray kernel = self._keep_alive[1]
        bias = self._keep_alive[2]
        cdef size_t nbytes = gru_dense_packed_bytes(&self.desc)
        if nbytes == 0:
            raise ValueError("the core cannot pack this Dense layer")
        buffer = aligned_bytes(nbytes)
        check_status(gru_dense_pack(&self.desc, cnp.PyArray_DATA(kernel),
                                    NULL if bias is None else cnp.PyArray_DATA(bias),
                                    cnp.PyArray_DATA(buffer), nbytes))
        self.packed = buffer
        self.isa = isa_current()

    def __call__(self):
        cdef int status
        cdef const void *packed = cnp.PyArray_DATA(self.packed)
        with nogil:
            status = gru_dense_forward(packed, self.rows, self.x, self.y, self.num_threads)
        if status == GRU_ERR_STALE_PACK:
            self.pack()
            packed = cnp.PyArray_DATA(self.packed)
            with nogil:
                status = gru_dense_forward(packed, self.rows, self.x, self.y, self.num_threads)
        check_status(status)
