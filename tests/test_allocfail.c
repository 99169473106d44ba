/* Allocation-failure injection: through cnv_set_allocator, the Nth
 * allocation fails, for every N over loading (cnv_model_load_onnx_memory),
 * creating a session and planning it. Each run must fail with
 * CNV_ERR_NOMEM and a message, and once the handles are freed no
 * allocation may be left alive. Forward and backward after a plan must not
 * allocate at all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define SQUEEZENET "../shared/imagenet/squeezenet1_1.onnx"

typedef struct counter {
    long calls;   /* allocations attempted */
    long live;    /* allocated and not yet freed */
    long fail_at; /* the call (0-based) that fails; -1: none */
    int failed;   /* the injected failure happened */
} counter;

static void *c_malloc(void *user, size_t n)
{
    counter *c = user;
    if (c->calls++ == c->fail_at) {
        c->failed = 1;
        return NULL;
    }
    void *p = malloc(n);
    if (p)
        c->live++;
    return p;
}

static void c_free(void *user, void *p)
{
    counter *c = user;
    c->live--;
    free(p);
}

static counter g_counter; /* the hook's state; outlives any test frame */

static void use(counter *c, long fail_at)
{
    memset(c, 0, sizeof *c);
    c->fail_at = fail_at;
    cnv_allocator a = {c_malloc, c_free, c};
    cnv_set_allocator(&a);
}

/* The bytes of a file. */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* A small VGG-style conv net written with the library's writer. */
static uint8_t *small_model(size_t *n)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_vgg_params p = cnv_vgg_params_default();
    p.height = p.width = 12;
    p.width1 = 3;
    p.width2 = 4;
    p.hidden = 8;
    p.classes = 5;
    assert_int_equal(cnv_model_build_vgg(m, &p), CNV_OK);
    char path[] = "/tmp/cnv_allocfail_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cnv_model_save_onnx(m, path), CNV_OK);
    cnv_model_free(m);
    uint8_t *b = slurp(path, n);
    unlink(path);
    assert_non_null(b);
    return b;
}

/* One run: load, create, plan for 1 x h x w. Returns the first failing
 * status (message in msg). */
static cnv_status load_plan(const uint8_t *bytes, size_t n, int h, int w, char *msg, size_t len)
{
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    cnv_status st = cnv_model_load_onnx_memory(bytes, n, &m);
    snprintf(msg, len, "load: %s", cnv_model_errmsg(m));
    if (st == CNV_OK) {
        st = cnv_session_create(m, &s);
        snprintf(msg, len, "create: %s", s ? cnv_session_errmsg(s) : "(no session)");
    }
    if (st == CNV_OK) {
        cnv_session_set_param_grads(s, 1);
        st = cnv_session_plan(s, 1, h, w);
        snprintf(msg, len, "plan: %s", cnv_session_errmsg(s));
    }
    cnv_session_free(s);
    cnv_model_free(m);
    return st;
}

/* Sweeps the failing allocation over [0, total) by `step` (1: every one).
 * Returns the number of runs. */
static long sweep(const char *label, const uint8_t *bytes, size_t n, int h, int w, long step)
{
    counter *pc = &g_counter;
    char msg[600];
    use(pc, -1);
    assert_int_equal(load_plan(bytes, n, h, w, msg, sizeof msg), CNV_OK);
    assert_int_equal(pc->live, 0);
    long total = pc->calls;
    long runs = 0, nomem = 0, other = 0;
    clock_t t0 = clock();
    for (long k = 0; k < total; k += step) {
        use(pc, k);
        cnv_status st = load_plan(bytes, n, h, w, msg, sizeof msg);
        runs++;
        if (pc->live != 0) {
            print_error("%s: failing allocation %ld of %ld leaks %ld allocations (%s)\n", label, k,
                        total, pc->live, msg);
            fail();
        }
        assert_true(pc->failed);
        if (st == CNV_ERR_NOMEM) {
            nomem++;
            /* Failing the handle's own allocation leaves no handle to
             * carry a message: the status says it. */
            if (!strstr(msg, "memory") && !strstr(msg, "NULL handle") &&
                !strstr(msg, "no session")) {
                print_error("%s: allocation %ld: NOMEM without saying so: %s\n", label, k, msg);
                fail();
            }
        } else {
            other++;
            print_error("%s: failing allocation %ld gave %s: %s\n", label, k, cnv_status_string(st),
                        msg);
            fail();
        }
        if (k == total / 2)
            printf("  %s, allocation %ld failing: %s\n", label, k, msg);
    }
    cnv_set_allocator(NULL);
    printf("  %s: %ld allocations to load and plan; %ld runs (every %ld%s): %ld CNV_ERR_NOMEM, "
           "%ld other, 0 leaks, %.1f s\n",
           label, total, runs, step, step == 1 ? ", all" : ", sampled", nomem, other,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
    return runs;
}

static void test_small_net_every_allocation(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = small_model(&n);
    sweep("small conv net", b, n, 12, 12, 1);
    free(b);
}

/* Forward and backward on a planned session allocate nothing: counted
 * through the hook, and with every allocation failing. */
static void test_run_allocates_nothing(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = small_model(&n);
    counter *pc = &g_counter;
    use(pc, -1);
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    assert_int_equal(cnv_model_load_onnx_memory(b, n, &m), CNV_OK);
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_session_set_param_grads(s, 1);
    assert_int_equal(cnv_session_plan(s, 2, 12, 12), CNV_OK);
    long before = pc->calls;
    pc->fail_at = before; /* any further allocation fails */
    float *x = cnv_session_input(s);
    for (int i = 0; i < 2 * 12 * 12; i++)
        x[i] = (float)(i % 13) / 13.0f;
    float seed[10];
    for (int i = 0; i < 10; i++)
        seed[i] = 1.0f;
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(tu_backward(s, "logits", seed), CNV_OK);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    printf("  forward + backward + forward: %ld allocations\n", pc->calls - before);
    assert_int_equal(pc->calls, before);
    cnv_session_free(s);
    cnv_model_free(m);
    assert_int_equal(pc->live, 0);
    cnv_set_allocator(NULL);
    free(b);
}

static void test_squeezenet(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = slurp(SQUEEZENET, &n);
    if (!b) {
        printf("  %s not found: SqueezeNet sweep skipped\n", SQUEEZENET);
        skip();
    }
    /* Time one run to choose between every allocation and a sample. */
    counter *pc = &g_counter;
    char msg[600];
    use(pc, -1);
    clock_t t0 = clock();
    assert_int_equal(load_plan(b, n, 64, 64, msg, sizeof msg), CNV_OK);
    double one = (double)(clock() - t0) / CLOCKS_PER_SEC;
    long total = pc->calls;
    cnv_set_allocator(NULL);
    /* Every allocation when that takes under ~35 s of CPU, else an even
     * sample (the ASan and valgrind builds). */
    long step = 1;
    while ((double)total / step * one > 35.0)
        step++;
    printf("  SqueezeNet: %ld allocations, %.3f s per load + plan\n", total, one);
    sweep("SqueezeNet 1.1 (64x64 plan)", b, n, 64, 64, step);
    free(b);
}

/* A failed assertion leaves the hook set: restore malloc. */
static int restore_allocator(void **state)
{
    (void)state;
    cnv_set_allocator(NULL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_small_net_every_allocation, restore_allocator),
        cmocka_unit_test_teardown(test_run_allocates_nothing, restore_allocator),
        cmocka_unit_test_teardown(test_squeezenet, restore_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
