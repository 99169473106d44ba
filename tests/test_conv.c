/* Conv: forward against hand-computed values and a naive direct convolution
 * (kept here, not in src/), backward against central finite differences,
 * the += contract of the op interface, and the errors parse/plan report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/cpu.h"
#include "engine/op.h"
#include "engine/testing.h"

/* One convolution. pads[] are the pads the reference uses (top, left,
 * bottom, right); with auto_pad set they are the ones ONNX implies, worked
 * out by hand in the table, and the node gets auto_pad instead. */
typedef struct conv_case {
    const char *label;
    int n, c, h, w, m, kh, kw;
    int sh, sw, dh, dw;
    int pads[4];
    int group;
    const char *auto_pad; /* NULL: the node gets pads[] */
    int bias;
    int kernel_attr; /* also give kernel_shape */
} conv_case;

static int out_h(const conv_case *k)
{
    return (k->h + k->pads[0] + k->pads[2] - ((k->kh - 1) * k->dh + 1)) / k->sh + 1;
}

static int out_w(const conv_case *k)
{
    return (k->w + k->pads[1] + k->pads[3] - ((k->kw - 1) * k->dw + 1)) / k->sw + 1;
}

/* The references, by the definition, summed in double, no im2col: every
 * (output, input, weight) triple of the convolution once. With y: y =
 * conv(x, w) + b. With dx: dx += conv^T(dy, w), the input gradient. */
static void naive_pass(const conv_case *k, const float *x, const float *w, const float *b, float *y,
                       const float *dy, double *dx)
{
    int oh_n = out_h(k), ow_n = out_w(k), cg = k->c / k->group, mg = k->m / k->group;
    for (int n = 0; n < k->n; n++)
        for (int m = 0; m < k->m; m++)
            for (int oh = 0; oh < oh_n; oh++)
                for (int ow = 0; ow < ow_n; ow++) {
                    int yi = ((n * k->m + m) * oh_n + oh) * ow_n + ow, c0 = (m / mg) * cg;
                    double s = b ? b[m] : 0.0;
                    for (int ci = 0; ci < cg; ci++)
                        for (int ki = 0; ki < k->kh; ki++)
                            for (int kj = 0; kj < k->kw; kj++) {
                                int ih = oh * k->sh - k->pads[0] + ki * k->dh;
                                int iw = ow * k->sw - k->pads[1] + kj * k->dw;
                                if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w)
                                    continue;
                                int xi = ((n * k->c + c0 + ci) * k->h + ih) * k->w + iw;
                                double wv = w[((m * cg + ci) * k->kh + ki) * k->kw + kj];
                                if (y)
                                    s += (double)x[xi] * wv;
                                else
                                    dx[xi] += (double)dy[yi] * wv;
                            }
                    if (y)
                        y[yi] = (float)s;
                }
}

static void naive_conv(const conv_case *k, const float *x, const float *w, const float *b,
                       float *y)
{
    naive_pass(k, x, w, b, y, NULL, NULL);
}

typedef struct conv_attrs {
    int64_t strides[2], dil[2], pads[4], kernel[2];
    cnv_attr a[6];
    int n;
} conv_attrs;

static void make_attrs(const conv_case *k, conv_attrs *at)
{
    at->strides[0] = k->sh;
    at->strides[1] = k->sw;
    at->dil[0] = k->dh;
    at->dil[1] = k->dw;
    at->kernel[0] = k->kh;
    at->kernel[1] = k->kw;
    for (int i = 0; i < 4; i++)
        at->pads[i] = k->pads[i];
    at->n = 0;
    at->a[at->n++] = tu_attr_ints("strides", 2, at->strides);
    at->a[at->n++] = tu_attr_ints("dilations", 2, at->dil);
    at->a[at->n++] = tu_attr_int("group", k->group);
    if (k->auto_pad)
        at->a[at->n++] = tu_attr_string("auto_pad", k->auto_pad);
    else
        at->a[at->n++] = tu_attr_ints("pads", 4, at->pads);
    if (k->kernel_attr)
        at->a[at->n++] = tu_attr_ints("kernel_shape", 2, at->kernel);
}

/* Random x, w, b for a case (owned by the caller). */
typedef struct conv_data {
    float *x, *w, *b;
    int64_t nx, nw, nb, ny;
} conv_data;

static conv_data make_data(const conv_case *k, uint64_t seed)
{
    conv_data d;
    tu_rng r;
    tu_rng_init(&r, seed);
    d.nx = (int64_t)k->n * k->c * k->h * k->w;
    d.nw = (int64_t)k->m * (k->c / k->group) * k->kh * k->kw;
    d.nb = k->m;
    d.ny = (int64_t)k->n * k->m * out_h(k) * out_w(k);
    d.x = malloc((size_t)d.nx * sizeof(float));
    d.w = malloc((size_t)d.nw * sizeof(float));
    d.b = malloc((size_t)d.nb * sizeof(float));
    assert_non_null(d.x);
    assert_non_null(d.w);
    assert_non_null(d.b);
    tu_fill(&r, d.x, d.nx, -1.0f, 1.0f);
    tu_fill(&r, d.w, d.nw, -1.0f, 1.0f);
    tu_fill(&r, d.b, d.nb, -1.0f, 1.0f);
    return d;
}

static void free_data(conv_data *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
}

/* A one-node Conv model; `input` names which of x, w, b is the graph input
 * ("x" in the ordinary case), the others are constants from d. */
static cnv_model *conv_model(const conv_case *k, const conv_data *d, const char *input)
{
    conv_attrs at;
    make_attrs(k, &at);
    tu_tensor ins[3] = {
        { "x", tu_shape(4, k->n, k->c, k->h, k->w), d->x, strcmp(input, "x") != 0 },
        { "w", tu_shape(4, k->m, k->c / k->group, k->kh, k->kw), d->w, strcmp(input, "w") != 0 },
        { "b", tu_shape(1, k->m), d->b, strcmp(input, "b") != 0 },
    };
    return tu_one_node("Conv", k->bias ? 3 : 2, ins, at.n, at.a);
}

