/* The API 0.2 additions: tensors and nodes by index, the shapes-only pass
 * (the same shapes as a plan, FLOPs in closed form, no plan's memory, no
 * OpenBLAS call), the model's preprocessing and labels from its metadata,
 * the one preprocessing check (a negative std is refused everywhere), the
 * argument checks of sessions and visualizations (lengths, indices), and
 * cnv_session_set_image. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "smallnet.h"
#include "testutil.h"

/* x (N x 3 x 8 x 8, N open) -> conv 3x3 (4) -> relu -> gap -> flatten ->
 * gemm (10) -> softmax: an RGB classifier ending in probabilities. */
static cnv_model *rgb_model(int h, int w)
{
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 3, h, w), ws = tu_shape(4, 4, 3, 3, 3), fs = tu_shape(2, 10, 4);
    float wv[108], fv[40];
    tu_rng r;
    tu_rng_init(&r, 3);
    tu_fill(&r, wv, 108, -1.0f, 1.0f);
    tu_fill(&r, fv, 40, -1.0f, 1.0f);
    const int64_t k3[2] = {3, 3};
    cnv_attr ks = tu_attr_ints("kernel_shape", 2, k3), tb = tu_attr_int("transB", 1);
    const char *c = "c", *rl = "r", *g = "g", *f = "f", *z = "logits", *p = "prob";
    assert_int_equal(cnv_model_add_input(m, "image", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "w", CNV_FLOAT32, &ws, wv), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "fc", CNV_FLOAT32, &fs, fv), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Conv", "conv", 2, (const char *const[]){"image", "w"}, 1, &c, 1, &ks),
                     CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Relu", "relu", 1, &c, 1, &rl, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "GlobalAveragePool", "gap", 1, &rl, 1, &g, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Flatten", "flatten", 1, &g, 1, &f, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Gemm", "fc", 2, (const char *const[]){"f", "fc"}, 1, &z, 1, &tb),
                     CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Softmax", "softmax", 1, &z, 1, &p, 0, NULL), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "prob"), CNV_OK);
    return m;
}

/* ------------------------------------------------------------ introspection */

static void tensors_and_nodes_by_index(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 1);
    int n = cnv_model_tensor_count(m);
    assert_true(n > 10);
    for (int t = 0; t < n; t++)
        assert_int_equal(cnv_model_tensor_index(m, cnv_model_tensor_name(m, t)), t);
    assert_null(cnv_model_tensor_name(m, n));
    assert_null(cnv_model_tensor_name(m, -1));
    assert_int_equal(cnv_model_tensor_index(m, "nope"), -1);
    assert_int_equal(cnv_model_tensor_index(m, NULL), -1);
    assert_string_equal(cnv_model_tensor_name(m, cnv_model_input(m, 0)), "x");
    assert_int_equal(cnv_model_input(m, 1), -1);
    assert_string_equal(cnv_model_tensor_name(m, cnv_model_output(m, 0)), "logits");
    assert_int_equal(cnv_model_output(m, 1), -1);
    /* node 0 is conv1 (x, w1, b1) -> c1 */
    assert_string_equal(cnv_model_node_op(m, 0), "Conv");
    assert_int_equal(cnv_model_node_input_count(m, 0), 3);
    assert_string_equal(cnv_model_tensor_name(m, cnv_model_node_input(m, 0, 0)), "x");
    assert_string_equal(cnv_model_tensor_name(m, cnv_model_node_input(m, 0, 2)), "b1");
    assert_int_equal(cnv_model_node_input(m, 0, 3), -1);
    assert_string_equal(cnv_model_tensor_name(m, cnv_model_node_output(m, 0)), "c1");
    assert_int_equal(cnv_model_node_output(m, cnv_model_node_count(m)), -1);
    /* no final probabilities: the scores are the output */
    assert_int_equal(cnv_model_score_tensor(m), cnv_model_tensor_index(m, "logits"));
    cnv_model_free(m);
    m = rgb_model(8, 8);
    assert_int_equal(cnv_model_score_tensor(m), cnv_model_tensor_index(m, "logits"));
    cnv_model_free(m);
    assert_int_equal(cnv_model_score_tensor(NULL), -1);
    assert_int_equal(cnv_model_tensor_count(NULL), 0);
}

