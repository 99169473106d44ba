/* The attribution suite against references that need no PyTorch (those
 * are in test_saliency_refs.c): integrated gradients' completeness (the
 * attributions sum to S(x) - S(b)), Score-CAM, occlusion and the metrics
 * against naive loops over the public API at batch 1, Ablation-CAM
 * against the same network with the channel's filter zeroed, the
 * deletion curve of a linear model in closed form, noise smoothing at zero
 * noise, RISE with every cell on, cnv_session_forward_from, no allocation
 * per pass, and the errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define FASHION "weights/fashion_mnist.onnx"
#define BOOT "docs/img/ankle_boot.png"
#define SQUEEZENET "../shared/imagenet/squeezenet1_1.onnx"
#define CAT "../shared/imagenet/images/cat.jpg"

static void ok(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s", cnv_session_errmsg(s));
}

/* A model, its session and one preprocessed photo. */
typedef struct fixture {
    cnv_model *m;
    cnv_session *s;
    cnv_preprocess pp;
    int c, h, w;
    size_t item, plane;
    float *x;
} fixture;

static void open_fixture(fixture *f, const char *model, const char *photo)
{
    char err[256];
    memset(f, 0, sizeof *f);
    assert_int_equal(cnv_model_load_onnx(model, &f->m), CNV_OK);
    assert_int_equal(cnv_model_preprocess(f->m, &f->pp, err, sizeof err), CNV_OK);
    assert_int_equal(cnv_session_create(f->m, &f->s), CNV_OK);
    f->c = f->pp.channels, f->h = f->pp.height, f->w = f->pp.width;
    f->plane = (size_t)f->h * f->w;
    f->item = (size_t)f->c * f->plane;
    cnv_image img;
    if (cnv_image_load(photo, &img, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    f->x = malloc(f->item * sizeof *f->x);
    assert_non_null(f->x);
    if (cnv_image_to_tensor(&img, &f->pp, f->x, f->item, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    cnv_image_free(&img);
}

/* +-0.5 gray levels of deterministic noise: the Fashion-MNIST photo's
 * flat black background ties every max-pool window, where the gradient is
 * whichever side rounding picks, which can differ between batch sizes. */
static void dither(fixture *f)
{
    tu_rng r;
    tu_rng_init(&r, 11);
    for (size_t i = 0; i < f->item; i++)
        f->x[i] += tu_uniform(&r, -0.5f, 0.5f) / 255.0f / f->pp.std[i / f->plane];
}

static void close_fixture(fixture *f)
{
    cnv_session_free(f->s);
    cnv_model_free(f->m);
    free(f->x);
}

static cnv_status run(fixture *f, const cnv_saliency_params *p, float *map, cnv_saliency_info *info)
{
    return cnv_saliency(f->s, f->x, f->item, f->h, f->w, p, map, f->plane, info);
}

static int have(const char *path)
{
    if (access(path, R_OK) == 0)
        return 1;
    printf("skipping: %s is absent (SqueezeNet and its photos live beside the repository, in ../shared)\n", path);
    return 0;
}

/* The raw score of class k for images x (n of them) at batch 1, plainly. */
static double naive_score(fixture *f, const float *x, int k)
{
    ok(f->s, cnv_session_plan(f->s, 1, f->h, f->w));
    memcpy(cnv_session_input(f->s), x, f->item * sizeof *x);
    ok(f->s, cnv_session_forward(f->s));
    float *y;
    ok(f->s, cnv_session_tensor(f->s, cnv_model_score_tensor(f->m), &y, NULL));
    return y[k];
}

/* ----------------------------------------------------- IG completeness */

static void completeness(fixture *f, cnv_saliency_method method, cnv_baseline b, int steps, double tol,
                         const char *what)
{
    float *attr = malloc(f->item * sizeof *attr);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = method;
    p.baseline = b;
    p.steps = steps;
    cnv_saliency_info info;
    ok(f->s, cnv_saliency_attribution(f->s, f->x, f->item, f->h, f->w, &p, attr, f->item, &info));
    double sum = 0.0;
    for (size_t i = 0; i < f->item; i++)
        sum += attr[i];
    double want = (double)info.score - info.baseline_score, err = fabs(sum - want) / fabs(want);
    printf("%-9s %-8s baseline %d, %3d steps: sum %.5f, S(x) - S(b) = %.5f - %.5f = %.5f: %.3f%%\n", what,
           cnv_saliency_method_name(method), (int)b, steps, sum, (double)info.score, (double)info.baseline_score,
           want, 100.0 * err);
    /* the baseline's score, independently */
    assert_true(fabs(want) > 0.5);
    if (tol > 0.0)
        assert_true(err <= tol);
    free(attr);
}

static void ig_completeness_fashion(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    /* the baseline's score by a plain forward agrees with the info's */
    float *b = malloc(f.item * sizeof *b), *attr = malloc(f.item * sizeof *attr);
    for (size_t i = 0; i < f.item; i++)
        b[i] = -f.pp.mean[0] / f.pp.std[0];
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_IG;
    p.steps = 8;
    cnv_saliency_info info;
    ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, attr, f.item, &info));
    assert_true(fabs(info.baseline_score - naive_score(&f, b, info.class_index)) < 1e-4);
    for (int steps = 64; steps <= 256; steps *= 4) {
        completeness(&f, CNV_SALIENCY_IG, CNV_BASELINE_BLACK, steps, 0.01, "fashion");
        completeness(&f, CNV_SALIENCY_IG, CNV_BASELINE_ZERO, steps, 0.01, "fashion");
        completeness(&f, CNV_SALIENCY_IG, CNV_BASELINE_BLUR, steps, 0.01, "fashion");
        completeness(&f, CNV_SALIENCY_IG, CNV_BASELINE_NOISE, steps, 0.01, "fashion");
        completeness(&f, CNV_SALIENCY_BLUR_IG, CNV_BASELINE_AUTO, steps, 0.01, "fashion");
    }
    /* Guided IG's gradient is a step stale over moves of up to 4% of an
     * input's range whatever the steps: printed, not a property */
    completeness(&f, CNV_SALIENCY_GUIDED_IG, CNV_BASELINE_BLACK, 64, 0.0, "fashion");
    free(b);
    free(attr);
    close_fixture(&f);
}

static void ig_completeness_squeezenet(void **state)
{
    (void)state;
    if (!have(SQUEEZENET) || !have(CAT))
        skip();
    tu_skip_under_valgrind("SqueezeNet's integrated gradients");
    fixture f;
    open_fixture(&f, SQUEEZENET, CAT);
    completeness(&f, CNV_SALIENCY_IG, CNV_BASELINE_BLACK, 64, 0.01, "squeezenet");
    completeness(&f, CNV_SALIENCY_IG, CNV_BASELINE_ZERO, 64, 0.01, "squeezenet");
    completeness(&f, CNV_SALIENCY_BLUR_IG, CNV_BASELINE_AUTO, 16, 0.0, "squeezenet");
    completeness(&f, CNV_SALIENCY_GUIDED_IG, CNV_BASELINE_BLACK, 64, 0.0, "squeezenet");
    close_fixture(&f);
}

/* ------------------------------------------------------- naive loops */

/* align_corners=False bilinear upsampling, written out again */
static float upsample_at(const float *in, int u, int v, int h, int w, int y, int x)
{
    double sy = fmax((y + 0.5) * u / h - 0.5, 0.0), sx = fmax((x + 0.5) * v / w - 0.5, 0.0);
    int y0 = (int)fmin(floor(sy), u - 1), x0 = (int)fmin(floor(sx), v - 1);
    int y1 = y0 + 1 < u ? y0 + 1 : u - 1, x1 = x0 + 1 < v ? x0 + 1 : v - 1;
    double fy = sy - y0, fx = sx - x0;
    return (float)((1 - fy) * ((1 - fx) * in[y0 * v + x0] + fx * in[y0 * v + x1]) +
                   fy * ((1 - fx) * in[y1 * v + x0] + fx * in[y1 * v + x1]));
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double d = 0.0, m = 0.0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m > 0.0 ? m : 1.0);
}

/* Score-CAM by its definition, one channel at a time. */
static void scorecam_naive(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * sizeof *map), *ref = malloc(f.plane * sizeof *ref);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_SCORECAM;
    p.batch = 5; /* 48 channels: a partial last batch */
    cnv_saliency_info info;
    ok(f.s, run(&f, &p, map, &info));
    assert_string_equal(info.layer, "relu4");
    int t = cnv_model_tensor_index(f.m, "relu4"), cls = info.class_index;
    ok(f.s, cnv_session_plan(f.s, 1, f.h, f.w));
    memcpy(cnv_session_input(f.s), f.x, f.item * sizeof(float));
    ok(f.s, cnv_session_forward(f.s));
    float *a;
    cnv_shape sh;
    ok(f.s, cnv_session_tensor(f.s, t, &a, &sh));
    int K = (int)sh.dims[1], u = (int)sh.dims[2], v = (int)sh.dims[3];
    float *A = malloc((size_t)K * u * v * sizeof *A), *xm = malloc(f.item * sizeof *xm);
    double *score = malloc((size_t)K * sizeof *score);
    memcpy(A, a, (size_t)K * u * v * sizeof *A);
    double mx = -INFINITY;
    for (int k = 0; k < K; k++) {
        float lo = INFINITY, hi = -INFINITY, up[28 * 28]; /* the default model's size */
        assert_true(f.plane <= 28 * 28);
        for (int y = 0; y < f.h; y++)
            for (int x = 0; x < f.w; x++) {
                up[y * f.w + x] = upsample_at(A + (size_t)k * u * v, u, v, f.h, f.w, y, x);
                lo = fminf(lo, up[y * f.w + x]);
                hi = fmaxf(hi, up[y * f.w + x]);
            }
        for (size_t i = 0; i < f.plane; i++) /* baseline 0 (AUTO: ZERO) */
            xm[i] = (float)((up[i] - lo) / ((double)hi - lo + 1e-8)) * f.x[i];
        score[k] = naive_score(&f, xm, cls);
        mx = fmax(mx, score[k]);
    }
    double z = 0.0;
    for (int k = 0; k < K; k++)
        z += exp(score[k] - mx);
    float *cam = malloc((size_t)u * v * sizeof *cam);
    for (int i = 0; i < u * v; i++) {
        double acc = 0.0;
        for (int k = 0; k < K; k++)
            acc += exp(score[k] - mx) / z * A[(size_t)k * u * v + i];
        cam[i] = acc > 0.0 ? (float)acc : 0.0f;
    }
    for (int y = 0; y < f.h; y++)
        for (int x = 0; x < f.w; x++)
            ref[y * f.w + x] = upsample_at(cam, u, v, f.h, f.w, y, x);
    double e = max_rel(map, ref, f.plane);
    printf("Score-CAM vs one channel at a time: max |diff| %.3g of the map's max (%d channels, %d passes)\n", e, K,
           info.passes);
    assert_true(e < 1e-4);
    free(map), free(ref), free(A), free(xm), free(score), free(cam);
    close_fixture(&f);
}

