/* Saliency maps: the plain gradient against a direct backward (tiny net,
 * SqueezeNet, and the CLI against `cnnviz eval`), SmoothGrad with zero
 * noise, guided backpropagation and Grad-CAM against hand computations,
 * constant and NaN maps, and the error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define CNNVIZ "bin/cnnviz"
#define SHARED "../shared/imagenet/"
#define SQUEEZENET SHARED "squeezenet1_1.onnx"

/* ------------------------------------------------------------- builders */

static void ok_model(cnv_model *m, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
}

static void add_const(cnv_model *m, const char *name, cnv_shape sh, const float *v)
{
    ok_model(m, cnv_model_add_const(m, name, CNV_FLOAT32, &sh, v));
}

static void node1(cnv_model *m, const char *op, const char *in, const char *out)
{
    const char *ins[1] = {in}, *outs[1] = {out};
    ok_model(m, cnv_model_add_node(m, op, out, 1, ins, 1, outs, 0, NULL));
}

static void gemm(cnv_model *m, const char *in, const char *w, const char *b, const char *out)
{
    const char *ins[3] = {in, w, b}, *outs[1] = {out};
    cnv_attr tb = tu_attr_int("transB", 1);
    ok_model(m, cnv_model_add_node(m, "Gemm", out, b ? 3 : 2, ins, 1, outs, 1, &tb));
}

static void conv(cnv_model *m, const char *in, const char *w, const char *b, const char *out, int pad)
{
    const char *ins[3] = {in, w, b}, *outs[1] = {out};
    int64_t pads[4] = {pad, pad, pad, pad};
    cnv_attr a = tu_attr_ints("pads", 4, pads);
    ok_model(m, cnv_model_add_node(m, "Conv", out, 3, ins, 1, outs, 1, &a));
}

/* x (N x 3 x 6 x 6) -> conv3x3 (4) -> relu -> conv3x3 (5) "c2" -> relu "r2"
 * -> global average pool -> flatten -> gemm to 7 "logits". */
static cnv_model *tiny_cnn(uint64_t seed)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 3, 6, 6);
    ok_model(m, cnv_model_add_input(m, "x", &xs));
    tu_rng r;
    tu_rng_init(&r, seed);
    float w1[4 * 3 * 9], b1[4], w2[5 * 4 * 9], b2[5], fw[7 * 5], fb[7];
    tu_fill(&r, w1, 108, -0.5f, 0.5f);
    tu_fill(&r, b1, 4, -0.1f, 0.1f);
    tu_fill(&r, w2, 180, -0.5f, 0.5f);
    tu_fill(&r, b2, 5, -0.1f, 0.1f);
    tu_fill(&r, fw, 35, -1.0f, 1.0f);
    tu_fill(&r, fb, 7, -0.1f, 0.1f);
    add_const(m, "w1", tu_shape(4, 4, 3, 3, 3), w1);
    add_const(m, "b1", tu_shape(1, 4), b1);
    add_const(m, "w2", tu_shape(4, 5, 4, 3, 3), w2);
    add_const(m, "b2", tu_shape(1, 5), b2);
    add_const(m, "fw", tu_shape(2, 7, 5), fw);
    add_const(m, "fb", tu_shape(1, 7), fb);
    conv(m, "x", "w1", "b1", "c1", 1);
    node1(m, "Relu", "c1", "r1");
    conv(m, "r1", "w2", "b2", "c2", 1);
    node1(m, "Relu", "c2", "r2");
    node1(m, "GlobalAveragePool", "r2", "gap");
    node1(m, "Flatten", "gap", "flat");
    gemm(m, "flat", "fw", "fb", "logits");
    ok_model(m, cnv_model_add_output(m, "logits"));
    return m;
}

static cnv_session *new_session(cnv_model *m)
{
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    return s;
}

static void ok_s(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s (%s)", cnv_session_errmsg(s), cnv_status_string(st));
}

/* max over channels of |g|, computed the obvious way */
static void ref_absmax(const float *g, int c, int hw, float *out)
{
    for (int i = 0; i < hw; i++) {
        float mx = 0.0f;
        for (int k = 0; k < c; k++)
            mx = fmaxf(mx, fabsf(g[k * hw + i]));
        out[i] = mx;
    }
}

