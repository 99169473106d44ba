/* Fooling images: on a linear model whose margins are set by hand (step
 * length, deltas, the 8-bit re-check that keeps going when rounding undoes
 * the change, the reported sizes recomputed from the saved bytes),
 * determinism, cancellation and errors; and, when ../shared/imagenet is
 * present, cat.jpg and dog.jpg fooled into five classes each on SqueezeNet,
 * verified by classifying the saved PNGs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "viz/viz.h"

#define SHARED "../shared/imagenet/"
#define SQUEEZENET SHARED "squeezenet1_1.onnx"

/* x (1 x 1 x 4 x 4) -> Flatten -> Gemm(transB) W (3 x 16), bias b. */
enum { K = 3, D = 16 };
static cnv_model *linear_model(const float *W, const float *b)
{
    cnv_model *m;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape xs = tu_shape(4, -1, 1, 4, 4), ws = tu_shape(2, K, D), bs = tu_shape(1, K);
    assert_int_equal(cnv_model_add_input(m, "x", &xs), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "W", CNV_FLOAT32, &ws, W), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "b", CNV_FLOAT32, &bs, b), CNV_OK);
    const char *fin[] = {"x"}, *fout[] = {"flat"};
    cnv_attr ax = tu_attr_int("axis", 1);
    assert_int_equal(cnv_model_add_node(m, "Flatten", "flatten", 1, fin, 1, fout, 1, &ax), CNV_OK);
    const char *gin[] = {"flat", "W", "b"}, *gout[] = {"logits"};
    cnv_attr tb = tu_attr_int("transB", 1);
    assert_int_equal(cnv_model_add_node(m, "Gemm", "fc", 3, gin, 1, gout, 1, &tb), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "logits"), CNV_OK);
    return m;
}

static double score(const float *W, const float *b, const float *x, int k)
{
    double s = b[k];
    for (int j = 0; j < D; j++)
        s += (double)W[k * D + j] * x[j];
    return s;
}

/* An image on the 8-bit grid (mean 0.5, std 0.25: bytes 60..190), and
 * weights; the biases put class 0 on top by `margin` over target 2. */
static const float MEAN = 0.5f, STD = 0.25f;
static void setup(float *W, float *b, float *x, uint8_t *bytes, double margin)
{
    tu_rng r;
    tu_rng_init(&r, 5);
    tu_fill(&r, W, K * D, -1.0f, 1.0f);
    for (int j = 0; j < D; j++) {
        bytes[j] = (uint8_t)(60 + (int)tu_uniform(&r, 0.0f, 130.0f));
        x[j] = (float)(((double)bytes[j] / 255.0 - MEAN) / STD);
    }
    b[0] = b[1] = b[2] = 0.0f;
    double s0 = score(W, b, x, 0), s1 = score(W, b, x, 1), s2 = score(W, b, x, 2);
    b[0] = 0.0f;
    b[1] = (float)(s0 - s1 - 1.0);         /* class 1 well below class 0 */
    b[2] = (float)(s0 - s2 - margin);      /* target below class 0 by margin */
}

/* The saved 8-bit image's top-1 class, through the PNG byte path. */
static int classify_bytes(cnv_session *s, const float *img, uint8_t *bytes)
{
    cnv_image im = {0};
    char err[256];
    assert_int_equal(tu_to_image(img, 1, 4, 4, &MEAN, &STD, &im, err, sizeof err), CNV_OK);
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 1, 4, 4);
    pp.mean[0] = MEAN;
    pp.std[0] = STD;
    assert_int_equal(cnv_session_plan(s, 1, 4, 4), CNV_OK);
    assert_int_equal(cnv_image_to_tensor(&im, &pp, cnv_session_input(s), tu_pp_len(&pp), err, sizeof err), CNV_OK);
    memcpy(bytes, im.data, D);
    cnv_image_free(&im);
    assert_int_equal(cnv_session_forward(s), CNV_OK);
    float *z;
    assert_int_equal(cnv_session_tensor(s, tu_t(s, "logits"), &z, NULL), CNV_OK);
    return cnv_argmax(z, K);
}

