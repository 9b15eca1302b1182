/*
 * Template body of the GRU forward pass, included by gru.c once per dtype with
 * REAL, GRU_NAME(x), GRU_EXP, GRU_TANH, GRU_FABS, GRU_GEMM and GRU_MATVEC defined.
 *
 * Per direction: the input projections gx = x W^T of a chunk of steps come
 * from one BLAS GEMM (or, for a single streamed step, from the packed kernel);
 * then, per step, each thread computes the recurrent products of its own
 * hidden units for the whole batch with the packed kernel and finishes the
 * gates of those units at once, so a step costs one barrier
 * (two for reset-before, where R_h needs all of r * h).
 */
#include "activations.h"

typedef struct {
    REAL *gx;   /* (batch * chunk, 3H): input projections of one chunk */
    REAL *gh;   /* (batch, 3H): recurrent products of one step, then gate values */
    REAL *h[2]; /* (batch, H) each: state before and after a step */
    REAL *rh;   /* (batch, H): r * h, reset-before only */
    int *lo;    /* (batch): the time index of each row's first gx row */
    int *count; /* (batch): how many gx rows each row has in this chunk */
} GRU_NAME(buffers);

static void GRU_NAME(carve_buffers)(GRU_NAME(buffers) *buf, char *ws, int batch, int chunk, int H)
{
    const size_t G = 3 * (size_t)H;
    buf->gx = (REAL *)ws;   ws += align_up((size_t)batch * chunk * G * sizeof(REAL));
    buf->gh = (REAL *)ws;   ws += align_up((size_t)batch * G * sizeof(REAL));
    buf->h[0] = (REAL *)ws; ws += align_up((size_t)batch * H * sizeof(REAL));
    buf->h[1] = (REAL *)ws; ws += align_up((size_t)batch * H * sizeof(REAL));
    buf->rh = (REAL *)ws;   ws += align_up((size_t)batch * H * sizeof(REAL));
    buf->lo = (int *)ws;    ws += align_up((size_t)batch * sizeof(int));
    buf->count = (int *)ws;
}

/* Which gx rows one chunk of processing steps [s0, s0 + ns) needs.  Row b
 * needs the time indices t(s) = s (forward) or L_b - 1 - s (reverse) for
 * s < L_b: a contiguous range starting at lo_b.  When the chunk covers the
 * whole sequence, every row holds all T steps, so the batch is one block. */
static void GRU_NAME(chunk_rows)(const gru_direction *dir, const gru_io *io,
                                 GRU_NAME(buffers) *buf, int s0, int ns)
{
    const int B = io->batch, T = io->steps;
    int b;
    for (b = 0; b < B; b++) {
        const int len = io->lengths ? (int)io->lengths[b] : T;
        int lo, hi;
        if (ns == T) {
            lo = 0;
            hi = T;
        } else if (dir->reverse) {
            hi = len - s0;
            lo = len - s0 - ns > 0 ? len - s0 - ns : 0;
        } else {
            lo = s0;
            hi = s0 + ns < len ? s0 + ns : len;
        }
        buf->lo[b] = lo;
        buf->count[b] = hi > lo ? hi - lo : 0;
    }
}

/* gx = x W^T for the chunk's rows with BLAS (one GEMM per row, or one for
 * the whole batch when the chunk is the whole sequence). */
static void GRU_NAME(project_blas)(const gru_layer *L, const gru_direction *dir, const gru_io *io,
                                   GRU_NAME(buffers) *buf, int chunk, int ns)
{
    const int B = io->batch, T = io->steps, I = L->input_size, G = 3 * L->hidden_size;
    const REAL *x = (const REAL *)io->x;
    int b;
    if (ns == T) {
        GRU_GEMM(G, B * T, I, (const REAL *)dir->W, x, buf->gx);
        return;
    }
    for (b = 0; b < B; b++)
        if (buf->count[b] > 0)
            GRU_GEMM(G, buf->count[b], I, (const REAL *)dir->W,
                     x + ((size_t)b * T + buf->lo[b]) * I, buf->gx + (size_t)b * chunk * G);
}

