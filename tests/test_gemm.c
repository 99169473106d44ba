/* Gemm: forward against a naive triple loop for every transA/transB combo,
 * alpha/beta and C broadcast form; gradients of A, B and C against central
 * finite differences; shape errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { GM = 3, GK = 4, GN = 5 };

/* The forms C may take: absent, and each shape that broadcasts to (M,N). */
typedef struct c_form {
    const char *label;
    int present, ndim;
    int64_t d0, d1;
    int bm, bn; /* C varies along rows / columns */
} c_form;

static const c_form g_forms[] = {
    { "no C", 0, 0, 0, 0, 0, 0 },
    { "C scalar", 1, 0, 0, 0, 0, 0 },
    { "C (1)", 1, 1, 1, 0, 0, 0 },
    { "C (N)", 1, 1, GN, 0, 0, 1 },
    { "C (1,N)", 1, 2, 1, GN, 0, 1 },
    { "C (M,1)", 1, 2, GM, 1, 1, 0 },
    { "C (1,1)", 1, 2, 1, 1, 0, 0 },
    { "C (M,N)", 1, 2, GM, GN, 1, 1 },
};
#define N_FORMS ((int)(sizeof g_forms / sizeof g_forms[0]))

static cnv_shape form_shape(const c_form *f)
{
    if (f->ndim == 0)
        return tu_shape(0);
    if (f->ndim == 1)
        return tu_shape(1, (int)f->d0);
    return tu_shape(2, (int)f->d0, (int)f->d1);
}

/* The reference: y = alpha * op(a) * op(b) + beta * c, summed in double. */
static void naive_gemm(int ta, int tb, float alpha, float beta, const float *a, const float *b,
                       const c_form *f, const float *c, float *y)
{
    for (int i = 0; i < GM; i++)
        for (int j = 0; j < GN; j++) {
            double s = 0.0;
            for (int k = 0; k < GK; k++) {
                float av = ta ? a[k * GM + i] : a[i * GK + k];
                float bv = tb ? b[j * GK + k] : b[k * GN + j];
                s += (double)av * bv;
            }
            double cv = 0.0;
            if (f->present) {
                int ci = f->bm ? i : 0, cj = f->bn ? j : 0;
                cv = c[ci * (f->bn ? GN : 1) + cj];
            }
            y[i * GN + j] = (float)(alpha * s + beta * cv);
        }
}

typedef struct gemm_setup {
    float a[GM * GK], b[GK * GN], c[GM * GN];
    cnv_attr attrs[4];
    int n_attrs;
} gemm_setup;

/* A one-node Gemm model; `input` ("a", "b" or "c") is the graph input, the
 * others constants. alpha/beta are left to their defaults when 1. */
static cnv_model *gemm_model(gemm_setup *g, int ta, int tb, float alpha, float beta,
                             const c_form *f, const char *input, uint64_t seed)
{
    tu_rng r;
    tu_rng_init(&r, seed);
    tu_fill(&r, g->a, GM * GK, -1.0f, 1.0f);
    tu_fill(&r, g->b, GK * GN, -1.0f, 1.0f);
    tu_fill(&r, g->c, GM * GN, -1.0f, 1.0f);
    g->n_attrs = 0;
    if (ta)
        g->attrs[g->n_attrs++] = tu_attr_int("transA", 1);
    if (tb)
        g->attrs[g->n_attrs++] = tu_attr_int("transB", 1);
    if (alpha != 1.0f)
        g->attrs[g->n_attrs++] = tu_attr_float("alpha", alpha);
    if (beta != 1.0f)
        g->attrs[g->n_attrs++] = tu_attr_float("beta", beta);
    tu_tensor ins[3] = {
        { "a", ta ? tu_shape(2, GK, GM) : tu_shape(2, GM, GK), g->a, strcmp(input, "a") != 0 },
        { "b", tb ? tu_shape(2, GN, GK) : tu_shape(2, GK, GN), g->b, strcmp(input, "b") != 0 },
        { "c", form_shape(f), g->c, strcmp(input, "c") != 0 },
    };
    return tu_one_node("Gemm", f->present ? 3 : 2, ins, g->n_attrs, g->attrs);
}

