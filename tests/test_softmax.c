/* Softmax and LogSoftmax: hand values, large and -inf inputs, a
 * double-precision reference for both axis semantics (opset < 13 flattens
 * the trailing dims, opset >= 13 takes one axis), finite differences,
 * errors, and both ops' role as the model's probabilities. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static cnv_model *sm_model(const char *op, int64_t opset, cnv_shape xs, int n_attrs, const cnv_attr *attrs)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, opset), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    const char *in = "x", *out = "y";
    if (cnv_model_add_node(m, op, "sm", 1, &in, 1, &out, n_attrs, attrs) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

/* Forward of x through op (opset, attrs); y copied out. */
static void run_op(const char *op, int64_t opset, cnv_shape xs, const float *x, int n_attrs,
                   const cnv_attr *attrs, float *y_out)
{
    cnv_model *m = sm_model(op, opset, xs, n_attrs, attrs);
    cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_int_equal(ys.ndim, xs.ndim);
    for (int i = 0; i < xs.ndim; i++)
        assert_int_equal(ys.dims[i], xs.dims[i]);
    memcpy(y_out, y, (size_t)cnv_shape_count(&xs) * sizeof(float));
    cnv_session_free(s);
    cnv_model_free(m);
}

static void run(int64_t opset, cnv_shape xs, const float *x, int n_attrs, const cnv_attr *attrs, float *y_out)
{
    run_op("Softmax", opset, xs, x, n_attrs, attrs, y_out);
}

static void test_softmax_hand(void **state)
{
    (void)state;
    /* softmax([1,2,3]) = [0.0900306, 0.2447285, 0.6652410]; shifting by
     * 1000 must not change it (max subtraction) */
    static const float want[] = {0.09003057f, 0.24472847f, 0.66524096f};
    float x[] = {1, 2, 3, 1000, 1001, 1002}, y[6];
    run(13, tu_shape(2, 2, 3), x, 0, NULL, y);
    for (int i = 0; i < 6; i++)
        assert_float_equal(y[i], want[i % 3], 1e-6);
    /* opset 11, default axis 1 on 1x2x3: one softmax over all six */
    float z[6];
    run(11, tu_shape(3, 1, 2, 3), x, 0, NULL, z);
    assert_float_equal(z[3], want[0], 1e-6);
    assert_true(z[0] == 0.0f); /* e^-1001 underflows */
    /* -inf entries get 0 */
    float w[] = {0, -INFINITY, 0, -INFINITY}, v[4];
    run(13, tu_shape(1, 4), w, 0, NULL, v);
    assert_float_equal(v[0], 0.5f, 1e-7);
    assert_true(v[1] == 0.0f && v[3] == 0.0f);
}

/* Reference: for every position outside the reduced block, softmax over
 * the block in double. The block is dims[ax] (opset >= 13) or dims[ax:]. */
static void ref_softmax(const float *x, const cnv_shape *s, int ax, int flat, double *y)
{
    int64_t outer = 1, n = 1, inner = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (i < ax)
            outer *= s->dims[i];
        else if (i == ax || flat)
            n *= s->dims[i];
        else
            inner *= s->dims[i];
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double sum = 0;
            for (int64_t j = 0; j < n; j++)
                sum += exp((double)x[(o * n + j) * inner + i]);
            for (int64_t j = 0; j < n; j++) {
                int64_t k = (o * n + j) * inner + i;
                y[k] = exp((double)x[k]) / sum;
            }
        }
}