static void check_forward(const conv_case *k, uint64_t seed, double *worst)
{
    conv_data d = make_data(k, seed);
    cnv_model *m = conv_model(k, &d, "x");
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
    naive_conv(k, d.x, d.w, k->bias ? d.b : NULL, ref);
    int64_t at;
    double e = tu_max_rel_diff(y, ref, d.ny, &at);
    printf("conv forward %-34s y %dx%dx%dx%d: max rel diff %.3g\n", k->label, k->n, k->m,
           out_h(k), out_w(k), e);
    if (e > *worst)
        *worst = e;
    assert_true(e < 1e-5);
    free(ref);
    cnv_session_free(s);
    cnv_model_free(m);
    free_data(&d);
}

/* Odd shapes covering each path: asymmetric pads, strides, groups,
 * dilation, depthwise, the 1x1 shortcut, auto_pad (pads worked out by hand
 * from the ONNX rule: SAME gives ceil(in/stride) outputs, the odd pad at the
 * end for UPPER and at the beginning for LOWER), no bias. */
static const conv_case g_cases[] = {
    { "X 2x3x7x5 k3x2 s2,1 pads 1,0,2,1", 2, 3, 7, 5, 4, 3, 2, 2, 1, 1, 1, { 1, 0, 2, 1 }, 1, NULL, 1, 1 },
    { "groups 2, pads 1", 2, 4, 6, 7, 6, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 2, NULL, 1, 0 },
    { "dilation 2, s1,2, pads 2,1,0,2", 1, 3, 9, 8, 2, 3, 3, 1, 2, 2, 2, { 2, 1, 0, 2 }, 1, NULL, 1, 0 },
    { "dilation 2,1 groups 3, no bias", 2, 6, 8, 7, 3, 2, 3, 2, 1, 2, 1, { 0, 1, 1, 0 }, 3, NULL, 0, 0 },
    { "depthwise 5 ch, s2 pad 1", 2, 5, 7, 6, 5, 3, 3, 2, 2, 1, 1, { 1, 1, 1, 1 }, 5, NULL, 1, 0 },
    { "depthwise x2 multiplier", 1, 3, 5, 6, 6, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 3, NULL, 0, 0 },
    { "1x1 (single GEMM)", 2, 6, 7, 5, 4, 1, 1, 1, 1, 1, 1, { 0, 0, 0, 0 }, 1, NULL, 1, 1 },
    { "1x1 groups 2 (GEMM), no bias", 3, 4, 3, 5, 6, 1, 1, 1, 1, 1, 1, { 0, 0, 0, 0 }, 2, NULL, 0, 0 },
    { "1x1 stride 2 (im2col)", 2, 3, 7, 5, 4, 1, 1, 2, 2, 1, 1, { 0, 0, 0, 0 }, 1, NULL, 1, 0 },
    { "1x1 pad 1 (im2col)", 1, 3, 4, 5, 2, 1, 1, 1, 1, 1, 1, { 1, 0, 0, 1 }, 1, NULL, 1, 0 },
    { "SAME_UPPER k3x2 s2 (pads 1,0,1,1)", 2, 3, 7, 5, 4, 3, 2, 2, 2, 1, 1, { 1, 0, 1, 1 }, 1, "SAME_UPPER", 1, 0 },
    { "SAME_LOWER k3x2 s2 (pads 1,1,1,0)", 2, 3, 7, 5, 4, 3, 2, 2, 2, 1, 1, { 1, 1, 1, 0 }, 1, "SAME_LOWER", 1, 0 },
    { "SAME_UPPER k2x2 s1 (pads 0,0,1,1)", 1, 2, 5, 4, 3, 2, 2, 1, 1, 1, 1, { 0, 0, 1, 1 }, 1, "SAME_UPPER", 0, 0 },
    { "SAME_LOWER k2x2 s1 (pads 1,1,0,0)", 1, 2, 5, 4, 3, 2, 2, 1, 1, 1, 1, { 1, 1, 0, 0 }, 1, "SAME_LOWER", 0, 0 },
    { "SAME_UPPER k3 d2 (pads 2,1,2,1)", 1, 2, 6, 5, 2, 3, 2, 1, 1, 2, 2, { 2, 1, 2, 1 }, 1, "SAME_UPPER", 1, 0 },
    { "VALID k3x3 s2", 2, 3, 8, 7, 2, 3, 3, 2, 2, 1, 1, { 0, 0, 0, 0 }, 1, "VALID", 1, 0 },
    { "kernel = input (1x1 output)", 2, 2, 4, 3, 3, 4, 3, 1, 1, 1, 1, { 0, 0, 0, 0 }, 1, NULL, 1, 1 },
    /* large enough for threads to split the GEMM (by columns, by rows),
     * and a batch that threads take image by image */
    { "k3 pad 1, 32 filters on 20x20", 1, 16, 20, 20, 32, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 0 },
    { "1x1, 200 filters on 6x6", 1, 32, 6, 6, 200, 1, 1, 1, 1, 1, 1, { 0, 0, 0, 0 }, 1, NULL, 1, 0 },
    { "batch 3, k3 s2 pad 1", 3, 8, 15, 15, 24, 3, 3, 2, 2, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 0 },
    /* 3x3, stride 1, pads 1 (the common case): odd sides, a one-pixel-wide
     * plane, the same pads through auto_pad */
    { "k3 pad 1, 13x11, 24 -> 40 ch", 1, 24, 13, 11, 40, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 0 },
    { "k3 pad 1, batch 2 of 5x1", 2, 3, 5, 1, 4, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 1 },
    { "SAME_UPPER k3 s1 (pads 1,1,1,1)", 2, 4, 7, 6, 5, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, "SAME_UPPER", 0, 0 },
    /* depthwise (direct loops): rows longer than their 16-wide blocks at
     * strides 1, 2 and 3, a 5x5 kernel, dilation, a multiplier with a
     * batch, asymmetric pads, a kernel wider than the padded row's reach */
    { "depthwise k3 s1 pad 1, 37 wide", 2, 6, 9, 37, 6, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 6, NULL, 1, 0 },
    { "depthwise k3 s2 pad 1, 45 wide", 1, 4, 11, 45, 4, 3, 3, 2, 2, 1, 1, { 1, 1, 1, 1 }, 4, NULL, 1, 0 },
    { "depthwise k5 s2 SAME_UPPER", 2, 3, 13, 40, 3, 5, 5, 2, 2, 1, 1, { 2, 1, 2, 2 }, 3, "SAME_UPPER", 0, 0 },
    { "depthwise k3 s3 dilation 2", 1, 5, 14, 50, 5, 3, 3, 3, 3, 2, 2, { 2, 2, 2, 2 }, 5, NULL, 1, 0 },
    { "depthwise x3 multiplier, batch 3", 3, 2, 8, 20, 6, 3, 3, 1, 1, 1, 1, { 0, 2, 1, 0 }, 2, NULL, 1, 0 },
    { "depthwise k7 pads 3, 4 wide", 1, 3, 6, 4, 3, 7, 7, 1, 1, 1, 1, { 3, 3, 3, 3 }, 3, NULL, 1, 0 },
    /* unequal strides, a large stride */
    { "depthwise k3 s2,1", 2, 4, 9, 35, 4, 3, 3, 2, 1, 1, 1, { 1, 1, 1, 1 }, 4, NULL, 1, 0 },
    { "depthwise k3 s5 dilation 2", 1, 3, 23, 60, 6, 3, 3, 5, 5, 2, 2, { 2, 1, 0, 2 }, 3, NULL, 1, 0 },
};
#define N_CASES ((int)(sizeof g_cases / sizeof g_cases[0]))