/* Occlusion by its definition: every window alone, the edge window too. */
static void occlusion_naive(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * sizeof *map), *ref = malloc(f.plane * sizeof *ref), *xo = malloc(f.item * 4);
    double *sum = calloc(f.plane, sizeof *sum);
    int *cnt = calloc(f.plane, sizeof *cnt);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_OCCLUSION;
    p.window = 6;
    p.stride = 4; /* 0, 4, ..., 20, then 22 (28 - 6): the edge window */
    p.baseline = CNV_BASELINE_BLACK;
    p.batch = 7;
    cnv_saliency_info info;
    ok(f.s, run(&f, &p, map, &info));
    double s0 = naive_score(&f, f.x, info.class_index);
    int starts[] = {0, 4, 8, 12, 16, 20, 22};
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 7; b++) {
            memcpy(xo, f.x, f.item * sizeof *xo);
            for (int y = starts[a]; y < starts[a] + 6; y++)
                for (int x = starts[b]; x < starts[b] + 6; x++)
                    xo[y * f.w + x] = -f.pp.mean[0] / f.pp.std[0];
            double drop = s0 - naive_score(&f, xo, info.class_index);
            for (int y = starts[a]; y < starts[a] + 6; y++)
                for (int x = starts[b]; x < starts[b] + 6; x++)
                    sum[y * f.w + x] += drop, cnt[y * f.w + x]++;
        }
    for (size_t i = 0; i < f.plane; i++) {
        assert_true(cnt[i] > 0);
        ref[i] = (float)(sum[i] / cnt[i]);
    }
    double e = max_rel(map, ref, f.plane);
    printf("occlusion vs every window alone: max |diff| %.3g of the map's max, %d passes\n", e, info.passes);
    assert_true(e < 1e-4);
    assert_true(info.is_signed);
    free(map), free(ref), free(xo), free(sum), free(cnt);
    close_fixture(&f);
}

