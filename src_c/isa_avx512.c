/*
 * AVX-512 (F, BW, VL, DQ) kernels.  Panel-major layout (isa.h), one 512-bit
 * register per panel row: 16 floats, 8 doubles.  float32: hand-written
 * product below; float64: the vector-type template at 8 doubles a panel;
 * bf16 and int8 weights: the shared pair / quad layouts widened to float in
 * registers (panel_reduced_impl.h; CPUs with AVX512_BF16 and VNNI run
 * isa_avx512bf16.c instead).
 */
#include "isa.h"

#if GRU_X86_DISPATCH
#include <math.h>

int gru_avx512_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
}

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#endif

#include <immintrin.h>

#define REAL float
#define GRU_NAME(x) avx512_##x##_f32
#define GRU_EXP gru_expf
#define GRU_TANH gru_tanhf
#define GRU_FABS fabsf
#define GRU_LOG logf
#include "elementwise_impl.h"
#include "template_end.h"

/*
 * float32 product (isa.h gru_matmul_fn), panel-major weights, 16 columns a
 * panel.  The micro-kernel keeps NP panels x MR rows of sums in registers
 * (NP * MR <= 24 of the 32), loads NP weight vectors per k and broadcasts MR
 * inputs straight from their rows (a k-major copy of the rows, as GEMMs
 * usually make, measured no faster here and up to 8% slower on the recurrent
 * shapes).  Loops, outermost first (Goto's order, the weights as the packed
 * B): K in blocks of KC, panels in blocks of NC, blocks of MR rows (whose
 * inputs stay in L1 while every panel pair of the block streams past), panel
 * pairs.  Measured on Zen 4 (118 GFLOP/s a core at either width): 92-98% of
 * that on the workloads' recurrent and projection shapes.  One row (a
 * streamed step) has its own loop: four panels at once with two sums each,
 * weights read once, straight through.
 */
#define KC 512 /* 12 rows of inputs are 24 KB */
#define NC 64  /* a block of weights up to 2 MB (K 512), read from L3 once per 12 rows */
#define MR_MAX 12

static inline __attribute__((always_inline)) __mmask16 avx512_tail_mask(int n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1);
}

/* Sums of NP panels x MR rows over kc steps; first: start from bias (or 0)
 * rather than from y; n_valid: valid columns from the first panel on. */
static inline __attribute__((always_inline)) void
avx512_block_f32(const float *w, size_t stride, const float *x, long ldx, int kc, int NP, int MR,
                 float *y, long ldy, const float *bias, int first, int n_valid)
{
    __m512 acc[4][MR_MAX];
    int q, r, k;
    for (q = 0; q < NP; q++) {
        const __mmask16 m = avx512_tail_mask(n_valid - 16 * q);
        for (r = 0; r < MR; r++)
            acc[q][r] = first ? (bias ? _mm512_loadu_ps(bias + 16 * q) : _mm512_setzero_ps())
                              : _mm512_maskz_loadu_ps(m, y + r * ldy + 16 * q);
    }
    for (k = 0; k < kc; k++) {
        __m512 wv[4];
        for (q = 0; q < NP; q++) wv[q] = _mm512_loadu_ps(w + q * stride + (size_t)k * 16);
        for (r = 0; r < MR; r++) {
            const __m512 xv = _mm512_set1_ps(x[r * ldx + k]);
            for (q = 0; q < NP; q++) acc[q][r] = _mm512_fmadd_ps(wv[q], xv, acc[q][r]);
        }
    }
    for (q = 0; q < NP; q++) {
        const int n = n_valid - 16 * q;
        if (n <= 0) break;
        for (r = 0; r < MR; r++) {
            if (n >= 16)
                _mm512_storeu_ps(y + r * ldy + 16 * q, acc[q][r]);
            else
                _mm512_mask_storeu_ps(y + r * ldy + 16 * q, avx512_tail_mask(n), acc[q][r]);
        }
    }
}

#define BLOCK_CASE(NP, MR)                                                                         \
    case MR:                                                                                       \
        avx512_block_f32(wp, stride, x, ldx, kc, NP, MR, yp, ldy, bp, first, n_left);              \
        break;