static void linear_fool(void **state)
{
    (void)state;
    float W[K * D], b[K], x[D], fooled[D], last[D], sum[D], again[D];
    uint8_t bytes[D], out[D];
    setup(W, b, x, bytes, 2.0);
    cnv_model *m = linear_model(W, b);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_fool_params p = cnv_fool_params_default();
    assert_int_equal(p.max_iters, 100);
    p.lr = 0.05f;
    cnv_fool_result r;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, fooled, last, sum, &r), CNV_OK);
    printf("linear: fooled %d after %d steps, class %d (p %.3f) -> %d (p %.3f), linf %g, "
           "mean %.3f\n",
           r.fooled, r.iters, r.before_class, (double)r.before_prob, r.after_class,
           (double)r.after_prob, (double)r.linf, (double)r.mean_abs);
    assert_int_equal(r.fooled, 1);
    assert_int_equal(r.before_class, 0);
    assert_int_equal(r.after_class, 2);
    assert_true(r.iters >= 1 && r.iters <= p.max_iters);
    assert_true(r.target_prob == r.after_prob);
    /* the saved bytes are the target, and the sizes are theirs */
    assert_int_equal(classify_bytes(s, fooled, out), 2);
    int mx = 0, tot = 0;
    for (int j = 0; j < D; j++) {
        int d = abs((int)out[j] - bytes[j]);
        mx = d > mx ? d : mx;
        tot += d;
    }
    assert_true(r.linf == (float)mx);
    assert_true(fabsf(r.mean_abs - (float)tot / D) < 1e-6f);
    /* each step has length lr, along the target's gradient W[2] */
    double n2 = 0.0, wn = 0.0, dot = 0.0;
    for (int j = 0; j < D; j++) {
        n2 += (double)last[j] * last[j];
        wn += (double)W[2 * D + j] * W[2 * D + j];
        dot += (double)last[j] * W[2 * D + j];
    }
    assert_true(fabs(sqrt(n2) - p.lr) < 1e-6);
    assert_true(fabs(dot / (sqrt(n2) * sqrt(wn)) - 1.0) < 1e-6);
    /* the sum of steps is the change, up to rounding to 8 bits (no pixel
     * reached the clamp from 60..190 in these few steps) */
    double worst = 0.0;
    for (int j = 0; j < D; j++)
        worst = fmax(worst, fabs((double)fooled[j] - x[j] - sum[j]));
    printf("linear: |fooled - image - sum of steps| <= %.4f (half a gray level: %.4f)\n", worst,
           0.5 / 255.0 / STD);
    assert_true(worst <= 0.5 / 255.0 / STD + 1e-5);
    /* deterministic */
    int iters0 = r.iters;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, again, NULL, NULL, &r), CNV_OK);
    assert_memory_equal(again, fooled, sizeof fooled);
    /* min_prob: more steps, until the rounded image gives the target 0.95 */
    p.min_prob = 0.95f;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, again, NULL, NULL, &r), CNV_OK);
    printf("linear: min_prob 0.95 reached after %d steps (p %.3f) instead of %d\n", r.iters,
           (double)r.target_prob, iters0);
    assert_int_equal(r.fooled, 1);
    assert_true(r.target_prob >= 0.95f && r.iters > iters0);
    assert_int_equal(classify_bytes(s, again, out), 2);
    p.min_prob = 1.0f;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, again, NULL, NULL, &r),
                     CNV_ERR_INVALID_ARG);
    /* Caffe's 0..255 (std 1/255) does not standardize: a step is lr in
     * units of u = 0.226 * 255 normalized values (cnv_viz_unit), the same
     * step in pixels as a standardized model's */
    const float m0 = 0.5f, s255 = 1.0f / 255.0f; /* x stays a valid image */
    p.min_prob = 0.0f;
    p.max_iters = 1;
    assert_int_equal(tu_fool(s, m, &m0, &s255, x, 4, 4, 2, &p, again, last, NULL, &r), CNV_OK);
    n2 = 0.0;
    for (int j = 0; j < D; j++)
        n2 += (double)last[j] * last[j];
    printf("caffe units: a step of lr %g is %.4f normalized (u = %.2f)\n", (double)p.lr, sqrt(n2),
           0.226 * 255.0);
    assert_true(fabs(sqrt(n2) - p.lr * 0.226 * 255.0) < 1e-4 * sqrt(n2));
    cnv_session_free(s);
    cnv_model_free(m);
}

