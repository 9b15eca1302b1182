/*
 * The kernel table: what one instruction set (ISA) gives the core.
 *
 * Each isa_*.c file defines one `const gru_isa gru_isa_<name>` and owns the
 * packed layout of its weights (gru_weight_format: panel width, bytes, pack,
 * product).  gru.c lists the tables, picks one, and writes the time loop,
 * threading and packed-buffer headers once, for all of them.  See README.md
 * for how to add an ISA.
 */
#ifndef GRU_INFER_ISA_H
#define GRU_INFER_ISA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gru.h"

/* x86-64 ISA files are compiled beside the portable one and chosen at run
 * time; -DGRU_NO_DISPATCH (or another CPU or compiler) builds the portable one only. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(GRU_NO_DISPATCH)
#define GRU_X86_DISPATCH 1
#else
#define GRU_X86_DISPATCH 0
#endif
/* AArch64: NEON is baseline; the dot-product set is compiled with a target
 * pragma and chosen at run time. */
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(GRU_NO_DISPATCH)
#define GRU_NEON 1
#else
#define GRU_NEON 0
#endif

/* Weight formats: the compute dtype and the storage precision together. */
enum { GRU_FORMAT_F32 = 0, GRU_FORMAT_F64 = 1, GRU_FORMAT_BF16 = 2, GRU_FORMAT_INT8 = 3,
       GRU_FORMAT_COUNT = 4 };

/* matmul flags */
#define GRU_MM_DESCENDING 1 /* visit panels from the last down: same result, other cache order */

/*
 * y[b, j] = bias[j] + sum_k x[b, k] * W[j, k]   for rows b < rows, columns j in [c0, min(c1, n_valid))
 *
 * w: a packed (N, K) matrix (N a multiple of the panel width); c0, c1
 * multiples of the panel width; y and bias indexed by absolute column j
 * (bias NULL: none; bias holds at least c1 values); x and y in the compute
 * dtype, rows apart by ldx and ldy elements.  Columns at or past n_valid are
 * never written.
 */
typedef void (*gru_matmul_fn)(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                              const void *x, long ldx, void *y, long ldy, const void *bias,
                              int flags);

typedef struct gru_weight_format gru_weight_format;
struct gru_weight_format {
    int panel; /* output columns per packed panel; 0: this ISA has no kernels for the format */
    /* bytes of one packed (N, K) matrix, N a multiple of panel */
    size_t (*matrix_bytes)(const gru_weight_format *fmt, int N, int K);
    /* Packs `blocks` blocks of n rows each, every block padded with zero rows
     * to round_up(n, panel): packed row j*round_up(n, panel) + i is source row
     * j*n + i, whose element k is src[(j*n + i)*ld_n + k*ld_k] (compute dtype). */
    void (*pack)(const gru_weight_format *fmt, void *dst, const void *src, long ld_n, long ld_k,
                 int blocks, int n, int K);
    gru_matmul_fn matmul;
};

/* One batch row's gate pass over units [u0, u1).  gx and gh hold three gate
 * blocks (z, r, h) Hp apart; every bias that is only added is in gx, and
 * Rb_h is in gh's h block (linear-before-reset). */
typedef struct {
    gru_activation gate_act, cand_act;
    long Hp;
    const void *gx; /* input projections */
    void *gh;       /* recurrent products; GRU_GATES_RESET leaves z, r in it */
    const void *h;  /* state before the step */
    void *h_next;   /* state after */
    void *y;        /* output row (a copy of h_next) */
    void *rh;       /* r * h (reset-before) */
    int u0, u1;
} gru_gate_row;

enum {
    GRU_GATES_LBR = 0,   /* linear-before-reset: n = phi(gx_h + r * gh_h); h' = (1-z) n + z h */
    GRU_GATES_RESET = 1, /* reset-before, first half: z, r; rh = r * h */
    GRU_GATES_FINISH = 2 /* reset-before, second half: n = phi(gx_h + gh_h) with gh_h = R_h rh; h' */
};

typedef struct {
    /* act over (rows, cols) in place; softmax / log_softmax over each row */
    void (*activation)(gru_activation act, void *values, long rows, long cols);
    void (*gates)(int phase, const gru_gate_row *row);
} gru_elementwise;

typedef struct {
    const char *name;
    int (*supported)(void);                      /* this CPU and OS run it */
    gru_weight_format format[GRU_FORMAT_COUNT];  /* by GRU_FORMAT_* */
    gru_elementwise elementwise[2];              /* by gru_dtype */
} gru_isa;

/* The panel-major layout most SIMD sets use: panel p is (K, panel), row k of
 * it holding W[p*panel + i, k] for i < panel.  Shared by ISA files. */
