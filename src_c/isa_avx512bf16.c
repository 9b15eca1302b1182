/*
 * AVX-512 with BF16 and VNNI (Cooper Lake, Sapphire Rapids, Zen 4 on): the
 * AVX-512 set's float kernels (isa_avx512.c), plus dot-product kernels for
 * reduced-precision weights in the shared layouts of isa.h:
 *
 *  - bf16 (vdpbf16ps): weights in bf16 pairs; each input row is rounded to
 *    bf16 (nearest even) once per call, and
 *        y[j] = bias[j] + sum over pairs of  xb[2g] wb[j,2g] + xb[2g+1] wb[j,2g+1]
 *    with float32 sums.  Two products per weight pair per instruction: twice
 *    the float FMA rate, half the weight bytes.
 *  - int8 (vpdpbusd: unsigned bytes x signed bytes, four products a 32-bit
 *    lane): weights in int8 quads with per-row scales s_j; each input row b is
 *    quantised per call, asymmetrically over its own range [m_b, M_b]:
 *        x ~ m_b + d_b u,  d_b = (M_b - m_b) / 255,  u = rint((x - m_b) / d_b) in [0, 255]
 *    so the unsigned operand is the input and the signed one the weight, and
 *        sum_k W[j,k] x[k] ~ s_j (d_b sum_k q[j,k] u[k] + m_b sum_k q[j,k])
 *    where sum_k q[j,k] is in the int8 trailer (scaled_sum = s_j sum_k q).
 *    Integer sums of at most Q_KC products (2048 * 255 * 127 < 2^31) are
 *    turned to float before the next block of k.
 * Blocks: rows in slivers of up to 8 (inputs converted once per sliver and
 * k block, on the stack), panels two or four at a time.
 */
#include "isa.h"

#if GRU_X86_DISPATCH

static int avx512bf16_supported(void)
{
    __builtin_cpu_init();
    return gru_avx512_supported() && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx512vnni");
}

#if defined(__clang__)
#pragma clang attribute push(                                                                      \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,avx2,fma"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,avx2,fma")
#endif

#include <immintrin.h>

#define MR_MAX 8
#define NC 64        /* panels per block: up to 1 MB of bf16 weights at K 512, re-read per sliver */
#define KC_BF16 1024 /* k per block of converted inputs: 8 rows x 2 KB */
#define KC_INT8 2048 /* k per block of quantised inputs: 8 rows x 2 KB; int32 sums cannot overflow */
/* Up to ROWS_4 rows: one sliver of four-panel blocks; more: slivers of
 * MR_MAX rows by two panels.  Either way at most 16 accumulators: with more
 * (4 x 6, 2 x 12, as the float kernel uses) GCC spills, and VNNI fell from
 * ~410 to ~200 GOP/s (Zen 4; bf16 stays at its ~225 GFLOP/s either way). */
#define ROWS_4 4

static inline __attribute__((always_inline)) __mmask16 tail_mask(int n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1);
}

/* ---- inputs: converted / quantised rows ------------------------------------------- */

/* x[0, kc) as bf16 pairs (a zero bf16 after an odd kc) */
static void bf16_row(const float *x, int kc, uint32_t *out)
{
    int k;
    for (k = 0; k < kc; k += 32) {
        const int n = kc - k;
        const __m512 lo = _mm512_maskz_loadu_ps(tail_mask(n), x + k);
        const __m512 hi = _mm512_maskz_loadu_ps(tail_mask(n - 16), x + k + 16);
        const __m512i pairs = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        _mm512_mask_storeu_epi32(out + k / 2, tail_mask((n + 1) / 2), pairs);
    }
}

/* the range of x[0, K): m and the step d (0 for a constant row) */
static void int8_row_range(const float *x, int K, float *m, float *d)
{
    __m512 lo = _mm512_set1_ps(__builtin_inff()), hi = _mm512_set1_ps(-__builtin_inff());
    float a, b;
    int k;
    for (k = 0; k < K; k += 16) {
        const __mmask16 mask = tail_mask(K - k);
        lo = _mm512_mask_min_ps(lo, mask, lo, _mm512_maskz_loadu_ps(mask, x + k));
        hi = _mm512_mask_max_ps(hi, mask, hi, _mm512_maskz_loadu_ps(mask, x + k));
    }
    a = _mm512_reduce_min_ps(lo);
    b = _mm512_reduce_max_ps(hi);
    *m = a;
    *d = (b - a) / 255.0f;
}