typedef struct prog {
    int calls, stop_at;
    float first_prob;
} prog;

static int on_progress(void *user, int iter, int total, float obj, float prob)
{
    prog *g = user;
    (void)total;
    (void)obj;
    if (g->calls++ == 0)
        g->first_prob = prob;
    return g->stop_at && iter >= g->stop_at;
}

/* The target sits a hair below the top class: one step flips the float
 * image, but each step changes pixels by far less than half a gray level,
 * so the rounded image is still the original and the ascent must go on
 * until enough pixels round the other way. */
static void rounding_is_rechecked(void **state)
{
    (void)state;
    float W[K * D], b[K], x[D], fooled[D];
    uint8_t bytes[D], out[D];
    setup(W, b, x, bytes, 1e-4);
    cnv_model *m = linear_model(W, b);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_fool_params p = cnv_fool_params_default();
    p.lr = 0.002f; /* per pixel at most 0.002 * 0.25 * 255 = 0.13 gray levels */
    p.max_iters = 1000;
    prog g = {0};
    p.progress = on_progress;
    p.user = &g;
    cnv_fool_result r;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, fooled, NULL, NULL, &r), CNV_OK);
    /* after one step the float image is already the target */
    double gain = 0.0, wn = 0.0;
    for (int j = 0; j < D; j++) {
        wn += (double)W[2 * D + j] * W[2 * D + j];
        gain += (double)W[2 * D + j] * (W[2 * D + j] - W[j]);
    }
    gain *= p.lr / sqrt(wn);
    printf("rounding: margin 1e-4, one step gains %.4f; fooled %d after %d steps (linf %g)\n",
           gain, r.fooled, r.iters, (double)r.linf);
    assert_true(gain > 1e-4);
    assert_int_equal(r.fooled, 1);
    assert_true(r.iters > 1);
    assert_int_equal(g.calls, r.iters);
    assert_true(r.linf >= 1.0f);
    assert_int_equal(classify_bytes(s, fooled, out), 2);

    /* not enough steps: not an error, just not fooled, with the result's
     * top-1 reported */
    p.max_iters = 1;
    p.progress = NULL;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, fooled, NULL, NULL, &r), CNV_OK);
    assert_int_equal(r.fooled, 0);
    assert_int_equal(r.iters, 1);
    assert_int_equal(r.after_class, 0);
    assert_true(r.linf == 0.0f);
    cnv_session_free(s);
    cnv_model_free(m);
}

