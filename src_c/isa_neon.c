/*
 * AArch64 Advanced SIMD (NEON) kernels: baseline on every 64-bit ARM CPU
 * (phones, Raspberry Pi 4/5, Graviton, Apple silicon), so `neon` is always
 * supported there; `neon_dotprod` adds int8 products with the dot-product
 * instructions (sdot: Armv8.2 and later; Cortex-A55/A76 on, Graviton 2 on,
 * Apple M1 on), chosen when the CPU says it has them.
 *
 * float32: panel-major (isa.h), 16 columns a panel = four 128-bit registers;
 *   sums of NP panels x MR rows in registers, inputs read four k at a time
 *   into one register and applied lane by lane (fmla by element):
 *       acc[q][r] += W[panel q, k..k+3] * x[r, k..k+3][lane]
 * float64: the vector-type template (2 doubles a register, 4 a panel).
 * bf16, int8 (the `neon` set): the shared pair / quad layouts widened to
 *   float32 in registers (panel_reduced_impl.h), 8 columns a panel.
 * int8 (`neon_dotprod`): the quad layout at 16 columns a panel; each input
 *   row is quantised per call, symmetrically over its own range (sdot
 *   multiplies signed by signed):  x ~ d_b u,  d_b = max_k |x[b, k]| / 127,
 *   u = rint(x / d_b) in [-127, 127], and
 *       y[j] = bias[j] + s_j d_b sum_k q[j, k] u[k]
 *   with int32 sums of at most KC_INT8 products turned to float per block.
 */
#include "isa.h"

#if GRU_NEON
#include <arm_neon.h>
#include <math.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif

static int neon_supported(void) { return 1; }

static int neon_dotprod_supported(void)
{
#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    return 1; /* every Apple arm64 CPU has it */
#else
    return 0;
#endif
}

/* ---- element-wise work and float64 (templates) ------------------------------------ */

#define REAL float
#define GRU_NAME(x) neon_##x##_f32
#define GRU_EXP gru_expf
#define GRU_TANH gru_tanhf
#define GRU_FABS fabsf
#define GRU_LOG logf
#include "elementwise_impl.h"
#include "template_end.h"

#define REAL double
#define GRU_NAME(x) neon_##x##_f64
#define GRU_EXP exp
#define GRU_TANH tanh
#define GRU_FABS fabs
#define GRU_LOG log
#define GRU_PANEL 4
#define GRU_MAX_ROWS 6
#include "elementwise_impl.h"
#include "panel_kernels_impl.h"
#include "template_end.h"

/* bf16 and int8 weights widened in registers: 8 columns a panel, so 2 panels x
 * 4 rows of sums are 16 of the 32 registers */
#define GRU_NAME(x) neon_##x
#define GRU_PANEL 8
#define GRU_MAX_ROWS 4
#include "panel_reduced_impl.h"
#include "template_end.h"

/* ---- float32 product ------------------------------------------------------------ */

#define F32_PANEL 16
#define F32_MR 4 /* rows a block: 1 panel x 4 rows x 4 registers = 16 sums */