/* The same with the packed kernel, for the hidden units of panels [p0, p1)
 * only: each thread projects what its own gate pass will read, so no
 * barrier is needed before the time loop.  Rows go in blocks that stay in
 * L2 while every weight panel passes over them. */
static void GRU_NAME(project_packed)(const gru_layer *L, const gru_direction *dir,
                                     const gru_io *io, GRU_NAME(buffers) *buf, int chunk, int ns,
                                     int p0, int p1)
{
    const int B = io->batch, T = io->steps, I = L->input_size, H = L->hidden_size, G = 3 * H;
    const int P = (H + GRU_PANEL - 1) / GRU_PANEL;
    const size_t Wgate = (size_t)P * I * GRU_PANEL;
    const REAL *x = (const REAL *)io->x;
    const REAL *W_packed = (const REAL *)dir->W_packed;
    int b, g;
    long r0, rows;
    for (b = 0; b < (ns == T ? 1 : B); b++) {
        const REAL *xb = ns == T ? x : x + ((size_t)b * T + buf->lo[b]) * I;
        REAL *gxb = buf->gx + (size_t)b * chunk * G;
        rows = ns == T ? (long)B * T : buf->count[b];
        for (r0 = 0; r0 < rows; r0 += GRU_PROJECTION_ROWS) {
            const int n = rows - r0 < GRU_PROJECTION_ROWS ? (int)(rows - r0) : GRU_PROJECTION_ROWS;
            for (g = 0; g < 3; g++)
                GRU_MATVEC(W_packed + g * Wgate, I, H, p0, p1, n, xb + r0 * I, I,
                           gxb + r0 * G + g * H, G, 0);
        }
    }
}

/* What row b does at processing step s: GRU_ROW_DONE past its length
 * (PyTorch lengths), GRU_ROW_MASKED at a Keras-masked step, else GRU_ROW_RUN;
 * *t gets the time index the step reads and writes. */
static inline int GRU_NAME(row_step)(const gru_io *io, int reverse, int b, int s, int *t)
{
    const int len = io->lengths ? (int)io->lengths[b] : io->steps;
    if (s >= len) return GRU_ROW_DONE;
    *t = reverse ? len - 1 - s : s;
    return io->mask && !io->mask[(size_t)b * io->steps + *t] ? GRU_ROW_MASKED : GRU_ROW_RUN;
}

/* z and r of units [u0, u1) of one row, in place in gh: act(gx + b + gh). */
static void GRU_NAME(update_and_reset_gates)(const gru_layer *L, const REAL *gx, const REAL *bias,
                                             REAL *gh, int u0, int u1)
{
    const int H = L->hidden_size, n = u1 - u0;
    int g, j;
    for (g = 0; g < 2; g++) {
        REAL *v = gh + g * H + u0;
        const REAL *xg = gx + g * H + u0, *bg = bias + g * H + u0;
        for (j = 0; j < n; j++) v[j] += xg[j] + bg[j];
        GRU_NAME(apply_activation)(L->gate_act, v, n);
    }
}

/* Candidate from its pre-activation in gh's h block, then h' = (1-z) n + z h. */
static void GRU_NAME(finish_state)(const gru_layer *L, const REAL *gh, REAL *cand, const REAL *h,
                                   REAL *h_next, REAL *y_row, int u0, int u1)
{
    const int n = u1 - u0;
    const REAL *z = gh + u0;
    int j;
    GRU_NAME(apply_activation)(L->cand_act, cand, n);
    for (j = 0; j < n; j++) {
        const REAL hj = (1 - z[j]) * cand[j] + z[j] * h[u0 + j];
        h_next[u0 + j] = hj;
        y_row[u0 + j] = hj;
    }
}

