/*
 * Micro-benchmark of each kernel set's packed product on the shapes of the
 * workloads (DESIGN.md §3): GFLOP/s, and GB/s of weights for the one-row
 * (streaming) shapes.  On a shared machine the share of a core this process
 * gets changes by the second, so each timing alternates with a register-only
 * FMA loop (the peak) and the report gives the best of each and their ratio.
 * No Python.
 *
 *   gcc -O3 -pthread -Isrc_c benchmarks/c/kernel_bench.c src_c/gru.c src_c/threads.c \
 *       src_c/isa_*.c -lm -o /tmp/kernel_bench
 *   /tmp/kernel_bench [isa] [f32|bf16|int8]   products per shape (default f32)
 *   /tmp/kernel_bench --peak    JSON: FMA peak GFLOP/s per ISA (register-only loops, one thread)
 *   /tmp/kernel_bench --step [native|bfloat16|int8]
 *                               JSON: us per gru_layer_forward call, one step at batch 1, in C
 *                               (tiny I=H=8; model M's two layers), current ISA, one thread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "isa.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* GFLOP/s of 12 independent FMA chains at the ISA's width (the core's peak now). */
#if GRU_X86_DISPATCH
#include <immintrin.h>
/* 12 chains with distinct starts (equal ones would be merged into one by the compiler) */
#define PEAK_BODY(V, FMA, SET1)                                                                    \
    V a0 = SET1(0.1f), a1 = SET1(0.2f), a2 = SET1(0.3f), a3 = SET1(0.4f), a4 = SET1(0.5f),          \
      a5 = SET1(0.6f), a6 = SET1(0.7f), a7 = SET1(0.8f), a8 = SET1(0.9f), a9 = SET1(1.1f),          \
      a10 = SET1(1.2f), a11 = SET1(1.3f), b = SET1(0.9999999f), c = SET1(1e-7f);                    \
    long i;                                                                                        \
    double t = now();                                                                              \
    for (i = 0; i < n; i++) {                                                                      \
        a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c); a3 = FMA(a3, b, c);            \
        a4 = FMA(a4, b, c); a5 = FMA(a5, b, c); a6 = FMA(a6, b, c); a7 = FMA(a7, b, c);            \
        a8 = FMA(a8, b, c); a9 = FMA(a9, b, c); a10 = FMA(a10, b, c); a11 = FMA(a11, b, c);        \
    }                                                                                              \
    t = now() - t;                                                                                 \
    sink = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
__attribute__((noipa, target("avx512f"))) static double peak_avx512(long n)
{
    static __m512 sink_store;
    __m512 sink;
    PEAK_BODY(__m512, _mm512_fmadd_ps, _mm512_set1_ps)
    sink_store = sink;
    __asm__ volatile("" : : "m"(sink_store));
    return n * 12.0 * 32 / t * 1e-9;
}
__attribute__((noipa, target("avx2,fma"))) static double peak_avx2(long n)
{
    static __m256 sink_store;
    __m256 sink;
    PEAK_BODY(__m256, _mm256_fmadd_ps, _mm256_set1_ps)
    sink_store = sink;
    __asm__ volatile("" : : "m"(sink_store));
    return n * 12.0 * 16 / t * 1e-9;
}
#endif
static double peak(const char *isa)
{
#if GRU_X86_DISPATCH
    if (strcmp(isa, "avx512") == 0 || strcmp(isa, "avx512bf16") == 0) return peak_avx512(200000);
    if (strcmp(isa, "avx2") == 0) return peak_avx2(200000);
#endif
    (void)isa;
    return 0;
}

typedef struct {
    const char *what;
    int rows, K, N;
} shape;

static const shape shapes[] = {
    {"L1-resident block: 12 x 32, K 64", 12, 64, 32},
    {"L1-resident: 12 x 64, K 128", 12, 128, 64},
    {"L2-resident: 24 x 256, K 256", 24, 256, 256},
    {"W4 projection (40 steps x 32 rows)", 1280, 512, 1536},
    {"W4-like projection, 240 rows", 240, 512, 1536},
    {"W3 L2-like projection, 240 rows", 240, 256, 384},
    {"W4 recurrent, batch 32", 32, 512, 1536},
    {"W3 L1 projection (40 steps x 64)", 2560, 100, 768},
    {"W3 L1 recurrent, batch 64", 64, 256, 768},
    {"W3 L2 projection (81 steps x 64)", 5184, 256, 384},
    {"W3 L2 recurrent, batch 64", 64, 128, 384},
    {"batch 12", 12, 512, 1536},
    {"batch 8", 8, 256, 768},
    {"batch 4", 4, 256, 768},
    {"batch 1: M L1 R (786 KB)", 1, 256, 768},
    {"batch 1: M L1 W (307 KB)", 1, 100, 768},
    {"batch 1: M L2 W (393 KB)", 1, 256, 384},
    {"batch 1: M L2 R (197 KB)", 1, 128, 384},
    {"batch 1: 3 MB", 1, 512, 1536},
};

static void print_peaks(void)
{
    double best512 = 0, best2 = 0;
    int r;
    for (r = 0; r < 200; r++) {
        const double a = peak("avx512"), b = peak("avx2");
        if (a > best512) best512 = a;
        if (b > best2) best2 = b;
    }
    printf("{\"fma_peak_avx512_GFLOPs\": %.1f, \"fma_peak_avx2_GFLOPs\": %.1f}\n", best512, best2);
}

