# The C core's surface (src_c/gru.h), declared once for Cython.
from libc.stdint cimport int64_t, uint8_t

cdef extern from "gru.h" nogil:
    int GRU_PANEL
    ctypedef enum gru_dtype:
        GRU_FLOAT32
        GRU_FLOAT64
    ctypedef enum gru_activation:
        GRU_ACT_SIGMOID
        GRU_ACT_HARD_SIGMOID_KERAS2
        GRU_ACT_HARD_SIGMOID_KERAS3
        GRU_ACT_TANH
        GRU_ACT_RELU
        GRU_ACT_LINEAR
        GRU_ACT_SOFTSIGN
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
