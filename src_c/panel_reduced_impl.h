/*
 * Reduced-precision products (isa.h gru_matmul_fn) over the shared SIMD
 * layouts of isa.h (bf16 pairs, int8 quads), with the weights widened to
 * float32 in registers and float32 inputs: the product is exact to float
 * rounding for the weights as stored, on any SIMD set (the sets with dot-product
 * instructions have their own kernels, isa_avx512bf16.c, isa_neon.c).
 * Written with GCC/Clang vector types, one panel row of GRU_PANEL lanes a
 * vector, so the same source is an AVX2 (8), AVX-512 (16) or NEON kernel
 * under the includer's target pragma.  Included with GRU_NAME(x), GRU_PANEL
 * and GRU_MAX_ROWS (batch rows per block) defined.
 *
 * Widening, per 32-bit lane of a loaded panel row:
 *   bf16 pair (w0 | w1 << 16):   w0 = lane << 16, w1 = lane & 0xffff0000 (as float bits)
 *   int8 quad (q0..q3, q0 lowest): q_i = (lane << (24 - 8 i)) >> 24 (arithmetic), then to float
 * Sums: y = bias + sum_k x[k] w[k]  (bf16);  y = bias + s_j sum_k x[k] q[k]  (int8).
 */

typedef float GRU_NAME(rvf) __attribute__((vector_size(GRU_PANEL * 4), aligned(4), may_alias));
typedef int32_t GRU_NAME(rvi) __attribute__((vector_size(GRU_PANEL * 4), aligned(4), may_alias));
typedef uint32_t GRU_NAME(rvu) __attribute__((vector_size(GRU_PANEL * 4), aligned(4), may_alias));

/* sub-k `sub` of group lane vector u, as float weights; S: k per lane (2 bf16, 4 int8) */
static inline __attribute__((always_inline)) GRU_NAME(rvf) GRU_NAME(widen)(GRU_NAME(rvu) u, int S,
                                                                           int sub)
{
    typedef GRU_NAME(rvf) vf;
    typedef GRU_NAME(rvi) vi;
    if (S == 2) {
        if (sub == 0) return (vf)(u << 16);
        return (vf)(u & 0xffff0000u);
    } else {
        const vi lane = (vi)u;
        const vi q = sub == 3 ? lane >> 24 : (lane << (24 - 8 * sub)) >> 24;
        return __builtin_convertvector(q, vf);
    }
}

static inline __attribute__((always_inline)) void GRU_NAME(reduced_store)(float *out, GRU_NAME(rvf) v,
                                                                          int n)
{
    int i;
    if (n >= GRU_PANEL)
        *(GRU_NAME(rvf) *)out = v;
    else
        for (i = 0; i < n; i++) out[i] = v[i];
}

/* The result of one panel: bias + scale * sum (int8) or bias + sum (bf16). */
static inline __attribute__((always_inline)) GRU_NAME(rvf)
GRU_NAME(reduced_finish)(GRU_NAME(rvf) sum, const float *bias, const float *scale)
{
    typedef GRU_NAME(rvf) vf;
    if (scale) sum *= *(const vf *)scale;
    if (bias) sum += *(const vf *)bias;
    return sum;
}

/* NP panels (w, w + stride, ... in 32-bit lanes) x NB rows over K; S k per lane. */
static inline __attribute__((always_inline)) void
GRU_NAME(reduced_block)(const uint32_t *w, size_t stride, int K, int S, int NP, int NB,
                        const float *x, long ldx, float *y, long ldy, const float *bias,
                        const float *scale, int n_valid)
{
    typedef GRU_NAME(rvf) vf;
    typedef GRU_NAME(rvu) vu;
    vf acc[2][GRU_MAX_ROWS];
    const int groups = (K + S - 1) / S;
    int q, b, g, sub;
    for (q = 0; q < NP; q++)
        for (b = 0; b < NB; b++) acc[q][b] = (vf){0};
    for (g = 0; g < groups; g++) {
        const int subs = K - g * S < S ? K - g * S : S;
        vu u[2];
        for (q = 0; q < NP; q++) u[q] = *(const vu *)(w + q * stride + (size_t)g * GRU_PANEL);
        for (sub = 0; sub < S; sub++) {
            vf wv[2];
            if (sub >= subs) break;
            for (q = 0; q < NP; q++) wv[q] = GRU_NAME(widen)(u[q], S, sub);
            for (b = 0; b < NB; b++) {
                const float xv = x[b * ldx + g * S + sub];
                for (q = 0; q < NP; q++) acc[q][b] += wv[q] * xv;
            }
        }
    }
    for (q = 0; q < NP; q++)
        for (b = 0; b < NB; b++)
            GRU_NAME(reduced_store)(y + b * ldy + q * GRU_PANEL,
                                    GRU_NAME(reduced_finish)(acc[q][b],
                                                             bias ? bias + q * GRU_PANEL : NULL,
                                                             scale ? scale + q * GRU_PANEL : NULL),
                                    n_valid - q * GRU_PANEL);
}