/* Ablation-CAM's weights by zeroing conv4's filter k and bias k instead:
 * relu4's channel k is then 0 by the network itself. */
static void ablationcam_by_weights(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * sizeof *map), *ref = malloc(f.plane * sizeof *ref);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_ABLATIONCAM;
    p.layer = "relu4";
    cnv_saliency_info info;
    ok(f.s, run(&f, &p, map, &info));
    int cls = info.class_index, t = cnv_model_tensor_index(f.m, "relu4");
    double S = naive_score(&f, f.x, cls);
    float *a, *wt, *bias;
    cnv_shape sh, wsh;
    ok(f.s, cnv_session_tensor(f.s, t, &a, &sh));
    int K = (int)sh.dims[1], u = (int)sh.dims[2], v = (int)sh.dims[3];
    float *A = malloc((size_t)K * u * v * sizeof *A);
    memcpy(A, a, (size_t)K * u * v * sizeof *A);
    assert_int_equal(cnv_model_param(f.m, "conv4.weight", &wt, &wsh), CNV_OK);
    assert_int_equal(cnv_model_param(f.m, "conv4.bias", &bias, NULL), CNV_OK);
    size_t per = (size_t)(cnv_shape_count(&wsh) / K);
    float *keep = malloc(per * sizeof *keep);
    double *cam = calloc((size_t)u * v, sizeof *cam);
    for (int k = 0; k < K; k++) {
        float kb = bias[k];
        memcpy(keep, wt + k * per, per * sizeof *keep);
        memset(wt + k * per, 0, per * sizeof *keep);
        bias[k] = 0.0f;
        double Sk = naive_score(&f, f.x, cls), wk = (S - Sk) / S;
        memcpy(wt + k * per, keep, per * sizeof *keep);
        bias[k] = kb;
        for (int i = 0; i < u * v; i++)
            cam[i] += wk * A[(size_t)k * u * v + i];
    }
    float *camf = malloc((size_t)u * v * sizeof *camf);
    for (int i = 0; i < u * v; i++)
        camf[i] = cam[i] > 0.0 ? (float)cam[i] : 0.0f;
    for (int y = 0; y < f.h; y++)
        for (int x = 0; x < f.w; x++)
            ref[y * f.w + x] = upsample_at(camf, u, v, f.h, f.w, y, x);
    double e = max_rel(map, ref, f.plane);
    printf("Ablation-CAM vs zeroed filters: max |diff| %.3g of the map's max\n", e);
    assert_true(e < 1e-4);
    free(map), free(ref), free(A), free(keep), free(cam), free(camf);
    close_fixture(&f);
}

