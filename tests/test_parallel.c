/* The library's own threads: how a team splits a loop (every iteration
 * exactly once, on every path: spinning workers, sleeping ones, a forked
 * child without workers), and whole networks on 1, 2 and 3 threads giving
 * the same results and allocating nothing per iteration. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/team.h"
#include "testutil.h"

static void test_chunks(void **state)
{
    (void)state;
    static const int64_t aligns[] = { 1, 4, 16 };
    for (int64_t n = 0; n <= 70; n++)
        for (int parts = 1; parts <= 5; parts++)
            for (int a = 0; a < 3; a++) {
                int64_t align = aligns[a], next = 0, lo, hi;
                for (int k = 0; k < parts; k++) {
                    cnv_chunk(n, parts, k, align, &lo, &hi);
                    assert_true(lo == next && lo <= hi && hi <= n);
                    assert_true(lo == n || lo % align == 0);
                    next = hi;
                }
                assert_true(next == n);
                /* balanced: chunk sizes (in units of align) differ by one at most */
                cnv_chunk(n, parts, 0, align, &lo, &hi);
                int64_t first = hi - lo;
                cnv_chunk(n, parts, parts - 1, align, &lo, &hi);
                assert_true(first - (hi - lo) <= align || hi == n);
            }
}

typedef struct hits {
    int64_t n;
    int *count;  /* per iteration */
    int bad_tid; /* calls with a thread id out of range */
    int size;
} hits;

static void count_chunk(void *arg, int64_t lo, int64_t hi, int tid)
{
    hits *h = arg;
    if (tid < 0 || tid >= h->size)
        __atomic_fetch_add(&h->bad_tid, 1, __ATOMIC_RELAXED);
    for (int64_t i = lo; i < hi; i++)
        __atomic_fetch_add(&h->count[i], 1, __ATOMIC_RELAXED);
}

/* Runs the team over [0, n) and checks each iteration ran exactly once. */
static int run_and_check(cnv_team *t, int64_t n)
{
    hits h = { n, calloc((size_t)n + 1, sizeof(int)), 0, cnv_team_size(t) };
    if (!h.count)
        return 0;
    cnv_team_run(t, n, count_chunk, &h);
    int ok = h.bad_tid == 0;
    for (int64_t i = 0; i < n; i++)
        ok &= h.count[i] == 1;
    free(h.count);
    return ok;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { 0, ms * 1000000L };
    nanosleep(&ts, NULL);
}

static void test_team_runs(void **state)
{
    (void)state;
    for (int size = 1; size <= 4; size++) {
        cnv_team *t = NULL;
        assert_int_equal(cnv_team_create(size, &t, NULL), CNV_OK);
        assert_int_equal(cnv_team_size(t), size);
        /* back to back: the workers are still spinning */
        for (int64_t n = 0; n < 300; n++)
            assert_true(run_and_check(t, n));
        /* with pauses long enough for the workers to go to sleep */
        for (int r = 0; r < 5; r++) {
            sleep_ms(5);
            assert_true(run_and_check(t, 1000 + r));
        }
        cnv_team_free(t);
    }
    cnv_team_free(NULL);
    assert_int_equal(cnv_team_size(NULL), 1);
    assert_true(run_and_check(NULL, 17));
}

/* A team made before fork() has no workers in the child: the child's calls
 * must run every chunk itself instead of waiting for them forever. */
static void test_team_after_fork(void **state)
{
    (void)state;
    cnv_team *t = NULL;
    assert_int_equal(cnv_team_create(2, &t, NULL), CNV_OK);
    assert_true(run_and_check(t, 100));
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20); /* a hang fails the test instead of stalling the suite */
        int ok = run_and_check(t, 100) && run_and_check(t, 7);
        cnv_team_free(t);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(run_and_check(t, 100)); /* the parent's team still works */
    cnv_team_free(t);
}

/* ---- whole networks on several threads ---- */

#define H 40
#define W 40
#define CLASSES 7

typedef struct outputs {
    float *logits, *dx, *dw;
    int64_t n_logits, n_dx, n_dw;
} outputs;

static cnv_model *vgg(void)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_vgg_params p = cnv_vgg_params_default();
    p.height = H;
    p.width = W;
    p.width1 = 16;
    p.width2 = 32;
    p.hidden = 64;
    p.classes = CLASSES;
    p.seed = 3;
    assert_int_equal(cnv_model_build_vgg(m, &p), CNV_OK);
    return m;
}

/* Forward, then backward from a fixed seed over the logits, on a session
 * of `threads` threads with parameter gradients on; copies what came out. */
