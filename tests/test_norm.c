/* LRN, LayerNormalization and InstanceNormalization (src/engine/ops/norm.c):
 * forward against double-precision references written here (LRN's is the
 * ONNX formula evaluated literally, window by window), gradients to every
 * input by finite differences (also when the op adds to a gradient another
 * node wrote first, and from LayerNormalization's Mean and InvStdDev
 * outputs), results equal for 1 and 4 threads and for a second backward
 * (an op told to store a gradient must overwrite it), and refusals with their
 * messages. (ONNX's node tests run in test_onnx_conformance.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ------------------------------------------------------------- helpers */

/* A model whose graph inputs are in_names (shapes in_shapes; "" for an
 * absent optional input) feeding node "nn" of op with outputs out_names,
 * all of them model outputs. add_node's status in *st; on failure the
 * model (for its message) has no node. */
static cnv_model *node_model(const char *op, int64_t opset, int n_in, const char *const *in_names,
                             const cnv_shape *in_shapes, int n_out, const char *const *out_names, int n_attrs,
                             const cnv_attr *attrs, cnv_status *st)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, opset), CNV_OK);
    for (int i = 0; i < n_in; i++)
        if (in_names[i][0])
            assert_int_equal(cnv_model_add_input(m, in_names[i], &in_shapes[i]), CNV_OK);
    *st = cnv_model_add_node(m, op, "nn", n_in, in_names, n_out, out_names, n_attrs, attrs);
    for (int k = 0; *st == CNV_OK && k < n_out; k++)
        assert_int_equal(cnv_model_add_output(m, out_names[k]), CNV_OK);
    return m;
}

/* Copies n values of tensor `name` of s into dst. */
static void get(cnv_session *s, const char *name, float *dst, int64_t n)
{
    float *v;
    cnv_shape sh;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, name), &v, &sh), CNV_OK);
    assert_int_equal(cnv_shape_count(&sh), n);
    memcpy(dst, v, (size_t)n * sizeof(float));
}

/* Fails unless every value of got is within tol (relative, at least
 * absolute) of want; returns the largest difference. */
static double check_close(const char *what, const float *got, const double *want, int64_t n, double tol)
{
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));
        if (!(d <= tol))
            fail_msg("%s: [%lld] = %.9g, expected %.9g", what, (long long)i, got[i], want[i]);
        if (d > worst)
            worst = d;
    }
    return worst;
}

/* The planning error of m for its declared input shapes: its status, with
 * the message printed and checked for the node's name and `needle`. */
static void expect_plan_error(cnv_model *m, cnv_status want, const char *needle)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    int n = cnv_model_input_count(m);
    cnv_shape shapes[4];
    for (int i = 0; i < n; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &shapes[i]), CNV_OK);
    cnv_status st = cnv_session_plan_shapes(s, n, shapes);
    printf("plan error: %s\n", cnv_session_errmsg(s));
    assert_int_equal(st, want);
    assert_non_null(strstr(cnv_session_errmsg(s), "'nn'"));
    assert_non_null(strstr(cnv_session_errmsg(s), needle));
    cnv_session_free(s);
}

static void expect_add_error(cnv_model *m, cnv_status st, cnv_status want, const char *needle)
{
    printf("add_node error: %s\n", cnv_model_errmsg(m));
    assert_int_equal(st, want);
    assert_non_null(strstr(cnv_model_errmsg(m), "'nn'"));
    assert_non_null(strstr(cnv_model_errmsg(m), needle));
}

/* ------------------------------------------------------------------ LRN */

/* The ONNX definition as written: for each element, the sum of squares
 * over channels max(0, c - floor((size-1)/2)) .. min(C-1, c + ceil((size-1)/2)),
 * then x / (bias + alpha / size * sum)^beta. */
