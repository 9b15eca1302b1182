# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Cython layer over the C core: packed weights, and one Op class per
kind of work a model step does, over buffers fixed when a program is built.

Fills the core's BLAS table from scipy.linalg.cython_blas (SciPy's own BLAS,
nothing to link).  Ops hold raw pointers into NumPy buffers that their
program keeps alive; running an op is one C-level call with no Python
objects made, and the GIL is released around the core's work.  Argument
checking happens at the model boundary (runtime/model.py), not here.
"""

cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.pythread cimport (PyThread_acquire_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_release_lock, PyThread_type_lock, WAIT_LOCK)
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from scipy.linalg.cython_blas cimport dgemm, sgemm

import os
import warnings

import numpy as np

from ..errors import InputError
from .values import c_array

from ._core cimport *

cnp.import_array()

gru_set_blas(<gru_sgemm_fn>sgemm, <gru_dgemm_fn>dgemm)


class CoreError(RuntimeError):
    """The core refused a call for a reason that is gru_infer's, not the caller's."""


# Bumped by isa_select: weights packed under an earlier epoch are packed again.
ISA_EPOCH = 0


def _check(int status, str what):
    if status == GRU_ERR_NOMEM:
        raise MemoryError(f"gru_infer: out of memory ({what})")
    if status != GRU_OK:
        raise CoreError(f"gru_infer core: {what}: {gru_error_text(status).decode()}")


def has_openmp():
    return bool(gru_has_openmp())


def has_threads():
    """Whether the core's own thread pool is built (else it runs one thread)."""
    return bool(gru_has_threads())


def max_threads():
    return gru_max_threads()


def set_max_threads(int n):
    """The most threads the core takes when a call leaves the count to it (0: its default)."""
    gru_set_max_threads(n)


def isa_list():
    """(name, this CPU runs it) of every kernel set in this build, best first."""
    return [(gru_isa_name(i).decode(), bool(gru_isa_supported(i))) for i in range(gru_isa_count())]


def isa_current():
    return gru_isa_current().decode()


def isa_select(name):
    """Run on the kernel set name ("auto": the best this CPU runs).  Process-wide."""
    global ISA_EPOCH
    cdef int status
    cdef bytes text = (name or "auto").encode()
    status = gru_isa_select(text)
    if status == GRU_ISA_UNKNOWN:
        raise ValueError(f"unknown kernel set {name!r}; this build has "
                         f"{[n for n, _ in isa_list()]}")
    if status == GRU_ISA_UNSUPPORTED:
        raise ValueError(f"kernel set {name!r} does not run on this CPU; it runs "
                         f"{[n for n, ok in isa_list() if ok]}")
    ISA_EPOCH += 1


_env_isa = os.environ.get("GRU_INFER_ISA")
if _env_isa and _env_isa != "auto" and _env_isa != isa_current():
    warnings.warn(f"GRU_INFER_ISA={_env_isa!r} is not a kernel set this CPU runs; "
                  f"using {isa_current()!r}", RuntimeWarning)


def set_projection_path(str path):
    """How the generic kernel set computes many-row products: "auto", "blas" or
    "kernel" (tests)."""
    gru_set_projection_path({"auto": 0, "blas": 1, "kernel": 2, "packed": 2}[path])


def activation_code(str name):
    """The core's code for a table activation name (KeyError if it has none)."""
    cdef int code = gru_activation_by_name(name.encode())
    if code < 0:
        raise KeyError(name)
    return code


ctypedef fused real:
    float
    double


