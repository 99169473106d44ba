/* Worker teams (see team.h) and the process-wide thread setting.
 *
 * A forward or backward pass runs some 100 parallel loops of 10 us to 2 ms
 * each, so waking workers through a condition variable every time (tens
 * of microseconds) would cost more than it gains: a worker that has just
 * finished spins for a while on the job counter, and only sleeps when no
 * job came for about a millisecond (between iterations of a caller's own
 * serial code, say). */
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "core/team.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax(void) { _mm_pause(); }
#else
static inline void cpu_relax(void) {}
#endif

/* Spins before a worker goes to sleep (each a pause instruction: some
 * 10 to 150 cycles), and before a waiting caller yields its core. */
#define SPINS_BEFORE_SLEEP 40000
#define SPINS_BEFORE_YIELD 4000
#define MAX_THREADS CNV_MAX_THREADS

/* Workers alive in the process, across every session's team: each team
 * takes what the budget leaves (at least its caller), so 64 sessions that
 * each ask for 256 threads start 256 workers in all, not 16,320. */
static atomic_int g_live_workers;

static int worker_budget(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > MAX_THREADS / 4 ? (int)(4 * cores) : MAX_THREADS;
}

/* Up to `want` workers reserved from the budget; how many. */
static int reserve_workers(int want)
{
    int budget = worker_budget(), live = atomic_load(&g_live_workers), got;
    do {
        got = budget - live < want ? budget - live : want;
        if (got <= 0)
            return 0;
    } while (!atomic_compare_exchange_weak(&g_live_workers, &live, live + got));
    return got;
}

static atomic_int g_threads = 0; /* 0: never set, use the default */
static int g_default_threads = 1;
static pthread_once_t g_default_once = PTHREAD_ONCE_INIT;

/* Incremented in the child by fork(): a team made before sees a different
 * value and knows its workers did not come along. */
static atomic_uint g_fork_gen;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void after_fork_child(void) { atomic_fetch_add(&g_fork_gen, 1); }
static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

static int online_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)(cores < MAX_THREADS ? cores : MAX_THREADS) : 1;
}

/* $CNNVIZ_NUM_THREADS when it is a positive number, else every core. */
static void init_default_threads(void)
{
    const char *v = getenv("CNNVIZ_NUM_THREADS");
    char *end;
    long n = v && *v ? strtol(v, &end, 10) : 0;
    g_default_threads = n >= 1 && !*end ? (int)(n < MAX_THREADS ? n : MAX_THREADS) : online_cores();
}

void cnv_set_threads(int n)
{
    atomic_store(&g_threads, n <= 0 ? online_cores() : n < MAX_THREADS ? n : MAX_THREADS);
}

int cnv_get_threads(void)
{
    return cnv_threads_setting();
}

int cnv_threads_setting(void)
{
    int n = atomic_load(&g_threads);
    if (n > 0)
        return n;
    pthread_once(&g_default_once, init_default_threads);
    return g_default_threads;
}

typedef struct worker {
    cnv_team *team;
    int tid;
} worker;

struct cnv_team {
    int size;           /* threads, the caller included */
    unsigned fork_gen;  /* g_fork_gen when the workers were started */
    pthread_t *threads; /* size - 1 workers */
    worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;    /* incremented to post a job */
    /* The posted job's chunks: its generation (the value gen takes when
     * it is posted), its number of chunks and the next unclaimed one,
     * packed as gen << 32 | parts << 16 | next, so that a thread claims a
     * chunk of the job it saw posted or none (one compare-and-swap). */
    _Atomic uint64_t claim;
    atomic_int done; /* chunks of the posted job that have returned */
    atomic_int sleepers;
    atomic_int quit;
    /* the posted job: written before claim is, stable until all its
     * chunks are done */
    cnv_chunk_fn fn;
    void *arg;
    int64_t n;
};

/* Chunks per thread: a thread that is slow to start (a busy or
 * descheduled core) leaves its chunks to the others instead of making
 * them all wait. */
#define GRAIN 4
_Static_assert(MAX_THREADS * GRAIN < 65536, "chunk numbers take 16 bits of claim");

static uint64_t pack_claim(unsigned gen, int parts, int next)
{
    return (uint64_t)gen << 32 | (uint64_t)parts << 16 | (uint64_t)next;
}

