/* Relu, Identity, Dropout and Add: hand-computed cases, the ReLU rule at
 * zero, guided mode, broadcasting, and gradients by finite differences. */
#include <math.h>
#include <string.h>

#include "testutil.h"

static void run_forward(cnv_session *s)
{
    if (cnv_session_forward(s) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
}

static void relu_forward_and_zero(void **state)
{
    (void)state;
    tu_tensor in = {"x", tu_shape(1, 5), NULL, 0};
    cnv_model *m = tu_one_node("Relu", 1, &in, 0, NULL);
    const float x[5] = {-2.0f, -0.0f, 0.0f, 0.5f, NAN};
    const float *xs[1] = {x};
    cnv_session *s = tu_session(m, xs, 1);
    run_forward(s);
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
    assert_true(y[0] == 0.0f && y[1] == 0.0f && y[2] == 0.0f && y[3] == 0.5f && isnan(y[4]));
    /* the gradient at exactly 0 is 0 (documented), elsewhere the step */
    const float seed[5] = {1, 1, 1, 1, 1};
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    float *g = cnv_session_input_grad(s);
    assert_true(g[0] == 0.0f && g[1] == 0.0f && g[2] == 0.0f && g[3] == 1.0f);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void relu_guided(void **state)
{
    (void)state;
    tu_tensor in = {"x", tu_shape(1, 4), NULL, 0};
    cnv_model *m = tu_one_node("Relu", 1, &in, 0, NULL);
    const float x[4] = {-1.0f, 1.0f, 2.0f, 3.0f};
    const float *xs[1] = {x};
    cnv_session *s = tu_session(m, xs, 1);
    assert_int_equal(cnv_session_set_relu_mode(s, CNV_RELU_GUIDED), CNV_OK);
    run_forward(s);
    const float seed[4] = {5.0f, -1.0f, 2.0f, 0.0f};
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    float *g = cnv_session_input_grad(s);
    assert_true(g[0] == 0.0f && g[1] == 0.0f && g[2] == 2.0f && g[3] == 0.0f);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void relu_fd(void **state)
{
    (void)state;
    tu_tensor in = {"x", tu_shape(4, 2, 3, 4, 5), NULL, 0};
    cnv_model *m = tu_one_node("Relu", 1, &in, 0, NULL);
    /* values kept at least 0.05 away from the kink, with h = 1e-2 */
    float x[120];
    tu_rng r;
    tu_rng_init(&r, 7);
    for (int i = 0; i < 120; i++) {
        float v = tu_uniform(&r, 0.05f, 1.0f);
        x[i] = (i % 2) ? v : -v;
    }
    const float *xs[1] = {x};
    cnv_session *s = tu_session(m, xs, 2);
    tu_fd_assert("Relu x", tu_fd_check(s, m, "y", 1e-2, 200, 3), 1e-3);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void identity_and_dropout(void **state)
{
    (void)state;
    const char *ops[2] = {"Identity", "Dropout"};
    for (int k = 0; k < 2; k++) {
        tu_tensor in = {"x", tu_shape(2, 3, 4), NULL, 0};
        cnv_model *m = tu_one_node(ops[k], 1, &in, 0, NULL);
        cnv_session *s = tu_session(m, NULL, 4);
        run_forward(s);
        float *x, *y;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
        assert_memory_equal(x, y, 12 * sizeof(float));
        tu_fd_assert(ops[k], tu_fd_check(s, m, "y", 1e-2, 50, 5), 1e-3);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

static void dropout_mask_refused(void **state)
{
    (void)state;
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape sh = tu_shape(1, 3);
    assert_int_equal(cnv_model_add_input(m, "x", &sh), CNV_OK);
    const char *in[1] = {"x"}, *out[2] = {"y", "mask"};
    assert_int_equal(cnv_model_add_node(m, "Dropout", "drop", 1, in, 2, out, 0, NULL), CNV_ERR_UNSUPPORTED);
    assert_non_null(strstr(cnv_model_errmsg(m), "drop"));
    cnv_model_free(m);
}

/* Add with each broadcasting form against a direct loop. */
static void add_broadcast(void **state)
{
    (void)state;
    const cnv_shape bs[] = {tu_shape(4, 2, 3, 4, 5), tu_shape(3, 3, 1, 1), tu_shape(4, 1, 3, 1, 1),
                            tu_shape(1, 5), tu_shape(0), tu_shape(4, 2, 1, 4, 1)};
    for (size_t k = 0; k < sizeof bs / sizeof bs[0]; k++) {
        tu_tensor in[2] = {{"a", tu_shape(4, 2, 3, 4, 5), NULL, 0}, {"b", bs[k], NULL, 0}};
        cnv_model *m = tu_one_node("Add", 2, in, 0, NULL);
        cnv_session *s = tu_session(m, NULL, 10 + k);
        run_forward(s);
        float *a, *b, *y;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "a"), &a, NULL), CNV_OK);
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "b"), &b, NULL), CNV_OK);
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
        /* b's own strides, right-aligned against a (2,3,4,5) */
        int64_t bd[4] = {1, 1, 1, 1};
        for (int d = 0; d < bs[k].ndim; d++)
            bd[4 - bs[k].ndim + d] = bs[k].dims[d];
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 3; c++)
                for (int h = 0; h < 4; h++)
                    for (int w = 0; w < 5; w++) {
                        int64_t ib = ((((bd[0] > 1 ? n : 0) * bd[1] + (bd[1] > 1 ? c : 0)) * bd[2] +
                                       (bd[2] > 1 ? h : 0)) * bd[3]) + (bd[3] > 1 ? w : 0);
                        int i = ((n * 3 + c) * 4 + h) * 5 + w;
                        assert_float_equal(y[i], a[i] + b[ib], 0.0f);
                    }
        tu_fd_assert("Add a,b", tu_fd_check(s, m, "y", 1e-2, 60, 11), 1e-3);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

static void add_bad_broadcast(void **state)
{
    (void)state;
    tu_tensor in[2] = {{"a", tu_shape(2, 3, 4), NULL, 0}, {"b", tu_shape(1, 3), NULL, 0}};
    cnv_model *m = tu_one_node("Add", 2, in, 0, NULL);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape sh[2] = {in[0].shape, in[1].shape};
    assert_int_equal(cnv_session_plan_shapes(s, 2, sh), CNV_ERR_SHAPE);
    assert_non_null(strstr(cnv_session_errmsg(s), "node"));
    assert_non_null(strstr(cnv_session_errmsg(s), "3x4"));
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(relu_forward_and_zero), cmocka_unit_test(relu_guided),
        cmocka_unit_test(relu_fd),               cmocka_unit_test(identity_and_dropout),
        cmocka_unit_test(dropout_mask_refused),  cmocka_unit_test(add_broadcast),
        cmocka_unit_test(add_bad_broadcast),
    };
    /* The same checks with the work split over 3 threads (uneven splits
     * on these sizes): blocks of elements per
     * thread. */
    const struct CMUnitTest threaded[] = {
        cmocka_unit_test(relu_forward_and_zero),
        cmocka_unit_test(relu_guided),
        cmocka_unit_test(relu_fd),
    };
    int failed = cmocka_run_group_tests_name("one thread", tests, NULL, NULL);
    cnv_set_threads(3);
    failed += cmocka_run_group_tests_name("three threads", threaded, NULL, NULL);
    return failed;
}