/* The gradient of logit k at x by one plain backward on a fresh session. */
static void direct_grad(cnv_model *m, const char *score, const float *x, int c, int h, int w, int k,
                        float *g)
{
    cnv_session *s = new_session(m);
    ok_s(s, cnv_session_plan(s, 1, h, w));
    memcpy(cnv_session_input(s), x, (size_t)c * h * w * sizeof *x);
    ok_s(s, cnv_session_forward(s));
    cnv_shape sh;
    float *y;
    ok_s(s, cnv_session_tensor(s, tu_t(s, score), &y, &sh));
    int64_t n = cnv_shape_count(&sh);
    float *seed = calloc((size_t)n, sizeof *seed);
    assert_non_null(seed);
    seed[k] = 1.0f;
    ok_s(s, tu_backward(s, score, seed));
    memcpy(g, cnv_session_input_grad(s), (size_t)c * h * w * sizeof *g);
    free(seed);
    cnv_session_free(s);
}

/* ---------------------------------------------------------------- grad */

static void grad_matches_direct_backward(void **state)
{
    (void)state;
    cnv_model *m = tiny_cnn(1);
    float x[3 * 36], g[3 * 36], ref[36], map[36];
    tu_rng r;
    tu_rng_init(&r, 2);
    tu_fill(&r, x, 108, -1.0f, 1.0f);
    cnv_session *s = new_session(m);
    cnv_saliency_params p = cnv_saliency_params_default();
    cnv_saliency_info info;
    /* default class: the top-1 one */
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, map, &info));
    float *logits;
    ok_s(s, cnv_session_tensor(s, tu_t(s, "logits"), &logits, NULL));
    int top = 0;
    for (int k = 1; k < 7; k++)
        if (logits[k] > logits[top])
            top = k;
    assert_int_equal(info.class_index, top);
    assert_true(info.score == logits[top]);
    assert_true(info.prob > 0.0f && info.prob <= 1.0f);
    direct_grad(m, "logits", x, 3, 6, 6, top, g);
    ref_absmax(g, 3, 36, ref);
    double worst = 0.0;
    for (int i = 0; i < 36; i++)
        worst = fmax(worst, fabs((double)map[i] - ref[i]));
    printf("grad saliency vs direct backward (tiny net, class %d): max |diff| %g\n", top, worst);
    assert_true(worst == 0.0);
    /* every class, by number */
    for (int k = 0; k < 7; k++) {
        p.class_index = k;
        ok_s(s, tu_saliency(s, m, x, 6, 6, &p, map, &info));
        assert_int_equal(info.class_index, k);
        direct_grad(m, "logits", x, 3, 6, 6, k, g);
        ref_absmax(g, 3, 36, ref);
        for (int i = 0; i < 36; i++)
            assert_true(map[i] == ref[i]);
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

static void smoothgrad_zero_noise_is_grad(void **state)
{
    (void)state;
    cnv_model *m = tiny_cnn(3);
    float x[3 * 36], grad[36], sg[36];
    tu_rng r;
    tu_rng_init(&r, 4);
    tu_fill(&r, x, 108, -1.0f, 1.0f);
    cnv_session *s = new_session(m);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.class_index = 2;
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, grad, NULL));
    p.method = CNV_SALIENCY_SMOOTHGRAD;
    p.noise = 0.0f;
    p.samples = 7;
    p.batch = 1; /* batch 1: the very same GEMMs as the plain gradient */
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, sg, NULL));
    for (int i = 0; i < 36; i++)
        assert_true(sg[i] == grad[i]);
    /* batched copies: equal up to GEMM rounding */
    p.batch = 3;
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, sg, NULL));
    double worst = 0.0;
    for (int i = 0; i < 36; i++)
        worst = fmax(worst, fabs((double)sg[i] - grad[i]) / fmax(1e-3, fabs(grad[i])));
    printf("SmoothGrad sigma 0, batch 3 vs grad: max rel diff %g\n", worst);
    assert_true(worst < 1e-5);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* SmoothGrad with noise: deterministic for a seed, independent of the
 * batch (per-sample noise streams), different for another seed, and a
 * progress callback that cancels. */
