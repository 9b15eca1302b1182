/*
 * The core, written once for every kernel set: choosing the ISA, packing
 * weights behind a header, workspace sizes, the GRU time loop and its
 * threading, Dense, and the public entry points of gru.h.
 *
 * Per layer direction and call (shapes: B batch, T steps, I inputs, H units,
 * Hp = H padded to the ISA's panel width, G = 3 Hp):
 *   gx (B x chunk, G) = x W^T + Wb (+ Rb folded)        input projections of a time chunk
 *   per step:  gh (B, G) = h R^T (+ Rb_h in the h block)  recurrent products
 *              gates: z, r, n, h' = (1 - z) n + z h      (isa.h GRU_GATES_*)
 * Threads: with 8+ batch rows a thread, each thread runs the whole call for
 * its own ranges of rows (nothing meets until the end).  With fewer, a step is
 * one job for the team, split by hidden units (and by batch rows when units
 * are few); the job that runs a time chunk's first step also projects that
 * chunk's inputs for its units, so a one-step call is one job.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "gru.h"
#include "isa.h"
#include "threads.h"

/* ---- errors and names ------------------------------------------------------ */

const char *gru_error_text(int code)
{
    switch (code) {
    case GRU_OK: return "ok";
    case GRU_ERR_NOMEM: return "out of memory";
    case GRU_ERR_NO_BLAS: return "no BLAS was set (gru_set_blas)";
    case GRU_ERR_STALE_PACK: return "the weights were packed for another kernel set (ISA): pack them again";
    case GRU_ERR_BAD_ARG: return "invalid argument";
    default: return "unknown error";
    }
}

static const char *const activation_names[] = {
    "sigmoid", "hard_sigmoid_keras2", "hard_sigmoid_keras3", "tanh", "relu",
    "linear",  "softsign",            "softmax",             "log_softmax"};
#define N_ACTIVATIONS ((int)(sizeof(activation_names) / sizeof(activation_names[0])))

int gru_activation_by_name(const char *name)
{
    int i;
    if (!name) return -1;
    for (i = 0; i < N_ACTIVATIONS; i++)
        if (strcmp(name, activation_names[i]) == 0) return i;
    return -1;
}

static int valid_activation(int act, int row_wise_allowed)
{
    return act >= 0 && act < (row_wise_allowed ? N_ACTIVATIONS : GRU_ACT_SOFTMAX);
}

/* ---- BLAS ------------------------------------------------------------------------- */

gru_sgemm_fn gru_blas_sgemm;
gru_dgemm_fn gru_blas_dgemm;
int gru_projection_path = GRU_PROJECT_AUTO;

void gru_set_blas(gru_sgemm_fn sgemm, gru_dgemm_fn dgemm)
{
    gru_blas_sgemm = sgemm;
    gru_blas_dgemm = dgemm;
}

void gru_set_projection_path(int path) { gru_projection_path = path; }

/* ---- the ISA tables ------------------------------------------------------------ */

/* Best first. */
static const gru_isa *const isa_table[] = {
#if GRU_X86_DISPATCH
    &gru_isa_avx512bf16,
    &gru_isa_avx512,
    &gru_isa_avx2,
#endif
#if GRU_NEON
    &gru_isa_neon_dotprod,
    &gru_isa_neon,
#endif
    &gru_isa_generic,
};
#define N_ISAS ((int)(sizeof(isa_table) / sizeof(isa_table[0])))

static int isa_support[N_ISAS]; /* 0 unknown, 1 yes, 2 no */
static const gru_isa *isa_now;  /* NULL until first use */

int gru_isa_count(void) { return N_ISAS; }

const char *gru_isa_name(int i) { return i >= 0 && i < N_ISAS ? isa_table[i]->name : NULL; }

int gru_isa_supported(int i)
{
    if (i < 0 || i >= N_ISAS) return 0;
    if (!isa_support[i]) isa_support[i] = isa_table[i]->supported() ? 1 : 2;
    return isa_support[i] == 1;
}

static int best_isa(void)
{
    int i;
    for (i = 0; i < N_ISAS; i++)
        if (gru_isa_supported(i)) return i;
    return N_ISAS - 1;
}

static int isa_index(const char *name)
{
    int i;
    for (i = 0; i < N_ISAS; i++)
        if (strcmp(name, isa_table[i]->name) == 0) return i;
    return -1;
}

/* The current table: chosen at first use from the CPU, or GRU_INFER_ISA. */
static const gru_isa *current_isa(void)
{
    const gru_isa *isa = __atomic_load_n(&isa_now, __ATOMIC_ACQUIRE);
    if (!isa) {
        const char *env = getenv("GRU_INFER_ISA");
        int i = env && *env ? isa_index(env) : -1;
        if (i < 0 || !gru_isa_supported(i)) i = best_isa();
        isa = isa_table[i];
        __atomic_store_n(&isa_now, isa, __ATOMIC_RELEASE);
    }
    return isa;
}

const char *gru_isa_current(void) { return current_isa()->name; }

int gru_isa_select(const char *name)
{
    int i;
    if (!name || strcmp(name, "auto") == 0) {
        i = best_isa();
    } else {
        i = isa_index(name);
        if (i < 0) return GRU_ISA_UNKNOWN;
        if (!gru_isa_supported(i)) return GRU_ISA_UNSUPPORTED;
    }
    __atomic_store_n(&isa_now, isa_table[i], __ATOMIC_RELEASE);
    return 0;
}

/* ---- threads ------------------------------------------------------------------- */

static int max_threads_set; /* 0: the default */
static int cpus_at_first_use; /* the default, read once (a system call: not on every call) */

void gru_set_max_threads(int n) { max_threads_set = n > 0 ? n : 0; }

int gru_max_threads(void)
{
    int n = max_threads_set;
    if (!n) {
        n = __atomic_load_n(&cpus_at_first_use, __ATOMIC_RELAXED);
        if (!n) {
            n = gru_cpu_count();
            __atomic_store_n(&cpus_at_first_use, n, __ATOMIC_RELAXED);
        }
    }
    return n < GRU_MAX_TEAM ? n : GRU_MAX_TEAM;
}

