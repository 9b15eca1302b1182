/*
 * The thread pool of threads.h.
 *
 * One job at a time (one owner: gru_team_begin takes the pool or says no).
 * The owner publishes a job by writing its descriptor, one claim word per
 * team slot, then a new generation number; workers notice the generation,
 * claim chunks with compare-and-swap on the claim words and count finished
 * chunks in `done`; the owner returns when done == n_chunks.
 *
 * A claim word is (generation << 32 | next << 16 | end): a claim succeeds
 * only for the job that word was written for, so a worker that was
 * descheduled across several jobs can never run a chunk of one job with the
 * descriptor of another (it read the descriptor before the claim, and the
 * owner rewrites the descriptor only after every chunk of the current job
 * was claimed and done).
 */
#define _GNU_SOURCE
#include "threads.h"

#include <stddef.h>
#include <stdint.h>

#if !defined(GRU_NO_THREADS) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__unix__) || defined(__APPLE__))
#define GRU_THREADS 1
#else
#define GRU_THREADS 0
#endif

int gru_has_threads(void) { return GRU_THREADS; }

#if GRU_THREADS
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* Worker: spin this long for the next job before sleeping (covers the gap
 * between the steps of a call and between the calls of a stream). */
#define SPIN_NS 200000
/* A thread that sees its own clock jump by this much between two looks was
 * descheduled: its core is shared with other work. */
#define DESCHEDULED_NS 200000
/* How long a descheduled worker stays out of adaptive teams: doubles while it
 * keeps being descheduled, back to the least once it is not. */
#define LEAVE_MIN_NS 2000000
#define LEAVE_MAX_NS 200000000
/* Owner waiting for a chunk another thread holds: spin, then yield (the
 * holder may be waiting for this very core). */
#define OWNER_SPIN_NS 20000

#define CACHE_LINE 64
typedef struct {
    uint64_t word;
    char pad[CACHE_LINE - sizeof(uint64_t)];
} claim_word;

typedef struct {
    int64_t away_until; /* ns: out of adaptive teams until then */
    int64_t leave_ns;   /* the next time away */
    int sleeping;       /* in sleep_while_gen_is */
    int cpu;            /* where it last took work (-1: unknown) */
    char pad[CACHE_LINE - 2 * sizeof(int64_t) - 2 * sizeof(int)];
} worker_state;