static void cancel_and_errors(void **state)
{
    (void)state;
    float W[K * D], b[K], x[D], fooled[D];
    uint8_t bytes[D];
    setup(W, b, x, bytes, 50.0);
    cnv_model *m = linear_model(W, b);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    cnv_fool_params p = cnv_fool_params_default();
    p.lr = 0.01f;
    prog g = {0};
    g.stop_at = 3;
    p.progress = on_progress;
    p.user = &g;
    cnv_fool_result r;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, fooled, NULL, NULL, &r),
                     CNV_ERR_CANCELLED);
    assert_int_equal(g.calls, 3);
    assert_int_equal(r.iters, 3);
    assert_non_null(strstr(cnv_session_errmsg(s), "cancelled"));
    p.progress = NULL;

    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 3, &p, fooled, NULL, NULL, &r),
                     CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(s));
    assert_non_null(strstr(cnv_session_errmsg(s), "target 3"));
    p.lr = 0.0f;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, fooled, NULL, NULL, &r),
                     CNV_ERR_INVALID_ARG);
    p.lr = 1.0f;
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 0, 4, 2, &p, fooled, NULL, NULL, &r),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, NULL, 4, 4, 2, &p, fooled, NULL, NULL, &r),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, &p, NULL, NULL, NULL, &r),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(tu_fool(NULL, m, &MEAN, &STD, x, 4, 4, 2, &p, fooled, NULL, NULL, &r),
                     CNV_ERR_INVALID_ARG);
    /* a 5x4 image does not fit Flatten->Gemm(16) */
    float big[20] = {0};
    assert_int_not_equal(tu_fool(s, m, &MEAN, &STD, big, 5, 4, 2, &p, fooled, NULL, NULL, &r),
                         CNV_OK);
    printf("message: %s\n", cnv_session_errmsg(s));
    /* NULL params are the defaults */
    setup(W, b, x, bytes, 0.5);
    cnv_model_free(m);
    cnv_session_free(s);
    m = linear_model(W, b);
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    assert_int_equal(tu_fool(s, m, &MEAN, &STD, x, 4, 4, 2, NULL, fooled, NULL, NULL, &r), CNV_OK);
    assert_int_equal(r.fooled, 1);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ------------------------------------------------------ the program */

/* `cnnviz fool` on the linear model saved as ONNX with the metadata
 * convention: the exit codes, the JSON, every output file, and the saved
 * image classified as the target by the library. */
