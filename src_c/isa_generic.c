/*
 * Portable C kernels: any CPU, any C99 compiler.  The packed layout is the
 * transposed matrix, (K, N) row-major with N padded to GENERIC_PANEL, so that
 *  - the product is a sum of rows of W^T scaled by x, a contiguous inner loop
 *    that compilers vectorise for whatever SIMD the target has, and
 *  - it is also what BLAS takes (sgemm "N", "N"), used for many-row products
 *    when the caller set a BLAS (gru_set_blas): on CPUs without a kernel set of
 *    their own (aarch64 before isa_neon.c) that is the fast path.
 */
#include <math.h>
#include <string.h>

#include "isa.h"

/* Columns are padded (and work is split) in units of this many. */
#define GENERIC_PANEL 8
/* Rows and columns one block of the portable product keeps in its accumulators. */
#define GENERIC_ROWS 4
#define GENERIC_COLS 64
/* From this many rows on, BLAS (when set) computes the product. */
#define GENERIC_BLAS_MIN_ROWS 16

static int generic_supported(void) { return 1; }

#define REAL float
#define GRU_NAME(x) generic_##x##_f32
#define GRU_EXP gru_expf
#define GRU_TANH gru_tanhf
#define GRU_FABS fabsf
#define GRU_LOG logf
#include "elementwise_impl.h"
#include "template_end.h"

#define REAL double
#define GRU_NAME(x) generic_##x##_f64
#define GRU_EXP exp
#define GRU_TANH tanh
#define GRU_FABS fabs
#define GRU_LOG log
#include "elementwise_impl.h"
#include "template_end.h"

/* The layout and the product, once per dtype. */
#define GENERIC_KERNELS(REAL, SUFFIX, GEMM)                                                        \
    static void generic_pack_##SUFFIX(const gru_weight_format *fmt, void *dst, const void *src,    \
                                      long ld_n, long ld_k, int blocks, int n, int K)              \
    {                                                                                              \
        const int np = (n + fmt->panel - 1) / fmt->panel * fmt->panel, N = blocks * np;            \
        const REAL *s = (const REAL *)src;                                                         \
        REAL *d = (REAL *)dst;                                                                     \
        int j, i, k;                                                                               \
        memset(d, 0, (size_t)N * K * sizeof(REAL));                                               \
        for (j = 0; j < blocks; j++)                                                               \
            for (i = 0; i < n; i++)                                                                \
                for (k = 0; k < K; k++)                                                            \
                    d[(size_t)k * N + j * np + i] = s[((size_t)j * n + i) * ld_n + (size_t)k * ld_k]; \
    }                                                                                              \
                                                                                                   \
    static void generic_matmul_##SUFFIX(const void *w, int K, int N, int c0, int c1, int n_valid,  \
                                        int rows, const void *x, long ldx, void *y, long ldy,      \
                                        const void *bias, int flags)                               \
    {                                                                                              \
        const REAL *W = (const REAL *)w, *X = (const REAL *)x, *bv = (const REAL *)bias;          \
        REAL *Y = (REAL *)y;                                                                       \
        const int end = c1 < n_valid ? c1 : n_valid;                                               \
        int b0, j0, r, j, k;                                                                       \
        (void)flags;                                                                               \
        if (end <= c0 || rows <= 0) return;                                                        \
        if (GEMM && rows >= GENERIC_BLAS_MIN_ROWS && gru_projection_path != GRU_PROJECT_KERNEL) {  \
            /* column-major: Y^T (m, rows) = W^T (m, K) X^T (K, rows) */                           \
            char no = 'N';                                                                         \
            int m = end - c0, nn = rows, kk = K, lda = N, ldb = (int)ldx, ldc = (int)ldy;          \
            REAL one = 1, zero = 0;                                                                \
            GEMM(&no, &no, &m, &nn, &kk, &one, (REAL *)W + c0, &lda, (REAL *)X, &ldb, &zero,       \
                 Y + c0, &ldc);                                                                    \
            if (bv)                                                                                \
                for (r = 0; r < rows; r++)                                                         \
                    for (j = c0; j < end; j++) Y[r * ldy + j] += bv[j];                            \
            return;                                                                                \
        }                                                                                          \
        for (b0 = 0; b0 < rows; b0 += GENERIC_ROWS) {                                              \
            const int nb = rows - b0 < GENERIC_ROWS ? rows - b0 : GENERIC_ROWS;                    \
            for (j0 = c0; j0 < end; j0 += GENERIC_COLS) {                                          \
                const int nj = end - j0 < GENERIC_COLS ? end - j0 : GENERIC_COLS;                  \
                REAL acc[GENERIC_ROWS][GENERIC_COLS];                                              \
                for (r = 0; r < nb; r++)                                                           \
                    for (j = 0; j < nj; j++) acc[r][j] = bv ? bv[j0 + j] : 0;                      \
                for (k = 0; k < K; k++) {                                                          \
                    const REAL *wk = W + (size_t)k * N + j0;                                       \
                    for (r = 0; r < nb; r++) {                                                     \
                        const REAL xv = X[(b0 + r) * ldx + k];                                     \
                        REAL *a = acc[r];                                                          \
                        for (j = 0; j < nj; j++) a[j] += xv * wk[j];                               \
                    }                                                                              \
                }                                                                                  \
                for (r = 0; r < nb; r++)                                                           \
                    memcpy(Y + (b0 + r) * ldy + j0, acc[r], (size_t)nj * sizeof(REAL));           \
            }                                                                                      \
        }                                                                                          \
    }

