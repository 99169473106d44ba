/* Neuron and layer visualization: layer-name resolution, the layers a
 * contact sheet shows, the ascent raising the target activation (a tiny
 * net, SqueezeNet), batching, determinism, errors, and the neuron and
 * layers subcommands. */
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

static void ok_model(cnv_model *m, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
}

static void ok_s(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s (%s)", cnv_session_errmsg(s), cnv_status_string(st));
}

static void add_const(cnv_model *m, const char *name, cnv_shape sh, const float *v)
{
    ok_model(m, cnv_model_add_const(m, name, CNV_FLOAT32, &sh, v));
}

/* A node named `name` (which differs from its output, to tell node names
 * and tensor names apart). */
static void node(cnv_model *m, const char *op, const char *name, const char *in, const char *w,
                 const char *b, const char *out, int n_attrs, const cnv_attr *at)
{
    const char *ins[3] = {in, w, b}, *outs[1] = {out};
    ok_model(m, cnv_model_add_node(m, op, name, w ? (b ? 3 : 2) : 1, ins, 1, outs, n_attrs, at));
}

/* x (N x 3 x 12 x 12) -> conv3x3 "conv1" -> relu -> maxpool 2 -> conv3x3 ->
 * relu -> conv1x1 (no relu) -> gap -> flatten -> gemm "logits".
 * Layers (tensors): t/conv1, t/relu1, t/pool1, t/conv2, t/relu2, t/conv3. */
static cnv_model *net(uint64_t seed)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 3, -1, -1);
    ok_model(m, cnv_model_add_input(m, "x", &xs));
    tu_rng r;
    tu_rng_init(&r, seed);
    static float w1[6 * 3 * 9], w2[8 * 6 * 9], w3[4 * 8], fw[5 * 4], b[8];
    tu_fill(&r, w1, 6 * 27, -0.4f, 0.4f);
    tu_fill(&r, w2, 8 * 54, -0.3f, 0.3f);
    tu_fill(&r, w3, 32, -0.5f, 0.5f);
    tu_fill(&r, fw, 20, -1.0f, 1.0f);
    tu_fill(&r, b, 8, -0.05f, 0.05f);
    add_const(m, "w1", tu_shape(4, 6, 3, 3, 3), w1);
    add_const(m, "w2", tu_shape(4, 8, 6, 3, 3), w2);
    add_const(m, "w3", tu_shape(4, 4, 8, 1, 1), w3);
    add_const(m, "fw", tu_shape(2, 5, 4), fw);
    add_const(m, "b1", tu_shape(1, 6), b);
    add_const(m, "b2", tu_shape(1, 8), b);
    int64_t p1[4] = {1, 1, 1, 1}, k2[2] = {2, 2};
    cnv_attr pad = tu_attr_ints("pads", 4, p1);
    cnv_attr pool[2] = {tu_attr_ints("kernel_shape", 2, k2), tu_attr_ints("strides", 2, k2)};
    cnv_attr tb = tu_attr_int("transB", 1);
    node(m, "Conv", "conv1", "x", "w1", "b1", "t/conv1", 1, &pad);
    node(m, "Relu", "relu1", "t/conv1", NULL, NULL, "t/relu1", 0, NULL);
    node(m, "MaxPool", "pool1", "t/relu1", NULL, NULL, "t/pool1", 2, pool);
    node(m, "Conv", "conv2", "t/pool1", "w2", "b2", "t/conv2", 1, &pad);
    node(m, "Relu", "relu2", "t/conv2", NULL, NULL, "t/relu2", 0, NULL);
    node(m, "Conv", "conv3", "t/relu2", "w3", NULL, "t/conv3", 0, NULL);
    node(m, "GlobalAveragePool", "gap", "t/conv3", NULL, NULL, "t/gap", 0, NULL);
    node(m, "Flatten", "flat", "t/gap", NULL, NULL, "t/flat", 0, NULL);
    node(m, "Gemm", "fc", "t/flat", "fw", NULL, "logits", 1, &tb);
    ok_model(m, cnv_model_add_output(m, "logits"));
    return m;
}

