/*
 * gru_infer C core: the whole public surface.
 *
 * GRU layers (one or two directions) and Dense layers over batches, float32 or
 * float64, from the canonical ONNX form: gate blocks in the order z, r, h;
 * W (3H, I), R (3H, H) row-major; biases [Wb | Rb] (6H).  The core knows
 * nothing of Python or of any framework.
 *
 * Weights are packed once, in C, into an opaque buffer whose layout belongs to
 * the kernel set (ISA) that packed it; the buffer starts with a header naming
 * that ISA, so a buffer packed for another ISA is refused (GRU_ERR_STALE_PACK)
 * rather than misread.  Packed buffers and workspaces may have any alignment;
 * 64-byte aligned ones are faster.
 */
#ifndef GRU_INFER_GRU_H
#define GRU_INFER_GRU_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GRU_FLOAT32 = 0, GRU_FLOAT64 = 1 } gru_dtype;

/* How weights are stored; state, gates, biases and sums stay in the compute
 * dtype.  BF16 (round to nearest even) and INT8 (one symmetric scale per
 * output row) with GRU_FLOAT32 only, on every kernel set; sets with
 * dot-product instructions (AVX-512 BF16/VNNI, NEON sdot) also round each
 * product's inputs (to bf16 pairs, to 8 bits of the row's range), the others
 * widen the stored weights to float32.  isa.h says exactly how. */
typedef enum { GRU_PRECISION_NATIVE = 0, GRU_PRECISION_BF16 = 1, GRU_PRECISION_INT8 = 2 } gru_precision;

typedef enum { /* element-wise unless noted */
    GRU_ACT_SIGMOID = 0,
    GRU_ACT_HARD_SIGMOID_KERAS2 = 1, /* clip(0.2 x + 0.5, 0, 1) */
    GRU_ACT_HARD_SIGMOID_KERAS3 = 2, /* clip(x / 6 + 0.5, 0, 1), also PyTorch's */
    GRU_ACT_TANH = 3,
    GRU_ACT_RELU = 4,
    GRU_ACT_LINEAR = 5,
    GRU_ACT_SOFTSIGN = 6,
    GRU_ACT_SOFTMAX = 7,    /* over each row: not for GRU gates */
    GRU_ACT_LOG_SOFTMAX = 8 /* over each row: not for GRU gates */
} gru_activation;

enum {
    GRU_OK = 0,
    GRU_ERR_NOMEM = -1,
    GRU_ERR_NO_BLAS = -2,
    GRU_ERR_STALE_PACK = -3, /* packed for another ISA (or by another version): pack again */
    GRU_ERR_BAD_ARG = -4
};

int gru_activation_by_name(const char *name); /* enum value, or -1 */
const char *gru_error_text(int code);

/* ---- Kernel sets (ISAs) ----------------------------------------------------
 * Compiled into this build, best first; one is current.  Chosen once, at first
 * use, as the best one this CPU runs, unless the environment variable
 * GRU_INFER_ISA names another (x86-64: avx512bf16 | avx512 | avx2; aarch64:
 * neon_dotprod | neon; any: generic; an unknown or unsupported name is
 * ignored: gru_isa_current() says what runs). */
int gru_isa_count(void);
const char *gru_isa_name(int i);     /* NULL past the end */
int gru_isa_supported(int i);        /* 1: this CPU (and OS) runs it */
const char *gru_isa_current(void);
/* NULL or "auto": the best supported.  0, or GRU_ISA_UNKNOWN (no such name) or
 * GRU_ISA_UNSUPPORTED (not on this CPU).  Process-wide; buffers packed before a
 * switch are refused afterwards. */
enum { GRU_ISA_UNKNOWN = -1, GRU_ISA_UNSUPPORTED = -2 };
int gru_isa_select(const char *name);

/* ---- Threads ------------------------------------------------------------------
 * num_threads > 0 is exact (the caller's hard setting); 0 lets the core choose
 * from the work (a step too small to share runs on one thread) and from how
 * the machine answers (a thread that is not scheduled in time is left out for
 * a while), at most gru_max_threads(). */