/* 3x3 stride-1 convolutions that plans run by Winograd's F(4x4,3x3)
 * (conv.c, wino_pays: 24 or more input channels and 36 or more 4x4
 * output tiles, or the 16 tiles of a 14x14 output with few channels):
 * pads 0, 1, 2 and 3 (the backward then reads dy from inside its plane),
 * asymmetric and through auto_pad, sides that leave partial tiles, tile
 * counts that leave partial runs of 16, two passes of 48 and 16 tiles (64
 * channels in and out), a batch (threads take whole images at 3 threads,
 * split each at 2). */
static const conv_case g_wino_cases[] = {
    { "wino pads 1, 24 -> 8 ch, 25x23", 1, 24, 25, 23, 8, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 0 },
    { "wino no pads, 26x30", 1, 26, 26, 30, 12, 3, 3, 1, 1, 1, 1, { 0, 0, 0, 0 }, 1, NULL, 1, 1 },
    { "wino pads 2, 20x21, no bias", 1, 24, 20, 21, 10, 3, 3, 1, 1, 1, 1, { 2, 2, 2, 2 }, 1, NULL, 0, 0 },
    { "wino pads 0,2,1,0", 1, 25, 25, 26, 9, 3, 3, 1, 1, 1, 1, { 0, 2, 1, 0 }, 1, NULL, 1, 0 },
    { "wino pads 3,1,0,3", 1, 24, 22, 21, 7, 3, 3, 1, 1, 1, 1, { 3, 1, 0, 3 }, 1, NULL, 1, 0 },
    { "wino SAME_UPPER (pads 1,1,1,1)", 1, 32, 24, 24, 5, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, "SAME_UPPER", 1, 0 },
    { "wino 14x14, 32 -> 16 ch", 1, 32, 14, 14, 16, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 0 },
    { "wino 64 -> 64 ch, 30x30 (2 passes)", 1, 64, 30, 30, 64, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 0 },
    { "wino batch 3, 24x24", 3, 24, 24, 24, 16, 3, 3, 1, 1, 1, 1, { 1, 1, 1, 1 }, 1, NULL, 1, 0 },
};
#define N_WINO ((int)(sizeof g_wino_cases / sizeof g_wino_cases[0]))

static void test_forward_vs_naive(void **state)
{
    (void)state;
    double worst = 0.0;
    for (int i = 0; i < N_CASES; i++)
        check_forward(&g_cases[i], 100 + (uint64_t)i, &worst);
    printf("conv forward vs naive: worst max rel diff %.3g over %d cases\n", worst, N_CASES);
}