static void test_forward(void **state)
{
    (void)state;
    static const float ab[3][2] = { { 1.0f, 1.0f }, { 0.7f, -1.3f }, { -2.0f, 0.0f } };
    double worst = 0.0;
    int runs = 0;
    for (int t = 0; t < 4; t++)
        for (int fi = 0; fi < N_FORMS; fi++)
            for (int k = 0; k < 3; k++) {
                int ta = t & 1, tb = t >> 1;
                const c_form *f = &g_forms[fi];
                gemm_setup g;
                cnv_model *m = gemm_model(&g, ta, tb, ab[k][0], ab[k][1], f, "a",
                                          (uint64_t)(t * 100 + fi * 10 + k));
                const float *in[1] = { g.a };
                cnv_session *s = tu_session(m, in, 1);
                assert_int_equal(cnv_session_forward(s), CNV_OK);
                float *y;
                cnv_shape ys;
                assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
                assert_int_equal(ys.ndim, 2);
                assert_int_equal(ys.dims[0], GM);
                assert_int_equal(ys.dims[1], GN);
                float ref[GM * GN];
                naive_gemm(ta, tb, ab[k][0], ab[k][1], g.a, g.b, f, g.c, ref);
                int64_t at;
                double e = tu_max_rel_diff(y, ref, GM * GN, &at);
                if (e > worst)
                    worst = e;
                if (e > 1e-5)
                    fail_msg("transA %d transB %d %s alpha %g beta %g: max rel diff %g at %lld",
                             ta, tb, f->label, ab[k][0], ab[k][1], e, (long long)at);
                runs++;
                cnv_session_free(s);
                cnv_model_free(m);
            }
    printf("gemm forward vs naive: worst max rel diff %.3g over %d combos "
           "(4 trans x %d C forms x 3 alpha/beta)\n", worst, runs, N_FORMS);
}

/* A hand-worked case: A = [[1,2],[3,4]], B = [[5,6],[7,8]], C = [1,-1],
 * alpha 2, beta 3: A*B = [[19,22],[43,50]]. */
static void test_forward_hand(void **state)
{
    (void)state;
    float a[4] = { 1, 2, 3, 4 }, b[4] = { 5, 6, 7, 8 }, c[2] = { 1, -1 };
    tu_tensor ins[3] = {
        { "a", tu_shape(2, 2, 2), NULL, 0 },
        { "b", tu_shape(2, 2, 2), b, 1 },
        { "c", tu_shape(1, 2), c, 1 },
    };
    cnv_attr at[2] = { tu_attr_float("alpha", 2.0f), tu_attr_float("beta", 3.0f) };
    cnv_model *m = tu_one_node("Gemm", 3, ins, 2, at);
    const float *in[1] = { a };
    cnv_session *s = tu_session(m, in, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
    const float e[4] = { 41, 41, 89, 97 };
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], e[i], 1e-5);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Gemm is linear in each of A, B, C: central differences are exact up to
 * float rounding. h = 1e-2, relative tolerance 1e-2. */
#define FD_H 1e-2
#define FD_TOL 1e-2

static void test_backward_fd(void **state)
{
    (void)state;
    static const char *which[3] = { "a", "b", "c" };
    double worst[3] = { 0, 0, 0 };
    for (int t = 0; t < 4; t++)
        for (int fi = 0; fi < N_FORMS; fi++)
            for (int w = 0; w < 3; w++) {
                const c_form *f = &g_forms[fi];
                if (w == 2 && !f->present)
                    continue;
                /* A and B need only the two C extremes; C needs every form */
                if (w < 2 && fi != 0 && fi != N_FORMS - 1)
                    continue;
                int ta = t & 1, tb = t >> 1;
                gemm_setup g;
                cnv_model *m = gemm_model(&g, ta, tb, 0.7f, -1.3f, f, which[w],
                                          (uint64_t)(1000 + t * 100 + fi * 10 + w));
                cnv_session *s = tu_session(m, NULL, 3 + (uint64_t)fi);
                assert_int_equal(cnv_session_forward(s), CNV_OK);
                tu_fd_result r = tu_fd_check(s, m, "y", FD_H, 64, 99 + (uint64_t)t);
                char label[96];
                snprintf(label, sizeof label, "Gemm d%c transA %d transB %d %s", 'A' + w, ta,
                         tb, f->label);
                tu_fd_assert(label, r, FD_TOL);
                if (r.max_err > worst[w])
                    worst[w] = r.max_err;
                cnv_session_free(s);
                cnv_model_free(m);
            }
    printf("FD Gemm worst: dA %.3g, dB %.3g, dC %.3g\n", worst[0], worst[1], worst[2]);
}