int gru_has_openmp(void) { return 0; }

/* Below this many flops per thread and step, another thread costs more in
 * handing work over than it saves (num_threads 0 only). */
#define MIN_FLOPS_PER_THREAD 40000.0

static int threads_for(int num_threads, double flops, int max_parts)
{
    int nt;
    if (num_threads > 0) {
        nt = num_threads;
    } else {
        const double by_work = flops / MIN_FLOPS_PER_THREAD;
        nt = gru_max_threads();
        if (by_work < nt) nt = by_work >= 1 ? (int)by_work : 1;
    }
    if (nt > max_parts) nt = max_parts;
    if (nt > GRU_MAX_TEAM) nt = GRU_MAX_TEAM;
    return nt > 0 ? nt : 1;
}

/* ---- the panel-major layout (isa.h), shared by the SIMD sets ------------------------ */

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
static size_t align64(size_t n) { return round_up(n, 64); }

size_t gru_panel_major_bytes_f32(const gru_weight_format *fmt, int N, int K)
{
    (void)fmt;
    return (size_t)N * K * sizeof(float);
}

size_t gru_panel_major_bytes_f64(const gru_weight_format *fmt, int N, int K)
{
    (void)fmt;
    return (size_t)N * K * sizeof(double);
}

#define PANEL_MAJOR_PACK(REAL, SUFFIX)                                                             \
    void gru_panel_major_pack_##SUFFIX(const gru_weight_format *fmt, void *dst, const void *src,   \
                                       long ld_n, long ld_k, int blocks, int n, int K)             \
    {                                                                                              \
        const int pw = fmt->panel, np = (int)round_up(n, pw);                                      \
        const REAL *s = (const REAL *)src;                                                         \
        REAL *d = (REAL *)dst;                                                                     \
        int j, row, k;                                                                             \
        memset(d, 0, (size_t)blocks * np * K * sizeof(REAL));                                     \
        for (j = 0; j < blocks; j++)                                                               \
            for (row = 0; row < n; row++) {                                                        \
                const int out = j * np + row, p = out / pw, i = out % pw;                          \
                const REAL *from = s + ((size_t)j * n + row) * ld_n;                               \
                REAL *to = d + (size_t)p * K * pw + i;                                             \
                for (k = 0; k < K; k++) to[(size_t)k * pw] = from[(size_t)k * ld_k];               \
            }                                                                                      \
    }
PANEL_MAJOR_PACK(float, f32)
PANEL_MAJOR_PACK(double, f64)

/* ---- reduced-precision layouts (isa.h), shared by the kernel sets ------------------- */

float gru_int8_row_scale(const float *src, long ld_k, int K)
{
    float amax = 0;
    int k;
    for (k = 0; k < K; k++) {
        const float v = src[(size_t)k * ld_k] < 0 ? -src[(size_t)k * ld_k] : src[(size_t)k * ld_k];
        amax = v > amax ? v : amax;
    }
    return amax > 0 ? amax / 127.0f : 1.0f;
}

size_t gru_int8_data_bytes(int N, int K_padded) { return align64((size_t)N * K_padded); }

size_t gru_bf16_pairs_bytes(const gru_weight_format *fmt, int N, int K)
{
    (void)fmt;
    return (size_t)N * round_up(K, 2) * sizeof(uint16_t);
}

void gru_bf16_pairs_pack(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                         long ld_k, int blocks, int n, int K)
{
    const int pw = fmt->panel, np = (int)round_up(n, pw), Kp = (int)round_up(K, 2);
    const float *s = (const float *)src;
    uint16_t *d = (uint16_t *)dst;
    int j, row, k;
    memset(d, 0, (size_t)blocks * np * Kp * sizeof(uint16_t));
    for (j = 0; j < blocks; j++)
        for (row = 0; row < n; row++) {
            const int out = j * np + row, p = out / pw, i = out % pw;
            const float *from = s + ((size_t)j * n + row) * ld_n;
            uint16_t *to = d + (size_t)p * Kp * pw + 2 * i;
            for (k = 0; k < K; k++)
                to[(size_t)(k / 2) * 2 * pw + (k & 1)] = gru_bf16_from_float(from[(size_t)k * ld_k]);
        }
}

size_t gru_int8_quads_bytes(const gru_weight_format *fmt, int N, int K)
{
    (void)fmt;
    return gru_int8_data_bytes(N, (int)round_up(K, 4)) + 2 * (size_t)N * sizeof(float);
}

void gru_int8_quads_pack(const gru_weight_format *fmt, void *dst, const void *src, long ld_n,
                         long ld_k, int blocks, int n, int K)
{
    const int pw = fmt->panel, np = (int)round_up(n, pw), Kp = (int)round_up(K, 4), N = blocks * np;
    const float *s = (const float *)src;
    int8_t *d = (int8_t *)dst;
    float *scale = (float *)(d + gru_int8_data_bytes(N, Kp)), *scaled_sum = scale + N;
    int j, row, k;
    memset(d, 0, gru_int8_quads_bytes(fmt, N, K));
    for (j = 0; j < blocks; j++)
        for (row = 0; row < n; row++) {
            const int out = j * np + row, p = out / pw, i = out % pw;
            const float *from = s + ((size_t)j * n + row) * ld_n;
            const float sc = gru_int8_row_scale(from, ld_k, K);
            int8_t *to = d + (size_t)p * Kp * pw + 4 * i;
            long sum = 0;
            for (k = 0; k < K; k++) {
                const int8_t q = gru_int8_quantize(from[(size_t)k * ld_k], sc);
                to[(size_t)(k / 4) * 4 * pw + (k & 3)] = q;
                sum += q;
            }
            scale[out] = sc;
            scaled_sum[out] = sc * (float)sum;
        }
}

/* ---- packed buffers --------------------------------------------------------------- */

#define PACK_MAGIC "gruPACK"
#define PACK_VERSION 1
#define HEADER_BYTES 256
enum { PACK_LAYER = 1, PACK_DENSE = 2 };
enum { PART_W, PART_R, PART_BIAS_X, PART_BIAS_REC, N_PARTS }; /* dense: W = kernel, BIAS_X = bias */