/* NP panels (w, w + stride, ...) x MR rows over K; n_valid columns from the first. */
static inline __attribute__((always_inline)) void
neon_block_f32(const float *w, size_t stride, int K, int NP, int MR, const float *x, long ldx,
               float *y, long ldy, const float *bias, int n_valid)
{
    float32x4_t acc[2][4][F32_MR];
    int q, t, r, k, kk;
    for (q = 0; q < NP; q++)
        for (t = 0; t < 4; t++)
            for (r = 0; r < MR; r++)
                acc[q][t][r] = bias ? vld1q_f32(bias + q * 16 + 4 * t) : vdupq_n_f32(0);
    for (k = 0; k + 4 <= K; k += 4) {
        float32x4_t xv[F32_MR];
        for (r = 0; r < MR; r++) xv[r] = vld1q_f32(x + r * ldx + k);
        for (kk = 0; kk < 4; kk++)
            for (q = 0; q < NP; q++) {
                const float *wk = w + q * stride + (size_t)(k + kk) * 16;
                const float32x4_t w0 = vld1q_f32(wk), w1 = vld1q_f32(wk + 4);
                const float32x4_t w2 = vld1q_f32(wk + 8), w3 = vld1q_f32(wk + 12);
                for (r = 0; r < MR; r++) {
                    /* the lane index must be a constant */
                    switch (kk) {
                    case 0:
                        acc[q][0][r] = vfmaq_laneq_f32(acc[q][0][r], w0, xv[r], 0);
                        acc[q][1][r] = vfmaq_laneq_f32(acc[q][1][r], w1, xv[r], 0);
                        acc[q][2][r] = vfmaq_laneq_f32(acc[q][2][r], w2, xv[r], 0);
                        acc[q][3][r] = vfmaq_laneq_f32(acc[q][3][r], w3, xv[r], 0);
                        break;
                    case 1:
                        acc[q][0][r] = vfmaq_laneq_f32(acc[q][0][r], w0, xv[r], 1);
                        acc[q][1][r] = vfmaq_laneq_f32(acc[q][1][r], w1, xv[r], 1);
                        acc[q][2][r] = vfmaq_laneq_f32(acc[q][2][r], w2, xv[r], 1);
                        acc[q][3][r] = vfmaq_laneq_f32(acc[q][3][r], w3, xv[r], 1);
                        break;
                    case 2:
                        acc[q][0][r] = vfmaq_laneq_f32(acc[q][0][r], w0, xv[r], 2);
                        acc[q][1][r] = vfmaq_laneq_f32(acc[q][1][r], w1, xv[r], 2);
                        acc[q][2][r] = vfmaq_laneq_f32(acc[q][2][r], w2, xv[r], 2);
                        acc[q][3][r] = vfmaq_laneq_f32(acc[q][3][r], w3, xv[r], 2);
                        break;
                    default:
                        acc[q][0][r] = vfmaq_laneq_f32(acc[q][0][r], w0, xv[r], 3);
                        acc[q][1][r] = vfmaq_laneq_f32(acc[q][1][r], w1, xv[r], 3);
                        acc[q][2][r] = vfmaq_laneq_f32(acc[q][2][r], w2, xv[r], 3);
                        acc[q][3][r] = vfmaq_laneq_f32(acc[q][3][r], w3, xv[r], 3);
                        break;
                    }
                }
            }
    }
    for (; k < K; k++) /* the last K % 4 */
        for (q = 0; q < NP; q++) {
            const float *wk = w + q * stride + (size_t)k * 16;
            for (t = 0; t < 4; t++) {
                const float32x4_t wv = vld1q_f32(wk + 4 * t);
                for (r = 0; r < MR; r++) acc[q][t][r] = vfmaq_n_f32(acc[q][t][r], wv, x[r * ldx + k]);
            }
        }
    for (q = 0; q < NP; q++)
        for (r = 0; r < MR; r++) {
            float *out = y + r * ldy + q * 16;
            const int n = n_valid - q * 16;
            if (n >= 16) {
                for (t = 0; t < 4; t++) vst1q_f32(out + 4 * t, acc[q][t][r]);
            } else if (n > 0) {
                float tmp[16];
                for (t = 0; t < 4; t++) vst1q_f32(tmp + 4 * t, acc[q][t][r]);
                memcpy(out, tmp, (size_t)n * sizeof(float));
            }
        }
}

static void neon_matmul_f32(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                            const void *x, long ldx, void *y, long ldy, const void *bias, int flags)
{
    const float *W = (const float *)w, *X = (const float *)x, *B = (const float *)bias;
    float *Y = (float *)y;
    const size_t stride = (size_t)K * 16;
    const int end = c1 < n_valid ? c1 : n_valid;
    const int p0 = c0 / 16, p1 = (end + 15) / 16;
    /* one or two rows: two panels a block (32 sums for latency); more: one panel x 4 rows */
    const int NP = rows <= 2 ? 2 : 1, MR = rows <= 2 ? rows : F32_MR;
    const int n_blocks = (p1 - p0 + NP - 1) / NP;
    int i, r0;
    (void)N;
    if (p1 <= p0 || rows <= 0) return;
    for (r0 = 0; r0 < rows; r0 += MR) {
        const int mr = rows - r0 < MR ? rows - r0 : MR;
        const float *xr = X + r0 * ldx;
        for (i = 0; i < n_blocks; i++) {
            const int block = rows == 1 && (flags & GRU_MM_DESCENDING) ? n_blocks - 1 - i : i;
            const int p = p0 + block * NP, np = p1 - p < NP ? p1 - p : NP;
            const float *wp = W + p * stride, *bp = B ? B + p * 16 : NULL;
            float *yp = Y + r0 * ldy + p * 16;
            const int n_left = n_valid - p * 16;
            if (np == 2) {
                if (mr == 1)
                    neon_block_f32(wp, stride, K, 2, 1, xr, ldx, yp, ldy, bp, n_left);
                else
                    neon_block_f32(wp, stride, K, 2, 2, xr, ldx, yp, ldy, bp, n_left);
            } else {
                switch (mr) {
                case 1: neon_block_f32(wp, stride, K, 1, 1, xr, ldx, yp, ldy, bp, n_left); break;
                case 2: neon_block_f32(wp, stride, K, 1, 2, xr, ldx, yp, ldy, bp, n_left); break;
                case 3: neon_block_f32(wp, stride, K, 1, 3, xr, ldx, yp, ldy, bp, n_left); break;
                default: neon_block_f32(wp, stride, K, 1, 4, xr, ldx, yp, ldy, bp, n_left); break;
                }
            }
        }
    }
}