cdef inline void *data(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


cdef inline void *data_or_null(object a):
    """An optional buffer's data, or NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline gru_dtype dtype_code(object dtype):
    return GRU_FLOAT64 if dtype == np.float64 else GRU_FLOAT32


cdef void activate(bint f64, int code, void *values, Py_ssize_t rows,
                   Py_ssize_t cols) noexcept nogil:
    """The core's activation in place over (rows, cols) values."""
    if code != GRU_ACT_LINEAR and rows > 0 and cols > 0:
        gru_activation_apply(GRU_FLOAT64 if f64 else GRU_FLOAT32, <gru_activation>code, values,
                             rows, cols)


def apply_activation(str name, values):
    """The core's own activation of a float32/float64 array (a copy): for tests."""
    cdef cnp.ndarray out = np.array(values, order="C", copy=True)
    if out.dtype not in (np.float32, np.float64):
        raise TypeError(f"values must be float32 or float64, got {out.dtype}")
    cols = out.shape[out.ndim - 1] if out.ndim else 1
    activate(out.dtype == np.float64, activation_code(name), data(out),
             out.size // max(cols, 1), cols)
    return out


cdef cnp.ndarray aligned_bytes(size_t nbytes):
    """nbytes of zeroed memory starting on a 64-byte boundary (the kernels
    read packed panels with aligned loads where they can)."""
    cdef cnp.ndarray raw = np.zeros(nbytes + 64, np.uint8)
    cdef size_t shift = (-<size_t>data(raw)) & 63
    return raw[shift:shift + nbytes]


_PRECISIONS = {"native": GRU_PRECISION_NATIVE, "bfloat16": GRU_PRECISION_BF16,
               "int8": GRU_PRECISION_INT8}


# -- packed weights ------------------------------------------------------------------


cdef class PackedGRU:
    """One GRU layer (one or two directions) packed by the core for its current
    kernel set.  directions: [(W (3H, I), R (3H, H), B (6H,) or None, reverse)]."""

    cdef gru_layer_desc desc
    cdef cnp.ndarray packed
    cdef readonly object dtype
    cdef readonly int input_size, hidden_size, num_directions

    def __init__(self, object dtype, list directions, bint linear_before_reset, str gate_act,
                 str cand_act, str precision="native"):
        cdef const void *W[2]
        cdef const void *R[2]
        cdef const void *B[2]
        cdef int d
        cdef size_t nbytes
        self.dtype = np.dtype(dtype)
        H, I = directions[0][1].shape[1], directions[0][0].shape[1]
        self.input_size, self.hidden_size, self.num_directions = I, H, len(directions)
        self.desc.dtype = dtype_code(self.dtype)
        self.desc.precision = _PRECISIONS[precision]
        self.desc.input_size, self.desc.hidden_size = I, H
        self.desc.num_directions = len(directions)
        self.desc.linear_before_reset = linear_before_reset
        self.desc.gate_act = <gru_activation><int>activation_code(gate_act)
        self.desc.cand_act = <gru_activation><int>activation_code(cand_act)
        arrays = []
        for d, (W_in, R_in, B_in, reverse) in enumerate(directions):
            w = c_array(W_in, self.dtype)
            r = c_array(R_in, self.dtype)
            if w.shape != (3 * H, I) or r.shape != (3 * H, H):
                raise ValueError("internal: direction weights of different shapes")
            b = None if B_in is None else c_array(B_in, self.dtype).reshape(6 * H)
            arrays += [w, r, b]
            W[d], R[d] = data(w), data(r)
            B[d] = NULL if b is None else data(b)
            self.desc.reverse[d] = bool(reverse)
        nbytes = gru_layer_packed_bytes(&self.desc)
        if nbytes == 0:
            raise CoreError(f"gru_infer core: this GRU layer ({precision} weights, "
                            f"{self.dtype}) is not supported by the kernel set "
                            f"{isa_current()!r}")
        self.packed = aligned_bytes(nbytes)
        _check(gru_layer_pack(&self.desc, W, R, B, data(self.packed), nbytes), "packing a GRU")

    @property
    def nbytes(self):
        return self.packed.nbytes

    def workspace_bytes(self, int batch, int steps, int num_threads):
        return gru_layer_workspace_bytes(data(self.packed), batch, steps, num_threads)

    def call(self, cnp.ndarray x, object h0, object lengths, object mask, cnp.ndarray y,
             cnp.ndarray h_n, cnp.ndarray workspace, int num_threads):
        """Run on arrays the caller checked: x (B, T, I), y (B, T, D*H), h_n
        (D, B, H), h0 like h_n or None, lengths int64 (B,) or None, mask uint8
        (B, T) or None, all C-contiguous in the layer's dtype."""
        cdef gru_io io
        cdef int D = self.num_directions, H = self.hidden_size
        B, T = x.shape[0], x.shape[1]
        if (x.dtype != self.dtype or y.dtype != self.dtype or h_n.dtype != self.dtype
                or (<object>x).shape != (B, T, self.input_size)
                or (<object>y).shape != (B, T, D * H) or (<object>h_n).shape != (D, B, H)
                or not (cnp.PyArray_IS_C_CONTIGUOUS(x) and cnp.PyArray_IS_C_CONTIGUOUS(y)
                        and cnp.PyArray_IS_C_CONTIGUOUS(h_n) and cnp.PyArray_ISALIGNED(x)
                        and cnp.PyArray_ISALIGNED(y) and cnp.PyArray_ISALIGNED(h_n))
                or workspace.nbytes < self.workspace_bytes(B, T, num_threads)):
            raise ValueError("internal: GRU buffers of the wrong shape, dtype or layout")
        io.batch, io.steps = B, T
        io.x, io.y, io.h_n = data(x), data(y), data(h_n)
        io.h0 = NULL if h0 is None else data(h0)
        io.lengths = <const int64_t *>data_or_null(lengths)
        io.mask = <const uint8_t *>data_or_null(mask)
        self.forward(&io, data(workspace), num_threads)

    cdef int forward(self, gru_io *io, void *workspace, int num_threads) except -1:
        cdef int status
        cdef const void *packed = data(self.packed)
        with nogil:
            status = gru_layer_forward(packed, io, workspace, num_threads)
        if status != GRU_OK:
            _check(status, "a GRU layer")
        return 0


cdef class PackedDense:
    """y = act(x @ kernel + bias) over rows, packed by the core: kernel (in,
    out) in the compute dtype; act a core activation code."""

    cdef gru_dense_desc desc
    cdef cnp.ndarray packed
    cdef readonly object dtype
    cdef readonly int in_features, out_features

    def __init__(self, object dtype, kernel, bias, int act, str precision="native"):
        cdef size_t nbytes
        self.dtype = np.dtype(dtype)
        k = c_array(kernel, self.dtype)
        b = None if bias is None else c_array(bias, self.dtype)
        self.in_features, self.out_features = k.shape[0], k.shape[1]
        self.desc.dtype = dtype_code(self.dtype)
        self.desc.precision = _PRECISIONS[precision]
        self.desc.in_features, self.desc.out_features = k.shape[0], k.shape[1]
        self.desc.act = <gru_activation>act
        nbytes = gru_dense_packed_bytes(&self.desc)
        if nbytes == 0:
            raise CoreError(f"gru_infer core: this Dense layer ({precision} weights, "
                            f"{self.dtype}) is not supported by the kernel set "
                            f"{isa_current()!r}")
        self.packed = aligned_bytes(nbytes)
        _check(gru_dense_pack(&self.desc, data(k), NULL if b is None else data(b),
                              data(self.packed), nbytes), "packing a Dense layer")

    @property
    def nbytes(self):
        return self.packed.nbytes

    cdef int forward(self, const void *x, void *y, Py_ssize_t rows, int num_threads) except -1:
        cdef int status
        cdef const void *packed = data(self.packed)
        with nogil:
            status = gru_dense_forward(packed, rows, x, y, num_threads)
        if status != GRU_OK:
            _check(status, "a Dense layer")
        return 0


# -- ops: one kind of work each, over fixed buffers ------------------------------------


cdef class Op:
    """A unit of a program: run() does its work on the buffers it was made with."""

    cdef int run(self) except -1:
        return 0


cdef class GRUOp(Op):
    """A GRU layer: x (B, T, I) -> y (B, T, D*H), h_n (D, B, H).  h0 is read
    when use_h0 is set (a stream's state, or a caller's initial state; h_n
    may be the same buffer), lengths when use_lengths is set."""

    cdef PackedGRU packed
    cdef gru_io io
    cdef const void *h0
    cdef const int64_t *lengths
    cdef void *workspace
    cdef int num_threads
    cdef public bint use_h0, use_lengths
    cdef tuple _keep_alive

    def __init__(self, PackedGRU packed, cnp.ndarray x, cnp.ndarray y, cnp.ndarray h_n,
                 cnp.ndarray h0, cnp.ndarray workspace, int num_threads, object mask,
                 cnp.ndarray lengths, bint use_h0):
        self.packed = packed
        self.io.batch = x.shape[0]
        self.io.steps = x.shape[1]
        self.io.x = data(x)
        self.io.y = data(y)
        self.io.h_n = data(h_n)
        self.io.mask = <const uint8_t *>data_or_null(mask)
        self.h0 = data(h0)
        self.lengths = <const int64_t *>data(lengths)
        self.workspace = data(workspace)
        self.num_threads = num_threads
        self.use_h0 = use_h0
        self.use_lengths = False
        self._keep_alive = (x, y, h_n, h0, workspace, mask, lengths)

    cdef int run(self) except -1:
        self.io.h0 = self.h0 if self.use_h0 else NULL
        self.io.lengths = self.lengths if self.use_lengths else NULL
        return self.packed.forward(&self.io, self.workspace, self.num_threads)


cdef class LastStepOp(Op):
    """The output of a GRU that returns no sequence: per direction, the output
    of its last processing step (Keras: t = T-1 forwards, t = 0 backwards), or
    with PyTorch lengths the state at each row's last valid step (h_n)."""

    cdef GRUOp gru
    cdef char *y
    cdef char *h_n
    cdef char *out
    cdef Py_ssize_t B, T, H, D, item
    cdef bint backward[2]
    cdef tuple _keep_alive

    def __init__(self, GRUOp gru, cnp.ndarray y, cnp.ndarray h_n, cnp.ndarray out,
                 tuple backward):
        self.gru = gru
        self.y, self.h_n, self.out = <char *>data(y), <char *>data(h_n), <char *>data(out)
        self.B, self.T = y.shape[0], y.shape[1]
        self.D, self.H = h_n.shape[0], h_n.shape[2]
        self.item = y.itemsize
        self.backward[0] = backward[0]
        self.backward[1] = backward[1] if len(backward) > 1 else False
        self._keep_alive = (y, h_n, out)

    cdef int run(self) except -1:
        cdef Py_ssize_t b, d, t, H = self.H, DH = self.D * self.H, row = self.H * self.item
        for b in range(self.B):
            for d in range(self.D):
                if self.gru.use_lengths or self.T == 0:
                    memcpy(self.out + (b * DH + d * H) * self.item,
                           self.h_n + ((d * self.B + b) * H) * self.item, row)
                else:
                    t = 0 if self.backward[d] else self.T - 1
                    memcpy(self.out + (b * DH + d * H) * self.item,
                           self.y + ((b * self.T + t) * DH + d * H) * self.item, row)
        return 0


cdef class MaskedStartOp(Op):
    """A stream's masked steps repeat the previous step's output, as they do
    inside a whole sequence: the steps that open a call before any valid one
    get the output the stream held when the call began (its state then)."""

    cdef char *y
    cdef const char *before
    cdef const uint8_t *mask
    cdef Py_ssize_t B, T, row, ldy
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray y, cnp.ndarray before, cnp.ndarray mask):
        self.y, self.before = <char *>data(y), <const char *>data(before)
        self.mask = <const uint8_t *>data(mask)
        self.B, self.T = y.shape[0], y.shape[1]
        self.row = before.nbytes // max(self.B, 1)
        self.ldy = y.nbytes // max(self.B * self.T, 1)
        self._keep_alive = (y, before, mask)

    cdef int run(self) except -1:
        cdef Py_ssize_t b, t
        for b in range(self.B):
            t = 0
            while t < self.T and not self.mask[b * self.T + t]:
                memcpy(self.y + (b * self.T + t) * self.ldy, self.before + b * self.row, self.row)
                t += 1
        return 0


cdef class CopyOp(Op):
    """dst = src (same number of bytes)."""

    cdef void *src
    cdef void *dst
    cdef size_t nbytes
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray src, cnp.ndarray dst):
        if src.nbytes != dst.nbytes:
            raise ValueError("internal: copy between buffers of different sizes")
        self.src, self.dst, self.nbytes = data(src), data(dst), src.nbytes
        self._keep_alive = (src, dst)

    cdef int run(self) except -1:
        memcpy(self.dst, self.src, self.nbytes)
        return 0


