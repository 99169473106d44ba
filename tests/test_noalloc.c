/* Plan once, then iterate with no allocation: a counting allocator
 * (cnv_set_allocator) around the small branching network. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smallnet.h"
#include "testutil.h"

typedef struct counter {
    long mallocs, frees;
    long fail_after; /* > 0: the n-th malloc from now fails */
} counter;

static void *count_malloc(void *user, size_t n)
{
    counter *c = user;
    if (c->fail_after > 0 && --c->fail_after == 0)
        return NULL;
    c->mallocs++;
    return malloc(n);
}

static void count_free(void *user, void *p)
{
    counter *c = user;
    if (p)
        c->frees++;
    free(p);
}

static counter g_count;

static int install(void **state)
{
    (void)state;
    memset(&g_count, 0, sizeof g_count);
    cnv_allocator a = {count_malloc, count_free, &g_count};
    cnv_set_allocator(&a);
    return 0;
}

static int restore(void **state)
{
    (void)state;
    cnv_set_allocator(NULL);
    return 0;
}

static void ok(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
}

/* One round of everything a visualization loop does. */
static void iterate(cnv_session *s, int param_grads)
{
    float seed[2 * SN_CLASSES] = {0};
    seed[4] = 1.0f;
    static float cseed[2 * 8 * 4 * 4];
    for (int i = 0; i < 16; i++)
        cseed[3 * 16 + i] = 1.0f / 16;
    float *x = cnv_session_input(s), *g;
    x[5] += 0.01f; /* the input changes between iterations */
    ok(s, cnv_session_forward(s));
    ok(s, tu_backward(s, "logits", seed));
    assert_non_null(cnv_session_input_grad(s));
    ok(s, tu_backward(s, "side", seed)); /* reaches no input */
    ok(s, cnv_session_forward_to(s, tu_t(s, "cat")));
    ok(s, tu_backward(s, "cat", cseed));
    ok(s, cnv_session_grad(s, tu_t(s, "x"), &g));
    if (param_grads)
        ok(s, cnv_session_grad(s, tu_t(s, "wb"), &g));
    ok(s, cnv_session_set_relu_mode(s, CNV_RELU_GUIDED));
    ok(s, cnv_session_forward(s));
    ok(s, tu_backward(s, "logits", seed));
    ok(s, cnv_session_set_relu_mode(s, CNV_RELU_GRAD));
    ok(s, cnv_session_plan(s, 2, 8, 8)); /* the same shape: a no-op */
    float *p;
    cnv_shape sh;
    ok(s, cnv_session_tensor(s, tu_t(s, "logits"), &p, &sh));
    /* failing calls only write the message */
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "nope"), &p, NULL), CNV_ERR_NOT_FOUND);
    assert_int_equal(tu_backward(s, "logits", NULL), CNV_ERR_INVALID_ARG);
}

static void no_allocation_after_plan(void **state)
{
    (void)state;
    for (int pg = 0; pg < 2; pg++) {
        long start = g_count.mallocs;
        cnv_model *m = sn_build(0, 21);
        cnv_session *s;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        ok(s, cnv_session_set_param_grads(s, pg));
        ok(s, cnv_session_plan(s, 2, 8, 8));
        tu_rng r;
        tu_rng_init(&r, 22);
        tu_fill(&r, cnv_session_input(s), 2 * 2 * 8 * 8, -1.0f, 1.0f);
        long planned = g_count.mallocs;
        assert_true(planned > start); /* the counter does see the library */
        for (int it = 0; it < 5; it++)
            iterate(s, pg);
        printf("param grads %s: %ld allocations to build and plan, %ld during 5 iterations\n", pg ? "on" : "off",
               planned - start, g_count.mallocs - planned);
        assert_int_equal(g_count.mallocs, planned);

        /* re-planning to another size allocates, then iterating does not */
        ok(s, cnv_session_plan(s, 1, 8, 8));
        planned = g_count.mallocs;
        float seed[SN_CLASSES] = {1};
        for (int it = 0; it < 5; it++) {
            ok(s, cnv_session_forward(s));
            ok(s, tu_backward(s, "logits", seed));
        }
        assert_int_equal(g_count.mallocs, planned);
        cnv_session_free(s);
        cnv_model_free(m);
        /* and everything allocated was given back */
        printf("mallocs %ld, frees %ld\n", g_count.mallocs, g_count.frees);
        assert_int_equal(g_count.mallocs, g_count.frees);
    }
}

/* Every allocation failure during build and plan comes back as
 * CNV_ERR_NOMEM (or the handle's own message), never a crash or a leak. */
static void allocation_failures(void **state)
{
    (void)state;
    int failures = 0;
    for (long k = 1; k < 400; k++) {
        g_count.mallocs = g_count.frees = 0;
        cnv_model *m;
        g_count.fail_after = k;
        cnv_status st = cnv_model_create(&m);
        if (st != CNV_OK) {
            assert_int_equal(st, CNV_ERR_NOMEM);
            failures++;
            continue;
        }
        /* the builder fails the test on any error, so build by hand */
        cnv_shape xs = tu_shape(4, -1, 2, 8, 8), ws = tu_shape(4, 3, 2, 3, 3);
        static const float w[3 * 2 * 9];
        const int64_t k3[2] = {3, 3};
        cnv_attr a = tu_attr_ints("kernel_shape", 2, k3);
        const char *c = "c", *y = "y";
        st = cnv_model_add_input(m, "x", &xs);
        if (st == CNV_OK)
            st = cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, w);
        if (st == CNV_OK)
            st = cnv_model_add_node(m, "Conv", "conv", 2, (const char *const[]){"x", "w"}, 1, &c, 1, &a);
        if (st == CNV_OK)
            st = cnv_model_add_node(m, "Relu", "relu", 1, (const char *const[]){"c"}, 1, &y, 0, NULL);
        if (st == CNV_OK)
            st = cnv_model_add_output(m, "y");
        cnv_session *s = NULL;
        if (st == CNV_OK)
            st = cnv_session_create(m, &s);
        if (st == CNV_OK)
            st = cnv_session_plan(s, 1, 8, 8);
        if (st == CNV_OK)
            st = cnv_session_forward(s);
        if (st != CNV_OK) {
            assert_int_equal(st, CNV_ERR_NOMEM);
            failures++;
        }
        int done = g_count.fail_after > 0; /* the failure never came: all succeeded */
        g_count.fail_after = 0;
        cnv_session_free(s);
        cnv_model_free(m);
        assert_int_equal(g_count.mallocs, g_count.frees);
        if (done) {
            assert_int_equal(st, CNV_OK);
            printf("%d injected allocation failures, each CNV_ERR_NOMEM; %ld allocations in all\n", failures,
                   g_count.mallocs);
            return;
        }
    }
    fail_msg("more than 400 allocations to build a two-node model");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(no_allocation_after_plan, install, restore),
        cmocka_unit_test_setup_teardown(allocation_failures, install, restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
