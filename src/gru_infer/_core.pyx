# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin Cython layer over the C core.

Fills the core's BLAS table from scipy.linalg.cython_blas (SciPy's own BLAS,
nothing to link), keeps the weight arrays alive for the C structs that point
into them, checks every array it hands to C, and releases the GIL.
Friendly argument checking lives in layers.py; the checks here guard memory.
"""

cimport numpy as cnp
from libc.math cimport exp
from libc.stdint cimport int64_t, uint8_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

import numpy as np

cnp.import_array()

cdef extern from "gru.h" nogil:
    int GRU_PANEL
    ctypedef enum gru_dtype:
        GRU_FLOAT32
        GRU_FLOAT64
    ctypedef int gru_activation
    ctypedef void (*gru_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *,
                                  int *, float *, int *, float *, float *, int *)
    ctypedef void (*gru_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *,
                                  int *, double *, int *, double *, double *, int *)
    ctypedef struct gru_direction:
        const void *W
        const void *R
        const void *W_packed
        const void *R_packed
        const void *bias_x
        const void *bias_hn
        int reverse
    ctypedef struct gru_layer:
        gru_dtype dtype
        int input_size, hidden_size, num_directions, linear_before_reset
        gru_activation gate_act, cand_act
        gru_direction dir[2]
    ctypedef struct gru_io:
        int batch, steps
        const void *x
        const void *h0
        const int64_t *lengths
        const uint8_t *mask
        void *y
        void *h_n
    void gru_set_blas(gru_sgemm_fn sgemm, gru_dgemm_fn dgemm)
    size_t gru_workspace_bytes(const gru_layer *layer, int batch, int steps, int num_threads)
    int gru_forward(const gru_layer *layer, const gru_io *io, void *workspace, int num_threads)
    void gru_set_projection_path(int path)
    int gru_apply_activation(gru_dtype dtype, gru_activation act, void *values, int n)
    int gru_has_openmp()
    const char *gru_kernel_name()

gru_set_blas(<gru_sgemm_fn>sgemm, <gru_dgemm_fn>dgemm)

PANEL = GRU_PANEL
HAS_OPENMP = bool(gru_has_openmp())
KERNEL = gru_kernel_name().decode()
ACTIVATION_CODES = {
    "sigmoid": 0,
    "hard_sigmoid_keras2": 1,
    "hard_sigmoid_keras3": 2,
    "tanh": 3,
    "relu": 4,
    "linear": 5,
    "softsign": 6,
}


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


PROJECTION_PATHS = {"auto": 0, "blas": 1, "packed": 2}


def set_projection_path(str path):
    """How input projections are computed: "auto", "blas" or "packed" (tests,
    measurements).  Process-wide; not for use while other threads run layers."""
    gru_set_projection_path(PROJECTION_PATHS[path])


def apply_activation(str name, cnp.ndarray values):
    """The core's own activation of a float32/float64 array (a copy): for tests."""
    cdef cnp.ndarray out = np.array(values, order="C", copy=True)
    if out.dtype not in (np.float32, np.float64):
        raise TypeError(f"values must be float32 or float64, got {out.dtype}")
    gru_apply_activation(GRU_FLOAT64 if out.dtype == np.float64 else GRU_FLOAT32,
                         ACTIVATION_CODES[name], cnp.PyArray_DATA(out), out.size)
    return out


def activate_inplace(str name, cnp.ndarray values):
    """Apply an activation in place to a C-contiguous float32/float64 array."""
    if values.dtype not in (np.float32, np.float64) or not cnp.PyArray_IS_C_CONTIGUOUS(values):
        raise TypeError("values must be a C-contiguous float32 or float64 array")
    gru_apply_activation(GRU_FLOAT64 if values.dtype == np.float64 else GRU_FLOAT32,
                         ACTIVATION_CODES[name], cnp.PyArray_DATA(values), values.size)


ctypedef fused real:
    float
    double