static void test_softmax_naive(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(4, 2, 3, 4, 5);
    float x[120], y[120], yd[120];
    double r[120];
    tu_rng rng;
    tu_rng_init(&rng, 2);
    tu_fill(&rng, x, 120, -4, 4);
    double worst = 0;
    for (int opset = 11; opset <= 13; opset += 2)
        for (int a = -4; a <= (opset < 13 ? 4 : 3); a++) {
            cnv_attr at = tu_attr_int("axis", a);
            run(opset, xs, x, 1, &at, y);
            int ax = a < 0 ? a + 4 : a;
            ref_softmax(x, &xs, ax, opset < 13, r);
            for (int i = 0; i < 120; i++)
                yd[i] = (float)r[i];
            int64_t at_i;
            double d = tu_max_rel_diff(y, yd, 120, &at_i);
            if (d > worst)
                worst = d;
            if (d > 1e-6)
                fail_msg("opset %d axis %d: max diff %g at %lld", opset, a, d, (long long)at_i);
        }
    /* defaults: opset 11 axis 1 (flattened), opset 13 axis -1 */
    run(11, xs, x, 0, NULL, y);
    ref_softmax(x, &xs, 1, 1, r);
    for (int i = 0; i < 120; i++)
        assert_float_equal(y[i], r[i], 1e-6);
    run(13, xs, x, 0, NULL, y);
    ref_softmax(x, &xs, 3, 0, r);
    for (int i = 0; i < 120; i++)
        assert_float_equal(y[i], r[i], 1e-6);
    printf("Softmax vs double reference: max diff %.3g\n", worst);
}

/* h: LogSoftmax's outputs are large next to their differences (log(1/120)
 * is -4.8), so float rounding needs a larger step than Softmax's. */
