/* One read-only model shared by 4 threads (pthreads), each with its own
 * session, running forward and backward on its own inputs many times: the
 * logits and gradients must be bit-identical to a single-threaded run of
 * the same inputs. Also the free(NULL) contract of every handle type. */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define N_THREADS 4
#define ITERS 10
#define H 32
#define W 32
#define CLASSES 5
#define BATCH 2
#define N_IN (BATCH * H * W)
#define N_OUT (BATCH * CLASSES)

typedef struct result {
    float logits[N_OUT];
    float dx[N_IN];
    float dw[8 * 1 * 3 * 3]; /* first conv weight gradient */
} result;

static cnv_model *g_model;

static cnv_model *build_model(void)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_vgg_params p = cnv_vgg_params_default();
    p.height = H;
    p.width = W;
    p.width1 = 8; /* big enough for OpenBLAS to split GEMMs over threads */
    p.width2 = 16;
    p.hidden = 16;
    p.classes = CLASSES;
    p.seed = 7;
    assert_int_equal(cnv_model_build_vgg(m, &p), CNV_OK);
    return m;
}

/* Input of worker t: distinct per thread. */
static void fill_input(float *x, int t)
{
    tu_rng r;
    tu_rng_init(&r, 1000 + (uint64_t)t);
    tu_fill(&r, x, N_IN, -1.0f, 1.0f);
}

/* Runs forward + backward (from logit seed weights depending on t) on a
 * session planned for this thread; returns non-zero on a library error. */
static int run_once(cnv_session *s, int t, result *out)
{
    float *x = cnv_session_input(s);
    fill_input(x, t);
    if (cnv_session_forward(s) != CNV_OK)
        return 1;
    float *y, seed[N_OUT];
    if (cnv_session_tensor(s, tu_t(s, "logits"), &y, NULL) != CNV_OK)
        return 1;
    for (int i = 0; i < N_OUT; i++)
        seed[i] = (float)((i + t) % 3) - 1.0f;
    if (tu_backward(s, "logits", seed) != CNV_OK)
        return 1;
    float *dw;
    const char *w0 = cnv_model_param_name(g_model, 0);
    if (cnv_session_grad(s, tu_t(s, w0), &dw) != CNV_OK)
        return 1;
    memcpy(out->logits, y, sizeof out->logits);
    memcpy(out->dx, cnv_session_input_grad(s), sizeof out->dx);
    memcpy(out->dw, dw, sizeof out->dw);
    return 0;
}

static cnv_session *new_session(void)
{
    cnv_session *s = NULL;
    if (cnv_session_create(g_model, &s) != CNV_OK)
        return NULL;
    if (cnv_session_set_param_grads(s, 1) != CNV_OK || cnv_session_plan(s, BATCH, H, W) != CNV_OK) {
        cnv_session_free(s);
        return NULL;
    }
    return s;
}

typedef struct worker {
    int t;
    result ref;      /* the single-threaded answer */
    int errors;      /* library failures */
    int mismatches;  /* iterations whose results differ from ref */
} worker;

static void *work(void *arg)
{
    worker *wk = arg;
    cnv_session *s = new_session();
    if (!s) {
        wk->errors++;
        return NULL;
    }
    result r;
    for (int it = 0; it < ITERS; it++) {
        memset(&r, 0, sizeof r);
        if (run_once(s, wk->t, &r)) {
            wk->errors++;
            break;
        }
        if (memcmp(&r, &wk->ref, sizeof r) != 0)
            wk->mismatches++;
    }
    cnv_session_free(s);
    return NULL;
}

static void threads_case(int blas_threads)
{
    cnv_set_threads(blas_threads);
    g_model = build_model();
    worker wk[N_THREADS];
    /* Reference: each thread's inputs run one after another on one thread. */
    cnv_session *s = new_session();
    assert_non_null(s);
    for (int t = 0; t < N_THREADS; t++) {
        memset(&wk[t], 0, sizeof wk[t]);
        wk[t].t = t;
        assert_int_equal(run_once(s, t, &wk[t].ref), 0);
    }
    cnv_session_free(s);
    /* Different inputs give different answers, so a mix-up would show. */
    assert_true(memcmp(wk[0].ref.logits, wk[1].ref.logits, sizeof wk[0].ref.logits) != 0);
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, work, &wk[t]), 0);
    int errors = 0, mism = 0;
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        errors += wk[t].errors;
        mism += wk[t].mismatches;
    }
    printf("  %d threads x %d forward+backward, BLAS threads %d: %d errors, %d of %d results "
           "differ from the single-threaded run\n",
           N_THREADS, ITERS, blas_threads, errors, mism, N_THREADS * ITERS);
    assert_int_equal(errors, 0);
    assert_int_equal(mism, 0);
    cnv_model_free(g_model);
    g_model = NULL;
}

static void test_shared_model_blas_1(void **state)
{
    (void)state;
    threads_case(1);
}

/* OpenBLAS's pthread build called from several threads at once, each call
 * itself using BLAS threads (0.3.21 serializes its thread pool). */