const gru_isa gru_isa_neon = {
    "neon",
    neon_supported,
    {
        [GRU_FORMAT_F32] = {16, gru_panel_major_bytes_f32, gru_panel_major_pack_f32, neon_matmul_f32},
        [GRU_FORMAT_F64] = {4, gru_panel_major_bytes_f64, gru_panel_major_pack_f64, neon_matmul_f64},
        [GRU_FORMAT_BF16] = {8, gru_bf16_pairs_bytes, gru_bf16_pairs_pack, neon_matmul_bf16},
        [GRU_FORMAT_INT8] = {8, gru_int8_quads_bytes, gru_int8_quads_pack, neon_matmul_int8},
    },
    {
        [GRU_FLOAT32] = {neon_activation_f32, neon_gates_f32},
        [GRU_FLOAT64] = {neon_activation_f64, neon_gates_f64},
    },
};

/* ---- int8 with the dot-product instructions ---------------------------------------- */

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")

#define DOT_MR 4      /* rows a block: 4 rows x 4 registers of int32 sums */
#define KC_INT8 4096 /* k per block: int32 sums of 4096 products of |v| <= 127 stay below 2^31 */

/* d = max |x| / 127 over x[0, K) (0 for an all-zero row) */
static float dot_row_step(const float *x, int K)
{
    float32x4_t m = vdupq_n_f32(0);
    float amax;
    int k;
    for (k = 0; k + 4 <= K; k += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + k)));
    amax = vmaxvq_f32(m);
    for (; k < K; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
    return amax / 127.0f;
}

/* u = rint(x / d) for x[0, kc), zero bytes up to a multiple of 16 */
static void dot_row_quantise(const float *x, int kc, float d, int8_t *out)
{
    const float inv = d > 0 ? 1.0f / d : 0.0f;
    int k;
    for (k = 0; k + 4 <= kc; k += 4) {
        const int32x4_t v = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k), inv)); /* nearest even */
        const int16x4_t h = vqmovn_s32(v);
        const int8x8_t b = vqmovn_s16(vcombine_s16(h, h));
        vst1_lane_s32((int32_t *)(void *)(out + k), vreinterpret_s32_s8(b), 0);
    }
    for (; k < kc; k++) {
        const float v = x[k] * inv;
        out[k] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : (int)vcvtns_s32_f32(v)));
    }
    for (; k % 16; k++) out[k] = 0;
}

/* One panel (16 columns: 4 registers of 4) x MR rows over n_quads k-groups of the
 * quad layout, quad g of the panel at w + 64 g bytes; inputs xq (ldxq bytes apart). */
static inline __attribute__((always_inline)) void
dot_block(const int8_t *w, const int8_t *xq, int ldxq, int n_quads, int MR, int32x4_t acc[4][DOT_MR])
{
    int g, t, r;
    for (t = 0; t < 4; t++)
        for (r = 0; r < MR; r++) acc[t][r] = vdupq_n_s32(0);
    for (g = 0; g + 4 <= n_quads; g += 4) {
        int8x16_t xv[DOT_MR];
        for (r = 0; r < MR; r++) xv[r] = vld1q_s8(xq + (size_t)r * ldxq + 4 * g);
#define DOT_LANE(L)                                                                                \
    {                                                                                              \
        const int8_t *wg = w + (size_t)(g + L) * 64;                                               \
        const int8x16_t w0 = vld1q_s8(wg), w1 = vld1q_s8(wg + 16);                                 \
        const int8x16_t w2 = vld1q_s8(wg + 32), w3 = vld1q_s8(wg + 48);                            \
        for (r = 0; r < MR; r++) {                                                                 \
            acc[0][r] = vdotq_laneq_s32(acc[0][r], w0, xv[r], L);                                  \
            acc[1][r] = vdotq_laneq_s32(acc[1][r], w1, xv[r], L);                                  \
            acc[2][r] = vdotq_laneq_s32(acc[2][r], w2, xv[r], L);                                  \
            acc[3][r] = vdotq_laneq_s32(acc[3][r], w3, xv[r], L);                                  \
        }                                                                                          \
    }
        DOT_LANE(0) DOT_LANE(1) DOT_LANE(2) DOT_LANE(3)
#undef DOT_LANE
    }
    for (; g < n_quads; g++) { /* the last groups: inputs are zero-padded to 16 bytes */
        const int8_t *wg = w + (size_t)g * 64;
        for (r = 0; r < MR; r++) {
            int32_t four;
            int8x16_t xv;
            memcpy(&four, xq + (size_t)r * ldxq + 4 * g, 4);
            xv = vreinterpretq_s8_s32(vdupq_n_s32(four));
            for (t = 0; t < 4; t++) acc[t][r] = vdotq_laneq_s32(acc[t][r], vld1q_s8(wg + 16 * t), xv, 0);
        }
    }
}