/* The rest of a forward from an edited layer equals a full forward with
 * the edit made by the weights; from a fused Conv + ReLU's pre-activation
 * too (the ReLU is the Conv's epilogue and must run on its own). */
static void forward_from(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    int logits = cnv_model_score_tensor(f.m), relu4 = cnv_model_tensor_index(f.m, "relu4"),
        conv4 = cnv_model_tensor_index(f.m, "conv4.out");
    assert_true(relu4 >= 0 && conv4 >= 0);
    float *wt, *bias, ref[10], got[10], *y, *a;
    cnv_shape wsh, sh;
    assert_int_equal(cnv_model_param(f.m, "conv4.weight", &wt, &wsh), CNV_OK);
    assert_int_equal(cnv_model_param(f.m, "conv4.bias", &bias, NULL), CNV_OK);
    const int k = 5;
    size_t per = (size_t)(cnv_shape_count(&wsh) / wsh.dims[0]);
    float *keep = malloc(per * sizeof *keep), kb = bias[k];
    memcpy(keep, wt + k * per, per * sizeof *keep);
    memset(wt + k * per, 0, per * sizeof *keep);
    bias[k] = -1.0f; /* conv4's channel k is -1, relu4's 0 */
    ok(f.s, cnv_session_plan(f.s, 1, f.h, f.w));
    memcpy(cnv_session_input(f.s), f.x, f.item * sizeof(float));
    ok(f.s, cnv_session_forward(f.s));
    ok(f.s, cnv_session_tensor(f.s, logits, &y, NULL));
    memcpy(ref, y, sizeof ref);
    memcpy(wt + k * per, keep, per * sizeof *keep);
    bias[k] = kb;
    for (int from = 0; from < 2; from++) {
        int t = from ? conv4 : relu4;
        ok(f.s, cnv_session_forward(f.s));
        ok(f.s, cnv_session_tensor(f.s, t, &a, &sh));
        size_t plane = (size_t)sh.dims[2] * sh.dims[3];
        for (size_t i = 0; i < plane; i++)
            a[k * plane + i] = from ? -1.0f : 0.0f;
        ok(f.s, cnv_session_forward_from(f.s, t, logits));
        ok(f.s, cnv_session_tensor(f.s, logits, &y, NULL));
        memcpy(got, y, sizeof got);
        double e = max_rel(got, ref, 10);
        printf("forward from %s with channel %d edited vs the weights' edit: max |diff| %.3g\n",
               cnv_model_tensor_name(f.m, t), k, e);
        assert_true(e < 1e-6);
    }
    /* the start must have been computed, and lead to the end */
    ok(f.s, cnv_session_forward_to(f.s, relu4));
    assert_int_equal(cnv_session_forward_from(f.s, relu4, logits), CNV_ERR_STATE);
    ok(f.s, cnv_session_forward(f.s));
    assert_int_equal(cnv_session_forward_from(f.s, logits, relu4), CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    free(keep);
    close_fixture(&f);
}

/* ------------------------------------------------------------- metrics */

/* A linear model: logits = (w . x, 0), so the class-0 probability of an
 * image is sigmoid(w . x); the deletion and insertion curves follow in
 * closed form from the pixels' order. */
static cnv_model *linear_model(const float *wrow, int n)
{
    float *W = calloc((size_t)2 * n, sizeof *W);
    memcpy(W, wrow, (size_t)n * sizeof *W);
    cnv_model *m = NULL;
    assert_int_equal(cnv_model_create(&m), CNV_OK);
    cnv_shape in = tu_shape(4, 1, 1, 4, 4), ws = tu_shape(2, 2, n);
    assert_int_equal(cnv_model_add_input(m, "x", &in), CNV_OK);
    assert_int_equal(cnv_model_add_const(m, "W", CNV_FLOAT32, &ws, W), CNV_OK);
    cnv_attr axis = tu_attr_int("axis", 1), tb = tu_attr_int("transB", 1);
    const char *fin[] = {"x"}, *fout[] = {"flat"}, *gin[] = {"flat", "W"}, *gout[] = {"logits"};
    assert_int_equal(cnv_model_add_node(m, "Flatten", "flatten", 1, fin, 1, fout, 1, &axis), CNV_OK);
    assert_int_equal(cnv_model_add_node(m, "Gemm", "fc", 2, gin, 1, gout, 1, &tb), CNV_OK);
    assert_int_equal(cnv_model_add_output(m, "logits"), CNV_OK);
    free(W);
    return m;
}

static void metric_closed_form(void **state)
{
    (void)state;
    enum { N = 16, STEPS = 5 };
    float w[N], x[N], map[N];
    for (int i = 0; i < N; i++) {
        w[i] = 0.1f * (float)((i * 7) % 5) - 0.15f;
        x[i] = 1.0f + 0.25f * (float)(i % 3);
        map[i] = (float)((i * 5) % N); /* a permutation: order by value */
    }
    map[3] = map[4]; /* a tie: the earlier position goes first */
    map[9] = NAN;    /* NaN goes last */
    cnv_model *m = linear_model(w, N);
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);
    /* the order: value descending, ties by position, NaN last */
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            float a = map[order[i]], b = map[order[j]];
            int swap = (a != a && b == b) || (a == a && b == b && (b > a || (b == a && order[j] < order[i])));
            if (swap) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
    assert_int_equal(order[N - 1], 9);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.class_index = 0;
    p.batch = 4;
    float base[N], curve[STEPS + 1], area;
    for (int i = 0; i < N; i++)
        base[i] = 0.5f; /* an image baseline, so both metrics use it */
    p.baseline = CNV_BASELINE_IMAGE;
    p.baseline_image = base;
    for (int metric = 0; metric < 2; metric++) {
        assert_int_equal(cnv_saliency_metric(s, x, N, 4, 4, map, N, (cnv_metric)metric, STEPS, &p, curve, &area),
                         CNV_OK);
        double want_area = 0.0, prev = 0.0;
        for (int i = 0; i <= STEPS; i++) {
            int changed = (int)floor((double)i * N / STEPS + 0.5);
            double z = 0.0;
            for (int j = 0; j < N; j++) {
                int in_first = 0;
                for (int q = 0; q < changed; q++)
                    in_first |= order[q] == j;
                float v = metric == 0 ? (in_first ? base[j] : x[j]) : (in_first ? x[j] : base[j]);
                z += (double)w[j] * v;
            }
            double pr = 1.0 / (1.0 + exp(-z));
            printf("%s step %d: %2d pixels, p = %.6f (library %.6f)\n", cnv_metric_name((cnv_metric)metric), i,
                   changed, pr, (double)curve[i]);
            assert_true(fabs(pr - curve[i]) < 1e-6);
            if (i > 0)
                want_area += 0.5 * (prev + pr) / STEPS;
            prev = pr;
        }
        printf("%s area %.6f (closed form %.6f)\n", cnv_metric_name((cnv_metric)metric), (double)area, want_area);
        assert_true(fabs(area - want_area) < 1e-6);
    }
    p.baseline = CNV_BASELINE_AUTO;
    assert_int_equal(cnv_saliency_metric(s, x, N, 4, 4, map, N, CNV_METRIC_DELETION, 0, &p, curve, &area),
                     CNV_ERR_INVALID_ARG);
    assert_int_equal(cnv_metric_parse("insertion"), CNV_METRIC_INSERTION);
    assert_int_equal(cnv_metric_parse("nope"), -1);
    assert_null(cnv_metric_name((cnv_metric)2));
    cnv_session_free(s);
    cnv_model_free(m);
}