#define BLOCK_SWITCH_6(NP)                                                                         \
    BLOCK_CASE(NP, 1) BLOCK_CASE(NP, 2) BLOCK_CASE(NP, 3) BLOCK_CASE(NP, 4) BLOCK_CASE(NP, 5)       \
    BLOCK_CASE(NP, 6)
#define BLOCK_SWITCH_12(NP)                                                                        \
    BLOCK_SWITCH_6(NP) BLOCK_CASE(NP, 7) BLOCK_CASE(NP, 8) BLOCK_CASE(NP, 9) BLOCK_CASE(NP, 10)    \
    BLOCK_CASE(NP, 11) BLOCK_CASE(NP, 12)

/* NP panels from panel p, MR rows of the sliver. */
static void avx512_block_any_f32(const float *w, int K, int p, int NP, int mr, const float *x,
                                 long ldx, int k0, int kc, float *y, long ldy, const float *bias,
                                 int n_valid)
{
    const size_t stride = (size_t)K * 16;
    const float *wp = w + p * stride + (size_t)k0 * 16;
    float *yp = y + p * 16;
    const float *bp = bias ? bias + p * 16 : NULL;
    const int first = k0 == 0, n_left = n_valid - p * 16;
    if (NP == 4) {
        switch (mr) { BLOCK_SWITCH_6(4) default: break; }
    } else if (NP == 2) {
        switch (mr) { BLOCK_SWITCH_12(2) default: break; }
    } else {
        switch (mr) { BLOCK_SWITCH_12(1) default: break; }
    }
}

/* One row: y[j] = bias[j] + sum_k x[k] W[j, k] over panels [p0, p1). */
static void avx512_matvec_f32(const float *w, int K, int p0, int p1, const float *x, float *y,
                              const float *bias, int n_valid, int descending)
{
    const size_t stride = (size_t)K * 16;
    const int n_blocks = (p1 - p0 + 3) / 4;
    int i, q, k;
    for (i = 0; i < n_blocks; i++) {
        const int block = descending ? n_blocks - 1 - i : i;
        const int p = p0 + 4 * block, np = p1 - p < 4 ? p1 - p : 4;
        const float *wp = w + p * stride;
        __m512 even[4], odd[4];
        for (q = 0; q < 4; q++) {
            even[q] = q < np && bias ? _mm512_loadu_ps(bias + (p + q) * 16) : _mm512_setzero_ps();
            odd[q] = _mm512_setzero_ps();
        }
        if (np == 4) {
            for (k = 0; k + 1 < K; k += 2) {
                const __m512 x0 = _mm512_set1_ps(x[k]), x1 = _mm512_set1_ps(x[k + 1]);
                for (q = 0; q < 4; q++) {
                    even[q] = _mm512_fmadd_ps(_mm512_loadu_ps(wp + q * stride + (size_t)k * 16), x0, even[q]);
                    odd[q] = _mm512_fmadd_ps(_mm512_loadu_ps(wp + q * stride + (size_t)k * 16 + 16), x1, odd[q]);
                }
            }
            if (k < K)
                for (q = 0; q < 4; q++)
                    even[q] = _mm512_fmadd_ps(_mm512_loadu_ps(wp + q * stride + (size_t)k * 16),
                                              _mm512_set1_ps(x[k]), even[q]);
        } else {
            for (k = 0; k < K; k++) {
                const __m512 xv = _mm512_set1_ps(x[k]);
                for (q = 0; q < np; q++)
                    even[q] = _mm512_fmadd_ps(_mm512_loadu_ps(wp + q * stride + (size_t)k * 16), xv, even[q]);
            }
        }
        for (q = 0; q < np; q++) {
            const int n = n_valid - (p + q) * 16;
            const __m512 v = _mm512_add_ps(even[q], odd[q]);
            if (n <= 0) break;
            if (n >= 16)
                _mm512_storeu_ps(y + (p + q) * 16, v);
            else
                _mm512_mask_storeu_ps(y + (p + q) * 16, avx512_tail_mask(n), v);
        }
    }
}

