/* MaxPool, AveragePool, GlobalAveragePool: hand-computed cases, a naive
 * padded-image reference on odd shapes, finite differences, ties/NaN/-inf,
 * and the errors plan and parse must report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/op.h"
#include "engine/testing.h"
#include "testutil.h"

/* ------------------------------------------------------------- helpers */

/* A one-node model built by hand (for a node name, an opset, a second
 * output). Returns the add_node status in *st; the model is returned even
 * when that fails, so its message can be read. */
static cnv_model *build(const char *op, int64_t opset, const char *name, cnv_shape xs,
                        int n_out, int n_attrs, const cnv_attr *attrs, cnv_status *st)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_set_opset(m, opset), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    const char *ins[] = {"x"}, *outs[] = {"y", "idx"};
    *st = cnv_model_add_node(m, op, name, 1, ins, n_out, outs, n_attrs, attrs);
    if (*st == CNV_OK)
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    return m;
}

/* Asserts that planning m with its declared input shape fails with want and
 * a message naming node `name`. */
static void expect_plan_error(cnv_model *m, cnv_status want, const char *name)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_shape xs;
    assert_int_equal(cnv_model_input_shape(m, 0, &xs), CNV_OK);
    cnv_status st = cnv_session_plan_shapes(s, 1, &xs);
    printf("plan error: %s\n", cnv_session_errmsg(s));
    assert_int_equal(st, want);
    assert_non_null(strstr(cnv_session_errmsg(s), name));
    cnv_session_free(s);
}

static void expect_parse_error(const char *op, cnv_shape xs, int n_attrs, const cnv_attr *attrs,
                               cnv_status want)
{
    cnv_status st;
    cnv_model *m = build(op, 13, "badpool", xs, 1, n_attrs, attrs, &st);
    printf("parse error: %s\n", cnv_model_errmsg(m));
    assert_int_equal(st, want);
    assert_non_null(strstr(cnv_model_errmsg(m), "badpool"));
    cnv_model_free(m);
}

