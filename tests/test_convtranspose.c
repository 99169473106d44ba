/* ConvTranspose: forward against hand-worked values and a naive scatter loop
 * written here (every input pixel times every kernel tap, added where it
 * lands), gradients of X, W and B by central finite differences, the +=
 * and grad_store contracts of the op interface, its FLOPs, and the errors
 * plan reports. (ONNX's node tests run in test_onnx_conformance.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "engine/op.h"

/* One transposed convolution. pads[] are the ones the reference cuts from
 * the full output (top, left, bottom, right), worked out by hand from
 * ONNX's rules when the node gets auto_pad or output_shape instead; a
 * negative end pad is an output_shape past the full size (positions no
 * input reaches, bias only). */
typedef struct ct_case {
    const char *label;
    int n, c, h, w, m, kh, kw; /* m: output channels */
    int sh, sw, dh, dw;
    int pads[4];
    int outpad[2];
    int group;
    const char *auto_pad; /* NULL: none */
    int out_shape[2];     /* {0, 0}: none; else given instead of pads */
    int bias;
} ct_case;

static int out_h(const ct_case *k)
{
    return k->sh * (k->h - 1) + k->outpad[0] + (k->kh - 1) * k->dh + 1 - k->pads[0] - k->pads[2];
}

static int out_w(const ct_case *k)
{
    return k->sw * (k->w - 1) + k->outpad[1] + (k->kw - 1) * k->dw + 1 - k->pads[1] - k->pads[3];
}

/* y = b, then each x[n][ci][ih][iw] * w[ci][co][ki][kj] added at output
 * (ih*sh - pt + ki*dh, iw*sw - pl + kj*dw) of channel group*mg + co, when
 * inside; summed in double. */
static void naive_convt(const ct_case *k, const float *x, const float *w, const float *b, float *y)
{
    int oh = out_h(k), ow = out_w(k), cg = k->c / k->group, mg = k->m / k->group;
    int64_t ny = (int64_t)k->n * k->m * oh * ow;
    double *acc = calloc((size_t)ny, sizeof *acc);
    assert_non_null(acc);
    for (int n = 0; n < k->n; n++)
        for (int ci = 0; ci < k->c; ci++)
            for (int ih = 0; ih < k->h; ih++)
                for (int iw = 0; iw < k->w; iw++) {
                    double xv = x[((n * k->c + ci) * k->h + ih) * k->w + iw];
                    int gr = ci / cg;
                    for (int co = 0; co < mg; co++)
                        for (int ki = 0; ki < k->kh; ki++)
                            for (int kj = 0; kj < k->kw; kj++) {
                                int r = ih * k->sh - k->pads[0] + ki * k->dh;
                                int s = iw * k->sw - k->pads[1] + kj * k->dw;
                                if (r < 0 || r >= oh || s < 0 || s >= ow)
                                    continue;
                                int m = gr * mg + co;
                                acc[((int64_t)(n * k->m + m) * oh + r) * ow + s] +=
                                    xv * w[((ci * mg + co) * k->kh + ki) * k->kw + kj];
                            }
                }
    for (int n = 0; n < k->n; n++)
        for (int m = 0; m < k->m; m++)
            for (int i = 0; i < oh * ow; i++) {
                int64_t at = (int64_t)(n * k->m + m) * oh * ow + i;
                y[at] = (float)(acc[at] + (b ? b[m] : 0.0));
            }
    free(acc);
}

typedef struct ct_attrs {
    int64_t strides[2], dil[2], pads[4], kernel[2], outpad[2], oshape[2];
    cnv_attr a[8];
    int n;
} ct_attrs;