/* ------------------------------------------------------------- shapes pass */

static size_t g_bytes, g_peak;
static void *count_malloc(void *user, size_t n)
{
    (void)user;
    size_t *p = malloc(n + 16);
    if (!p)
        return NULL;
    p[0] = n;
    g_bytes += n;
    if (g_bytes > g_peak)
        g_peak = g_bytes;
    return (char *)p + 16;
}
static void count_free(void *user, void *q)
{
    (void)user;
    size_t *p = (size_t *)((char *)q - 16);
    g_bytes -= p[0];
    free(p);
}

static void infer_shapes_matches_plan(void **state)
{
    (void)state;
    cnv_model *m = sn_build(1, 2); /* open H, W */
    int nt = cnv_model_tensor_count(m), nn = cnv_model_node_count(m);
    cnv_shape in = tu_shape(4, 2, 2, 64, 48), *shapes = calloc((size_t)nt, sizeof *shapes);
    double *flops = calloc((size_t)nn, sizeof *flops);
    char err[256];
    /* nothing of a plan: a small block, no thread, OpenBLAS untouched */
    openblas_set_num_threads(2);
    cnv_allocator a = {count_malloc, count_free, NULL};
    g_bytes = g_peak = 0;
    cnv_set_allocator(&a);
    assert_int_equal(cnv_model_infer_shapes(m, 1, &in, shapes, nt, flops, nn, err, sizeof err), CNV_OK);
    size_t infer_peak = g_peak;
    assert_int_equal(g_bytes, 0);
    assert_int_equal(openblas_get_num_threads(), 2);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    g_peak = g_bytes;
    assert_int_equal(cnv_session_plan_shapes(s, 1, &in), CNV_OK);
    size_t plan_peak = g_peak;
    printf("shapes-only pass: %zu bytes at most; a plan of the same shapes: %zu\n", infer_peak, plan_peak);
    assert_true(infer_peak * 20 < plan_peak);
    for (int t = 0; t < nt; t++) {
        cnv_shape sh;
        if (cnv_session_tensor(s, t, NULL, &sh) != CNV_OK)
            continue;
        assert_int_equal(sh.ndim, shapes[t].ndim);
        for (int d = 0; d < sh.ndim; d++)
            assert_int_equal(sh.dims[d], shapes[t].dims[d]);
    }
    cnv_session_free(s); /* with the allocator that made it */
    cnv_set_allocator(NULL);
    /* closed forms: conv1 2 * N*4*64*48 outputs * (2*3*3) taps, fc
     * 2 * N*10 outputs * 8 inputs, relu none */
    assert_true(flops[0] == 2.0 * 2 * 4 * 64 * 48 * 18);
    assert_true(flops[1] == 0.0);
    int fc = -1;
    for (int i = 0; i < nn; i++)
        if (!strcmp(cnv_model_node_name(m, i), "fc"))
            fc = i;
    assert_true(flops[fc] == 2.0 * 2 * 10 * 8);
    /* failures go to errbuf, never to the model */
    cnv_shape bad = tu_shape(4, 1, 3, 8, 8);
    assert_int_equal(cnv_model_infer_shapes(m, 1, &bad, shapes, nt, NULL, 0, err, sizeof err), CNV_ERR_SHAPE);
    printf("bad input: %s\n", err);
    assert_non_null(strstr(err, "1x3x8x8"));
    assert_string_equal(cnv_model_errmsg(m), "");
    assert_int_equal(cnv_model_infer_shapes(m, 1, &in, shapes, nt - 1, NULL, 0, err, sizeof err),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_model_infer_shapes(m, 1, &in, NULL, 0, flops, nn + 1, err, sizeof err),
                     CNV_ERR_INVALID_ARG);
    cnv_shape tiny = tu_shape(4, 1, 2, 1, 1); /* the 2x2 pool does not fit */
    assert_int_equal(cnv_model_infer_shapes(m, 1, &tiny, NULL, 0, NULL, 0, NULL, 0), CNV_ERR_SHAPE);
    cnv_model_free(m);
    free(shapes);
    free(flops);
}

/* ----------------------------------------------------------- preprocessing */