cdef void softmax_rows(real *v, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double top, total
    for i in range(rows):
        top = v[i * cols]
        for j in range(1, cols):
            if v[i * cols + j] > top:
                top = v[i * cols + j]
        total = 0
        for j in range(cols):
            v[i * cols + j] = <real>exp(v[i * cols + j] - top)
            total += v[i * cols + j]
        for j in range(cols):
            v[i * cols + j] = <real>(v[i * cols + j] / total)


def softmax_inplace(cnp.ndarray values):
    """Softmax over the last axis, in place (a streamed step's head)."""
    if values.dtype not in (np.float32, np.float64) or not cnp.PyArray_IS_C_CONTIGUOUS(values):
        raise TypeError("values must be a C-contiguous float32 or float64 array")
    if values.size == 0:
        return
    cdef Py_ssize_t cols = values.shape[values.ndim - 1]
    cdef Py_ssize_t rows = values.size // cols
    if values.dtype == np.float64:
        softmax_rows(<double *>cnp.PyArray_DATA(values), rows, cols)
    else:
        softmax_rows(<float *>cnp.PyArray_DATA(values), rows, cols)


cdef class GRUCore:
    """One GRU layer in the C core's terms; arrays are canonical + packed."""

    cdef gru_layer layer
    cdef object dtype
    cdef tuple _keep_alive

    def __init__(self, object dtype, int input_size, int hidden_size, list directions,
                 bint linear_before_reset, str gate_act, str cand_act):
        """directions: one or two tuples (W, R, W_packed, R_packed, bias_x, bias_hn, reverse)."""
        cdef int d, H = hidden_size, P = (hidden_size + GRU_PANEL - 1) // GRU_PANEL
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"weights must be float32 or float64, got {self.dtype}")
        if not 1 <= len(directions) <= 2:
            raise ValueError("a layer has one or two directions")
        self.layer.dtype = GRU_FLOAT64 if self.dtype == np.float64 else GRU_FLOAT32
        self.layer.input_size = input_size
        self.layer.hidden_size = hidden_size
        self.layer.num_directions = len(directions)
        self.layer.linear_before_reset = linear_before_reset
        self.layer.gate_act = ACTIVATION_CODES[gate_act]
        self.layer.cand_act = ACTIVATION_CODES[cand_act]
        for d, (W, R, W_packed, R_packed, bias_x, bias_hn, reverse) in enumerate(directions):
            self.layer.dir[d].W = checked_data(W, self.dtype, (3 * H, input_size), "W")
            self.layer.dir[d].R = checked_data(R, self.dtype, (3 * H, H), "R")
            self.layer.dir[d].W_packed = checked_data(
                W_packed, self.dtype, (3, P, input_size, GRU_PANEL), "W_packed")
            self.layer.dir[d].R_packed = checked_data(
                R_packed, self.dtype, (3, P, H, GRU_PANEL), "R_packed")
            self.layer.dir[d].bias_x = checked_data(bias_x, self.dtype, (3 * H,), "bias_x")
            self.layer.dir[d].bias_hn = checked_data(bias_hn, self.dtype, (H,), "bias_hn")
            self.layer.dir[d].reverse = bool(reverse)
        self._keep_alive = tuple(directions)

    def bind(self, cnp.ndarray x, cnp.ndarray h0, cnp.ndarray y, cnp.ndarray h_n,
             cnp.ndarray workspace, int num_threads, object mask=None):
        """A BoundForward: this layer on these buffers, checked once, so a
        streamed step costs one call and no Python-level work.  mask: a
        (batch, steps) uint8 buffer the caller fills before each call, or None."""
        return BoundForward(self, x, h0, y, h_n, workspace, num_threads, mask)

    def workspace_bytes(self, int batch, int steps, int num_threads=1):
        return gru_workspace_bytes(&self.layer, batch, steps, num_threads)

    def forward(self, cnp.ndarray x, object h0, object lengths, object mask,
                cnp.ndarray y, cnp.ndarray h_n, object workspace, int num_threads):
        """Run the layer; every array already in the layer's dtype and C order.

        h0, lengths (int64), mask (uint8) and workspace (uint8) may be None.
        """
        cdef gru_io io
        cdef int B, T, D = self.layer.num_directions, H = self.layer.hidden_size
        cdef int status
        cdef void *ws = NULL
        if x.ndim != 3:
            raise ValueError("internal: x must be 3-D")
        B = x.shape[0]
        T = x.shape[1]
        io.batch = B
        io.steps = T
        io.x = checked_data(x, self.dtype, (B, T, self.layer.input_size), "x")
        io.y = <void *>checked_data(y, self.dtype, (B, T, D * H), "y")
        io.h_n = <void *>checked_data(h_n, self.dtype, (D, B, H), "h_n")
        io.h0 = NULL if h0 is None else checked_data(h0, self.dtype, (D, B, H), "h0")
        io.lengths = NULL if lengths is None else <const int64_t *>checked_data(
            lengths, np.int64, (B,), "lengths")
        io.mask = NULL if mask is None else <const uint8_t *>checked_data(
            mask, np.uint8, (B, T), "mask")
        if workspace is not None:
            if workspace.nbytes < gru_workspace_bytes(&self.layer, B, T, num_threads):
                raise ValueError("internal: workspace too small")
            ws = <void *>checked_data(workspace, np.uint8, workspace.shape, "workspace")
        with nogil:
            status = gru_forward(&self.layer, &io, ws, num_threads)
        if status == -1:
            raise MemoryError("gru_infer: out of memory for the layer's workspace")
        if status != 0:
            raise RuntimeError(f"gru_infer core failed with status {status}")