cdef class HalvesOp(Op):
    """The two directions of a Bidirectional, (rows, 2H) -> merged (rows, H)
    by sum, mul or ave, or split into two (rows, H) buffers (merge_mode None)."""

    cdef char *src
    cdef char *out0
    cdef char *out1
    cdef Py_ssize_t rows, H
    cdef bint f64
    cdef int mode  # 0 sum, 1 mul, 2 ave, 3 split
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray src, str mode, cnp.ndarray out0, object out1=None):
        self.src, self.out0 = <char *>data(src), <char *>data(out0)
        self.out1 = NULL if out1 is None else <char *>data(out1)
        self.H = out0.shape[out0.ndim - 1]
        self.rows = out0.size // self.H
        self.f64 = src.dtype == np.float64
        self.mode = {"sum": 0, "mul": 1, "ave": 2, None: 3}[mode]
        self._keep_alive = (src, out0, out1)

    cdef int run(self) except -1:
        if self.f64:
            halves(<double *>self.src, <double *>self.out0, <double *>self.out1, self.rows,
                   self.H, self.mode)
        else:
            halves(<float *>self.src, <float *>self.out0, <float *>self.out1, self.rows,
                   self.H, self.mode)
        return 0


cdef void halves(const real *src, real *out0, real *out1, Py_ssize_t rows, Py_ssize_t H,
                 int mode) noexcept nogil:
    cdef Py_ssize_t r, j
    cdef const real *a
    cdef const real *b
    for r in range(rows):
        a, b = src + r * 2 * H, src + r * 2 * H + H
        for j in range(H):
            if mode == 0:
                out0[r * H + j] = a[j] + b[j]
            elif mode == 1:
                out0[r * H + j] = a[j] * b[j]
            elif mode == 2:
                out0[r * H + j] = (a[j] + b[j]) / 2
            else:
                out0[r * H + j] = a[j]
                out1[r * H + j] = b[j]


