/* Flatten and Reshape: output shapes against hand-worked ones, values and
 * gradients copied exactly, finite differences, and the shape errors. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

/* x of shape 2x3x4 (24 values) -> node "node" -> y. */
static const cnv_shape *x_shape(void)
{
    static cnv_shape s;
    s = tu_shape(3, 2, 3, 4);
    return &s;
}

static void expect_shape(const cnv_shape *got, int ndim, const int64_t *dims)
{
    assert_int_equal(got->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        assert_int_equal(got->dims[d], dims[d]);
}

/* Forward copies the 24 values in order and backward returns the seed
 * itself (y is x in another shape), then central differences agree. */
static void check_copy(cnv_model *m, const char *label, int ndim, const int64_t *dims)
{
    cnv_session *s = tu_session(m, NULL, 17);
    if (cnv_session_forward(s) != CNV_OK)
        fail_msg("%s: %s", label, cnv_session_errmsg(s));
    float *x, *y, *g;
    cnv_shape ysh;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ysh), CNV_OK);
    expect_shape(&ysh, ndim, dims);
    assert_memory_equal(x, y, 24 * sizeof(float));
    float seed[24];
    for (int i = 0; i < 24; i++)
        seed[i] = (float)(i - 11) * 0.25f;
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &g), CNV_OK);
    assert_memory_equal(g, seed, sizeof seed);
    tu_fd_assert(label, tu_fd_check(s, m, "y", 1e-2, 24, 5), 1e-4);
    cnv_session_free(s);
}

static void flatten_axes(void **state)
{
    (void)state;
    struct {
        int64_t axis;
        int64_t dims[2];
    } cases[] = {{0, {1, 24}}, {1, {2, 12}}, {2, {6, 4}}, {3, {24, 1}},
                 {-1, {6, 4}}, {-2, {2, 12}}, {-3, {1, 24}}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tu_tensor in = {"x", *x_shape(), NULL, 0};
        cnv_attr a = tu_attr_int("axis", cases[k].axis);
        cnv_model *m = tu_one_node("Flatten", 1, &in, 1, &a);
        char label[64];
        snprintf(label, sizeof label, "Flatten axis %lld", (long long)cases[k].axis);
        check_copy(m, label, 2, cases[k].dims);
        cnv_model_free(m);
    }
    /* the default axis is 1 */
    tu_tensor in = {"x", *x_shape(), NULL, 0};
    cnv_model *m = tu_one_node("Flatten", 1, &in, 0, NULL);
    const int64_t d1[2] = {2, 12};
    check_copy(m, "Flatten default axis", 2, d1);
    cnv_model_free(m);
}