/* X = 1..9 (3x3), W = [[1,2],[3,4]], B = 0.5, worked out by hand. */
static void run_hand(const int64_t *pads, const int64_t *strides, const float *expect, int eh,
                     int ew)
{
    float x[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, w[4] = { 1, 2, 3, 4 }, b[1] = { 0.5f };
    tu_tensor ins[3] = {
        { "x", tu_shape(4, 1, 1, 3, 3), NULL, 0 },
        { "w", tu_shape(4, 1, 1, 2, 2), w, 1 },
        { "b", tu_shape(1, 1), b, 1 },
    };
    cnv_attr at[2] = { tu_attr_ints("pads", 4, pads), tu_attr_ints("strides", 2, strides) };
    cnv_model *m = tu_one_node("Conv", 3, ins, 2, at);
    const float *in[1] = { x };
    cnv_session *s = tu_session(m, in, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_int_equal(ys.dims[2], eh);
    assert_int_equal(ys.dims[3], ew);
    for (int i = 0; i < eh * ew; i++)
        assert_float_equal(y[i], expect[i], 1e-5);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void test_forward_hand(void **state)
{
    (void)state;
    /* no pad, stride 1: y[0][0] = 1*1 + 2*2 + 4*3 + 5*4 = 37, ... */
    const int64_t p0[4] = { 0, 0, 0, 0 }, s1[2] = { 1, 1 };
    const float e0[4] = { 37.5f, 47.5f, 67.5f, 77.5f };
    run_hand(p0, s1, e0, 2, 2);
    /* pad 1 all round, stride 2: the corners see 1*4, 2*3+3*4, 4*2+7*4, and
     * the last window is fully inside (5+12+24+36) */
    const int64_t p1[4] = { 1, 1, 1, 1 }, s2[2] = { 2, 2 };
    const float e1[4] = { 4.5f, 18.5f, 36.5f, 77.5f };
    run_hand(p1, s2, e1, 2, 2);
    /* asymmetric: pad bottom 1 only, stride (2,1): rows 0-1 and 2-3 */
    const int64_t p2[4] = { 0, 0, 1, 0 }, s3[2] = { 2, 1 };
    /* row 2-3 windows: 7*1 + 8*2 = 23, 8*1 + 9*2 = 26 */
    const float e2[4] = { 37.5f, 47.5f, 23.5f, 26.5f };
    run_hand(p2, s3, e2, 2, 2);
}

/* A session with parameter gradients on, planned for the model's declared
 * input shapes, inputs random from seed. */
static cnv_session *param_grad_session(cnv_model *m, uint64_t seed)
{
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_param_grads(s, 1), CNV_OK);
    int ni = cnv_model_input_count(m);
    cnv_shape shapes[4];
    assert_true(ni >= 1 && ni <= 4);
    for (int i = 0; i < ni; i++)
        assert_int_equal(cnv_model_input_shape(m, i, &shapes[i]), CNV_OK);
    if (cnv_session_plan_shapes(s, ni, shapes) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    tu_rng r;
    tu_rng_init(&r, seed);
    for (int i = 0; i < ni; i++) {
        float *d;
        assert_int_equal(cnv_session_tensor(s, tu_t(s, tu_input_name(m, i)), &d, NULL), CNV_OK);
        tu_fill(&r, d, cnv_shape_count(&shapes[i]), -1.0f, 1.0f);
    }
    return s;
}

/* Conv is linear in each of x, w, b, so central differences have no
 * truncation error and the step only trades float rounding: h = 1e-2 and a
 * relative tolerance of 1e-2 (float32 forward, differences in double). */
#define FD_H 1e-2
#define FD_TOL 1e-2
#define FD_MAX 60

static double g_fd_worst[3]; /* x, w, b over every case */

/* Gradient of one of x, w, b at a time: that tensor is the graph input and
 * the others are constants, so the checker sees exactly one gradient (and
 * the op's skip of absent gradients is exercised). */
static void check_grad_one(const conv_case *k, const char *which, int slot, uint64_t seed)
{
    conv_data d = make_data(k, seed);
    cnv_model *m = conv_model(k, &d, which);
    cnv_session *s = tu_session(m, NULL, seed);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    tu_fd_result r = tu_fd_check(s, m, "y", FD_H, FD_MAX, seed + 7);
    char label[128];
    snprintf(label, sizeof label, "Conv d%s %s", which, k->label);
    tu_fd_assert(label, r, FD_TOL);
    if (r.max_err > g_fd_worst[slot])
        g_fd_worst[slot] = r.max_err;
    cnv_session_free(s);
    cnv_model_free(m);
    free_data(&d);
}

static void test_backward_fd(void **state)
{
    (void)state;
    /* one of each path; the case index is into g_cases */
    static const int pick[] = { 0, 1, 3, 4, 6, 7, 9, 11, 17, 18, 19, 20, 21, 22 };
    for (size_t i = 0; i < sizeof pick / sizeof pick[0]; i++) {
        const conv_case *k = &g_cases[pick[i]];
        check_grad_one(k, "x", 0, 500 + i);
        check_grad_one(k, "w", 1, 600 + i);
        if (k->bias)
            check_grad_one(k, "b", 2, 700 + i);
    }
    printf("FD Conv worst: dX %.3g, dW %.3g, dB %.3g\n", g_fd_worst[0], g_fd_worst[1],
           g_fd_worst[2]);
}

/* The reference input gradient dx = conv^T(dy, w). */
static void naive_conv_dx(const conv_case *k, const float *dy, const float *w, double *dx)
{
    memset(dx, 0, (size_t)k->n * k->c * k->h * k->w * sizeof *dx);
    naive_pass(k, NULL, w, NULL, NULL, dy, dx);
}

/* Backward skips the all-zero channels of dy when at most half of a
 * group's channels are non-zero (one class score, channels a ReLU turned
 * off): seeds with 0, 1, a quarter, exactly half and half + 1 non-zero
 * channels per group (the last one the dense path), different per image,
 * the zero channels written as -0 in places. */
static void test_backward_zero_channels(void **state)
{
    (void)state;
    static const int pick[] = { 1, 17, 18, 19, 20, 21 };
    double worst = 0.0;
    for (size_t i = 0; i < sizeof pick / sizeof pick[0]; i++) {
        const conv_case *k = &g_cases[pick[i]];
        conv_data d = make_data(k, 1100 + i);
        cnv_model *m = conv_model(k, &d, "x");
        const float *in[1] = { d.x };
        cnv_session *s = tu_session(m, in, 1200 + i);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        int mg = k->m / k->group, p = out_h(k) * out_w(k);
        int64_t nx = d.nx;
        float *seed = malloc((size_t)d.ny * sizeof *seed);
        double *ref = malloc((size_t)nx * sizeof *ref);
        assert_non_null(seed);
        assert_non_null(ref);
        tu_rng r;
        tu_rng_init(&r, 1300 + i);
        int counts[] = { 0, 1, mg / 4, mg / 2, mg / 2 + 1 };
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            tu_fill(&r, seed, d.ny, -1.0f, 1.0f);
            for (int n = 0; n < k->n; n++)
                for (int ch = 0; ch < k->m; ch++) {
                    /* the first counts[c] channels of each group, rotated by image */
                    int live = ((ch % mg) + n) % mg < counts[c];
                    float *row = seed + ((int64_t)n * k->m + ch) * p;
                    for (int j = 0; !live && j < p; j++)
                        row[j] = (j + ch) % 3 ? 0.0f : -0.0f;
                }
            assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
            float *dx;
            assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &dx), CNV_OK);
            naive_conv_dx(k, seed, d.w, ref);
            for (int64_t j = 0; j < nx; j++) {
                double e = fabs(dx[j] - ref[j]) / fmax(1.0, fabs(ref[j]));
                if (e > worst)
                    worst = e;
                if (counts[c] == 0)
                    assert_true(dx[j] == 0.0f);
            }
        }
        free(seed);
        free(ref);
        cnv_session_free(s);
        cnv_model_free(m);
        free_data(&d);
    }
    printf("conv backward, zero channels skipped: max rel diff %.3g\n", worst);
    assert_true(worst < 1e-5);
}

/* x is the input, w and b constants with parameter gradients on: every
 * gradient at once, through cnv_session_set_param_grads. */