typedef struct {
    char magic[8];
    uint32_t version, kind;
    char isa[16];
    int32_t dtype, precision, format, panel;
    int32_t inputs, units, units_padded; /* layer: I, H, Hp; dense: in, out, out padded */
    int32_t num_directions, linear_before_reset, gate_act, cand_act, reverse[2];
    uint64_t total_bytes;
    uint64_t offset[2][N_PARTS];
} pack_header;

typedef char header_fits[sizeof(pack_header) <= HEADER_BYTES ? 1 : -1];

static size_t dtype_bytes(gru_dtype dtype) { return dtype == GRU_FLOAT64 ? sizeof(double) : sizeof(float); }

/* The weight format of (dtype, precision) in the current ISA, or NULL. */
static const gru_weight_format *format_for(const gru_isa *isa, int dtype, int precision, int *index)
{
    int f;
    if (dtype != GRU_FLOAT32 && dtype != GRU_FLOAT64) return NULL;
    if (precision == GRU_PRECISION_NATIVE)
        f = dtype == GRU_FLOAT64 ? GRU_FORMAT_F64 : GRU_FORMAT_F32;
    else if (precision == GRU_PRECISION_BF16 && dtype == GRU_FLOAT32)
        f = GRU_FORMAT_BF16;
    else if (precision == GRU_PRECISION_INT8 && dtype == GRU_FLOAT32)
        f = GRU_FORMAT_INT8;
    else
        return NULL;
    if (!isa->format[f].panel) return NULL; /* this ISA has no kernels for it */
    *index = f;
    return &isa->format[f];
}

/* Limits that keep every index of the kernels within int and sizes within size_t. */
#define MAX_DIM (1 << 24)

static int valid_layer_desc(const gru_layer_desc *d)
{
    return d && d->input_size > 0 && d->hidden_size > 0 && d->input_size <= MAX_DIM &&
           d->hidden_size <= MAX_DIM / 3 && (d->num_directions == 1 || d->num_directions == 2) &&
           (d->linear_before_reset == 0 || d->linear_before_reset == 1) &&
           valid_activation(d->gate_act, 0) && valid_activation(d->cand_act, 0) &&
           (d->reverse[0] == 0 || d->reverse[0] == 1) &&
           (d->num_directions == 1 || d->reverse[1] == 0 || d->reverse[1] == 1);
}

/* The fields every packed buffer's header starts with (format f of the ISA's table). */
static void header_start(pack_header *h, int kind, const gru_isa *isa, int f, int dtype,
                         int precision, int inputs, int units)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, PACK_MAGIC, sizeof(PACK_MAGIC));
    h->version = PACK_VERSION;
    h->kind = (uint32_t)kind;
    strncpy(h->isa, isa->name, sizeof(h->isa) - 1);
    h->dtype = dtype;
    h->precision = precision;
    h->format = f;
    h->panel = isa->format[f].panel;
    h->inputs = inputs;
    h->units = units;
    h->units_padded = (int)round_up(units, isa->format[f].panel);
}

/* Fills the header of a layer buffer for isa; 0 when unsupported.  Callers read the
 * current ISA once and pack with the same one (gru_isa_select may run meanwhile). */
static int layer_layout(const gru_isa *isa, const gru_layer_desc *desc, pack_header *h)
{
    const gru_weight_format *fmt;
    size_t at = HEADER_BYTES, elem;
    int f = 0, d;
    if (!valid_layer_desc(desc)) return 0;
    fmt = format_for(isa, desc->dtype, desc->precision, &f);
    if (!fmt) return 0;
    header_start(h, PACK_LAYER, isa, f, desc->dtype, desc->precision, desc->input_size,
                 desc->hidden_size);
    h->num_directions = desc->num_directions;
    h->linear_before_reset = desc->linear_before_reset;
    h->gate_act = desc->gate_act;
    h->cand_act = desc->cand_act;
    elem = dtype_bytes(desc->dtype);
    for (d = 0; d < desc->num_directions; d++) {
        const int G = 3 * h->units_padded;
        h->reverse[d] = desc->reverse[d];
        h->offset[d][PART_W] = at;
        at += align64(fmt->matrix_bytes(fmt, G, h->inputs));
        h->offset[d][PART_R] = at;
        at += align64(fmt->matrix_bytes(fmt, G, h->units));
        h->offset[d][PART_BIAS_X] = at;
        at += align64((size_t)G * elem);
        h->offset[d][PART_BIAS_REC] = at;
        at += align64((size_t)G * elem);
    }
    h->total_bytes = at;
    return 1;
}

size_t gru_layer_packed_bytes(const gru_layer_desc *desc)
{
    pack_header h;
    return layer_layout(current_isa(), desc, &h) ? (size_t)h.total_bytes : 0;
}

/* Biases: x side every one that is only added; recurrent side Rb_h under
 * linear-before-reset (it sits inside r * (...)).  Each gate block padded to Hp. */
#define FOLD_BIASES(REAL)                                                                          \
    do {                                                                                           \
        const REAL *wb = (const REAL *)b, *rb = wb ? wb + 3 * H : NULL;                            \
        REAL *bx = (REAL *)bias_x, *brec = (REAL *)bias_rec;                                       \
        int g, u;                                                                                  \
        memset(bx, 0, 3 * (size_t)Hp * sizeof(REAL));                                             \
        memset(brec, 0, 3 * (size_t)Hp * sizeof(REAL));                                           \
        if (!wb) break;                                                                            \
        for (g = 0; g < 3; g++)                                                                    \
            for (u = 0; u < H; u++) {                                                              \
                const int to = g * Hp + u, from = g * H + u;                                       \
                if (lbr && g == 2) {                                                               \
                    bx[to] = wb[from];                                                             \
                    brec[to] = rb[from];                                                           \
                } else {                                                                           \
                    bx[to] = wb[from] + rb[from];                                                  \
                }                                                                                  \
            }                                                                                      \
    } while (0)