/* u = rint((x - m) / d) for x[0, kc), zero bytes up to a multiple of 4 */
static void int8_row_quantise(const float *x, int kc, float m, float d, uint8_t *out)
{
    const __m512 vm = _mm512_set1_ps(m), inv = _mm512_set1_ps(d > 0 ? 1.0f / d : 0.0f);
    int k;
    for (k = 0; k < kc; k += 16) {
        const __mmask16 mask = tail_mask(kc - k);
        const __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + k), vm), inv);
        _mm_storeu_si128((__m128i *)(out + k), _mm512_cvtusepi32_epi8(_mm512_maskz_cvtps_epi32(mask, v)));
    }
}

/* ---- bf16 ---------------------------------------------------------------------- */

/* NP panels from w (stride 32-bit lanes apart) x MR rows of pairs xb (ldxb apart),
 * over n_pairs; first: start from bias (or 0), else from y. */
static inline __attribute__((always_inline)) void
bf16_block(const uint32_t *w, size_t stride, const uint32_t *xb, int ldxb, int n_pairs, int NP,
           int MR, float *y, long ldy, const float *bias, int first, int n_valid)
{
    __m512 acc[4][MR_MAX], odd[4];
    int q, r, g;
    for (q = 0; q < NP; q++) {
        const __mmask16 m = tail_mask(n_valid - 16 * q);
        for (r = 0; r < MR; r++)
            acc[q][r] = first ? (bias ? _mm512_loadu_ps(bias + 16 * q) : _mm512_setzero_ps())
                              : _mm512_maskz_loadu_ps(m, y + r * ldy + 16 * q);
        odd[q] = _mm512_setzero_ps();
    }
    if (MR == 1) { /* one row: two chains a panel, for enough independent sums */
        for (g = 0; g + 1 < n_pairs; g += 2) {
            const __m512bh x0 = (__m512bh)_mm512_set1_epi32((int)xb[g]);
            const __m512bh x1 = (__m512bh)_mm512_set1_epi32((int)xb[g + 1]);
            for (q = 0; q < NP; q++) {
                const uint32_t *wq = w + q * stride + (size_t)g * 16;
                acc[q][0] = _mm512_dpbf16_ps(acc[q][0], x0, (__m512bh)_mm512_loadu_si512(wq));
                odd[q] = _mm512_dpbf16_ps(odd[q], x1, (__m512bh)_mm512_loadu_si512(wq + 16));
            }
        }
        for (; g < n_pairs; g++)
            for (q = 0; q < NP; q++)
                acc[q][0] = _mm512_dpbf16_ps(acc[q][0], (__m512bh)_mm512_set1_epi32((int)xb[g]),
                                             (__m512bh)_mm512_loadu_si512(w + q * stride + (size_t)g * 16));
        for (q = 0; q < NP; q++) acc[q][0] = _mm512_add_ps(acc[q][0], odd[q]);
    } else {
        for (g = 0; g < n_pairs; g++) {
            __m512bh wv[4];
            for (q = 0; q < NP; q++) wv[q] = (__m512bh)_mm512_loadu_si512(w + q * stride + (size_t)g * 16);
            for (r = 0; r < MR; r++) {
                const __m512bh xv = (__m512bh)_mm512_set1_epi32((int)xb[r * ldxb + g]);
                for (q = 0; q < NP; q++) acc[q][r] = _mm512_dpbf16_ps(acc[q][r], xv, wv[q]);
            }
        }
    }
    for (q = 0; q < NP; q++) {
        const int n = n_valid - 16 * q;
        if (n <= 0) break;
        for (r = 0; r < MR; r++) _mm512_mask_storeu_ps(y + r * ldy + 16 * q, tail_mask(n), acc[q][r]);
    }
}

/* ---- int8 ---------------------------------------------------------------------- */

/* NP panels x MR rows of quantised inputs xq (ldxq bytes apart) over n_quads;
 * first: y = bias + scaled_sum m + scale d sum, else y += scale d sum. */