cdef class BoundForward:
    """gru_forward on fixed buffers (a stream's step): calling it runs the
    layer on whatever the buffers hold now."""

    cdef GRUCore core
    cdef gru_io io
    cdef void *workspace
    cdef int num_threads
    cdef tuple _keep_alive

    def __init__(self, GRUCore core, cnp.ndarray x, cnp.ndarray h0, cnp.ndarray y,
                 cnp.ndarray h_n, cnp.ndarray workspace, int num_threads, object mask=None):
        cdef int B = x.shape[0], T = x.shape[1]
        cdef int D = core.layer.num_directions, H = core.layer.hidden_size
        self.core = core
        self.io.batch = B
        self.io.steps = T
        self.io.x = checked_data(x, core.dtype, (B, T, core.layer.input_size), "x")
        self.io.h0 = checked_data(h0, core.dtype, (D, B, H), "h0")
        self.io.y = <void *>checked_data(y, core.dtype, (B, T, D * H), "y")
        self.io.h_n = <void *>checked_data(h_n, core.dtype, (D, B, H), "h_n")
        self.io.lengths = NULL
        self.io.mask = NULL if mask is None else <const uint8_t *>checked_data(
            mask, np.uint8, (B, T), "mask")
        if workspace.nbytes < gru_workspace_bytes(&core.layer, B, T, num_threads):
            raise ValueError("internal: workspace too small")
        self.workspace = <void *>checked_data(workspace, np.uint8, (<object>workspace).shape,
                                              "workspace")
        self.num_threads = num_threads
        self._keep_alive = (x, h0, y, h_n, workspace, mask)

    def __call__(self):
        cdef int status
        with nogil:
            status = gru_forward(&self.core.layer, &self.io, self.workspace, self.num_threads)
        if status != 0:
            raise RuntimeError(f"gru_infer core failed with status {status}")


cdef void dense_rows(const real *x, const real *kernel, const real *bias, real *y,
                     Py_ssize_t rows, Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """y = x @ kernel + bias, kernel (n_in, n_out) row-major: the inner loop runs
    along a kernel row, so it vectorises."""
    cdef Py_ssize_t b, i, j
    cdef real xv
    for b in range(rows):
        for j in range(n_out):
            y[b * n_out + j] = bias[j] if bias != NULL else 0
        for i in range(n_in):
            xv = x[b * n_in + i]
            for j in range(n_out):
                y[b * n_out + j] += xv * kernel[i * n_out + j]


cdef class BoundDense:
    """A Dense layer on fixed buffers (a stream's step): y = act(x @ kernel + bias)
    in one call.  activation: a core activation name, or "softmax", or None
    (the caller applies it)."""

    cdef const void *x
    cdef const void *kernel
    cdef const void *bias
    cdef void *y
    cdef Py_ssize_t rows, n_in, n_out
    cdef bint is_double
    cdef int activation
    cdef bint softmax
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray x, cnp.ndarray kernel, object bias, cnp.ndarray y,
                 object activation):
        dtype = kernel.dtype
        if dtype not in (np.float32, np.float64) or kernel.ndim != 2 or 0 in (<object>kernel).shape:
            raise TypeError(f"internal: kernel must be a non-empty 2-D float32/float64 array, "
                            f"got {kernel.dtype} {(<object>kernel).shape}")
        self.n_in, self.n_out = kernel.shape[0], kernel.shape[1]
        self.rows = y.size // self.n_out
        self.kernel = checked_data(kernel, dtype, (self.n_in, self.n_out), "kernel")
        self.x = checked_data(x, dtype, (<object>x).shape, "x")
        self.y = <void *>checked_data(y, dtype, (<object>y).shape, "y")
        if x.size != self.rows * self.n_in:
            raise ValueError("internal: x and y hold different numbers of rows")
        self.bias = NULL if bias is None else checked_data(bias, dtype, (self.n_out,), "bias")
        self.is_double = dtype == np.float64
        self.softmax = activation == "softmax"
        self.activation = -1 if activation in (None, "softmax") else ACTIVATION_CODES[activation]
        self._keep_alive = (x, kernel, bias, y)

    def __call__(self):
        with nogil:
            if self.is_double:
                dense_rows(<const double *>self.x, <const double *>self.kernel,
                           <const double *>self.bias, <double *>self.y,
                           self.rows, self.n_in, self.n_out)
                if self.softmax:
                    softmax_rows(<double *>self.y, self.rows, self.n_out)
            else:
                dense_rows(<const float *>self.x, <const float *>self.kernel,
                           <const float *>self.bias, <float *>self.y,
                           self.rows, self.n_in, self.n_out)
                if self.softmax:
                    softmax_rows(<float *>self.y, self.rows, self.n_out)
            if self.activation >= 0:
                gru_apply_activation(GRU_FLOAT64 if self.is_double else GRU_FLOAT32,
                                     self.activation, self.y, self.rows * self.n_out)