/* Runs a one-input one-node model on x; copies y (count checked) out. */
static void run(const char *op, cnv_shape xs, const float *x, int n_attrs, const cnv_attr *attrs,
                cnv_shape *ys_out, float *y_out, int64_t y_cap)
{
    tu_tensor in = {"x", xs, NULL, 0};
    cnv_model *m = tu_one_node(op, 1, &in, n_attrs, attrs);
    cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    int64_t n = cnv_shape_count(&ys);
    assert_true(n <= y_cap);
    memcpy(y_out, y, (size_t)n * sizeof(float));
    *ys_out = ys;
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Forward then backward with seed dy on y; returns dx in dx_out. */
static void run_grad(const char *op, cnv_shape xs, const float *x, int n_attrs,
                     const cnv_attr *attrs, const float *dy, float *y_out, float *dx_out)
{
    tu_tensor in = {"x", xs, NULL, 0};
    cnv_model *m = tu_one_node(op, 1, &in, n_attrs, attrs);
    cnv_session *s = tu_session(m, (const float *const[]){x}, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y, *dx;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    memcpy(y_out, y, (size_t)cnv_shape_count(&ys) * sizeof(float));
    assert_int_equal(tu_backward(s, "y", dy), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &dx), CNV_OK);
    memcpy(dx_out, dx, (size_t)cnv_shape_count(&xs) * sizeof(float));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Distinct values (a scaled random permutation): no two elements of a
 * window are within 2h of each other, so finite differences never cross a
 * max-pool tie. */
static void fill_distinct(float *x, int n, float step, uint64_t seed)
{
    tu_rng r;
    tu_rng_init(&r, seed);
    for (int i = 0; i < n; i++)
        x[i] = (float)(i - n / 2) * step;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(tu_uniform(&r, 0.0f, 1.0f) * (float)(i + 1));
        if (j > i)
            j = i;
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* ------------------------------------------------- the naive reference */

typedef struct pspec {
    int kh, kw, sh, sw, pt, pl, pb, pr, ceil, cip;
} pspec;

static int ref_out(int in, int k, int s, int pb, int pe, int ceil)
{
    int span = in + pb + pe - k;
    int o = ceil ? (span + s - 1) / s + 1 : span / s + 1;
    if (ceil && (o - 1) * s >= in + pb) /* last window starts in the end padding */
        o--;
    return o;
}

/* Pools x (N*C planes of H x W) through an explicitly padded plane: a
 * window covers padded cells [o*s, o*s+k); cells past the padded extent do
 * not exist, padding cells count only for the count_include_pad divisor. */
static void ref_pool(int is_max, const float *x, int NC, int H, int W, pspec p, float *y,
                     int *oh_out, int *ow_out)
{
    int PH = H + p.pt + p.pb, PW = W + p.pl + p.pr;
    int OH = ref_out(H, p.kh, p.sh, p.pt, p.pb, p.ceil);
    int OW = ref_out(W, p.kw, p.sw, p.pl, p.pr, p.ceil);
    for (int nc = 0; nc < NC; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double sum = 0;
                float best = -INFINITY;
                int have = 0, n_in = 0, n_padded = 0;
                for (int i = 0; i < p.kh; i++)
                    for (int j = 0; j < p.kw; j++) {
                        int r = oh * p.sh + i, c = ow * p.sw + j;
                        if (r >= PH || c >= PW)
                            continue;
                        n_padded++;
                        int ih = r - p.pt, iw = c - p.pl;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                            continue;
                        float v = x[(nc * H + ih) * W + iw];
                        sum += v;
                        n_in++;
                        if (!have || v > best)
                            best = v;
                        have = 1;
                    }
                float *yo = &y[(nc * OH + oh) * OW + ow];
                *yo = is_max ? best : (float)(sum / (p.cip ? n_padded : n_in));
            }
    *oh_out = OH;
    *ow_out = OW;
}

static int n_pool_attrs(pspec p, int is_max, cnv_attr *a, int64_t *k, int64_t *s, int64_t *pads)
{
    k[0] = p.kh, k[1] = p.kw, s[0] = p.sh, s[1] = p.sw;
    pads[0] = p.pt, pads[1] = p.pl, pads[2] = p.pb, pads[3] = p.pr;
    int n = 0;
    a[n++] = tu_attr_ints("kernel_shape", 2, k);
    a[n++] = tu_attr_ints("strides", 2, s);
    a[n++] = tu_attr_ints("pads", 4, pads);
    a[n++] = tu_attr_int("ceil_mode", p.ceil);
    if (!is_max)
        a[n++] = tu_attr_int("count_include_pad", p.cip);
    return n;
}

/* --------------------------------------------------- hand-computed cases */

static float iota1[32];

static void init_iota(void)
{
    for (int i = 0; i < 32; i++)
        iota1[i] = (float)(i + 1);
}

static void test_maxpool_hand(void **state)
{
    (void)state;
    init_iota();
    float y[16];
    cnv_shape ys;
    /* ONNX maxpool_2d_ceil: 4x4 of 1..16, k3 s2 ceil -> [[11,12],[15,16]] */
    int64_t k3[] = {3, 3}, s2[] = {2, 2};
    cnv_attr a[] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("strides", 2, s2),
                    tu_attr_int("ceil_mode", 1)};
    run("MaxPool", tu_shape(4, 1, 1, 4, 4), iota1, 3, a, &ys, y, 16);
    assert_int_equal(ys.ndim, 4);
    assert_int_equal(ys.dims[2], 2);
    assert_int_equal(ys.dims[3], 2);
    float want1[] = {11, 12, 15, 16};
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == want1[i]);
    /* without ceil_mode: one window -> 11 */
    run("MaxPool", tu_shape(4, 1, 1, 4, 4), iota1, 2, a, &ys, y, 16);
    assert_int_equal(ys.dims[2], 1);
    assert_int_equal(ys.dims[3], 1);
    assert_true(y[0] == 11);
    /* [1..5], k2 s2 pad 1 ceil: a 4th window would start in the right
     * padding and is dropped -> [1,3,5] (PyTorch max_pool2d agrees) */
    int64_t k12[] = {1, 2}, s12[] = {1, 2}, p1[] = {0, 1, 0, 1};
    cnv_attr b[] = {tu_attr_ints("kernel_shape", 2, k12), tu_attr_ints("strides", 2, s12),
                    tu_attr_ints("pads", 4, p1), tu_attr_int("ceil_mode", 1)};
    run("MaxPool", tu_shape(4, 1, 1, 1, 5), iota1, 4, b, &ys, y, 16);
    assert_int_equal(ys.dims[3], 3);
    assert_true(y[0] == 1 && y[1] == 3 && y[2] == 5);
}

static void test_avgpool_hand(void **state)
{
    (void)state;
    init_iota();
    float y[16];
    cnv_shape ys;
    /* ONNX averagepool_2d_ceil: -> [[6,7.5],[12,13.5]] */
    int64_t k3[] = {3, 3}, s2[] = {2, 2};
    cnv_attr a[] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("strides", 2, s2),
                    tu_attr_int("ceil_mode", 1)};
    run("AveragePool", tu_shape(4, 1, 1, 4, 4), iota1, 3, a, &ys, y, 16);
    float want1[] = {6, 7.5f, 12, 13.5f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], want1[i], 1e-6);
    /* [1,2,3,4], k3 s2 pads 1,1 ceil: windows (pad,1,2) (2,3,4) (4,pad,|past|).
     * count_include_pad=1: [3/3, 9/3, 4/2] (the last window's cell past the
     * padded input is not counted); =0: [3/2, 9/3, 4/1]. PyTorch agrees. */
    int64_t k13[] = {1, 3}, s12[] = {1, 2}, p1[] = {0, 1, 0, 1};
    cnv_attr b[] = {tu_attr_ints("kernel_shape", 2, k13), tu_attr_ints("strides", 2, s12),
                    tu_attr_ints("pads", 4, p1), tu_attr_int("ceil_mode", 1),
                    tu_attr_int("count_include_pad", 1)};
    run("AveragePool", tu_shape(4, 1, 1, 1, 4), iota1, 5, b, &ys, y, 16);
    assert_int_equal(ys.dims[3], 3);
    assert_float_equal(y[0], 1.0f, 1e-6);
    assert_float_equal(y[1], 3.0f, 1e-6);
    assert_float_equal(y[2], 2.0f, 1e-6);
    b[4] = tu_attr_int("count_include_pad", 0);
    run("AveragePool", tu_shape(4, 1, 1, 1, 4), iota1, 5, b, &ys, y, 16);
    assert_float_equal(y[0], 1.5f, 1e-6);
    assert_float_equal(y[1], 3.0f, 1e-6);
    assert_float_equal(y[2], 4.0f, 1e-6);
}