static inline __attribute__((always_inline)) void
int8_block(const int32_t *w, size_t stride, const uint8_t *xq, int ldxq, int n_quads, int NP, int MR,
           float *y, long ldy, const float *bias, const float *scale, const float *scaled_sum,
           const float *m, const float *d, int first, int n_valid)
{
    __m512i acc[4][MR_MAX], odd[4];
    int q, r, g;
    for (q = 0; q < NP; q++) {
        for (r = 0; r < MR; r++) acc[q][r] = _mm512_setzero_si512();
        odd[q] = _mm512_setzero_si512();
    }
    if (MR == 1) {
        for (g = 0; g + 1 < n_quads; g += 2) {
            int32_t x0, x1;
            memcpy(&x0, xq + 4 * g, 4);
            memcpy(&x1, xq + 4 * g + 4, 4);
            for (q = 0; q < NP; q++) {
                const int32_t *wq = w + q * stride + (size_t)g * 16;
                acc[q][0] = _mm512_dpbusd_epi32(acc[q][0], _mm512_set1_epi32(x0), _mm512_loadu_si512(wq));
                odd[q] = _mm512_dpbusd_epi32(odd[q], _mm512_set1_epi32(x1), _mm512_loadu_si512(wq + 16));
            }
        }
        for (; g < n_quads; g++) {
            int32_t x0;
            memcpy(&x0, xq + 4 * g, 4);
            for (q = 0; q < NP; q++)
                acc[q][0] = _mm512_dpbusd_epi32(acc[q][0], _mm512_set1_epi32(x0),
                                                _mm512_loadu_si512(w + q * stride + (size_t)g * 16));
        }
        for (q = 0; q < NP; q++) acc[q][0] = _mm512_add_epi32(acc[q][0], odd[q]);
    } else {
        for (g = 0; g < n_quads; g++) {
            __m512i wv[4];
            for (q = 0; q < NP; q++) wv[q] = _mm512_loadu_si512(w + q * stride + (size_t)g * 16);
            for (r = 0; r < MR; r++) {
                int32_t xv;
                memcpy(&xv, xq + (size_t)r * ldxq + 4 * g, 4);
                for (q = 0; q < NP; q++)
                    acc[q][r] = _mm512_dpbusd_epi32(acc[q][r], _mm512_set1_epi32(xv), wv[q]);
            }
        }
    }
    for (q = 0; q < NP; q++) {
        const int n = n_valid - 16 * q;
        const __mmask16 mask = tail_mask(n);
        __m512 sc, base_m;
        if (n <= 0) break;
        sc = _mm512_maskz_loadu_ps(mask, scale + 16 * q);
        base_m = _mm512_maskz_loadu_ps(mask, scaled_sum + 16 * q);
        for (r = 0; r < MR; r++) {
            float *yr = y + r * ldy + 16 * q;
            const __m512 sum = _mm512_cvtepi32_ps(acc[q][r]);
            __m512 out;
            if (first) {
                out = bias ? _mm512_maskz_loadu_ps(mask, bias + 16 * q) : _mm512_setzero_ps();
                out = _mm512_fmadd_ps(base_m, _mm512_set1_ps(m[r]), out);
            } else {
                out = _mm512_maskz_loadu_ps(mask, yr);
            }
            out = _mm512_fmadd_ps(_mm512_mul_ps(sc, _mm512_set1_ps(d[r])), sum, out);
            _mm512_mask_storeu_ps(yr, mask, out);
        }
    }
}

/* ---- the products ----------------------------------------------------------------- */

#define BF16_CASE(NP, MR)                                                                          \
    case MR:                                                                                       \
        bf16_block(wp, stride, xb, ldxb, n_pairs, NP, MR, yp, ldy, bp, first, n_left);             \
        break;
#define INT8_CASE(NP, MR)                                                                          \
    case MR:                                                                                       \
        int8_block(wp, stride, xq, KC_INT8, n_quads, NP, MR, yp, ldy, bp, sp, ssp, lo, step,       \
                   first, n_left);                                                                 \
        break;
