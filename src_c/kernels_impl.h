/*
 * Template body of the packed kernel, included by kernels.c once per dtype
 * with REAL and GRU_NAME(x) defined.  Written with GCC/Clang vector types: a
 * panel row of PANEL values is one vector (one AVX register for float32 in
 * the AVX2 build, two SSE registers in the portable one), so the same source
 * serves both builds and keeps its accumulators in registers.
 */

typedef REAL GRU_NAME(vec) __attribute__((vector_size(GRU_PANEL * sizeof(REAL)),
                                          aligned(sizeof(REAL)), may_alias));

/* Stores one accumulator: a whole panel row, or its first n values. */
static inline __attribute__((always_inline)) void
GRU_NAME(store_panel)(REAL *out, GRU_NAME(vec) value, int n)
{
    int i;
    if (n >= GRU_PANEL)
        *(GRU_NAME(vec) *)out = value;
    else
        for (i = 0; i < n; i++) out[i] = value[i];
}

/* One batch row, NP panels: the k loop is split over two sets of
 * accumulators so 2*NP independent chains hide the FMA latency.  Kept apart
 * from the batched block so the compiler holds every accumulator in a
 * register. */
static inline __attribute__((always_inline)) void
GRU_NAME(panel_row)(const REAL *w, int K, int NP, const REAL *x, int n_valid, REAL *y)
{
    typedef GRU_NAME(vec) vec;
    const size_t stride = (size_t)K * GRU_PANEL;
    vec even[4], odd[4];
    int q, k;
    for (q = 0; q < NP; q++) even[q] = odd[q] = (vec){0};
    for (k = 0; k + 1 < K; k += 2) {
        const REAL x0 = x[k], x1 = x[k + 1];
        for (q = 0; q < NP; q++) {
            const REAL *wk = w + q * stride + (size_t)k * GRU_PANEL;
            even[q] += *(const vec *)wk * x0;
            odd[q] += *(const vec *)(wk + GRU_PANEL) * x1;
        }
    }
    if (k < K)
        for (q = 0; q < NP; q++) even[q] += *(const vec *)(w + q * stride + (size_t)k * GRU_PANEL) * x[k];
    for (q = 0; q < NP; q++)
        GRU_NAME(store_panel)(y + q * GRU_PANEL, even[q] + odd[q], n_valid - q * GRU_PANEL);
}

/* NB batch rows x NP panels: NP*NB independent accumulators, and each loaded
 * weight vector serves NB rows. */
static inline __attribute__((always_inline)) void
GRU_NAME(panel_block)(const REAL *w, int K, int NP, int NB, const REAL *x, long ldx,
                      int n_valid, REAL *y, long ldy)
{
    typedef GRU_NAME(vec) vec;
    const size_t stride = (size_t)K * GRU_PANEL;
    vec acc[2][6];
    int q, b, k;

    if (NB == 1) {
        GRU_NAME(panel_row)(w, K, NP, x, n_valid, y);
        return;
    }
    for (q = 0; q < NP; q++)
        for (b = 0; b < NB; b++) acc[q][b] = (vec){0};
    for (k = 0; k < K; k++) {
        vec wv[2];
        for (q = 0; q < NP; q++) wv[q] = *(const vec *)(w + q * stride + (size_t)k * GRU_PANEL);
        for (b = 0; b < NB; b++) {
            const REAL xv = x[b * ldx + k];
            for (q = 0; q < NP; q++) acc[q][b] += wv[q] * xv;
        }
    }
    for (q = 0; q < NP; q++)
        for (b = 0; b < NB; b++)
            GRU_NAME(store_panel)(y + b * ldy + q * GRU_PANEL, acc[q][b], n_valid - q * GRU_PANEL);
}

/* Panels outermost: a pair of weight panels stays in L1 while every batch
 * row passes over it, so weights stream from memory once per call.
 * descending: visit the panels from the top down.  Callers alternate it on
 * successive timesteps, so the panels read last (still in L2) are read
 * first again: a matrix somewhat larger than L2 then comes partly from L2
 * instead of all from L3. */