cdef class ZeroMaskedOp(Op):
    """y[b, t, :] = 0 where mask[b, t] is 0 (in place)."""

    cdef char *y
    cdef const uint8_t *mask
    cdef Py_ssize_t steps, row
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray y, cnp.ndarray mask):
        self.y, self.mask = <char *>data(y), <const uint8_t *>data(mask)
        self.steps = mask.size
        self.row = y.nbytes // max(mask.size, 1)
        self._keep_alive = (y, mask)

    cdef int run(self) except -1:
        cdef Py_ssize_t i
        for i in range(self.steps):
            if not self.mask[i]:
                memset(self.y + i * self.row, 0, self.row)
        return 0


cdef class ReverseTimeOp(Op):
    """out[b, t] = src[b, T-1-t] (Keras go_backwards returns its sequence in
    processing order)."""

    cdef char *src
    cdef char *out
    cdef Py_ssize_t B, T, row
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray src, cnp.ndarray out):
        self.src, self.out = <char *>data(src), <char *>data(out)
        self.B, self.T = src.shape[0], src.shape[1]
        self.row = src.nbytes // max(self.B * self.T, 1)
        self._keep_alive = (src, out)

    cdef int run(self) except -1:
        cdef Py_ssize_t b, t
        for b in range(self.B):
            for t in range(self.T):
                memcpy(self.out + (b * self.T + t) * self.row,
                       self.src + (b * self.T + self.T - 1 - t) * self.row, self.row)
        return 0