int gru_layer_pack(const gru_layer_desc *desc, const void *const W[], const void *const R[],
                   const void *const B[], void *packed, size_t packed_bytes)
{
    const gru_isa *isa = current_isa();
    pack_header h;
    const gru_weight_format *fmt;
    char *out = (char *)packed;
    int d;
    if (!layer_layout(isa, desc, &h) || !packed || packed_bytes < h.total_bytes || !W || !R)
        return GRU_ERR_BAD_ARG;
    for (d = 0; d < h.num_directions; d++)
        if (!W[d] || !R[d]) return GRU_ERR_BAD_ARG;
    fmt = &isa->format[h.format];
    memset(out, 0, HEADER_BYTES);
    for (d = 0; d < h.num_directions; d++) {
        const int H = h.units, Hp = h.units_padded, lbr = h.linear_before_reset;
        const void *b = B ? B[d] : NULL;
        void *bias_x = out + h.offset[d][PART_BIAS_X], *bias_rec = out + h.offset[d][PART_BIAS_REC];
        fmt->pack(fmt, out + h.offset[d][PART_W], W[d], h.inputs, 1, 3, H, h.inputs);
        fmt->pack(fmt, out + h.offset[d][PART_R], R[d], H, 1, 3, H, H);
        if (h.dtype == GRU_FLOAT64)
            FOLD_BIASES(double);
        else
            FOLD_BIASES(float);
    }
    memcpy(out, &h, sizeof(h)); /* last: a buffer is valid once complete */
    return GRU_OK;
}

/* The header of a packed buffer of `kind`, checked against the current ISA, and that
 * ISA (*isa_out, when asked): a call runs the kernels of the set it checked, even if
 * gru_isa_select switches sets meanwhile. */
static int read_header(const void *packed, int kind, const pack_header **out,
                       const gru_isa **isa_out)
{
    const pack_header *h = (const pack_header *)packed;
    const gru_isa *isa = current_isa();
    if (!h || memcmp(h->magic, PACK_MAGIC, sizeof(PACK_MAGIC)) != 0 || h->kind != (uint32_t)kind)
        return GRU_ERR_BAD_ARG;
    if (h->version != PACK_VERSION || strncmp(h->isa, isa->name, sizeof(h->isa)) != 0)
        return GRU_ERR_STALE_PACK;
    *out = h;
    if (isa_out) *isa_out = isa;
    return GRU_OK;
}

/* ---- workspace: sizes declared once, carved from the same table ---------------------- */

enum { WS_GX, WS_GH, WS_H0, WS_H1, WS_RH, WS_LO, WS_COUNT, WS_ITEMS };

/* Input projections of one time chunk stay below this size: memory stays
 * bounded on long sequences, and each step's gate pass reads its projections
 * from L2 rather than L3, while each product still has hundreds of rows.
 * Measured (1 thread, Zen 4, best of 5), 8 MB -> 1 MB: W3 fp32 59.0 -> 54.6 ms,
 * bf16 33.9 -> 31.2, int8 24.4 -> 20.5; W4 fp32 194 -> 190, bf16 104 -> 99. */
#define CHUNK_BYTES ((size_t)1 << 20)

static int chunk_steps(int batch, int steps, const pack_header *h)
{
    const size_t per_step = (size_t)(batch > 0 ? batch : 1) * 3 * h->units_padded * dtype_bytes(h->dtype);
    size_t chunk = CHUNK_BYTES / per_step;
    if (chunk < 1) chunk = 1;
    if (steps < 1) return 1;
    return (size_t)steps < chunk ? steps : (int)chunk;
}

/* One direction's buffers: gx (B x chunk, G), gh (B, G), h twice and r*h (B, Hp), two int rows. */
static void workspace_sizes(const pack_header *h, int batch, int chunk, size_t size[WS_ITEMS])
{
    const size_t elem = dtype_bytes(h->dtype), B = batch > 0 ? batch : 0;
    const size_t G = 3 * (size_t)h->units_padded, Hp = h->units_padded;
    size[WS_GX] = B * chunk * G * elem;
    size[WS_GH] = B * G * elem;
    size[WS_H0] = size[WS_H1] = size[WS_RH] = B * Hp * elem;
    size[WS_LO] = size[WS_COUNT] = B * sizeof(int);
}

static size_t workspace_set_bytes(const pack_header *h, int batch, int chunk)
{
    size_t size[WS_ITEMS], total = 0;
    int i;
    workspace_sizes(h, batch, chunk, size);
    for (i = 0; i < WS_ITEMS; i++) total += align64(size[i]);
    return total;
}

size_t gru_layer_workspace_bytes(const void *packed, int batch, int steps, int num_threads)
{
    const pack_header *h;
    (void)num_threads;
    if (read_header(packed, PACK_LAYER, &h, NULL) != GRU_OK || batch < 0 || steps < 0) return 0;
    /* one set per direction (both may run at once), and room to align the start */
    return h->num_directions * workspace_set_bytes(h, batch, chunk_steps(batch, steps, h)) + 64;
}

/* ---- the GRU forward pass ---------------------------------------------------------- */

enum { ROW_DONE, ROW_MASKED, ROW_RUN };

typedef struct {
    const pack_header *h;
    const gru_weight_format *fmt;
    const gru_elementwise *ew;
    size_t elem;
    int I, H, Hp, G, P, pw, lbr;
} layer_view;

typedef struct {
    const layer_view *L;
    const gru_io *io;
    int d, reverse;
    const char *W, *R, *bias_x, *bias_rec;
    char *gx, *gh, *hbuf[2], *rh;
    int *lo, *count;
    int chunk;        /* gx rows per batch row */
    int s0, ns;       /* the time chunk being run */
    int s, cur;       /* the step being run; hbuf[cur] holds the state before it */
    int project;      /* this job projects the time chunk's inputs first */
    int phase;        /* GRU_GATES_* */
    int row_lo, row_hi; /* the batch rows this run covers */
    int unit_chunks, panels_per_chunk, rows_per_chunk, n_chunks;
} dir_run;