/* One row over NP <= 4 panels: two sums a panel (even and odd sub-k), for
 * enough independent chains to hide the FMA latency. */
static inline __attribute__((always_inline)) void
GRU_NAME(reduced_row)(const uint32_t *w, size_t stride, int K, int S, int NP, const float *x,
                      float *y, const float *bias, const float *scale, int n_valid)
{
    typedef GRU_NAME(rvf) vf;
    typedef GRU_NAME(rvu) vu;
    vf even[4], odd[4];
    const int groups = (K + S - 1) / S, full = K / S;
    int q, g, sub;
    for (q = 0; q < NP; q++) even[q] = odd[q] = (vf){0};
    for (g = 0; g < full; g++) {
        const float *xg = x + g * S;
        for (q = 0; q < NP; q++) {
            const vu u = *(const vu *)(w + q * stride + (size_t)g * GRU_PANEL);
            even[q] += GRU_NAME(widen)(u, S, 0) * xg[0];
            odd[q] += GRU_NAME(widen)(u, S, 1) * xg[1];
            if (S == 4) {
                even[q] += GRU_NAME(widen)(u, S, 2) * xg[2];
                odd[q] += GRU_NAME(widen)(u, S, 3) * xg[3];
            }
        }
    }
    for (g = full; g < groups; g++) /* the last, partial group: no reads past x[K - 1] */
        for (q = 0; q < NP; q++) {
            const vu u = *(const vu *)(w + q * stride + (size_t)g * GRU_PANEL);
            for (sub = 0; sub < K - g * S; sub++) even[q] += GRU_NAME(widen)(u, S, sub) * x[g * S + sub];
        }
    for (q = 0; q < NP; q++)
        GRU_NAME(reduced_store)(y + q * GRU_PANEL,
                                GRU_NAME(reduced_finish)(even[q] + odd[q],
                                                         bias ? bias + q * GRU_PANEL : NULL,
                                                         scale ? scale + q * GRU_PANEL : NULL),
                                n_valid - q * GRU_PANEL);
}

#define GRU_REDUCED_CASE(NP, NB)                                                                   \
    case NB:                                                                                       \
        GRU_NAME(reduced_block)(wp, stride, K, S, NP, NB, xb, ldx, yb, ldy, bp, sp, n_left);       \
        break;
#if GRU_MAX_ROWS > 4
#define GRU_REDUCED_CASES_MID(NP) GRU_REDUCED_CASE(NP, 5) GRU_REDUCED_CASE(NP, 6)
#else
#define GRU_REDUCED_CASES_MID(NP)
#endif
#if GRU_MAX_ROWS > 6
#define GRU_REDUCED_CASES_HIGH(NP)                                                                 \
    GRU_REDUCED_CASE(NP, 7) GRU_REDUCED_CASE(NP, 8) GRU_REDUCED_CASE(NP, 9)                        \
    GRU_REDUCED_CASE(NP, 10) GRU_REDUCED_CASE(NP, 11) GRU_REDUCED_CASE(NP, 12)
#else
#define GRU_REDUCED_CASES_HIGH(NP)
#endif
#define GRU_REDUCED_SWITCH(NP)                                                                     \
    switch (nb) {                                                                                  \
        GRU_REDUCED_CASE(NP, 1) GRU_REDUCED_CASE(NP, 2) GRU_REDUCED_CASE(NP, 3)                    \
        GRU_REDUCED_CASE(NP, 4) GRU_REDUCED_CASES_MID(NP) GRU_REDUCED_CASES_HIGH(NP)               \
    default: break;                                                                                \
    }