cdef class DenseOp(Op):
    """y = act(x @ kernel + bias) over every row of x."""

    cdef PackedDense dense
    cdef const void *x
    cdef void *y
    cdef Py_ssize_t rows
    cdef int num_threads
    cdef tuple _keep_alive

    def __init__(self, PackedDense dense, cnp.ndarray x, cnp.ndarray y, int num_threads):
        self.dense = dense
        self.x, self.y = data(x), data(y)
        self.rows = x.size // dense.in_features
        self.num_threads = num_threads
        self._keep_alive = (x, y)

    cdef int run(self) except -1:
        return self.dense.forward(self.x, self.y, self.rows, self.num_threads)


cdef class ActivationOp(Op):
    """dst = act(src) with the core's activation (src may be dst)."""

    cdef void *src
    cdef void *dst
    cdef Py_ssize_t rows, cols
    cdef size_t nbytes
    cdef int code
    cdef bint f64
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray src, cnp.ndarray dst, int code):
        self.src, self.dst, self.nbytes = data(src), data(dst), dst.nbytes
        self.cols = dst.shape[dst.ndim - 1] if dst.ndim else 1
        self.rows = dst.size // max(self.cols, 1)
        self.code, self.f64 = code, dst.dtype == np.float64
        self._keep_alive = (src, dst)

    cdef int run(self) except -1:
        if self.src != self.dst:
            memcpy(self.dst, self.src, self.nbytes)
        activate(self.f64, self.code, self.dst, self.rows, self.cols)
        return 0