static void make_attrs(const ct_case *k, ct_attrs *at)
{
    at->strides[0] = k->sh;
    at->strides[1] = k->sw;
    at->dil[0] = k->dh;
    at->dil[1] = k->dw;
    at->kernel[0] = k->kh;
    at->kernel[1] = k->kw;
    at->outpad[0] = k->outpad[0];
    at->outpad[1] = k->outpad[1];
    at->oshape[0] = k->out_shape[0];
    at->oshape[1] = k->out_shape[1];
    for (int i = 0; i < 4; i++)
        at->pads[i] = k->pads[i];
    at->n = 0;
    at->a[at->n++] = tu_attr_ints("strides", 2, at->strides);
    at->a[at->n++] = tu_attr_ints("dilations", 2, at->dil);
    at->a[at->n++] = tu_attr_int("group", k->group);
    at->a[at->n++] = tu_attr_ints("kernel_shape", 2, at->kernel);
    if (k->outpad[0] || k->outpad[1])
        at->a[at->n++] = tu_attr_ints("output_padding", 2, at->outpad);
    if (k->auto_pad)
        at->a[at->n++] = tu_attr_string("auto_pad", k->auto_pad);
    if (k->out_shape[0])
        at->a[at->n++] = tu_attr_ints("output_shape", 2, at->oshape);
    else if (!k->auto_pad)
        at->a[at->n++] = tu_attr_ints("pads", 4, at->pads);
}

typedef struct ct_data {
    float *x, *w, *b;
    int64_t nx, nw, nb, ny;
} ct_data;

static ct_data make_data(const ct_case *k, uint64_t seed)
{
    ct_data d;
    tu_rng r;
    tu_rng_init(&r, seed);
    d.nx = (int64_t)k->n * k->c * k->h * k->w;
    d.nw = (int64_t)k->c * (k->m / k->group) * k->kh * k->kw;
    d.nb = k->m;
    d.ny = (int64_t)k->n * k->m * out_h(k) * out_w(k);
    d.x = malloc((size_t)d.nx * sizeof(float));
    d.w = malloc((size_t)d.nw * sizeof(float));
    d.b = malloc((size_t)d.nb * sizeof(float));
    assert_true(d.x && d.w && d.b);
    tu_fill(&r, d.x, d.nx, -1.0f, 1.0f);
    tu_fill(&r, d.w, d.nw, -1.0f, 1.0f);
    tu_fill(&r, d.b, d.nb, -1.0f, 1.0f);
    return d;
}

static void free_data(ct_data *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
}

/* A one-node model; `input` names which of x, w, b is the graph input,
 * the others are constants from d. */
static cnv_model *ct_model(const ct_case *k, const ct_data *d, const char *input)
{
    ct_attrs at;
    make_attrs(k, &at);
    tu_tensor ins[3] = {
        { "x", tu_shape(4, k->n, k->c, k->h, k->w), d->x, strcmp(input, "x") != 0 },
        { "w", tu_shape(4, k->c, k->m / k->group, k->kh, k->kw), d->w, strcmp(input, "w") != 0 },
        { "b", tu_shape(1, k->m), d->b, strcmp(input, "b") != 0 },
    };
    return tu_one_node("ConvTranspose", k->bias ? 3 : 2, ins, at.n, at.a);
}

/* Strides, pads, dilations, groups, output_padding, output_shape (smaller
 * and larger than the full output), auto_pad, the 1x1 GEMM-only path, and
 * sizes that threads split inside one image or take image by image. */
