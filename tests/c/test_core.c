/*
 * The C core without Python: every kernel set this CPU runs, in every weight
 * precision (float32, bf16, int8), against a plain double-precision GRU and
 * Dense written here from the equations (DESIGN.md section 1), over both
 * variants, both directions, lengths, masks, h0, thread teams of 1-3 (steps
 * shared by units, or calls split by batch rows) and shapes around the panel
 * widths.  Reduced-precision weights are quantised here too (bf16: round to
 * nearest even; int8: per output row, s = max|w| / 127, q = rint(w / s)) and
 * the reference runs on those values, so kernels that keep their inputs in
 * float32 agree to float rounding; kernels that also round their inputs (dot
 * products: bf16 pairs, int8 bytes) agree within a bound stated below.
 * Exit status 0: all agree.
 *
 *   cc -O2 -pthread -Isrc_c tests/c/test_core.c src_c/[a-z]*.c -lm -o /tmp/test_core
 *   aarch64-linux-gnu-gcc -O2 -static -pthread -Isrc_c tests/c/test_core.c src_c/[a-z]*.c -lm \
 *       -o /tmp/test_core_arm && qemu-aarch64 -cpu max /tmp/test_core_arm
 *   test_core [--quick] [ISA ...]   the named kernel sets only (default: every one this CPU runs);
 *                                   --quick: a third of the grid in bf16 and int8 (under emulation)
 *   test_core --list                each kernel set and whether this CPU runs it
 * (tests/test_kernels.py builds and runs both when the tools are there; tools/test_aarch64.sh
 * runs the whole driver under qemu, with and without the dot-product instructions)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gru.h"

static int failures;
static double worst[3]; /* the largest error seen per precision, for the current kernel set */

static double rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0 - 1.0;
}

static double sig(double v) { return 1 / (1 + exp(-v)); }

static const char *const precision_names[] = {"float32", "bfloat16", "int8"};

/* Kernel sets whose products round their inputs too, by precision. */
static int rounds_inputs(const char *isa, int precision)
{
    if (precision == GRU_PRECISION_BF16) return strcmp(isa, "avx512bf16") == 0;
    if (precision == GRU_PRECISION_INT8)
        return strcmp(isa, "avx512bf16") == 0 || strcmp(isa, "neon_dotprod") == 0;
    return 0;
}

/* Max abs error allowed on outputs in (-1, 1) (states, sigmoids).  Inputs
 * rounded to bf16 (8 significant bits) or to 8-bit steps of their own range
 * change each sum by about 1e-3 at these weight scales; over this grid the
 * largest errors seen are 2.3e-3 (bf16 pairs) and 5.1e-3 (int8): the bounds
 * leave 2.5x. */
static double tolerance(const char *isa, int precision)
{
    if (!rounds_inputs(isa, precision)) return precision == GRU_PRECISION_NATIVE ? 1e-5 : 2e-5;
    return precision == GRU_PRECISION_BF16 ? 6e-3 : 1.2e-2;
}

