/* BatchNormalization (inference): a hand case, a naive reference over ranks
 * 2..5, finite differences to X and to every per-channel input, the
 * spatial / training-mode rules and shape errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* X a graph input, scale/B/mean/var float constants of shape ps (C values
 * each, in p[0..3]); node "bn" with n_out outputs. add_node's status in *st. */
static cnv_model *bn_model(int64_t opset, cnv_shape xs, cnv_shape ps, const float *const *p,
                           int n_out, int n_attrs, const cnv_attr *attrs, cnv_status *st)
{
    static const char *const in[] = {"x", "scale", "b", "mean", "var"};
    static const char *const out[] = {"y", "rmean", "rvar"};
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, opset), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    for (int k = 0; k < 4; k++)
        assert_int_equal(cnv_model_add_const(m, in[k + 1], CNV_FLOAT32, &ps, p[k]), CNV_OK);
    *st = cnv_model_add_node(m, "BatchNormalization", "bn", 5, in, n_out, out, n_attrs, attrs);
    if (*st == CNV_OK)
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

static cnv_session *session(cnv_model *m, const float *x, int param_grads)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, param_grads), CNV_OK);
    cnv_shape xs;
    assert_int_equal(cnv_model_input_shape(m, 0, &xs), CNV_OK);
    if (cnv_session_plan_shapes(s, 1, &xs) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    float *d;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &d, NULL), CNV_OK);
    memcpy(d, x, (size_t)cnv_shape_count(&xs) * sizeof(float));
    return s;
}

/* Per-channel parameters: scale, B, mean in [-1,1], var in [0.5,1.5]. */
static void make_params(int C, float *buf, const float *p[4], uint64_t seed)
{
    tu_rng r;
    tu_rng_init(&r, seed);
    tu_fill(&r, buf, 3 * C, -1, 1);
    tu_fill(&r, buf + 3 * C, C, 0.5f, 1.5f);
    for (int k = 0; k < 4; k++)
        p[k] = buf + k * C;
}

static void test_bn_hand(void **state)
{
    (void)state;
    /* channel 0: (x-1)/sqrt(4); channel 1: (x-3)*2/sqrt(1) + 1 */
    float x[] = {1, 2, 3, 4}, scale[] = {1, 2}, b[] = {0, 1}, mean[] = {1, 3}, var[] = {4, 1};
    cnv_attr eps = tu_attr_float("epsilon", 0.0f);
    cnv_status st;
    cnv_model *m = bn_model(15, tu_shape(4, 1, 2, 1, 2), tu_shape(1, 2),
                            (const float *const[]){scale, b, mean, var}, 1, 1, &eps, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = session(m, x, 0);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
    float want[] = {0, 0.5f, 1, 3};
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], want[i], 1e-6);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_bn_naive(void **state)
{
    (void)state;
    cnv_shape shapes[] = {tu_shape(2, 3, 4), tu_shape(3, 2, 4, 3), tu_shape(4, 2, 3, 7, 5),
                          tu_shape(5, 1, 2, 3, 2, 2)};
    float buf[32], x[512];
    const float *p[4];
    double worst = 0;
    for (int t = 0; t < 4; t++) {
        int C = (int)shapes[t].dims[1];
        int64_t cnt = cnv_shape_count(&shapes[t]);
        int64_t inner = cnt / (shapes[t].dims[0] * C);
        make_params(C, buf, p, 40 + t);
        tu_rng r;
        tu_rng_init(&r, 50 + t);
        tu_fill(&r, x, cnt, -2, 2);
        cnv_attr eps = tu_attr_float("epsilon", 1e-3f);
        cnv_status st;
        /* opset 7 (spatial present, default 1) and 15 */
        cnv_model *m = bn_model(t % 2 ? 7 : 15, shapes[t], tu_shape(1, C), p, 1, 1, &eps, &st);
        assert_int_equal(st, CNV_OK);
        cnv_session *s = session(m, x, 0);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        float *y;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
        for (int64_t i = 0; i < cnt; i++) {
            int c = (int)((i / inner) % C);
            double ref =
                ((double)x[i] - p[2][c]) / sqrt((double)p[3][c] + 1e-3f) * p[0][c] + p[1][c];
            double d = fabs(y[i] - ref) / fmax(1, fabs(ref));
            if (d > worst)
                worst = d;
            assert_true(d < 1e-6);
        }
        cnv_session_free(s);
        cnv_model_free(m);
    }
    printf("BatchNormalization vs naive: max rel diff %.3g\n", worst);
}