static void cli(void **state)
{
    (void)state;
    if (access("bin/cnnviz", X_OK)) {
        printf("skipping: bin/cnnviz is not built (make test builds it)\n");
        skip();
    }
    float W[K * D], b[K], x[D];
    uint8_t bytes[D];
    setup(W, b, x, bytes, 2.0);
    cnv_model *m = linear_model(W, b);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.mean", "0.5"), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.std", "0.25"), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.image_size", "4x4"), CNV_OK);
    assert_int_equal(cnv_model_set_meta(m, "cnnviz.labels", "zero\none\ntwo"), CNV_OK);
    char dir[] = "/tmp/cnv_foolcli_XXXXXX", model[128], img[128], cmd[1024], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(model, sizeof model, "%s/lin.onnx", dir);
    snprintf(img, sizeof img, "%s/in.png", dir);
    assert_int_equal(cnv_model_save_onnx(m, model), CNV_OK);
    cnv_image in = {4, 4, 1, bytes};
    assert_int_equal(cnv_image_write_png(&in, img, err, sizeof err), CNV_OK);

    char *out;
    snprintf(cmd, sizeof cmd,
             "bin/cnnviz fool -m %s %s --target two -o %s/f.png --delta %s/d.png --summed %s/s.png "
             "--original %s/o.png --sheet %s/sheet.png --json --quiet",
             model, img, dir, dir, dir, dir, dir);
    int rc = tu_run(cmd, &out);
    printf("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"fooled\": true"));
    assert_non_null(strstr(out, "\"before\": {\"class\": 0, \"label\": \"zero\""));
    assert_non_null(strstr(out, "\"after\": {\"class\": 2, \"label\": \"two\""));
    free(out);
    const char *files[] = {"f", "d", "s", "o", "sheet"};
    for (int i = 0; i < 5; i++) {
        char path[160];
        cnv_image im = {0};
        snprintf(path, sizeof path, "%s/%s.png", dir, files[i]);
        assert_int_equal(cnv_image_load(path, &im, err, sizeof err), CNV_OK);
        if (i < 4)
            assert_true(im.width == 4 && im.height == 4 && im.channels == 1);
        if (i == 3) /* the original as the network sees it: the same bytes */
            assert_memory_equal(im.data, bytes, D);
        if (i == 0) {
            cnv_session *s;
            cnv_preprocess pp;
            cnv_preprocess_init(&pp, 1, 4, 4);
            pp.mean[0] = MEAN;
            pp.std[0] = STD;
            assert_int_equal(cnv_session_create(m, &s), CNV_OK);
            assert_int_equal(cnv_session_plan(s, 1, 4, 4), CNV_OK);
            assert_int_equal(cnv_image_to_tensor(&im, &pp, cnv_session_input(s), tu_pp_len(&pp), err, sizeof err),
                             CNV_OK);
            assert_int_equal(cnv_session_forward(s), CNV_OK);
            float *z;
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "logits"), &z, NULL), CNV_OK);
            assert_int_equal(cnv_argmax(z, K), 2);
            cnv_session_free(s);
        }
        cnv_image_free(&im);
        remove(path);
    }

    /* not reached in 0 steps: exit 1, the image still written */
    snprintf(cmd, sizeof cmd,
             "bin/cnnviz fool -m %s %s --target 2 -o %s/f.png --max-iters 0 --quiet 2>/dev/null",
             model, img, dir);
    assert_int_equal(tu_run(cmd, NULL), 1);
    snprintf(cmd, sizeof cmd, "%s/f.png", dir);
    assert_int_equal(access(cmd, R_OK), 0);
    remove(cmd);
    /* usage errors exit 2, others 1, --help 0 on stdout */
    snprintf(cmd, sizeof cmd, "bin/cnnviz fool -m %s %s --target 2 2>/dev/null", model, img);
    assert_int_equal(tu_run(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "bin/cnnviz fool -m %s %s --target 2 -o %s/x.png --bogus 2>/dev/null",
             model, img, dir);
    assert_int_equal(tu_run(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "bin/cnnviz fool -m %s %s --target seven -o %s/x.png 2>/dev/null",
             model, img, dir);
    assert_int_equal(tu_run(cmd, NULL), 1);
    assert_int_equal(tu_run("bin/cnnviz fool --help", &out), 0);
    assert_non_null(strstr(out, "usage: cnnviz fool"));
    free(out);
    remove(model);
    remove(img);
    rmdir(dir);
    cnv_model_free(m);
}

/* ------------------------------------------------------- SqueezeNet */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void parse3(const char *s, float out[3])
{
    assert_non_null(s);
    assert_int_equal(sscanf(s, "%f,%f,%f", &out[0], &out[1], &out[2]), 3);
}

/* cat.jpg and dog.jpg into goldfinch, flamingo, analog clock, sports car
 * and banana with the default parameters: each within 100 steps, under 2
 * gray levels of mean change, and the saved PNG read back is the target. */
static void squeezenet_fool(void **state)
{
    (void)state;
    tu_skip_under_valgrind("ten SqueezeNet fooling runs");
    if (access(SQUEEZENET, R_OK)) {
        printf("skipping: " SQUEEZENET " is absent (SqueezeNet lives beside the repository)\n");
        skip();
    }
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(SQUEEZENET, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    float mean[3], std[3];
    parse3(cnv_model_get_meta(m, "cnnviz.mean"), mean);
    parse3(cnv_model_get_meta(m, "cnnviz.std"), std);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    enum { ITEM = 3 * 224 * 224 };
    float *x = malloc(ITEM * sizeof(float)), *fooled = malloc(ITEM * sizeof(float));
    assert_true(x && fooled);
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 3, 224, 224);
    memcpy(pp.mean, mean, sizeof mean);
    memcpy(pp.std, std, sizeof std);
    const char *photos[] = {"cat", "dog"};
    const int targets[] = {11, 130, 409, 817, 954};
    char dir[] = "/tmp/cnv_fool_XXXXXX", path[256], err[256];
    assert_non_null(mkdtemp(dir));
    int ok = 1;
    double t0 = now(), worst_mean = 0.0;
    int worst_iters = 0;
    for (int i = 0; i < 2; i++) {
        cnv_image im = {0};
        snprintf(path, sizeof path, SHARED "images/%s.jpg", photos[i]);
        assert_int_equal(cnv_image_load(path, &im, err, sizeof err), CNV_OK);
        assert_int_equal(cnv_image_to_tensor(&im, &pp, x, tu_pp_len(&pp), err, sizeof err), CNV_OK);
        cnv_image_free(&im);
        for (int t = 0; t < 5; t++) {
            cnv_fool_result r;
            if (tu_fool(s, m, mean, std, x, 224, 224, targets[t], NULL, fooled, NULL, NULL, &r) !=
                CNV_OK)
                fail_msg("%s", cnv_session_errmsg(s));
            /* save, read back, classify */
            cnv_image out = {0}, back = {0};
            snprintf(path, sizeof path, "%s/%s_%d.png", dir, photos[i], targets[t]);
            assert_int_equal(
                tu_to_image(fooled, 3, 224, 224, mean, std, &out, err, sizeof err), CNV_OK);
            assert_int_equal(cnv_image_write_png(&out, path, err, sizeof err), CNV_OK);
            assert_int_equal(cnv_image_load(path, &back, err, sizeof err), CNV_OK);
            assert_int_equal(cnv_session_plan(s, 1, 224, 224), CNV_OK);
            assert_int_equal(cnv_image_to_tensor(&back, &pp, cnv_session_input(s), tu_pp_len(&pp), err, sizeof err),
                             CNV_OK);
            cnv_image_free(&out);
            cnv_image_free(&back);
            remove(path);
            assert_int_equal(cnv_session_forward(s), CNV_OK);
            float *z, pr[1000];
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "logits"), &z, NULL), CNV_OK);
            cnv_softmax(z, 1000, pr);
            int top = cnv_argmax(pr, 1000);
            printf("%s -> %3d: %2d steps, top-1 %3d (p %.3f) -> saved PNG %3d (p %.3f), change "
                   "max %2g mean %.3f gray levels\n",
                   photos[i], targets[t], r.iters, r.before_class, (double)r.before_prob, top,
                   (double)pr[top], (double)r.linf, (double)r.mean_abs);
            ok &= r.fooled && top == targets[t] && r.iters <= 100 && r.mean_abs < 2.0f;
            worst_mean = fmax(worst_mean, r.mean_abs);
            worst_iters = r.iters > worst_iters ? r.iters : worst_iters;
        }
    }
    rmdir(dir);
    printf("10 fooling images in %.1f s; at most %d steps, mean change at most %.3f gray levels\n",
           now() - t0, worst_iters, worst_mean);
    assert_true(ok);
    free(x);
    free(fooled);
    cnv_session_free(s);
    cnv_model_free(m);
}

