/* The attribution suite against independent PyTorch references
 * (tests/saliency_refs/, written by tools/saliency_refs.py in float64 from
 * the header's definitions, never from src/): every method of
 * cnv_saliency, cnv_saliency_attribution and cnv_saliency_metric on
 * Fashion-MNIST test image 0 (weights/fashion_mnist.onnx) and on the zoo's
 * small GoogLeNet (tests/zoo/inception_op13.onnx, 3 x 64 x 64), one test
 * case per method and model so that a failure names it.
 *
 * The criterion is max |ours - ref| <= tol * max |ref| over the tensor.
 * tol is 1e-4: the library computes in float32, the reference in float64,
 * and the float32 floor of these two nets' gradients is ~1e-6 (see
 * tests/test_zoo.c), so 1e-4 leaves room for summation order and the
 * sums of 16..64 gradients, and nothing more. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define REFS "tests/saliency_refs/"
#define FASHION "weights/fashion_mnist.onnx"
#define INCEPTION "tests/zoo/inception_op13.onnx"
#define TOL 1e-4

typedef enum { OUT_ATTR, OUT_MAP, OUT_CURVE } out_kind;

/* One reference: what to run and the file it is compared with. */
typedef struct ref_case {
    const char *name;        /* the test case's name */
    const char *model;       /* "fashion" or "inception" */
    const char *file;        /* under REFS */
    out_kind out;
    int method;              /* cnv_saliency_method; a metric for OUT_CURVE */
    cnv_baseline baseline;
    int steps;               /* IG, BLUR_IG, GUIDED_IG; a metric's steps */
    int window, stride;      /* OCCLUSION */
    const char *score;       /* a layer target, or NULL */
    int y, x;                /* its unit, or -1 */
    float fraction;          /* GUIDED_IG's guided_fraction; 0: default */
    int noise_baseline;      /* CNV_BASELINE_IMAGE of noise_baseline() */
    int ill_posed;           /* compare only the sum (see GIG_BLACK) */
    double tol;
} ref_case;

typedef struct model_info {
    const char *tag, *path, *cam_layer;
    int c, h, w;
} model_info;

static const model_info MODELS[] = {
    {"fashion", FASHION, "relu4", 1, 28, 28},
    {"inception", INCEPTION, "/b/Concat_output_0", 3, 64, 64},
};

static const model_info *model_of(const char *tag)
{
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++)
        if (!strcmp(MODELS[i].tag, tag))
            return &MODELS[i];
    fail_msg("unknown model %s", tag);
    return NULL;
}

/* ---------------------------------------------------------------- files */

/* Exactly n float32 values from REFS name. */
static float *load(const char *name, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, REFS "%s", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s is missing (run /usr/bin/python3 tools/saliency_refs.py)", path);
    float *x = malloc((n + 1) * sizeof *x);
    assert_non_null(x);
    size_t got = fread(x, sizeof *x, n + 1, f);
    fclose(f);
    if (got != n)
        fail_msg("%s: %zu floats, expected %zu", path, got, n);
    return x;
}

/* A number after "key=" on the MANIFEST line of file (NAN when absent). */
static double manifest_value(const char *file, const char *key)
{
    FILE *f = fopen(REFS "MANIFEST", "r");
    assert_non_null(f);
    char line[1024], k[64];
    double v = NAN;
    size_t fl = strlen(file);
    snprintf(k, sizeof k, " %s=", key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, file, fl) || line[fl] != ' ')
            continue;
        const char *p = strstr(line, k);
        if (p)
            v = strtod(p + strlen(k), NULL);
        break;
    }
    fclose(f);
    return v;
}

/* ------------------------------------------------------------ compare */

/* max |ours - ref| / max |ref|, printed as the line the report quotes. */
static double compare(const char *label, const float *ours, const float *ref, size_t n, double tol)
{
    double worst = 0.0, mx = 0.0;
    size_t at = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (isnan(ours[i]) != isnan(ref[i]))
            nan = 1;
        if (d > worst) {
            worst = d;
            at = i;
        }
        mx = fmax(mx, fabs((double)ref[i]));
    }
    double rel = mx > 0 ? worst / mx : worst;
    printf("REF %-34s max|diff| %.3g at %zu (ours %.7g, ref %.7g), max|ref| %.4g, rel %.3g (tol %g)\n",
           label, worst, at, n ? ours[at] : 0.0, n ? ref[at] : 0.0, mx, rel, tol);
    assert_false(nan);
    assert_true(mx > 0.0); /* a reference of zeros would check nothing */
    assert_true(rel <= tol);
    return rel;
}

