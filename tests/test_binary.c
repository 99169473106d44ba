/* The broadcast ops (src/engine/ops/binary.c): forward against a naive
 * multi-index loop written here over random broadcast shapes (the merged
 * rows must not change a value), gradients by central finite differences
 * for each op and broadcast form, and the exact rules at ties and kinks:
 * Max/Min split a tie evenly, PRelu's input takes the slope at 0, Pow's
 * exponent gets nothing where the base is 0. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

/* ONNX's definitions, in double, one element at a time. */
static double ref(const char *op, double a, double b)
{
    if (!strcmp(op, "Add") || !strcmp(op, "Sum"))
        return a + b;
    if (!strcmp(op, "Sub"))
        return a - b;
    if (!strcmp(op, "Mul"))
        return a * b;
    if (!strcmp(op, "Div"))
        return a / b;
    if (!strcmp(op, "Pow"))
        return pow(a, b);
    if (!strcmp(op, "PRelu"))
        return a < 0 ? b * a : a;
    if (!strcmp(op, "Max"))
        return a > b ? a : b;
    if (!strcmp(op, "Min"))
        return a < b ? a : b;
    return (a + b) / 2; /* Mean of two */
}

/* The offset of output index idx (row-major over dims of rank nd) in an
 * operand of shape s, right-aligned, broadcast where its dim is 1. */
static int64_t offset_in(const cnv_shape *s, int nd, const int64_t *dims, int64_t flat)
{
    int64_t idx[CNV_MAX_DIMS];
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = flat % dims[d];
        flat /= dims[d];
    }
    int64_t off = 0;
    for (int d = 0; d < s->ndim; d++) {
        int o = d + nd - s->ndim;
        off = off * s->dims[d] + (s->dims[d] == 1 ? 0 : idx[o]);
    }
    return off;
}

static const char *const g_ops[] = {"Add", "Sub", "Mul", "Div", "Pow", "PRelu", "Sum", "Mean", "Max", "Min"};

/* A random shape pair that broadcasts, a's rank 1..5. */
static void random_pair(tu_rng *r, cnv_shape *a, cnv_shape *b, int prelu)
{
    int nd = 1 + (int)(tu_uniform(r, 0, 1) * 5) % 5;
    int64_t dims[5];
    for (int d = 0; d < nd; d++)
        dims[d] = 1 + (int64_t)(tu_uniform(r, 0, 1) * 4) % 4;
    a->ndim = nd;
    int bnd = prelu ? 1 + (int)(tu_uniform(r, 0, 1) * nd) % nd : 1 + (int)(tu_uniform(r, 0, 1) * 5) % 5;
    if (bnd > nd && prelu)
        bnd = nd;
    b->ndim = bnd;
    for (int d = 0; d < nd; d++)
        a->dims[d] = dims[d];
    for (int d = 0; d < bnd; d++) {
        int o = d + nd - bnd;
        int64_t full = o >= 0 ? dims[o] : 1 + (int64_t)(tu_uniform(r, 0, 1) * 3) % 3;
        b->dims[d] = tu_uniform(r, 0, 1) < 0.4f ? 1 : full;
    }
    /* a broadcast the other way too, unless PRelu (its slope only) */
    for (int d = 0; !prelu && d < nd; d++) {
        int k = d - (nd - bnd);
        if (k >= 0 && b->dims[k] > 1 && tu_uniform(r, 0, 1) < 0.3f)
            a->dims[d] = 1;
    }
}

static void forward_matches_naive(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_init(&r, 11);
    int cases = 0;
    for (size_t k = 0; k < sizeof g_ops / sizeof g_ops[0]; k++)
        for (int t = 0; t < 40; t++) {
            const char *op = g_ops[k];
            cnv_shape as, bs;
            random_pair(&r, &as, &bs, !strcmp(op, "PRelu"));
            tu_tensor in[2] = {{"a", as, NULL, 0}, {"b", bs, NULL, 0}};
            cnv_model *m = tu_one_node(op, 2, in, 0, NULL);
            cnv_session *s = tu_session(m, NULL, 100 + (uint64_t)t);
            float *a, *b, *y;
            cnv_shape ys;
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "a"), &a, NULL), CNV_OK);
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "b"), &b, NULL), CNV_OK);
            if (!strcmp(op, "Pow")) /* positive bases */
                for (int64_t i = 0; i < cnv_shape_count(&as); i++)
                    a[i] = fabsf(a[i]) + 0.1f;
            assert_int_equal(cnv_session_forward(s), CNV_OK);
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
            for (int64_t i = 0; i < cnv_shape_count(&ys); i++) {
                double want = ref(op, a[offset_in(&as, ys.ndim, ys.dims, i)], b[offset_in(&bs, ys.ndim, ys.dims, i)]);
                if (fabs(y[i] - want) > 1e-6 * fmax(1.0, fabs(want)))
                    fail_msg("%s, output %lld: %g, want %g", op, (long long)i, y[i], want);
            }
            cases++;
            cnv_session_free(s);
            cnv_model_free(m);
        }
    printf("%d random broadcast pairs: every output equals the naive loop's\n", cases);
}