static void find_layer(void **state)
{
    (void)state;
    cnv_model *m = net(1);
    const char *name = NULL;
    char err[256];
    assert_int_equal(tu_find_layer(m, "t/relu2", &name, err, sizeof err), CNV_OK);
    assert_string_equal(name, "t/relu2");
    assert_int_equal(tu_find_layer(m, "conv2", &name, err, sizeof err), CNV_OK); /* node name */
    assert_string_equal(name, "t/conv2");
    assert_int_equal(tu_find_layer(m, "pool", &name, err, sizeof err), CNV_OK); /* unique part */
    assert_string_equal(name, "t/pool1");
    assert_int_equal(tu_find_layer(m, "x", &name, err, sizeof err), CNV_OK); /* the input */
    assert_int_equal(tu_find_layer(m, "relu", &name, err, sizeof err), CNV_ERR_NOT_FOUND);
    printf("'relu': %s\n", err);
    assert_non_null(strstr(err, "ambiguous"));
    assert_non_null(strstr(err, "t/relu1"));
    assert_int_equal(tu_find_layer(m, "nonesuch", &name, err, sizeof err), CNV_ERR_NOT_FOUND);
    printf("'nonesuch': %s\n", err);
    assert_non_null(strstr(err, "no layer 'nonesuch'"));
    assert_int_equal(tu_find_layer(m, "w2", &name, err, sizeof err), CNV_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "constant"));
    assert_int_equal(tu_find_layer(m, "", &name, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_find_layer(m, "nonesuch", &name, NULL, 0), CNV_ERR_NOT_FOUND);
    cnv_model_free(m);
}

/* A chain of n Relus over the input (x -> r0 -> r1 -> ...). */
static cnv_model *relu_chain(int n)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, 1, 1, 2, 2);
    ok_model(m, cnv_model_add_input(m, "x", &xs));
    char in[16] = "x", out[16];
    for (int i = 0; i < n; i++) {
        snprintf(out, sizeof out, "r%d", i);
        node(m, "Relu", out, in, NULL, NULL, out, 0, NULL);
        memcpy(in, out, sizeof in);
    }
    ok_model(m, cnv_model_add_output(m, in));
    return m;
}

static void viz_layers(void **state)
{
    (void)state;
    cnv_model *m = net(1);
    const char *names[8];
    /* Relu outputs, and Conv outputs no Relu reads: conv3 */
    assert_int_equal(tu_layer_names(m, 0, NULL), 3);
    assert_int_equal(tu_layer_names(m, 0, names), 3);
    assert_string_equal(names[0], "t/relu1");
    assert_string_equal(names[1], "t/relu2");
    assert_string_equal(names[2], "t/conv3");
    assert_int_equal(tu_layer_names(m, 2, names), 2);
    assert_string_equal(names[0], "t/relu1");
    assert_string_equal(names[1], "t/conv3");
    cnv_model_free(m);
    m = relu_chain(9);
    const char *ch[9];
    /* 9 layers, 5 kept: evenly spaced indices 0, 2, 4, 6, 8 */
    assert_int_equal(tu_layer_names(m, 5, ch), 5);
    for (int i = 0; i < 5; i++) {
        char want[8];
        snprintf(want, sizeof want, "r%d", 2 * i);
        assert_string_equal(ch[i], want);
    }
    /* 4 kept: 0, 2.67, 5.33, 8 rounded -> 0, 3, 5, 8 */
    assert_int_equal(tu_layer_names(m, 4, ch), 4);
    assert_string_equal(ch[1], "r3");
    assert_string_equal(ch[2], "r5");
    assert_string_equal(ch[3], "r8");
    assert_int_equal(tu_layer_names(m, 1, ch), 1);
    assert_string_equal(ch[0], "r8");
    assert_int_equal(tu_layer_names(m, 20, ch), 9);
    assert_int_equal(tu_layer_names(NULL, 3, ch), 0);
    cnv_model_free(m);
}