/* The shipped Fashion-MNIST model on its first test images: each fooled
 * into three other classes within 100 steps (default parameters), the
 * saved PNG read back as the target. The change is larger than on
 * SqueezeNet (a few gray levels: 784 values to spread it over), so only
 * success is required here; docs/FOOLING.md gives the sizes. */
static void fashion_fool(void **state)
{
    (void)state;
    const char *path = "weights/fashion_mnist.onnx", *data = "/usr/share/datasets/fashion-mnist";
    cnv_dataset *d = NULL;
    if (access(path, R_OK) || cnv_mnist_load(data, "t10k", &d) != CNV_OK) {
        printf("skipping: %s or the Fashion-MNIST test set in %s is absent\n", path, data);
        cnv_dataset_free(d);
        skip();
    }
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(path, &m) != CNV_OK)
        fail_msg("%s", cnv_model_errmsg(m));
    float mean = 0.0f, sd = 1.0f;
    assert_int_equal(sscanf(cnv_model_get_meta(m, "cnnviz.mean"), "%f", &mean), 1);
    assert_int_equal(sscanf(cnv_model_get_meta(m, "cnnviz.std"), "%f", &sd), 1);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    enum { ITEM = 28 * 28 };
    float x[ITEM], fooled[ITEM];
    cnv_preprocess pp;
    cnv_preprocess_init(&pp, 1, 28, 28);
    pp.mean[0] = mean;
    pp.std[0] = sd;
    char err[256];
    int ok = 1, n = 0;
    double worst = 0.0;
    for (int i = 0; i < 4; i++) {
        const uint8_t *px = cnv_dataset_pixels(d) + (size_t)i * ITEM;
        int label = cnv_dataset_labels(d)[i];
        for (int j = 0; j < ITEM; j++)
            x[j] = ((float)px[j] / 255.0f - mean) / sd;
        for (int k = 1; k <= 3; k++) {
            int target = (label + 3 * k) % 10;
            cnv_fool_result r;
            if (tu_fool(s, m, &mean, &sd, x, 28, 28, target, NULL, fooled, NULL, NULL, &r) !=
                CNV_OK)
                fail_msg("%s", cnv_session_errmsg(s));
            cnv_image im = {0};
            assert_int_equal(tu_to_image(fooled, 1, 28, 28, &mean, &sd, &im, err, sizeof err),
                             CNV_OK);
            assert_int_equal(cnv_session_plan(s, 1, 28, 28), CNV_OK);
            assert_int_equal(cnv_image_to_tensor(&im, &pp, cnv_session_input(s), tu_pp_len(&pp), err, sizeof err),
                             CNV_OK);
            cnv_image_free(&im);
            assert_int_equal(cnv_session_forward(s), CNV_OK);
            float *z;
            assert_int_equal(cnv_session_tensor(s, tu_t(s, "logits"), &z, NULL), CNV_OK);
            int top = cnv_argmax(z, 10);
            printf("fashion t10k[%d] (label %d, top-1 %d) -> %d: %2d steps, saved top-1 %d, change "
                   "max %2g mean %.2f\n",
                   i, label, r.before_class, target, r.iters, top, (double)r.linf,
                   (double)r.mean_abs);
            ok &= r.fooled && top == target && r.iters <= 100;
            worst = fmax(worst, r.mean_abs);
            n++;
        }
    }
    printf("%d Fashion-MNIST fooling images; mean change at most %.2f gray levels\n", n, worst);
    assert_true(ok);
    /* the program on a dataset image, default model */
    if (!access("bin/cnnviz", X_OK)) {
        char *out, dir[] = "/tmp/cnv_foolfm_XXXXXX", cmd[512];
        assert_non_null(mkdtemp(dir));
        snprintf(cmd, sizeof cmd,
                 "bin/cnnviz fool --index 0 --target Sneaker -o %s/f.png --json --quiet", dir);
        assert_int_equal(tu_run(cmd, &out), 0);
        printf("%s", out);
        assert_non_null(strstr(out, "\"image\": \"t10k[0]\""));
        assert_non_null(strstr(out, "\"before\": {\"class\": 9, \"label\": \"Ankle boot\""));
        assert_non_null(strstr(out, "\"after\": {\"class\": 7, \"label\": \"Sneaker\""));
        free(out);
        snprintf(cmd, sizeof cmd, "%s/f.png", dir);
        remove(cmd);
        rmdir(dir);
        snprintf(cmd, sizeof cmd, "bin/cnnviz fool --index 10000 --target 1 -o /tmp/x.png 2>/dev/null");
        assert_int_equal(tu_run(cmd, NULL), 1);
    }
    cnv_dataset_free(d);
    cnv_session_free(s);
    cnv_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_fool),
        cmocka_unit_test(rounding_is_rechecked),
        cmocka_unit_test(cancel_and_errors),
        cmocka_unit_test(cli),
        cmocka_unit_test(fashion_fool),
        cmocka_unit_test(squeezenet_fool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