/* us per one-step forward call of a layer (I, H) at batch 1: median of 15 timings of n calls */
static double step_us(int I, int H, int n, int precision)
{
    gru_layer_desc desc = {GRU_FLOAT32, (gru_precision)precision, I, H, 1, 1, GRU_ACT_SIGMOID,
                           GRU_ACT_TANH, {0, 0}};
    const size_t bytes = gru_layer_packed_bytes(&desc);
    float *W = calloc((size_t)3 * H * I, 4), *R = calloc((size_t)3 * H * H, 4);
    float *x = calloc(I, 4), *h = calloc(H, 4), *y = calloc(H, 4);
    const void *w[1] = {W}, *rr[1] = {R}, *b[1] = {NULL};
    void *packed = malloc(bytes), *ws;
    gru_io io = {1, 1, x, h, NULL, NULL, y, h};
    double t[15], tmp;
    int i, j, k;
    for (k = 0; k < 3 * H * I; k++) W[k] = 0.01f * (k % 7);
    for (k = 0; k < 3 * H * H; k++) R[k] = 0.01f * (k % 5);
    gru_layer_pack(&desc, w, rr, b, packed, bytes);
    ws = malloc(gru_layer_workspace_bytes(packed, 1, 1, 1));
    for (i = 0; i < n; i++) gru_layer_forward(packed, &io, ws, 1);
    for (j = 0; j < 15; j++) {
        double t0 = now();
        for (i = 0; i < n; i++) gru_layer_forward(packed, &io, ws, 1);
        t[j] = (now() - t0) / n * 1e6;
    }
    for (i = 0; i < 15; i++)
        for (j = i + 1; j < 15; j++)
            if (t[j] < t[i]) tmp = t[i], t[i] = t[j], t[j] = tmp;
    free(W); free(R); free(x); free(h); free(y); free(packed); free(ws);
    return t[7];
}

int main(int argc, char **argv)
{
    const char *want = argc > 1 ? argv[1] : NULL;
    if (want && strcmp(want, "--peak") == 0) {
        print_peaks();
        return 0;
    }
    if (want && strcmp(want, "--step") == 0) {
        const char *names[] = {"native", "bfloat16", "int8"};
        int precision = 0;
        while (argc > 2 && precision < 2 && strcmp(argv[2], names[precision])) precision++;
        const double tiny = step_us(8, 8, 20000, precision), l1 = step_us(100, 256, 500, precision),
                     l2 = step_us(256, 128, 500, precision);
        printf("{\"isa\": \"%s\", \"precision\": \"%s\", \"c_step_tiny_us\": %.3f, "
               "\"c_step_M_gru1_us\": %.2f, \"c_step_M_gru2_us\": %.2f}\n",
               gru_isa_current(), names[precision], tiny, l1, l2);
        return 0;
    }
    const gru_isa *isas[] = { /* as gru.c's isa_table */
#if GRU_X86_DISPATCH
        &gru_isa_avx512bf16, &gru_isa_avx512, &gru_isa_avx2,
#endif
#if GRU_NEON
        &gru_isa_neon_dotprod, &gru_isa_neon,
#endif
        &gru_isa_generic};
    const char *format_name = argc > 2 ? argv[2] : "f32";
    const int format = strcmp(format_name, "bf16") == 0   ? GRU_FORMAT_BF16
                       : strcmp(format_name, "int8") == 0 ? GRU_FORMAT_INT8
                                                          : GRU_FORMAT_F32;
    const double weight_bytes = format == GRU_FORMAT_BF16 ? 2 : format == GRU_FORMAT_INT8 ? 1 : 4;
    size_t i, j;
    for (i = 0; i < sizeof(isas) / sizeof(isas[0]); i++) {
        const gru_isa *isa = isas[i];
        const gru_weight_format *fmt = &isa->format[format];
        if ((want && strcmp(want, isa->name)) || !isa->supported() || !fmt->panel) continue;
        printf("%s %s (panel %d)\n", isa->name, format_name, fmt->panel);
        for (j = 0; j < sizeof(shapes) / sizeof(shapes[0]); j++) {
            const shape s = shapes[j];
            const int N = (s.N + fmt->panel - 1) / fmt->panel * fmt->panel;
            float *w = malloc((size_t)s.N * s.K * 4), *x = malloc((size_t)s.rows * s.K * 4 + 64);
            float *y = malloc((size_t)s.rows * N * 4 + 64), *bias = calloc(N, 4);
            void *packed = malloc(fmt->matrix_bytes(fmt, N, s.K) + 64);
            double best = 1e9, best_peak = 0, flops = 2.0 * s.rows * s.K * s.N;
            int r, reps = (int)(2e8 / flops / 50) + 1;
            size_t k;
            for (k = 0; k < (size_t)s.N * s.K; k++) w[k] = (float)((k * 7919) % 1000) / 1000 - 0.5f;
            for (k = 0; k < (size_t)s.rows * s.K; k++) x[k] = (float)((k * 104729) % 1000) / 1000 - 0.5f;
            fmt->pack(fmt, packed, w, s.K, 1, 1, s.N, s.K);
            for (r = 0; r < 40; r++) {
                int q;
                double t, p = peak(isa->name);
                if (p > best_peak) best_peak = p;
                t = now();
                for (q = 0; q < reps; q++)
                    fmt->matmul(packed, s.K, N, 0, N, N, s.rows, x, s.K, y, N, bias, q & 1);
                t = (now() - t) / reps;
                if (t < best) best = t;
            }
            printf("  %-38s %8.2f us  %6.1f GFLOP/s", s.what, best * 1e6, flops / best * 1e-9);
            if (best_peak > 0)
                printf("  (peak now %5.1f: %3.0f%%)", best_peak, 100 * flops / best * 1e-9 / best_peak);
            if (s.rows == 1) printf("  %6.1f GB/s", (double)s.N * s.K * weight_bytes / best * 1e-9);
            printf("\n");
            free(w); free(x); free(y); free(bias); free(packed);
        }
    }
    return 0;
}