static const ct_case g_cases[] = {
    { "k3 s1, 1 -> 2 ch", 1, 1, 3, 3, 2, 3, 3, 1, 1, 1, 1, { 0, 0, 0, 0 }, { 0, 0 }, 1, NULL, { 0, 0 }, 0 },
    { "k3x2 s2,1 pads 1,0,1,1", 2, 3, 4, 5, 4, 3, 2, 2, 1, 1, 1, { 1, 0, 1, 1 }, { 0, 0 }, 1, NULL, { 0, 0 }, 1 },
    { "d2,1 s1,2 outpad 0,1 pads 0,1,2,0", 1, 2, 3, 4, 3, 3, 3, 1, 2, 2, 1, { 0, 1, 2, 0 }, { 0, 1 }, 1, NULL, { 0, 0 }, 1 },
    { "groups 2, k2x3 s2 outpad 1,1", 2, 4, 3, 3, 6, 2, 3, 2, 2, 1, 1, { 1, 1, 0, 0 }, { 1, 1 }, 2, NULL, { 0, 0 }, 1 },
    { "depthwise 3, k3 s2 pads 1", 1, 3, 4, 4, 3, 3, 3, 2, 2, 1, 1, { 1, 1, 1, 1 }, { 0, 0 }, 3, NULL, { 0, 0 }, 0 },
    { "1x1 (GEMM only)", 2, 5, 3, 4, 3, 1, 1, 1, 1, 1, 1, { 0, 0, 0, 0 }, { 0, 0 }, 1, NULL, { 0, 0 }, 1 },
    { "1x1 stride 2 (col2im)", 1, 2, 3, 3, 2, 1, 1, 2, 2, 1, 1, { 0, 0, 0, 0 }, { 0, 0 }, 1, NULL, { 0, 0 }, 1 },
    { "1x1 groups 2, no bias", 3, 4, 2, 3, 6, 1, 1, 1, 1, 1, 1, { 0, 0, 0, 0 }, { 0, 0 }, 2, NULL, { 0, 0 }, 0 },
    /* full 9x7, asked 10x8: one extra row and column at the end */
    { "output_shape 10x8 > full 9x7", 1, 1, 3, 3, 2, 3, 3, 3, 2, 1, 1, { 0, 0, -1, -1 }, { 0, 0 }, 1, NULL, { 10, 8 }, 1 },
    /* full 7x7, asked 6x5: totals 1 and 2, the odd one at the beginning */
    { "output_shape 6x5 < full 7x7", 2, 2, 3, 3, 2, 3, 3, 2, 2, 1, 1, { 1, 1, 0, 1 }, { 0, 0 }, 1, NULL, { 6, 5 }, 1 },
    /* the same with SAME_UPPER: the odd one at the end */
    { "output_shape 6x5 SAME_UPPER", 1, 2, 3, 3, 3, 3, 3, 2, 2, 1, 1, { 0, 1, 1, 1 }, { 0, 0 }, 1, "SAME_UPPER", { 6, 5 }, 0 },
    /* SAME: in*stride = 6x8 of full 7x9 */
    { "SAME_UPPER k3 s2", 1, 2, 3, 4, 2, 3, 3, 2, 2, 1, 1, { 0, 0, 1, 1 }, { 0, 0 }, 1, "SAME_UPPER", { 0, 0 }, 1 },
    { "SAME_LOWER k3 s2", 1, 2, 3, 4, 2, 3, 3, 2, 2, 1, 1, { 1, 1, 0, 0 }, { 0, 0 }, 1, "SAME_LOWER", { 0, 0 }, 1 },
    /* SAME with a full size 5 < in*stride 6: extended at the end */
    { "SAME_UPPER k1 s2 (extended)", 1, 2, 3, 3, 2, 1, 1, 2, 2, 1, 1, { 0, 0, -1, -1 }, { 0, 0 }, 1, "SAME_UPPER", { 0, 0 }, 1 },
    { "VALID k2 s2 (pads ignored)", 1, 2, 3, 3, 2, 2, 2, 2, 2, 1, 1, { 0, 0, 0, 0 }, { 0, 0 }, 1, "VALID", { 0, 0 }, 0 },
    { "outpad 1,1 under dilation 2", 1, 2, 3, 3, 2, 2, 2, 1, 1, 2, 2, { 0, 0, 0, 0 }, { 1, 1 }, 1, NULL, { 0, 0 }, 1 },
    /* one large image (threads split its GEMM and rows), then 12 units */
    { "k3 s2 pads 1, 16 -> 24 ch on 10x9", 1, 16, 10, 9, 24, 3, 3, 2, 2, 1, 1, { 1, 1, 1, 1 }, { 0, 0 }, 1, NULL, { 0, 0 }, 1 },
    { "batch 6 groups 2, k3 pads 1", 6, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, { 0, 0 }, 2, NULL, { 0, 0 }, 1 },
};
#define N_CASES ((int)(sizeof g_cases / sizeof g_cases[0]))