/* S k per 32-bit lane: 2 (bf16 pairs) or 4 (int8 quads, whose trailer holds the scales) */
static inline __attribute__((always_inline)) void
GRU_NAME(reduced_matmul)(int S, const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                         const void *x, long ldx, void *y, long ldy, const void *bias, int flags)
{
    const int Kp = (K + S - 1) / S * S;
    const size_t stride = (size_t)Kp / S * GRU_PANEL; /* 32-bit lanes per panel */
    const int end = c1 < n_valid ? c1 : n_valid;
    const int p0 = c0 / GRU_PANEL, p1 = (end + GRU_PANEL - 1) / GRU_PANEL;
    const float *scale = S == 4 ? gru_int8_trailer(w, N, Kp) : NULL;
    const float *X = (const float *)x, *B = (const float *)bias;
    float *Y = (float *)y;
    int i, p, b0, rb;
    if (p1 <= p0 || rows <= 0) return;

    if (rows == 1) {
        const int n_blocks = (p1 - p0 + 3) / 4;
        for (i = 0; i < n_blocks; i++) {
            const int block = flags & GRU_MM_DESCENDING ? n_blocks - 1 - i : i;
            const int pb = p0 + 4 * block, np = p1 - pb < 4 ? p1 - pb : 4;
            const uint32_t *wp = (const uint32_t *)w + pb * stride;
            float *yp = Y + pb * GRU_PANEL;
            const float *bp = B ? B + pb * GRU_PANEL : NULL, *sp = scale ? scale + pb * GRU_PANEL : NULL;
            const int n_left = n_valid - pb * GRU_PANEL;
            switch (np) {
            case 4: GRU_NAME(reduced_row)(wp, stride, K, S, 4, X, yp, bp, sp, n_left); break;
            case 3: GRU_NAME(reduced_row)(wp, stride, K, S, 3, X, yp, bp, sp, n_left); break;
            case 2: GRU_NAME(reduced_row)(wp, stride, K, S, 2, X, yp, bp, sp, n_left); break;
            default: GRU_NAME(reduced_row)(wp, stride, K, S, 1, X, yp, bp, sp, n_left); break;
            }
        }
        return;
    }
    /* rows in blocks that stay in cache while the panels stream past, two panels a block */
    for (rb = 0; rb < rows; rb += 96) {
        const int r_end = rows - rb < 96 ? rows : rb + 96;
        for (p = p0; p < p1; p += 2) {
            const int np = p1 - p >= 2 ? 2 : 1;
            const uint32_t *wp = (const uint32_t *)w + p * stride;
            const float *bp = B ? B + p * GRU_PANEL : NULL, *sp = scale ? scale + p * GRU_PANEL : NULL;
            const int n_left = n_valid - p * GRU_PANEL;
            for (b0 = rb; b0 < r_end; b0 += GRU_MAX_ROWS) {
                const int nb = r_end - b0 < GRU_MAX_ROWS ? r_end - b0 : GRU_MAX_ROWS;
                const float *xb = X + b0 * ldx;
                float *yb = Y + b0 * ldy + p * GRU_PANEL;
                if (np == 2) {
                    GRU_REDUCED_SWITCH(2)
                } else {
                    GRU_REDUCED_SWITCH(1)
                }
            }
        }
    }
}

#undef GRU_REDUCED_CASE
#undef GRU_REDUCED_CASES_MID
#undef GRU_REDUCED_CASES_HIGH
#undef GRU_REDUCED_SWITCH

static void GRU_NAME(matmul_bf16)(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                                  const void *x, long ldx, void *y, long ldy, const void *bias,
                                  int flags)
{
    GRU_NAME(reduced_matmul)(2, w, K, N, c0, c1, n_valid, rows, x, ldx, y, ldy, bias, flags);
}

static void GRU_NAME(matmul_int8)(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                                  const void *x, long ldx, void *y, long ldy, const void *bias,
                                  int flags)
{
    GRU_NAME(reduced_matmul)(4, w, K, N, c0, c1, n_valid, rows, x, ldx, y, ldy, bias, flags);
}