static struct {
    uint32_t gen; /* futex word: bumped once per job */
    char pad0[CACHE_LINE - sizeof(uint32_t)];
    int done; /* chunks finished in the current job */
    char pad1[CACHE_LINE - sizeof(int)];
    /* the current job (written by the owner only) */
    gru_chunk_fn fn;
    void *ctx;
    uint64_t members; /* team slots taking part */
    int team;
    char pad2[CACHE_LINE];
    claim_word claim[GRU_MAX_TEAM];
    worker_state worker[GRU_MAX_TEAM];
    /* owner side */
    int busy; /* the pool's owner lock */
    int adaptive;
    int n_workers;
    int atfork_done;
    pthread_mutex_t start_lock;
#ifndef __linux__
    pthread_mutex_t sleep_lock;
    pthread_cond_t sleep_cond;
#endif
} pool = {
    .start_lock = PTHREAD_MUTEX_INITIALIZER,
#ifndef __linux__
    .sleep_lock = PTHREAD_MUTEX_INITIALIZER,
    .sleep_cond = PTHREAD_COND_INITIALIZER,
#endif
};

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int current_cpu(void)
{
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

#define LOAD(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#define STORE_RELAXED(p, v) __atomic_store_n(p, v, __ATOMIC_RELAXED)

static void sleep_while_gen_is(int self, uint32_t seen)
{
    __atomic_store_n(&pool.worker[self].sleeping, 1, __ATOMIC_SEQ_CST);
#ifdef __linux__
    if (__atomic_load_n(&pool.gen, __ATOMIC_SEQ_CST) == seen)
        syscall(SYS_futex, &pool.gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    pthread_mutex_lock(&pool.sleep_lock);
    while (__atomic_load_n(&pool.gen, __ATOMIC_SEQ_CST) == seen)
        pthread_cond_wait(&pool.sleep_cond, &pool.sleep_lock);
    pthread_mutex_unlock(&pool.sleep_lock);
#endif
    __atomic_store_n(&pool.worker[self].sleeping, 0, __ATOMIC_SEQ_CST);
}

/* Wakes the sleeping workers if one of the team is among them. */
static void wake_members(uint64_t members)
{
    int s, any = 0;
    for (s = 1; s < GRU_MAX_TEAM && members >> s; s++)
        if (members >> s & 1 && __atomic_load_n(&pool.worker[s].sleeping, __ATOMIC_SEQ_CST)) any = 1;
    if (!any) return;
#ifdef __linux__
    syscall(SYS_futex, &pool.gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    pthread_mutex_lock(&pool.sleep_lock);
    pthread_cond_broadcast(&pool.sleep_cond);
    pthread_mutex_unlock(&pool.sleep_lock);
#endif
}

/* The next chunk of slot s's range in job g, or -1. */
static int claim_chunk(int s, uint32_t g)
{
    uint64_t v = LOAD(&pool.claim[s].word);
    for (;;) {
        const int next = (int)((v >> 16) & 0xffff), end = (int)(v & 0xffff);
        if ((uint32_t)(v >> 32) != g || next >= end) return -1;
        if (__atomic_compare_exchange_n(&pool.claim[s].word, &v, v + (1u << 16), 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return next;
    }
}

/* A worker that was descheduled leaves adaptive teams for a while. */
static void note_descheduled(int self, int64_t now)
{
    worker_state *w = &pool.worker[self];
    int64_t leave = LOAD_RELAXED(&w->leave_ns);
    if (leave < LEAVE_MIN_NS) leave = LEAVE_MIN_NS;
    STORE_RELAXED(&w->away_until, now + leave);
    STORE_RELAXED(&w->leave_ns, leave * 2 < LEAVE_MAX_NS ? leave * 2 : LEAVE_MAX_NS);
}

/* Runs job g's chunks: slot `self`'s own range first, then what is left of
 * the others'.  Returns how many it ran. */
static int work_on(uint32_t g, int self)
{
    const gru_chunk_fn fn = LOAD_RELAXED(&pool.fn);
    void *const ctx = LOAD_RELAXED(&pool.ctx);
    const uint64_t members = LOAD_RELAXED(&pool.members);
    int team = LOAD_RELAXED(&pool.team), i, ran = 0;
    if (team > GRU_MAX_TEAM) team = GRU_MAX_TEAM;
    if (self >= team || !(members >> self & 1)) return 0;
    STORE_RELAXED(&pool.worker[self].cpu, current_cpu());
    for (i = 0; i < team; i++) {
        const int s = (self + i) % team;
        int c;
        while ((c = claim_chunk(s, g)) >= 0) {
            fn(ctx, c);
            __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
            ran++;
        }
    }
    return ran;
}

static void *worker_main(void *arg)
{
    const int self = (int)(intptr_t)arg;
    uint32_t seen = LOAD(&pool.gen);
    for (;;) {
        /* wait for the next job: spin, watching the clock for being descheduled */
        int64_t start = now_ns(), last = start;
        uint32_t g;
        int spins = 0;
        while ((g = LOAD(&pool.gen)) == seen) {
            cpu_relax();
            if (++spins & 31) continue;
            {
                const int64_t t = now_ns();
                if (t - last > DESCHEDULED_NS) note_descheduled(self, t);
                last = t;
                if (t - start > SPIN_NS || LOAD_RELAXED(&pool.worker[self].away_until) > t) {
                    sleep_while_gen_is(self, seen);
                    start = last = now_ns();
                }
            }
        }
        seen = g;
        {
            const int64_t t0 = now_ns();
            /* a job run promptly and without a gap: back to the shortest leave */
            if (work_on(g, self) > 0 && now_ns() - t0 < DESCHEDULED_NS && t0 - last < DESCHEDULED_NS)
                STORE_RELAXED(&pool.worker[self].leave_ns, 0);
        }
    }
    return NULL;
}

/* In a fork()ed child only the forking thread exists: the pool starts over. */
static void pool_after_fork_in_child(void)
{
    int i;
    pool.n_workers = 0;
    pool.busy = 0;
    pool.done = 0;
    for (i = 0; i < GRU_MAX_TEAM; i++) {
        pool.worker[i].away_until = pool.worker[i].leave_ns = 0;
        pool.worker[i].sleeping = 0;
        pool.worker[i].cpu = -1;
    }
    pthread_mutex_init(&pool.start_lock, NULL);
#ifndef __linux__
    pthread_mutex_init(&pool.sleep_lock, NULL);
    pthread_cond_init(&pool.sleep_cond, NULL);
#endif
}

static int start_workers(int wanted)
{
    pthread_mutex_lock(&pool.start_lock);
    if (!pool.atfork_done) {
        pthread_atfork(NULL, NULL, pool_after_fork_in_child);
        pool.atfork_done = 1;
    }
    while (pool.n_workers < wanted && pool.n_workers < GRU_MAX_TEAM - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        int failed;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        failed = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)(pool.n_workers + 1));
        pthread_attr_destroy(&attr);
        if (failed) break;
        pool.n_workers++;
    }
    pthread_mutex_unlock(&pool.start_lock);
    return pool.n_workers;
}

/*
 * Cores this process can have now: the machine's idle CPU time plus this
 * process's own, over the last window (Linux /proc/stat; elsewhere: all).
 * Adaptive teams are no larger: a thread beyond that would share a core with
 * other work, be preempted, sooner or later while holding a chunk, and stall
 * a step for a scheduler slice.  Sampled at most every CAPACITY_WINDOW_NS by
 * the pool's owner (about 15 us a sample); one core until the first, shorter,
 * window has passed (a process that starts on a busy machine must not hand
 * its first steps to threads that will be preempted).
 */
#define CAPACITY_WINDOW_NS 100000000
#define CAPACITY_FIRST_WINDOW_NS 20000000
static struct {
    int64_t at;                       /* when the window started, 0: never */
    unsigned long long idle_ticks;    /* machine-wide idle + iowait at `at` */
    int64_t self_ns;                  /* this process's CPU time at `at` */
    double cores;                     /* the estimate from the last full window */
    int windows;                      /* how many have passed */
} capacity = {0, 0, 0, 1, 0};

static int read_idle_ticks(unsigned long long *idle)
{
#ifdef __linux__
    char line[256];
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int ok;
    if (!f) return 0;
    ok = fgets(line, sizeof(line), f) != NULL &&
         sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                &v[4], &v[5], &v[6], &v[7]) >= 5;
    fclose(f);
    *idle = v[3] + v[4];
    return ok;
#else
    (void)idle;
    return 0;
#endif
}

static int64_t process_cpu_ns(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) != 0) return 0;
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static double capacity_cores(void)
{
    const int64_t now = now_ns();
    unsigned long long idle;
    if (capacity.at &&
        now - capacity.at < (capacity.windows ? CAPACITY_WINDOW_NS : CAPACITY_FIRST_WINDOW_NS))
        return capacity.cores;
    if (!read_idle_ticks(&idle)) return 1e9;
    {
        const int64_t self = process_cpu_ns();
        if (capacity.at) {
            const double window = (double)(now - capacity.at), hz = (double)sysconf(_SC_CLK_TCK);
            const double idle_cores = (double)(idle - capacity.idle_ticks) / hz * 1e9 / window;
            capacity.cores = idle_cores + (double)(self - capacity.self_ns) / window;
            capacity.windows++;
        }
        capacity.at = now;
        capacity.idle_ticks = idle;
        capacity.self_ns = self;
    }
    return capacity.cores;
}

int gru_team_begin(int threads, int adaptive)
{
    int expected = 0, workers;
    if (threads <= 1) return 1;
    if (threads > GRU_MAX_TEAM) threads = GRU_MAX_TEAM;
    if (!__atomic_compare_exchange_n(&pool.busy, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return 1; /* another caller runs a job: this one runs alone */
    if (adaptive) {
        /* whole cores only, with a little slack for the estimate's noise */
        const double cores = capacity_cores() + 0.3;
        if (cores < threads) threads = cores >= 1 ? (int)cores : 1;
        if (threads <= 1) {
            STORE(&pool.busy, 0);
            return 1;
        }
    }
    workers = pool.n_workers >= threads - 1 ? pool.n_workers : start_workers(threads - 1);
    if (workers + 1 < threads) threads = workers + 1;
    pool.adaptive = adaptive;
    if (threads == 1) STORE(&pool.busy, 0);
    return threads;
}

void gru_team_end(int team)
{
    if (team > 1) STORE(&pool.busy, 0);
}

void gru_team_run(int team, int n_chunks, gru_chunk_fn fn, void *ctx)
{
    int slot_of[GRU_MAX_TEAM];
    uint64_t members = 1;
    int active = 1, s, c, i;
    uint32_t g;
    int64_t now = 0;

    /* Alone, or more chunks than a claim word counts (callers keep below: never
     * reached, but never a dropped chunk either): the caller runs them all. */
    if (team <= 1 || n_chunks <= 1 || n_chunks > GRU_MAX_CHUNKS) {
        for (c = 0; c < n_chunks; c++) fn(ctx, c);
        return;
    }
    slot_of[0] = 0;
    if (pool.adaptive) now = now_ns();
    for (s = 1; s < team; s++)
        if (!pool.adaptive || LOAD_RELAXED(&pool.worker[s].away_until) <= now) {
            members |= (uint64_t)1 << s;
            slot_of[active++] = s;
        }
    if (active == 1) {
        for (c = 0; c < n_chunks; c++) fn(ctx, c);
        return;
    }
    if (active > n_chunks) active = n_chunks;

    g = pool.gen + 1;
    STORE_RELAXED(&pool.fn, fn);
    STORE_RELAXED(&pool.ctx, ctx);
    STORE_RELAXED(&pool.members, members);
    STORE_RELAXED(&pool.team, team);
    STORE_RELAXED(&pool.done, 0);
    for (s = 0; s < team; s++) STORE_RELAXED(&pool.claim[s].word, (uint64_t)g << 32);
    for (i = 0; i < active; i++) {
        const int lo = (int)((long)n_chunks * i / active), hi = (int)((long)n_chunks * (i + 1) / active);
        STORE_RELAXED(&pool.claim[slot_of[i]].word, (uint64_t)g << 32 | (uint64_t)lo << 16 | (uint64_t)hi);
    }
    __atomic_store_n(&pool.gen, g, __ATOMIC_SEQ_CST);
    wake_members(members);

    /* the owner's own range, then whatever nobody started */
    for (i = 0; i < active; i++) {
        const int slot = slot_of[i];
        while ((c = claim_chunk(slot, g)) >= 0) {
            fn(ctx, c);
            __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
        }
    }
    if (LOAD(&pool.done) < n_chunks) {
        /* A worker holds a chunk: spin.  Past OWNER_SPIN_NS, yield if a worker
         * last ran on this very core (it may be waiting for it); yielding
         * otherwise would only hand this thread's turn to other processes. */
        const int64_t t0 = now_ns();
        const int me = current_cpu();
        int64_t t = t0;
        int spins = 0;
        while (LOAD(&pool.done) < n_chunks) {
            cpu_relax();
            if (++spins & 63) continue;
            t = now_ns();
            if (t - t0 > OWNER_SPIN_NS)
                for (i = 1; i < active; i++)
                    if (me < 0 || LOAD_RELAXED(&pool.worker[slot_of[i]].cpu) == me) {
                        sched_yield();
                        break;
                    }
        }
        if (pool.adaptive && t - t0 > DESCHEDULED_NS)
            for (i = 1; i < active; i++) note_descheduled(slot_of[i], t);
    }
}

int gru_cpu_count(void)
{
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    {
        const long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
}

#else /* no threads: every section is the caller alone */

int gru_cpu_count(void) { return 1; }

int gru_team_begin(int threads, int adaptive)
{
    (void)threads;
    (void)adaptive;
    return 1;
}
void gru_team_run(int team, int n_chunks, gru_chunk_fn fn, void *ctx)
{
    int c;
    (void)team;
    for (c = 0; c < n_chunks; c++) fn(ctx, c);
}
void gru_team_end(int team) { (void)team; }

#endif