#define GENERIC_SGEMM gru_blas_sgemm
#define GENERIC_DGEMM gru_blas_dgemm
GENERIC_KERNELS(float, f32, GENERIC_SGEMM)
GENERIC_KERNELS(double, f64, GENERIC_DGEMM)

/*
 * Reduced-precision weights, the same transposed (K, N) layout: bf16 as
 * uint16, int8 with the int8 trailer (isa.h; the row scales applied to the
 * sums at the end).  Each weight row k is widened to float once per block of
 * columns and used for every batch row of the block; the inputs stay float32,
 * so the product is exact to float rounding for the weights as stored.
 */
static size_t generic_bytes_bf16(const gru_weight_format *fmt, int N, int K)
{
    (void)fmt;
    return (size_t)N * K * sizeof(uint16_t);
}

static size_t generic_bytes_int8(const gru_weight_format *fmt, int N, int K)
{
    (void)fmt;
    return gru_int8_data_bytes(N, K) + 2 * (size_t)N * sizeof(float);
}

static void generic_pack_bf16(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                              long ld_k, int blocks, int n, int K)
{
    const int np = (n + fmt->panel - 1) / fmt->panel * fmt->panel, N = blocks * np;
    const float *s = (const float *)src;
    uint16_t *d = (uint16_t *)dst;
    int j, i, k;
    memset(d, 0, (size_t)N * K * sizeof(uint16_t));
    for (j = 0; j < blocks; j++)
        for (i = 0; i < n; i++)
            for (k = 0; k < K; k++)
                d[(size_t)k * N + j * np + i] =
                    gru_bf16_from_float(s[((size_t)j * n + i) * ld_n + (size_t)k * ld_k]);
}

static void generic_pack_int8(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                              long ld_k, int blocks, int n, int K)
{
    const int np = (n + fmt->panel - 1) / fmt->panel * fmt->panel, N = blocks * np;
    const float *s = (const float *)src;
    int8_t *d = (int8_t *)dst;
    float *scale = (float *)(d + gru_int8_data_bytes(N, K)), *scaled_sum = scale + N;
    int j, i, k;
    memset(d, 0, generic_bytes_int8(fmt, N, K));
    for (j = 0; j < blocks; j++)
        for (i = 0; i < n; i++) {
            const float *from = s + ((size_t)j * n + i) * ld_n;
            const float sc = gru_int8_row_scale(from, ld_k, K);
            long sum = 0;
            for (k = 0; k < K; k++) {
                const int8_t q = gru_int8_quantize(from[(size_t)k * ld_k], sc);
                d[(size_t)k * N + j * np + i] = q;
                sum += q;
            }
            scale[j * np + i] = sc;
            scaled_sum[j * np + i] = sc * (float)sum;
        }
}