static void test_backward_fd_param_grads(void **state)
{
    (void)state;
    static const int pick[] = { 0, 2, 5, 6, 17, 19, 20, 21 };
    for (size_t i = 0; i < sizeof pick / sizeof pick[0]; i++) {
        const conv_case *k = &g_cases[pick[i]];
        conv_data d = make_data(k, 800 + i);
        cnv_model *m = conv_model(k, &d, "x");
        cnv_session *s = param_grad_session(m, 900 + i);
        assert_int_equal(cnv_session_forward(s), CNV_OK);
        tu_fd_result r = tu_fd_check(s, m, "y", FD_H, FD_MAX, 1000 + i);
        char label[128];
        snprintf(label, sizeof label, "Conv dX,dW%s (param grads) %s", k->bias ? ",dB" : "",
                 k->label);
        tu_fd_assert(label, r, FD_TOL);
        cnv_session_free(s);
        cnv_model_free(m);
        free_data(&d);
    }
}

/* The op interface requires backward to add into the gradients: run the op
 * directly on a hand-made context, twice, from non-zero gradients. With
 * x_only, dx alone is wanted (the Winograd path, when the case takes it:
 * w without a gradient). */
static void run_accumulate(const conv_case *k, int x_only)
{
    const cnv_op *op = cnv_op_find("Conv");
    assert_non_null(op);
    conv_attrs at;
    make_attrs(k, &at);
    char name[] = "acc";
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

    conv_data d = make_data(k, 77);
    cnv_val vx = { 0 }, vw = { 0 }, vb = { 0 }, vy = { 0 };
    vx.shape = tu_shape(4, k->n, k->c, k->h, k->w);
    vw.shape = tu_shape(4, k->m, k->c / k->group, k->kh, k->kw);
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
    assert_int_equal(state, 0);
    c->work = malloc(work ? work : 1);
    assert_non_null(c->work);
    vy.count = cnv_shape_count(&vy.shape);
    assert_int_equal(vy.count, d.ny);
    vy.data = malloc((size_t)d.ny * sizeof(float));
    vy.grad = malloc((size_t)d.ny * sizeof(float));
    float *g1[3], *g2[3];
    int64_t cnt[3] = { d.nx, d.nw, d.nb };
    for (int i = 0; i < 3; i++) {
        g1[i] = calloc((size_t)cnt[i], sizeof(float));
        g2[i] = malloc((size_t)cnt[i] * sizeof(float));
        assert_non_null(g1[i]);
        assert_non_null(g2[i]);
    }
    tu_rng r;
    tu_rng_init(&r, 5);
    tu_fill(&r, vy.grad, d.ny, -1.0f, 1.0f);
    op->forward(c);
    /* once from zero */
    for (int i = 0; i < 3; i++)
        ins[i]->grad = !x_only || i == 0 ? g1[i] : NULL;
    op->backward(c);
    /* once from 0.25 */
    for (int i = 0; i < 3; i++) {
        for (int64_t j = 0; j < cnt[i]; j++)
            g2[i][j] = 0.25f;
        ins[i]->grad = !x_only || i == 0 ? g2[i] : NULL;
    }
    op->backward(c);
    double worst = 0.0;
    for (int i = 0; i < (x_only ? 1 : 3); i++)
        for (int64_t j = 0; j < cnt[i]; j++) {
            double diff = fabs((double)g2[i][j] - 0.25 - g1[i][j]);
            if (diff > worst)
                worst = diff;
        }
    assert_true(worst < 1e-5);
    /* only dW wanted: dX and dB untouched */
    vx.grad = NULL;
    vb.grad = NULL;
    op->backward(c);
    for (int i = 0; i < 3; i++) {
        free(g1[i]);
        free(g2[i]);
    }
    free(vy.data);
    free(vy.grad);
    free(c->work);
    free(c);
    free(params);
    free_data(&d);
}

static void test_backward_accumulates(void **state)
{
    (void)state;
    run_accumulate(&g_cases[0], 0); /* im2col path */
    run_accumulate(&g_cases[6], 0); /* 1x1 path */
    run_accumulate(&g_wino_cases[0], 1); /* Winograd, pads 1 */
    run_accumulate(&g_wino_cases[4], 1); /* Winograd, pads 3,1,0,3 */
}

/* ---- errors: each status, and a message naming the node ---- */

/* Builds x (input) -> Conv "bad_conv" -> y with the given W/B shapes and
 * attributes, then plans. Returns the first failing status and its message. */
static cnv_status try_conv(cnv_shape xs, cnv_shape ws, const cnv_shape *bs, int n_attrs,
                           const cnv_attr *attrs, char *msg, size_t len)
{
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    static float zeros[4096];
    cnv_status st = cnv_model_create(&m);
    assert_int_equal(st, CNV_OK);
    assert_true(cnv_shape_count(&ws) <= 4096);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, zeros), CNV_OK);
    if (bs)
        assert_int_equal(cnv_model_add_const(m, "b", CNV_FLOAT32, bs, zeros), CNV_OK);
    const char *in[3] = { "x", "w", "b" }, *out[1] = { "y" };
    st = cnv_model_add_node(m, "Conv", "bad_conv", bs ? 3 : 2, in, 1, out, n_attrs, attrs);
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

static void expect_err(const char *what, cnv_status st, cnv_status want, const char *msg,
                       const char *mention)
{
    printf("conv error %-28s -> %s: %s\n", what, cnv_status_string(st), msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(msg, "bad_conv"));
    if (mention)
        assert_non_null(strstr(msg, mention));
}