static void test_shared_model_blas_default(void **state)
{
    (void)state;
    threads_case(0);
    cnv_set_threads(0);
}

/* fork() after OpenBLAS's thread pool has run: Debian's pthread build
 * shuts the pool down in a pthread_atfork handler, so the child can run
 * GEMM again (an OpenMP build would hang here). The child gives up after
 * 60 s through alarm(), so a hang fails the test instead of the suite. */
static void test_fork_after_blas_threads(void **state)
{
    (void)state;
    cnv_set_threads(0);
    g_model = build_model();
    cnv_session *s = new_session();
    assert_non_null(s);
    result before, r;
    assert_int_equal(run_once(s, 1, &before), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);
        int bad = run_once(s, 1, &r) || memcmp(&r, &before, sizeof r) != 0;
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    printf("  child after fork: %s\n",
           WIFEXITED(status) ? (WEXITSTATUS(status) ? "different results" : "same results")
                             : "killed (hung?)");
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* And the parent's pool still works. */
    assert_int_equal(run_once(s, 1, &r), 0);
    assert_memory_equal(&r, &before, sizeof r);
    cnv_session_free(s);
    cnv_model_free(g_model);
    g_model = NULL;
}

/* Every _free accepts NULL (and a zeroed image); a double free is NOT
 * safe and is not tested (see docs/SECURITY.md). */
static void test_free_null(void **state)
{
    (void)state;
    cnv_model_free(NULL);
    cnv_session_free(NULL);
    cnv_image_free(NULL);
    cnv_image zero = {0};
    cnv_image_free(&zero);
    cnv_image_free(&zero);
    cnv_free_buffer(NULL);
    cnv_dataset_free(NULL);
    cnv_gif_writer_free(NULL);
    assert_non_null(cnv_model_errmsg(NULL));
    assert_non_null(cnv_session_errmsg(NULL));
    /* cnv_image_free zeroes the image, so freeing it again is harmless. */
    cnv_image img = {0};
    char err[128];
    assert_int_equal(cnv_image_create(3, 2, 1, &img, err, sizeof err), CNV_OK);
    cnv_image_free(&img);
    assert_null(img.data);
    cnv_image_free(&img);
    /* Calls on NULL handles fail with a status instead of crashing. */
    assert_int_equal(cnv_session_forward(NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_plan(NULL, 1, 4, 4), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_add_output(NULL, "y"), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_session_create(NULL, NULL), CNV_ERR_INVALID_ARG);
}

/* Threads alive in this process (/proc/self/status). */
static int live_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

/* Thread counts are bounded and say so (issue "Untrusted input, round 2").
 * Before: --threads silently capped at 256, and 64 sessions asking for 256
 * threads each started 64 x 255 = 16,320 workers. */
static void test_thread_budget(void **state)
{
    (void)state;
    cnv_set_threads(100000);
    printf("cnv_set_threads(100000): cnv_get_threads() = %d\n", cnv_get_threads());
    assert_int_equal(cnv_get_threads(), CNV_MAX_THREADS);
    cnv_set_threads(0);
    int st = system("bin/cnnviz info --threads 300 > /dev/null 2>&1");
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    st = system("bin/cnnviz info --threads 256 > /dev/null 2>&1");
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    tu_tensor in[1] = {{"x", tu_shape(2, 1, 4), NULL, 0}};
    cnv_model *m = tu_one_node("Relu", 1, in, 0, NULL);
    enum { SESSIONS = 64 };
    cnv_session *s[SESSIONS];
    int before = live_threads(), total = 0;
    for (int i = 0; i < SESSIONS; i++) {
        assert_int_equal(cnv_session_create(m, &s[i]), CNV_OK);
        assert_int_equal(cnv_session_set_threads(s[i], CNV_MAX_THREADS), CNV_OK);
        cnv_shape xs = tu_shape(2, 1, 4);
        assert_int_equal(cnv_session_plan_shapes(s[i], 1, &xs), CNV_OK);
        assert_int_equal(cnv_session_forward(s[i]), CNV_OK);
    }
    total = live_threads() - before;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int budget = cores > CNV_MAX_THREADS / 4 ? (int)(4 * cores) : CNV_MAX_THREADS;
    printf("%d sessions of %d threads: %d new threads (budget %d)\n", SESSIONS, CNV_MAX_THREADS, total, budget);
    assert_true(total <= budget);
    for (int i = 0; i < SESSIONS; i++)
        cnv_session_free(s[i]);
    /* freed teams give their workers back: a new session gets them */
    assert_true(live_threads() <= before);
    cnv_session *again;
    assert_int_equal(cnv_session_create(m, &again), CNV_OK);
    assert_int_equal(cnv_session_set_threads(again, 8), CNV_OK);
    cnv_shape xs = tu_shape(2, 1, 4);
    assert_int_equal(cnv_session_plan_shapes(again, 1, &xs), CNV_OK);
    assert_int_equal(live_threads() - before, 7);
    cnv_session_free(again);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_model_blas_1),
        cmocka_unit_test(test_shared_model_blas_default),
        cmocka_unit_test(test_fork_after_blas_threads),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_thread_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