static void carve_workspace(dir_run *run, char *ws, int batch)
{
    size_t size[WS_ITEMS];
    char *at[WS_ITEMS];
    int i;
    workspace_sizes(run->L->h, batch, run->chunk, size);
    for (i = 0; i < WS_ITEMS; i++) {
        at[i] = ws;
        ws += align64(size[i]);
    }
    run->gx = at[WS_GX];
    run->gh = at[WS_GH];
    run->hbuf[0] = at[WS_H0];
    run->hbuf[1] = at[WS_H1];
    run->rh = at[WS_RH];
    run->lo = (int *)at[WS_LO];
    run->count = (int *)at[WS_COUNT];
}

/* Which gx rows the time chunk [s0, s0 + ns) needs: row b needs the time
 * indices t(s) = s (forward) or L_b - 1 - s (reverse) for s < L_b, a
 * contiguous range from lo_b.  A chunk that is the whole sequence holds every
 * row's T steps, so the batch is one block of rows. */
static void chunk_rows(dir_run *run)
{
    const gru_io *io = run->io;
    const int T = io->steps, s0 = run->s0, ns = run->ns;
    int b;
    for (b = run->row_lo; b < run->row_hi; b++) {
        const int len = io->lengths ? (int)io->lengths[b] : T;
        int lo, hi;
        if (ns == T) {
            lo = 0;
            hi = T;
        } else if (run->reverse) {
            hi = len - s0;
            lo = len - s0 - ns > 0 ? len - s0 - ns : 0;
        } else {
            lo = s0;
            hi = s0 + ns < len ? s0 + ns : len;
        }
        run->lo[b] = lo;
        run->count[b] = hi > lo ? hi - lo : 0;
    }
}

/* gx for panels [p0, p1) of every gate and batch rows [b0, b1). */
static void project(const dir_run *run, int p0, int p1, int b0, int b1)
{
    const layer_view *L = run->L;
    const gru_io *io = run->io;
    const int T = io->steps, G = L->G, whole = p0 == 0 && p1 == L->P;
    const size_t elem = L->elem;
    int b, g;
    for (b = b0; b < (run->ns == T ? b0 + 1 : b1); b++) {
        const int rows = run->ns == T ? (b1 - b0) * T : run->count[b];
        const size_t x_row = run->ns == T ? (size_t)b0 * T : (size_t)b * T + run->lo[b];
        const size_t gx_row = run->ns == T ? (size_t)b0 * T : (size_t)b * run->chunk;
        const char *x = (const char *)io->x + x_row * L->I * elem;
        char *gx = run->gx + gx_row * G * elem;
        if (rows <= 0) continue;
        if (whole) {
            L->fmt->matmul(run->W, L->I, G, 0, G, G, rows, x, L->I, gx, G, run->bias_x, 0);
            continue;
        }
        for (g = 0; g < 3; g++)
            L->fmt->matmul(run->W, L->I, G, g * L->Hp + p0 * L->pw, g * L->Hp + p1 * L->pw, G, rows, x,
                           L->I, gx, G, run->bias_x, 0);
    }
}

/* What row b does at processing step s (and the time index it reads and writes). */
static inline int row_step(const gru_io *io, int reverse, int b, int s, int *t)
{
    const int len = io->lengths ? (int)io->lengths[b] : io->steps;
    if (s >= len) return ROW_DONE;
    *t = reverse ? len - 1 - s : s;
    return io->mask && !io->mask[(size_t)b * io->steps + *t] ? ROW_MASKED : ROW_RUN;
}

/* One chunk of a step: units of panels [p0, p1) for batch rows [b0, b1). */
static void step_chunk(void *arg, int c)
{
    const dir_run *run = (const dir_run *)arg;
    const layer_view *L = run->L;
    const gru_io *io = run->io;
    const int uc = c % run->unit_chunks, rc = c / run->unit_chunks;
    const int p0 = uc * run->panels_per_chunk;
    const int p1 = p0 + run->panels_per_chunk < L->P ? p0 + run->panels_per_chunk : L->P;
    const int b0 = run->row_lo + rc * run->rows_per_chunk;
    const int b1 = b0 + run->rows_per_chunk < run->row_hi ? b0 + run->rows_per_chunk : run->row_hi;
    const int u0 = p0 * L->pw, u1 = p1 * L->pw < L->H ? p1 * L->pw : L->H;
    const int T = io->steps, Hp = L->Hp, G = L->G, ldy = run->L->h->num_directions * L->H;
    const int flags = run->s & 1 ? GRU_MM_DESCENDING : 0;
    const size_t elem = L->elem;
    const char *h = run->hbuf[run->cur];
    char *h_next = run->hbuf[run->cur ^ 1];
    char *y = (char *)io->y + (size_t)run->d * L->H * elem;
    gru_gate_row a;
    int g, b;

    if (p1 <= p0 || b1 <= b0) return;
    if (run->project) project(run, p0, p1, b0, b1);

    /* Recurrent products for these units.  Successive steps read R in
     * opposite orders: the end of one pass is still in cache for the next. */
    if (run->phase == GRU_GATES_FINISH) {
        L->fmt->matmul(run->R, L->H, G, 2 * Hp + p0 * L->pw, 2 * Hp + p1 * L->pw, G, b1 - b0,
                       run->rh + (size_t)b0 * Hp * elem, Hp, run->gh + (size_t)b0 * G * elem, G, NULL,
                       flags);
    } else {
        const int gates = L->lbr ? 3 : 2;
        for (g = 0; g < gates; g++) {
            const int gate = flags ? gates - 1 - g : g;
            L->fmt->matmul(run->R, L->H, G, gate * Hp + p0 * L->pw, gate * Hp + p1 * L->pw, G,
                           b1 - b0, h + (size_t)b0 * Hp * elem, Hp, run->gh + (size_t)b0 * G * elem,
                           G, L->lbr ? run->bias_rec : NULL, flags);
        }
    }

    a.gate_act = (gru_activation)L->h->gate_act;
    a.cand_act = (gru_activation)L->h->cand_act;
    a.Hp = Hp;
    a.u0 = u0;
    a.u1 = u1;
    for (b = b0; b < b1; b++) {
        int t = 0;
        const int what = row_step(io, run->reverse, b, run->s, &t);
        const size_t row = (size_t)b * Hp * elem;
        char *y_row = y + ((size_t)b * T + t) * ldy * elem;
        if (what != ROW_RUN) {
            if (run->phase == GRU_GATES_FINISH) continue; /* done in the first half */
            /* not run: the state is carried; a masked step repeats the previous
             * step's output, 0 before any (Keras) */
            memcpy(h_next + row + u0 * elem, h + row + u0 * elem, (size_t)(u1 - u0) * elem);
            if (what == ROW_MASKED) {
                if (run->s == 0) {
                    memset(y_row + u0 * elem, 0, (size_t)(u1 - u0) * elem);
                } else {
                    const int t_prev = run->reverse ? t + 1 : t - 1;
                    memcpy(y_row + u0 * elem, y + ((size_t)b * T + t_prev) * ldy * elem + u0 * elem,
                           (size_t)(u1 - u0) * elem);
                }
            }
            continue;
        }
        a.gx = run->gx + ((size_t)b * run->chunk + (t - run->lo[b])) * G * elem;
        a.gh = run->gh + (size_t)b * G * elem;
        a.h = h + row;
        a.h_next = h_next + row;
        a.y = y_row;
        a.rh = run->rh + row;
        L->ew->gates(run->phase, &a);
    }
}