static void test_errors(void **state)
{
    (void)state;
    char msg[600];
    cnv_shape x = tu_shape(4, 1, 4, 5, 5), w = tu_shape(4, 2, 4, 3, 3);
    const int64_t k0[2] = { 0, 3 }, s0[2] = { 1, 0 }, pneg[4] = { 0, -1, 0, 0 }, d0[2] = { 0, 1 };
    cnv_attr a;
    cnv_status st;

    a = tu_attr_ints("kernel_shape", 2, k0);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("kernel 0", st, CNV_ERR_FORMAT, msg, "kernel_shape");

    a = tu_attr_ints("strides", 2, s0);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("stride 0", st, CNV_ERR_FORMAT, msg, "strides");

    a = tu_attr_ints("dilations", 2, d0);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("dilation 0", st, CNV_ERR_FORMAT, msg, "dilations");

    a = tu_attr_ints("pads", 4, pneg);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("negative pad", st, CNV_ERR_FORMAT, msg, "pads");

    a = tu_attr_int("group", 0);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("group 0", st, CNV_ERR_FORMAT, msg, "group");

    a = tu_attr_string("auto_pad", "SAME");
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("unknown auto_pad", st, CNV_ERR_FORMAT, msg, "auto_pad");

    /* group 3 divides neither 4 input nor 2 output channels */
    a = tu_attr_int("group", 3);
    st = try_conv(x, tu_shape(4, 2, 1, 3, 3), NULL, 1, &a, msg, sizeof msg);
    expect_err("group not dividing C", st, CNV_ERR_SHAPE, msg, "1x4x5x5");

    /* group 2 divides C = 4 but not M = 3 */
    a = tu_attr_int("group", 2);
    st = try_conv(x, tu_shape(4, 3, 2, 3, 3), NULL, 1, &a, msg, sizeof msg);
    expect_err("group not dividing M", st, CNV_ERR_SHAPE, msg, "3x2x3x3");

    /* W channels must be C/group */
    a = tu_attr_int("group", 2);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("W channels != C/group", st, CNV_ERR_SHAPE, msg, "2x4x3x3");

    /* 6x6 kernel on a 5x5 input: no output position */
    st = try_conv(x, tu_shape(4, 2, 4, 6, 6), NULL, 0, NULL, msg, sizeof msg);
    expect_err("kernel larger than input", st, CNV_ERR_SHAPE, msg, "1x4x5x5");

    /* dilation makes a 3x3 kernel span 7 */
    const int64_t d3[2] = { 3, 3 };
    a = tu_attr_ints("dilations", 2, d3);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("dilated kernel > input", st, CNV_ERR_SHAPE, msg, "1x4x5x5");

    /* kernel_shape disagreeing with W */
    const int64_t k2[2] = { 2, 2 };
    a = tu_attr_ints("kernel_shape", 2, k2);
    st = try_conv(x, w, NULL, 1, &a, msg, sizeof msg);
    expect_err("kernel_shape != W", st, CNV_ERR_SHAPE, msg, "2x4x3x3");

    /* B of the wrong size */
    cnv_shape b3 = tu_shape(1, 3);
    st = try_conv(x, w, &b3, 0, NULL, msg, sizeof msg);
    expect_err("B size != M", st, CNV_ERR_SHAPE, msg, "3");

    /* 1-D and 3-D convolutions */
    st = try_conv(tu_shape(3, 1, 4, 9), tu_shape(3, 2, 4, 3), NULL, 0, NULL, msg, sizeof msg);
    expect_err("1-D conv", st, CNV_ERR_UNSUPPORTED, msg, "2-D");
    st = try_conv(tu_shape(5, 1, 4, 5, 5, 5), tu_shape(5, 2, 4, 3, 3, 3), NULL, 0, NULL, msg,
                  sizeof msg);
    expect_err("3-D conv", st, CNV_ERR_UNSUPPORTED, msg, "2-D");
}

/* The reference weight gradient: dw[m][ci][ki][kj] = sum over images and
 * outputs of dy * the input sample that tap reads, in double. */
static void naive_conv_dw(const conv_case *k, const float *x, const float *dy, double *dw)
{
    int oh_n = out_h(k), ow_n = out_w(k), cg = k->c / k->group, mg = k->m / k->group;
    memset(dw, 0, (size_t)k->m * cg * k->kh * k->kw * sizeof *dw);
    for (int n = 0; n < k->n; n++)
        for (int m = 0; m < k->m; m++)
            for (int oh = 0; oh < oh_n; oh++)
                for (int ow = 0; ow < ow_n; ow++)
                    for (int ci = 0; ci < cg; ci++)
                        for (int ki = 0; ki < k->kh; ki++)
                            for (int kj = 0; kj < k->kw; kj++) {
                                int ih = oh * k->sh - k->pads[0] + ki * k->dh;
                                int iw = ow * k->sw - k->pads[1] + kj * k->dw;
                                if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w)
                                    continue;
                                double g = dy[((n * k->m + m) * oh_n + oh) * ow_n + ow];
                                dw[((m * cg + ci) * k->kh + ki) * k->kw + kj] +=
                                    g * x[((n * k->c + (m / mg) * cg + ci) * k->h + ih) * k->w + iw];
                            }
}

/* One forward and backward of a case: y, dx, dw (and db) copied out. */
typedef struct conv_run {
    float *y, *dx, *dw, *db;
} conv_run;

static conv_run run_case(const conv_case *k, const conv_data *d, const float *seed)
{
    cnv_model *m = conv_model(k, d, "x");
    cnv_session *s = param_grad_session(m, 7);
    float *x;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &x, NULL), CNV_OK);
    memcpy(x, d->x, (size_t)d->nx * sizeof *x);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    conv_run r = { malloc((size_t)d->ny * sizeof(float)), malloc((size_t)d->nx * sizeof(float)),
                   malloc((size_t)d->nw * sizeof(float)), malloc((size_t)d->nb * sizeof(float)) };
    assert_true(r.y && r.dx && r.dw && r.db);
    float *t;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &t, NULL), CNV_OK);
    memcpy(r.y, t, (size_t)d->ny * sizeof *t);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &t), CNV_OK);
    memcpy(r.dx, t, (size_t)d->nx * sizeof *t);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "w"), &t), CNV_OK);
    memcpy(r.dw, t, (size_t)d->nw * sizeof *t);
    if (k->bias) {
        assert_int_equal(cnv_session_grad(s, tu_t(s, "b"), &t), CNV_OK);
        memcpy(r.db, t, (size_t)d->nb * sizeof *t);
    } else
        memset(r.db, 0, (size_t)d->nb * sizeof *r.db);
    cnv_session_free(s);
    cnv_model_free(m);
    return r;
}

static void free_run(conv_run *r)
{
    free(r->y);
    free(r->dx);
    free(r->dw);
    free(r->db);
}

static double max_rel_to(const float *got, const double *want, int64_t n)
{
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(got[i] - want[i]) / fmax(1.0, fabs(want[i])));
    return worst;
}

/* Every depthwise case through the direct loops at each vector level the
 * CPU has (bit-identical to each other) and through im2col + GEMM
 * (cnv_conv_no_direct), each against the double references for y, dx and
 * dw. */