/* ----------------------------------------------------------- smoothing */

static void smoothing_at_zero_noise(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    dither(&f);
    float *g = malloc(f.item * 4), *a = malloc(f.item * 4), *map = malloc(f.plane * 4), *map2 = malloc(f.plane * 4);
    const cnv_saliency_method methods[] = {CNV_SALIENCY_GRAD, CNV_SALIENCY_GUIDED, CNV_SALIENCY_DECONVNET,
                                           CNV_SALIENCY_GRADXINPUT};
    for (size_t q = 0; q < sizeof methods / sizeof methods[0]; q++) {
        cnv_saliency_params p = cnv_saliency_params_default();
        p.method = methods[q];
        ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, g, f.item, NULL));
        p.noise = 0.0f;
        p.samples = 3;
        p.batch = 2;
        for (int sm = CNV_SMOOTH_MEAN; sm <= CNV_SMOOTH_VAR; sm++) {
            p.smooth = (cnv_smooth)sm;
            ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, a, f.item, NULL));
            /* batch 2 against batch 1: GEMM rounding only */
            double e = 0.0, gmax = 0.0;
            for (size_t i = 0; i < f.item; i++) {
                double want = sm == CNV_SMOOTH_MEAN ? g[i] : sm == CNV_SMOOTH_SQUARE ? (double)g[i] * g[i] : 0.0;
                e = fmax(e, fabs(a[i] - want));
                gmax = fmax(gmax, fabs(g[i]));
            }
            printf("%-10s smooth %d at noise 0: max |diff| from the closed form %.3g (max |g| %.3g)\n",
                   cnv_saliency_method_name(methods[q]), sm, e, gmax);
            assert_true(e <= 1e-5 * (sm == CNV_SMOOTH_SQUARE ? gmax * gmax : gmax));
        }
    }
    /* SMOOTHGRAD is GRAD with MEAN, noise and all */
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_SMOOTHGRAD;
    p.samples = 5;
    p.seed = 3;
    ok(f.s, run(&f, &p, map, NULL));
    p.method = CNV_SALIENCY_GRAD;
    p.smooth = CNV_SMOOTH_MEAN;
    p.batch = 3;
    ok(f.s, run(&f, &p, map2, NULL));
    assert_true(max_rel(map, map2, f.plane) < 1e-6);
    /* VarGrad is the mean square minus the square of the mean */
    p.noise = 0.2f;
    p.smooth = CNV_SMOOTH_MEAN;
    ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, g, f.item, NULL));
    p.smooth = CNV_SMOOTH_SQUARE;
    ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, a, f.item, NULL));
    float *v = malloc(f.item * 4);
    p.smooth = CNV_SMOOTH_VAR;
    ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, v, f.item, NULL));
    double e = 0.0, mx = 0.0;
    for (size_t i = 0; i < f.item; i++) {
        e = fmax(e, fabs(v[i] - ((double)a[i] - (double)g[i] * g[i])));
        mx = fmax(mx, a[i]);
    }
    printf("VarGrad vs mean square - square of mean: %.3g of %.3g\n", e, mx);
    assert_true(e <= 1e-5 * mx);
    free(g), free(a), free(map), free(map2), free(v);
    close_fixture(&f);
}

