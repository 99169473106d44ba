/* Concat: hand cases, an index-mapping reference over ranks 1..8 and every
 * axis (negative too), finite differences (inputs and a constant), errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A Concat node "cat" over inputs x0..x{n-1} (graph inputs, or float
 * constants where is_const[k]); returns the add_node status in *st. */
static cnv_model *cat_model(int64_t opset, int n, const cnv_shape *shapes, const int *is_const,
                            const float *const *data, int n_attrs, const cnv_attr *attrs,
                            cnv_status *st)
{
    static char names[8][4];
    const char *in[8];
    cnv_model *m = NULL;
    assert_true(n <= 8);
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, opset), CNV_OK);
    for (int k = 0; k < n; k++) {
        snprintf(names[k], sizeof names[k], "x%d", k);
        in[k] = names[k];
        if (is_const && is_const[k])
            assert_int_equal(cnv_model_add_const(m, in[k], CNV_FLOAT32, &shapes[k], data[k]),
                             CNV_OK);
        else
            assert_int_equal(cnv_model_add_input(m, in[k], &shapes[k]), CNV_OK);
    }
    const char *out = "y";
    *st = cnv_model_add_node(m, "Concat", "cat", n, in, 1, &out, n_attrs, attrs);
    if (*st == CNV_OK)
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

static cnv_session *session(cnv_model *m, const float *const *data, int param_grads)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, param_grads), CNV_OK);
    int ni = cnv_model_input_count(m);
    cnv_shape shapes[8];
    for (int i = 0; i < ni; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &shapes[i]), CNV_OK);
    if (cnv_session_plan_shapes(s, ni, shapes) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    for (int i = 0; i < ni; i++) {
        float *d;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, tu_input_name(m, i)), &d, NULL), CNV_OK);
        memcpy(d, data[i], (size_t)cnv_shape_count(&shapes[i]) * sizeof(float));
    }
    return s;
}

static void test_concat_hand(void **state)
{
    (void)state;
    cnv_status st;
    /* [1,2] ++ [3,4,5] */
    float a[] = {1, 2}, b[] = {3, 4, 5};
    cnv_shape sh[] = {tu_shape(1, 2), tu_shape(1, 3)};
    cnv_attr ax0 = tu_attr_int("axis", 0);
    cnv_model *m = cat_model(13, 2, sh, NULL, NULL, 1, &ax0, &st);
    cnv_session *s = session(m, (const float *const[]){a, b}, 0);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_true(ys.ndim == 1 && ys.dims[0] == 5);
    for (int i = 0; i < 5; i++)
        assert_true(y[i] == (float)(i + 1));
    cnv_session_free(s);
    cnv_model_free(m);

    /* [[1,2],[3,4]] ++ [[5],[6]] along axis -1 -> [[1,2,5],[3,4,6]] */
    float c[] = {1, 2, 3, 4}, d[] = {5, 6};
    cnv_shape sh2[] = {tu_shape(2, 2, 2), tu_shape(2, 2, 1)};
    cnv_attr axm1 = tu_attr_int("axis", -1);
    m = cat_model(13, 2, sh2, NULL, NULL, 1, &axm1, &st);
    s = session(m, (const float *const[]){c, d}, 0);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    float want[] = {1, 2, 5, 3, 4, 6};
    assert_true(ys.ndim == 2 && ys.dims[0] == 2 && ys.dims[1] == 3);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] == want[i]);
    cnv_session_free(s);
    cnv_model_free(m);

    /* opset 1: axis defaults to 1 */
    m = cat_model(1, 2, sh2, NULL, NULL, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    s = session(m, (const float *const[]){c, d}, 0);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] == want[i]);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Every output element, by its multi-index: which input and where. */