#define CASES_4(CASE, NP) CASE(NP, 1) CASE(NP, 2) CASE(NP, 3) CASE(NP, 4)
#define CASES_8(CASE, NP) CASES_4(CASE, NP) CASE(NP, 5) CASE(NP, 6) CASE(NP, 7) CASE(NP, 8)

/* How a call is blocked: panels in blocks of NC; rows in slivers of MR (few
 * rows: one sliver of four-panel blocks); each sliver's inputs converted once
 * per k block.  One row visits its four-panel blocks in the order flags ask. */
typedef struct {
    int p0, p1, NP, MR;
} blocking;

static blocking block_call(int c0, int c1, int n_valid, int rows)
{
    const int end = c1 < n_valid ? c1 : n_valid;
    blocking b;
    b.p0 = c0 / 16;
    b.p1 = (end + 15) / 16;
    b.NP = rows <= ROWS_4 ? 4 : 2;
    b.MR = rows <= ROWS_4 ? rows : MR_MAX;
    return b;
}

static void avx512bf16_matmul_bf16(const void *w, int K, int N, int c0, int c1, int n_valid,
                                   int rows, const void *x, long ldx, void *y, long ldy,
                                   const void *bias, int flags)
{
    const blocking bl = block_call(c0, c1, n_valid, rows);
    const size_t stride = (size_t)(K + 1) / 2 * 16; /* 32-bit lanes per panel */
    const uint32_t *W = (const uint32_t *)w;
    const float *X = (const float *)x, *B = (const float *)bias;
    float *Y = (float *)y;
    uint32_t xbuf[MR_MAX * KC_BF16 / 2];
    const int ldxb = KC_BF16 / 2;
    int n0, r0, k0, p, r;
    (void)N;
    if (bl.p1 <= bl.p0 || rows <= 0) return;
    for (n0 = bl.p0; n0 < bl.p1; n0 += NC) {
        const int n1 = n0 + NC < bl.p1 ? n0 + NC : bl.p1;
        for (r0 = 0; r0 < rows; r0 += bl.MR) {
            const int mr = rows - r0 < bl.MR ? rows - r0 : bl.MR;
            for (k0 = 0; k0 < K; k0 += KC_BF16) {
                const int kc = K - k0 < KC_BF16 ? K - k0 : KC_BF16, n_pairs = (kc + 1) / 2;
                const int first = k0 == 0, n_blocks = (n1 - n0 + bl.NP - 1) / bl.NP;
                const uint32_t *xb = xbuf;
                int i;
                for (r = 0; r < mr; r++) bf16_row(X + (size_t)(r0 + r) * ldx + k0, kc, xbuf + r * ldxb);
                for (i = 0; i < n_blocks; i++) {
                    const int blk = mr == 1 && (flags & GRU_MM_DESCENDING) ? n_blocks - 1 - i : i;
                    const int np = n1 - (n0 + blk * bl.NP) < bl.NP ? n1 - (n0 + blk * bl.NP) : bl.NP;
                    const uint32_t *wp;
                    float *yp;
                    const float *bp;
                    int n_left;
                    p = n0 + blk * bl.NP;
                    wp = W + p * stride + (size_t)k0 / 2 * 16;
                    yp = Y + (size_t)r0 * ldy + p * 16;
                    bp = B ? B + p * 16 : NULL;
                    n_left = n_valid - p * 16;
                    if (np >= 4) {
                        switch (mr) { CASES_4(BF16_CASE, 4) default: break; }
                    } else if (np >= 2) {
                        switch (mr) { CASES_8(BF16_CASE, 2) default: break; }
                        if (np == 3) {
                            wp += 2 * stride, yp += 32, bp = bp ? bp + 32 : NULL, n_left -= 32;
                            switch (mr) { CASES_8(BF16_CASE, 1) default: break; }
                        }
                    } else {
                        switch (mr) { CASES_8(BF16_CASE, 1) default: break; }
                    }
                }
            }
        }
    }
}