/* 1-D pooling is 2-D with a height of 1. */
static void test_pool_1d(void **state)
{
    (void)state;
    init_iota();
    float y[16];
    cnv_shape ys;
    int64_t k[] = {2}, s[] = {2};
    cnv_attr a[] = {tu_attr_ints("kernel_shape", 1, k), tu_attr_ints("strides", 1, s)};
    run("MaxPool", tu_shape(3, 1, 2, 5), iota1, 2, a, &ys, y, 16);
    assert_int_equal(ys.ndim, 3);
    assert_int_equal(ys.dims[2], 2);
    float wantm[] = {2, 4, 7, 9};
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == wantm[i]);
    run("AveragePool", tu_shape(3, 1, 2, 5), iota1, 2, a, &ys, y, 16);
    float wanta[] = {1.5f, 3.5f, 6.5f, 8.5f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], wanta[i], 1e-6);
}

/* ------------------------------------------------------ against naive */

static const pspec g_specs[] = {
    /* kh kw sh sw pt pl pb pr ceil cip */
    {3, 2, 2, 1, 1, 0, 2, 1, 0, 0},
    {3, 2, 2, 1, 1, 0, 2, 1, 1, 0},
    {3, 2, 2, 1, 1, 0, 2, 1, 0, 1},
    {3, 2, 2, 1, 1, 0, 2, 1, 1, 1},
    {2, 3, 2, 2, 0, 1, 1, 0, 0, 0},
    {2, 3, 2, 2, 0, 1, 1, 0, 1, 1},
    {3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
    {3, 3, 2, 2, 1, 1, 1, 1, 1, 0},
    {2, 2, 3, 3, 1, 0, 0, 1, 1, 1},
    {3, 3, 1, 1, 2, 2, 2, 2, 0, 1},
    {5, 4, 2, 3, 0, 0, 0, 0, 1, 0},
};

static void check_vs_naive(int is_max)
{
    enum { N = 2, C = 3, H = 7, W = 5 };
    float x[N * C * H * W], y[1024], r[1024];
    tu_rng rng;
    tu_rng_init(&rng, 7);
    tu_fill(&rng, x, N * C * H * W, -2.0f, 2.0f);
    double worst = 0;
    for (size_t t = 0; t < sizeof g_specs / sizeof g_specs[0]; t++) {
        pspec p = g_specs[t];
        cnv_attr a[6];
        int64_t k[2], s[2], pads[4];
        int na = n_pool_attrs(p, is_max, a, k, s, pads);
        cnv_shape ys;
        run(is_max ? "MaxPool" : "AveragePool", tu_shape(4, N, C, H, W), x, na, a, &ys, y, 1024);
        int oh, ow;
        ref_pool(is_max, x, N * C, H, W, p, r, &oh, &ow);
        assert_int_equal(ys.dims[2], oh);
        assert_int_equal(ys.dims[3], ow);
        int64_t at;
        double d = tu_max_rel_diff(y, r, N * C * oh * ow, &at);
        if (d > worst)
            worst = d;
        if (is_max)
            assert_true(d == 0.0);
        else
            assert_true(d < 1e-6);
    }
    printf("%s vs naive: max rel diff %.3g over %zu configs\n", is_max ? "MaxPool" : "AveragePool",
           worst, sizeof g_specs / sizeof g_specs[0]);
}

static void test_maxpool_naive(void **state)
{
    (void)state;
    check_vs_naive(1);
}

static void test_avgpool_naive(void **state)
{
    (void)state;
    check_vs_naive(0);
}

/* SAME_UPPER / SAME_LOWER / VALID equal explicit pads worked out by hand:
 * H=7,k=3,s=2 -> out 4, total pad 2 (1,1); W=5,k=2,s=2 -> out 3, total 1:
 * SAME_UPPER (0,1), SAME_LOWER (1,0); VALID: out 3 x 2, no pads. */
static void test_pool_auto_pad(void **state)
{
    (void)state;
    enum { N = 2, C = 3, H = 7, W = 5 };
    float x[N * C * H * W], y[512], r[512];
    tu_rng rng;
    tu_rng_init(&rng, 11);
    tu_fill(&rng, x, N * C * H * W, -2.0f, 2.0f);
    int64_t k[] = {3, 2}, s[] = {2, 2};
    const char *modes[] = {"SAME_UPPER", "SAME_LOWER", "VALID"};
    pspec want[] = {{3, 2, 2, 2, 1, 0, 1, 1, 0, 0},
                    {3, 2, 2, 2, 1, 1, 1, 0, 0, 0},
                    {3, 2, 2, 2, 0, 0, 0, 0, 0, 0}};
    for (int is_max = 0; is_max < 2; is_max++)
        for (int t = 0; t < 3; t++) {
            cnv_attr a[] = {tu_attr_ints("kernel_shape", 2, k), tu_attr_ints("strides", 2, s),
                            tu_attr_string("auto_pad", modes[t])};
            cnv_shape ys;
            run(is_max ? "MaxPool" : "AveragePool", tu_shape(4, N, C, H, W), x, 3, a, &ys, y, 512);
            int oh, ow;
            ref_pool(is_max, x, N * C, H, W, want[t], r, &oh, &ow);
            assert_int_equal(ys.dims[2], oh);
            assert_int_equal(ys.dims[3], ow);
            assert_int_equal(oh, t == 2 ? 3 : 4);
            assert_int_equal(ow, t == 2 ? 2 : 3);
            int64_t at;
            assert_true(tu_max_rel_diff(y, r, N * C * oh * ow, &at) < 1e-6);
        }
}

/* ---------------------------------------------------- finite differences */

static void fd_pool(const char *op, pspec p, const char *label, double tol)
{
    enum { N = 2, C = 3, H = 7, W = 5 };
    float x[N * C * H * W];
    fill_distinct(x, N * C * H * W, 0.05f, 3);
    cnv_attr a[6];
    int64_t k[2], s[2], pads[4];
    int na = n_pool_attrs(p, strcmp(op, "MaxPool") == 0, a, k, s, pads);
    tu_tensor in = {"x", tu_shape(4, N, C, H, W), NULL, 0};
    cnv_model *m = tu_one_node(op, 1, &in, na, a);
    cnv_session *sess = tu_session(m, (const float *const[]){x}, 1);
    /* h = 0.01 is a fifth of the gap between values: no max can switch */
    tu_fd_result r = tu_fd_check(sess, m, "y", 1e-2, 1000, 5);
    tu_fd_assert(label, r, tol);
    cnv_session_free(sess);
    cnv_model_free(m);
}

static void test_maxpool_fd(void **state)
{
    (void)state;
    fd_pool("MaxPool", g_specs[1], "MaxPool k3x2 s2x1 pads 1,0,2,1 ceil", 1e-4);
    fd_pool("MaxPool", g_specs[6], "MaxPool k3 s2 pads 1 ceil", 1e-4);
}

static void test_avgpool_fd(void **state)
{
    (void)state;
    fd_pool("AveragePool", g_specs[3], "AveragePool k3x2 s2x1 pads 1,0,2,1 ceil cip=1", 1e-4);
    fd_pool("AveragePool", g_specs[1], "AveragePool k3x2 s2x1 pads 1,0,2,1 ceil cip=0", 1e-4);
    fd_pool("AveragePool", g_specs[8], "AveragePool k2 s3 pads 1,0,0,1 ceil cip=1", 1e-4);
}

/* ------------------------------------------ ties, NaN and -inf, exactly */

static void test_maxpool_ties_nan_inf(void **state)
{
    (void)state;
    int64_t k[] = {2, 2};
    cnv_attr a[] = {tu_attr_ints("kernel_shape", 2, k)};
    float y[4], dx[16];
    float one[4] = {1, 1, 1, 1};
    cnv_shape xs = tu_shape(4, 1, 1, 2, 2);

    /* a tie: the first maximum in row-major order takes the gradient */
    float tie[] = {1, 3, 3, 3};
    run_grad("MaxPool", xs, tie, 1, a, one, y, dx);
    assert_true(y[0] == 3);
    assert_true(dx[0] == 0 && dx[1] == 1 && dx[2] == 0 && dx[3] == 0);
    float flat[] = {2, 2, 2, 2};
    run_grad("MaxPool", xs, flat, 1, a, one, y, dx);
    assert_true(y[0] == 2 && dx[0] == 1 && dx[1] == 0 && dx[2] == 0 && dx[3] == 0);

    /* all NaN: y is NaN, the first element is stored (in bounds) */
    float nan4[] = {NAN, NAN, NAN, NAN};
    run_grad("MaxPool", xs, nan4, 1, a, one, y, dx);
    assert_true(isnan(y[0]));
    assert_true(dx[0] == 1 && dx[1] == 0 && dx[2] == 0 && dx[3] == 0);
    /* a NaN among numbers propagates, and the first NaN is the argmax */
    float some_nan[] = {1, NAN, 5, NAN};
    run_grad("MaxPool", xs, some_nan, 1, a, one, y, dx);
    assert_true(isnan(y[0]));
    assert_true(dx[0] == 0 && dx[1] == 1 && dx[2] == 0 && dx[3] == 0);
    float nan_first[] = {NAN, 7, 9, 8};
    run_grad("MaxPool", xs, nan_first, 1, a, one, y, dx);
    assert_true(isnan(y[0]) && dx[0] == 1 && dx[2] == 0);

    /* all -inf: y = -inf, first element */
    float ninf[] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    run_grad("MaxPool", xs, ninf, 1, a, one, y, dx);
    assert_true(isinf(y[0]) && y[0] < 0);
    assert_true(dx[0] == 1 && dx[1] == 0 && dx[2] == 0 && dx[3] == 0);
    float ninf_one[] = {-INFINITY, -INFINITY, -INFINITY, -5};
    run_grad("MaxPool", xs, ninf_one, 1, a, one, y, dx);
    assert_true(y[0] == -5 && dx[3] == 1 && dx[0] == 0);

    /* padded windows of NaN/-inf on a larger image: every gradient lands
     * on a real element (the gradient sums to the seed) */
    int64_t k3[] = {3, 3}, s2[] = {2, 2}, p[] = {2, 1, 2, 2};
    cnv_attr b[] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("strides", 2, s2),
                    tu_attr_ints("pads", 4, p), tu_attr_int("ceil_mode", 1)};
    float big[16], yb[16], dxb[16], seed[16];
    for (int i = 0; i < 16; i++) {
        big[i] = i % 3 ? NAN : -INFINITY;
        seed[i] = 1;
    }
    run_grad("MaxPool", tu_shape(4, 1, 1, 4, 4), big, 4, b, seed, yb, dxb);
    double tot = 0;
    for (int i = 0; i < 16; i++)
        tot += dxb[i];
    /* 3x3 outputs: H span 4+4-3=5 gives 4 windows, the 4th starts in the
     * bottom padding and is dropped; W span 4 gives 3 */
    int oh = ref_out(4, 3, 2, 2, 2, 1), ow = ref_out(4, 3, 2, 1, 2, 1);
    assert_true(tot == (double)(oh * ow));
}