static void check_against_index_map(int r, const int64_t *base, int ax, int n, const int *lens,
                                    uint64_t seed)
{
    cnv_shape sh[4];
    float *data[4];
    tu_rng rng;
    tu_rng_init(&rng, seed);
    for (int k = 0; k < n; k++) {
        sh[k].ndim = r;
        for (int i = 0; i < r; i++)
            sh[k].dims[i] = i == ax ? lens[k] : base[i];
        int64_t cnt = cnv_shape_count(&sh[k]);
        data[k] = malloc((size_t)cnt * sizeof(float));
        assert_non_null(data[k]);
        tu_fill(&rng, data[k], cnt, -1, 1);
    }
    /* alternate between the positive and the negative axis */
    cnv_attr a = tu_attr_int("axis", seed % 2 ? ax - r : ax);
    cnv_status st;
    cnv_model *m = cat_model(13, n, sh, NULL, NULL, 1, &a, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = session(m, (const float *const *)data, 0);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    int total = 0;
    for (int k = 0; k < n; k++)
        total += lens[k];
    assert_int_equal(ys.ndim, r);
    assert_int_equal(ys.dims[ax], total);
    int64_t cnt = cnv_shape_count(&ys), idx[CNV_MAX_DIMS];
    for (int64_t o = 0; o < cnt; o++) {
        int64_t t = o;
        for (int i = r - 1; i >= 0; i--) {
            idx[i] = t % ys.dims[i];
            t /= ys.dims[i];
        }
        int k = 0;
        int64_t pos = idx[ax];
        while (pos >= lens[k])
            pos -= lens[k++];
        int64_t off = 0;
        for (int i = 0; i < r; i++)
            off = off * sh[k].dims[i] + (i == ax ? pos : idx[i]);
        if (y[o] != data[k][off])
            fail_msg("rank %d axis %d: y[%lld] = %g, input %d[%lld] = %g", r, ax, (long long)o,
                     (double)y[o], k, (long long)off, (double)data[k][off]);
    }
    cnv_session_free(s);
    cnv_model_free(m);
    for (int k = 0; k < n; k++)
        free(data[k]);
}

static void test_concat_naive(void **state)
{
    (void)state;
    static const int64_t base[8] = {2, 3, 2, 3, 1, 2, 1, 2};
    static const int lens[3] = {1, 4, 2};
    int cases = 0;
    for (int r = 1; r <= 8; r++)
        for (int ax = 0; ax < r; ax++) {
            check_against_index_map(r, base, ax, 3, lens, (uint64_t)(r * 10 + ax));
            cases++;
        }
    /* a single input */
    static const int one[1] = {3};
    check_against_index_map(4, base, 2, 1, one, 5);
    printf("Concat vs index map: %d rank/axis cases exact\n", cases + 1);
}

static void test_concat_fd(void **state)
{
    (void)state;
    /* x0 and x2 are inputs, x1 a constant: param grads on checks all three */
    cnv_shape sh[] = {tu_shape(4, 2, 3, 7, 5), tu_shape(4, 2, 1, 7, 5), tu_shape(4, 2, 2, 7, 5)};
    int is_const[] = {0, 1, 0};
    float x0[210], x1[70], x2[140];
    tu_rng rng;
    tu_rng_init(&rng, 3);
    tu_fill(&rng, x0, 210, -1, 1);
    tu_fill(&rng, x1, 70, -1, 1);
    tu_fill(&rng, x2, 140, -1, 1);
    cnv_attr a = tu_attr_int("axis", 1);
    cnv_status st;
    cnv_model *m = cat_model(13, 3, sh, is_const, (const float *const[]){x0, x1, x2}, 1, &a, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = session(m, (const float *const[]){x0, x2}, 1);
    tu_fd_assert("Concat axis 1 (2 inputs + 1 const)", tu_fd_check(s, m, "y", 1e-2, 1000, 7), 1e-4);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_concat_errors(void **state)
{
    (void)state;
    cnv_status st;
    cnv_shape sh[] = {tu_shape(3, 2, 3, 4), tu_shape(3, 2, 5, 4)};
    /* axis is required from opset 4 */
    cnv_model *m = cat_model(13, 2, sh, NULL, NULL, 0, NULL, &st);
    printf("parse error: %s\n", cnv_model_errmsg(m));
    assert_int_equal(st, CNV_ERR_FORMAT);
    assert_non_null(strstr(cnv_model_errmsg(m), "cat"));
    cnv_model_free(m);

    struct {
        cnv_shape a, b;
        int64_t axis;
    } bad[] = {
        {tu_shape(3, 2, 3, 4), tu_shape(3, 2, 5, 4), 2},  /* dim 1 differs, axis 2 */
        {tu_shape(3, 2, 3, 4), tu_shape(2, 2, 3), 1},     /* ranks differ */
        {tu_shape(3, 2, 3, 4), tu_shape(3, 2, 3, 4), 3},  /* axis out of range */
        {tu_shape(3, 2, 3, 4), tu_shape(3, 2, 3, 4), -4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cnv_shape s2[] = {bad[i].a, bad[i].b};
        cnv_attr a = tu_attr_int("axis", bad[i].axis);
        m = cat_model(13, 2, s2, NULL, NULL, 1, &a, &st);
        assert_int_equal(st, CNV_OK);
        cnv_session *s = NULL;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        st = cnv_session_plan_shapes(s, 2, s2);
        printf("plan error: %s\n", cnv_session_errmsg(s));
        assert_int_equal(st, CNV_ERR_SHAPE);
        assert_non_null(strstr(cnv_session_errmsg(s), "'cat'"));
        if (i < 2) /* names the shapes */
            assert_non_null(strstr(cnv_session_errmsg(s), "2x3x4"));
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concat_hand),
        cmocka_unit_test(test_concat_naive),
        cmocka_unit_test(test_concat_fd),
        cmocka_unit_test(test_concat_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