static void test_bn_fd(void **state)
{
    (void)state;
    float buf[32], x[210];
    const float *p[4];
    make_params(3, buf, p, 60);
    tu_rng r;
    tu_rng_init(&r, 61);
    tu_fill(&r, x, 210, -2, 2);
    cnv_status st;
    cnv_model *m = bn_model(15, tu_shape(4, 2, 3, 7, 5), tu_shape(1, 3), p, 1, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = session(m, x, 0);
    tu_fd_assert("BatchNormalization dX 2x3x7x5", tu_fd_check(s, m, "y", 1e-2, 1000, 62), 1e-4);
    cnv_session_free(s);
    /* every per-channel input too */
    s = session(m, x, 1);
    tu_fd_assert("BatchNormalization dX,dscale,dB,dmean,dvar (param grads)",
                 tu_fd_check(s, m, "y", 1e-3, 1000, 63), 1e-3);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void expect_plan_error(cnv_model *m, cnv_status want)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape xs;
    assert_int_equal(cnv_model_input_shape(m, 0, &xs), CNV_OK);
    cnv_status st = cnv_session_plan_shapes(s, 1, &xs);
    printf("plan error: %s\n", cnv_session_errmsg(s));
    assert_int_equal(st, want);
    assert_non_null(strstr(cnv_session_errmsg(s), "'bn'"));
    cnv_session_free(s);
}

static void test_bn_modes_and_errors(void **state)
{
    (void)state;
    float buf[64];
    const float *p[4];
    make_params(16, buf, p, 70);
    cnv_status st;
    cnv_model *m;
    cnv_shape xs = tu_shape(4, 2, 3, 4, 5);

    /* training_mode = 1 */
    cnv_attr tm = tu_attr_int("training_mode", 1);
    m = bn_model(15, xs, tu_shape(1, 3), p, 1, 1, &tm, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED);
    cnv_model_free(m);
    /* running-statistics outputs */
    m = bn_model(15, xs, tu_shape(1, 3), p, 3, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED);
    cnv_model_free(m);
    /* spatial=0 with per-activation statistics (C x H x W) */
    cnv_attr sp0 = tu_attr_int("spatial", 0);
    m = bn_model(7, tu_shape(4, 2, 2, 2, 2), tu_shape(3, 2, 2, 2), p, 1, 1, &sp0, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED);
    cnv_model_free(m);
    /* a parameter with the wrong count */
    m = bn_model(15, xs, tu_shape(1, 4), p, 1, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE);
    cnv_model_free(m);
    /* X without a channel dim */
    m = bn_model(15, tu_shape(1, 3), tu_shape(1, 3), p, 1, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE);
    cnv_model_free(m);

    /* spatial=0 on 1x1 spatial dims is the per-channel form: it runs, and
     * matches spatial=1 */
    float x[6] = {0.5f, -1, 2, 0.25f, 3, -2}, y0[6];
    cnv_shape xs1 = tu_shape(4, 2, 3, 1, 1);
    for (int sp = 0; sp < 2; sp++) {
        cnv_attr a = tu_attr_int("spatial", sp);
        m = bn_model(7, xs1, tu_shape(3, 3, 1, 1), p, 1, 1, &a, &st);
        assert_int_equal(st, CNV_OK);
        cnv_session *s = session(m, x, 0);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        float *y;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
        for (int i = 0; i < 6; i++) {
            if (sp == 0)
                y0[i] = y[i];
            else
                assert_true(y[i] == y0[i]);
        }
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_hand),
        cmocka_unit_test(test_bn_naive),
        cmocka_unit_test(test_bn_fd),
        cmocka_unit_test(test_bn_modes_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
