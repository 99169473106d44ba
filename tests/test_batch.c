/* A batch is a set of independent images: every value and every gradient
 * of image b of a batch must equal what a session planned for that image
 * alone on one thread computes, whatever the batch's thread count, for a
 * graph of every op kind a CNN uses; a graph that does mix the images
 * (Softmax over the batch axis) must do so. (No allocation with a batch:
 * test_noalloc.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { H = 10, W = 9, NB = 5 };

static void add_param(cnv_model *m, tu_rng *r, const char *name, cnv_shape sh, float lo, float hi)
{
    int64_t n = cnv_shape_count(&sh);
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    tu_fill(r, v, n, lo, hi);
    if (cnv_model_add_const(m, name, CNV_FLOAT32, &sh, v) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    free(v);
}

static void node(cnv_model *m, const char *op, const char *name, int n_in, const char *const *in,
                 const char *out, int n_attrs, const cnv_attr *attrs)
{
    if (cnv_model_add_node(m, op, name, n_in, in, 1, &out, n_attrs, attrs) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
}

#define IN(...) (const char *const[]){__VA_ARGS__}

/* x (N,3,10,9) -> conv 3x3 stride 2 pad 1 (6) c1 -> relu r1 -> maxpool 3x3
 * stride 1 pad 1 p1 -> {conv 1x1 (4) ca -> relu ra, conv 3x3 pad 1 (5) cb
 * -> relu rb} -> concat cat (9) -> batchnorm bn -> + bias (1,9,1,1) sum ->
 * avgpool 2x2 stride 1 avg -> avg + avg twice -> gap -> flatten flat ->
 * gemm (7) logits -> softmax over axis softmax_axis prob. */
static cnv_model *build(int softmax_axis)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 3, -1, -1);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    tu_rng r;
    tu_rng_init(&r, 31);
    add_param(m, &r, "w1", tu_shape(4, 6, 3, 3, 3), -0.5f, 0.5f);
    add_param(m, &r, "b1", tu_shape(1, 6), -0.1f, 0.1f);
    add_param(m, &r, "wa", tu_shape(4, 4, 6, 1, 1), -0.7f, 0.7f);
    add_param(m, &r, "ba", tu_shape(1, 4), -0.1f, 0.1f);
    add_param(m, &r, "wb", tu_shape(4, 5, 6, 3, 3), -0.3f, 0.3f);
    add_param(m, &r, "bb", tu_shape(1, 5), -0.1f, 0.1f);
    add_param(m, &r, "scale", tu_shape(1, 9), 0.5f, 1.5f);
    add_param(m, &r, "shift", tu_shape(1, 9), -0.2f, 0.2f);
    add_param(m, &r, "mean", tu_shape(1, 9), -0.1f, 0.3f);
    add_param(m, &r, "var", tu_shape(1, 9), 0.5f, 2.0f);
    add_param(m, &r, "bias", tu_shape(4, 1, 9, 1, 1), -0.3f, 0.3f);
    add_param(m, &r, "fc.w", tu_shape(2, 7, 9), -0.8f, 0.8f);
    add_param(m, &r, "fc.b", tu_shape(1, 7), -0.3f, 0.3f);

    const int64_t k3[2] = {3, 3}, k2[2] = {2, 2}, k1[2] = {1, 1}, s1[2] = {1, 1}, s2[2] = {2, 2},
                  p1[4] = {1, 1, 1, 1};
    const cnv_attr conv_s2[3] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("strides", 2, s2),
                                 tu_attr_ints("pads", 4, p1)};
    const cnv_attr conv3[2] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("pads", 4, p1)};
    const cnv_attr conv1 = tu_attr_ints("kernel_shape", 2, k1);
    const cnv_attr maxp[3] = {tu_attr_ints("kernel_shape", 2, k3), tu_attr_ints("strides", 2, s1),
                              tu_attr_ints("pads", 4, p1)};
    const cnv_attr avgp[2] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("strides", 2, s1)};
    const cnv_attr axis1 = tu_attr_int("axis", 1), transb = tu_attr_int("transB", 1);
    const cnv_attr smax = tu_attr_int("axis", softmax_axis);

    node(m, "Conv", "conv1", 3, IN("x", "w1", "b1"), "c1", 3, conv_s2);
    node(m, "Relu", "relu1", 1, IN("c1"), "r1", 0, NULL);
    node(m, "MaxPool", "pool1", 1, IN("r1"), "p1", 3, maxp);
    node(m, "Conv", "conv_a", 3, IN("p1", "wa", "ba"), "ca", 1, &conv1);
    node(m, "Relu", "relu_a", 1, IN("ca"), "ra", 0, NULL);
    node(m, "Conv", "conv_b", 3, IN("p1", "wb", "bb"), "cb", 2, conv3);
    node(m, "Relu", "relu_b", 1, IN("cb"), "rb", 0, NULL);
    node(m, "Concat", "concat", 2, IN("ra", "rb"), "cat", 1, &axis1);
    node(m, "BatchNormalization", "bn", 5, IN("cat", "scale", "shift", "mean", "var"), "bn", 0, NULL);
    node(m, "Add", "add_bias", 2, IN("bn", "bias"), "sum", 0, NULL);
    node(m, "AveragePool", "avg", 1, IN("sum"), "avg", 2, avgp);
    node(m, "Add", "twice", 2, IN("avg", "avg"), "twice", 0, NULL);
    node(m, "GlobalAveragePool", "gap", 1, IN("twice"), "gap", 0, NULL);
    node(m, "Flatten", "flatten", 1, IN("gap"), "flat", 0, NULL);
    node(m, "Gemm", "fc", 3, IN("flat", "fc.w", "fc.b"), "logits", 1, &transb);
    node(m, "Softmax", "softmax", 1, IN("logits"), "prob", 1, &smax);
    assert_int_equal(cnv_model_add_output(m, "prob"), CNV_OK);
    return m;
}