/* The ascent raises the target channel's mean activation well above its
 * value on the starting noise, alone or batched; a seed repeats exactly. */
static void raises_activation(cnv_recipe recipe)
{
    cnv_model *m = net(2);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_neuron_params p = cnv_neuron_params_default();
    p.recipe = recipe;
    printf("recipe %s\n", cnv_recipe_name(recipe));
    p.layer = "relu2";
    p.height = p.width = 12;
    p.iters = 60;
    p.lucid.iters = 60;
    p.jitter = 1;
    const float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
    enum { ITEM = 3 * 12 * 12 };
    const int chans[3] = {0, 3, 6};
    float imgs[3 * ITEM], one[ITEM], again[3 * ITEM], before[3], after[3], b1, a1;
    ok_s(s, tu_neuron(s, m, mean, std, 3, chans, &p, imgs, before, after));
    for (int i = 0; i < 3; i++) {
        printf("relu2 channel %d: mean activation %.4f -> %.4f\n", chans[i], before[i], after[i]);
        assert_true(after[i] > before[i] + 0.5f);
        assert_true(after[i] > 3.0f * fabsf(before[i]));
    }
    /* pixels stay in the valid range */
    for (int i = 0; i < 3 * ITEM; i++)
        assert_true(imgs[i] >= -2.0f - 1e-6f && imgs[i] <= 2.0f + 1e-6f);
    ok_s(s, tu_neuron(s, m, mean, std, 3, chans, &p, again, NULL, NULL));
    assert_memory_equal(imgs, again, sizeof imgs);
    /* channel 3 alone starts from the same stream: the same image up to GEMM rounding */
    ok_s(s, tu_neuron(s, m, mean, std, 1, &chans[1], &p, one, &b1, &a1));
    double worst = 0.0;
    for (int i = 0; i < ITEM; i++)
        worst = fmax(worst, fabs((double)one[i] - imgs[ITEM + i]));
    printf("channel 3 alone vs in a batch of 3: max |diff| %g, activation %.6f vs %.6f\n", worst, a1, after[1]);
    assert_true(worst < 1e-3);
    /* batch 2 over 3 channels: the spare item of the second pass is ignored */
    p.batch = 2;
    ok_s(s, tu_neuron(s, m, mean, std, 3, chans, &p, again, NULL, NULL));
    worst = 0.0;
    for (int i = 0; i < 3 * ITEM; i++)
        worst = fmax(worst, fabs((double)again[i] - imgs[i]));
    printf("batch 2 vs batch 3: max |diff| %g\n", worst);
    assert_true(worst < 1e-3);
    /* one unit of a 4-D layer */
    p.batch = 0;
    p.unit_y = 2;
    p.unit_x = 3;
    ok_s(s, tu_neuron(s, m, mean, std, 1, &chans[1], &p, one, &b1, &a1));
    printf("relu2 channel 3 unit (2,3): %.4f -> %.4f\n", b1, a1);
    assert_true(a1 > b1 + 0.5f);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void neuron_raises_activation(void **state)
{
    (void)state;
    raises_activation(CNV_RECIPE_LUCID);
    raises_activation(CNV_RECIPE_CS231N);
}

/* A channel that is 0 on the starting noise: x (1x1x4x4) -> 1x1 conv
 * (weight 1, bias -1.5) -> relu "r". With mean 0.5 and std 0.25 pixels
 * lie in [-2, 2], the noise near 0 keeps r at 0 and its gradient at 0:
 * ascending r itself never moves, ascending the Relu's input does. */
static void dead_channel_pre_relu(void **state)
{
    (void)state;
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 1, 4, 4);
    ok_model(m, cnv_model_add_input(m, "x", &xs));
    const float w = 1.0f, b = -1.5f;
    add_const(m, "w", tu_shape(4, 1, 1, 1, 1), &w);
    add_const(m, "b", tu_shape(1, 1), &b);
    node(m, "Conv", "conv", "x", "w", "b", "c", 0, NULL);
    node(m, "Relu", "relu", "c", NULL, NULL, "r", 0, NULL);
    ok_model(m, cnv_model_add_output(m, "r"));
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    const float mean[1] = {0.5f}, std[1] = {0.25f};
    for (int recipe = CNV_RECIPE_LUCID; recipe <= CNV_RECIPE_CS231N; recipe++) {
        cnv_neuron_params p = cnv_neuron_params_default();
        p.recipe = (cnv_recipe)recipe;
        p.layer = "r";
        p.iters = 100;
        p.lucid.iters = 100;
        p.jitter = 0;
        int ch = 0;
        float img[16], before, after;
        p.pre_relu = 0;
        ok_s(s, tu_neuron(s, m, mean, std, 1, &ch, &p, img, &before, &after));
        printf("%s, dead channel, ascending r: %g -> %g\n", cnv_recipe_name(p.recipe), before, after);
        assert_true(before == 0.0f && after == 0.0f);
        p.pre_relu = 1;
        ok_s(s, tu_neuron(s, m, mean, std, 1, &ch, &p, img, &before, &after));
        printf("%s, dead channel, ascending r's input: %g -> %g\n", cnv_recipe_name(p.recipe), before, after);
        /* r is at most 0.5 (pixels <= 1); the sigmoid approaches that slowly */
        assert_true(before == 0.0f && after > (recipe == CNV_RECIPE_LUCID ? 0.1f : 0.4f));
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

static int cancel_at_3(void *user, int iter, int total, float objective, float prob)
{
    (void)objective;
    (void)prob;
    (void)total;
    int *last = user;
    *last = iter;
    return iter >= 3;
}

static int frames_seen(void *user, int iter, const float *images, int n, int c, int h, int w)
{
    (void)images;
    int *count = user;
    assert_int_equal(n, 2);
    assert_int_equal(c, 3);
    assert_int_equal(h, 12);
    assert_int_equal(w, 12);
    assert_true(iter % 5 == 0);
    ++*count;
    return 0;
}

static void neuron_errors(void **state)
{
    (void)state;
    cnv_model *m = net(3);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_neuron_params p = cnv_neuron_params_default();
    p.height = p.width = 12;
    p.iters = 10;
    p.lucid.iters = 10;
    float img[2 * 3 * 144];
    int ch[2] = {1, 8};
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(cnv_session_errmsg(s), "no layer"));
    p.layer = "nonesuch";
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_NOT_FOUND);
    printf("%s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "nonesuch"));
    p.layer = "t/relu2";
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 2, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    printf("%s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "channel 8 is out of range"));
    p.unit_y = 6;
    p.unit_x = 0;
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    printf("%s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "outside"));
    p.unit_x = -1;
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    p.unit_y = -1;
    p.recipe = CNV_RECIPE_CS231N;
    p.iters = -1;
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    p.iters = 10;
    p.recipe = CNV_RECIPE_LUCID;
    p.lucid.iters = -1;
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    p.lucid.iters = 10;
    p.recipe = (cnv_recipe)2;
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(cnv_session_errmsg(s), "recipe 2"));
    p.recipe = CNV_RECIPE_LUCID;
    const float bad_std[3] = {1, 0, 1};
    assert_int_equal(tu_neuron(s, m, NULL, bad_std, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 0, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_neuron(NULL, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    /* the model leaves H and W open: a size is required */
    p.height = p.width = 0;
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_INVALID_ARG);
    p.height = p.width = 12;
    /* progress cancels; frames arrive every frame_every steps */
    int last = 0, count = 0;
    p.progress = cancel_at_3;
    p.user = &last;
    assert_int_equal(tu_neuron(s, m, NULL, NULL, 1, ch, &p, img, NULL, NULL), CNV_ERR_CANCELLED);
    assert_int_equal(last, 3);
    p.progress = NULL;
    p.frame = frames_seen;
    p.frame_every = 5;
    p.user = &count;
    ch[1] = 2;
    ok_s(s, tu_neuron(s, m, NULL, NULL, 2, ch, &p, img, NULL, NULL));
    assert_int_equal(count, 3); /* the Lucid recipe's start (step 0), 5 and 10 */
    count = 0;
    p.recipe = CNV_RECIPE_CS231N;
    ok_s(s, tu_neuron(s, m, NULL, NULL, 2, ch, &p, img, NULL, NULL));
    assert_int_equal(count, 2); /* 5 and 10 */
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

/* A fire module's channels at 64 x 64, 40 steps: each mean activation
 * grows several times over its value on the noise. */
static void squeezenet_neurons(void **state)
{
    (void)state;
    if (!have_squeezenet())
        skip();
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(SQUEEZENET, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    float mean[3], std[3];
    parse3(cnv_model_get_meta(m, "cnnviz.mean"), mean);
    parse3(cnv_model_get_meta(m, "cnnviz.std"), std);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    const char *names[32];
    int n = tu_layer_names(m, 0, names);
    printf("SqueezeNet: %d layers for the sheet, first %s, last %s\n", n, names[0], names[n - 1]);
    assert_int_equal(n, 26);
    assert_string_equal(names[25], "/classifier/classifier.2/Relu_output_0");
    cnv_neuron_params p = cnv_neuron_params_default();
    p.layer = "features.4/expand3x3_activation";
    p.height = p.width = 64;
    p.iters = 40;
    const int ch[4] = {5, 17, 40, 63};
    float *img = malloc(4 * 3 * 64 * 64 * sizeof *img), before[4], after[4];
    assert_non_null(img);
    ok_s(s, tu_neuron(s, m, mean, std, 4, ch, &p, img, before, after));
    for (int i = 0; i < 4; i++) {
        printf("%s channel %d: %.4f -> %.4f\n", p.layer, ch[i], before[i], after[i]);
        assert_true(after[i] > 3.0f * before[i] && after[i] > before[i] + 1.0f);
    }
    free(img);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The Lucid recipe's channel pictures at 224 x 224 (the default steps):
 * each activates its channel more than any of 100 images of uniform noise
 * and more than the best of the photos beside the repository (five). */
static void squeezenet_lucid_channels(void **state)
{
    (void)state;
    tu_skip_under_valgrind("SqueezeNet channel pictures of 512 steps");
    if (!have_squeezenet())
        skip();
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(SQUEEZENET, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    float mean[3], std[3];
    parse3(cnv_model_get_meta(m, "cnnviz.mean"), mean);
    parse3(cnv_model_get_meta(m, "cnnviz.std"), std);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_neuron_params p = cnv_neuron_params_default();
    assert_int_equal(p.recipe, CNV_RECIPE_LUCID);
    p.layer = "features.9/expand3x3_activation";
    p.height = p.width = 224;
    enum { N = 3, ITEM = 3 * 224 * 224, NOISE = 100 };
    const int ch[N] = {7, 80, 155};
    float *img = malloc((size_t)N * ITEM * sizeof *img), after[N];
    assert_non_null(img);
    ok_s(s, tu_neuron(s, m, mean, std, N, ch, &p, img, NULL, after));
    free(img);

    /* the channels' means on noise and on the photos, 4 images a pass */
    const char *layer_name;
    char err[256];
    assert_int_equal(tu_find_layer(m, p.layer, &layer_name, err, sizeof err), CNV_OK);
    int t = tu_t(s, layer_name);
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 224, 224);
    memcpy(pp.mean, mean, sizeof mean);
    memcpy(pp.std, std, sizeof std);
    assert_int_equal(cnv_session_set_plan_target(s, t), CNV_OK);
    assert_int_equal(cnv_session_plan(s, 4, 224, 224), CNV_OK);
    float *in = cnv_session_input(s);
    float best_noise[N] = {-1e30f, -1e30f, -1e30f}, best_photo[N] = {-1e30f, -1e30f, -1e30f};
    const char *photos[] = {"boat_paddle.jpg", "cat.jpg", "dog.jpg", "eagle.jpg", "giraffe.jpg"};
    tu_rng r;
    tu_rng_init(&r, 99);
    for (int k = 0; k < NOISE + 5; k += 4) {
        int used = 0;
        for (int i = 0; i < 4 && k + i < NOISE + 5; i++, used++) {
            float *x = in + (size_t)i * ITEM;
            if (k + i < NOISE) {
                for (int j = 0; j < ITEM; j++)
                    x[j] = (tu_uniform(&r, 0.0f, 1.0f) - mean[j / (224 * 224)]) / std[j / (224 * 224)];
            } else {
                char path[256];
                cnv_image im = {0};
                snprintf(path, sizeof path, SHARED "images/%s", photos[k + i - NOISE]);
                if (cnv_image_load(path, &im, err, sizeof err) != CNV_OK ||
                    cnv_image_to_tensor(&im, &pp, x, ITEM, err, sizeof err) != CNV_OK)
                    fail_msg("%s", err);
                cnv_image_free(&im);
            }
        }
        ok_s(s, cnv_session_forward_to(s, t));
        float *act;
        cnv_shape sh;
        ok_s(s, cnv_session_tensor(s, t, &act, &sh));
        size_t P = (size_t)(sh.dims[2] * sh.dims[3]);
        for (int i = 0; i < used; i++)
            for (int c = 0; c < N; c++) {
                const float *a = act + ((size_t)i * sh.dims[1] + ch[c]) * P;
                double sum = 0.0;
                for (size_t j = 0; j < P; j++)
                    sum += a[j];
                float v = (float)(sum / (double)P);
                float *best = k + i < NOISE ? &best_noise[c] : &best_photo[c];
                *best = v > *best ? v : *best;
            }
    }
    cnv_session_set_plan_target(s, -1);
    for (int c = 0; c < N; c++) {
        printf("%s channel %d: picture %.3f, best of %d noise images %.3f, best photo %.3f\n", p.layer, ch[c],
               (double)after[c], NOISE, (double)best_noise[c], (double)best_photo[c]);
        assert_true(after[c] > best_noise[c] && after[c] > best_photo[c]);
    }
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------------ CLI */

static int sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cli_neuron_and_layers(void **state)
{
    (void)state;
    if (access(CNNVIZ, X_OK)) {
        printf("skipping: " CNNVIZ " is missing (run through 'make test' from the repository root)\n");
        skip();
    }
    char dir[] = "/tmp/cnv_neuron_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char model[600], cmd[1400], path[600];
    snprintf(model, sizeof model, "%s/net.onnx", dir);
    cnv_model *m = net(4);
    /* the input leaves H x W open: the size comes from the metadata */
    ok_model(m, cnv_model_set_meta(m, "cnnviz.image_size", "12x12"));
    ok_model(m, cnv_model_save_onnx(m, model));
    cnv_model_free(m);
    snprintf(cmd, sizeof cmd,
             CNNVIZ " neuron -m %s --layer relu2 --channel 3 --iters 40 --recipe cs231n -o %s/n.png --json > %s/n.json", model,
             dir, dir);
    assert_int_equal(sh(cmd), 0);
    snprintf(path, sizeof path, "%s/n.png", dir);
    cnv_image img = {0};
    char err[256];
    if (cnv_image_load(path, &img, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    assert_int_equal(img.width, 12);
    assert_int_equal(img.height, 12);
    cnv_image_free(&img);
    snprintf(path, sizeof path, "%s/n.json", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[1024] = {0};
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    const char *b = strstr(buf, "\"before\": "), *a = strstr(buf, "\"after\": ");
    assert_true(a && b);
    double before = atof(b + 10), after = atof(a + 9);
    printf("cnnviz neuron --recipe cs231n --json: before %g after %g\n", before, after);
    assert_true(after > 3.0 * before && after > before + 0.1);
    /* the Lucid recipe, from gray rather than noise */
    snprintf(cmd, sizeof cmd,
             CNNVIZ " neuron -m %s --layer relu2 --channel 3 --iters 40 --shift 4 -o %s/n.png --json > %s/n.json",
             model, dir, dir);
    assert_int_equal(sh(cmd), 0);
    f = fopen(path, "r");
    assert_non_null(f);
    memset(buf, 0, sizeof buf);
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(buf, "\"recipe\": \"lucid\""));
    b = strstr(buf, "\"before\": ");
    a = strstr(buf, "\"after\": ");
    assert_true(a && b);
    before = atof(b + 10);
    after = atof(a + 9);
    printf("cnnviz neuron --json: before %g after %g\n", before, after);
    assert_true(after > before + 0.1);
    /* a cs231n option with the Lucid recipe, and the reverse: usage errors */
    snprintf(cmd, sizeof cmd, CNNVIZ " neuron -m %s --layer relu2 --channel 3 --decay 0.1 -o %s/e.png 2>/dev/null",
             model, dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(cmd, sizeof cmd,
             CNNVIZ " neuron -m %s --layer relu2 --channel 3 --recipe cs231n --rotate 5 -o %s/e.png 2>/dev/null",
             model, dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(cmd, sizeof cmd, CNNVIZ " neuron -m %s --layer relu2 --channel 3 --recipe fancy -o %s/e.png 2>/dev/null",
             model, dir);
    assert_int_equal(sh(cmd), 2);
    /* layers: 3 rows of 2 channels */
    snprintf(cmd, sizeof cmd, CNNVIZ " layers -m %s --per-layer 2 --iters 10 -o %s/sheet.png --quiet", model,
             dir);
    assert_int_equal(sh(cmd), 0);
    snprintf(path, sizeof path, "%s/sheet.png", dir);
    if (cnv_image_load(path, &img, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    printf("layers sheet: %dx%d\n", img.width, img.height);
    assert_true(img.width >= 2 * 64 && img.height >= 3 * 64);
    cnv_image_free(&img);
    /* errors: unknown layer, channel out of range, missing options */
    snprintf(cmd, sizeof cmd, CNNVIZ " neuron -m %s --layer nonesuch --channel 0 -o %s/e.png 2>/dev/null",
             model, dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, CNNVIZ " neuron -m %s --layer relu2 --channel 99 -o %s/e.png 2>/dev/null", model,
             dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(cmd, sizeof cmd, CNNVIZ " neuron -m %s --layer relu2 -o %s/e.png 2>/dev/null", model, dir);
    assert_int_equal(sh(cmd), 2);
    snprintf(cmd, sizeof cmd, CNNVIZ " layers -m %s --layers relu2,nonesuch -o %s/e.png 2>/dev/null", model,
             dir);
    assert_int_equal(sh(cmd), 1);
    snprintf(path, sizeof path, "%s/e.png", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(find_layer),
        cmocka_unit_test(viz_layers),
        cmocka_unit_test(neuron_raises_activation),
        cmocka_unit_test(dead_channel_pre_relu),
        cmocka_unit_test(neuron_errors),
        cmocka_unit_test(squeezenet_neurons),
        cmocka_unit_test(squeezenet_lucid_channels),
        cmocka_unit_test(cli_neuron_and_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