static void check_forward(const ct_case *k, uint64_t seed)
{
    ct_data d = make_data(k, seed);
    cnv_model *m = ct_model(k, &d, "x");
    const float *in[1] = { d.x };
    cnv_session *s = tu_session(m, in, seed);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_int_equal(ys.ndim, 4);
    assert_int_equal(ys.dims[0], k->n);
    assert_int_equal(ys.dims[1], k->m);
    assert_int_equal(ys.dims[2], out_h(k));
    assert_int_equal(ys.dims[3], out_w(k));
    float *ref = malloc((size_t)d.ny * sizeof(float));
    assert_non_null(ref);
    naive_convt(k, d.x, d.w, k->bias ? d.b : NULL, ref);
    int64_t at;
    double e = tu_max_rel_diff(y, ref, d.ny, &at);
    printf("convtranspose forward %-36s y %dx%dx%dx%d: max rel diff %.3g\n", k->label, k->n, k->m,
           out_h(k), out_w(k), e);
    assert_true(e < 1e-5);
    free(ref);
    cnv_session_free(s);
    cnv_model_free(m);
    free_data(&d);
}

static void forward_vs_naive(void **state)
{
    (void)state;
    for (int i = 0; i < N_CASES; i++)
        check_forward(&g_cases[i], 100 + (uint64_t)i);
}

