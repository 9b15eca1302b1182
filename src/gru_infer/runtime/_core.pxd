# The C core's surface (src_c/gru.h), declared once for Cython: enum values
# come from the header, never retyped here.
from libc.stdint cimport int64_t, uint8_t

cdef extern from "gru.h" nogil:
    ctypedef enum gru_dtype:
        GRU_FLOAT32
        GRU_FLOAT64
    ctypedef enum gru_precision:
        GRU_PRECISION_NATIVE
        GRU_PRECISION_BF16
        GRU_PRECISION_INT8
    ctypedef enum gru_activation:
        GRU_ACT_LINEAR
        GRU_ACT_SOFTMAX
        GRU_ACT_LOG_SOFTMAX
    enum:
        GRU_OK
        GRU_ERR_NOMEM
        GRU_ERR_NO_BLAS
        GRU_ERR_STALE_PACK
        GRU_ERR_BAD_ARG
    enum:
        GRU_ISA_UNKNOWN
        GRU_ISA_UNSUPPORTED

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
    int gru_has_threads()

    ctypedef struct gru_layer_desc:
        gru_dtype dtype
        gru_precision precision
        int input_size, hidden_size, num_directions
        int linear_before_reset
        gru_activation gate_act, cand_act
        int reverse[2]
    size_t gru_layer_packed_bytes(const gru_layer_desc *desc)
    int gru_layer_pack(const gru_layer_desc *desc, const void *const *W, const void *const *R,
                       const void *const *B, void *packed, size_t packed_bytes)
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

    ctypedef void (*gru_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *,
                                  int *, float *, int *, float *, float *, int *)
    ctypedef void (*gru_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *,
                                  int *, double *, int *, double *, double *, int *)
    void gru_set_blas(gru_sgemm_fn sgemm, gru_dgemm_fn dgemm)
    void gru_set_projection_path(int path)
