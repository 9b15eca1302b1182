/*
 * GRU forward pass: shared helpers, then the template in gru_impl.h
 * instantiated for float32 and float64, then the public entry points.
 */
#include <stdlib.h>
#include <string.h>

#include "gru.h"
#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
static int gru_thread_id(void) { return omp_get_thread_num(); }
static int gru_thread_count(void) { return omp_get_num_threads(); }
#else
static int gru_thread_id(void) { return 0; }
static int gru_thread_count(void) { return 1; }
#endif

/* Input projections of one chunk of steps stay below this size, so memory is
 * bounded on long sequences while each GEMM stays large. */
#define GRU_CHUNK_BYTES (8u << 20)
/* The packed kernel projects inputs in blocks of this many rows (an L2-sized
 * block of x while every weight panel passes over it). */
#define GRU_PROJECTION_ROWS 96
/* Below this much work per step and thread, another thread costs more in
 * synchronisation than it saves. */
#define GRU_MIN_FLOPS_PER_THREAD 100000.0

enum { GRU_ROW_DONE, GRU_ROW_MASKED, GRU_ROW_RUN };

/* A recurrent matrix up to this size stays in one core's L2 between steps. */
#define GRU_L2_BYTES (384u << 10)

static gru_sgemm_fn blas_sgemm;
static gru_dgemm_fn blas_dgemm;

int gru_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Input projections: GRU_PROJECT_AUTO uses the packed kernel where the AVX2
 * build runs (it beats SciPy's OpenBLAS sgemm on these shapes, measured in
 * benchmarks/) and BLAS elsewhere; tests force each path. */
static int projection_path = GRU_PROJECT_AUTO;
static int use_avx2 = 0;

void gru_set_projection_path(int path) { projection_path = path; }

static int use_blas_projection(int avx2_build)
{
    return projection_path == GRU_PROJECT_BLAS || (projection_path == GRU_PROJECT_AUTO && !avx2_build);
}

static size_t align_up(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Bytes of one direction's buffers (gru_impl.h carves them in this order). */
static size_t buffer_set_bytes(size_t B, size_t chunk, size_t H, size_t elem)
{
    return align_up(B * chunk * 3 * H * elem) + align_up(B * 3 * H * elem) +
           3 * align_up(B * H * elem) + 2 * align_up(B * sizeof(int));
}

static int chunk_steps(int batch, int steps, int H, size_t elem)
{
    const size_t per_step = (size_t)(batch > 0 ? batch : 1) * 3 * H * elem;
    size_t chunk = GRU_CHUNK_BYTES / (per_step > 0 ? per_step : 1);
    if (chunk < 1) chunk = 1;
    return (size_t)steps < chunk ? (steps > 0 ? steps : 1) : (int)chunk;
}

static int choose_threads(int requested, int panels, double flops_per_step)
{
    int nt = requested > 0 ? requested : 1;
    const double by_work = flops_per_step / GRU_MIN_FLOPS_PER_THREAD;
    if (nt > panels) nt = panels;
    if (nt > by_work) nt = by_work >= 1 ? (int)by_work : 1;
    return nt;
}

/* C (m x n, column-major) = A^T B for A stored (m x k) row-major and B stored
 * (n x k) row-major: in row-major terms out (n x m) = b a^T. */
static void gemm_f32(int m, int n, int k, const float *a, const float *b, float *c)
{
    char ta = 'T', tb = 'N';
    float one = 1, zero = 0;
    int lda = k, ldb = k, ldc = m;
    blas_sgemm(&ta, &tb, &m, &n, &k, &one, (float *)a, &lda, (float *)b, &ldb, &zero, c, &ldc);
}

static void gemm_f64(int m, int n, int k, const double *a, const double *b, double *c)
{
    char ta = 'T', tb = 'N';
    double one = 1, zero = 0;
    int lda = k, ldb = k, ldc = m;
    blas_dgemm(&ta, &tb, &m, &n, &k, &one, (double *)a, &lda, (double *)b, &ldb, &zero, c, &ldc);
}

/* The template is compiled four times: float32 and float64, each portably
 * and for AVX2+FMA (vectorised gate math); gru_forward picks at run time. */
#define REAL float
#define GRU_SUFFIX _f32
#define GRU_EXP gru_expf
#define GRU_TANH gru_tanhf
#define GRU_FABS fabsf
#define GRU_GEMM gemm_f32
#define GRU_MATVEC gru_packed_matvec_f32
#include "gru_instances.h"
#undef REAL
#undef GRU_SUFFIX
#undef GRU_EXP
#undef GRU_TANH
#undef GRU_FABS
#undef GRU_GEMM
#undef GRU_MATVEC

#define REAL double
#define GRU_SUFFIX _f64
#define GRU_EXP exp
#define GRU_TANH tanh
#define GRU_FABS fabs
#define GRU_GEMM gemm_f64
#define GRU_MATVEC gru_packed_matvec_f64
#include "gru_instances.h"

static void select_paths(void)
{
    gru_select_kernels();
#if GRU_X86_DISPATCH
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
}

void gru_set_blas(gru_sgemm_fn sgemm, gru_dgemm_fn dgemm)
{
    blas_sgemm = sgemm;
    blas_dgemm = dgemm;
    select_paths();
}

int gru_apply_activation(gru_dtype dtype, gru_activation act, void *values, int n)
{
#if GRU_X86_DISPATCH
    if (use_avx2) {
        if (dtype == GRU_FLOAT64)
            apply_activation_f64_avx2(act, (double *)values, n);
        else
            apply_activation_f32_avx2(act, (float *)values, n);
        return 0;
    }
#endif
    if (dtype == GRU_FLOAT64)
        apply_activation_f64(act, (double *)values, n);
    else
        apply_activation_f32(act, (float *)values, n);
    return 0;
}

size_t gru_workspace_bytes(const gru_layer *layer, int batch, int steps, int num_threads)
{
    const size_t elem = layer->dtype == GRU_FLOAT64 ? sizeof(double) : sizeof(float);
    const size_t H = layer->hidden_size, B = batch;
    const size_t chunk = chunk_steps(batch, steps, layer->hidden_size, elem);
    (void)num_threads;
    /* one set per direction: bidirectional layers may run both at once */
    return layer->num_directions * buffer_set_bytes(B, chunk, H, elem) + 64;
}

int gru_forward(const gru_layer *layer, const gru_io *io, void *workspace, int num_threads)
{
    void *owned = NULL;
    char *ws;
    int status;

    if (!blas_sgemm || !blas_dgemm) return -2;
    if (!workspace) {
        owned = malloc(gru_workspace_bytes(layer, io->batch, io->steps, num_threads));
        if (!owned) return -1;
        workspace = owned;
    }
    /* Callers hand in 64-byte-aligned workspace; malloc'd is 16-aligned, which
     * only costs speed. */
    ws = (char *)workspace;
#if GRU_X86_DISPATCH
    if (use_avx2)
        status = layer->dtype == GRU_FLOAT64 ? forward_f64_avx2(layer, io, ws, num_threads)
                                             : forward_f32_avx2(layer, io, ws, num_threads);
    else
#endif
        status = layer->dtype == GRU_FLOAT64 ? forward_f64(layer, io, ws, num_threads)
                                             : forward_f32(layer, io, ws, num_threads);
    free(owned);
    return status;
}