/* How a step is split for a team of nt threads: by units, about two chunks
 * per thread; by batch rows too when units are few. */
static void split_steps(dir_run *run, int nt)
{
    const int P = run->L->P, B = run->row_hi - run->row_lo;
    int unit_chunks = 1, row_chunks = 1;
    if (nt > 1) {
        const int want = 2 * nt;
        unit_chunks = P < want ? P : want;
        if (unit_chunks < want && B > 1) {
            row_chunks = (want + unit_chunks - 1) / unit_chunks;
            if (row_chunks > B) row_chunks = B;
        }
    }
    run->panels_per_chunk = (P + unit_chunks - 1) / unit_chunks;
    run->unit_chunks = (P + run->panels_per_chunk - 1) / run->panels_per_chunk;
    run->rows_per_chunk = (B + row_chunks - 1) / row_chunks;
    run->n_chunks = run->unit_chunks * ((B + run->rows_per_chunk - 1) / run->rows_per_chunk);
}

static void run_job(dir_run *run, int phase, int nt)
{
    int c;
    run->phase = phase;
    if (nt > 1) {
        gru_team_run(nt, run->n_chunks, step_chunk, run);
    } else {
        for (c = 0; c < run->n_chunks; c++) step_chunk(run, c);
    }
    run->project = 0;
}

/* One direction over the whole call for batch rows [b0, b1); nt: the team to
 * share each step with (1: alone).  Works on its own copy of the run's step
 * state, so row ranges can run side by side. */
static void run_direction(const dir_run *shared, int b0, int b1, int nt)
{
    dir_run run_copy = *shared, *run = &run_copy;
    const layer_view *L = run->L;
    const gru_io *io = run->io;
    const int B = io->batch, T = io->steps, H = L->H, Hp = L->Hp, ldy = L->h->num_directions * H;
    const size_t elem = L->elem;
    char *y = (char *)io->y + (size_t)run->d * H * elem;
    int b, s;

    run->row_lo = b0;
    run->row_hi = b1;
    /* state rows are Hp apart */
    for (b = b0; b < b1; b++) {
        char *to = run->hbuf[0] + (size_t)b * Hp * elem;
        if (io->h0)
            memcpy(to, (const char *)io->h0 + ((size_t)run->d * B + b) * H * elem, (size_t)H * elem);
        else
            memset(to, 0, (size_t)H * elem);
    }
    /* steps at or past a row's length are not run and output 0 (PyTorch) */
    if (io->lengths)
        for (b = b0; b < b1; b++) {
            int t;
            for (t = (int)io->lengths[b]; t < T; t++)
                memset(y + ((size_t)b * T + t) * ldy * elem, 0, (size_t)H * elem);
        }

    split_steps(run, nt);
    run->cur = 0;
    for (run->s0 = 0; run->s0 < T; run->s0 += run->chunk) {
        run->ns = T - run->s0 < run->chunk ? T - run->s0 : run->chunk;
        chunk_rows(run);
        run->project = 1;
        for (s = run->s0; s < run->s0 + run->ns; s++) {
            run->s = s;
            if (L->lbr) {
                run_job(run, GRU_GATES_LBR, nt);
            } else {
                run_job(run, GRU_GATES_RESET, nt);
                run_job(run, GRU_GATES_FINISH, nt);
            }
            run->cur ^= 1;
        }
    }
    for (b = b0; b < b1; b++)
        memcpy((char *)io->h_n + ((size_t)run->d * B + b) * H * elem,
               run->hbuf[run->cur] + (size_t)b * Hp * elem, (size_t)H * elem);
}

/* A team split by batch rows: chunk c runs the whole call for one direction
 * and one range of rows, alone.  Rows are independent, so nothing meets until
 * the call ends. */
typedef struct {
    const dir_run *runs;
    int row_chunks, rows_per_chunk, batch;
} row_split;

static void run_rows_alone(void *arg, int c)
{
    const row_split *split = (const row_split *)arg;
    const int d = c / split->row_chunks, b0 = (c % split->row_chunks) * split->rows_per_chunk;
    const int b1 = b0 + split->rows_per_chunk < split->batch ? b0 + split->rows_per_chunk : split->batch;
    if (b1 > b0) run_direction(&split->runs[d], b0, b1, 1);
}

/* Guards memory: sizes within the kernels' int indices, pointers where read,
 * lengths within the steps. */
static int valid_io(const gru_io *io)
{
    int b;
    if (!io || io->batch < 0 || io->steps < 0) return 0;
    if ((long)io->batch * io->steps >= INT_MAX / 4) return 0;
    if (io->batch == 0) return 1;
    if (!io->h_n || (io->steps > 0 && (!io->x || !io->y))) return 0;
    if (io->lengths)
        for (b = 0; b < io->batch; b++)
            if (io->lengths[b] < 0 || io->lengths[b] > io->steps) return 0;
    return 1;
}