static void avx512bf16_matmul_int8(const void *w, int K, int N, int c0, int c1, int n_valid,
                                   int rows, const void *x, long ldx, void *y, long ldy,
                                   const void *bias, int flags)
{
    const blocking bl = block_call(c0, c1, n_valid, rows);
    const int Kp = (K + 3) / 4 * 4;
    const size_t stride = (size_t)Kp / 4 * 16; /* 32-bit lanes per panel */
    const int32_t *W = (const int32_t *)w;
    const float *scale = gru_int8_trailer(w, N, Kp), *scaled_sum = scale + N;
    const float *X = (const float *)x, *B = (const float *)bias;
    float *Y = (float *)y;
    uint8_t xq[MR_MAX * KC_INT8];
    float lo[MR_MAX], step[MR_MAX];
    int n0, r0, k0, p, r;
    if (bl.p1 <= bl.p0 || rows <= 0) return;
    for (n0 = bl.p0; n0 < bl.p1; n0 += NC) {
        const int n1 = n0 + NC < bl.p1 ? n0 + NC : bl.p1;
        for (r0 = 0; r0 < rows; r0 += bl.MR) {
            const int mr = rows - r0 < bl.MR ? rows - r0 : bl.MR;
            for (r = 0; r < mr; r++) int8_row_range(X + (size_t)(r0 + r) * ldx, K, &lo[r], &step[r]);
            for (k0 = 0; k0 < K; k0 += KC_INT8) {
                const int kc = K - k0 < KC_INT8 ? K - k0 : KC_INT8, n_quads = (kc + 3) / 4;
                const int first = k0 == 0, n_blocks = (n1 - n0 + bl.NP - 1) / bl.NP;
                int i;
                for (r = 0; r < mr; r++)
                    int8_row_quantise(X + (size_t)(r0 + r) * ldx + k0, kc, lo[r], step[r],
                                      xq + (size_t)r * KC_INT8);
                for (i = 0; i < n_blocks; i++) {
                    const int blk = mr == 1 && (flags & GRU_MM_DESCENDING) ? n_blocks - 1 - i : i;
                    const int np = n1 - (n0 + blk * bl.NP) < bl.NP ? n1 - (n0 + blk * bl.NP) : bl.NP;
                    const int32_t *wp;
                    float *yp;
                    const float *bp, *sp, *ssp;
                    int n_left;
                    p = n0 + blk * bl.NP;
                    wp = W + p * stride + (size_t)k0 / 4 * 16;
                    yp = Y + (size_t)r0 * ldy + p * 16;
                    bp = B ? B + p * 16 : NULL;
                    sp = scale + p * 16;
                    ssp = scaled_sum + p * 16;
                    n_left = n_valid - p * 16;
                    if (np >= 4) {
                        switch (mr) { CASES_4(INT8_CASE, 4) default: break; }
                    } else if (np >= 2) {
                        switch (mr) { CASES_8(INT8_CASE, 2) default: break; }
                        if (np == 3) {
                            wp += 2 * stride, yp += 32, bp = bp ? bp + 32 : NULL, sp += 32, ssp += 32;
                            n_left -= 32;
                            switch (mr) { CASES_8(INT8_CASE, 1) default: break; }
                        }
                    } else {
                        switch (mr) { CASES_8(INT8_CASE, 1) default: break; }
                    }
                }
            }
        }
    }
}

#undef BF16_CASE
#undef INT8_CASE
#undef CASES_4
#undef CASES_8

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const gru_isa gru_isa_avx512bf16 = {
    "avx512bf16",
    avx512bf16_supported,
    {
        [GRU_FORMAT_F32] = {16, gru_panel_major_bytes_f32, gru_panel_major_pack_f32, gru_avx512_matmul_f32},
        [GRU_FORMAT_F64] = {8, gru_panel_major_bytes_f64, gru_panel_major_pack_f64, gru_avx512_matmul_f64},
        [GRU_FORMAT_BF16] = {16, gru_bf16_pairs_bytes, gru_bf16_pairs_pack, avx512bf16_matmul_bf16},
        [GRU_FORMAT_INT8] = {16, gru_int8_quads_bytes, gru_int8_quads_pack, avx512bf16_matmul_int8},
    },
    {
        [GRU_FLOAT32] = {gru_avx512_activation_f32, gru_avx512_gates_f32},
        [GRU_FLOAT64] = {gru_avx512_activation_f64, gru_avx512_gates_f64},
    },
};
#endif