static void test_depthwise_paths(void **state)
{
    (void)state;
    double worst[2][3] = {{0}};
    int top = cnv_simd_level(), cases = 0;
    for (int i = 0; i < N_CASES; i++) {
        const conv_case *k = &g_cases[i];
        if (k->group == 1 || k->c != k->group)
            continue;
        cases++;
        conv_data d = make_data(k, 2000 + (uint64_t)i);
        float *seed = malloc((size_t)d.ny * sizeof *seed), *y = malloc((size_t)d.ny * sizeof *y);
        double *dx = malloc((size_t)d.nx * sizeof *dx), *dw = malloc((size_t)d.nw * sizeof *dw);
        assert_true(seed && y && dx && dw);
        tu_rng r;
        tu_rng_init(&r, 2100 + (uint64_t)i);
        tu_fill(&r, seed, d.ny, -1.0f, 1.0f);
        naive_conv(k, d.x, d.w, k->bias ? d.b : NULL, y);
        naive_conv_dx(k, seed, d.w, dx);
        naive_conv_dw(k, d.x, seed, dw);
        double *yd = malloc((size_t)d.ny * sizeof *yd);
        assert_non_null(yd);
        for (int64_t j = 0; j < d.ny; j++)
            yd[j] = y[j];

        conv_run first = {0};
        for (int level = top; level >= CNV_SIMD_BASE; level--) {
            cnv_simd_cap = level;
            conv_run run = run_case(k, &d, seed);
            if (level == top)
                first = run;
            else {
                assert_memory_equal(run.y, first.y, (size_t)d.ny * sizeof(float));
                assert_memory_equal(run.dx, first.dx, (size_t)d.nx * sizeof(float));
                assert_memory_equal(run.dw, first.dw, (size_t)d.nw * sizeof(float));
                free_run(&run);
            }
        }
        cnv_simd_cap = CNV_SIMD_AVX512;
        cnv_conv_no_direct = 1;
        conv_run gemm = run_case(k, &d, seed);
        cnv_conv_no_direct = 0;
        const conv_run *runs[2] = { &first, &gemm };
        for (int p = 0; p < 2; p++) {
            double e[3] = { max_rel_to(runs[p]->y, yd, d.ny), max_rel_to(runs[p]->dx, dx, d.nx),
                            max_rel_to(runs[p]->dw, dw, d.nw) };
            for (int q = 0; q < 3; q++) {
                worst[p][q] = fmax(worst[p][q], e[q]);
                assert_true(e[q] < 1e-5);
            }
        }
        for (int64_t j = 0; j < d.nb; j++) /* db is the same code on both paths */
            assert_true(first.db[j] == gemm.db[j]);
        free_run(&first);
        free_run(&gemm);
        free(seed);
        free(y);
        free(yd);
        free(dx);
        free(dw);
        free_data(&d);
    }
    printf("depthwise, %d cases, levels %s down to base: direct y %.3g dx %.3g dw %.3g; "
           "im2col+GEMM y %.3g dx %.3g dw %.3g (max rel diff vs double)\n",
           cases, cnv_simd_name(top), worst[0][0], worst[0][1], worst[0][2], worst[1][0], worst[1][1], worst[1][2]);
    assert_true(cases >= 10);
}

/* max |got - want| / max |want|: the error against the output's scale. */
static double err_to_max(const float *got, const double *want, int64_t n)
{
    double err = 0.0, top = 0.0;
    for (int64_t i = 0; i < n; i++) {
        err = fmax(err, fabs(got[i] - want[i]));
        top = fmax(top, fabs(want[i]));
    }
    return top > 0.0 ? err / top : err;
}

/* y and dx of a case, x an input and w, b constants (no parameter
 * gradients: the Winograd path when the case takes it), on a session of
 * `threads` threads; y and dx are filled. */