static void ref_lrn(const float *x, int64_t N, int64_t C, int64_t inner, int64_t size, double alpha,
                    double beta, double bias, double *y)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < inner; p++) {
                int64_t lo = (int64_t)fmax(0.0, (double)c - floor((double)(size - 1) / 2.0));
                int64_t hi = (int64_t)fmin((double)(C - 1), (double)c + ceil((double)(size - 1) / 2.0));
                double sq = 0.0;
                for (int64_t i = lo; i <= hi; i++) {
                    double v = x[(n * C + i) * inner + p];
                    sq += v * v;
                }
                int64_t k = (n * C + c) * inner + p;
                y[k] = x[k] / pow(bias + alpha / (double)size * sq, beta);
            }
}

/* LRN attributes: size, then alpha, beta, bias unless NaN (absent). */
static int lrn_attrs(int64_t size, float alpha, float beta, float bias, cnv_attr *a)
{
    int n = 0;
    a[n++] = tu_attr_int("size", size);
    if (!isnan(alpha))
        a[n++] = tu_attr_float("alpha", alpha);
    if (!isnan(beta))
        a[n++] = tu_attr_float("beta", beta);
    if (!isnan(bias))
        a[n++] = tu_attr_float("bias", bias);
    return n;
}

static cnv_model *lrn_model(cnv_shape xs, int n_attrs, const cnv_attr *attrs)
{
    static const char *const in[] = {"x"}, *const out[] = {"y"};
    cnv_status st;
    cnv_model *m = node_model("LRN", 13, 1, in, &xs, 1, out, n_attrs, attrs, &st);
    if (st != CNV_OK)
        fail_msg("LRN: %s", cnv_model_errmsg(m));
    return m;
}

static void test_lrn_hand(void **state)
{
    (void)state;
    /* two channels inside one window of 3: alpha/size = 1, beta = 1,
     * bias = 1 gives a denominator of 1 + 1 + 4 = 6 for both */
    cnv_attr a[4];
    int na = lrn_attrs(3, 3.0f, 1.0f, 1.0f, a);
    cnv_model *m = lrn_model(tu_shape(4, 1, 2, 1, 1), na, a);
    float x[] = {1, 2}, y[2];
    cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    get(s, "y", y, 2);
    assert_float_equal(y[0], 1.0 / 6.0, 1e-7);
    assert_float_equal(y[1], 2.0 / 6.0, 1e-7);
    cnv_session_free(s);
    cnv_model_free(m);
    /* size 2 is lopsided: channel c sums c and c + 1 (ceil side), so the
     * last channel sees itself only: 1 + 1 * 4 = 5 with alpha/size = 1 */
    na = lrn_attrs(2, 2.0f, 1.0f, 1.0f, a);
    m = lrn_model(tu_shape(4, 1, 2, 1, 1), na, a);
    s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    get(s, "y", y, 2);
    assert_float_equal(y[0], 1.0 / 6.0, 1e-7);
    assert_float_equal(y[1], 2.0 / 5.0, 1e-7);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_lrn_naive(void **state)
{
    (void)state;
    static const struct {
        int64_t n, c, h, w, size;
        float alpha, beta, bias; /* NaN: the default */
    } cases[] = {
        {2, 5, 3, 4, 1, 0.5f, 0.75f, 1.0f},   {2, 5, 3, 4, 2, 0.5f, 0.75f, 1.0f},
        {2, 5, 3, 4, 3, 0.5f, 0.6f, 2.0f},    {2, 5, 3, 4, 4, 0.5f, 0.75f, 1.0f},
        {2, 5, 3, 4, 5, 1.0f, 1.3f, 0.5f},    {2, 5, 3, 4, 6, 0.5f, 0.75f, 1.0f},
        {2, 5, 3, 4, 11, 0.5f, 0.75f, 1.0f},  {1, 3, 2, 2, 5, NAN, NAN, NAN},
        /* AlexNet's settings; planes wider than a block, many channels */
        {1, 40, 17, 19, 5, 1e-4f, 0.75f, 2.0f}, {1, 40, 17, 19, 4, 3.0f, 0.75f, 1.0f},
    };
    double worst = 0.0;
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t N = cases[t].n, C = cases[t].c, inner = cases[t].h * cases[t].w, cnt = N * C * inner;
        float *x = malloc((size_t)cnt * sizeof *x), *y = malloc((size_t)cnt * sizeof *y);
        double *r = malloc((size_t)cnt * sizeof *r);
        assert_true(x && y && r);
        tu_rng rng;
        tu_rng_init(&rng, 100 + t);
        tu_fill(&rng, x, cnt, -2, 2);
        cnv_attr a[4];
        int na = lrn_attrs(cases[t].size, cases[t].alpha, cases[t].beta, cases[t].bias, a);
        cnv_model *m = lrn_model(tu_shape(4, (int)N, (int)C, (int)cases[t].h, (int)cases[t].w), na, a);
        cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        get(s, "y", y, cnt);
        ref_lrn(x, N, C, inner, cases[t].size, isnan(cases[t].alpha) ? 1e-4 : cases[t].alpha,
                isnan(cases[t].beta) ? 0.75 : cases[t].beta, isnan(cases[t].bias) ? 1.0 : cases[t].bias, r);
        char what[64];
        snprintf(what, sizeof what, "LRN case %zu (size %lld)", t, (long long)cases[t].size);
        double d = check_close(what, y, r, cnt, 2e-6);
        if (d > worst)
            worst = d;
        cnv_session_free(s);
        cnv_model_free(m);
        free(x), free(y), free(r);
    }
    printf("LRN vs the ONNX formula in double: max rel diff %.3g\n", worst);
}

