/*
 * Element-wise work of one compute dtype: activations over arrays and the GRU
 * gate passes.  A template: an ISA file includes it once per dtype, under its
 * own target pragma, with REAL, GRU_NAME(x), GRU_EXP, GRU_TANH, GRU_FABS,
 * GRU_LOG defined, so the same plain loops are vectorised for each ISA (the
 * switch over activations sits outside the loops, every loop is a simple pass).
 */
#include "activations.h"

#define GRU_GATE_BLOCK 64 /* units per pass: the temporaries stay in L1 / registers */

static inline REAL GRU_NAME(clip01)(REAL v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }

static void GRU_NAME(apply_activation)(gru_activation act, REAL *restrict v, long n)
{
    long i;
    switch (act) {
    case GRU_ACT_SIGMOID:
        for (i = 0; i < n; i++) v[i] = 1 / (1 + GRU_EXP(-v[i]));
        break;
    case GRU_ACT_HARD_SIGMOID_KERAS2:
        for (i = 0; i < n; i++) v[i] = GRU_NAME(clip01)((REAL)0.2 * v[i] + (REAL)0.5);
        break;
    case GRU_ACT_HARD_SIGMOID_KERAS3:
        for (i = 0; i < n; i++) v[i] = GRU_NAME(clip01)(v[i] / 6 + (REAL)0.5);
        break;
    case GRU_ACT_TANH:
        for (i = 0; i < n; i++) v[i] = GRU_TANH(v[i]);
        break;
    case GRU_ACT_RELU:
        for (i = 0; i < n; i++) v[i] = v[i] < 0 ? 0 : v[i]; /* keeps NaN as NaN */
        break;
    case GRU_ACT_SOFTSIGN:
        for (i = 0; i < n; i++) v[i] = v[i] / (1 + GRU_FABS(v[i]));
        break;
    default: /* linear; the row-wise ones are handled by the caller */
        break;
    }
}

/* softmax (or log_softmax) of one row: e^(v - max) / sum, the sum over
 * GRU_SUM_LANES partial sums so the loop vectorises without reassociation. */
#define GRU_SUM_LANES 16
static void GRU_NAME(softmax_row)(REAL *restrict v, long n, int log_form)
{
    REAL top = v[0], partial[GRU_SUM_LANES] = {0}, total = 0;
    long i;
    int lane;
    for (i = 1; i < n; i++) top = v[i] > top ? v[i] : top;
    if (log_form) {
        for (i = 0; i + GRU_SUM_LANES <= n; i += GRU_SUM_LANES)
            for (lane = 0; lane < GRU_SUM_LANES; lane++) partial[lane] += GRU_EXP(v[i + lane] - top);
        for (; i < n; i++) partial[0] += GRU_EXP(v[i] - top);
        for (lane = 0; lane < GRU_SUM_LANES; lane++) total += partial[lane];
        total = GRU_LOG(total) + top;
        for (i = 0; i < n; i++) v[i] -= total;
        return;
    }
    for (i = 0; i < n; i++) v[i] = GRU_EXP(v[i] - top);
    for (i = 0; i + GRU_SUM_LANES <= n; i += GRU_SUM_LANES)
        for (lane = 0; lane < GRU_SUM_LANES; lane++) partial[lane] += v[i + lane];
    for (; i < n; i++) partial[0] += v[i];
    for (lane = 0; lane < GRU_SUM_LANES; lane++) total += partial[lane];
    total = 1 / total;
    for (i = 0; i < n; i++) v[i] *= total;
}

static void GRU_NAME(activation)(gru_activation act, void *values, long rows, long cols)
{
    REAL *v = (REAL *)values;
    long r;
    if (act == GRU_ACT_SOFTMAX || act == GRU_ACT_LOG_SOFTMAX) {
        if (cols > 0)
            for (r = 0; r < rows; r++)
                GRU_NAME(softmax_row)(v + r * cols, cols, act == GRU_ACT_LOG_SOFTMAX);
        return;
    }
    GRU_NAME(apply_activation)(act, v, rows * cols);
}

/* The gate equations (isa.h, GRU_GATES_*) over units [u0, u1) of one row. */
static void GRU_NAME(gates)(int phase, const gru_gate_row *a)
{
    const long Hp = a->Hp;
    const REAL *gx = (const REAL *)a->gx, *h = (const REAL *)a->h;
    REAL *gh = (REAL *)a->gh, *h_next = (REAL *)a->h_next, *y = (REAL *)a->y;
    REAL *rh = (REAL *)a->rh;
    int u, j;

    for (u = a->u0; u < a->u1; u += GRU_GATE_BLOCK) {
        const int n = a->u1 - u < GRU_GATE_BLOCK ? a->u1 - u : GRU_GATE_BLOCK;
        REAL z[GRU_GATE_BLOCK], r[GRU_GATE_BLOCK], c[GRU_GATE_BLOCK];
        const REAL *restrict xz = gx + u, *restrict xr = gx + Hp + u, *restrict xh = gx + 2 * Hp + u;
        REAL *restrict hz = gh + u, *restrict hr = gh + Hp + u, *restrict hh = gh + 2 * Hp + u;
        const REAL *restrict hu = h + u;
        REAL *restrict out = h_next + u, *restrict yu = y + u;

        if (phase == GRU_GATES_FINISH) {
            for (j = 0; j < n; j++) c[j] = xh[j] + hh[j];
            GRU_NAME(apply_activation)(a->cand_act, c, n);
            for (j = 0; j < n; j++) {
                const REAL v = (1 - hz[j]) * c[j] + hz[j] * hu[j];
                out[j] = v;
                yu[j] = v;
            }
            continue;
        }
        for (j = 0; j < n; j++) z[j] = xz[j] + hz[j];
        for (j = 0; j < n; j++) r[j] = xr[j] + hr[j];
        GRU_NAME(apply_activation)(a->gate_act, z, n);
        GRU_NAME(apply_activation)(a->gate_act, r, n);
        if (phase == GRU_GATES_RESET) {
            REAL *restrict ru = rh + u;
            for (j = 0; j < n; j++) {
                hz[j] = z[j];
                ru[j] = r[j] * hu[j];
            }
            continue;
        }
        for (j = 0; j < n; j++) c[j] = xh[j] + r[j] * hh[j];
        GRU_NAME(apply_activation)(a->cand_act, c, n);
        for (j = 0; j < n; j++) {
            const REAL v = (1 - z[j]) * c[j] + z[j] * hu[j];
            out[j] = v;
            yu[j] = v;
        }
    }
}

#undef GRU_SUM_LANES
#undef GRU_GATE_BLOCK