static void gradients_by_fd(void **state)
{
    (void)state;
    const cnv_shape pairs[][2] = {
        {tu_shape(4, 2, 3, 4, 5), tu_shape(4, 2, 3, 4, 5)}, /* same */
        {tu_shape(4, 2, 3, 4, 5), tu_shape(4, 2, 3, 1, 1)}, /* a gate (squeeze-excitation) */
        {tu_shape(4, 2, 3, 4, 5), tu_shape(1, 5)},          /* trailing */
        {tu_shape(3, 3, 1, 5), tu_shape(3, 1, 4, 1)},       /* both ways */
        {tu_shape(2, 3, 4), tu_shape(0)},                   /* a scalar */
    };
    for (size_t k = 0; k < sizeof g_ops / sizeof g_ops[0]; k++)
        for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
            const char *op = g_ops[k];
            if (!strcmp(op, "PRelu") && p == 3)
                continue; /* the slope only broadcasts to the input */
            tu_tensor in[2] = {{"a", pairs[p][0], NULL, 0}, {"b", pairs[p][1], NULL, 0}};
            cnv_model *m = tu_one_node(op, 2, in, 0, NULL);
            cnv_session *s = tu_session(m, NULL, 7 + p);
            float *a, *b;
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "a"), &a, NULL), CNV_OK);
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "b"), &b, NULL), CNV_OK);
            int64_t na = cnv_shape_count(&pairs[p][0]), nb = cnv_shape_count(&pairs[p][1]);
            /* away from kinks and ties: |a| >= 0.2 (PRelu), Pow's base in
             * [0.5, 1.5], Div's divisor away from 0, Max/Min operands apart */
            for (int64_t i = 0; i < na; i++) {
                if (!strcmp(op, "Pow"))
                    a[i] = 1.0f + 0.5f * a[i];
                else if (fabsf(a[i]) < 0.2f)
                    a[i] = a[i] < 0 ? -0.2f - a[i] : 0.2f + a[i];
                if (!strcmp(op, "Max") || !strcmp(op, "Min"))
                    a[i] = a[i] < 0 ? a[i] - 1.2f : a[i] + 1.2f; /* far from b's [-1, 1] */
            }
            for (int64_t i = 0; i < nb; i++)
                if (!strcmp(op, "Div") && fabsf(b[i]) < 0.5f)
                    b[i] = b[i] < 0 ? -0.5f - b[i] : 0.5f + b[i];
            char label[64];
            snprintf(label, sizeof label, "%s pair %zu", op, p);
            tu_fd_assert(label, tu_fd_check(s, m, "y", 1e-3, 60, 3 + p), 2e-3);
            cnv_session_free(s);
            cnv_model_free(m);
        }
}