static void preprocess_from_metadata(void **state)
{
    (void)state;
    char err[256];
    cnv_preprocess pp;
    cnv_model *m = rgb_model(-1, -1);
    /* nothing said: mean 0, std 1, no size */
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    assert_int_equal(pp.channels, 3);
    assert_int_equal(pp.found, 0);
    assert_int_equal(pp.height, 0);
    assert_true(pp.mean[2] == 0.0f && pp.std[2] == 1.0f);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.mean", "0.485,0.456,0.406"), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.std", "0.25"), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.image_size", "224x200"), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.color", "rgb"), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    assert_int_equal(pp.found, CNV_PP_MEAN | CNV_PP_STD | CNV_PP_SIZE | CNV_PP_COLOR);
    assert_true(pp.mean[0] == 0.485f && pp.mean[1] == 0.456f && pp.mean[2] == 0.406f);
    assert_true(pp.std[0] == 0.25f && pp.std[1] == 0.25f && pp.std[2] == 0.25f);
    assert_int_equal(pp.height, 224);
    assert_int_equal(pp.width, 200);
    assert_int_equal(pp.fit, CNV_FIT_CENTER_CROP);
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_OK);
    /* each malformed value, alone */
    const struct {
        const char *key, *value, *says;
    } bad[] = {
        {"cnnviz.mean", "abc", "cnnviz.mean"},       {"cnnviz.mean", "1,2", "cnnviz.mean"},
        {"cnnviz.std", "0.2,0.2,", "cnnviz.std"},    {"cnnviz.std", "-0.25", "std"},
        {"cnnviz.std", "0", "std"},                  {"cnnviz.image_size", "224", "image_size"},
        {"cnnviz.image_size", "0x5", "image_size"},  {"cnnviz.image_size", "99999x5", "image_size"},
        {"cnnviz.color", "gray", "cnnviz.color"},    {"cnnviz.mean", "nan", "cnnviz.mean"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *keep = cnv_model_get_meta(m, bad[i].key);
        char *saved = strdup(keep);
        assert_int_equal(cnv_model_set_meta(m, bad[i].key, bad[i].value), CNV_OK);
        assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_ERR_FORMAT);
        printf("%s = '%s': %s\n", bad[i].key, bad[i].value, err);
        assert_non_null(strstr(err, bad[i].says));
        assert_int_equal(cnv_model_set_meta(m, bad[i].key, saved), CNV_OK);
        free(saved);
    }
    cnv_model_free(m);
    /* a declared size wins, and metadata may not contradict it */
    m = rgb_model(32, 32);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    assert_int_equal(pp.found, CNV_PP_SIZE);
    assert_int_equal(pp.height, 32);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.image_size", "32x32"), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.image_size", "64x64"), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_ERR_FORMAT);
    printf("contradiction: %s\n", err);
    assert_non_null(strstr(err, "contradicts"));
    cnv_model_free(m);
    /* an input that is no image */
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape vec = tu_shape(2, 1, 5);
    assert_int_equal(cnv_model_add_input(m, "v", &vec), CNV_OK);
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_ERR_UNSUPPORTED);
    printf("no image: %s\n", err);
    cnv_model_free(m);
}