static void fd_op(const char *op, int64_t opset, int axis, double h, const char *label)
{
    cnv_attr at = tu_attr_int("axis", axis);
    cnv_model *m = sm_model(op, opset, tu_shape(4, 2, 3, 4, 5), 1, &at);
    cnv_session *s = tu_session(m, NULL, 17);
    tu_fd_assert(label, tu_fd_check(s, m, "y", h, 1000, 8), 1e-4);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void fd(int64_t opset, int axis, const char *label)
{
    fd_op("Softmax", opset, axis, 3e-3, label);
}

static void test_softmax_fd(void **state)
{
    (void)state;
    fd(13, 1, "Softmax opset 13 axis 1 of 2x3x4x5");
    fd(13, -1, "Softmax opset 13 axis -1 of 2x3x4x5");
    fd(11, 2, "Softmax opset 11 axis 2 of 2x3x4x5 (flattened)");
}

static void test_softmax_errors(void **state)
{
    (void)state;
    int64_t opsets[] = {13, 13, 11, 13, 13, 11, 11};
    int64_t axes[] = {4, -5, 5, 4, -5, 5, -5};
    for (int i = 0; i < 7; i++) {
        cnv_attr at = tu_attr_int("axis", axes[i]);
        cnv_model *m = sm_model(i < 3 ? "Softmax" : "LogSoftmax", opsets[i], tu_shape(4, 2, 3, 4, 5), 1, &at);
        cnv_session *s = NULL;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        cnv_shape xs = tu_shape(4, 2, 3, 4, 5);
        cnv_status st = cnv_session_plan_shapes(s, 1, &xs);
        printf("plan error: %s\n", cnv_session_errmsg(s));
        assert_int_equal(st, CNV_ERR_SHAPE);
        assert_non_null(strstr(cnv_session_errmsg(s), "'sm'"));
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

static void test_logsoftmax_hand(void **state)
{
    (void)state;
    /* log softmax([1,2,3]) = [1,2,3] - 3.4076059644443806; a shift by 1000
     * must not cost the small differences */
    static const double lse = 3.4076059644443806;
    float x[] = {1, 2, 3, 1001, 1002, 1003}, y[6];
    run_op("LogSoftmax", 13, tu_shape(2, 2, 3), x, 0, NULL, y);
    for (int i = 0; i < 6; i++)
        assert_float_equal(y[i], (double)(i % 3 + 1) - lse, 1e-6);
    /* opset 11, default axis 1 on 1x2x3: one log-softmax over all six,
     * even where the probability underflows */
    run_op("LogSoftmax", 11, tu_shape(3, 1, 2, 3), x, 0, NULL, y);
    assert_float_equal(y[3], 1.0 - lse, 1e-6);
    assert_float_equal(y[0], 1.0 - 1003.0 - log(1.0 + exp(-1.0) + exp(-2.0)), 1e-3);
    /* -inf entries stay -inf */
    float w[] = {0, -INFINITY, 0, -INFINITY}, v[4];
    run_op("LogSoftmax", 13, tu_shape(1, 4), w, 0, NULL, v);
    assert_float_equal(v[0], -log(2.0), 1e-7);
    assert_true(isinf(v[1]) && v[1] < 0);
}

/* x - log(sum exp(x)) over the block, in double (see ref_softmax). */
static void ref_logsoftmax(const float *x, const cnv_shape *s, int ax, int flat, double *y)
{
    int64_t outer = 1, n = 1, inner = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (i < ax)
            outer *= s->dims[i];
        else if (i == ax || flat)
            n *= s->dims[i];
        else
            inner *= s->dims[i];
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double sum = 0;
            for (int64_t j = 0; j < n; j++)
                sum += exp((double)x[(o * n + j) * inner + i]);
            for (int64_t j = 0; j < n; j++) {
                int64_t k = (o * n + j) * inner + i;
                y[k] = (double)x[k] - log(sum);
            }
        }
}

static void test_logsoftmax_naive(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(4, 2, 3, 4, 5);
    float x[120], y[120], yd[120];
    double r[120];
    tu_rng rng;
    tu_rng_init(&rng, 3);
    tu_fill(&rng, x, 120, -4, 4);
    double worst = 0;
    for (int opset = 11; opset <= 13; opset += 2)
        for (int a = -4; a <= (opset < 13 ? 4 : 3); a++) {
            cnv_attr at = tu_attr_int("axis", a);
            run_op("LogSoftmax", opset, xs, x, 1, &at, y);
            ref_logsoftmax(x, &xs, a < 0 ? a + 4 : a, opset < 13, r);
            for (int i = 0; i < 120; i++)
                yd[i] = (float)r[i];
            int64_t at_i;
            double d = tu_max_rel_diff(y, yd, 120, &at_i);
            if (d > worst)
                worst = d;
            if (d > 1e-6)
                fail_msg("LogSoftmax opset %d axis %d: max diff %g at %lld", opset, a, d, (long long)at_i);
        }
    /* defaults: opset 11 axis 1 (flattened), opset 13 axis -1 */
    run_op("LogSoftmax", 11, xs, x, 0, NULL, y);
    ref_logsoftmax(x, &xs, 1, 1, r);
    for (int i = 0; i < 120; i++)
        assert_float_equal(y[i], r[i], 1e-5);
    run_op("LogSoftmax", 13, xs, x, 0, NULL, y);
    ref_logsoftmax(x, &xs, 3, 0, r);
    for (int i = 0; i < 120; i++)
        assert_float_equal(y[i], r[i], 1e-5);
    printf("LogSoftmax vs double reference: max diff %.3g\n", worst);
}

static void test_logsoftmax_fd(void **state)
{
    (void)state;
    fd_op("LogSoftmax", 13, 0, 1e-2, "LogSoftmax opset 13 axis 0 of 2x3x4x5");
    fd_op("LogSoftmax", 13, 2, 1e-2, "LogSoftmax opset 13 axis 2 of 2x3x4x5");
    fd_op("LogSoftmax", 13, -1, 1e-2, "LogSoftmax opset 13 axis -1 of 2x3x4x5");
    fd_op("LogSoftmax", 11, 2, 1e-2, "LogSoftmax opset 11 axis 2 of 2x3x4x5 (flattened)");
}

/* A model ending in either op names the op's input as its raw scores. */
static void test_probability_role(void **state)
{
    (void)state;
    static const char *const ops[] = {"Softmax", "LogSoftmax"};
    for (int i = 0; i < 2; i++) {
        cnv_model *m = sm_model(ops[i], 13, tu_shape(2, 1, 10), 0, NULL);
        assert_int_equal(cnv_model_score_tensor(m), cnv_model_tensor_index(m, "x"));
        cnv_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_hand),
        cmocka_unit_test(test_softmax_naive),
        cmocka_unit_test(test_softmax_fd),
        cmocka_unit_test(test_softmax_errors),
        cmocka_unit_test(test_logsoftmax_hand),
        cmocka_unit_test(test_logsoftmax_naive),
        cmocka_unit_test(test_logsoftmax_fd),
        cmocka_unit_test(test_probability_role),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