/* -------------------------------------------------------------- RISE */

static void rise_all_on(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * 4), *map2 = malloc(f.plane * 4);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_RISE;
    p.masks = 10;
    p.mask_prob = 1.0f; /* every mask all ones: every masked image is the image */
    cnv_saliency_info info;
    ok(f.s, run(&f, &p, map, &info));
    for (size_t i = 0; i < f.plane; i++)
        assert_true(fabsf(map[i] - info.prob) < 1e-6f);
    /* the same masks in any batch */
    p.mask_prob = 0.5f;
    p.masks = 50;
    p.batch = 8;
    ok(f.s, run(&f, &p, map, NULL));
    p.batch = 3;
    ok(f.s, run(&f, &p, map2, NULL));
    double e = max_rel(map2, map, f.plane);
    printf("RISE batch 8 vs 3: %.3g; info.prob %.4f\n", e, (double)info.prob);
    assert_true(e < 1e-5);
    free(map), free(map2);
    close_fixture(&f);
}

/* ----------------------------------------------- targets, allocation */

/* A layer target: the map of a channel's mean is the mean of its units'
 * maps (the gradient is linear in the seed). */
static void layer_targets(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *g = malloc(f.item * 4), *gu = malloc(f.item * 4);
    double *sum = calloc(f.item, sizeof *sum);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.score = "relu3";
    p.class_index = 7;
    cnv_saliency_info info;
    ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, g, f.item, &info));
    assert_int_equal(info.class_index, 7);
    double mean = 0.0;
    for (int y = 0; y < 14; y++)
        for (int x = 0; x < 14; x++) {
            p.y = y, p.x = x;
            cnv_saliency_info iu;
            ok(f.s, cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, gu, f.item, &iu));
            mean += iu.score / 196.0;
            for (size_t i = 0; i < f.item; i++)
                sum[i] += gu[i] / 196.0;
        }
    double e = 0.0, m = 0.0;
    for (size_t i = 0; i < f.item; i++)
        e = fmax(e, fabs(sum[i] - g[i])), m = fmax(m, fabs(g[i]));
    printf("relu3 channel 7: mean %.5f vs units' mean %.5f; gradient vs units' mean %.3g of %.3g\n",
           (double)info.score, mean, e, m);
    assert_true(fabs(mean - info.score) < 1e-5 * (1.0 + fabs(mean)));
    assert_true(e <= 1e-5 * m);
    p.y = 14;
    assert_int_equal(cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, g, f.item, NULL), CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    /* -1: the most active channel */
    p = cnv_saliency_params_default();
    p.score = "relu3";
    p.method = CNV_SALIENCY_GRADCAM;
    p.layer = "relu2";
    float *map = malloc(f.plane * 4);
    ok(f.s, run(&f, &p, map, &info));
    printf("relu3's most active channel %d (mean %.4f), Grad-CAM on relu2\n", info.class_index, (double)info.score);
    free(g), free(gu), free(sum), free(map);
    close_fixture(&f);
}