cdef class EmbeddingOp(Op):
    """out[b, t] = table[ids[b, t]]; under mask_zero, mask[b, t] = ids != 0."""

    cdef const int64_t *ids
    cdef const char *table
    cdef char *out
    cdef uint8_t *mask
    cdef Py_ssize_t count, vocab, row
    cdef str name
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray ids, cnp.ndarray table, cnp.ndarray out, object mask,
                 str name):
        self.ids, self.table = <const int64_t *>data(ids), <const char *>data(table)
        self.out = <char *>data(out)
        self.mask = NULL if mask is None else <uint8_t *>data(mask)
        self.count, self.vocab = ids.size, table.shape[0]
        self.row = table.strides[0]
        self.name = name
        self._keep_alive = (ids, table, out, mask)

    cdef int run(self) except -1:
        cdef Py_ssize_t i
        cdef int64_t k
        for i in range(self.count):
            k = self.ids[i]
            if k < 0 or k >= self.vocab:
                raise InputError(f"Embedding {self.name!r}: token ids must lie in "
                                 f"[0, {self.vocab - 1}], got {k}")
            memcpy(self.out + i * self.row, self.table + k * self.row, self.row)
            if self.mask != NULL:
                self.mask[i] = k != 0
        return 0


cdef class MaskingOp(Op):
    """Keras Masking: mask[b, t] = any(x[b, t] != value) (and the incoming
    mask); out = x with masked steps zeroed."""

    cdef char *x
    cdef char *out
    cdef uint8_t *mask
    cdef const uint8_t *previous
    cdef Py_ssize_t steps, features
    cdef double value
    cdef bint f64
    cdef tuple _keep_alive

    def __init__(self, cnp.ndarray x, cnp.ndarray out, cnp.ndarray mask, object previous,
                 double value):
        self.x, self.out, self.mask = <char *>data(x), <char *>data(out), <uint8_t *>data(mask)
        self.previous = <const uint8_t *>data_or_null(previous)
        self.steps = mask.size
        self.features = x.size // max(mask.size, 1)
        self.value, self.f64 = value, x.dtype == np.float64
        self._keep_alive = (x, out, mask, previous)

    cdef int run(self) except -1:
        if self.f64:
            masking(<const double *>self.x, <double *>self.out, self.mask, self.previous,
                    self.steps, self.features, self.value)
        else:
            masking(<const float *>self.x, <float *>self.out, self.mask, self.previous,
                    self.steps, self.features, self.value)
        return 0


cdef void masking(const real *x, real *out, uint8_t *mask, const uint8_t *previous,
                  Py_ssize_t steps, Py_ssize_t features, double value) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef bint keep
    cdef real v = <real>value
    for i in range(steps):
        keep = False
        for j in range(features):
            if x[i * features + j] != v:
                keep = True
        if previous != NULL and not previous[i]:
            keep = False
        mask[i] = keep
        for j in range(features):
            out[i * features + j] = x[i * features + j] if keep else 0


cdef class MergeOp(Op):
    """out = inputs combined element-wise: add, subtract, multiply, average,
    maximum or minimum (all of out's shape)."""

    cdef void **inputs
    cdef int count
    cdef void *out
    cdef Py_ssize_t n
    cdef int op
    cdef bint f64
    cdef tuple _keep_alive

    def __init__(self, list inputs, cnp.ndarray out, str op):
        cdef int i
        self.count = len(inputs)
        self.inputs = <void **>PyMem_Malloc(self.count * sizeof(void *))
        if self.inputs == NULL:
            raise MemoryError()
        for i in range(self.count):
            self.inputs[i] = data(inputs[i])
        self.out, self.n = data(out), out.size
        self.op = ("add", "subtract", "multiply", "average", "maximum", "minimum").index(op)
        self.f64 = out.dtype == np.float64
        self._keep_alive = tuple(inputs) + (out,)

    def __dealloc__(self):
        PyMem_Free(self.inputs)

    cdef int run(self) except -1:
        if self.f64:
            merge(<const double **>self.inputs, self.count, <double *>self.out, self.n, self.op)
        else:
            merge(<const float **>self.inputs, self.count, <float *>self.out, self.n, self.op)
        return 0


cdef void merge(const real **inputs, int count, real *out, Py_ssize_t n, int op) noexcept nogil:
    cdef Py_ssize_t j
    cdef int i
    cdef real v
    for j in range(n):
        v = inputs[0][j]
        for i in range(1, count):
            if op == 0 or op == 3:
                v = v + inputs[i][j]
            elif op == 1:
                v = v - inputs[i][j]
            elif op == 2:
                v = v * inputs[i][j]
            elif op == 4:
                v = v if v >= inputs[i][j] else inputs[i][j]
            else:
                v = v if v <= inputs[i][j] else inputs[i][j]
        out[j] = v / count if op == 3 else v