static int count_calls(void *user, int iter, int total, float objective, float prob)
{
    (void)objective;
    (void)prob;
    int *calls = user;
    ++*calls;
    assert_true(iter >= 1 && iter <= total);
    return *calls >= 2;
}

static void smoothgrad_seeded(void **state)
{
    (void)state;
    cnv_model *m = tiny_cnn(5);
    float x[3 * 36], a[36], b[36], c[36];
    tu_rng r;
    tu_rng_init(&r, 6);
    tu_fill(&r, x, 108, -1.0f, 1.0f);
    cnv_session *s = new_session(m);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_SMOOTHGRAD;
    p.samples = 10;
    p.seed = 11;
    p.batch = 4;
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, a, NULL));
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, b, NULL));
    assert_memory_equal(a, b, sizeof a);
    p.batch = 10;
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, b, NULL));
    double worst = 0.0;
    for (int i = 0; i < 36; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]) / fmax(1e-3, fabs(a[i])));
    printf("SmoothGrad batch 4 vs 10, same seed: max rel diff %g\n", worst);
    assert_true(worst < 1e-5);
    p.seed = 12;
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, c, NULL));
    assert_true(memcmp(a, c, sizeof a) != 0);
    int calls = 0;
    p.progress = count_calls;
    p.user = &calls;
    p.batch = 2;
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, c, NULL), CNV_ERR_CANCELLED);
    assert_int_equal(calls, 2);
    assert_non_null(strstr(cnv_session_errmsg(s), "cancelled"));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------- guided */

/* x (1x1x1x2) -> flatten -> gemm W1 (3x2) -> relu "h" -> gemm W2 (1x3).
 * At x = (1, 2): h_pre = (1, 2, 3) > 0, dS/dh = (2, -3, 0.5).
 * True gradient: W1^T (2, -3, 0.5) = (2.5, -2.5); guided passes only the
 * positive dS/dh: W1^T (2, 0, 0.5) = (2.5, 0.5). */
static cnv_model *guided_net(void)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, 1, 1, 1, 2);
    ok_model(m, cnv_model_add_input(m, "x", &xs));
    const float w1[6] = {1, 0, 0, 1, 1, 1}, w2[3] = {2, -3, 0.5f};
    add_const(m, "w1", tu_shape(2, 3, 2), w1);
    add_const(m, "w2", tu_shape(2, 1, 3), w2);
    node1(m, "Flatten", "x", "flat");
    gemm(m, "flat", "w1", NULL, "hpre");
    node1(m, "Relu", "hpre", "h");
    gemm(m, "h", "w2", NULL, "score");
    ok_model(m, cnv_model_add_output(m, "score"));
    return m;
}