/* WIDEN(k, j): weight row k, column j, as float (before its row scale) */
#define GENERIC_REDUCED_MATMUL(SUFFIX, WTYPE, WIDEN, SCALE)                                       \
    static void generic_matmul_##SUFFIX(const void *w, int K, int N, int c0, int c1, int n_valid, \
                                        int rows, const void *x, long ldx, void *y, long ldy,     \
                                        const void *bias, int flags)                              \
    {                                                                                             \
        const WTYPE *W = (const WTYPE *)w;                                                        \
        const float *X = (const float *)x, *bv = (const float *)bias;                             \
        float *Y = (float *)y;                                                                    \
        const int end = c1 < n_valid ? c1 : n_valid;                                              \
        int b0, j0, r, j, k;                                                                      \
        (void)flags;                                                                              \
        if (end <= c0 || rows <= 0) return;                                                       \
        for (j0 = c0; j0 < end; j0 += GENERIC_COLS) {                                             \
            const int nj = end - j0 < GENERIC_COLS ? end - j0 : GENERIC_COLS;                     \
            for (b0 = 0; b0 < rows; b0 += GENERIC_ROWS) {                                         \
                const int nb = rows - b0 < GENERIC_ROWS ? rows - b0 : GENERIC_ROWS;               \
                float acc[GENERIC_ROWS][GENERIC_COLS], wf[GENERIC_COLS];                          \
                for (r = 0; r < nb; r++)                                                          \
                    for (j = 0; j < nj; j++) acc[r][j] = 0;                                       \
                for (k = 0; k < K; k++) {                                                         \
                    const WTYPE *wk = W + (size_t)k * N + j0;                                     \
                    for (j = 0; j < nj; j++) wf[j] = WIDEN(wk[j]);                                \
                    for (r = 0; r < nb; r++) {                                                    \
                        const float xv = X[(b0 + r) * ldx + k];                                   \
                        float *a = acc[r];                                                        \
                        for (j = 0; j < nj; j++) a[j] += xv * wf[j];                              \
                    }                                                                             \
                }                                                                                 \
                for (r = 0; r < nb; r++)                                                          \
                    for (j = 0; j < nj; j++)                                                      \
                        Y[(b0 + r) * ldy + j0 + j] = (bv ? bv[j0 + j] : 0) + SCALE(j0 + j) * acc[r][j]; \
            }                                                                                     \
        }                                                                                         \
    }

#define GENERIC_WIDEN_BF16(v) gru_float_from_bf16(v)
#define GENERIC_SCALE_ONE(j) 1.0f
GENERIC_REDUCED_MATMUL(bf16, uint16_t, GENERIC_WIDEN_BF16, GENERIC_SCALE_ONE)
#define GENERIC_WIDEN_INT8(v) ((float)(v))
#define GENERIC_SCALE_ROW(j) gru_int8_trailer(w, N, K)[j]
GENERIC_REDUCED_MATMUL(int8, int8_t, GENERIC_WIDEN_INT8, GENERIC_SCALE_ROW)

const gru_isa gru_isa_generic = {
    "generic",
    generic_supported,
    {
        [GRU_FORMAT_F32] = {GENERIC_PANEL, gru_panel_major_bytes_f32, generic_pack_f32, generic_matmul_f32},
        [GRU_FORMAT_F64] = {GENERIC_PANEL, gru_panel_major_bytes_f64, generic_pack_f64, generic_matmul_f64},
        [GRU_FORMAT_BF16] = {GENERIC_PANEL, generic_bytes_bf16, generic_pack_bf16, generic_matmul_bf16},
        [GRU_FORMAT_INT8] = {GENERIC_PANEL, generic_bytes_int8, generic_pack_int8, generic_matmul_int8},
    },
    {
        [GRU_FLOAT32] = {generic_activation_f32, generic_gates_f32},
        [GRU_FLOAT64] = {generic_activation_f64, generic_gates_f64},
    },
};