static void test_lrn_fd(void **state)
{
    (void)state;
    /* alpha large enough that each x's share of its neighbours'
     * denominators is a large part of its gradient */
    static const int64_t sizes[] = {1, 2, 3, 4, 5, 8};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        cnv_attr a[4];
        int na = lrn_attrs(sizes[i], 2.0f, i % 2 ? 0.75f : 0.6f, 1.0f, a);
        cnv_model *m = lrn_model(tu_shape(4, 2, 6, 3, 3), na, a);
        cnv_session *s = tu_session(m, NULL, 200 + i);
        char label[64];
        snprintf(label, sizeof label, "LRN size %lld dX 2x6x3x3", (long long)sizes[i]);
        tu_fd_assert(label, tu_fd_check(s, m, "y", 3e-3, 1000, 210 + i), 1e-4);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ----------------------------------------------------- LayerNormalization */

/* rows of n: (x - mean) / sqrt(var + eps) * s[j * ss] + b[j * bs] (b may
 * be NULL), with each row's mean and 1 / sqrt(var + eps). */
static void ref_rows(const float *x, int64_t rows, int64_t n, const float *s, int64_t ss, const float *b,
                     int64_t bs, double eps, double *y, double *mean, double *inv)
{
    for (int64_t o = 0; o < rows; o++) {
        const float *xr = x + o * n;
        double m = 0.0, v = 0.0;
        for (int64_t j = 0; j < n; j++)
            m += xr[j];
        m /= (double)n;
        for (int64_t j = 0; j < n; j++)
            v += (xr[j] - m) * (xr[j] - m);
        v /= (double)n;
        for (int64_t j = 0; j < n; j++)
            y[o * n + j] = (xr[j] - m) / sqrt(v + eps) * s[j * ss] + (b ? b[j * bs] : 0.0);
        if (mean)
            mean[o] = m;
        if (inv)
            inv[o] = 1.0 / sqrt(v + eps);
    }
}

/* LayerNormalization of x (shape xs) at axis with a Scale of shape ps and
 * B of shape ps (or none), outputs y, mean, inv (n_out of them). */
static cnv_model *ln_model(cnv_shape xs, cnv_shape ps, int with_b, int n_out, int n_attrs, const cnv_attr *attrs,
                           cnv_status *st)
{
    static const char *const in[] = {"x", "s", "b"}, *const out[] = {"y", "mean", "inv"};
    cnv_shape shapes[] = {xs, ps, ps};
    return node_model("LayerNormalization", 17, with_b ? 3 : 2, in, shapes, n_out, out, n_attrs, attrs, st);
}

static void test_layernorm_naive(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(4, 2, 3, 4, 5);
    float x[120], sb[240], y[120], mean[120], inv[120];
    double ry[120], rm[120], ri[120];
    tu_rng rng;
    tu_rng_init(&rng, 300);
    tu_fill(&rng, x, 120, -3, 3);
    tu_fill(&rng, sb, 240, -1.5f, 1.5f);
    double worst = 0.0;
    for (int axis = -4; axis <= 3; axis++) {
        int ax = axis < 0 ? axis + 4 : axis;
        int64_t n = 1;
        cnv_shape ps = tu_shape(0);
        for (int d = ax; d < 4; d++) {
            n *= xs.dims[d];
            ps.dims[ps.ndim++] = xs.dims[d];
        }
        for (int with_b = 0; with_b < 2; with_b++) {
            cnv_attr a[2] = {tu_attr_int("axis", axis), tu_attr_float("epsilon", 1e-2f)};
            cnv_status st;
            cnv_model *m = ln_model(xs, ps, with_b, 3, 2, a, &st);
            assert_int_equal(st, CNV_OK);
            cnv_session *s = tu_session(m, (const float *const[]){x, sb, sb + 120}, 1);
            assert_int_equal(cnv_session_forward(s), CNV_OK);
            get(s, "y", y, 120);
            get(s, "mean", mean, 120 / n);
            get(s, "inv", inv, 120 / n);
            cnv_shape ms;
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "mean"), NULL, &ms), CNV_OK);
            assert_int_equal(ms.ndim, 4);
            for (int d = 0; d < 4; d++)
                assert_int_equal(ms.dims[d], d < ax ? xs.dims[d] : 1);
            ref_rows(x, 120 / n, n, sb, 1, with_b ? sb + 120 : NULL, 1, 1e-2f, ry, rm, ri);
            char what[64];
            snprintf(what, sizeof what, "LayerNormalization axis %d%s", axis, with_b ? "" : " without B");
            double d = check_close(what, y, ry, 120, 1e-6);
            d = fmax(d, check_close("Mean", mean, rm, 120 / n, 1e-6));
            d = fmax(d, check_close("InvStdDev", inv, ri, 120 / n, 1e-6));
            if (d > worst)
                worst = d;
            cnv_session_free(s);
            cnv_model_free(m);
        }
    }
    /* default axis (-1), default epsilon, Scale and B as single values
     * and Scale with leading 1s */
    static const int pdims[][3] = {{1, 1, 0}, {2, 1, 1}, {3, 1, 1}};
    for (int k = 0; k < 3; k++) {
        cnv_shape ps = tu_shape(0);
        ps.ndim = pdims[k][0];
        for (int d = 0; d < ps.ndim; d++)
            ps.dims[d] = 1;
        int64_t pn = 1;
        if (k == 2) {
            ps.dims[2] = 5;
            pn = 5;
        }
        cnv_status st;
        cnv_model *m = ln_model(xs, ps, 1, 1, 0, NULL, &st);
        assert_int_equal(st, CNV_OK);
        cnv_session *s = tu_session(m, (const float *const[]){x, sb, sb + 120}, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        get(s, "y", y, 120);
        ref_rows(x, 24, 5, sb, pn == 1 ? 0 : 1, sb + 120, pn == 1 ? 0 : 1, 1e-5f, ry, NULL, NULL);
        worst = fmax(worst, check_close("LayerNormalization default axis", y, ry, 120, 1e-6));
        cnv_session_free(s);
        cnv_model_free(m);
    }
    printf("LayerNormalization vs double reference: max rel diff %.3g\n", worst);
}