/* A recurrent matrix up to this size stays in one core's L2 between steps. */
#define L2_BYTES ((size_t)512 << 10)
/* From this many batch rows a thread, teams split calls by rows, not steps. */
#define ROW_SPLIT_MIN_ROWS 8

int gru_layer_forward(const void *packed, const gru_io *io, void *workspace, int num_threads)
{
    const pack_header *h;
    layer_view L;
    dir_run runs[2];
    void *owned = NULL;
    char *ws;
    size_t set_bytes;
    const gru_isa *isa = NULL;
    int status = read_header(packed, PACK_LAYER, &h, &isa), D, B, T, d, chunk, nt, team;
    double flops;

    if (status != GRU_OK) return status;
    D = h->num_directions;
    if (!valid_io(io) || num_threads < 0) return GRU_ERR_BAD_ARG;
    B = io->batch;
    T = io->steps;
    if (B == 0) return GRU_OK;
    if (T == 0) { /* nothing run: the final state is the initial one */
        const size_t bytes = (size_t)D * B * h->units * dtype_bytes(h->dtype);
        if (io->h0 != io->h_n) {
            if (io->h0)
                memmove(io->h_n, io->h0, bytes);
            else
                memset(io->h_n, 0, bytes);
        }
        return GRU_OK;
    }

    L.h = h;
    L.fmt = &isa->format[h->format];
    L.ew = &isa->elementwise[h->dtype];
    L.elem = dtype_bytes(h->dtype);
    L.I = h->inputs;
    L.H = h->units;
    L.Hp = h->units_padded;
    L.G = 3 * L.Hp;
    L.pw = h->panel;
    L.P = L.Hp / L.pw;
    L.lbr = h->linear_before_reset;

    chunk = chunk_steps(B, T, h);
    if (!workspace) {
        owned = malloc(gru_layer_workspace_bytes(packed, B, T, num_threads));
        if (!owned) return GRU_ERR_NOMEM;
        workspace = owned;
    }
    ws = (char *)align64((size_t)workspace);
    set_bytes = workspace_set_bytes(h, B, chunk);
    for (d = 0; d < D; d++) {
        dir_run *run = &runs[d];
        const char *base = (const char *)packed;
        memset(run, 0, sizeof(*run));
        run->L = &L;
        run->io = io;
        run->d = d;
        run->reverse = h->reverse[d];
        run->W = base + h->offset[d][PART_W];
        run->R = base + h->offset[d][PART_R];
        run->bias_x = base + h->offset[d][PART_BIAS_X];
        run->bias_rec = base + h->offset[d][PART_BIAS_REC];
        run->chunk = chunk;
        carve_workspace(run, ws + d * set_bytes, B);
    }

    /* threads: by the work of one step (its projection too when a call is one step) */
    flops = 2.0 * B * L.G * (L.H + (T == 1 ? L.I : 0));
    nt = threads_for(num_threads, flops, L.P * B);
    team = gru_team_begin(nt, num_threads == 0);
    if (team > 1 && B >= ROW_SPLIT_MIN_ROWS * team) {
        /* Many rows: each thread runs whole calls for its own rows, with no
         * step-by-step meeting (a thread preempted mid-call then delays only
         * its own rows, whose remaining ranges the others take).  Two ranges
         * a thread when there are rows enough, for that balance; each range
         * reads all of R every step, which its rows make worth it. */
        row_split split;
        const int ranges = B >= 2 * ROW_SPLIT_MIN_ROWS * team ? 2 * team : team;
        split.runs = runs;
        split.batch = B;
        split.rows_per_chunk = (B + ranges - 1) / ranges;
        split.row_chunks = (B + split.rows_per_chunk - 1) / split.rows_per_chunk;
        gru_team_run(team, D * split.row_chunks, run_rows_alone, &split);
    } else if (D == 2 && team >= 2 && (B >= 4 || (size_t)L.G * L.H * L.elem <= L2_BYTES)) {
        /* The directions are independent: one thread each, side by side,
         * rather than the team meeting at every step of each in turn.  Not at
         * small batch with a big R: there, threads sharing one direction keep
         * their part of R in their own L2 from step to step, which wins. */
        row_split split;
        split.runs = runs;
        split.batch = B;
        split.rows_per_chunk = B;
        split.row_chunks = 1;
        gru_team_run(team, 2, run_rows_alone, &split);
    } else {
        /* Few rows: the team shares every step, split by hidden units (each
         * thread keeps its part of R in its own L2 from step to step). */
        for (d = 0; d < D; d++) run_direction(&runs[d], 0, B, team);
    }
    gru_team_end(team);
    free(owned);
    return GRU_OK;
}

/* ---- Dense ------------------------------------------------------------------------ */

static int valid_dense_desc(const gru_dense_desc *d)
{
    return d && d->in_features > 0 && d->out_features > 0 && d->in_features <= MAX_DIM &&
           d->out_features <= MAX_DIM && valid_activation(d->act, 1);
}

static int dense_layout(const gru_isa *isa, const gru_dense_desc *desc, pack_header *h)
{
    const gru_weight_format *fmt;
    int f = 0;
    if (!valid_dense_desc(desc)) return 0;
    fmt = format_for(isa, desc->dtype, desc->precision, &f);
    if (!fmt) return 0;
    header_start(h, PACK_DENSE, isa, f, desc->dtype, desc->precision, desc->in_features,
                 desc->out_features);
    h->num_directions = 1;
    h->gate_act = desc->act;
    h->offset[0][PART_W] = HEADER_BYTES;
    h->offset[0][PART_BIAS_X] =
        HEADER_BYTES + align64(fmt->matrix_bytes(fmt, h->units_padded, h->inputs));
    h->total_bytes = h->offset[0][PART_BIAS_X] + align64((size_t)h->units_padded * dtype_bytes(desc->dtype));
    return 1;
}

size_t gru_dense_packed_bytes(const gru_dense_desc *desc)
{
    pack_header h;
    return dense_layout(current_isa(), desc, &h) ? (size_t)h.total_bytes : 0;
}