static void reduce(const float *a, int c, int hw, int is_signed, float *out)
{
    for (int i = 0; i < hw; i++) {
        double v = 0.0;
        for (int k = 0; k < c; k++)
            v = is_signed ? v + a[(size_t)k * hw + i] : fmax(v, fabs(a[(size_t)k * hw + i]));
        out[i] = (float)v;
    }
}

static int is_signed_method(int m)
{
    return m == CNV_SALIENCY_GRADXINPUT || m == CNV_SALIENCY_IG || m == CNV_SALIENCY_BLUR_IG ||
           m == CNV_SALIENCY_GUIDED_IG;
}

static void ok_s(cnv_session *s, cnv_status st)
{
    if (st != CNV_OK)
        fail_msg("%s (%s)", cnv_session_errmsg(s), cnv_status_string(st));
}

/* tools/saliency_refs.py's hash_noise: exact in both languages. */
static double hash_noise(long i)
{
    return (double)((i * 7919) % 1000) / 1000.0 - 0.5;
}

/* BLACK plus hash_noise * 2 gray levels, as the script builds it. */
static float *noise_baseline(const cnv_model *m, int c, int h, int w)
{
    cnv_preprocess pp;
    char err[256];
    if (cnv_model_preprocess(m, &pp, err, sizeof err) != CNV_OK)
        fail_msg("%s", err);
    float *b = malloc((size_t)c * h * w * sizeof *b);
    assert_non_null(b);
    for (int k = 0; k < c; k++)
        for (int i = 0; i < h * w; i++) {
            long j = (long)k * h * w + i;
            float black = (0.0f - pp.mean[k]) / pp.std[k];
            b[j] = black + (float)(hash_noise(j) * 2.0 / 255.0 / (double)pp.std[k]);
        }
    return b;
}

static double sum_of(const float *a, size_t n)
{
    double t = 0.0;
    for (size_t i = 0; i < n; i++)
        t += a[i];
    return t;
}

/* ------------------------------------------------------------- the run */