static void flatten_bad_axis(void **state)
{
    (void)state;
    const int64_t bad[2] = {4, -4};
    for (int k = 0; k < 2; k++) {
        tu_tensor in = {"x", *x_shape(), NULL, 0};
        cnv_attr a = tu_attr_int("axis", bad[k]);
        cnv_model *m = tu_one_node("Flatten", 1, &in, 1, &a);
        cnv_session *s;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        assert_int_equal(cnv_session_plan_shapes(s, 1, x_shape()), CNV_ERR_SHAPE);
        printf("Flatten axis %lld: %s\n", (long long)bad[k], cnv_session_errmsg(s));
        assert_non_null(strstr(cnv_session_errmsg(s), "'node'"));
        assert_non_null(strstr(cnv_session_errmsg(s), "axis"));
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* x (2x3x4) -> Reshape(x, shape) -> y, the target shape an int64
 * constant of n values. */
static cnv_model *reshape_model(const int64_t *shape, int n, int allowzero)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", x_shape()), CNV_OK);
    cnv_shape ssh = tu_shape(1, n);
    if (cnv_model_add_const(m, "shape", CNV_INT64, &ssh, shape) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    const char *in[2] = {"x", "shape"}, *out[1] = {"y"};
    cnv_attr a = tu_attr_int("allowzero", allowzero);
    if (cnv_model_add_node(m, "Reshape", "node", 2, in, 1, out, allowzero >= 0, &a) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

static void reshape_forms(void **state)
{
    (void)state;
    struct {
        const char *label;
        int n;
        int64_t shape[4];
        int allowzero; /* -1: attribute absent */
        int ndim;
        int64_t dims[4];
    } cases[] = {
        {"Reshape [4,6]", 2, {4, 6}, -1, 2, {4, 6}},
        {"Reshape [0,-1] (0 copies)", 2, {0, -1}, -1, 2, {2, 12}},
        {"Reshape [4,0,2] (0 copies dim 1)", 3, {4, 0, 2}, 0, 3, {4, 3, 2}},
        {"Reshape [-1] (infers all)", 1, {-1}, -1, 1, {24}},
        {"Reshape [2,-1,3,1]", 4, {2, -1, 3, 1}, -1, 4, {2, 4, 3, 1}},
        {"Reshape [3,8] allowzero", 2, {3, 8}, 1, 2, {3, 8}},
        {"Reshape [-1,4] allowzero", 2, {-1, 4}, 1, 2, {6, 4}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cnv_model *m = reshape_model(cases[k].shape, cases[k].n, cases[k].allowzero);
        check_copy(m, cases[k].label, cases[k].ndim, cases[k].dims);
        cnv_model_free(m);
    }
}

/* Opset < 5 reads the target from the `shape` attribute instead. */
static void reshape_opset4_attribute(void **state)
{
    (void)state;
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, 4), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", x_shape()), CNV_OK);
    const int64_t shape[2] = {-1, 2};
    cnv_attr a = tu_attr_ints("shape", 2, shape);
    const char *in[1] = {"x"}, *out[1] = {"y"};
    assert_int_equal(cnv_model_add_node(m, "Reshape", "node", 1, in, 1, out, 1, &a), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    const int64_t dims[2] = {12, 2};
    check_copy(m, "Reshape opset 4 [-1,2]", 2, dims);
    cnv_model_free(m);
}

/* Plans a model whose plan must fail with st and a message holding both
 * needles (the node's name and what is wrong). */
static void expect_plan_error(cnv_model *m, cnv_status st, const char *a, const char *b)
{
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape sh[2];
    int n = cnv_model_input_count(m);
    for (int i = 0; i < n; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &sh[i]), CNV_OK);
    cnv_status got = cnv_session_plan_shapes(s, n, sh);
    printf("expected error: %s\n", cnv_session_errmsg(s));
    assert_int_equal(got, st);
    assert_non_null(strstr(cnv_session_errmsg(s), a));
    assert_non_null(strstr(cnv_session_errmsg(s), b));
    /* a failed plan leaves no half-made plan behind */
    assert_null(cnv_session_input(s));
    assert_int_equal(cnv_session_forward(s), CNV_ERR_STATE);
    cnv_session_free(s);
}

static void reshape_errors(void **state)
{
    (void)state;
    const int64_t two_infer[3] = {-1, 2, -1};
    cnv_model *m = reshape_model(two_infer, 3, -1);
    expect_plan_error(m, CNV_ERR_SHAPE, "'node'", "-1");
    cnv_model_free(m);

    const int64_t mismatch[2] = {5, 5};
    m = reshape_model(mismatch, 2, -1);
    expect_plan_error(m, CNV_ERR_SHAPE, "2x3x4", "5x5");
    cnv_model_free(m);

    const int64_t indivisible[2] = {5, -1};
    m = reshape_model(indivisible, 2, -1);
    expect_plan_error(m, CNV_ERR_SHAPE, "'node'", "24");
    cnv_model_free(m);

    const int64_t negative[2] = {-2, 12};
    m = reshape_model(negative, 2, -1);
    expect_plan_error(m, CNV_ERR_SHAPE, "'node'", "-2");
    cnv_model_free(m);

    /* with allowzero a 0 is a real 0: 0 elements cannot hold 24 */
    const int64_t zero[3] = {0, 3, 4};
    m = reshape_model(zero, 3, 1);
    expect_plan_error(m, CNV_ERR_SHAPE, "'node'", "24");
    cnv_model_free(m);
    m = reshape_model(zero, 3, 0);
    const int64_t same[3] = {2, 3, 4};
    check_copy(m, "Reshape [0,3,4] without allowzero", 3, same);
    cnv_model_free(m);

    /* a 0 past the input's rank has nothing to copy */
    const int64_t past[4] = {2, 3, 4, 0};
    m = reshape_model(past, 4, -1);
    expect_plan_error(m, CNV_ERR_SHAPE, "'node'", "rank");
    cnv_model_free(m);
}

/* The target shape must be known when planning: a graph input or a float
 * constant as the shape is refused, naming the node. */
static void reshape_shape_not_constant(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        cnv_model *m;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "x", x_shape()), CNV_OK);
        cnv_shape ssh = tu_shape(1, 2);
        const float fshape[2] = {4, 6};
        if (k == 0)
            assert_int_equal(cnv_model_add_input(m, "shape", &ssh), CNV_OK);
        else
            assert_int_equal(cnv_model_add_const(m, "shape", CNV_FLOAT32, &ssh, fshape), CNV_OK);
        const char *in[2] = {"x", "shape"}, *out[1] = {"y"};
        cnv_status st = cnv_model_add_node(m, "Reshape", "node", 2, in, 1, out, 0, NULL);
        if (st == CNV_OK) {
            assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
            expect_plan_error(m, CNV_ERR_UNSUPPORTED, "'node'", "constant");
        } else {
            /* refusing it when the node is added is as good */
            printf("expected error: %s\n", cnv_model_errmsg(m));
            assert_non_null(strstr(cnv_model_errmsg(m), "'node'"));
        }
        cnv_model_free(m);
    }
    /* and without a shape at all (opset >= 5) the node is refused */
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", x_shape()), CNV_OK);
    const char *in[1] = {"x"}, *out[1] = {"y"};
    assert_int_not_equal(cnv_model_add_node(m, "Reshape", "node", 1, in, 1, out, 0, NULL), CNV_OK);
    printf("expected error: %s\n", cnv_model_errmsg(m));
    assert_non_null(strstr(cnv_model_errmsg(m), "'node'"));
    cnv_model_free(m);
}

/* Flatten then Reshape back in one graph: the gradient flows through both
 * and re-planning to another batch size gives the new shapes. */
static void flatten_reshape_chain(void **state)
{
    (void)state;
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(3, -1, 3, 4);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    const int64_t shape[3] = {0, 4, 3};
    cnv_shape ssh = tu_shape(1, 3);
    assert_int_equal(cnv_model_add_const(m, "shape", CNV_INT64, &ssh, shape), CNV_OK);
    const char *in1[1] = {"x"}, *out1[1] = {"flat"};
    assert_int_equal(cnv_model_add_node(m, "Flatten", "flatten", 1, in1, 1, out1, 0, NULL), CNV_OK);
    const char *in2[2] = {"flat", "shape"}, *out2[1] = {"y"};
    assert_int_equal(cnv_model_add_node(m, "Reshape", "reshape", 2, in2, 1, out2, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    for (int n = 1; n <= 3; n++) {
        cnv_shape sh = tu_shape(3, n, 3, 4);
        assert_int_equal(cnv_session_plan_shapes(s, 1, &sh), CNV_OK);
        float *x, *y;
        cnv_shape ysh;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
        tu_rng r;
        tu_rng_init(&r, (uint64_t)n);
        tu_fill(&r, x, 12 * n, -1.0f, 1.0f);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ysh), CNV_OK);
        const int64_t dims[3] = {n, 4, 3};
        expect_shape(&ysh, 3, dims);
        assert_memory_equal(x, y, (size_t)(12 * n) * sizeof(float));
        tu_fd_assert("Flatten+Reshape", tu_fd_check(s, m, "y", 1e-2, 36, 9), 1e-4);
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flatten_axes),
        cmocka_unit_test(flatten_bad_axis),
        cmocka_unit_test(reshape_forms),
        cmocka_unit_test(reshape_opset4_attribute),
        cmocka_unit_test(reshape_errors),
        cmocka_unit_test(reshape_shape_not_constant),
        cmocka_unit_test(flatten_reshape_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
