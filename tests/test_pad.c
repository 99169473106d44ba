/* Pad (constant mode): hand cases for each opset's form (paddings/pads
 * attribute, pads input, constant_value), cropping with negative pads, an
 * index-mapping reference over ranks 1..5, finite differences (including
 * the constant_value input), errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Node "pad" on graph input x. From opset 11 the pads are an int64
 * constant (pads_as_input: a float graph input instead, which is not
 * supported) and cv, when given, a float constant_value constant. */
static cnv_model *pad_model(int64_t opset, cnv_shape xs, int npads, const int64_t *pads,
                            const float *cv, int pads_as_input, int n_attrs,
                            const cnv_attr *attrs, cnv_status *st)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, opset), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    const char *in[] = {"x", "pads", "cv"}, *out = "y";
    int n_in = 1;
    if (opset >= 11 && pads) {
        cnv_shape ps = tu_shape(1, npads);
        if (pads_as_input)
            assert_int_equal(cnv_model_add_input(m, "pads", &ps), CNV_OK);
        else
            assert_int_equal(cnv_model_add_const(m, "pads", CNV_INT64, &ps, pads), CNV_OK);
        n_in = 2;
        if (cv) {
            cnv_shape scalar = tu_shape(0);
            assert_int_equal(cnv_model_add_const(m, "cv", CNV_FLOAT32, &scalar, cv), CNV_OK);
            n_in = 3;
        }
    }
    *st = cnv_model_add_node(m, "Pad", "pad", n_in, in, 1, &out, n_attrs, attrs);
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

/* Runs the model on x and checks y against want (shape r x c). */
static void expect_2d(cnv_model *m, const float *x, int r, int c, const float *want)
{
    cnv_session *s = session(m, x, 0);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_int_equal(ys.ndim, 2);
    assert_int_equal(ys.dims[0], r);
    assert_int_equal(ys.dims[1], c);
    for (int i = 0; i < r * c; i++)
        if (y[i] != want[i])
            fail_msg("y[%d] = %g, want %g", i, (double)y[i], (double)want[i]);
    cnv_session_free(s);
}