static cnv_session *session(const cnv_model *m, int threads, int n)
{
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(cnv_session_set_threads(s, threads), CNV_OK);
    if (cnv_session_plan(s, n, H, W) != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
    return s;
}

/* Values and gradients of every node output, and the input gradient, of
 * each image of batch session b, against a one-image session run on it. */
static int compare_to_single_images(const cnv_model *m, cnv_session *b, const float *x, const float *seed)
{
    cnv_session *one = session(m, 1, 1);
    const int64_t in1 = 3 * H * W, out1 = 7;
    int compared = 0;
    for (int i = 0; i < NB; i++) {
        memcpy(cnv_session_input(one), x + i * in1, (size_t)in1 * sizeof(float));
        assert_int_equal(cnv_session_forward(one), CNV_OK);
        assert_int_equal(tu_backward(one, "prob", seed + i * out1), CNV_OK);
        for (int k = -1; k < cnv_model_node_count(m); k++) {
            const char *name = k < 0 ? "x" : cnv_model_tensor_name(m, cnv_model_node_output(m, k));
            float *vb, *v1, *gb, *g1;
            cnv_shape sb, s1;
            assert_int_equal(cnv_session_tensor(b, tu_t(b, name), &vb, &sb), CNV_OK);
            assert_int_equal(cnv_session_tensor(one, tu_t(one, name), &v1, &s1), CNV_OK);
            int64_t n1 = cnv_shape_count(&s1);
            assert_int_equal(cnv_shape_count(&sb), NB * n1);
            assert_int_equal(cnv_session_grad(b, tu_t(b, name), &gb), CNV_OK);
            assert_int_equal(cnv_session_grad(one, tu_t(one, name), &g1), CNV_OK);
            if (memcmp(vb + i * n1, v1, (size_t)n1 * sizeof(float)) != 0 ||
                memcmp(gb + i * n1, g1, (size_t)n1 * sizeof(float)) != 0)
                fail_msg("image %d, tensor '%s': the batch differs from the image alone", i, name);
            compared++;
        }
    }
    cnv_session_free(one);
    return compared;
}

static void fill(float *x, float *seed, uint64_t salt)
{
    tu_rng r;
    tu_rng_init(&r, 7 + salt);
    tu_fill(&r, x, NB * 3 * H * W, -1.0f, 1.0f);
    tu_fill(&r, seed, NB * 7, -1.0f, 1.0f);
}

static void test_batch_equals_single_images(void **state)
{
    (void)state;
    cnv_model *m = build(1);
    static float x[NB * 3 * H * W], seed[NB * 7];
    for (int threads = 1; threads <= 3; threads++) {
        cnv_session *b = session(m, threads, NB);
        for (int round = 0; round < 2; round++) { /* twice: nothing left over */
            fill(x, seed, (uint64_t)(threads * 2 + round));
            memcpy(cnv_session_input(b), x, sizeof x);
            assert_int_equal(cnv_session_forward(b), CNV_OK);
            assert_int_equal(tu_backward(b, "prob", seed), CNV_OK);
            int n = compare_to_single_images(m, b, x, seed);
            printf("%d threads, round %d: %d tensors (of %d images), values and gradients equal\n",
                   threads, round, n, NB);
        }
        cnv_session_free(b);
    }
    cnv_model_free(m);
}

/* forward_to and a backward from an intermediate tensor */
static void test_partial_passes(void **state)
{
    (void)state;
    cnv_model *m = build(1);
    static float x[NB * 3 * H * W], seed[NB * 7];
    fill(x, seed, 100);
    cnv_session *b = session(m, 2, NB), *one = session(m, 1, 1);
    memcpy(cnv_session_input(b), x, sizeof x);
    assert_int_equal(cnv_session_forward_to(b, tu_t(b, "cat")), CNV_OK);
    float *cat, *g, *g1, *c1;
    cnv_shape cs;
    assert_int_equal(cnv_session_tensor(b, tu_t(b, "cat"), &cat, &cs), CNV_OK);
    int64_t per = cnv_shape_count(&cs) / NB;
    float *cseed = malloc((size_t)(per * NB) * sizeof *cseed);
    assert_non_null(cseed);
    for (int64_t i = 0; i < per * NB; i++)
        cseed[i] = (float)(i % 13) - 6.0f;
    assert_int_equal(tu_backward(b, "cat", cseed), CNV_OK);
    /* prob was not computed */
    assert_int_equal(tu_backward(b, "prob", seed), CNV_ERR_STATE);
    assert_int_equal(cnv_session_grad(b, tu_t(b, "x"), &g), CNV_OK);
    for (int i = 0; i < NB; i++) {
        memcpy(cnv_session_input(one), x + i * 3 * H * W, 3 * H * W * sizeof(float));
        assert_int_equal(cnv_session_forward_to(one, tu_t(one, "cat")), CNV_OK);
        assert_int_equal(tu_backward(one, "cat", cseed + i * per), CNV_OK);
        assert_int_equal(cnv_session_tensor(one, tu_t(one, "cat"), &c1, NULL), CNV_OK);
        assert_int_equal(cnv_session_grad(one, tu_t(one, "x"), &g1), CNV_OK);
        assert_memory_equal(cat + i * per, c1, (size_t)per * sizeof(float));
        assert_memory_equal(g + i * 3 * H * W, g1, 3 * H * W * sizeof(float));
    }
    free(cseed);
    cnv_session_free(b);
    cnv_session_free(one);
    cnv_model_free(m);
}

/* Softmax over the batch axis normalizes over the images (checked against
 * a reference computed here from the logits). */
static void test_softmax_over_batch_axis(void **state)
{
    (void)state;
    cnv_model *m = build(0);
    static float x[NB * 3 * H * W], seed[NB * 7];
    fill(x, seed, 300);
    cnv_session *b = session(m, 2, NB);
    memcpy(cnv_session_input(b), x, sizeof x);
    assert_int_equal(cnv_session_forward(b), CNV_OK);
    float *lg, *pr;
    assert_int_equal(cnv_session_tensor(b, tu_t(b, "logits"), &lg, NULL), CNV_OK);
    assert_int_equal(cnv_session_tensor(b, tu_t(b, "prob"), &pr, NULL), CNV_OK);
    double worst = 0;
    for (int j = 0; j < 7; j++) {
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < NB; i++)
            mx = fmax(mx, lg[i * 7 + j]);
        for (int i = 0; i < NB; i++)
            sum += exp(lg[i * 7 + j] - mx);
        for (int i = 0; i < NB; i++)
            worst = fmax(worst, fabs(pr[i * 7 + j] - exp(lg[i * 7 + j] - mx) / sum));
    }
    printf("softmax over the batch axis: max abs diff %.3g\n", worst);
    assert_true(worst < 1e-6);
    cnv_session_free(b);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_equals_single_images),
        cmocka_unit_test(test_partial_passes),
        cmocka_unit_test(test_softmax_over_batch_axis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
