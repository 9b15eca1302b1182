/*
 * Template body of the packed kernel, included by kernels.c once per dtype
 * with REAL and GRU_NAME(x) defined.  Written as plain loops with constant
 * trip counts so the compiler turns each panel row into one or two vector
 * registers; kernels.c compiles it once for AVX2+FMA and once portably.
 */

/* NP panels x NB batch rows at once: NP*NB independent accumulator chains
 * hide the FMA latency, and each loaded weight vector serves NB rows. */
static inline __attribute__((always_inline)) void
GRU_NAME(panel_block)(const REAL *w, int K, int NP, int NB, const REAL *x, long ldx,
                      int n_valid, REAL *y, long ldy)
{
    REAL acc[4][4][GRU_PANEL];
    const size_t panel_stride = (size_t)K * GRU_PANEL;
    int q, b, i, k;

    for (q = 0; q < NP; q++)
        for (b = 0; b < NB; b++)
            for (i = 0; i < GRU_PANEL; i++) acc[q][b][i] = 0;

    for (k = 0; k < K; k++) {
        for (q = 0; q < NP; q++) {
            const REAL *wk = w + q * panel_stride + (size_t)k * GRU_PANEL;
            for (b = 0; b < NB; b++) {
                const REAL xv = x[b * ldx + k];
                for (i = 0; i < GRU_PANEL; i++) acc[q][b][i] += wk[i] * xv;
            }
        }
    }

    for (q = 0; q < NP; q++) {
        int n = n_valid - q * GRU_PANEL;
        if (n > GRU_PANEL) n = GRU_PANEL;
        for (b = 0; b < NB; b++)
            for (i = 0; i < n; i++) y[b * ldy + q * GRU_PANEL + i] = acc[q][b][i];
    }
}

/* Dispatch on nb so that every panel_block call sees constant NP and NB. */
static inline __attribute__((always_inline)) void
GRU_NAME(packed_matvec_body)(const REAL *Wp, int K, int n_out, int p0, int p1, int nb,
                             const REAL *x, long ldx, REAL *y, long ldy)
{
    const size_t panel_stride = (size_t)K * GRU_PANEL;
    int b0 = 0;
    while (b0 < nb) {
        const int rows = nb - b0 >= 4 ? 4 : nb - b0;
        const int np = rows == 1 ? 4 : 2;
        const REAL *xb = x + b0 * ldx;
        REAL *yb = y + b0 * ldy;
        int p = p0;
        for (; p + np <= p1; p += np) {
            const REAL *w = Wp + p * panel_stride;
            const int n_valid = n_out - p * GRU_PANEL;
            REAL *yp = yb + p * GRU_PANEL;
            switch (rows) {
            case 1: GRU_NAME(panel_block)(w, K, 4, 1, xb, ldx, n_valid, yp, ldy); break;
            case 2: GRU_NAME(panel_block)(w, K, 2, 2, xb, ldx, n_valid, yp, ldy); break;
            case 3: GRU_NAME(panel_block)(w, K, 2, 3, xb, ldx, n_valid, yp, ldy); break;
            default: GRU_NAME(panel_block)(w, K, 2, 4, xb, ldx, n_valid, yp, ldy); break;
            }
        }
        for (; p < p1; p++) {
            const REAL *w = Wp + p * panel_stride;
            const int n_valid = n_out - p * GRU_PANEL;
            REAL *yp = yb + p * GRU_PANEL;
            switch (rows) {
            case 1: GRU_NAME(panel_block)(w, K, 1, 1, xb, ldx, n_valid, yp, ldy); break;
            case 2: GRU_NAME(panel_block)(w, K, 1, 2, xb, ldx, n_valid, yp, ldy); break;
            case 3: GRU_NAME(panel_block)(w, K, 1, 3, xb, ldx, n_valid, yp, ldy); break;
            default: GRU_NAME(panel_block)(w, K, 1, 4, xb, ldx, n_valid, yp, ldy); break;
            }
        }
        b0 += rows;
    }
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