void gru_avx512_matmul_f32(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                           const void *x, long ldx, void *y, long ldy, const void *bias, int flags)
{
    const float *W = (const float *)w, *X = (const float *)x, *bv = (const float *)bias;
    float *Y = (float *)y;
    const int end = c1 < n_valid ? c1 : n_valid;
    const int p0 = c0 / 16, p1 = (end + 15) / 16;
    /* few rows: four panels a block, each weight vector used by every row */
    const int NP = rows <= 6 ? 4 : 2, MR = rows <= 6 ? rows : MR_MAX;
    int k0, n0, r0, p;
    (void)N;
    if (p1 <= p0 || rows <= 0) return;
    if (rows == 1) {
        avx512_matvec_f32(W, K, p0, p1, X, Y, bv, n_valid, flags & GRU_MM_DESCENDING);
        return;
    }
    for (k0 = 0; k0 < K; k0 += KC) {
        const int kc = K - k0 < KC ? K - k0 : KC;
        for (n0 = p0; n0 < p1; n0 += NC) {
            const int n1 = n0 + NC < p1 ? n0 + NC : p1;
            for (r0 = 0; r0 < rows; r0 += MR) {
                const int mr = rows - r0 < MR ? rows - r0 : MR;
                const float *xr = X + r0 * ldx + k0;
                float *yr = Y + r0 * ldy;
                for (p = n0; p < n1;) {
                    const int np = n1 - p >= NP ? NP : (n1 - p >= 2 ? 2 : 1);
                    avx512_block_any_f32(W, K, p, np, mr, xr, ldx, k0, kc, yr, ldy, bv, n_valid);
                    p += np;
                }
            }
        }
    }
}

#undef BLOCK_CASE
#undef BLOCK_SWITCH_6
#undef BLOCK_SWITCH_12

/* bf16 and int8 weights (isa.h pair / quad layouts), widened in registers */
#define GRU_NAME(x) avx512_##x
#define GRU_PANEL 16
#define GRU_MAX_ROWS 12
#include "panel_reduced_impl.h"
#include "template_end.h"

#define REAL double
#define GRU_NAME(x) avx512_##x##_f64
#define GRU_EXP exp
#define GRU_TANH tanh
#define GRU_FABS fabs
#define GRU_LOG log
#define GRU_PANEL 8
#define GRU_MAX_ROWS 12
#include "elementwise_impl.h"
#include "panel_kernels_impl.h"
#include "template_end.h"

/* What the AVX-512 BF16/VNNI set (isa_avx512bf16.c) runs unchanged. */
void gru_avx512_matmul_f64(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                           const void *x, long ldx, void *y, long ldy, const void *bias, int flags)
{
    avx512_matmul_f64(w, K, N, c0, c1, n_valid, rows, x, ldx, y, ldy, bias, flags);
}
void gru_avx512_activation_f32(gru_activation act, void *values, long rows, long cols)
{
    avx512_activation_f32(act, values, rows, cols);
}
void gru_avx512_activation_f64(gru_activation act, void *values, long rows, long cols)
{
    avx512_activation_f64(act, values, rows, cols);
}
void gru_avx512_gates_f32(int phase, const gru_gate_row *row) { avx512_gates_f32(phase, row); }
void gru_avx512_gates_f64(int phase, const gru_gate_row *row) { avx512_gates_f64(phase, row); }

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const gru_isa gru_isa_avx512 = {
    "avx512",
    gru_avx512_supported,
    {
        [GRU_FORMAT_F32] = {16, gru_panel_major_bytes_f32, gru_panel_major_pack_f32, gru_avx512_matmul_f32},
        [GRU_FORMAT_F64] = {8, gru_panel_major_bytes_f64, gru_panel_major_pack_f64, avx512_matmul_f64},
        [GRU_FORMAT_BF16] = {16, gru_bf16_pairs_bytes, gru_bf16_pairs_pack, avx512_matmul_bf16},
        [GRU_FORMAT_INT8] = {16, gru_int8_quads_bytes, gru_int8_quads_pack, avx512_matmul_int8},
    },
    {
        [GRU_FLOAT32] = {avx512_activation_f32, avx512_gates_f32},
        [GRU_FLOAT64] = {avx512_activation_f64, avx512_gates_f64},
    },
};
#endif
