/*
 * Activations applied in place over a segment of a gate row.  The switch sits
 * outside the loop so each loop is a plain element-wise pass.
 * Included by the template with REAL and SUFFIX defined.
 */
#include <math.h>

static inline REAL GRU_NAME(clip01)(REAL v)
{
    return v < 0 ? 0 : (v > 1 ? 1 : v);
}

static void GRU_NAME(apply_activation)(gru_activation act, REAL *v, int n)
{
    int i;
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
        /* v > 0 ? v : 0 keeps NaN as NaN */
        for (i = 0; i < n; i++) v[i] = v[i] < 0 ? 0 : v[i];
        break;
    case GRU_ACT_SOFTSIGN:
        for (i = 0; i < n; i++) v[i] = v[i] / (1 + GRU_FABS(v[i]));
        break;
    case GRU_ACT_LINEAR:
    default:
        break;
    }
}