size_t gru_panel_major_bytes_f32(const gru_weight_format *fmt, int N, int K);
size_t gru_panel_major_bytes_f64(const gru_weight_format *fmt, int N, int K);
void gru_panel_major_pack_f32(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                              long ld_k, int blocks, int n, int K);
void gru_panel_major_pack_f64(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                              long ld_k, int blocks, int n, int K);

/* ---- Reduced-precision weights (GRU_FORMAT_BF16, GRU_FORMAT_INT8) ----------------
 * Quantised once, here, for every kernel set (the NumPy mirror is
 * gru_infer/spec/precision.py; tests pin the two to each other):
 *  - bf16: round to nearest even (NaN stays NaN);
 *  - int8: per output row j, s_j = max_k |W[j, k]| / 127 (1 for an all-zero
 *    row), q[j, k] = rint(W[j, k] / s_j) in [-127, 127]; W ~ s_j q[j, k].
 * Biases, states and sums stay float32. */
static inline uint16_t gru_bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float gru_float_from_bf16(uint16_t b)
{
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* s_j of one source row (elements src[k * ld_k]) */
float gru_int8_row_scale(const float *src, long ld_k, int K);
static inline int8_t gru_int8_quantize(float w, float scale)
{
    float v = w / scale;
    v = v > 127.0f ? 127.0f : v;
    v = v < -127.0f ? -127.0f : v;
    if (v != v) return 0; /* NaN (the Python layer refuses non-finite weights) */
    v = (v + 12582912.0f) - 12582912.0f; /* round to nearest even, as rint, without libm */
    return (int8_t)(int)v;
}

/* Every int8 layout ends in a trailer of 2 N floats, 64-byte aligned after the
 * data: scale[j] = s_j, then scaled_sum[j] = s_j * sum_k q[j, k] (what a
 * kernel that offsets its quantised inputs subtracts again). */
size_t gru_int8_data_bytes(int N, int K_padded);
static inline const float *gru_int8_trailer(const void *w, int N, int K_padded)
{
    return (const float *)((const char *)w + gru_int8_data_bytes(N, K_padded));
}

/* SIMD layouts of reduced weights, panel-major like the float ones, with
 * consecutive k interleaved inside each panel row so that one 32-bit lane
 * holds what a dot-product instruction sums:
 *  - bf16 pairs: panel p is (Kp/2, panel, 2) with Kp = K rounded up to 2:
 *    element (p*panel + i, k) at [k/2][i][k%2] (vdpbf16ps; widened in
 *    registers by a shift and a mask elsewhere);
 *  - int8 quads: panel p is (Kp/4, panel, 4) with Kp = K rounded up to 4:
 *    element at [k/4][i][k%4] (vpdpbusd, sdot; widened by shifts elsewhere),
 *    then the int8 trailer.
 * Padding rows and k are zero. */
size_t gru_bf16_pairs_bytes(const gru_weight_format *fmt, int N, int K);
void gru_bf16_pairs_pack(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                         long ld_k, int blocks, int n, int K);
size_t gru_int8_quads_bytes(const gru_weight_format *fmt, int N, int K);
void gru_int8_quads_pack(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                         long ld_k, int blocks, int n, int K);

/* The BLAS table (gru_set_blas), for kernel sets that use it. */
extern gru_sgemm_fn gru_blas_sgemm;
extern gru_dgemm_fn gru_blas_dgemm;
extern int gru_projection_path;

extern const gru_isa gru_isa_generic;
#if GRU_X86_DISPATCH
extern const gru_isa gru_isa_avx2;
extern const gru_isa gru_isa_avx512;
extern const gru_isa gru_isa_avx512bf16;
/* isa_avx512.c's float kernels, which the AVX-512 BF16/VNNI set runs too */
void gru_avx512_matmul_f32(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                           const void *x, long ldx, void *y, long ldy, const void *bias, int flags);
void gru_avx512_matmul_f64(const void *w, int K, int N, int c0, int c1, int n_valid, int rows,
                           const void *x, long ldx, void *y, long ldy, const void *bias, int flags);
void gru_avx512_activation_f32(gru_activation act, void *values, long rows, long cols);
void gru_avx512_activation_f64(gru_activation act, void *values, long rows, long cols);
void gru_avx512_gates_f32(int phase, const gru_gate_row *row);
void gru_avx512_gates_f64(int phase, const gru_gate_row *row);
int gru_avx512_supported(void);
#endif
#if GRU_NEON
extern const gru_isa gru_isa_neon_dotprod;
extern const gru_isa gru_isa_neon;
#endif

#endif