/* Three inputs of three shapes through the variadic ops. */
static void variadic_three(void **state)
{
    (void)state;
    const char *ops[4] = {"Sum", "Mean", "Max", "Min"};
    for (int k = 0; k < 4; k++) {
        cnv_model *m;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        cnv_shape s0 = tu_shape(3, 2, 3, 4), s1 = tu_shape(2, 3, 1), s2 = tu_shape(1, 4);
        assert_int_equal(cnv_model_add_input(m, "p", &s0), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "q", &s1), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "r", &s2), CNV_OK);
        const char *in[3] = {"p", "q", "r"}, *out = "y";
        assert_int_equal(cnv_model_add_node(m, ops[k], "v", 3, in, 1, &out, 0, NULL), CNV_OK);
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
        /* on three grids of step 0.3 offset from each other (0.05, 0.037,
         * 0.121 modulo 0.3): no two inputs within 0.013 of each other */
        float p[24], q[3], rr[4];
        for (int i = 0; i < 24; i++)
            p[i] = (float)((i * 7) % 24) * 0.3f - 3.6f + 0.05f;
        for (int i = 0; i < 3; i++)
            q[i] = (float)i * 0.9f - 0.863f;
        for (int i = 0; i < 4; i++)
            rr[i] = (float)i * 0.6f - 0.779f;
        cnv_session *s = tu_session(m, (const float *const[]){p, q, rr}, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        float *y;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, NULL), CNV_OK);
        for (int i = 0; i < 24; i++) {
            double a = p[i], b = q[(i / 4) % 3], c = rr[i % 4];
            double want = k == 0 ? a + b + c : k == 1 ? (a + b + c) / 3 : k == 2 ? fmax(a, fmax(b, c)) : fmin(a, fmin(b, c));
            assert_true(fabs(y[i] - want) < 1e-6);
        }
        char label[32];
        snprintf(label, sizeof label, "%s of 3", ops[k]);
        tu_fd_assert(label, tu_fd_check(s, m, "y", 1e-3, 30, 5), 2e-3);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* dy = 1 everywhere; the gradients at the conventions' points. */
static void ties_and_kinks(void **state)
{
    (void)state;
    const struct {
        const char *op;
        float a, b, da, db;
    } k[] = {
        {"Max", 2.0f, 2.0f, 0.5f, 0.5f},   {"Min", -1.0f, -1.0f, 0.5f, 0.5f},
        {"Max", 3.0f, 2.0f, 1.0f, 0.0f},   {"PRelu", 0.0f, 0.25f, 0.25f, 0.0f},
        {"PRelu", -2.0f, 0.25f, 0.25f, -2.0f}, {"Pow", 0.0f, 2.0f, 0.0f, 0.0f},
        {"Pow", 2.0f, 0.0f, 0.0f, 0.69314718f}, {"Div", 1.0f, 4.0f, 0.25f, -0.0625f},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        tu_tensor in[2] = {{"a", tu_shape(1, 1), NULL, 0}, {"b", tu_shape(1, 1), NULL, 0}};
        cnv_model *m = tu_one_node(k[i].op, 2, in, 0, NULL);
        cnv_session *s = tu_session(m, (const float *const[]){&k[i].a, &k[i].b}, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        const float one = 1.0f;
        assert_int_equal(tu_backward(s, "y", &one), CNV_OK);
        float *ga, *gb;
        assert_int_equal(cnv_session_grad(s, tu_t(s, "a"), &ga), CNV_OK);
        assert_int_equal(cnv_session_grad(s, tu_t(s, "b"), &gb), CNV_OK);
        printf("%s(%g, %g): da %g db %g\n", k[i].op, k[i].a, k[i].b, *ga, *gb);
        assert_true(fabsf(*ga - k[i].da) < 1e-6f && fabsf(*gb - k[i].db) < 1e-6f);
        cnv_session_free(s);
        cnv_model_free(m);
    }
    /* shapes that do not broadcast, and a slope that does not fit */
    tu_tensor bad[2] = {{"a", tu_shape(2, 3, 4), NULL, 0}, {"b", tu_shape(1, 3), NULL, 0}};
    cnv_model *m = tu_one_node("Mul", 2, bad, 0, NULL);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape sh[2] = {tu_shape(2, 3, 4), tu_shape(1, 3)};
    assert_int_equal(cnv_session_plan_shapes(s, 2, sh), CNV_ERR_SHAPE);
    printf("3x4 * 3: %s\n", cnv_session_errmsg(s));
    cnv_session_free(s);
    cnv_model_free(m);
    tu_tensor pr[2] = {{"a", tu_shape(1, 3), NULL, 0}, {"b", tu_shape(2, 2, 3), NULL, 0}};
    m = tu_one_node("PRelu", 2, pr, 0, NULL);
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape ps[2] = {tu_shape(1, 3), tu_shape(2, 2, 3)};
    assert_int_equal(cnv_session_plan_shapes(s, 2, ps), CNV_ERR_SHAPE);
    printf("PRelu slope 2x3 on 3: %s\n", cnv_session_errmsg(s));
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive),
        cmocka_unit_test(gradients_by_fd),
        cmocka_unit_test(variadic_three),
        cmocka_unit_test(ties_and_kinks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