int gru_dense_pack(const gru_dense_desc *desc, const void *kernel, const void *bias, void *packed,
                   size_t packed_bytes)
{
    const gru_isa *isa = current_isa();
    pack_header h;
    const gru_weight_format *fmt;
    char *out = (char *)packed;
    size_t elem;
    if (!dense_layout(isa, desc, &h) || !packed || packed_bytes < h.total_bytes || !kernel)
        return GRU_ERR_BAD_ARG;
    fmt = &isa->format[h.format];
    elem = dtype_bytes(desc->dtype);
    memset(out, 0, HEADER_BYTES);
    /* the kernel is (in, out): output row n, element k at kernel[k * out + n] */
    fmt->pack(fmt, out + h.offset[0][PART_W], kernel, 1, h.units, 1, h.units, h.inputs);
    memset(out + h.offset[0][PART_BIAS_X], 0, (size_t)h.units_padded * elem);
    if (bias) memcpy(out + h.offset[0][PART_BIAS_X], bias, (size_t)h.units * elem);
    memcpy(out, &h, sizeof(h));
    return GRU_OK;
}

typedef struct {
    const pack_header *h;
    const gru_weight_format *fmt;
    const gru_elementwise *ew;
    const char *kernel, *bias;
    const char *x;
    char *y;
    long rows;
    int rows_per_chunk, panels_per_chunk, panel_chunks, activate;
} dense_run;

static void dense_chunk(void *arg, int c)
{
    const dense_run *run = (const dense_run *)arg;
    const pack_header *h = run->h;
    const size_t elem = dtype_bytes(h->dtype);
    const long r0 = (long)(c / run->panel_chunks) * run->rows_per_chunk;
    const long r1 = r0 + run->rows_per_chunk < run->rows ? r0 + run->rows_per_chunk : run->rows;
    const int c0 = (c % run->panel_chunks) * run->panels_per_chunk * h->panel;
    const int c1 = c0 + run->panels_per_chunk * h->panel;
    if (r1 <= r0) return;
    run->fmt->matmul(run->kernel, h->inputs, h->units_padded, c0, c1, h->units, (int)(r1 - r0),
                     run->x + r0 * h->inputs * elem, h->inputs, run->y + r0 * h->units * elem,
                     h->units, run->bias, 0);
    if (run->activate && run->panel_chunks == 1)
        run->ew->activation((gru_activation)h->gate_act, run->y + r0 * h->units * elem, r1 - r0,
                            h->units);
}

static void dense_activation_chunk(void *arg, int c)
{
    const dense_run *run = (const dense_run *)arg;
    const pack_header *h = run->h;
    const long r0 = (long)c * run->rows_per_chunk;
    const long r1 = r0 + run->rows_per_chunk < run->rows ? r0 + run->rows_per_chunk : run->rows;
    if (r1 > r0)
        run->ew->activation((gru_activation)h->gate_act,
                            run->y + r0 * h->units * dtype_bytes(h->dtype), r1 - r0, h->units);
}

/* Rows per chunk of a many-row Dense (a block of the kernels' row blocks). */
#define DENSE_ROWS 48

int gru_dense_forward(const void *packed, long rows, const void *x, void *y, int num_threads)
{
    const pack_header *h;
    dense_run run;
    const gru_isa *isa = NULL;
    int status = read_header(packed, PACK_DENSE, &h, &isa), nt, team, P;
    if (status != GRU_OK) return status;
    if (rows < 0 || num_threads < 0 || rows >= INT_MAX / 4) return GRU_ERR_BAD_ARG;
    if (rows == 0) return GRU_OK;
    if (!x || !y) return GRU_ERR_BAD_ARG;

    memset(&run, 0, sizeof(run));
    run.h = h;
    run.fmt = &isa->format[h->format];
    run.ew = &isa->elementwise[h->dtype];
    run.kernel = (const char *)packed + h->offset[0][PART_W];
    run.bias = (const char *)packed + h->offset[0][PART_BIAS_X];
    run.x = (const char *)x;
    run.y = (char *)y;
    run.rows = rows;
    run.activate = h->gate_act != GRU_ACT_LINEAR;
    P = h->units_padded / h->panel;

    nt = threads_for(num_threads, 2.0 * rows * h->inputs * h->units, (int)(rows < P ? P : rows));
    team = gru_team_begin(nt, num_threads == 0);
    if (team == 1) {
        run.rows_per_chunk = (int)rows;
        run.panels_per_chunk = P;
        run.panel_chunks = 1;
        dense_chunk(&run, 0);
    } else if (rows >= (long)2 * team) {
        /* by rows (each chunk does its rows' activation) */
        long per = (rows + 2 * team - 1) / (2 * team);
        if (per > DENSE_ROWS) per = DENSE_ROWS;
        if ((rows + per - 1) / per > GRU_MAX_CHUNKS) per = (rows + GRU_MAX_CHUNKS - 1) / GRU_MAX_CHUNKS;
        run.rows_per_chunk = (int)per;
        run.panels_per_chunk = P;
        run.panel_chunks = 1;
        gru_team_run(team, (int)((rows + per - 1) / per), dense_chunk, &run);
    } else {
        /* few rows, many outputs: by panels, then the activation by rows */
        const int chunks = P < 2 * team ? P : 2 * team;
        run.rows_per_chunk = (int)rows;
        run.panels_per_chunk = (P + chunks - 1) / chunks;
        run.panel_chunks = (P + run.panels_per_chunk - 1) / run.panels_per_chunk;
        gru_team_run(team, run.panel_chunks, dense_chunk, &run);
        if (run.activate) {
            run.rows_per_chunk = 1;
            gru_team_run(team, (int)rows, dense_activation_chunk, &run);
        }
    }
    gru_team_end(team);
    return GRU_OK;
}

int gru_activation_apply(gru_dtype dtype, gru_activation act, void *values, long rows, long cols)
{
    if ((dtype != GRU_FLOAT32 && dtype != GRU_FLOAT64) || !valid_activation(act, 1) || rows < 0 ||
        cols < 0 || (!values && rows * cols > 0))
        return GRU_ERR_BAD_ARG;
    if (rows * cols > 0) current_isa()->elementwise[dtype].activation(act, values, rows, cols);
    return GRU_OK;
}