static void run_case(void **state)
{
    const ref_case *rc = *state;
    const model_info *mi = model_of(rc->model);
    int c = mi->c, h = mi->h, w = mi->w, hw = h * w;
    size_t chw = (size_t)c * hw;
    char file[128];
    snprintf(file, sizeof file, "%s.input.f32", mi->tag);
    float *x = load(file, chw);
    cnv_model *m = NULL;
    if (cnv_model_load_onnx(mi->path, &m) != CNV_OK)
        fail_msg("%s: %s", mi->path, cnv_model_errmsg(m));
    cnv_session *s;
    assert_int_equal(cnv_session_create(m, &s), CNV_OK);

    cnv_saliency_params p = cnv_saliency_params_default();
    p.baseline = rc->baseline;
    if (rc->steps)
        p.steps = rc->steps;
    p.window = rc->window;
    p.stride = rc->stride;
    p.score = rc->score;
    p.y = rc->y;
    p.x = rc->x;
    if (rc->fraction > 0)
        p.guided_fraction = rc->fraction;
    float *nb = NULL;
    if (rc->noise_baseline) {
        nb = noise_baseline(m, c, h, w);
        p.baseline = CNV_BASELINE_IMAGE;
        p.baseline_image = nb;
    }
    cnv_saliency_info info;
    memset(&info, 0, sizeof info);
    int ref_class = (int)manifest_value(rc->file, "class");

    if (rc->out == OUT_CURVE) {
        /* the metric ranks the reference's own grad map, so both sort the
         * same float32 values */
        snprintf(file, sizeof file, "%s.grad.attr.f32", mi->tag);
        float *ga = load(file, chw), *gmap = malloc(hw * sizeof *gmap);
        float *curve = malloc((rc->steps + 1) * sizeof *curve), area = NAN;
        assert_true(gmap && curve);
        reduce(ga, c, hw, 0, gmap);
        float *ref = load(rc->file, (size_t)rc->steps + 1);
        ok_s(s, cnv_saliency_metric(s, x, chw, h, w, gmap, hw, (cnv_metric)rc->method, rc->steps, &p,
                                    curve, &area));
        compare(rc->name, curve, ref, (size_t)rc->steps + 1, rc->tol);
        double ref_area = manifest_value(rc->file, "area");
        printf("REF %-34s area %.7g, ref %.7g\n", rc->name, area, ref_area);
        assert_true(fabs(area - ref_area) <= rc->tol * fmax(1e-3, fabs(ref_area)));
        free(ga);
        free(gmap);
        free(curve);
        free(ref);
    } else if (rc->ill_posed) {
        p.method = rc->method;
        float *attr = malloc(chw * sizeof *attr), *ref = load(rc->file, chw);
        assert_non_null(attr);
        ok_s(s, cnv_saliency_attribution(s, x, chw, h, w, &p, attr, chw, &info));
        double worst = 0.0, mx = 0.0;
        for (size_t i = 0; i < chw; i++) {
            worst = fmax(worst, fabs((double)attr[i] - ref[i]));
            mx = fmax(mx, fabs((double)ref[i]));
        }
        double so = sum_of(attr, chw), sr = sum_of(ref, chw);
        printf("REF %-34s pointwise rel %.3g (not asserted: ill-posed); sum %.7g, ref %.7g, rel %.3g\n",
               rc->name, worst / mx, so, sr, fabs(so - sr) / fabs(sr));
        assert_true(fabs(so - sr) <= rc->tol * fabs(sr));
        free(attr);
        free(ref);
    } else {
        p.method = rc->method;
        float *map = malloc(hw * sizeof *map);
        assert_non_null(map);
        if (rc->out == OUT_ATTR) {
            float *attr = malloc(chw * sizeof *attr), *ref = load(rc->file, chw);
            float *rmap = malloc(hw * sizeof *rmap);
            assert_true(attr && rmap);
            char label[96];
            ok_s(s, cnv_saliency(s, x, chw, h, w, &p, map, hw, &info));
            reduce(ref, c, hw, is_signed_method(rc->method), rmap);
            snprintf(label, sizeof label, "%s (map)", rc->name);
            compare(label, map, rmap, hw, rc->tol);
            ok_s(s, cnv_saliency_attribution(s, x, chw, h, w, &p, attr, chw, &info));
            snprintf(label, sizeof label, "%s (attribution)", rc->name);
            compare(label, attr, ref, chw, rc->tol);
            assert_int_equal(info.is_signed, is_signed_method(rc->method));
            free(attr);
            free(ref);
            free(rmap);
        } else {
            float *ref = load(rc->file, hw);
            ok_s(s, cnv_saliency(s, x, chw, h, w, &p, map, hw, &info));
            compare(rc->name, map, ref, hw, rc->tol);
            free(ref);
        }
        free(map);
        /* what the call says it explained */
        assert_int_equal(info.class_index, ref_class);
        double sv = manifest_value(rc->file, "value");
        if (!isnan(sv))
            assert_true(fabs(info.score - sv) <= 1e-5 * fmax(1.0, fabs(sv)));
        double bs = manifest_value(rc->file, "baseline_score");
        if (!isnan(bs)) {
            printf("REF %-34s baseline_score %.7g, ref %.7g\n", rc->name, info.baseline_score, bs);
            assert_true(fabs(info.baseline_score - bs) <= 1e-5 * fmax(1.0, fabs(bs)));
        }
        if (rc->method == CNV_SALIENCY_GRADCAM || rc->method >= CNV_SALIENCY_GUIDED_GRADCAM) {
            if (rc->method != CNV_SALIENCY_OCCLUSION && rc->method != CNV_SALIENCY_RISE) {
                assert_non_null(info.layer);
                assert_string_equal(info.layer, mi->cam_layer);
            }
        }
    }
    cnv_session_free(s);
    cnv_model_free(m);
    free(x);
    free(nb);
}

/* ------------------------------------------------------------- the list */

#define BL_NONE CNV_BASELINE_AUTO
#define ATTR(mdl, nm, meth, bl, st) \
    {.name = mdl " " nm, .model = mdl, .file = mdl "." nm ".attr.f32", .out = OUT_ATTR, \
     .method = meth, .baseline = bl, .steps = st, .y = -1, .x = -1, .tol = TOL}