/* Runs x (1x1x2x2 = 1,2,3,4) through a 2x2 kernel of ones, bias 0.5. */
static void run_hand(int64_t stride, const float *expect, int side)
{
    float x[4] = { 1, 2, 3, 4 }, w[4] = { 1, 1, 1, 1 }, b[1] = { 0.5f };
    tu_tensor ins[3] = {
        { "x", tu_shape(4, 1, 1, 2, 2), NULL, 0 },
        { "w", tu_shape(4, 1, 1, 2, 2), w, 1 },
        { "b", tu_shape(1, 1), b, 1 },
    };
    int64_t st[2] = { stride, stride };
    cnv_attr a = tu_attr_ints("strides", 2, st);
    cnv_model *m = tu_one_node("ConvTranspose", 3, ins, 1, &a);
    const float *in[1] = { x };
    cnv_session *s = tu_session(m, in, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_int_equal(ys.dims[2], side);
    assert_int_equal(ys.dims[3], side);
    for (int i = 0; i < side * side; i++)
        assert_float_equal(y[i], expect[i], 1e-6);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void forward_hand(void **state)
{
    (void)state;
    /* stride 2: each input pixel becomes its own 2x2 block */
    const float e2[16] = { 1.5f, 1.5f, 2.5f, 2.5f, 1.5f, 1.5f, 2.5f, 2.5f,
                           3.5f, 3.5f, 4.5f, 4.5f, 3.5f, 3.5f, 4.5f, 4.5f };
    run_hand(2, e2, 4);
    /* stride 1: the blocks overlap; the centre gets all four inputs */
    const float e1[9] = { 1.5f, 3.5f, 2.5f, 4.5f, 10.5f, 6.5f, 3.5f, 7.5f, 4.5f };
    run_hand(1, e1, 3);
}

/* ConvTranspose is linear in each of x, w, b: central differences have no
 * truncation error, the step only trades float rounding. */
#define FD_H 1e-2
#define FD_TOL 1e-2
#define FD_MAX 60

/* The gradient of one of x, w, b: that one is the graph input, the others
 * constants, so the op's skip of absent gradients is exercised too. */
static void check_grad_one(const ct_case *k, const char *which, uint64_t seed)
{
    ct_data d = make_data(k, seed);
    cnv_model *m = ct_model(k, &d, which);
    cnv_session *s = tu_session(m, NULL, seed);
    char label[128];
    snprintf(label, sizeof label, "ConvTranspose d%s %s", which, k->label);
    tu_fd_assert(label, tu_fd_check(s, m, "y", FD_H, FD_MAX, seed + 7), FD_TOL);
    cnv_session_free(s);
    cnv_model_free(m);
    free_data(&d);
}

static void backward_fd(void **state)
{
    (void)state;
    for (int i = 0; i < N_CASES; i++) {
        const ct_case *k = &g_cases[i];
        check_grad_one(k, "x", 500 + (uint64_t)i);
        check_grad_one(k, "w", 600 + (uint64_t)i);
        if (k->bias)
            check_grad_one(k, "b", 700 + (uint64_t)i);
    }
}

/* x the input, w and b constants with parameter gradients on: all three
 * gradients in one backward (dx and dw share one im2col of dy). */
static void backward_fd_param_grads(void **state)
{
    (void)state;
    static const int pick[] = { 1, 3, 5, 9, 13, 16, 17 };
    for (size_t i = 0; i < sizeof pick / sizeof pick[0]; i++) {
        const ct_case *k = &g_cases[pick[i]];
        ct_data d = make_data(k, 800 + i);
        cnv_model *m = ct_model(k, &d, "x");
        cnv_session *s;
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        assert_int_equal(cnv_session_set_param_grads(s, 1), CNV_OK);
        cnv_shape xs = tu_shape(4, k->n, k->c, k->h, k->w);
        if (cnv_session_plan_shapes(s, 1, &xs) != CNV_OK)
            fail_msg("plan: %s", cnv_session_errmsg(s));
        float *x;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
        memcpy(x, d.x, (size_t)d.nx * sizeof(float));
        char label[128];
        snprintf(label, sizeof label, "ConvTranspose dX,dW%s (param grads) %s", k->bias ? ",dB" : "",
                 k->label);
        tu_fd_assert(label, tu_fd_check(s, m, "y", FD_H, FD_MAX, 900 + i), FD_TOL);
        cnv_session_free(s);
        cnv_model_free(m);
        free_data(&d);
    }
}

/* The op run directly on a hand-made context: backward adds (twice from
 * zero gives twice the once), overwrites under grad_store whatever the
 * gradients held, leaves alone an input whose gradient is NULL, and
 * reports the FLOPs of its GEMMs. */
static void run_contract(const ct_case *k)
{
    const cnv_op *op = cnv_op_find("ConvTranspose");
    assert_non_null(op);
    ct_attrs at;
    make_attrs(k, &at);
    char name[] = "contract";
    cnv_node node = { 0 };
    node.name = name;
    node.op = op;
    node.n_in = 3;
    node.n_out = 1;
    node.n_attrs = at.n;
    node.attrs = at.a;
    void *params = calloc(1, op->params_size);
    assert_non_null(params);
    node.params = params;
    cnv_err e;
    cnv_err_clear(&e);
    assert_int_equal(op->parse(&node, params, 13, &e), CNV_OK);

    ct_data d = make_data(k, 77);
    cnv_val vx = { 0 }, vw = { 0 }, vb = { 0 }, vy = { 0 };
    vx.shape = tu_shape(4, k->n, k->c, k->h, k->w);
    vw.shape = tu_shape(4, k->c, k->m / k->group, k->kh, k->kw);
    vb.shape = tu_shape(1, k->m);
    vx.data = d.x;
    vw.data = d.w;
    vb.data = d.b;
    vx.count = d.nx;
    vw.count = d.nw;
    vb.count = d.nb;
    cnv_val *ins[3] = { &vx, &vw, &vb }, *outs[1] = { &vy };
    cnv_op_ctx *c = aligned_alloc(64, (sizeof *c + 63) / 64 * 64);
    assert_non_null(c);
    memset(c, 0, sizeof *c);
    c->node = &node;
    c->params = params;
    c->in = ins;
    c->out = outs;
    size_t state = 0, work = 0;
    assert_int_equal(op->plan(c, &state, &work, &e), CNV_OK);
    c->work = malloc(work ? work : 1);
    assert_non_null(c->work);
    vy.count = cnv_shape_count(&vy.shape);
    assert_int_equal(vy.count, d.ny);
    double flops = 2.0 * k->n * k->c * (k->m / k->group) * k->kh * k->kw * k->h * k->w;
    assert_true(op->flops(c) == flops);
    vy.data = malloc((size_t)d.ny * sizeof(float));
    vy.grad = malloc((size_t)d.ny * sizeof(float));
    assert_true(vy.data && vy.grad);
    float *g1[3], *g2[3], *g3[3];
    int64_t cnt[3] = { d.nx, d.nw, d.nb };
    for (int i = 0; i < 3; i++) {
        g1[i] = calloc((size_t)cnt[i], sizeof(float));
        g2[i] = malloc((size_t)cnt[i] * sizeof(float));
        g3[i] = malloc((size_t)cnt[i] * sizeof(float));
        assert_true(g1[i] && g2[i] && g3[i]);
    }
    tu_rng r;
    tu_rng_init(&r, 5);
    tu_fill(&r, vy.grad, d.ny, -1.0f, 1.0f);
    op->forward(c);
    for (int i = 0; i < 3; i++)
        ins[i]->grad = g1[i];
    op->backward(c);
    for (int i = 0; i < 3; i++) {
        for (int64_t j = 0; j < cnt[i]; j++) {
            g2[i][j] = 0.25f;
            g3[i][j] = NAN; /* garbage grad_store must not read */
        }
        ins[i]->grad = g2[i];
    }
    op->backward(c);
    unsigned char store[4] = { 1, 1, 1, 0 };
    c->grad_store = store;
    for (int i = 0; i < 3; i++)
        ins[i]->grad = g3[i];
    op->backward(c);
    c->grad_store = NULL;
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < cnt[i]; j++) {
            assert_true(fabs((double)g2[i][j] - 0.25 - g1[i][j]) < 1e-5);
            assert_true(g3[i][j] == g1[i][j]);
        }
    /* only dw wanted: dx and db untouched */
    vx.grad = NULL;
    vb.grad = NULL;
    vw.grad = g2[1];
    memcpy(g2[1], g1[1], (size_t)cnt[1] * sizeof(float));
    op->backward(c);
    for (int64_t j = 0; j < cnt[1]; j++)
        assert_true(fabs((double)g2[1][j] - 2.0 * g1[1][j]) < 1e-5);
    for (int i = 0; i < 3; i++) {
        free(g1[i]);
        free(g2[i]);
        free(g3[i]);
    }
    free(vy.data);
    free(vy.grad);
    free(c->work);
    free(c);
    free(params);
    free_data(&d);
}

static void backward_contract(void **state)
{
    (void)state;
    run_contract(&g_cases[1]); /* im2col + col2im */
    run_contract(&g_cases[5]); /* 1x1 GEMM only */
    run_contract(&g_cases[3]); /* groups, output_padding */
}

/* ---- errors: each status, and a message naming the node ---- */

static cnv_status try_convt(cnv_shape xs, cnv_shape ws, const cnv_shape *bs, int n_attrs, const cnv_attr *attrs,
                            char *msg, size_t len)
{
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    static float zeros[4096];
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_true(cnv_shape_count(&ws) <= 4096);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, zeros), CNV_OK);
    if (bs)
        assert_int_equal(cnv_model_add_const(m, "b", CNV_FLOAT32, bs, zeros), CNV_OK);
    const char *in[3] = { "x", "w", "b" }, *out[1] = { "y" };
    cnv_status st = cnv_model_add_node(m, "ConvTranspose", "bad_convt", bs ? 3 : 2, in, 1, out, n_attrs, attrs);
    snprintf(msg, len, "%s", cnv_model_errmsg(m));
    if (st == CNV_OK) {
        assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
        assert_int_equal(cnv_session_create(m, &s), CNV_OK);
        st = cnv_session_plan_shapes(s, 1, &xs);
        snprintf(msg, len, "%s", cnv_session_errmsg(s));
    }
    cnv_session_free(s);
    cnv_model_free(m);
    return st;
}