static inline __attribute__((always_inline)) void
GRU_NAME(packed_matvec_body)(const REAL *Wp, int K, int n_out, int p0, int p1, int nb,
                             const REAL *x, long ldx, REAL *y, long ldy, int descending)
{
    const size_t stride = (size_t)K * GRU_PANEL;
    /* Blocks of `big` panels (4 at batch 1, else 2), then a pair, then a single. */
    const int big = nb == 1 ? 4 : 2;
    const int n_big = (p1 - p0) / big, rest = (p1 - p0) - n_big * big;
    const int has_pair = big == 4 && rest >= 2, has_single = rest & 1;
    const int n_blocks = n_big + has_pair + has_single;
    int i;

    for (i = 0; i < n_blocks; i++) {
        const int block = descending ? n_blocks - 1 - i : i;
        const int p = block < n_big ? p0 + block * big : (block == n_big && has_pair ? p0 + n_big * big
                                                                                     : p1 - 1);
        const int np = block < n_big ? big : (block == n_big && has_pair ? 2 : 1);
        const REAL *w = Wp + p * stride;
        const int n_valid = n_out - p * GRU_PANEL;
        int b0 = 0;

#define GRU_ROWS(NP, NB)                                                                  \
    GRU_NAME(panel_block)(w, K, NP, NB, x + b0 * ldx, ldx, n_valid, y + b0 * ldy + p * GRU_PANEL, ldy)
#define GRU_PANELS(NP)                                                                    \
    do {                                                                                  \
        for (; b0 + 6 <= nb; b0 += 6) GRU_ROWS(NP, 6);                                    \
        switch (nb - b0) {                                                                \
        case 1: GRU_ROWS(NP, 1); break;                                                   \
        case 2: GRU_ROWS(NP, 2); break;                                                   \
        case 3: GRU_ROWS(NP, 3); break;                                                   \
        case 4: GRU_ROWS(NP, 4); break;                                                   \
        case 5: GRU_ROWS(NP, 5); break;                                                   \
        default: break;                                                                   \
        }                                                                                 \
    } while (0)
        if (np == 4) /* only at batch 1 */
            GRU_ROWS(4, 1);
        else if (np == 2)
            GRU_PANELS(2);
        else
            GRU_PANELS(1);
#undef GRU_PANELS
#undef GRU_ROWS
    }
}

#if GRU_X86_DISPATCH
__attribute__((target("avx2,fma"))) static void
GRU_NAME(packed_matvec_avx2)(const REAL *Wp, int K, int n_out, int p0, int p1, int nb,
                             const REAL *x, long ldx, REAL *y, long ldy, int descending)
{
    GRU_NAME(packed_matvec_body)(Wp, K, n_out, p0, p1, nb, x, ldx, y, ldy, descending);
}
#endif

static void GRU_NAME(packed_matvec_generic)(const REAL *Wp, int K, int n_out, int p0, int p1,
                                            int nb, const REAL *x, long ldx, REAL *y, long ldy,
                                            int descending)
{
    GRU_NAME(packed_matvec_body)(Wp, K, n_out, p0, p1, nb, x, ldx, y, ldy, descending);
}

typedef void (*GRU_NAME(matvec_fn))(const REAL *, int, int, int, int, int, const REAL *, long,
                                    REAL *, long, int);
static GRU_NAME(matvec_fn) GRU_NAME(matvec_impl) = GRU_NAME(packed_matvec_generic);

void GRU_NAME(gru_packed_matvec)(const REAL *Wp, int K, int n_out, int p0, int p1, int nb,
                                 const REAL *x, long ldx, REAL *y, long ldy, int descending)
{
    GRU_NAME(matvec_impl)(Wp, K, n_out, p0, p1, nb, x, ldx, y, ldy, descending);
}