static outputs run_net(cnv_model *m, int batch, int threads)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, 1), CNV_OK);
    if (cnv_session_plan(s, batch, H, W) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    tu_rng r;
    tu_rng_init(&r, 42);
    tu_fill(&r, cnv_session_input(s), (int64_t)batch * H * W, -1.0f, 1.0f);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y, *dw;
    cnv_shape ys, ws;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "logits"), &y, &ys), CNV_OK);
    outputs o = { 0 };
    o.n_logits = cnv_shape_count(&ys);
    float *seed = malloc((size_t)o.n_logits * sizeof *seed);
    assert_non_null(seed);
    for (int64_t i = 0; i < o.n_logits; i++)
        seed[i] = (float)(i % 5) - 2.0f;
    assert_int_equal(tu_backward(s, "logits", seed), CNV_OK);
    free(seed);
    const char *w0 = cnv_model_param_name(m, 0);
    assert_int_equal(cnv_model_param(m, w0, NULL, &ws), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, w0), &dw), CNV_OK);
    o.n_dx = (int64_t)batch * H * W;
    o.n_dw = cnv_shape_count(&ws);
    o.logits = malloc((size_t)o.n_logits * sizeof(float));
    o.dx = malloc((size_t)o.n_dx * sizeof(float));
    o.dw = malloc((size_t)o.n_dw * sizeof(float));
    assert_true(o.logits && o.dx && o.dw);
    memcpy(o.logits, y, (size_t)o.n_logits * sizeof(float));
    memcpy(o.dx, cnv_session_input_grad(s), (size_t)o.n_dx * sizeof(float));
    memcpy(o.dw, dw, (size_t)o.n_dw * sizeof(float));
    cnv_session_free(s);
    return o;
}

static void free_outputs(outputs *o)
{
    free(o->logits);
    free(o->dx);
    free(o->dw);
}

static int same_bits(const outputs *a, const outputs *b)
{
    return !memcmp(a->logits, b->logits, (size_t)a->n_logits * sizeof(float)) &&
           !memcmp(a->dx, b->dx, (size_t)a->n_dx * sizeof(float)) &&
           !memcmp(a->dw, b->dw, (size_t)a->n_dw * sizeof(float));
}

/* Max relative L2 difference of the three outputs. */
static double rel_l2(const float *a, const float *b, int64_t n)
{
    double d = 0.0, r = 0.0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? d / r : d;
}

static void test_network_threads(void **state)
{
    (void)state;
    cnv_model *m = vgg();
    /* batch 1 splits inside each op; batch 4 gives threads whole images */
    static const int batches[] = { 1, 4 };
    for (int b = 0; b < 2; b++) {
        outputs one = run_net(m, batches[b], 1);
        for (int th = 2; th <= 3; th++) {
            outputs o = run_net(m, batches[b], th), again = run_net(m, batches[b], th);
            double e1 = rel_l2(o.logits, one.logits, one.n_logits);
            double e2 = rel_l2(o.dx, one.dx, one.n_dx);
            double e3 = rel_l2(o.dw, one.dw, one.n_dw);
            printf("batch %d, %d threads vs 1: squared relative L2 of logits %.3g, dx %.3g, dw %.3g\n",
                   batches[b], th, e1, e2, e3);
            assert_true(e1 < 1e-10 && e2 < 1e-10 && e3 < 1e-10);
            assert_true(same_bits(&o, &again)); /* deterministic per thread count */
            free_outputs(&o);
            free_outputs(&again);
        }
        free_outputs(&one);
    }
    cnv_model_free(m);
}

/* ---- no allocation per iteration on several threads ---- */

static long g_mallocs;

static void *count_malloc(void *user, size_t n)
{
    (void)user;
    __atomic_fetch_add(&g_mallocs, 1, __ATOMIC_RELAXED);
    return malloc(n);
}

static void plain_free(void *user, void *p)
{
    (void)user;
    free(p);
}

static void test_no_allocation(void **state)
{
    (void)state;
    cnv_model *m = vgg();
    cnv_allocator a = { count_malloc, plain_free, NULL };
    cnv_set_allocator(&a);
    for (int batch = 1; batch <= 4; batch += 3) {
        cnv_session *s = NULL;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        assert_int_equal(cnv_session_set_threads(s, 2), CNV_OK);
        assert_int_equal(cnv_session_plan(s, batch, H, W), CNV_OK);
        float seed[4 * CLASSES] = { 0 };
        seed[3] = 1.0f;
        long before = g_mallocs;
        for (int it = 0; it < 5; it++) {
            assert_int_equal(cnv_session_forward(s), CNV_OK);
            assert_int_equal(tu_backward(s, "logits", seed), CNV_OK);
        }
        printf("batch %d on 2 threads: %ld allocations in 5 iterations\n", batch, g_mallocs - before);
        assert_int_equal(g_mallocs - before, 0);
        cnv_session_free(s);
    }
    cnv_set_allocator(NULL);
    cnv_model_free(m);
}

static void test_set_threads_errors(void **state)
{
    (void)state;
    assert_int_equal(cnv_session_set_threads(NULL, 2), CNV_ERR_INVALID_ARG);
    cnv_model *m = vgg();
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, -1), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(cnv_session_errmsg(s), "-1"));
    /* changing the count re-plans with the same results */
    assert_int_equal(cnv_session_plan(s, 1, H, W), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, 2), CNV_OK);
    assert_int_equal(cnv_session_plan(s, 1, H, W), CNV_OK);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_team_runs),
        cmocka_unit_test(test_team_after_fork),
        cmocka_unit_test(test_network_threads),
        cmocka_unit_test(test_no_allocation),
        cmocka_unit_test(test_set_threads_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