static void guided_by_hand(void **state)
{
    (void)state;
    cnv_model *m = guided_net();
    cnv_session *s = new_session(m);
    const float x[2] = {1, 2};
    float map[2];
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_GUIDED;
    ok_s(s, tu_saliency(s, m, x, 1, 2, &p, map, NULL));
    printf("guided map (%g, %g), expected (2.5, 0.5)\n", map[0], map[1]);
    assert_true(map[0] == 2.5f && map[1] == 0.5f);
    /* the gradient that reached the relu's input is the guided one */
    float *gh;
    ok_s(s, cnv_session_grad(s, tu_t(s, "hpre"), &gh));
    assert_true(gh[0] == 2.0f && gh[1] == 0.0f && gh[2] == 0.5f);
    /* the mode is restored: the plain gradient again */
    p.method = CNV_SALIENCY_GRAD;
    ok_s(s, tu_saliency(s, m, x, 1, 2, &p, map, NULL));
    assert_true(map[0] == 2.5f && map[1] == 2.5f);
    /* and a session left in guided mode still gets the true gradient */
    ok_s(s, cnv_session_set_relu_mode(s, CNV_RELU_GUIDED));
    ok_s(s, tu_saliency(s, m, x, 1, 2, &p, map, NULL));
    assert_true(map[0] == 2.5f && map[1] == 2.5f);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* On a conv net: after a guided pass, the gradient that left every ReLU
 * (the one at its input) is >= 0 everywhere, and 0 wherever the plain
 * gradient there was negative; the plain pass has negative values. */
static void guided_passes_only_positive(void **state)
{
    (void)state;
    cnv_model *m = tiny_cnn(7);
    float x[3 * 36], map[36];
    tu_rng r;
    tu_rng_init(&r, 8);
    tu_fill(&r, x, 108, -1.0f, 1.0f);
    cnv_session *s = new_session(m);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.class_index = 1;
    const char *relu_in[2] = {"c1", "c2"};
    int negatives = 0;
    for (int method = 0; method < 2; method++) {
        p.method = method ? CNV_SALIENCY_GUIDED : CNV_SALIENCY_GRAD;
        ok_s(s, tu_saliency(s, m, x, 6, 6, &p, map, NULL));
        for (int k = 0; k < 2; k++) {
            float *g;
            cnv_shape sh;
            ok_s(s, cnv_session_grad(s, tu_t(s, relu_in[k]), &g));
            ok_s(s, cnv_session_tensor(s, tu_t(s, relu_in[k]), NULL, &sh));
            for (int64_t i = 0; i < cnv_shape_count(&sh); i++) {
                if (method)
                    assert_true(g[i] >= 0.0f);
                else
                    negatives += g[i] < 0.0f;
            }
        }
    }
    printf("plain gradient: %d negative values at ReLU inputs; guided: none\n", negatives);
    assert_true(negatives > 0);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------ Grad-CAM */

/* x (1x1x4x4) -> 1x1 conv to 2 channels (weights 1 and -1, no bias) "A"
 * -> average pool 2x2 stride 2 "B" -> global average pool -> flatten ->
 * gemm W (2 classes x 2, no bias) "logits". */
static cnv_model *cam_net(void)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, 1, 1, 4, 4);
    ok_model(m, cnv_model_add_input(m, "x", &xs));
    const float cw[2] = {1, -1}, cb[2] = {0, 0}, fw[4] = {1, -1, 0.5f, 2};
    add_const(m, "cw", tu_shape(4, 2, 1, 1, 1), cw);
    add_const(m, "cb", tu_shape(1, 2), cb);
    add_const(m, "fw", tu_shape(2, 2, 2), fw);
    conv(m, "x", "cw", "cb", "A", 0);
    const char *ins[1] = {"A"}, *outs[1] = {"B"};
    int64_t k2[2] = {2, 2};
    cnv_attr at[2] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("strides", 2, k2)};
    ok_model(m, cnv_model_add_node(m, "AveragePool", "B", 1, ins, 1, outs, 2, at));
    node1(m, "GlobalAveragePool", "B", "gap");
    node1(m, "Flatten", "gap", "flat");
    gemm(m, "flat", "fw", NULL, "logits");
    ok_model(m, cnv_model_add_output(m, "logits"));
    return m;
}