static void preprocess_check_is_the_one_path(void **state)
{
    (void)state;
    char err[256];
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 8, 8);
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_OK);
    assert_string_equal(err, "");
    pp.std[1] = -0.5f;
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "channel 1"));
    pp.std[1] = 1.0f;
    pp.mean[2] = INFINITY;
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_ERR_INVALID_ARG);
    cnv_preprocess_init(&pp, 5, 8, 8);
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_ERR_INVALID_ARG);
    cnv_preprocess_init(&pp, 3, 0, 8);
    assert_int_equal(cnv_preprocess_check(&pp, err, sizeof err), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_preprocess_check(NULL, err, sizeof err), CNV_ERR_INVALID_ARG);

    /* The visualizations all refuse what it refuses: 0.1's class models
     * and fooling images took a negative std. */
    cnv_model *m = rgb_model(8, 8);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_preprocess neg;
    cnv_preprocess_init(&neg, 3, 8, 8);
    neg.std[0] = -1.0f;
    float img[3 * 8 * 8] = {0}, out[3 * 8 * 8];
    int cls = 1;
    cnv_classmodel_params cp = cnv_classmodel_params_default();
    cp.iters = 1;
    cp.preprocess = &neg;
    assert_int_equal(cnv_classmodel(s, 1, &cls, &cp, out, 3 * 8 * 8, NULL, NULL), CNV_ERR_INVALID_ARG);
    printf("classmodel, std -1: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "std"));
    cnv_fool_params fp = cnv_fool_params_default();
    fp.preprocess = &neg;
    cnv_fool_result r;
    assert_int_equal(cnv_fool(s, img, 3 * 8 * 8, 8, 8, 1, &fp, out, NULL, NULL, &r), CNV_ERR_INVALID_ARG);
    cnv_neuron_params np = cnv_neuron_params_default();
    np.layer = "r";
    np.iters = 1;
    np.preprocess = &neg;
    int ch = 0;
    assert_int_equal(cnv_neuron(s, 1, &ch, &np, out, 3 * 8 * 8, NULL, NULL), CNV_ERR_INVALID_ARG);
    cnv_dream_params dp = cnv_dream_params_default();
    dp.layer = "r";
    dp.preprocess = &neg;
    assert_int_equal(cnv_dream(s, &dp, out, 3 * 8 * 8, NULL, 0), CNV_ERR_INVALID_ARG);
    /* and a preprocessing of other channels than the model's */
    cnv_preprocess gray;
    cnv_preprocess_init(&gray, 1, 8, 8);
    cp.preprocess = &gray;
    assert_int_equal(cnv_classmodel(s, 1, &cls, &cp, out, 8 * 8, NULL, NULL), CNV_ERR_SHAPE);
    printf("gray preprocessing, RGB model: %s\n", cnv_session_errmsg(s));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------------------- labels */

static void labels_and_classes(void **state)
{
    (void)state;
    char err[256];
    cnv_model *m = rgb_model(8, 8);
    const char *const *names;
    int cls = -7;
    assert_int_equal(cnv_model_labels(m, &names), 0);
    assert_null(names);
    assert_int_equal(cnv_model_find_class(m, "7", &cls, err, sizeof err), CNV_OK);
    assert_int_equal(cls, 7);
    assert_int_equal(cnv_model_find_class(m, "tench", &cls, err, sizeof err), CNV_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no labels"));
    /* WordNet ids dropped, CRLF, a kept empty line, no label after the
     * last newline */
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.labels",
                                        "n01440764 tench, Tinca tinca\r\nn01443537 goldfish\n\nthird\n"),
                     CNV_OK);
    assert_int_equal(cnv_model_labels(m, &names), 4);
    assert_string_equal(names[0], "tench, Tinca tinca");
    assert_string_equal(names[1], "goldfish");
    assert_string_equal(names[2], "");
    assert_string_equal(names[3], "third");
    assert_int_equal(cnv_model_find_class(m, "tench", &cls, err, sizeof err), CNV_OK);
    assert_int_equal(cls, 0);
    assert_int_equal(cnv_model_find_class(m, "TENCH, tinca TINCA", &cls, err, sizeof err), CNV_OK);
    assert_int_equal(cls, 0);
    assert_int_equal(cnv_model_find_class(m, "Goldfish", &cls, err, sizeof err), CNV_OK);
    assert_int_equal(cls, 1);
    assert_int_equal(cnv_model_find_class(m, "3", &cls, err, sizeof err), CNV_OK);
    assert_int_equal(cls, 3);
    assert_int_equal(cnv_model_find_class(m, "4", &cls, err, sizeof err), CNV_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "4 classes"));
    assert_int_equal(cnv_model_find_class(m, "-1", &cls, err, sizeof err), CNV_ERR_NOT_FOUND);
    assert_int_equal(cnv_model_find_class(m, "carp", &cls, err, sizeof err), CNV_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no class named 'carp'"));
    /* setting replaces; too many lines is refused and keeps what was */
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.labels", "a\nb"), CNV_OK);
    assert_int_equal(cnv_model_labels(m, &names), 2);
    assert_string_equal(names[1], "b");
    size_t n = (size_t)CNV_MAX_LABELS + 1;
    char *many = malloc(2 * n + 1);
    assert_non_null(many);
    for (size_t i = 0; i < n; i++)
        many[2 * i] = 'x', many[2 * i + 1] = '\n';
    many[2 * n] = 0;
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.labels", many), CNV_ERR_UNSUPPORTED);
    printf("too many labels: %s\n", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_labels(m, NULL), 2);
    assert_string_equal(cnv_model_get_meta(m, "cnnviz.labels"), "a\nb");
    many[2 * (n - 1)] = 0; /* exactly the most */
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.labels", many), CNV_OK);
    assert_int_equal(cnv_model_labels(m, NULL), CNV_MAX_LABELS);
    free(many);

    /* a labels file, kept by the ONNX writer */
    char dir[] = "/tmp/cnv_test_api_XXXXXX", path[64], onnx[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/labels.txt", dir);
    snprintf(onnx, sizeof onnx, "%s/m.onnx", dir);
    FILE *f = fopen(path, "wb");
    fputs("cat\ndog\n", f);
    fclose(f);
    assert_int_equal(cnv_model_load_labels(m, path), CNV_OK);
    assert_int_equal(cnv_model_save_onnx(m, onnx), CNV_OK);
    cnv_model *m2 = NULL;
    assert_int_equal(cnv_model_load_onnx(onnx, &m2), CNV_OK);
    assert_int_equal(cnv_model_labels(m2, &names), 2);
    assert_string_equal(names[1], "dog");
    cnv_model_free(m2);
    assert_int_equal(cnv_model_load_labels(m, dir), CNV_ERR_IO);
    printf("labels from a directory: %s\n", cnv_model_errmsg(m));
    assert_int_equal(cnv_model_labels(m, NULL), 2);
    unlink(path);
    unlink(onnx);
    rmdir(dir);
    cnv_model_free(m);
}

/* ------------------------------------------------------------ session args */

static void session_argument_checks(void **state)
{
    (void)state;
    cnv_model *m = sn_build(0, 4);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_ptr_equal(cnv_session_model(s), m);
    assert_null(cnv_session_model(NULL));
    assert_int_equal(cnv_session_plan(s, 2, 8, 8), CNV_OK);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    int logits = cnv_model_tensor_index(m, "logits");
    float seed[2 * SN_CLASSES] = {1};
    /* the seed's length must be the tensor's */
    assert_int_equal(cnv_session_backward(s, logits, seed, SN_CLASSES), CNV_ERR_INVALID_ARG);
    printf("short seed: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "20"));
    assert_int_equal(cnv_session_backward(s, logits, seed, 2 * SN_CLASSES), CNV_OK);
    /* indices out of range */
    float *p;
    int n = cnv_model_tensor_count(m);
    assert_int_equal(cnv_session_tensor(s, n, &p, NULL), CNV_ERR_NOT_FOUND);
    assert_int_equal(cnv_session_forward_to(s, -5), CNV_ERR_NOT_FOUND);
    assert_int_equal(cnv_session_grad(s, n + 3, &p), CNV_ERR_NOT_FOUND);
    /* profiling not asked for: the message says so */
    double fw, bw;
    assert_int_equal(cnv_session_node_time(s, 0, &fw, &bw), CNV_ERR_STATE);
    assert_non_null(strstr(cnv_session_errmsg(s), "profil"));
    cnv_session_set_profiling(s, 1);
    assert_int_equal(cnv_session_plan(s, 2, 8, 8), CNV_OK);
    assert_int_equal(cnv_session_node_time(s, 0, &fw, &bw), CNV_OK);
    assert_int_equal(cnv_session_node_time(s, cnv_model_node_count(m), &fw, &bw), CNV_ERR_INVALID_ARG);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* Buffers come with their lengths: a wrong one is refused before any work,
 * and the message gives the length needed. */
static void visualization_lengths(void **state)
{
    (void)state;
    cnv_model *m = rgb_model(8, 8);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    enum { ITEM = 3 * 8 * 8 };
    float img[2 * ITEM] = {0}, map[64];
    int cls[2] = {1, 2};
    cnv_classmodel_params cp = cnv_classmodel_params_default();
    cp.iters = 1;
    assert_int_equal(cnv_classmodel(s, 2, cls, &cp, img, ITEM, NULL, NULL), CNV_ERR_INVALID_ARG);
    printf("classmodel: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "384"));
    assert_int_equal(cnv_classmodel(s, 2, cls, &cp, img, 2 * ITEM, NULL, NULL), CNV_OK);
    assert_int_equal(cnv_saliency(s, img, ITEM, 8, 8, NULL, map, 63, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_saliency(s, img, ITEM - 1, 8, 8, NULL, map, 64, NULL), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_saliency(s, img, ITEM, 8, 8, NULL, map, 64, NULL), CNV_OK);
    cnv_neuron_params np = cnv_neuron_params_default();
    np.layer = "r";
    np.iters = 1;
    assert_int_equal(cnv_neuron(s, 2, (int[]){0, 1}, &np, img, ITEM, NULL, NULL), CNV_ERR_INVALID_ARG);
    cnv_dream_params dp = cnv_dream_params_default();
    dp.layer = "r";
    dp.octaves = 1;
    dp.steps = 1;
    dp.jitter = 1;
    dp.frames = 2;
    int chans[2];
    assert_int_equal(cnv_dream(s, &dp, img, ITEM, chans, 1), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_dream(s, &dp, img, ITEM + 1, chans, 2), CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_dream(s, &dp, img, ITEM, chans, 2), CNV_OK);
    cnv_fool_params fp = cnv_fool_params_default();
    cnv_fool_result r;
    assert_int_equal(cnv_fool(s, img, ITEM + 3, 8, 8, 1, &fp, img + ITEM, NULL, NULL, &r), CNV_ERR_INVALID_ARG);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ---------------------------------------------------------------- set_image */

static void set_image_is_image_to_tensor(void **state)
{
    (void)state;
    cnv_model *m = rgb_model(-1, -1);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.mean", "0.5,0.4,0.3"), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.std", "0.2,0.25,0.3"), CNV_OK);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_image img = {0};
    char err[256];
    assert_int_equal(cnv_image_create(40, 30, 3, &img, err, sizeof err), CNV_OK);
    for (size_t i = 0; i < 40 * 30 * 3; i++)
        img.data[i] = (unsigned char)(i * 37 % 251);
    assert_int_equal(cnv_session_set_image(s, 0, &img, NULL), CNV_ERR_STATE);
    assert_int_equal(cnv_session_plan(s, 2, 12, 16), CNV_OK);
    assert_int_equal(cnv_session_set_image(s, 1, &img, NULL), CNV_OK);
    assert_int_equal(cnv_session_set_image(s, 2, &img, NULL), CNV_ERR_INVALID_ARG);
    printf("image 2 of 2: %s\n", cnv_session_errmsg(s));
    /* the model's preprocessing at the planned size, into item 1 */
    cnv_preprocess pp;
    assert_int_equal(cnv_model_preprocess(m, &pp, err, sizeof err), CNV_OK);
    pp.height = 12;
    pp.width = 16;
    float want[3 * 12 * 16];
    assert_int_equal(cnv_image_to_tensor(&img, &pp, want, 3 * 12 * 16, err, sizeof err), CNV_OK);
    assert_memory_equal(cnv_session_input(s) + 3 * 12 * 16, want, sizeof want);
    /* a preprocessing of its own; a short buffer for cnv_image_to_tensor */
    pp.std[0] = 1.0f;
    assert_int_equal(cnv_session_set_image(s, 0, &img, &pp), CNV_OK);
    assert_int_equal(cnv_image_to_tensor(&img, &pp, want, 3 * 12 * 16 - 1, err, sizeof err),
                     CNV_ERR_INVALID_ARG);
    printf("short tensor: %s\n", err);
    cnv_image_free(&img);
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tensors_and_nodes_by_index),
        cmocka_unit_test(infer_shapes_matches_plan),
        cmocka_unit_test(preprocess_from_metadata),
        cmocka_unit_test(preprocess_check_is_the_one_path),
        cmocka_unit_test(labels_and_classes),
        cmocka_unit_test(session_argument_checks),
        cmocka_unit_test(visualization_lengths),
        cmocka_unit_test(set_image_is_image_to_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