static void run_x_only(const conv_case *k, const conv_data *d, const float *x, const float *seed, int threads,
                       float *y, float *dx)
{
    cnv_model *m = conv_model(k, d, "x");
    cnv_session *s = NULL;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
    cnv_shape xs = tu_shape(4, k->n, k->c, k->h, k->w);
    if (cnv_session_plan_shapes(s, 1, &xs) != CNV_OK)
        fail_msg("plan: %s", cnv_session_errmsg(s));
    int64_t nx = (int64_t)k->n * k->c * k->h * k->w, ny = (int64_t)k->n * k->m * out_h(k) * out_w(k);
    float *t;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "x"), &t, NULL), CNV_OK);
    memcpy(t, x, (size_t)nx * sizeof *t);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &t, NULL), CNV_OK);
    memcpy(y, t, (size_t)ny * sizeof *t);
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &t), CNV_OK);
    memcpy(dx, t, (size_t)nx * sizeof *t);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The Winograd cases against the double references for y and dx, and
 * through im2col + GEMM (cnv_conv_no_winograd); Winograd's results
 * bit-identical at 1, 2 and 3 threads, and each image of a batch the same
 * bits as that image alone.
 *
 * Tolerance: F(4x4,3x3) sums the 36 products of transformed values that
 * are up to ~10x the inputs (B^T's 4s and 5s) and multiplies the sums by
 * up to 8 (A^T), so float rounding reaches the output amplified by some
 * hundred (not the 9-term dot products' few units) relative to its
 * largest values; on real layers (docs/PERFORMANCE.md) it stayed below
 * 1.5e-5 of the output's max abs. The bound, 1e-4 of the max abs, is
 * well above that, and far below what a misplaced tap, tile or pad would
 * give (an error the size of the values). im2col keeps 1e-5. */
static void test_winograd_paths(void **state)
{
    (void)state;
    double worst[2][2] = {{0}};
    for (int i = 0; i < N_WINO; i++) {
        const conv_case *k = &g_wino_cases[i];
        conv_data d = make_data(k, 3000 + (uint64_t)i);
        float *seed = malloc((size_t)d.ny * sizeof *seed), *yref = malloc((size_t)d.ny * sizeof *yref);
        double *dxref = malloc((size_t)d.nx * sizeof *dxref), *yd = malloc((size_t)d.ny * sizeof *yd);
        assert_true(seed && yref && dxref && yd);
        tu_rng r;
        tu_rng_init(&r, 3100 + (uint64_t)i);
        tu_fill(&r, seed, d.ny, -1.0f, 1.0f);
        naive_conv(k, d.x, d.w, k->bias ? d.b : NULL, yref);
        naive_conv_dx(k, seed, d.w, dxref);
        for (int64_t j = 0; j < d.ny; j++)
            yd[j] = yref[j];

        float *y[4], *dx[4]; /* Winograd at 1, 2, 3 threads; im2col */
        for (int p = 0; p < 4; p++) {
            y[p] = malloc((size_t)d.ny * sizeof(float));
            dx[p] = malloc((size_t)d.nx * sizeof(float));
            assert_true(y[p] && dx[p]);
            cnv_conv_no_winograd = p == 3;
            run_x_only(k, &d, d.x, seed, p == 3 ? 1 : p + 1, y[p], dx[p]);
            cnv_conv_no_winograd = 0;
        }
        for (int p = 1; p < 3; p++) {
            assert_memory_equal(y[p], y[0], (size_t)d.ny * sizeof(float));
            assert_memory_equal(dx[p], dx[0], (size_t)d.nx * sizeof(float));
        }
        /* the two paths round differently: a case that left Winograd
         * out would match im2col bit for bit */
        assert_true(memcmp(y[0], y[3], (size_t)d.ny * sizeof(float)) != 0);
        for (int p = 0; p < 2; p++) {
            double ey = err_to_max(y[p ? 3 : 0], yd, d.ny), ex = err_to_max(dx[p ? 3 : 0], dxref, d.nx);
            printf("conv %-9s %-36s y %.3g dx %.3g (of max abs)\n", p ? "im2col" : "winograd", k->label, ey, ex);
            worst[p][0] = fmax(worst[p][0], ey);
            worst[p][1] = fmax(worst[p][1], ex);
            assert_true(ey < (p ? 1e-5 : 1e-4) && ex < (p ? 1e-5 : 1e-4));
        }
        if (k->n > 1) { /* each image alone, at 2 threads (its 36 GEMMs shared out) */
            conv_case one = *k;
            one.n = 1;
            int64_t ix = d.nx / k->n, iy = d.ny / k->n;
            float *y1 = malloc((size_t)iy * sizeof *y1), *dx1 = malloc((size_t)ix * sizeof *dx1);
            assert_true(y1 && dx1);
            for (int n = 0; n < k->n; n++) {
                run_x_only(&one, &d, d.x + n * ix, seed + n * iy, 2, y1, dx1);
                assert_memory_equal(y1, y[0] + n * iy, (size_t)iy * sizeof *y1);
                assert_memory_equal(dx1, dx[0] + n * ix, (size_t)ix * sizeof *dx1);
            }
            free(y1);
            free(dx1);
        }
        for (int p = 0; p < 4; p++) {
            free(y[p]);
            free(dx[p]);
        }
        free(seed);
        free(yref);
        free(yd);
        free(dxref);
        free_data(&d);
    }
    /* and central differences through the Winograd backward */
    check_grad_one(&g_wino_cases[0], "x", 0, 3200);
    check_grad_one(&g_wino_cases[4], "x", 0, 3201);
    printf("winograd, %d cases: y %.3g dx %.3g; im2col+GEMM y %.3g dx %.3g (max abs diff / max abs of double)\n",
           N_WINO, worst[0][0], worst[0][1], worst[1][0], worst[1][1]);
}

/* A depthwise convolution with pads and a dilation so large that the
 * padded plane of the direct loops would hold 10^18 values, though the
 * output is 3x3: it runs (through im2col), every tap lands in the
 * padding, and y is the bias, dx zero. */
static void test_depthwise_vast_padding(void **state)
{
    (void)state;
    static const float w[8] = { 1, 1, 1, 1, 1, 1, 1, 1 }, b[2] = { 0.5f, -1.0f };
    int64_t dil[2] = { 1000000000, 1000000000 }, pads[4] = { 500000000, 500000000, 500000000, 500000000 };
    cnv_attr at[3] = { tu_attr_int("group", 2), tu_attr_ints("dilations", 2, dil), tu_attr_ints("pads", 4, pads) };
    cnv_model *m;
    cnv_shape xs = tu_shape(4, 1, 2, 3, 3), ws = tu_shape(4, 2, 1, 2, 2), bs = tu_shape(1, 2);
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, w), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "b", CNV_FLOAT32, &bs, b), CNV_OK);
    const char *in[3] = { "x", "w", "b" }, *out[1] = { "y" };
    if (cnv_model_add_node(m, "Conv", "c", 3, in, 1, out, 3, at) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_add_output(m, "y"), CNV_OK);
    float x[18];
    for (int i = 0; i < 18; i++)
        x[i] = (float)i;
    cnv_session *s = tu_session(m, (const float *const[]){ x }, 1);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *y, seed[18], *dx;
    cnv_shape ys;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "y"), &y, &ys), CNV_OK);
    assert_int_equal(cnv_shape_count(&ys), 18);
    for (int i = 0; i < 18; i++) {
        assert_true(y[i] == b[i / 9]);
        seed[i] = 1.0f;
    }
    assert_int_equal(tu_backward(s, "y", seed), CNV_OK);
    assert_int_equal(cnv_session_grad(s, tu_t(s, "x"), &dx), CNV_OK);
    for (int i = 0; i < 18; i++)
        assert_true(dx[i] == 0.0f);
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_hand),
        cmocka_unit_test(test_forward_vs_naive),
        cmocka_unit_test(test_backward_fd),
        cmocka_unit_test(test_backward_fd_param_grads),
        cmocka_unit_test(test_backward_zero_channels),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_depthwise_paths),
        cmocka_unit_test(test_depthwise_vast_padding),
        cmocka_unit_test(test_winograd_paths),
        cmocka_unit_test(test_errors),
    };
    /* The same checks with the work split over 3 threads (uneven splits
     * on these sizes): images, groups, GEMM blocks
     * and column rows per thread. */
    const struct CMUnitTest threaded[] = {
        cmocka_unit_test(test_forward_vs_naive),
        cmocka_unit_test(test_depthwise_paths),
        cmocka_unit_test(test_backward_fd),
        cmocka_unit_test(test_backward_fd_param_grads),
        cmocka_unit_test(test_backward_zero_channels),
    };
    int failed = cmocka_run_group_tests_name("one thread", tests, NULL, NULL);
    cnv_set_threads(3);
    failed += cmocka_run_group_tests_name("three threads", threaded, NULL, NULL);
    return failed;
}
