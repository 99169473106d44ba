/* The library's own threads: a team of workers per session that runs a
 * loop's iterations split into a few contiguous chunks per thread, and the
 * process-wide thread setting. The calling thread is worker 0, so a team of
 * one thread is just a plain call. */
#ifndef CNV_TEAM_H
#define CNV_TEAM_H

#include "core/base.h"

typedef struct cnv_team cnv_team;

/* Runs iterations [lo, hi) of a loop on thread tid (0 .. threads-1). */
typedef void (*cnv_chunk_fn)(void *arg, int64_t lo, int64_t hi, int tid);

/* The thread count cnv_set_threads asked for; before any call,
 * $CNNVIZ_NUM_THREADS or every core. Always >= 1. */
int cnv_threads_setting(void);

/* A team of n threads (the caller and n - 1 workers it starts). When fewer
 * workers can be started, or the process already runs its budget of
 * workers (4 per core, at least CNV_MAX_THREADS, over all teams), the team
 * is smaller; cnv_team_size tells. */
cnv_status cnv_team_create(int n, cnv_team **out, cnv_err *e);
void cnv_team_free(cnv_team *t);
/* 1 for NULL. */
int cnv_team_size(const cnv_team *t);

/* Splits [0, n) into contiguous chunks (up to four per thread; the same
 * for the same n and team size), calls fn once per non-empty chunk and
 * returns when all have returned. Threads claim chunks as they come, the
 * caller too, so which thread runs a chunk varies from run to run: fn may
 * use tid for scratch of its own, never to decide what it computes. In a
 * child process after fork() the workers do not exist: the caller then
 * runs every chunk itself, in order. Never allocates. */
void cnv_team_run(cnv_team *t, int64_t n, cnv_chunk_fn fn, void *arg);

/* Chunk k of [0, n) split in `parts`, aligned to multiples of `align`
 * (except the end): what cnv_team_run uses with align 1. */
void cnv_chunk(int64_t n, int parts, int k, int64_t align, int64_t *lo, int64_t *hi);

/* c = alpha op(a) op(b) + beta c, row-major (cblas_sgemm's arguments, with
 * ta/tb nonzero for transposed), split over the team along the longer of
 * m and n into one or two blocks per thread: each block is a one-thread
 * BLAS call. */
void cnv_sgemm(cnv_team *t, int ta, int tb, int m, int n, int k, float alpha, const float *a,
               int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Work on one block of c (rows [m0, m1), columns [n0, n1)) that the
 * thread computing the block does just before (pre) and after (post) its
 * product, while the block is its own and in its cache: a bias to add
 * to, an activation to apply. Either may be NULL. */
typedef struct cnv_gemm_hooks {
    void (*pre)(void *arg, int m0, int m1, int n0, int n1);
    void (*post)(void *arg, int m0, int m1, int n0, int n1);
    void *arg;
} cnv_gemm_hooks;

/* cnv_sgemm with hooks (NULL: none). */
void cnv_sgemm_hooked(cnv_team *t, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                      int lda, const float *b, int ldb, float beta, float *c, int ldc,
                      const cnv_gemm_hooks *h);

#endif