static size_t g_mallocs;
static void *count_malloc(void *user, size_t n)
{
    (void)user;
    g_mallocs++;
    return malloc(n);
}
static void plain_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* The allocations of a call do not grow with its passes. */
static void no_allocation_per_pass(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * 4);
    const cnv_saliency_method methods[] = {CNV_SALIENCY_IG, CNV_SALIENCY_BLUR_IG, CNV_SALIENCY_GUIDED_IG,
                                           CNV_SALIENCY_SCORECAM, CNV_SALIENCY_ABLATIONCAM, CNV_SALIENCY_OCCLUSION,
                                           CNV_SALIENCY_RISE, CNV_SALIENCY_GRAD};
    for (size_t q = 0; q < sizeof methods / sizeof methods[0]; q++) {
        size_t counts[2];
        for (int r = 0; r < 2; r++) {
            cnv_saliency_params p = cnv_saliency_params_default();
            p.method = methods[q];
            p.steps = r ? 40 : 8;
            p.masks = r ? 80 : 16;
            p.batch = r ? 2 : 4; /* more passes, fewer images per pass */
            p.stride = r ? 1 : 3;
            p.smooth = methods[q] == CNV_SALIENCY_GRAD ? CNV_SMOOTH_VAR : CNV_SMOOTH_NONE;
            p.samples = r ? 30 : 3;
            ok(f.s, run(&f, &p, map, NULL)); /* plans for the batch */
            cnv_allocator a = {count_malloc, plain_free, NULL};
            g_mallocs = 0;
            cnv_set_allocator(&a);
            cnv_saliency_info info;
            cnv_status st = run(&f, &p, map, &info);
            cnv_set_allocator(NULL);
            ok(f.s, st);
            counts[r] = g_mallocs;
            printf("%-12s %4d passes: %zu allocations\n", cnv_saliency_method_name(methods[q]), info.passes,
                   g_mallocs);
        }
        assert_int_equal(counts[0], counts[1]);
    }
    free(map);
    close_fixture(&f);
}

/* ---------------------------------------------------------------- errors */

