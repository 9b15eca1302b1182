/*
 * The core's threads: a small pool of its own (not OpenMP; see README.md for
 * the measurements that chose it).
 *
 * A job is a set of chunks, split into one contiguous range per thread of the
 * team (the same split every time, so each thread keeps reading the same
 * weights and they stay in its core's L2).  A thread that finishes its own
 * range takes the chunks nobody has started from the others' ranges, and a
 * job ends when every chunk is done, not when every thread has arrived: a
 * thread that is not scheduled in time never holds a step up, its share is
 * simply done by the others.  Workers spin briefly between jobs, then sleep.
 * A worker that finds it was descheduled (the machine is busy) leaves
 * adaptive teams for a while, so the caller's thread does the work alone
 * rather than handing chunks to a thread that may be preempted holding one.
 */
#ifndef GRU_INFER_THREADS_H
#define GRU_INFER_THREADS_H

typedef void (*gru_chunk_fn)(void *ctx, int chunk);

/* The largest number of chunks one job may have. */
#define GRU_MAX_CHUNKS 65535
/* The largest team. */
#define GRU_MAX_TEAM 64

/* CPUs this process may run on. */
int gru_cpu_count(void);

/* Starts a parallel section of up to `threads` threads, the caller included,
 * and returns how many it got: 1 when threads <= 1, when another caller holds
 * the pool, or when no thread could be started.  adaptive: workers that were
 * recently descheduled are left out of this section's jobs (num_threads 0). */
int gru_team_begin(int threads, int adaptive);
/* fn(ctx, c) for every c in [0, n_chunks), on a team gru_team_begin gave
 * (team 1: the caller alone); returns when all are done. */
void gru_team_run(int team, int n_chunks, gru_chunk_fn fn, void *ctx);
/* Ends the section gru_team_begin started (the same team). */
void gru_team_end(int team);

#endif
