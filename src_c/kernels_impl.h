/*
 * Template body of the packed kernel, included by kernels.c once per dtype
 * with REAL and GRU_NAME(x) defined.  Written with GCC/Clang vector types: a
 * panel row of PANEL values is one vector (one AVX register for float32 in
 * the AVX2 build, two SSE registers in the portable one), so the same source
 * serves both builds and keeps its accumulators in registers.
 */

typedef REAL GRU_NAME(vec) __attribute__((vector_size(GRU_PANEL * sizeof(REAL)),
                                          aligned(sizeof(REAL)), may_alias));

/* NP panels x NB batch rows at once: NP*NB independent accumulators hide the
 * FMA latency, and each loaded weight vector serves NB rows.  With NB == 1 the
 * k loop is split in two halves of accumulators for the same reason. */
static inline __attribute__((always_inline)) void
GRU_NAME(panel_block)(const REAL *w, int K, int NP, int NB, const REAL *x, long ldx,
                      int n_valid, REAL *y, long ldy)
{
    typedef GRU_NAME(vec) vec;
    const size_t stride = (size_t)K * GRU_PANEL;
    vec acc[4][6], acc2[4];
    int q, b, k, i;

    for (q = 0; q < NP; q++) {
        acc2[q] = (vec){0};
        for (b = 0; b < NB; b++) acc[q][b] = (vec){0};
    }
    if (NB == 1) {
        for (k = 0; k + 1 < K; k += 2) {
            const REAL x0 = x[k], x1 = x[k + 1];
            for (q = 0; q < NP; q++) {
                const REAL *wk = w + q * stride + (size_t)k * GRU_PANEL;
                acc[q][0] += *(const vec *)wk * x0;
                acc2[q] += *(const vec *)(wk + GRU_PANEL) * x1;
            }
        }
        for (; k < K; k++)
            for (q = 0; q < NP; q++)
                acc[q][0] += *(const vec *)(w + q * stride + (size_t)k * GRU_PANEL) * x[k];
        for (q = 0; q < NP; q++) acc[q][0] += acc2[q];
    } else {
        for (k = 0; k < K; k++) {
            vec wv[4];
            for (q = 0; q < NP; q++) wv[q] = *(const vec *)(w + q * stride + (size_t)k * GRU_PANEL);
            for (b = 0; b < NB; b++) {
                const REAL xv = x[b * ldx + k];
                for (q = 0; q < NP; q++) acc[q][b] += wv[q] * xv;
            }
        }
    }
    for (q = 0; q < NP; q++) {
        const int n = n_valid - q * GRU_PANEL;
        for (b = 0; b < NB; b++) {
            REAL *out = y + b * ldy + q * GRU_PANEL;
            if (n >= GRU_PANEL)
                *(vec *)out = acc[q][b];
            else
                for (i = 0; i < n; i++) out[i] = acc[q][b][i];
        }
    }
}

/* Panels outermost: a pair of weight panels stays in L1 while every batch
 * row passes over it, so weights stream from memory once per call. */
static inline __attribute__((always_inline)) void
GRU_NAME(packed_matvec_body)(const REAL *Wp, int K, int n_out, int p0, int p1, int nb,
                             const REAL *x, long ldx, REAL *y, long ldy)
{
    const size_t stride = (size_t)K * GRU_PANEL;
    const int np = nb == 1 ? 4 : 2;
    int p = p0;

#define GRU_BLOCK(NP)                                                                     \
    do {                                                                                  \
        const REAL *w = Wp + p * stride;                                                  \
        const int n_valid = n_out - p * GRU_PANEL;                                        \
        int b0 = 0;                                                                       \
        for (; b0 + 6 <= nb; b0 += 6)                                                     \
            GRU_NAME(panel_block)(w, K, NP, 6, x + b0 * ldx, ldx, n_valid,                \
                                  y + b0 * ldy + p * GRU_PANEL, ldy);                     \
        switch (nb - b0) {                                                                \
        case 1: GRU_NAME(panel_block)(w, K, NP, 1, x + b0 * ldx, ldx, n_valid,            \
                                      y + b0 * ldy + p * GRU_PANEL, ldy); break;          \
        case 2: GRU_NAME(panel_block)(w, K, NP, 2, x + b0 * ldx, ldx, n_valid,            \
                                      y + b0 * ldy + p * GRU_PANEL, ldy); break;          \
        case 3: GRU_NAME(panel_block)(w, K, NP, 3, x + b0 * ldx, ldx, n_valid,            \
                                      y + b0 * ldy + p * GRU_PANEL, ldy); break;          \
        case 4: GRU_NAME(panel_block)(w, K, NP, 4, x + b0 * ldx, ldx, n_valid,            \
                                      y + b0 * ldy + p * GRU_PANEL, ldy); break;          \
        case 5: GRU_NAME(panel_block)(w, K, NP, 5, x + b0 * ldx, ldx, n_valid,            \
                                      y + b0 * ldy + p * GRU_PANEL, ldy); break;          \
        default: break;                                                                   \
        }                                                                                 \
    } while (0)

    if (np == 4)
        for (; p + 4 <= p1; p += 4) GRU_BLOCK(4);
    for (; p + 2 <= p1; p += 2) GRU_BLOCK(2);
    for (; p < p1; p++) GRU_BLOCK(1);
#undef GRU_BLOCK
}

#if GRU_X86_DISPATCH
__attribute__((target("avx2,fma"))) static void
GRU_NAME(packed_matvec_avx2)(const REAL *Wp, int K, int n_out, int p0, int p1, int nb,
                             const REAL *x, long ldx, REAL *y, long ldy)
{
    GRU_NAME(packed_matvec_body)(Wp, K, n_out, p0, p1, nb, x, ldx, y, ldy);
}
#endif

static void GRU_NAME(packed_matvec_generic)(const REAL *Wp, int K, int n_out, int p0, int p1,
                                            int nb, const REAL *x, long ldx, REAL *y, long ldy)
{
    GRU_NAME(packed_matvec_body)(Wp, K, n_out, p0, p1, nb, x, ldx, y, ldy);
}

typedef void (*GRU_NAME(matvec_fn))(const REAL *, int, int, int, int, int, const REAL *, long,
                                    REAL *, long);
static GRU_NAME(matvec_fn) GRU_NAME(matvec_impl) = GRU_NAME(packed_matvec_generic);

void GRU_NAME(gru_packed_matvec)(const REAL *Wp, int K, int n_out, int p0, int p1, int nb,
                                 const REAL *x, long ldx, REAL *y, long ldy)
{
    GRU_NAME(matvec_impl)(Wp, K, n_out, p0, p1, nb, x, ldx, y, ldy);
}
