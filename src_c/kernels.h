/*
 * Weight-stationary matvec / small-GEMM kernel over packed panels.
 *
 *   y[b][p*PANEL + i] = sum_k Wp[p][k][i] * x[b][k]   for p in [p0, p1), b < nb
 *
 * Wp is one gate block of a packed matrix, (P, K, PANEL); outputs past n_out
 * (the zero padding of the last panel) are not written.  descending visits
 * the panels top down (same result; see kernels_impl.h for why).
 */
#ifndef GRU_INFER_KERNELS_H
#define GRU_INFER_KERNELS_H

/* 1 where an AVX2+FMA build of the hot code is compiled beside the portable
 * one and chosen at run time. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(GRU_NO_DISPATCH)
#define GRU_X86_DISPATCH 1
#else
#define GRU_X86_DISPATCH 0
#endif

void gru_packed_matvec_f32(const float *Wp, int K, int n_out, int p0, int p1, int nb,
                           const float *x, long ldx, float *y, long ldy, int descending);
void gru_packed_matvec_f64(const double *Wp, int K, int n_out, int p0, int p1, int nb,
                           const double *x, long ldx, double *y, long ldy, int descending);

/* Picks the widest kernel this CPU runs; call once before the first use. */
void gru_select_kernels(void);
const char *gru_kernel_name(void);

#endif