static void GRU_NAME(run_direction)(const gru_layer *L, int d, const gru_io *io,
                                    GRU_NAME(buffers) *buf, int chunk, int blas_projection,
                                    int num_threads)
{
    const gru_direction *dir = &L->dir[d];
    const int B = io->batch, T = io->steps, H = L->hidden_size;
    const int G = 3 * H, D = L->num_directions, ldy = D * H;
    const int P = (H + GRU_PANEL - 1) / GRU_PANEL;
    const size_t Rgate = (size_t)P * H * GRU_PANEL;
    const REAL *R_packed = (const REAL *)dir->R_packed;
    const REAL *bias_x = (const REAL *)dir->bias_x, *bias_hn = (const REAL *)dir->bias_hn;
    REAL *y = (REAL *)io->y + (size_t)d * H;
    int steps_done = 0, s0, b;

    if (io->h0)
        memcpy(buf->h[0], (const REAL *)io->h0 + (size_t)d * B * H, (size_t)B * H * sizeof(REAL));
    else
        memset(buf->h[0], 0, (size_t)B * H * sizeof(REAL));

    /* Steps at or past a row's length are not run and output 0 (PyTorch). */
    if (io->lengths)
        for (b = 0; b < B; b++) {
            int t;
            for (t = (int)io->lengths[b]; t < T; t++)
                memset(y + ((size_t)b * T + t) * ldy, 0, (size_t)H * sizeof(REAL));
        }

    for (s0 = 0; s0 < T; s0 += chunk) {
        const int ns = T - s0 < chunk ? T - s0 : chunk;
        GRU_NAME(chunk_rows)(dir, io, buf, s0, ns);
        if (blas_projection) GRU_NAME(project_blas)(L, dir, io, buf, chunk, ns);

#pragma omp parallel num_threads(num_threads) if (num_threads > 1)
        {
            const int tid = gru_thread_id(), nt = gru_thread_count();
            const int p0 = (int)((long)P * tid / nt), p1 = (int)((long)P * (tid + 1) / nt);
            const int u0 = p0 * GRU_PANEL, u1 = p1 * GRU_PANEL < H ? p1 * GRU_PANEL : H;
            REAL *h = buf->h[steps_done & 1], *h_next = buf->h[(steps_done & 1) ^ 1];
            int s, g, bb;

            if (!blas_projection) GRU_NAME(project_packed)(L, dir, io, buf, chunk, ns, p0, p1);
            for (s = s0; s < s0 + ns; s++) {
                /* Alternate the order in which R is read from one step to
                 * the next: the end of one pass is still in cache for the
                 * start of the next. */
                const int descending = s & 1, gates = L->linear_before_reset ? 3 : 2;
                for (g = 0; g < gates; g++) {
                    const int gate = descending ? gates - 1 - g : g;
                    GRU_MATVEC(R_packed + gate * Rgate, H, H, p0, p1, B, h, H, buf->gh + gate * H,
                               G, descending);
                }

                for (bb = 0; bb < B; bb++) {
                    int t = 0;
                    const int what = GRU_NAME(row_step)(io, dir->reverse, bb, s, &t);
                    REAL *gh = buf->gh + (size_t)bb * G;
                    REAL *y_row = y + ((size_t)bb * T + t) * ldy;
                    const REAL *hb = h + (size_t)bb * H;
                    REAL *hb_next = h_next + (size_t)bb * H;
                    const REAL *gx;
                    int j;

                    if (what != GRU_ROW_RUN) {
                        /* Not run: state carried.  A masked step repeats the
                         * previous step's output, 0 before any (Keras). */
                        memcpy(hb_next + u0, hb + u0, (size_t)(u1 - u0) * sizeof(REAL));
                        if (what == GRU_ROW_MASKED) {
                            const int t_prev = dir->reverse ? t + 1 : t - 1;
                            for (j = u0; j < u1; j++)
                                y_row[j] = s == 0 ? 0 : y[((size_t)bb * T + t_prev) * ldy + j];
                        }
                        continue;
                    }
                    gx = buf->gx + ((size_t)bb * chunk + (t - buf->lo[bb])) * G;
                    GRU_NAME(update_and_reset_gates)(L, gx, bias_x, gh, u0, u1);
                    if (L->linear_before_reset) {
                        const REAL *r = gh + H;
                        REAL *cand = gh + 2 * H + u0;
                        for (j = u0; j < u1; j++)
                            gh[2 * H + j] = gx[2 * H + j] + bias_x[2 * H + j] +
                                            r[j] * (gh[2 * H + j] + bias_hn[j]);
                        GRU_NAME(finish_state)(L, gh, cand, hb, hb_next, y_row, u0, u1);
                    } else {
                        REAL *rh = buf->rh + (size_t)bb * H;
                        for (j = u0; j < u1; j++) rh[j] = gh[H + j] * hb[j];
                    }
                }

                if (!L->linear_before_reset) {
                    /* n = phi(Wx + b + R_h (r * h)): R_h needs every unit's r * h. */
#pragma omp barrier
                    GRU_MATVEC(R_packed + 2 * Rgate, H, H, p0, p1, B, buf->rh, H, buf->gh + 2 * H,
                               G, s & 1);
                    for (bb = 0; bb < B; bb++) {
                        int t = 0;
                        REAL *gh = buf->gh + (size_t)bb * G;
                        const REAL *gx;
                        int j;
                        if (GRU_NAME(row_step)(io, dir->reverse, bb, s, &t) != GRU_ROW_RUN) continue;
                        gx = buf->gx + ((size_t)bb * chunk + (t - buf->lo[bb])) * G;
                        for (j = u0; j < u1; j++) gh[2 * H + j] += gx[2 * H + j] + bias_x[2 * H + j];
                        GRU_NAME(finish_state)(L, gh, gh + 2 * H + u0, h + (size_t)bb * H,
                                               h_next + (size_t)bb * H,
                                               y + ((size_t)bb * T + t) * ldy, u0, u1);
                    }
                }
#pragma omp barrier
                {
                    REAL *swap = h;
                    h = h_next;
                    h_next = swap;
                }
            }
        }
        steps_done += ns;
    }
    memcpy((REAL *)io->h_n + (size_t)d * B * H, buf->h[steps_done & 1], (size_t)B * H * sizeof(REAL));
}