/* The step h: a row's outputs all move with each x, so long rows need a
 * larger step for their float rounding not to swamp the difference; short
 * rows (a small variance) a smaller one for their curvature. */
static void ln_fd(cnv_shape xs, int axis, int with_b, const char *from, double h, const char *label)
{
    int ax = axis < 0 ? axis + xs.ndim : axis;
    cnv_shape ps = tu_shape(0);
    for (int d = ax; d < xs.ndim; d++)
        ps.dims[ps.ndim++] = xs.dims[d];
    cnv_attr a = tu_attr_int("axis", axis);
    cnv_status st;
    cnv_model *m = ln_model(xs, ps, with_b, 3, 1, &a, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = tu_session(m, NULL, 400);
    tu_fd_assert(label, tu_fd_check(s, m, from, h, 600, 401), 1e-4);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_layernorm_fd(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(4, 2, 3, 4, 5);
    ln_fd(xs, 1, 1, "y", 1e-2, "LayerNormalization axis 1 dX,dScale,dB 2x3x4x5");
    ln_fd(xs, -1, 1, "y", 3e-3, "LayerNormalization axis -1 dX,dScale,dB 2x3x4x5");
    ln_fd(xs, -2, 1, "y", 3e-3, "LayerNormalization axis -2 dX,dScale,dB 2x3x4x5");
    ln_fd(xs, -2, 0, "y", 3e-3, "LayerNormalization axis -2 without B dX,dScale 2x3x4x5");
    ln_fd(xs, 0, 0, "y", 1e-2, "LayerNormalization axis 0 without B dX,dScale 2x3x4x5");
    /* rows of more than one block of columns (ConvNeXt's channels last) */
    ln_fd(tu_shape(3, 3, 2, 150), -1, 1, "y", 1e-2, "LayerNormalization axis -1 dX,dScale,dB 3x2x150");
    /* through the statistics outputs */
    ln_fd(xs, 2, 1, "mean", 3e-3, "LayerNormalization axis 2 dX from Mean");
    ln_fd(xs, 2, 1, "inv", 3e-3, "LayerNormalization axis 2 dX from InvStdDev");
}

/* A single Scale and B: their gradients are sums over everything. */
static void test_layernorm_scalar_params_fd(void **state)
{
    (void)state;
    cnv_status st;
    cnv_model *m = ln_model(tu_shape(3, 2, 3, 4), tu_shape(1, 1), 1, 1, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    cnv_session *s = tu_session(m, NULL, 410);
    tu_fd_assert("LayerNormalization single-value Scale and B", tu_fd_check(s, m, "y", 3e-3, 600, 411), 1e-4);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ----------------------------------------------- InstanceNormalization */

static cnv_model *in_model(cnv_shape xs, cnv_shape ps, int n_attrs, const cnv_attr *attrs, cnv_status *st)
{
    static const char *const in[] = {"x", "s", "b"}, *const out[] = {"y"};
    cnv_shape shapes[] = {xs, ps, ps};
    return node_model("InstanceNormalization", 6, 3, in, shapes, 1, out, n_attrs, attrs, st);
}

static void test_instancenorm_naive(void **state)
{
    (void)state;
    cnv_shape shapes[] = {tu_shape(4, 2, 3, 4, 5), tu_shape(3, 2, 3, 7), tu_shape(5, 1, 2, 3, 2, 2),
                          tu_shape(2, 3, 4)};
    float x[120], sb[8], y[120];
    double r[120];
    double worst = 0.0;
    for (int t = 0; t < 4; t++) {
        cnv_shape xs = shapes[t];
        int64_t cnt = cnv_shape_count(&xs), C = xs.dims[1], rows = xs.dims[0] * C, n = cnt / rows;
        tu_rng rng;
        tu_rng_init(&rng, 500 + t);
        tu_fill(&rng, x, cnt, -3, 3);
        tu_fill(&rng, sb, 8, -1.5f, 1.5f);
        cnv_attr eps = tu_attr_float("epsilon", t % 2 ? 1e-5f : 0.3f);
        cnv_status st;
        cnv_model *m = in_model(xs, tu_shape(1, (int)C), 1, &eps, &st);
        assert_int_equal(st, CNV_OK);
        cnv_session *s = tu_session(m, (const float *const[]){x, sb, sb + 4}, 1);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        get(s, "y", y, cnt);
        for (int64_t o = 0; o < rows; o++)
            ref_rows(x + o * n, 1, n, sb + o % C, 0, sb + 4 + o % C, 0, eps.f, r + o * n, NULL, NULL);
        char what[64];
        snprintf(what, sizeof what, "InstanceNormalization rank %d", xs.ndim);
        worst = fmax(worst, check_close(what, y, r, cnt, 1e-6));
        cnv_session_free(s);
        cnv_model_free(m);
    }
    printf("InstanceNormalization vs double reference: max rel diff %.3g\n", worst);
}

static void test_instancenorm_fd(void **state)
{
    (void)state;
    cnv_shape shapes[] = {tu_shape(4, 2, 3, 4, 5), tu_shape(3, 3, 2, 6)};
    for (int t = 0; t < 2; t++) {
        cnv_status st;
        cnv_model *m = in_model(shapes[t], tu_shape(1, (int)shapes[t].dims[1]), 0, NULL, &st);
        assert_int_equal(st, CNV_OK);
        cnv_session *s = tu_session(m, NULL, 600 + t);
        tu_fd_assert(t ? "InstanceNormalization dX,dscale,dB 3x2x6" : "InstanceNormalization dX,dscale,dB 2x3x4x5",
                     tu_fd_check(s, m, "y", 3e-3, 600, 610 + t), 1e-4);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* ------------------------------------------- accumulation and threads */

/* y = op(x, s, b) + x + s + b: the Adds' backward writes each input's
 * gradient first, so the op must add to it rather than overwrite it.
 * x is 2x3x4x3 so that a per-channel s of 3 also broadcasts along W. */
static void test_accumulate_fd(void **state)
{
    (void)state;
    static const struct {
        const char *op;
        int n_in, n_attrs;
        cnv_shape ps;
    } cases[] = {
        {"LRN", 1, 1, {0}},
        {"LayerNormalization", 3, 0, {1, {3}}},
        {"InstanceNormalization", 3, 0, {1, {3}}},
    };
    cnv_shape xs = tu_shape(4, 2, 3, 4, 3);
    for (int t = 0; t < 3; t++) {
        cnv_model *m = NULL;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        assert_int_equal(cnv_model_set_opset(m, 17), CNV_OK);
        assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
        static const char *const in[] = {"x", "s", "b"};
        for (int k = 1; k < cases[t].n_in; k++)
            assert_int_equal(cnv_model_add_input(m, in[k], &cases[t].ps), CNV_OK);
        cnv_attr size = tu_attr_int("size", 3);
        const char *t0 = "t0";
        if (cnv_model_add_node(m, cases[t].op, "nn", cases[t].n_in, in, 1, &t0, cases[t].n_attrs, &size) != CNV_OK)
            fail_msg("%s", cnv_model_errmsg(m));
        static const char *const chain[] = {"t0", "t1", "t2"};
        for (int k = 0; k < cases[t].n_in; k++) {
            const char *add_in[] = {chain[k], in[k]};
            const char *out = k == cases[t].n_in - 1 ? "y" : chain[k + 1];
            char name[16];
            snprintf(name, sizeof name, "add%d", k);
            assert_int_equal(cnv_model_add_node(m, "Add", name, 2, add_in, 1, &out, 0, NULL), CNV_OK);
        }
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
        cnv_session *s = tu_session(m, NULL, 700 + t);
        char label[96];
        snprintf(label, sizeof label, "%s + its inputs (accumulating gradients)", cases[t].op);
        tu_fd_assert(label, tu_fd_check(s, m, "y", 5e-3, 600, 710 + t), 1e-4);
        cnv_session_free(s);
        cnv_model_free(m);
    }
}

/* Outputs and gradients of m's "y" (from a fixed seed) with `threads`
 * threads, into out and grads (every graph input's gradient in turn);
 * a second backward must give the same gradients. */
static void run_threads(cnv_model *m, int threads, float *out, float *grads)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
    int n = cnv_model_input_count(m);
    cnv_shape shapes[3];
    for (int i = 0; i < n; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &shapes[i]), CNV_OK);
    assert_int_equal(cnv_session_plan_shapes(s, n, shapes), CNV_OK);
    tu_rng rng;
    tu_rng_init(&rng, 800);
    for (int i = 0; i < n; i++) {
        float *v;
        assert_int_equal(cnv_session_tensor(s, cnv_model_input(m, i), &v, NULL), CNV_OK);
        tu_fill(&rng, v, cnv_shape_count(&shapes[i]), -2, 2);
    }
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    cnv_shape ys;
    float *y;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    int64_t ny = cnv_shape_count(&ys);
    memcpy(out, y, (size_t)ny * sizeof *y);
    float *seed = malloc((size_t)ny * sizeof *seed);
    assert_non_null(seed);
    tu_fill(&rng, seed, ny, -1, 1);
    /* twice: the second pass finds the first one's gradients in place,
     * which an op told to store must overwrite, not add to */
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(cnv_session_backward(s, tu_t(s, "y"), seed, (size_t)ny), CNV_OK);
        float *gp = grads;
        for (int i = 0; i < n; i++) {
            float *g;
            assert_int_equal(cnv_session_grad(s, cnv_model_input(m, i), &g), CNV_OK);
            int64_t c = cnv_shape_count(&shapes[i]);
            if (pass == 0)
                memcpy(gp, g, (size_t)c * sizeof *g);
            else
                assert_memory_equal(gp, g, (size_t)c * sizeof *g);
            gp += c;
        }
    }
    free(seed);
    cnv_session_free(s);
}

static void test_threads_same(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(4, 2, 16, 20, 30);
    int64_t cnt = cnv_shape_count(&xs);
    cnv_model *ms[3];
    cnv_attr a[4];
    int na = lrn_attrs(5, 1.0f, 0.75f, 1.0f, a);
    ms[0] = lrn_model(xs, na, a);
    cnv_status st;
    cnv_attr ax = tu_attr_int("axis", -1);
    ms[1] = ln_model(xs, tu_shape(1, 30), 1, 1, 1, &ax, &st);
    assert_int_equal(st, CNV_OK);
    ms[2] = in_model(xs, tu_shape(1, 16), 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    float *y1 = malloc((size_t)cnt * sizeof(float)), *y4 = malloc((size_t)cnt * sizeof(float));
    float *g1 = malloc((size_t)(cnt + 64) * sizeof(float)), *g4 = malloc((size_t)(cnt + 64) * sizeof(float));
    assert_true(y1 && y4 && g1 && g4);
    for (int t = 0; t < 3; t++) {
        int64_t ng = cnt + (t == 1 ? 60 : t == 2 ? 32 : 0);
        run_threads(ms[t], 1, y1, g1);
        run_threads(ms[t], 4, y4, g4);
        assert_memory_equal(y1, y4, (size_t)cnt * sizeof(float));
        assert_memory_equal(g1, g4, (size_t)ng * sizeof(float));
        cnv_model_free(ms[t]);
    }
    free(y1), free(y4), free(g1), free(g4);
}

/* --------------------------------------------------------------- errors */

static void test_errors(void **state)
{
    (void)state;
    cnv_status st;
    cnv_model *m;
    static const char *const x_in[] = {"x"}, *const y_out[] = {"y"};
    cnv_shape xs = tu_shape(4, 2, 3, 4, 5);

    /* LRN: size missing, 0, or too large; alpha not finite; X of rank 1 */
    cnv_attr alpha = tu_attr_float("alpha", 1e-4f);
    m = node_model("LRN", 13, 1, x_in, &xs, 1, y_out, 1, &alpha, &st);
    expect_add_error(m, st, CNV_ERR_FORMAT, "size is required");
    cnv_model_free(m);
    cnv_attr bad_size[] = {tu_attr_int("size", 0), tu_attr_int("size", (int64_t)1 << 40)};
    for (int i = 0; i < 2; i++) {
        m = node_model("LRN", 13, 1, x_in, &xs, 1, y_out, 1, &bad_size[i], &st);
        expect_add_error(m, st, CNV_ERR_FORMAT, "size");
        cnv_model_free(m);
    }
    cnv_attr nan_alpha[] = {tu_attr_int("size", 3), tu_attr_float("alpha", NAN)};
    m = node_model("LRN", 13, 1, x_in, &xs, 1, y_out, 2, nan_alpha, &st);
    expect_add_error(m, st, CNV_ERR_FORMAT, "finite");
    cnv_model_free(m);
    cnv_attr size3 = tu_attr_int("size", 3);
    cnv_shape x1 = tu_shape(1, 7);
    m = node_model("LRN", 13, 1, x_in, &x1, 1, y_out, 1, &size3, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE, "needs N and C");
    cnv_model_free(m);

    /* LayerNormalization: axis out of range either way */
    int64_t axes[] = {4, -5};
    for (int i = 0; i < 2; i++) {
        cnv_attr a = tu_attr_int("axis", axes[i]);
        m = ln_model(xs, tu_shape(1, 5), 1, 1, 1, &a, &st);
        assert_int_equal(st, CNV_OK);
        expect_plan_error(m, CNV_ERR_SHAPE, "out of range");
        cnv_model_free(m);
    }
    /* a Scale that does not fit the normalized 4x5 */
    cnv_attr am2 = tu_attr_int("axis", -2);
    cnv_shape wrong[] = {tu_shape(1, 5), tu_shape(2, 5, 4), tu_shape(3, 2, 4, 5)};
    for (int i = 0; i < 3; i++) {
        m = ln_model(xs, wrong[i], 0, 1, 1, &am2, &st);
        assert_int_equal(st, CNV_OK);
        expect_plan_error(m, i == 0 ? CNV_ERR_UNSUPPORTED : CNV_ERR_SHAPE,
                          i == 0 ? "Scale has shape 5, broadcast over part" : "does not broadcast to the normalized dims 4x5");
        cnv_model_free(m);
    }
    /* a B broadcast over part of the block: valid ONNX, refused as such */
    {
        static const char *const in[] = {"x", "s", "b"};
        cnv_shape shapes[] = {xs, tu_shape(2, 4, 5), tu_shape(2, 1, 5)};
        m = node_model("LayerNormalization", 17, 3, in, shapes, 1, y_out, 1, &am2, &st);
        assert_int_equal(st, CNV_OK);
        expect_plan_error(m, CNV_ERR_UNSUPPORTED, "B has shape 1x5, broadcast over part");
        cnv_model_free(m);
    }
    /* stash_type other than float or double; a negative epsilon */
    cnv_attr stash = tu_attr_int("stash_type", 10);
    m = ln_model(xs, tu_shape(1, 5), 1, 1, 1, &stash, &st);
    expect_add_error(m, st, CNV_ERR_UNSUPPORTED, "stash_type 10");
    cnv_model_free(m);
    cnv_attr neg = tu_attr_float("epsilon", -1e-5f);
    m = ln_model(xs, tu_shape(1, 5), 1, 1, 1, &neg, &st);
    expect_add_error(m, st, CNV_ERR_FORMAT, "epsilon");
    cnv_model_free(m);

    /* InstanceNormalization: scale of the wrong count, X of rank 1, a NaN
     * epsilon */
    m = in_model(xs, tu_shape(1, 4), 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE, "scale has shape 4");
    cnv_model_free(m);
    m = in_model(tu_shape(1, 3), tu_shape(1, 3), 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE, "needs N and C");
    cnv_model_free(m);
    cnv_attr nan_eps = tu_attr_float("epsilon", NAN);
    m = in_model(xs, tu_shape(1, 3), 1, &nan_eps, &st);
    expect_add_error(m, st, CNV_ERR_FORMAT, "epsilon");
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lrn_hand),
        cmocka_unit_test(test_lrn_naive),
        cmocka_unit_test(test_lrn_fd),
        cmocka_unit_test(test_layernorm_naive),
        cmocka_unit_test(test_layernorm_fd),
        cmocka_unit_test(test_layernorm_scalar_params_fd),
        cmocka_unit_test(test_instancenorm_naive),
        cmocka_unit_test(test_instancenorm_fd),
        cmocka_unit_test(test_accumulate_fd),
        cmocka_unit_test(test_threads_same),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