/* Claims and runs chunks of job `gen` until none is left. */
static void run_chunks(cnv_team *t, unsigned gen, int tid)
{
    uint64_t w = atomic_load_explicit(&t->claim, memory_order_acquire);
    for (;;) {
        int parts = (int)(w >> 16 & 0xffff), next = (int)(w & 0xffff);
        if ((unsigned)(w >> 32) != gen || next >= parts)
            return;
        if (!atomic_compare_exchange_weak_explicit(&t->claim, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* w now holds the current value */
        int64_t lo, hi;
        cnv_chunk(t->n, parts, next, 1, &lo, &hi);
        if (lo < hi)
            t->fn(t->arg, lo, hi, tid);
        atomic_fetch_add_explicit(&t->done, 1, memory_order_release);
        w = atomic_load_explicit(&t->claim, memory_order_acquire);
    }
}

void cnv_chunk(int64_t n, int parts, int k, int64_t align, int64_t *lo, int64_t *hi)
{
    /* n * k / parts without the product, which could overflow: q * k <= units */
    int64_t units = align > 1 ? (n + align - 1) / align : n;
    int64_t q = units / parts, r = units % parts;
    int64_t a = q * k + (k < r ? k : r), b = a + q + (k < r);
    a *= align;
    b *= align;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

static void *worker_main(void *p)
{
    worker *w = p;
    cnv_team *t = w->team;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&t->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&t->quit, memory_order_relaxed)) {
            if (++spins < SPINS_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            /* No lost wake-up: sleepers is raised before gen is read
             * again, and cnv_team_run raises gen before reading sleepers
             * (both sequentially consistent), so one of them sees the
             * other; the caller's broadcast takes the mutex, which this
             * thread holds until it waits. */
            pthread_mutex_lock(&t->mu);
            atomic_fetch_add(&t->sleepers, 1);
            while (atomic_load(&t->gen) == seen && !atomic_load(&t->quit))
                pthread_cond_wait(&t->cv, &t->mu);
            atomic_fetch_sub(&t->sleepers, 1);
            pthread_mutex_unlock(&t->mu);
            spins = 0;
        }
        if (atomic_load(&t->quit))
            return NULL;
        seen = g;
        run_chunks(t, g, w->tid);
    }
}

static void stop_workers(cnv_team *t, int started)
{
    atomic_store(&t->quit, 1);
    pthread_mutex_lock(&t->mu);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    for (int i = 0; i < started; i++)
        pthread_join(t->threads[i], NULL);
}

cnv_status cnv_team_create(int n, cnv_team **out, cnv_err *e)
{
    *out = NULL;
    if (n < 1)
        n = 1;
    if (n > MAX_THREADS)
        n = MAX_THREADS;
    pthread_once(&g_atfork_once, register_atfork);
    cnv_team *t = cnv_calloc(1, sizeof *t);
    if (!t)
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory for a team of %d threads", n);
    t->threads = cnv_calloc((size_t)n, sizeof *t->threads);
    t->workers = cnv_calloc((size_t)n, sizeof *t->workers);
    if (!t->threads || !t->workers) {
        cnv_free(t->threads);
        cnv_free(t->workers);
        cnv_free(t);
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory for a team of %d threads", n);
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->fork_gen = atomic_load(&g_fork_gen);
    /* Workers take no signals: the host's handlers run on its own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int reserved = reserve_workers(n - 1), started = 0;
    for (; started < reserved; started++) {
        t->workers[started] = (worker){ t, started + 1 };
        if (pthread_create(&t->threads[started], NULL, worker_main, &t->workers[started]) != 0)
            break; /* run with the workers there are */
    }
    atomic_fetch_sub(&g_live_workers, reserved - started);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    t->size = started + 1;
    *out = t;
    return CNV_OK;
}

void cnv_team_free(cnv_team *t)
{
    if (!t)
        return;
    /* In a forked child the workers and the state of the mutex stayed in
     * the parent: there is nothing to stop or destroy. */
    if (t->fork_gen == atomic_load(&g_fork_gen)) {
        stop_workers(t, t->size - 1);
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
    }
    atomic_fetch_sub(&g_live_workers, t->size - 1);
    cnv_free(t->threads);
    cnv_free(t->workers);
    cnv_free(t);
}

int cnv_team_size(const cnv_team *t)
{
    return t ? t->size : 1;
}

void cnv_team_run(cnv_team *t, int64_t n, cnv_chunk_fn fn, void *arg)
{
    int size = cnv_team_size(t);
    if (n <= 0)
        return;
    if (size == 1 || n == 1) {
        fn(arg, 0, n, 0);
        return;
    }
    const int parts = n < (int64_t)size * GRAIN ? (int)n : size * GRAIN;
    if (t->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed)) {
        for (int k = 0; k < parts; k++) {
            int64_t lo, hi;
            cnv_chunk(n, parts, k, 1, &lo, &hi);
            if (lo < hi)
                fn(arg, lo, hi, 0);
        }
        return;
    }
    t->fn = fn;
    t->arg = arg;
    t->n = n;
    atomic_store_explicit(&t->done, 0, memory_order_relaxed);
    unsigned gen = atomic_load_explicit(&t->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&t->claim, pack_claim(gen, parts, 0), memory_order_release);
    atomic_fetch_add(&t->gen, 1); /* wakes the workers (seq_cst) */
    if (atomic_load(&t->sleepers) > 0) {
        pthread_mutex_lock(&t->mu);
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
    run_chunks(t, gen, 0);
    for (int spins = 0; atomic_load_explicit(&t->done, memory_order_acquire) < parts;) {
        if (++spins < SPINS_BEFORE_YIELD) {
            cpu_relax();
        } else {
            sched_yield(); /* a worker was descheduled: let it run */
            spins = 0;
        }
    }
}

/* ------------------------------------------------------------- GEMM */

typedef struct gemm_job {
    int ta, tb, m, n, k, lda, ldb, ldc, split_n;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int parts;
    const cnv_gemm_hooks *h;
} gemm_job;

/* The product of rows [m0, m1) and columns [n0, n1) of c, with its hooks. */
static void gemm_block(const gemm_job *j, int m0, int m1, int n0, int n1)
{
    if (j->h && j->h->pre)
        j->h->pre(j->h->arg, m0, m1, n0, n1);
    const float *a = j->a + (j->ta ? m0 : (int64_t)m0 * j->lda);
    const float *b = j->b + (j->tb ? (int64_t)n0 * j->ldb : n0);
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans,
                m1 - m0, n1 - n0, j->k, j->alpha, a, j->lda, b, j->ldb, j->beta,
                j->c + (int64_t)m0 * j->ldc + n0, j->ldc);
    if (j->h && j->h->post)
        j->h->post(j->h->arg, m0, m1, n0, n1);
}