cdef class ConcatOp(Op):
    """out = inputs joined along one axis: each input is (outer, inner_i)
    bytes-wise, out is (outer, sum inner_i).  Serves features, time, and masks."""

    cdef char **inputs
    cdef Py_ssize_t *inner
    cdef int count
    cdef char *out
    cdef Py_ssize_t outer, total
    cdef tuple _keep_alive

    def __init__(self, list inputs, cnp.ndarray out, Py_ssize_t outer):
        cdef int i
        self.count = len(inputs)
        self.inputs = <char **>PyMem_Malloc(self.count * sizeof(char *))
        self.inner = <Py_ssize_t *>PyMem_Malloc(self.count * sizeof(Py_ssize_t))
        if self.inputs == NULL or self.inner == NULL:
            raise MemoryError()
        self.total = 0
        for i in range(self.count):
            self.inputs[i] = <char *>data(inputs[i])
            self.inner[i] = inputs[i].nbytes // max(outer, 1)
            self.total += self.inner[i]
        if self.total * outer != out.nbytes:
            raise ValueError("internal: concatenation sizes do not add up")
        self.out, self.outer = <char *>data(out), outer
        self._keep_alive = tuple(inputs) + (out,)

    def __dealloc__(self):
        PyMem_Free(self.inputs)
        PyMem_Free(self.inner)

    cdef int run(self) except -1:
        cdef Py_ssize_t o, offset
        cdef int i
        for o in range(self.outer):
            offset = o * self.total
            for i in range(self.count):
                memcpy(self.out + offset, self.inputs[i] + o * self.inner[i], self.inner[i])
                offset += self.inner[i]
        return 0


cdef class MaskAndOp(Op):
    """out = the logical and of several (B, T) masks (Keras merge layers)."""

    cdef const uint8_t **masks
    cdef int count
    cdef uint8_t *out
    cdef Py_ssize_t n
    cdef tuple _keep_alive

    def __init__(self, list masks, cnp.ndarray out):
        cdef int i
        self.count = len(masks)
        self.masks = <const uint8_t **>PyMem_Malloc(self.count * sizeof(void *))
        if self.masks == NULL:
            raise MemoryError()
        for i in range(self.count):
            self.masks[i] = <const uint8_t *>data(masks[i])
        self.out, self.n = <uint8_t *>data(out), out.size
        self._keep_alive = tuple(masks) + (out,)

    def __dealloc__(self):
        PyMem_Free(self.masks)

    cdef int run(self) except -1:
        cdef Py_ssize_t j
        cdef int i
        cdef uint8_t v
        for j in range(self.n):
            v = 1
            for i in range(self.count):
                v = v and self.masks[i][j]
            self.out[j] = v
        return 0


cdef class PyOp(Op):
    """Work done by a Python callable (NumPy with out=): layers without a
    compiled op of their own."""

    cdef object function

    def __init__(self, function):
        self.function = function

    cdef int run(self) except -1:
        self.function()
        return 0


# -- programs ----------------------------------------------------------------------------


cdef class Lock:
    """A plain mutex that compiled code takes without calling into Python
    (also a context manager for Python code)."""

    cdef PyThread_type_lock lock

    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef inline void take(self):
        if not PyThread_acquire_lock(self.lock, 0):  # contended: wait without the GIL
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)

    cdef inline void give(self):
        PyThread_release_lock(self.lock)

    def __enter__(self):
        self.take()
        return self

    def __exit__(self, *exc):
        self.give()
        return False