static void expect_err(const char *what, cnv_status st, cnv_status want, const char *msg, const char *mention)
{
    printf("convtranspose error %-26s -> %s: %s\n", what, cnv_status_string(st), msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(msg, "bad_convt"));
    if (mention)
        assert_non_null(strstr(msg, mention));
}

static void errors(void **state)
{
    (void)state;
    char msg[600];
    cnv_shape x = tu_shape(4, 1, 4, 5, 5), w = tu_shape(4, 4, 2, 3, 3);
    cnv_attr a;
    cnv_status st;

    const int64_t s0[2] = { 1, 0 }, pneg[4] = { 0, -1, 0, 0 }, opneg[2] = { -1, 0 };
    a = tu_attr_ints("strides", 2, s0);
    st = try_convt(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("stride 0", st, CNV_ERR_FORMAT, msg, "strides");
    a = tu_attr_ints("pads", 4, pneg);
    st = try_convt(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("negative pad", st, CNV_ERR_FORMAT, msg, "pads");
    a = tu_attr_ints("output_padding", 2, opneg);
    st = try_convt(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("negative output_padding", st, CNV_ERR_FORMAT, msg, "output_padding");
    a = tu_attr_int("group", 0);
    st = try_convt(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("group 0", st, CNV_ERR_FORMAT, msg, "group");

    /* W's first dimension must be X's channels */
    st = try_convt(x, tu_shape(4, 3, 2, 3, 3), NULL, 0, NULL, msg, sizeof msg);
    expect_err("W channels != C", st, CNV_ERR_SHAPE, msg, "3x2x3x3");
    a = tu_attr_int("group", 3);
    st = try_convt(tu_shape(4, 1, 4, 5, 5), w, NULL, 1, &a, msg, sizeof msg);
    expect_err("group not dividing C", st, CNV_ERR_SHAPE, msg, "group 3");
    const int64_t k2[2] = { 2, 2 };
    a = tu_attr_ints("kernel_shape", 2, k2);
    st = try_convt(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("kernel_shape != W", st, CNV_ERR_SHAPE, msg, "kernel_shape");
    /* M = 2 output channels, B has 3 */
    cnv_shape b3 = tu_shape(1, 3);
    st = try_convt(x, w, &b3, 0, NULL, msg, sizeof msg);
    expect_err("B size != M", st, CNV_ERR_SHAPE, msg, "B 3");
    /* full size 7, pads 4 + 3 leave nothing */
    const int64_t pbig[4] = { 4, 0, 3, 0 };
    a = tu_attr_ints("pads", 4, pbig);
    st = try_convt(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("pads eat the output", st, CNV_ERR_SHAPE, msg, "pads");
    const int64_t os3[3] = { 1, 2, 3 };
    a = tu_attr_ints("output_shape", 3, os3);
    st = try_convt(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("output_shape of 3", st, CNV_ERR_UNSUPPORTED, msg, "output_shape");

    /* 1-D and 3-D */
    st = try_convt(tu_shape(3, 1, 4, 9), tu_shape(3, 4, 2, 3), NULL, 0, NULL, msg, sizeof msg);
    expect_err("1-D", st, CNV_ERR_UNSUPPORTED, msg, "2-D");
    st = try_convt(tu_shape(5, 1, 4, 5, 5, 5), tu_shape(5, 4, 2, 3, 3, 3), NULL, 0, NULL, msg, sizeof msg);
    expect_err("3-D", st, CNV_ERR_UNSUPPORTED, msg, "2-D");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_hand),
        cmocka_unit_test(forward_vs_naive),
        cmocka_unit_test(backward_fd),
        cmocka_unit_test(backward_fd_param_grads),
        cmocka_unit_test(backward_contract),
        cmocka_unit_test(errors),
    };
    /* again on 3 threads: the GEMMs and rows of one image split, or the
     * 12 units of the batched case taken whole */
    const struct CMUnitTest threaded[] = {
        cmocka_unit_test(forward_vs_naive),
        cmocka_unit_test(backward_fd),
        cmocka_unit_test(backward_fd_param_grads),
    };
    int failed = cmocka_run_group_tests_name("one thread", tests, NULL, NULL);
    cnv_set_threads(3);
    failed += cmocka_run_group_tests_name("three threads", threaded, NULL, NULL);
    return failed;
}