static int GRU_NAME(forward)(const gru_layer *L, const gru_io *io, char *ws, int num_threads)
{
    const int B = io->batch, T = io->steps, H = L->hidden_size, D = L->num_directions;
    const int chunk = chunk_steps(B, T, H, sizeof(REAL));
    const int P = (H + GRU_PANEL - 1) / GRU_PANEL;
    const int blas_projection = use_blas_projection(GRU_AVX2_BUILD);
    const double flops = 6.0 * H * (H + (blas_projection ? 0 : L->input_size)) * (B > 0 ? B : 1);
    const int nt = choose_threads(num_threads, P, flops);
    GRU_NAME(buffers) buf;
    int d;

    if (B == 0) return 0;
    if (T == 0) { /* nothing run: the final state is the initial one */
        if (io->h0 != io->h_n) {
            if (io->h0)
                memcpy(io->h_n, io->h0, (size_t)D * B * H * sizeof(REAL));
            else
                memset(io->h_n, 0, (size_t)D * B * H * sizeof(REAL));
        }
        return 0;
    }
    /* h_n[d] is written only after h0[d] was read: they may alias. */
    const size_t r_bytes = 3 * (size_t)H * H * sizeof(REAL);
    if (D == 2 && num_threads >= 2 && nt <= 2 && !blas_projection &&
        (B >= 4 || r_bytes <= GRU_L2_BYTES)) {
        /* The two directions are independent: one thread each, side by side,
         * with no barrier between them (rather than both threads meeting at
         * every step of each direction in turn).  Not at small batch with a
         * big R: there, two threads sharing one direction each keep half of R
         * in their own L2 from step to step, which wins (measured). */
        GRU_NAME(buffers) bufs[2];
        GRU_NAME(carve_buffers)(&bufs[0], ws, B, chunk, H);
        GRU_NAME(carve_buffers)(&bufs[1], ws + buffer_set_bytes(B, chunk, H, sizeof(REAL)), B,
                                chunk, H);
#pragma omp parallel for num_threads(2) schedule(static, 1)
        for (d = 0; d < 2; d++) GRU_NAME(run_direction)(L, d, io, &bufs[d], chunk, 0, 1);
        return 0;
    }
    GRU_NAME(carve_buffers)(&buf, ws, B, chunk, H);
    for (d = 0; d < D; d++) GRU_NAME(run_direction)(L, d, io, &buf, chunk, blas_projection, nt);
    return 0;
}
