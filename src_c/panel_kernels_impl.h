/*
 * Panel-major product (isa.h gru_matmul_fn) written with GCC/Clang vector
 * types: one panel row of GRU_PANEL values is one vector, so the same source
 * is an AVX2 kernel (8 floats, 4 doubles) or an AVX-512 one (16 floats, 8
 * doubles) depending on the target pragma of the ISA file that includes it.
 * Included with REAL, GRU_NAME(x), GRU_PANEL and GRU_MAX_ROWS (batch rows per
 * block: accumulators are NP * rows vectors, NP panels per block) defined.
 *
 * Loop order: rows in blocks of GRU_ROW_BLOCK (inputs that stay in L2), then
 * panels, so a block of NP weight panels stays in L1/L2 while every row of the
 * block passes over it; rows in blocks of GRU_MAX_ROWS; k innermost, each
 * weight vector loaded once per block and used for every row of it.
 */
#ifndef GRU_ROW_BLOCK
#define GRU_ROW_BLOCK 96
#endif

typedef REAL GRU_NAME(vec) __attribute__((vector_size(GRU_PANEL * sizeof(REAL)), aligned(sizeof(REAL)),
                                          may_alias));

static inline __attribute__((always_inline)) void GRU_NAME(store_panel)(REAL *out, GRU_NAME(vec) v,
                                                                        int n)
{
    int i;
    if (n >= GRU_PANEL)
        *(GRU_NAME(vec) *)out = v;
    else
        for (i = 0; i < n; i++) out[i] = v[i];
}

/* NP panels (w, w + stride, ...) x NB rows of x; n_valid: valid columns from w's first. */
static inline __attribute__((always_inline)) void
GRU_NAME(panel_block)(const REAL *w, size_t stride, int K, int NP, int NB, const REAL *x, long ldx,
                      REAL *y, long ldy, const REAL *bias, int n_valid)
{
    typedef GRU_NAME(vec) vec;
    vec acc[4][GRU_MAX_ROWS];
    int q, b, k;
    for (q = 0; q < NP; q++) {
        const vec init = bias ? *(const vec *)(bias + q * GRU_PANEL) : (vec){0};
        for (b = 0; b < NB; b++) acc[q][b] = init;
    }
    for (k = 0; k < K; k++) {
        vec wv[4];
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

#define GRU_BLOCK_CASE(NP, NB)                                                                     \
    case NB:                                                                                       \
        GRU_NAME(panel_block)(wp, stride, K, NP, NB, xb, ldx, yb, ldy, bp, n_left);                \
        break;
#if GRU_MAX_ROWS > 6
#define GRU_BLOCK_CASES_HIGH(NP)                                                                   \
    GRU_BLOCK_CASE(NP, 7) GRU_BLOCK_CASE(NP, 8) GRU_BLOCK_CASE(NP, 9) GRU_BLOCK_CASE(NP, 10)        \
    GRU_BLOCK_CASE(NP, 11) GRU_BLOCK_CASE(NP, 12)
#else
#define GRU_BLOCK_CASES_HIGH(NP)
#endif
#define GRU_BLOCK_SWITCH(NP)                                                                       \
    switch (nb) {                                                                                  \
        GRU_BLOCK_CASE(NP, 1) GRU_BLOCK_CASE(NP, 2) GRU_BLOCK_CASE(NP, 3) GRU_BLOCK_CASE(NP, 4)    \
        GRU_BLOCK_CASE(NP, 5) GRU_BLOCK_CASE(NP, 6) GRU_BLOCK_CASES_HIGH(NP)                       \
        default: break;                                                                            \
    }

static void GRU_NAME(matmul)(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                             const void *x, long ldx, void *y, long ldy, const void *bias, int flags)
{
    const size_t stride = (size_t)K * GRU_PANEL;
    const int end = c1 < n_valid ? c1 : n_valid;
    const int p0 = c0 / GRU_PANEL, p1 = (end + GRU_PANEL - 1) / GRU_PANEL;
    /* few rows: 4 panels a block, so enough independent sums hide the FMA latency */
    const int big = rows <= 3 ? 4 : 2;
    const int n_big = (p1 - p0) / big, rest = (p1 - p0) - n_big * big;
    const int n_pair = big == 4 && rest >= 2, n_single = rest & 1;
    const int n_blocks = n_big + n_pair + n_single;
    int i, rb;
    (void)N;
    if (p1 <= p0 || rows <= 0) return;

    for (rb = 0; rb < rows; rb += GRU_ROW_BLOCK)
    for (i = 0; i < n_blocks; i++) {
        const int block = flags & GRU_MM_DESCENDING ? n_blocks - 1 - i : i;
        const int p = block < n_big ? p0 + block * big
                                    : (block == n_big && n_pair ? p0 + n_big * big : p1 - 1);
        const int np = block < n_big ? big : (block == n_big && n_pair ? 2 : 1);
        const REAL *wp = (const REAL *)w + p * stride;
        const REAL *bp = bias ? (const REAL *)bias + p * GRU_PANEL : NULL;
        const int n_left = n_valid - p * GRU_PANEL;
        int b0;
        const int r_end = rows - rb < GRU_ROW_BLOCK ? rows : rb + GRU_ROW_BLOCK;
        for (b0 = rb; b0 < r_end; b0 += GRU_MAX_ROWS) {
            const int nb = r_end - b0 < GRU_MAX_ROWS ? r_end - b0 : GRU_MAX_ROWS;
            const REAL *xb = (const REAL *)x + b0 * ldx;
            REAL *yb = (REAL *)y + b0 * ldy + p * GRU_PANEL;
            if (np == 4) {
                switch (nb) {
                    GRU_BLOCK_CASE(4, 1) GRU_BLOCK_CASE(4, 2) GRU_BLOCK_CASE(4, 3)
                default: break;
                }
            } else if (np == 2) {
                GRU_BLOCK_SWITCH(2)
            } else {
                GRU_BLOCK_SWITCH(1)
            }
        }
    }
}

#undef GRU_BLOCK_CASE
#undef GRU_BLOCK_CASES_HIGH
#undef GRU_BLOCK_SWITCH