/* All three gradients at once, A an input, B and C parameters. */
static void test_backward_fd_param_grads(void **state)
{
    (void)state;
    gemm_setup g;
    cnv_model *m = gemm_model(&g, 1, 1, 0.7f, -1.3f, &g_forms[5], "a", 42);
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, 1), CNV_OK);
    cnv_shape as = tu_shape(2, GK, GM);
    assert_int_equal(cnv_session_plan_shapes(s, 1, &as), CNV_OK);
    float *a;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "a"), &a, NULL), CNV_OK);
    tu_rng r;
    tu_rng_init(&r, 8);
    tu_fill(&r, a, GM * GK, -1.0f, 1.0f);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    tu_fd_assert("Gemm dA,dB,dC (param grads) transA 1 transB 1 C (M,1)",
                 tu_fd_check(s, m, "y", FD_H, 64, 5), FD_TOL);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Plans A (as) x B (bs) [+ C (cs)] in a node named "bad_gemm". */
static cnv_status try_gemm(cnv_shape as, cnv_shape bs, const cnv_shape *cs, int ta, int tb,
                           char *msg, size_t len)
{
    static float zeros[256];
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "a", &as), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "b", CNV_FLOAT32, &bs, zeros), CNV_OK);
    if (cs)
        assert_int_equal(cnv_model_add_const(m, "c", CNV_FLOAT32, cs, zeros), CNV_OK);
    cnv_attr at[2] = { tu_attr_int("transA", ta), tu_attr_int("transB", tb) };
    const char *in[3] = { "a", "b", "c" }, *out[1] = { "y" };
    cnv_status st = cnv_model_add_node(m, "Gemm", "bad_gemm", cs ? 3 : 2, in, 1, out, 2, at);
    snprintf(msg, len, "%s", cnv_model_errmsg(m));
    if (st == CNV_OK) {
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        st = cnv_session_plan_shapes(s, 1, &as);
        snprintf(msg, len, "%s", cnv_session_errmsg(s));
    }
    cnv_session_free(s);
    cnv_model_free(m);
    return st;
}

static void expect_err(const char *what, cnv_status st, cnv_status want, const char *msg,
                       const char *m1, const char *m2)
{
    printf("gemm error %-24s -> %s: %s\n", what, cnv_status_string(st), msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(msg, "bad_gemm"));
    if (m1)
        assert_non_null(strstr(msg, m1));
    if (m2)
        assert_non_null(strstr(msg, m2));
}

static void test_errors(void **state)
{
    (void)state;
    char msg[600];
    cnv_status st;
    st = try_gemm(tu_shape(2, 3, 4), tu_shape(2, 5, 6), NULL, 0, 0, msg, sizeof msg);
    expect_err("K mismatch", st, CNV_ERR_SHAPE, msg, "3x4", "5x6");
    /* transB makes B (6,4) match, transA makes A (3,4) not */
    st = try_gemm(tu_shape(2, 3, 4), tu_shape(2, 6, 4), NULL, 0, 1, msg, sizeof msg);
    assert_int_equal(st, CNV_OK);
    st = try_gemm(tu_shape(2, 3, 4), tu_shape(2, 6, 4), NULL, 1, 1, msg, sizeof msg);
    expect_err("K mismatch with transA", st, CNV_ERR_SHAPE, msg, "3x4", "6x4");
    cnv_shape c = tu_shape(1, 4);
    st = try_gemm(tu_shape(2, 3, 4), tu_shape(2, 4, 5), &c, 0, 0, msg, sizeof msg);
    expect_err("C not broadcastable", st, CNV_ERR_SHAPE, msg, "C 4", NULL);
    c = tu_shape(3, 1, 3, 5);
    st = try_gemm(tu_shape(2, 3, 4), tu_shape(2, 4, 5), &c, 0, 0, msg, sizeof msg);
    expect_err("C 3-D", st, CNV_ERR_SHAPE, msg, "1x3x5", NULL);
    st = try_gemm(tu_shape(3, 1, 3, 4), tu_shape(2, 4, 5), NULL, 0, 0, msg, sizeof msg);
    expect_err("A 3-D", st, CNV_ERR_SHAPE, msg, "1x3x4", NULL);
    st = try_gemm(tu_shape(2, 3, 4), tu_shape(2, 4, 5), NULL, 2, 0, msg, sizeof msg);
    expect_err("transA 2", st, CNV_ERR_FORMAT, msg, "transA", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_hand),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_backward_fd),
        cmocka_unit_test(test_backward_fd_param_grads),
        cmocka_unit_test(test_errors),
    };
    /* The same checks with the work split over 3 threads (uneven splits
     * on these sizes): GEMM blocks per thread. */
    const struct CMUnitTest threaded[] = {
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_backward_fd),
        cmocka_unit_test(test_backward_fd_param_grads),
    };
    int failed = cmocka_run_group_tests_name("one thread", tests, NULL, NULL);
    cnv_set_threads(3);
    failed += cmocka_run_group_tests_name("three threads", threaded, NULL, NULL);
    return failed;
}