void gru_set_max_threads(int n); /* n <= 0: back to the default, the CPUs this process may use (at first use) */
int gru_max_threads(void);
int gru_has_openmp(void); /* 1 when built with OpenMP (this core uses its own thread pool: 0) */
int gru_has_threads(void); /* 1 when the core's thread pool is built (pthreads); 0: one thread */

/* ---- One GRU layer, one or two directions ------------------------------------ */
typedef struct {
    gru_dtype dtype;         /* compute dtype */
    gru_precision precision; /* weight storage; BF16 and INT8 only with GRU_FLOAT32 */
    int input_size, hidden_size, num_directions;
    int linear_before_reset; /* 1: n = phi(Wx + Wb + r*(Rh + Rb)); 0: n = phi(Wx + R(r*h) + Wb + Rb) */
    gru_activation gate_act, cand_act;
    int reverse[2];          /* direction d processes time backwards */
} gru_layer_desc;

size_t gru_layer_packed_bytes(const gru_layer_desc *desc); /* 0: desc invalid or unsupported */
/* W[d] (3H, I), R[d] (3H, H) C-contiguous in desc->dtype, gates z, r, h;
 * B[d] (6H) = [Wb | Rb], or B or B[d] NULL for no biases.  Biases that are
 * only added are folded; Rb_h stays apart under linear_before_reset. */
int gru_layer_pack(const gru_layer_desc *desc, const void *const W[], const void *const R[],
                   const void *const B[], void *packed, size_t packed_bytes);

/* One call's inputs and outputs; arrays C-contiguous, in the layer's dtype. */
typedef struct {
    int batch, steps;
    const void *x;          /* (batch, steps, I) */
    const void *h0;         /* (D, batch, H), or NULL for zeros */
    const int64_t *lengths; /* (batch) PyTorch packed-sequence lengths in [0, steps], or NULL */
    const uint8_t *mask;    /* (batch, steps) Keras mask, nonzero = valid, or NULL */
    void *y;                /* (batch, steps, D*H) */
    void *h_n;              /* (D, batch, H); may alias h0 */
} gru_io;

/* Bytes of scratch one forward call needs (0: packed is not a layer buffer). */
size_t gru_layer_workspace_bytes(const void *packed, int batch, int steps, int num_threads);
/* workspace: gru_layer_workspace_bytes(...) bytes, or NULL to allocate inside. */
int gru_layer_forward(const void *packed, const gru_io *io, void *workspace, int num_threads);

/* ---- Dense: y = act(x @ kernel + bias) over rows ----------------------------------
 * Dense, TimeDistributed(Dense), nn.Linear (kernel = weight transposed). */
typedef struct {
    gru_dtype dtype;
    gru_precision precision;
    int in_features, out_features;
    gru_activation act; /* any, softmax and log_softmax over each row included */
} gru_dense_desc;

size_t gru_dense_packed_bytes(const gru_dense_desc *desc); /* 0: desc invalid or unsupported */
int gru_dense_pack(const gru_dense_desc *desc, const void *kernel /* (in, out) */,
                   const void *bias /* (out) or NULL */, void *packed, size_t packed_bytes);
/* x (rows, in), y (rows, out), C-contiguous in the dtype; x and y must not overlap. */
int gru_dense_forward(const void *packed, long rows, const void *x, void *y, int num_threads);

/* act over a (rows, cols) C-contiguous array in place (row-wise ones over each row). */
int gru_activation_apply(gru_dtype dtype, gru_activation act, void *values, long rows, long cols);

/* ---- BLAS ----------------------------------------------------------------------
 * Fortran signatures, as scipy.linalg.cython_blas exports them.  Optional: the
 * generic kernel set uses them for many-row products when set (the x86 sets
 * have their own kernels). */
typedef void (*gru_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                             float *a, int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*gru_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                             double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                             int *ldc);
void gru_set_blas(gru_sgemm_fn sgemm, gru_dgemm_fn dgemm);

/* For tests and measurements: how the generic set computes many-row products
 * (0 auto: BLAS when set, 1 BLAS, 2 its own kernel).  Others ignore it. */
enum { GRU_PROJECT_AUTO = 0, GRU_PROJECT_BLAS = 1, GRU_PROJECT_KERNEL = 2 };
void gru_set_projection_path(int path);

#endif