static void errors(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * 4), *attr = malloc(f.item * 4);
    cnv_saliency_params p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_GRADCAM;
    p.smooth = CNV_SMOOTH_SQUARE;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_OCCLUSION;
    assert_int_equal(cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, attr, f.item, NULL),
                     CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_IG;
    p.baseline = CNV_BASELINE_IMAGE;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    p.baseline = (cnv_baseline)9;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    p = cnv_saliency_params_default();
    p.steps = 0;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_RISE;
    p.mask_prob = 0.0f;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_GUIDED_IG;
    p.guided_fraction = 1.5f;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    p = cnv_saliency_params_default();
    p.batch = -1;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_SCORECAM;
    p.layer = "logits";
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    /* a baseline image with a NaN */
    float *b = malloc(f.item * 4);
    memcpy(b, f.x, f.item * 4);
    b[5] = NAN;
    p = cnv_saliency_params_default();
    p.method = CNV_SALIENCY_IG;
    p.baseline = CNV_BASELINE_IMAGE;
    p.baseline_image = b;
    assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_INVALID_ARG);
    printf("message: %s\n", cnv_session_errmsg(f.s));
    for (int k = 0; k < CNV_SALIENCY_METHODS; k++) {
        const char *name = cnv_saliency_method_name((cnv_saliency_method)k);
        assert_non_null(name);
        assert_int_equal(cnv_saliency_method_parse(name), k);
    }
    free(map), free(attr), free(b);
    close_fixture(&f);
}

static int stop_after_two(void *user, int iter, int total, float objective, float prob)
{
    (void)total, (void)objective, (void)prob;
    ++*(int *)user;
    return iter >= 2;
}

static void cancel(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * 4);
    const cnv_saliency_method methods[] = {CNV_SALIENCY_IG,       CNV_SALIENCY_GUIDED_IG,   CNV_SALIENCY_SCORECAM,
                                           CNV_SALIENCY_ABLATIONCAM, CNV_SALIENCY_OCCLUSION, CNV_SALIENCY_RISE};
    for (size_t q = 0; q < sizeof methods / sizeof methods[0]; q++) {
        cnv_saliency_params p = cnv_saliency_params_default();
        p.method = methods[q];
        p.batch = 2;
        int calls = 0;
        p.progress = stop_after_two;
        p.user = &calls;
        assert_int_equal(run(&f, &p, map, NULL), CNV_ERR_CANCELLED);
        assert_int_equal(calls, 2);
    }
    free(map);
    close_fixture(&f);
}

/* The flags say what each method does: signed maps are the signed ones,
 * CAM methods report their layer, and the attribution and smoothing exist
 * exactly for the gradient methods. */
static void method_flags(void **state)
{
    (void)state;
    fixture f;
    open_fixture(&f, FASHION, BOOT);
    float *map = malloc(f.plane * 4), *attr = malloc(f.item * 4);
    for (int k = 0; k < CNV_SALIENCY_METHODS; k++) {
        unsigned fl = cnv_saliency_method_flags((cnv_saliency_method)k);
        cnv_saliency_params p = cnv_saliency_params_default();
        p.method = (cnv_saliency_method)k;
        p.masks = 50;
        cnv_saliency_info info;
        ok(f.s, run(&f, &p, map, &info));
        assert_int_equal(info.is_signed, (fl & CNV_SAL_SIGNED) != 0);
        assert_int_equal(info.layer != NULL, (fl & CNV_SAL_LAYER) != 0);
        cnv_status st = cnv_saliency_attribution(f.s, f.x, f.item, f.h, f.w, &p, attr, f.item, NULL);
        assert_int_equal(st == CNV_OK, (fl & CNV_SAL_SMOOTH) != 0);
        p.smooth = CNV_SMOOTH_MEAN;
        p.samples = 2;
        st = run(&f, &p, map, NULL);
        assert_int_equal(st == CNV_OK, (fl & CNV_SAL_SMOOTH) != 0);
        printf("%-15s flags 0x%03x\n", cnv_saliency_method_name((cnv_saliency_method)k), fl);
    }
    assert_int_equal(cnv_saliency_method_flags((cnv_saliency_method)CNV_SALIENCY_METHODS), 0);
    free(map), free(attr);
    close_fixture(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ig_completeness_fashion),
        cmocka_unit_test(ig_completeness_squeezenet),
        cmocka_unit_test(scorecam_naive),
        cmocka_unit_test(occlusion_naive),
        cmocka_unit_test(ablationcam_by_weights),
        cmocka_unit_test(forward_from),
        cmocka_unit_test(metric_closed_form),
        cmocka_unit_test(smoothing_at_zero_noise),
        cmocka_unit_test(rise_all_on),
        cmocka_unit_test(layer_targets),
        cmocka_unit_test(no_allocation_per_pass),
        cmocka_unit_test(errors),
        cmocka_unit_test(cancel),
        cmocka_unit_test(method_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