static void neon_dotprod_matmul_int8(const void *w, int K, int N, int c0, int c1, int n_valid,
                                     int rows, const void *x, long ldx, void *y, long ldy,
                                     const void *bias, int flags)
{
    const int Kp = (K + 3) / 4 * 4, end = c1 < n_valid ? c1 : n_valid;
    const int p0 = c0 / 16, p1 = (end + 15) / 16, n_panels = p1 - p0;
    const size_t panel_bytes = (size_t)Kp * 16;
    const float *scale = gru_int8_trailer(w, N, Kp);
    const float *X = (const float *)x, *B = (const float *)bias;
    float *Y = (float *)y;
    int8_t xq[DOT_MR * KC_INT8];
    float d[DOT_MR];
    int r0, k0, i, r, t;
    if (p1 <= p0 || rows <= 0) return;
    for (r0 = 0; r0 < rows; r0 += DOT_MR) {
        const int mr = rows - r0 < DOT_MR ? rows - r0 : DOT_MR;
        for (r = 0; r < mr; r++) d[r] = dot_row_step(X + (size_t)(r0 + r) * ldx, K);
        for (k0 = 0; k0 < K; k0 += KC_INT8) {
            const int kc = K - k0 < KC_INT8 ? K - k0 : KC_INT8, n_quads = (kc + 3) / 4;
            for (r = 0; r < mr; r++)
                dot_row_quantise(X + (size_t)(r0 + r) * ldx + k0, kc, d[r], xq + (size_t)r * KC_INT8);
            for (i = 0; i < n_panels; i++) {
                const int p = p0 + (mr == 1 && (flags & GRU_MM_DESCENDING) ? n_panels - 1 - i : i);
                const int8_t *wp = (const int8_t *)w + p * panel_bytes + (size_t)k0 * 16;
                const float *sp = scale + p * 16;
                const int n_left = n_valid - p * 16;
                int32x4_t acc[4][DOT_MR];
                switch (mr) {
                case 1: dot_block(wp, xq, KC_INT8, n_quads, 1, acc); break;
                case 2: dot_block(wp, xq, KC_INT8, n_quads, 2, acc); break;
                case 3: dot_block(wp, xq, KC_INT8, n_quads, 3, acc); break;
                default: dot_block(wp, xq, KC_INT8, n_quads, 4, acc); break;
                }
                for (r = 0; r < mr; r++) {
                    float *out = Y + (size_t)(r0 + r) * ldy + p * 16;
                    float v[16];
                    int j;
                    for (t = 0; t < 4; t++) {
                        const float32x4_t s = vmulq_n_f32(vld1q_f32(sp + 4 * t), d[r]);
                        const float32x4_t start =
                            k0 ? vdupq_n_f32(0) : (B ? vld1q_f32(B + p * 16 + 4 * t) : vdupq_n_f32(0));
                        vst1q_f32(v + 4 * t, vfmaq_f32(start, s, vcvtq_f32_s32(acc[t][r])));
                    }
                    for (j = 0; j < 16 && j < n_left; j++) out[j] = k0 ? out[j] + v[j] : v[j];
                }
            }
        }
    }
}

#pragma GCC pop_options

const gru_isa gru_isa_neon_dotprod = {
    "neon_dotprod",
    neon_dotprod_supported,
    {
        [GRU_FORMAT_F32] = {16, gru_panel_major_bytes_f32, gru_panel_major_pack_f32, neon_matmul_f32},
        [GRU_FORMAT_F64] = {4, gru_panel_major_bytes_f64, gru_panel_major_pack_f64, neon_matmul_f64},
        [GRU_FORMAT_BF16] = {8, gru_bf16_pairs_bytes, gru_bf16_pairs_pack, neon_matmul_bf16},
        [GRU_FORMAT_INT8] = {16, gru_int8_quads_bytes, gru_int8_quads_pack, neon_dotprod_matmul_int8},
    },
    {
        [GRU_FLOAT32] = {neon_activation_f32, neon_gates_f32},
        [GRU_FLOAT64] = {neon_activation_f64, neon_gates_f64},
    },
};
#endif