static float bf16_round(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* The weights as a precision stores them: rows of n, element k at w[row * ld_row + k * ld_k]. */
static void quantise(int precision, float *w, int rows, int n, long ld_row, long ld_k)
{
    int r, k;
    for (r = 0; r < rows; r++) {
        float *v = w + r * ld_row, amax = 0, s;
        if (precision == GRU_PRECISION_BF16)
            for (k = 0; k < n; k++) v[k * ld_k] = bf16_round(v[k * ld_k]);
        if (precision != GRU_PRECISION_INT8) continue;
        for (k = 0; k < n; k++) amax = fabsf(v[k * ld_k]) > amax ? fabsf(v[k * ld_k]) : amax;
        s = amax > 0 ? amax / 127.0f : 1.0f;
        for (k = 0; k < n; k++) v[k * ld_k] = (float)nearbyintf(v[k * ld_k] / s) * s;
    }
}

/* the reference: one row and one step at a time, canonical weights (gates z, r, h) */
static void reference(int B, int T, int I, int H, int D, int lbr, const float *W, const float *R,
                      const float *Bias, const float *x, const float *h0, const int64_t *len,
                      const unsigned char *mask, double *y, double *h_n)
{
    int d, b, s, u, k;
    double *h = malloc(sizeof(double) * H), *hn = malloc(sizeof(double) * H), *rh = malloc(sizeof(double) * H);
    memset(y, 0, sizeof(double) * B * T * D * H);
    for (d = 0; d < D; d++)
        for (b = 0; b < B; b++) {
            const float *w = W + (size_t)d * 3 * H * I, *r = R + (size_t)d * 3 * H * H;
            const float *wb = Bias + (size_t)d * 6 * H, *rb = wb + 3 * H;
            const int L = len ? (int)len[b] : T;
            double *prev = NULL;
            for (u = 0; u < H; u++) h[u] = h0 ? h0[((size_t)d * B + b) * H + u] : 0;
            for (s = 0; s < L; s++) {
                const int t = d ? L - 1 - s : s;
                const float *xt = x + ((size_t)b * T + t) * I;
                double *yt = y + ((size_t)b * T + t) * D * H + d * H;
                if (mask && !mask[b * T + t]) {
                    for (u = 0; u < H; u++) yt[u] = prev ? prev[u] : 0;
                    prev = yt;
                    continue;
                }
                for (u = 0; u < H; u++) {
                    double az = wb[u] + rb[u], ar = wb[H + u] + rb[H + u];
                    for (k = 0; k < I; k++) az += w[u * I + k] * xt[k], ar += w[(H + u) * I + k] * xt[k];
                    for (k = 0; k < H; k++) az += r[u * H + k] * h[k], ar += r[(H + u) * H + k] * h[k];
                    hn[u] = sig(az);          /* z for now */
                    rh[u] = sig(ar);          /* r for now */
                }
                for (u = 0; u < H; u++) {
                    double xn = wb[2 * H + u], hh = 0;
                    for (k = 0; k < I; k++) xn += w[(2 * H + u) * I + k] * xt[k];
                    if (lbr) {
                        hh = rb[2 * H + u];
                        for (k = 0; k < H; k++) hh += r[(2 * H + u) * H + k] * h[k];
                        hh *= rh[u];
                    } else {
                        hh = rb[2 * H + u];
                        for (k = 0; k < H; k++) hh += r[(2 * H + u) * H + k] * rh[k] * h[k];
                    }
                    yt[u] = (1 - hn[u]) * tanh(xn + hh) + hn[u] * h[u];
                }
                for (u = 0; u < H; u++) h[u] = yt[u];
                prev = yt;
            }
            for (u = 0; u < H; u++) h_n[((size_t)d * B + b) * H + u] = h[u];
        }
    free(h);
    free(hn);
    free(rh);
}

static void check_gru(int precision, int B, int T, int I, int H, int D, int lbr, int use_len,
                      int use_mask, int use_h0, int threads, unsigned seed)
{
    const size_t nw = (size_t)D * 3 * H * I, nr = (size_t)D * 3 * H * H, nb = (size_t)D * 6 * H;
    float *W = malloc(4 * nw), *R = malloc(4 * nr), *Bi = malloc(4 * nb), *x = malloc(4 * (size_t)B * T * I);
    float *h0 = malloc(4 * (size_t)D * B * H), *y = malloc(4 * (size_t)B * T * D * H + 4), *hn = malloc(4 * (size_t)D * B * H);
    double *yr = malloc(8 * (size_t)B * T * D * H + 8), *hr = malloc(8 * (size_t)D * B * H);
    int64_t *len = malloc(sizeof(int64_t) * B);
    unsigned char *mask = malloc((size_t)B * T + 1);
    const void *w[2], *r[2], *bb[2];
    gru_layer_desc desc = {GRU_FLOAT32, (gru_precision)precision, I, H, D, lbr, GRU_ACT_SIGMOID,
                           GRU_ACT_TANH, {0, 1}};
    gru_io io;
    size_t bytes, i;
    void *packed;
    double err = 0;
    int d, status;
    for (i = 0; i < nw; i++) W[i] = (float)(rnd(&seed) / sqrt(I));
    for (i = 0; i < nr; i++) R[i] = (float)(rnd(&seed) / sqrt(H));
    for (i = 0; i < nb; i++) Bi[i] = (float)(0.5 * rnd(&seed));
    for (i = 0; i < (size_t)B * T * I; i++) x[i] = (float)rnd(&seed);
    for (i = 0; i < (size_t)D * B * H; i++) h0[i] = use_h0 ? (float)rnd(&seed) : 0.0f;
    for (i = 0; i < (size_t)B; i++) len[i] = i == 0 ? T : (int64_t)(seed = seed * 69069u + 1, (seed >> 8) % (T + 1));
    for (i = 0; i < (size_t)B * T; i++) mask[i] = (seed = seed * 69069u + 1, (seed >> 8) % 10) >= 3;
    for (d = 0; d < D; d++) {
        w[d] = W + (size_t)d * 3 * H * I;
        r[d] = R + (size_t)d * 3 * H * H;
        bb[d] = Bi + (size_t)d * 6 * H;
    }
    bytes = gru_layer_packed_bytes(&desc);
    packed = malloc(bytes);
    if (!bytes || gru_layer_pack(&desc, w, r, bb, packed, bytes) != GRU_OK) {
        printf("FAIL pack B%d H%d\n", B, H);
        failures++;
        return;
    }
    io.batch = B;
    io.steps = T;
    io.x = x;
    io.h0 = use_h0 ? h0 : NULL; /* NULL: zeros, as the reference's h0 holds */
    io.lengths = use_len ? len : NULL;
    io.mask = use_mask ? mask : NULL;
    io.y = y;
    io.h_n = hn;
    status = gru_layer_forward(packed, &io, NULL, threads);
    quantise(precision, W, D * 3 * H, I, I, 1); /* the reference runs on the stored weights */
    quantise(precision, R, D * 3 * H, H, H, 1);
    reference(B, T, I, H, D, lbr, W, R, Bi, x, h0, use_len ? len : NULL, use_mask ? mask : NULL, yr, hr);
    for (i = 0; i < (size_t)B * T * D * H; i++) err = fmax(err, fabs(y[i] - yr[i]));
    for (i = 0; i < (size_t)D * B * H; i++) err = fmax(err, fabs(hn[i] - hr[i]));
    if (err > worst[precision]) worst[precision] = err;
    if (status != GRU_OK || !(err <= tolerance(gru_isa_current(), precision))) {
        printf("FAIL %s %s B%d T%d I%d H%d D%d lbr%d len%d mask%d h0%d thr%d: status %d err %g\n",
               gru_isa_current(), precision_names[precision], B, T, I, H, D, lbr, use_len,
               use_mask, use_h0, threads, status, err);
        failures++;
    }
    free(W); free(R); free(Bi); free(x); free(h0); free(y); free(hn); free(yr); free(hr);
    free(len); free(mask); free(packed);
}

static void check_dense(int precision, int rows, int n_in, int n_out, gru_activation act, int threads,
                        unsigned seed)
{
    float *k = malloc(4 * (size_t)n_in * n_out), *bias = malloc(4 * (size_t)n_out);
    float *x = malloc(4 * (size_t)rows * n_in), *y = malloc(4 * (size_t)rows * n_out);
    gru_dense_desc desc = {GRU_FLOAT32, (gru_precision)precision, n_in, n_out, act};
    size_t bytes = gru_dense_packed_bytes(&desc), i;
    void *packed = malloc(bytes);
    double err = 0;
    int r, j, q;
    for (i = 0; i < (size_t)n_in * n_out; i++) k[i] = (float)(rnd(&seed) / sqrt(n_in));
    for (i = 0; i < (size_t)n_out; i++) bias[i] = (float)rnd(&seed);
    for (i = 0; i < (size_t)rows * n_in; i++) x[i] = (float)rnd(&seed);
    gru_dense_pack(&desc, k, bias, packed, bytes);
    if (gru_dense_forward(packed, rows, x, y, threads) != GRU_OK) failures++;
    quantise(precision, k, n_out, n_in, 1, n_out); /* output column j: kernel[k * n_out + j] */
    for (r = 0; r < rows; r++) {
        double v[700], top = -1e300, total = 0;
        for (j = 0; j < n_out; j++) {
            v[j] = bias[j];
            for (q = 0; q < n_in; q++) v[j] += (double)x[r * n_in + q] * k[q * n_out + j];
            top = fmax(top, v[j]);
        }
        for (j = 0; j < n_out; j++) total += exp(v[j] - top);
        for (j = 0; j < n_out; j++) {
            const double want = act == GRU_ACT_SOFTMAX ? exp(v[j] - top) / total
                              : act == GRU_ACT_SIGMOID ? sig(v[j]) : v[j];
            err = fmax(err, fabs(y[r * n_out + j] - want) / fmax(1, fabs(want)));
        }
    }
    if (err > worst[precision]) worst[precision] = err;
    if (!(err <= (precision == GRU_PRECISION_NATIVE ? 2e-6 : tolerance(gru_isa_current(), precision)))) {
        printf("FAIL dense %s %s rows%d in%d out%d act%d thr%d: err %g\n", gru_isa_current(),
               precision_names[precision], rows, n_in, n_out, (int)act, threads, err);
        failures++;
    }
    free(k); free(bias); free(x); free(y); free(packed);
}

static int wanted(int argc, char **argv, const char *isa)
{
    int i, named = 0;
    for (i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        named = 1;
        if (strcmp(argv[i], isa) == 0) return 1;
    }
    return !named;
}

int main(int argc, char **argv)
{
    static const int hidden[] = {1, 7, 8, 9, 16, 17, 33, 70};
    static const int batch[] = {1, 2, 5, 7, 13, 40};
    static const int inputs[] = {6, 6, 6, 37}; /* one in four odd: k groups of 2 and 4 with a tail */
    unsigned seed = 7;
    int i, n = 0, p, quick = 0, ran = 0;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (p = 0; p < gru_isa_count(); p++) printf("%s %d\n", gru_isa_name(p), gru_isa_supported(p));
            return 0;
        }
        quick |= strcmp(argv[i], "--quick") == 0;
    }
    for (i = 0; i < gru_isa_count(); i++) {
        size_t h, b;
        int lbr, D, thr;
        if (!gru_isa_supported(i) || !wanted(argc, argv, gru_isa_name(i))) continue;
        gru_isa_select(gru_isa_name(i));
        ran++;
        for (p = 0; p < 3; p++) {
            worst[p] = 0;
            for (h = 0; h < sizeof(hidden) / sizeof(hidden[0]); h++)
                for (b = 0; b < sizeof(batch) / sizeof(batch[0]); b++)
                    for (lbr = 0; lbr < 2; lbr++)
                        for (D = 1; D <= 2; D++)
                            for (thr = 1; thr <= 3; thr++, n++)
                                /* options from n / 3, which the thread loop does not
                                 * step: each comes with every thread count */
                                if (!quick || p == GRU_PRECISION_NATIVE || n % 3 == (int)(h % 3))
                                    check_gru(p, batch[b], 5, inputs[n % 4], hidden[h], D, lbr,
                                              (n / 3) % 3 == 1, (n / 3) % 3 == 2,
                                              (n / 9) % 2 == 0, thr, seed++);
            /* long rows: k blocks of the dot-product kernels (1024 bf16, 2048 int8) */
            check_gru(p, 3, 2, 2100, 17, 1, 1, 0, 0, 1, 1, seed++);
            check_gru(p, 1, 2, 1500, 40, 2, 0, 0, 1, 0, 2, seed++);
            for (thr = 1; thr <= 3; thr++) {
                check_dense(p, 1, 128, 1, GRU_ACT_SIGMOID, thr, seed++);
                check_dense(p, 13, 40, 600, GRU_ACT_SOFTMAX, thr, seed++);
                check_dense(p, 100, 17, 33, GRU_ACT_LINEAR, thr, seed++);
            }
            printf("%s %s: largest error %.2e (bound %.1e); %d failures so far\n", gru_isa_name(i),
                   precision_names[p], worst[p], tolerance(gru_isa_name(i), p), failures);
        }
    }
    if (!ran) {
        printf("FAIL no kernel set to test\n");
        return 1;
    }
    return failures != 0;
}