static void test_pad_hand(void **state)
{
    (void)state;
    /* [[1,2,3],[4,5,6]], pads begin (0,1) end (1,0), value 9 */
    float x[] = {1, 2, 3, 4, 5, 6};
    float want[] = {9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9};
    int64_t pads[] = {0, 1, 1, 0};
    cnv_status st;
    cnv_shape xs = tu_shape(2, 2, 3);

    cnv_attr a2[] = {tu_attr_ints("pads", 4, pads), tu_attr_float("value", 9)};
    cnv_model *m = pad_model(2, xs, 0, NULL, NULL, 0, 2, a2, &st);
    assert_int_equal(st, CNV_OK);
    expect_2d(m, x, 3, 4, want);
    cnv_model_free(m);

    cnv_attr a1[] = {tu_attr_ints("paddings", 4, pads), tu_attr_float("value", 9),
                     tu_attr_string("mode", "constant")};
    m = pad_model(1, xs, 0, NULL, NULL, 0, 3, a1, &st);
    assert_int_equal(st, CNV_OK);
    expect_2d(m, x, 3, 4, want);
    cnv_model_free(m);

    float nine = 9;
    m = pad_model(13, xs, 4, pads, &nine, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_2d(m, x, 3, 4, want);
    cnv_model_free(m);

    /* opset 11 without constant_value pads with 0 */
    float want0[] = {0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0};
    m = pad_model(11, xs, 4, pads, NULL, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_2d(m, x, 3, 4, want0);
    cnv_model_free(m);

    /* cropping: 3x4 of 0..11, pads begin (-1, 1) end (0, -2):
     * rows 1..2, one pad column, then input columns 0..1 */
    float x34[12];
    for (int i = 0; i < 12; i++)
        x34[i] = (float)i;
    int64_t crop[] = {-1, 1, 0, -2};
    float wantc[] = {7, 4, 5, 7, 8, 9};
    float seven = 7;
    m = pad_model(13, tu_shape(2, 3, 4), 4, crop, &seven, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_2d(m, x34, 2, 3, wantc);
    cnv_model_free(m);
}

/* y at multi-index o is x[o - begin] when inside x, else v. */
static void check_against_index_map(int r, uint64_t seed)
{
    tu_rng rng;
    tu_rng_init(&rng, seed);
    cnv_shape xs;
    xs.ndim = r;
    int64_t pads[2 * CNV_MAX_DIMS], od[CNV_MAX_DIMS];
    for (int d = 0; d < r; d++) {
        xs.dims[d] = 3 + (int)(tu_uniform(&rng, 0, 3)); /* 3..5: never cropped away */
        pads[d] = (int)tu_uniform(&rng, 0, 4) - 1;      /* -1..2 */
        pads[d + r] = (int)tu_uniform(&rng, 0, 4) - 1;
        od[d] = xs.dims[d] + pads[d] + pads[d + r];
    }
    int64_t n = cnv_shape_count(&xs);
    float *x = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    tu_fill(&rng, x, n, -1, 1);
    float v = -3.5f;
    cnv_status st;
    cnv_model *m = pad_model(13, xs, 2 * r, pads, &v, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = session(m, x, 0);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_int_equal(ys.ndim, r);
    for (int d = 0; d < r; d++)
        assert_int_equal(ys.dims[d], od[d]);
    int64_t cnt = cnv_shape_count(&ys);
    for (int64_t o = 0; o < cnt; o++) {
        int64_t t = o, off = 0, idx[CNV_MAX_DIMS];
        for (int d = r - 1; d >= 0; d--) {
            idx[d] = t % od[d];
            t /= od[d];
        }
        int inside = 1;
        for (int d = 0; d < r; d++) {
            int64_t i = idx[d] - pads[d];
            inside = inside && i >= 0 && i < xs.dims[d];
            off = off * xs.dims[d] + i;
        }
        float want = inside ? x[off] : v;
        if (y[o] != want)
            fail_msg("rank %d: y[%lld] = %g, want %g", r, (long long)o, (double)y[o], (double)want);
    }
    cnv_session_free(s);
    cnv_model_free(m);
    free(x);
}

static void test_pad_naive(void **state)
{
    (void)state;
    int cases = 0;
    for (int r = 1; r <= 5; r++)
        for (uint64_t k = 0; k < 4; k++, cases++)
            check_against_index_map(r, 100 * (uint64_t)r + k);
    printf("Pad vs index map: %d random cases (ranks 1..5, pads -1..2) exact\n", cases);
}

static void test_pad_fd(void **state)
{
    (void)state;
    float x[210], v = 0.25f;
    tu_rng rng;
    tu_rng_init(&rng, 9);
    tu_fill(&rng, x, 210, -1, 1);
    int64_t pads[] = {0, 1, 2, -1, 1, 0, -1, 2};
    cnv_status st;
    cnv_model *m = pad_model(13, tu_shape(4, 2, 3, 7, 5), 8, pads, &v, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = session(m, x, 0);
    tu_fd_assert("Pad dX 2x3x7x5 pads 0,1,2,-1 / 1,0,-1,2", tu_fd_check(s, m, "y", 1e-2, 1000, 10),
                 1e-4);
    cnv_session_free(s);
    s = session(m, x, 1);
    tu_fd_assert("Pad dX,dconstant_value (param grads)", tu_fd_check(s, m, "y", 1e-2, 1000, 11),
                 1e-4);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void expect_plan_error(cnv_model *m, cnv_status want)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    int n = cnv_model_input_count(m);
    cnv_shape sh[2];
    for (int i = 0; i < n; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &sh[i]), CNV_OK);
    cnv_status st = cnv_session_plan_shapes(s, n, sh);
    printf("plan error: %s\n", cnv_session_errmsg(s));
    assert_int_equal(st, want);
    assert_non_null(strstr(cnv_session_errmsg(s), "'pad'"));
    cnv_session_free(s);
}

static void test_pad_errors(void **state)
{
    (void)state;
    cnv_status st;
    cnv_model *m;
    cnv_shape xs = tu_shape(2, 2, 3);
    int64_t pads[] = {0, 1, 1, 0};

    cnv_attr refl = tu_attr_string("mode", "reflect");
    m = pad_model(13, xs, 4, pads, NULL, 0, 1, &refl, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED);
    cnv_model_free(m);
    cnv_attr edge[] = {tu_attr_ints("pads", 4, pads), tu_attr_string("mode", "edge")};
    m = pad_model(2, xs, 0, NULL, NULL, 0, 2, edge, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED);
    cnv_model_free(m);
    /* pads that are not a constant */
    m = pad_model(13, xs, 4, pads, NULL, 1, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED);
    cnv_model_free(m);
    /* pads count does not match the rank */
    int64_t six[] = {0, 0, 0, 0, 0, 0};
    m = pad_model(13, xs, 6, six, NULL, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE);
    cnv_model_free(m);
    /* cropping a dim away */
    int64_t crop[] = {0, -2, 0, -1};
    m = pad_model(13, xs, 4, crop, NULL, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE);
    cnv_model_free(m);
    /* opset 2 without pads */
    m = pad_model(2, xs, 0, NULL, NULL, 0, 0, NULL, &st);
    printf("parse error: %s\n", cnv_model_errmsg(m));
    assert_int_equal(st, CNV_ERR_FORMAT);
    assert_non_null(strstr(cnv_model_errmsg(m), "'pad'"));
    cnv_model_free(m);
    /* opset 11 without the pads input */
    m = pad_model(11, xs, 0, NULL, NULL, 0, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_FORMAT);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pad_hand),
        cmocka_unit_test(test_pad_naive),
        cmocka_unit_test(test_pad_fd),
        cmocka_unit_test(test_pad_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