#define MAP(mdl, nm, meth, bl, st) \
    {.name = mdl " " nm, .model = mdl, .file = mdl "." nm ".map.f32", .out = OUT_MAP, \
     .method = meth, .baseline = bl, .steps = st, .y = -1, .x = -1, .tol = TOL}
#define OCCL(mdl, win, str) \
    {.name = mdl " occlusion", .model = mdl, .file = mdl ".occlusion.map.f32", .out = OUT_MAP, \
     .method = CNV_SALIENCY_OCCLUSION, .window = win, .stride = str, .y = -1, .x = -1, .tol = TOL}
#define CURVE(mdl, nm, metric, st) \
    {.name = mdl " " nm, .model = mdl, .file = mdl "." nm ".curve.f32", .out = OUT_CURVE, \
     .method = metric, .steps = st, .y = -1, .x = -1, .tol = TOL}
#define LAYER(mdl, nm, meth, layer, yy, xx) \
    {.name = mdl " " nm, .model = mdl, .file = mdl "." nm ".attr.f32", .out = OUT_ATTR, \
     .method = meth, .score = layer, .y = yy, .x = xx, .tol = TOL}
/* guided_fraction 1 moves every input every step: PAIR's Guided IG is
 * then IG's left Riemann sum on the straight line, a continuous function
 * of the gradients that float32 can match (the script checks the closed
 * form in float64). From the noise baseline, because the sum's first
 * term is g(b): from BLACK, the library and the script's own float32 run
 * both differ from float64 by 1.8e-3 on Fashion-MNIST. */
#define GIG_F1(mdl, kind, file_kind) \
    {.name = mdl " guidedig fraction 1", .model = mdl, .file = mdl ".guidedig_f1." file_kind ".f32", \
     .out = kind, .method = CNV_SALIENCY_GUIDED_IG, .steps = 64, .noise_baseline = 1, \
     .fraction = 1.0f, .y = -1, .x = -1, .tol = TOL}

/* Guided IG from a noisy baseline: no constant image on the path, so
 * every gradient is defined and the quantile selection is stable (the
 * script's float32 run of the same path agrees with float64; see the
 * MANIFEST's f32_vs_f64). */
#define GIG_NOISE(mdl, kind, file_kind) \
    {.name = mdl " guidedig noise baseline", .model = mdl, .file = mdl ".guidedig_noise." file_kind ".f32", \
     .out = kind, .method = CNV_SALIENCY_GUIDED_IG, .steps = 64, .noise_baseline = 1, .y = -1, .x = -1, \
     .tol = TOL}
/* Guided IG from BLACK is ill-posed at float precision: its first
 * gradient is taken at a constant image (inception's BLACK is 0), where every MaxPool window ties
 * and the gradient is whichever one-sided derivative rounding picks (on
 * Fashion-MNIST the library's gradient at the black image is 31% of the
 * max away from torch float64's, torch float32's 53%), and the quantile
 * selection then sends the path elsewhere: the script's float32 run of
 * PAIR's algorithm is 37% (max) away from its float64 run. Only the sum,
 * which every path keeps near S(x) - S(b), is compared, at 5% (float32
 * vs float64 in the script: 0.7%). */
#define GIG_BLACK(mdl) \
    {.name = mdl " guidedig black (sum only)", .model = mdl, .file = mdl ".guidedig.attr.f32", \
     .out = OUT_ATTR, .method = CNV_SALIENCY_GUIDED_IG, .baseline = CNV_BASELINE_BLACK, .steps = 64, \
     .ill_posed = 1, .y = -1, .x = -1, .tol = 0.05}