cdef class Program:
    """A model compiled for one call shape: its ops in order, over buffers
    made once.  inputs / outputs: the buffers callers fill and read."""

    cdef list ops
    cdef readonly list inputs
    cdef readonly list outputs
    cdef readonly list gru_ops
    cdef readonly tuple step_shape
    cdef cnp.ndarray step_input
    cdef list step_outputs
    cdef size_t step_bytes
    cdef object step_dtype
    cdef object step_convert
    cdef Lock lock

    def __init__(self, list ops, list inputs, list outputs, list gru_ops):
        for op in ops:
            if not isinstance(op, Op):
                raise TypeError(f"internal: {op!r} is not an Op")
        self.ops, self.inputs, self.outputs, self.gru_ops = ops, inputs, outputs, gru_ops
        self.step_shape = ()

    cpdef run(self):
        """Run every op on what the buffers hold now."""
        cdef Op op
        for op in self.ops:
            op.run()

    def time_run(self, int repeats):
        """Nanoseconds of each of repeats run()s made back to back from
        compiled code, with no Python between them: what the ops take alone
        (benchmarks take the median, so preemptions drop out)."""
        cdef timespec start, end
        cdef int i
        cdef cnp.ndarray times = np.empty(repeats, np.float64)
        cdef double *t = <double *>data(times)
        for i in range(repeats):
            clock_gettime(CLOCK_MONOTONIC, &start)
            self.run()
            clock_gettime(CLOCK_MONOTONIC, &end)
            t[i] = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec)
        return times

    def call_exact(self, x):
        """Outputs (copies) for x when it is exactly what the one input buffer
        holds (type, dtype, shape, C order), with no per-call options set; else
        None and the caller takes the checked path.  No lock: a program
        belongs to one thread (Model keeps programs per thread)."""
        cdef cnp.ndarray buffer = <cnp.ndarray>self.inputs[0]
        if not (type(x) is np.ndarray and (<cnp.ndarray>x).dtype is buffer.dtype
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)
                and (<object>x).shape == (<object>buffer).shape):
            return None
        memcpy(data(buffer), data(<cnp.ndarray>x), buffer.nbytes)
        self.run()
        if len(self.outputs) == 1:
            return (<cnp.ndarray>self.outputs[0]).copy()
        return [(<cnp.ndarray>o).copy() for o in self.outputs]

    def set_flags(self, bint use_lengths, object use_h0=None):
        """Per call: whether GRU ops read the lengths buffer, and their h0
        buffers (use_h0: one flag per GRU op, or None to leave them)."""
        cdef GRUOp op
        for i, op in enumerate(self.gru_ops):
            op.use_lengths = use_lengths
            if use_h0 is not None:
                op.use_h0 = use_h0[i]

    def bind_step(self, Lock lock, tuple step_shape, object convert, list outputs):
        """Make step() a stream's step: one input of step_shape (the time axis
        dropped), the outputs as step views of the output buffers
        (C-contiguous).  convert(x) turns any other input into an array of
        step_shape and the buffer's dtype, or raises saying what is wrong."""
        for output in outputs:
            if not cnp.PyArray_IS_C_CONTIGUOUS(output):
                raise ValueError("internal: a step's outputs must be C-contiguous")
        self.lock = lock
        self.step_convert = convert
        self.step_shape = step_shape
        self.step_input = self.inputs[0]
        self.step_outputs = outputs
        self.step_bytes = self.step_input.nbytes
        self.step_dtype = self.step_input.dtype

    def step(self, x, out=None):
        """One streamed step: x (batch, features) or (batch,) ids -> the output
        for that step (a list for several), written into out when given
        (an array, or a list of them; shapes and dtypes checked)."""
        cdef cnp.ndarray arr
        if not (type(x) is np.ndarray and (<cnp.ndarray>x).dtype is self.step_dtype
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)
                and (<object>x).shape == self.step_shape):
            x = self.step_convert(x)
        arr = <cnp.ndarray>x
        self.lock.take()
        try:
            memcpy(data(self.step_input), data(arr), self.step_bytes)
            self.run()
            if len(self.step_outputs) == 1:
                return self._result(<cnp.ndarray>self.step_outputs[0], out)
            if out is None:
                return [self._result(<cnp.ndarray>o, None) for o in self.step_outputs]
            if not isinstance(out, (list, tuple)) or len(out) != len(self.step_outputs):
                raise InputError(f"out must be a list of {len(self.step_outputs)} arrays, "
                                 f"one per output")
            for o, target in zip(self.step_outputs, out):
                self._result(<cnp.ndarray>o, target)
            return out
        finally:
            self.lock.give()

    cdef object _result(self, cnp.ndarray output, object out):
        if out is None:
            return output.copy()
        if type(out) is np.ndarray and (<cnp.ndarray>out).dtype == output.dtype \
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>out) \
                and (<object>out).shape == (<object>output).shape:
            memcpy(data(<cnp.ndarray>out), data(output), output.nbytes)
            return out
        raise InputError(f"out must be a C-contiguous {output.dtype} array of shape "
                         f"{(<object>output).shape}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} "
                         f"{getattr(out, 'shape', '')}")