/* Blocks [lo, hi) of the j->parts along the split dimension. */
static void gemm_chunk(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const gemm_job *j = arg;
    for (int64_t k = lo; k < hi; k++) {
        int64_t a0, a1;
        /* whole cache lines of c per block along n, whole rows along m */
        cnv_chunk(j->split_n ? j->n : j->m, j->parts, (int)k, j->split_n ? 16 : 4, &a0, &a1);
        if (a0 >= a1)
            continue;
        if (j->split_n)
            gemm_block(j, 0, j->m, (int)a0, (int)a1);
        else
            gemm_block(j, (int)a0, (int)a1, 0, j->n);
    }
}

void cnv_sgemm_hooked(cnv_team *t, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                      int lda, const float *b, int ldb, float beta, float *c, int ldc,
                      const cnv_gemm_hooks *h)
{
    int size = cnv_team_size(t);
    gemm_job j = { ta, tb, m, n, k, lda, ldb, ldc, n >= m, alpha, beta, a, b, c, size, h };
    /* below some 10^5 multiply-adds a split costs more than it saves */
    if (size == 1 || (int64_t)m * n * k < 100000) {
        gemm_block(&j, 0, m, 0, n);
        return;
    }
    /* Two blocks per thread when they stay large (128 columns or 64 rows),
     * so that a thread that starts late leaves its second one to another;
     * smaller blocks would cost the BLAS more than that saves. */
    if ((j.split_n ? n / 128 : m / 64) >= 2 * size)
        j.parts = 2 * size;
    cnv_team_run(t, j.parts, gemm_chunk, &j);
}

void cnv_sgemm(cnv_team *t, int ta, int tb, int m, int n, int k, float alpha, const float *a,
               int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    cnv_sgemm_hooked(t, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
}