/* ------------------------------- the vectorized interior path, exactly */

/* The first maximum of window (oh, ow) of plane xp, clipped, a NaN winning
 * (the first one): the rule MaxPool documents, spelled out naively. */
static int ref_argmax(const float *xp, int H, int W, pspec p, int oh, int ow)
{
    int best = -1;
    for (int i = oh * p.sh - p.pt; i < oh * p.sh - p.pt + p.kh; i++)
        for (int j = ow * p.sw - p.pl; j < ow * p.sw - p.pl + p.kw; j++) {
            if (i < 0 || i >= H || j < 0 || j >= W)
                continue;
            float v = xp[i * W + j];
            if (best < 0 || (isnan(v) && !isnan(xp[best])) || (!isnan(xp[best]) && v > xp[best]))
                best = i * W + j;
        }
    return best;
}

/* Rows wide enough for the eight-at-a-time loops and their tails, planes
 * tall enough for several bands of the fast path (32 output rows each),
 * values on a coarse grid (many ties, signed zeros), a few -inf, and NaN
 * in one plane (which then takes the general path):
 * y and, through backward with distinct seeds, every argmax must equal
 * the naive rule exactly. */
static void test_maxpool_wide_exact(void **state)
{
    (void)state;
    static const pspec specs[] = {
        /* kh kw sh sw pt pl pb pr ceil cip */
        {3, 3, 2, 2, 0, 0, 0, 0, 1, 0}, /* SqueezeNet */
        {2, 2, 2, 2, 0, 0, 0, 0, 0, 0},
        {3, 3, 1, 1, 1, 1, 1, 1, 0, 0},
        {1, 3, 1, 4, 0, 0, 0, 0, 0, 0}, /* stride wider than the window */
        {5, 4, 2, 3, 2, 1, 0, 2, 1, 0},
        {2, 1, 2, 1, 0, 0, 0, 0, 0, 0},
    };
    enum { NC = 3, H = 75, W = 61 };
    static float x[NC * H * W], seed[NC * H * W], y[NC * H * W], dx[NC * H * W], want[NC * H * W];
    tu_rng rng;
    tu_rng_init(&rng, 99);
    for (int i = 0; i < NC * H * W; i++) {
        float u = tu_uniform(&rng, 0.0f, 1.0f);
        x[i] = (float)(int)(u * 7.0f) - 3.0f;     /* -3..3: ties everywhere */
        if (x[i] == 0.0f && (i & 1))
            x[i] = -0.0f;
        if (i / (H * W) == 1 && u < 0.01f) /* plane 1 only: the others take the fast path */
            x[i] = NAN;
        else if (u > 0.995f)
            x[i] = -INFINITY;
    }
    int checked = 0;
    for (size_t t = 0; t < sizeof specs / sizeof specs[0]; t++) {
        pspec p = specs[t];
        int OH = ref_out(H, p.kh, p.sh, p.pt, p.pb, p.ceil), OW = ref_out(W, p.kw, p.sw, p.pl, p.pr, p.ceil);
        for (int i = 0; i < NC * OH * OW; i++)
            seed[i] = (float)(i + 1);
        cnv_attr a[6];
        int64_t k[2], s[2], pads[4];
        int na = n_pool_attrs(p, 1, a, k, s, pads);
        run_grad("MaxPool", tu_shape(4, 1, NC, H, W), x, na, a, seed, y, dx);
        memset(want, 0, sizeof want);
        for (int c = 0; c < NC; c++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    int o = (c * OH + oh) * OW + ow;
                    int bi = ref_argmax(x + c * H * W, H, W, p, oh, ow);
                    float v = x[c * H * W + bi];
                    assert_true(isnan(v) ? isnan(y[o]) : memcmp(&y[o], &v, sizeof v) == 0);
                    want[c * H * W + bi] += seed[o];
                    checked++;
                }
        for (int i = 0; i < NC * H * W; i++)
            assert_true(dx[i] == want[i]);
    }
    printf("MaxPool wide rows with ties/NaN/-inf: %d outputs and argmaxes exact over %zu configs\n",
           checked, sizeof specs / sizeof specs[0]);
}

