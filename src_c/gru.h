/*
 * gru_infer C core: the whole public surface.
 *
 * One GRU layer (one or two directions) over a batch of sequences, float32 or
 * float64, in the canonical ONNX form: gate blocks in the order z, r, h;
 * W (3H, I), R (3H, H) row-major.  The core knows nothing of Python or of any
 * framework; BLAS arrives as function pointers (gru_set_blas).
 */
#ifndef GRU_INFER_GRU_H
#define GRU_INFER_GRU_H

#include <stddef.h>
#include <stdint.h>

/* Output rows of one packed panel: the small-batch kernel's vector width. */
#define GRU_PANEL 8

typedef enum { GRU_FLOAT32 = 0, GRU_FLOAT64 = 1 } gru_dtype;

typedef enum {
    GRU_ACT_SIGMOID = 0,
    GRU_ACT_HARD_SIGMOID_KERAS2 = 1, /* clip(0.2 x + 0.5, 0, 1) */
    GRU_ACT_HARD_SIGMOID_KERAS3 = 2, /* clip(x / 6 + 0.5, 0, 1), also PyTorch's */
    GRU_ACT_TANH = 3,
    GRU_ACT_RELU = 4,
    GRU_ACT_LINEAR = 5,
    GRU_ACT_SOFTSIGN = 6
} gru_activation;

/* Fortran BLAS signatures, as scipy.linalg.cython_blas exports them. */
typedef void (*gru_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                             float *alpha, float *a, int *lda, float *b, int *ldb,
                             float *beta, float *c, int *ldc);
typedef void (*gru_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                             double *alpha, double *a, int *lda, double *b, int *ldb,
                             double *beta, double *c, int *ldc);

/* Set once, before the first forward call. */
void gru_set_blas(gru_sgemm_fn sgemm, gru_dgemm_fn dgemm);

/* One direction's weights; every pointer is owned by the caller and has the
 * layer's dtype.  The packed layouts are derived from W and R once, at load:
 * for gate g and panel p, rows p*PANEL..p*PANEL+PANEL-1 of that gate block are
 * stored transposed as (K, PANEL), zero padded: shape (3, P, K, PANEL) with
 * P = ceil(H / PANEL). */
typedef struct {
    const void *W;        /* (3H, I) */
    const void *R;        /* (3H, H) */
    const void *W_packed; /* (3, P, I, PANEL) */
    const void *R_packed; /* (3, P, H, PANEL) */
    const void *bias_x;   /* (3H) every bias that is only added, or NULL */
    const void *bias_hn;  /* (H) Rb_h, linear-before-reset only, or NULL */
    int reverse;          /* processes time backwards */
} gru_direction;

typedef struct {
    gru_dtype dtype;
    int input_size, hidden_size, num_directions;
    int linear_before_reset; /* 1: n = phi(Wx + r*(Rh + Rb)); 0: n = phi(Wx + R(r*h)) */
    gru_activation gate_act, cand_act;
    gru_direction dir[2];
} gru_layer;

/* One call's inputs and outputs; arrays C-contiguous, in the layer's dtype. */
typedef struct {
    int batch, steps;
    const void *x;          /* (batch, steps, I) */
    const void *h0;         /* (D, batch, H), or NULL for zeros */
    const int64_t *lengths; /* (batch): PyTorch packed-sequence lengths, or NULL */
    const uint8_t *mask;    /* (batch, steps): Keras mask, nonzero = valid, or NULL */
    void *y;                /* (batch, steps, D*H) out */
    void *h_n;              /* (D, batch, H) out; may alias h0 */
} gru_io;

/* Bytes of scratch one gru_forward call needs. */
size_t gru_workspace_bytes(const gru_layer *layer, int batch, int steps, int num_threads);

/* Runs the layer.  workspace: gru_workspace_bytes(...) bytes, aligned to 64, or
 * NULL to allocate inside.  Returns 0, or -1 when allocation failed. */
int gru_forward(const gru_layer *layer, const gru_io *io, void *workspace, int num_threads);

/* How input projections are computed: auto (packed kernel on AVX2 CPUs,
 * BLAS elsewhere), or forced (for tests and measurements). */
enum { GRU_PROJECT_AUTO = 0, GRU_PROJECT_BLAS = 1, GRU_PROJECT_PACKED = 2 };
void gru_set_projection_path(int path);

/* Applies an activation in place with the core's own code (for tests). */
int gru_apply_activation(gru_dtype dtype, gru_activation act, void *values, int n);

/* 1 when the core was built with OpenMP. */
int gru_has_openmp(void);
/* Name of the matvec kernel chosen for this CPU ("avx2-fma" or "generic"). */
const char *gru_kernel_name(void);

#endif