static const ref_case CASES[] = {
    ATTR("fashion", "grad", CNV_SALIENCY_GRAD, BL_NONE, 0),
    ATTR("fashion", "guided", CNV_SALIENCY_GUIDED, BL_NONE, 0),
    ATTR("fashion", "deconvnet", CNV_SALIENCY_DECONVNET, BL_NONE, 0),
    ATTR("fashion", "gradxinput", CNV_SALIENCY_GRADXINPUT, BL_NONE, 0),
    ATTR("fashion", "ig_black_64", CNV_SALIENCY_IG, CNV_BASELINE_BLACK, 64),
    ATTR("fashion", "ig_black_16", CNV_SALIENCY_IG, CNV_BASELINE_AUTO, 16), /* AUTO is BLACK */
    ATTR("fashion", "ig_zero_64", CNV_SALIENCY_IG, CNV_BASELINE_ZERO, 64),
    ATTR("fashion", "ig_zero_16", CNV_SALIENCY_IG, CNV_BASELINE_ZERO, 16),
    ATTR("fashion", "blurig", CNV_SALIENCY_BLUR_IG, BL_NONE, 64),
    GIG_BLACK("fashion"),
    GIG_NOISE("fashion", OUT_ATTR, "attr"),
    GIG_F1("fashion", OUT_ATTR, "attr"),
    MAP("fashion", "gradcam", CNV_SALIENCY_GRADCAM, BL_NONE, 0),
    MAP("fashion", "guided-gradcam", CNV_SALIENCY_GUIDED_GRADCAM, BL_NONE, 0),
    MAP("fashion", "gradcam++", CNV_SALIENCY_GRADCAM_PP, BL_NONE, 0),
    MAP("fashion", "layercam", CNV_SALIENCY_LAYERCAM, BL_NONE, 0),
    MAP("fashion", "xgradcam", CNV_SALIENCY_XGRADCAM, BL_NONE, 0),
    MAP("fashion", "eigencam", CNV_SALIENCY_EIGENCAM, BL_NONE, 0),
    MAP("fashion", "scorecam", CNV_SALIENCY_SCORECAM, BL_NONE, 0),
    MAP("fashion", "ablationcam", CNV_SALIENCY_ABLATIONCAM, BL_NONE, 0),
    OCCL("fashion", 7, 4),
    CURVE("fashion", "deletion", CNV_METRIC_DELETION, 6),
    CURVE("fashion", "insertion", CNV_METRIC_INSERTION, 6),
    LAYER("fashion", "grad_mean", CNV_SALIENCY_GRAD, "relu3", -1, -1),
    LAYER("fashion", "guided_mean", CNV_SALIENCY_GUIDED, "relu3", -1, -1),
    LAYER("fashion", "grad_unit", CNV_SALIENCY_GRAD, "relu3", 3, 10),
    LAYER("fashion", "guided_unit", CNV_SALIENCY_GUIDED, "relu3", 3, 10),

    ATTR("inception", "grad", CNV_SALIENCY_GRAD, BL_NONE, 0),
    MAP("inception", "guided", CNV_SALIENCY_GUIDED, BL_NONE, 0),
    MAP("inception", "deconvnet", CNV_SALIENCY_DECONVNET, BL_NONE, 0),
    MAP("inception", "ig_black_64", CNV_SALIENCY_IG, CNV_BASELINE_BLACK, 64),
    MAP("inception", "blurig", CNV_SALIENCY_BLUR_IG, BL_NONE, 64),
    GIG_BLACK("inception"),
    GIG_NOISE("inception", OUT_MAP, "map"),
    GIG_F1("inception", OUT_MAP, "map"),
    MAP("inception", "gradcam", CNV_SALIENCY_GRADCAM, BL_NONE, 0),
    MAP("inception", "gradcam++", CNV_SALIENCY_GRADCAM_PP, BL_NONE, 0),
    MAP("inception", "layercam", CNV_SALIENCY_LAYERCAM, BL_NONE, 0),
    MAP("inception", "xgradcam", CNV_SALIENCY_XGRADCAM, BL_NONE, 0),
    MAP("inception", "eigencam", CNV_SALIENCY_EIGENCAM, BL_NONE, 0),
    MAP("inception", "scorecam", CNV_SALIENCY_SCORECAM, BL_NONE, 0),
    MAP("inception", "ablationcam", CNV_SALIENCY_ABLATIONCAM, BL_NONE, 0),
    OCCL("inception", 16, 10),
    CURVE("inception", "deletion", CNV_METRIC_DELETION, 8),
    CURVE("inception", "insertion", CNV_METRIC_INSERTION, 8),
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

int main(void)
{
    struct CMUnitTest tests[N_CASES];
    for (size_t i = 0; i < N_CASES; i++) {
        struct CMUnitTest t = {CASES[i].name, run_case, NULL, NULL, (void *)&CASES[i]};
        tests[i] = t;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