/* ------------------------------------------------------ GlobalAveragePool */

static void test_gap(void **state)
{
    (void)state;
    enum { N = 2, C = 3, H = 7, W = 5 };
    float x[N * C * H * W], y[N * C];
    tu_rng rng;
    tu_rng_init(&rng, 5);
    tu_fill(&rng, x, N * C * H * W, -1, 1);
    cnv_shape ys;
    run("GlobalAveragePool", tu_shape(4, N, C, H, W), x, 0, NULL, &ys, y, N * C);
    assert_int_equal(ys.ndim, 4);
    assert_true(ys.dims[0] == N && ys.dims[1] == C && ys.dims[2] == 1 && ys.dims[3] == 1);
    for (int i = 0; i < N * C; i++) {
        double s = 0;
        for (int j = 0; j < H * W; j++)
            s += x[i * H * W + j];
        assert_float_equal(y[i], s / (H * W), 1e-6);
    }
    /* rank 3 */
    run("GlobalAveragePool", tu_shape(3, 2, 3, 5), x, 0, NULL, &ys, y, N * C);
    assert_true(ys.ndim == 3 && ys.dims[2] == 1);
    assert_float_equal(y[4], (x[20] + x[21] + x[22] + x[23] + x[24]) / 5, 1e-6);

    tu_tensor in = {"x", tu_shape(4, N, C, H, W), NULL, 0};
    cnv_model *m = tu_one_node("GlobalAveragePool", 1, &in, 0, NULL);
    cnv_session *s = tu_session(m, NULL, 9);
    tu_fd_assert("GlobalAveragePool 2x3x7x5", tu_fd_check(s, m, "y", 1e-2, 1000, 4), 1e-4);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ---------------------------------------------------------------- errors */

static void test_pool_errors(void **state)
{
    (void)state;
    cnv_shape xs = tu_shape(4, 1, 2, 3, 3);
    int64_t k0[] = {0, 2}, k2[] = {2, 2}, s0[] = {1, 0}, pneg[] = {0, -1, 0, 0};
    int64_t p3[] = {0, 1, 0};
    cnv_attr bad_k[] = {tu_attr_ints("kernel_shape", 2, k0)};
    cnv_attr bad_s[] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("strides", 2, s0)};
    cnv_attr bad_p[] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("pads", 4, pneg)};
    cnv_attr bad_pn[] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("pads", 3, p3)};
    cnv_attr bad_ap[] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_string("auto_pad", "SAME")};
    cnv_attr bad_cm[] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_int("ceil_mode", 2)};
    const char *ops[] = {"MaxPool", "AveragePool"};
    for (int i = 0; i < 2; i++) {
        expect_parse_error(ops[i], xs, 0, NULL, CNV_ERR_FORMAT); /* no kernel_shape */
        expect_parse_error(ops[i], xs, 1, bad_k, CNV_ERR_FORMAT);
        expect_parse_error(ops[i], xs, 2, bad_s, CNV_ERR_FORMAT);
        expect_parse_error(ops[i], xs, 2, bad_p, CNV_ERR_FORMAT);
        expect_parse_error(ops[i], xs, 2, bad_pn, CNV_ERR_FORMAT);
        expect_parse_error(ops[i], xs, 2, bad_ap, CNV_ERR_FORMAT);
        expect_parse_error(ops[i], xs, 2, bad_cm, CNV_ERR_FORMAT);
    }

    cnv_status st;
    cnv_model *m;
    /* output size < 1 */
    int64_t k5[] = {5, 5};
    cnv_attr big_k[] = {tu_attr_ints("kernel_shape", 2, k5)};
    m = build("MaxPool", 13, "pool_big", xs, 1, 1, big_k, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE, "pool_big");
    cnv_model_free(m);
    m = build("AveragePool", 13, "avg_big", xs, 1, 1, big_k, &st);
    expect_plan_error(m, CNV_ERR_SHAPE, "avg_big");
    cnv_model_free(m);
    /* 3-D pooling */
    int64_t k3d[] = {2, 2, 2};
    cnv_attr a3[] = {tu_attr_ints("kernel_shape", 3, k3d)};
    m = build("MaxPool", 13, "pool3d", tu_shape(5, 1, 1, 4, 4, 4), 1, 1, a3, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED, "pool3d");
    cnv_model_free(m);
    /* kernel rank does not match the input */
    cnv_attr a2[] = {tu_attr_ints("kernel_shape", 2, k2)};
    m = build("MaxPool", 13, "pool_rank", tu_shape(3, 1, 2, 9), 1, 1, a2, &st);
    expect_plan_error(m, CNV_ERR_SHAPE, "pool_rank");
    cnv_model_free(m);
    /* dilations */
    int64_t d2[] = {2, 1};
    cnv_attr ad[] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("dilations", 2, d2)};
    m = build("MaxPool", 13, "pool_dil", xs, 1, 2, ad, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED, "pool_dil");
    cnv_model_free(m);
    /* the Indices output */
    m = build("MaxPool", 13, "pool_idx", xs, 2, 1, a2, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED, "pool_idx");
    cnv_model_free(m);
    /* padding as large as the kernel: windows of padding only */
    int64_t p2[] = {2, 0, 0, 0};
    cnv_attr ap[] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("pads", 4, p2)};
    m = build("AveragePool", 13, "pool_padonly", xs, 1, 2, ap, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_UNSUPPORTED, "pool_padonly");
    cnv_model_free(m);
    /* GlobalAveragePool on a 2-D input */
    m = build("GlobalAveragePool", 13, "gap2d", tu_shape(2, 3, 4), 1, 0, NULL, &st);
    assert_int_equal(st, CNV_OK);
    expect_plan_error(m, CNV_ERR_SHAPE, "gap2d");
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_hand),
        cmocka_unit_test(test_avgpool_hand),
        cmocka_unit_test(test_pool_1d),
        cmocka_unit_test(test_maxpool_naive),
        cmocka_unit_test(test_avgpool_naive),
        cmocka_unit_test(test_pool_auto_pad),
        cmocka_unit_test(test_maxpool_fd),
        cmocka_unit_test(test_avgpool_fd),
        cmocka_unit_test(test_maxpool_ties_nan_inf),
        cmocka_unit_test(test_maxpool_wide_exact),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_pool_errors),
    };
    /* The same checks with the work split over 3 threads (uneven splits
     * on these sizes): planes per thread. */
    const struct CMUnitTest threaded[] = {
        cmocka_unit_test(test_maxpool_naive),
        cmocka_unit_test(test_avgpool_naive),
        cmocka_unit_test(test_maxpool_fd),
        cmocka_unit_test(test_avgpool_fd),
        cmocka_unit_test(test_maxpool_ties_nan_inf),
        cmocka_unit_test(test_maxpool_wide_exact),
        cmocka_unit_test(test_gap),
    };
    /* MaxPool's register path with SSE2 where the CPU would take AVX2 */
    const struct CMUnitTest sse2[] = {
        cmocka_unit_test(test_maxpool_naive),
        cmocka_unit_test(test_maxpool_ties_nan_inf),
        cmocka_unit_test(test_maxpool_wide_exact),
    };
    int failed = cmocka_run_group_tests_name("one thread", tests, NULL, NULL);
    cnv_set_threads(3);
    failed += cmocka_run_group_tests_name("three threads", threaded, NULL, NULL);
    cnv_maxpool_no_avx2 = 1;
    failed += cmocka_run_group_tests_name("MaxPool without AVX2", sse2, NULL, NULL);
    return failed;
}