static void gradcam_by_hand(void **state)
{
    (void)state;
    cnv_model *m = cam_net();
    cnv_session *s = new_session(m);
    const float x[16] = {1, 2, -1, 0, 3, -1, 2, 2, 0, 1, -2, 4, 1, 1, 1, -3};
    float map[16];
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_GRADCAM;
    cnv_saliency_info info;
    /* Default layer: A (the last Conv/Relu output larger than 1x1).
     * S_c = W[c,0] mean(A_0) + W[c,1] mean(A_1), so alpha_k = W[c,k]/16
     * and, with A_0 = x, A_1 = -x: cam = ReLU((W[c,0] - W[c,1]) / 16 * x). */
    for (int c = 0; c < 2; c++) {
        p.class_index = c;
        ok_s(s, tu_saliency(s, m, x, 4, 4, &p, map, &info));
        assert_string_equal(info.layer, "A");
        assert_int_equal(info.layer_height, 4);
        assert_int_equal(info.layer_width, 4);
        const float wdiff = c == 0 ? 2.0f : -1.5f;
        double worst = 0.0;
        for (int i = 0; i < 16; i++)
            worst = fmax(worst, fabs(map[i] - fmaxf(0.0f, wdiff / 16.0f * x[i])));
        printf("Grad-CAM on A, class %d: max |diff| to the hand value %g\n", c, worst);
        assert_true(worst < 1e-6);
    }
    /* Layer B (2x2): B_0 = 2x2 means of x, B_1 = -B_0, alpha_k = W[c,k]/4,
     * cam = ReLU((W[c,0] - W[c,1]) / 4 * B_0), then bilinear to 4x4 with
     * half-pixel centers: output rows/cols 0..3 sit at source 0, 0.25,
     * 0.75, 1 (clamped), i.e. weights U below. */
    p.class_index = 0;
    p.layer = "B";
    ok_s(s, tu_saliency(s, m, x, 4, 4, &p, map, &info));
    assert_string_equal(info.layer, "B");
    assert_int_equal(info.layer_height, 2);
    float b0[4] = {(1 + 2 + 3 - 1) / 4.0f, (-1 + 0 + 2 + 2) / 4.0f, (0 + 1 + 1 + 1) / 4.0f,
                   (-2 + 4 + 1 - 3) / 4.0f};
    float cam[4];
    for (int i = 0; i < 4; i++)
        cam[i] = fmaxf(0.0f, 2.0f / 4.0f * b0[i]);
    const float U[4][2] = {{1, 0}, {0.75f, 0.25f}, {0.25f, 0.75f}, {0, 1}};
    double worst = 0.0;
    for (int y = 0; y < 4; y++)
        for (int xx = 0; xx < 4; xx++) {
            double want = 0.0;
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    want += U[y][a] * U[xx][b] * cam[a * 2 + b];
            worst = fmax(worst, fabs(map[y * 4 + xx] - want));
        }
    printf("Grad-CAM on B (2x2 upsampled): max |diff| to the hand value %g\n", worst);
    assert_true(worst < 1e-6);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------ constant, NaN */

static void constant_and_nan_maps(void **state)
{
    (void)state;
    /* x (1x1x1x3) -> flatten -> gemm W (1x3): the gradient is W whatever
     * x is. W = (-2, 2, -2) gives a constant map, W = (1, NaN, 3) a NaN. */
    for (int k = 0; k < 2; k++) {
        cnv_model *m;
        assert_int_equal(cnv_model_create(&m), CNV_OK);
        cnv_shape xs = tu_shape(4, -1, 1, 1, 3); /* SmoothGrad batches copies */
        ok_model(m, cnv_model_add_input(m, "x", &xs));
        const float w[2][3] = {{-2, 2, -2}, {1, NAN, 3}};
        add_const(m, "w", tu_shape(2, 1, 3), w[k]);
        node1(m, "Flatten", "x", "flat");
        gemm(m, "flat", "w", NULL, "logits");
        ok_model(m, cnv_model_add_output(m, "logits"));
        cnv_session *s = new_session(m);
        const float x[3] = {0.5f, 0.25f, 1};
        float map[3];
        cnv_image img = {0};
        char err[256];
        cnv_saliency_params p = cnv_saliency_params_default();
        if (k == 0) {
            ok_s(s, tu_saliency(s, m, x, 1, 3, &p, map, NULL));
            assert_true(map[0] == 2.0f && map[1] == 2.0f && map[2] == 2.0f);
            assert_int_equal(cnv_map_to_gray(map, 1, 3, &img, err, sizeof err), CNV_OK);
            assert_true(img.data[0] == 0 && img.data[1] == 0 && img.data[2] == 0);
        } else {
            /* the score is NaN: no map means anything, named class or not
             * (before round 2 of "Untrusted input" a named class gave a
             * map with a NaN in it) */
            assert_int_equal(tu_saliency(s, m, x, 1, 3, &p, map, NULL), CNV_ERR_FORMAT);
            printf("NaN score: %s\n", cnv_session_errmsg(s));
            assert_non_null(strstr(cnv_session_errmsg(s), "not finite"));
            p.class_index = 0;
            p.method = CNV_SALIENCY_SMOOTHGRAD;
            p.samples = 3;
            assert_int_equal(tu_saliency(s, m, x, 1, 3, &p, map, NULL), CNV_ERR_FORMAT);
            /* a NaN in a map (a caller's own) is drawn as 0 */
            const float nan_map[3] = {1.0f, NAN, 3.0f};
            assert_int_equal(cnv_map_to_gray(nan_map, 1, 3, &img, err, sizeof err), CNV_OK);
            assert_true(img.data[0] == 0 && img.data[1] == 0 && img.data[2] == 255);
        }
        cnv_image_free(&img);
        cnv_session_free(s);
        cnv_model_free(m);
    }

    /* Grad-CAM: an all-zero image gives a constant (zero) cam */
    cnv_model *m = cam_net();
    cnv_session *s = new_session(m);
    float zero[16] = {0}, cmap[16];
    cnv_image img = {0};
    char err[256];
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_GRADCAM;
    ok_s(s, tu_saliency(s, m, zero, 4, 4, &p, cmap, NULL));
    for (int i = 0; i < 16; i++)
        assert_true(cmap[i] == 0.0f);
    assert_int_equal(cnv_map_to_gray(cmap, 4, 4, &img, err, sizeof err), CNV_OK);
    cnv_image_free(&img);
    /* a NaN pixel makes the score NaN: refused, as any non-finite score
     * (before: a cam with a NaN at that pixel) */
    float xn[16] = {1, 2, -1, 0, 3, -1, 2, 2, 0, 1, -2, 4, 1, 1, 1, -3};
    xn[5] = NAN;
    p.class_index = 0;
    assert_int_equal(tu_saliency(s, m, xn, 4, 4, &p, cmap, NULL), CNV_ERR_FORMAT);
    assert_non_null(strstr(cnv_session_errmsg(s), "not finite"));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* --------------------------------------------------------------- errors */

static void errors(void **state)
{
    (void)state;
    cnv_model *m = tiny_cnn(9);
    cnv_session *s = new_session(m);
    float x[3 * 36] = {0}, map[36];
    cnv_saliency_params p = cnv_saliency_params_default();
    p.class_index = 7;
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, map, NULL), CNV_ERR_INVALID_ARG);
    printf("class 7: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "out of range"));
    p.class_index = 0;
    p.method = CNV_SALIENCY_GRADCAM;
    p.layer = "nonesuch";
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, map, NULL), CNV_ERR_NOT_FOUND);
    printf("layer nonesuch: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "nonesuch"));
    p.layer = "c"; /* c1, c2 ... */
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, map, NULL), CNV_ERR_NOT_FOUND);
    printf("layer c: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "ambiguous"));
    p.layer = "w1";
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, map, NULL), CNV_ERR_NOT_FOUND);
    assert_non_null(strstr(cnv_session_errmsg(s), "constant"));
    p.layer = "r2";
    ok_s(s, tu_saliency(s, m, x, 6, 6, &p, map, NULL));
    p.layer = NULL;
    p.method = (cnv_saliency_method)CNV_SALIENCY_METHODS;
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, map, NULL), CNV_ERR_INVALID_ARG);
    p.method = CNV_SALIENCY_SMOOTHGRAD;
    p.samples = 0;
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, map, NULL), CNV_ERR_INVALID_ARG);
    p = cnv_saliency_params_default();
    p.score = "nope";
    assert_int_equal(tu_saliency(s, m, x, 6, 6, &p, map, NULL), CNV_ERR_NOT_FOUND);
    assert_int_equal(tu_saliency(s, m, NULL, 6, 6, NULL, map, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_saliency(s, m, x, 0, 6, NULL, map, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_saliency(NULL, m, x, 6, 6, NULL, map, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_saliency_method_parse("gradcam"), CNV_SALIENCY_GRADCAM);
    assert_int_equal(cnv_saliency_method_parse("nope"), -1);
    assert_string_equal(cnv_saliency_method_name(CNV_SALIENCY_SMOOTHGRAD), "smoothgrad");
    assert_null(cnv_saliency_method_name((cnv_saliency_method)-1));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ----------------------------------------------------------- SqueezeNet */

static int have_squeezenet(void)
{
    if (access(SQUEEZENET, R_OK) == 0)
        return 1;
    printf("skipping: " SQUEEZENET " is absent (SqueezeNet lives beside the repository)\n");
    return 0;
}

static void parse3(const char *s, float out[3])
{
    assert_non_null(s);
    assert_int_equal(sscanf(s, "%f,%f,%f", &out[0], &out[1], &out[2]), 3);
}

/* grad saliency on cat.jpg equals |gradient| max over channels of a plain
 * backward for the same preprocessed input; Grad-CAM picks the last
 * Relu (13 x 13) and peaks inside the image. */
static void squeezenet_grad_and_gradcam(void **state)
{
    (void)state;
    if (!have_squeezenet())
        skip();
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(SQUEEZENET, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 224, 224);
    parse3(cnv_model_get_meta(m, "cnnviz.mean"), pp.mean);
    parse3(cnv_model_get_meta(m, "cnnviz.std"), pp.std);
    cnv_image img = {0};
    char err[256];
    enum { HW = 224 * 224 };
    float *x = malloc(3 * HW * sizeof *x), *g = malloc(3 * HW * sizeof *g);
    float *map = malloc(HW * sizeof *map), *ref = malloc(HW * sizeof *ref);
    assert_true(x && g && map && ref);
    if (cnv_image_load(SHARED "images/cat.jpg", &img, err, sizeof err) != CNV_OK ||
        cnv_image_to_tensor(&img, &pp, x, tu_pp_len(&pp), err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    cnv_image_free(&img);
    cnv_session *s = new_session(m);
    cnv_saliency_params p = cnv_saliency_params_default();
    cnv_saliency_info info;
    ok_s(s, tu_saliency(s, m, x, 224, 224, &p, map, &info));
    direct_grad(m, "logits", x, 3, 224, 224, info.class_index, g);
    ref_absmax(g, 3, HW, ref);
    double worst = 0.0, mx = 0.0;
    for (int i = 0; i < HW; i++) {
        worst = fmax(worst, fabs((double)map[i] - ref[i]));
        mx = fmax(mx, ref[i]);
    }
    printf("SqueezeNet cat.jpg class %d: grad saliency vs direct backward max |diff| %g (map max %g)\n",
           info.class_index, worst, mx);
    assert_true(worst <= 1e-6 * mx);
    p.method = CNV_SALIENCY_GRADCAM;
    ok_s(s, tu_saliency(s, m, x, 224, 224, &p, map, &info));
    printf("Grad-CAM layer %s (%dx%d)\n", info.layer, info.layer_height, info.layer_width);
    assert_string_equal(info.layer, "/classifier/classifier.2/Relu_output_0");
    assert_int_equal(info.layer_height, 13);
    float lo = map[0], hi = map[0];
    for (int i = 0; i < HW; i++) {
        lo = fminf(lo, map[i]);
        hi = fmaxf(hi, map[i]);
    }
    assert_true(lo >= 0.0f && hi > lo);
    cnv_session_free(s);
    cnv_model_free(m);
    free(x);
    free(g);
    free(map);
    free(ref);
}

/* ------------------------------------------------------------------ CLI */

static int sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static float *read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    float *x = malloc((n + 1) * sizeof *x);
    assert_non_null(x);
    assert_int_equal(fread(x, sizeof *x, n + 1, f), n); /* exactly n values */
    fclose(f);
    return x;
}

/* `cnnviz saliency --raw-out` equals |grad| max over channels of
 * `cnnviz eval --grad-class K --grad-out` on `cnnviz preprocess`'s
 * output; unknown classes and layers fail with exit code 1. */
static void cli_saliency_vs_eval(void **state)
{
    (void)state;
    if (!have_squeezenet())
        skip();
    if (access(CNNVIZ, X_OK)) {
        printf("skipping: " CNNVIZ " is missing (run through 'make test' from the repository root)\n");
        skip();
    }
    char dir[] = "/tmp/cnv_saliency_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024];
    const char *M = "-m " SQUEEZENET " " SHARED "images/dog.jpg";
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --class 207 --raw-out %s/s.f32 -o %s/s.png --quiet", M, dir,
             dir);
    assert_int_equal(sh(cmd), 0);
    snprintf(cmd, sizeof cmd, CNNVIZ " preprocess %s -o %s/x.f32 > /dev/null", M, dir);
    assert_int_equal(sh(cmd), 0);
    snprintf(cmd, sizeof cmd,
             CNNVIZ " eval -m " SQUEEZENET " --input %s/x.f32 --shape 1,3,224,224 --grad-class 207 "
                    "--grad-out %s/g.f32 > /dev/null",
             dir, dir);
    assert_int_equal(sh(cmd), 0);
    enum { HW = 224 * 224 };
    char path[512];
    snprintf(path, sizeof path, "%s/s.f32", dir);
    float *sal = read_f32(path, HW);
    snprintf(path, sizeof path, "%s/g.f32", dir);
    float *g = read_f32(path, 3 * HW);
    float *ref = malloc(HW * sizeof *ref);
    assert_non_null(ref);
    ref_absmax(g, 3, HW, ref);
    double worst = 0.0, mx = 0.0;
    for (int i = 0; i < HW; i++) {
        worst = fmax(worst, fabs((double)sal[i] - ref[i]));
        mx = fmax(mx, ref[i]);
    }
    printf("CLI saliency --raw-out vs eval --grad-out (dog.jpg, class 207): max |diff| %g (max %g)\n", worst,
           mx);
    assert_true(worst <= 1e-6 * mx);
    snprintf(path, sizeof path, "%s/s.png", dir);
    assert_int_equal(access(path, R_OK), 0);
    /* errors */
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --class 5000 -o %s/e.png 2>/dev/null", M, dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --class 'no such animal' -o %s/e.png 2>/dev/null", M, dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --method gradcam --layer nonesuch -o %s/e.png 2>/dev/null",
             M, dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --method nope -o %s/e.png 2>/dev/null", M, dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(path, sizeof path, "%s/e.png", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
    free(sal);
    free(g);
    free(ref);
}

/* The default model (weights/fashion_mnist.onnx, when present): a sheet
 * of all four methods, one of a single method, and the option rules. */
static void cli_default_model_sheets(void **state)
{
    (void)state;
    if (access(CNNVIZ, X_OK) || access("weights/fashion_mnist.onnx", R_OK)) {
        printf("skipping: " CNNVIZ " or weights/fashion_mnist.onnx is missing\n");
        skip();
    }
    char dir[] = "/tmp/cnv_saliency_fm_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], cmd[1024], err[256];
    /* a 28 x 28 gray picture: a bright rectangle on black */
    cnv_image img = {0};
    assert_int_equal(cnv_image_create(28, 28, 1, &img, err, sizeof err), CNV_OK);
    for (int y = 6; y < 22; y++)
        for (int x = 9; x < 19; x++)
            img.data[y * 28 + x] = 200;
    snprintf(path, sizeof path, "%s/in.png", dir);
    assert_int_equal(cnv_image_write_png(&img, path, err, sizeof err), CNV_OK);
    cnv_image_free(&img);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --method all --samples 5 --sheet %s/all.png --quiet", path, dir);
    assert_int_equal(sh(cmd), 0);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --method gradcam --sheet %s/one.png --json > /dev/null", path,
             dir);
    assert_int_equal(sh(cmd), 0);
    cnv_image a = {0}, b = {0};
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/all.png", dir);
    snprintf(p2, sizeof p2, "%s/one.png", dir);
    if (cnv_image_load(p1, &a, err, sizeof err) != CNV_OK || cnv_image_load(p2, &b, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    printf("sheets: all methods %dx%d, one method %dx%d\n", a.width, a.height, b.width, b.height);
    /* 28-pixel tiles are enlarged to at least 64: 5 x 2 and 3 x 1 cells */
    assert_true(a.width >= 5 * 64 && a.height >= 2 * 64 && b.width >= 3 * 64 && b.height >= 64);
    assert_true(a.width > b.width && a.height > b.height);
    cnv_image_free(&a);
    cnv_image_free(&b);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --method all -o %s/x.png 2>/dev/null", path, dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(cmd, sizeof cmd, CNNVIZ " saliency %s --layer relu4 -o %s/x.png 2>/dev/null", path, dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grad_matches_direct_backward),
        cmocka_unit_test(smoothgrad_zero_noise_is_grad),
        cmocka_unit_test(smoothgrad_seeded),
        cmocka_unit_test(guided_by_hand),
        cmocka_unit_test(guided_passes_only_positive),
        cmocka_unit_test(gradcam_by_hand),
        cmocka_unit_test(constant_and_nan_maps),
        cmocka_unit_test(errors),
        cmocka_unit_test(squeezenet_grad_and_gradcam),
        cmocka_unit_test(cli_saliency_vs_eval),
        cmocka_unit_test(cli_default_model_sheets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
