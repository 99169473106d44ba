/* Saliency maps of one image for one target: the entry points, the target
 * (a class score, a channel or unit of a layer), baselines and what every
 * family of methods shares. The methods themselves: attribution.c
 * (gradients along paths), cam.c (class activation maps), perturb.c
 * (occlusion, RISE and the deletion/insertion metrics). */
#include <math.h>
#include <string.h>

#include "viz/saliency.h"

static const char *const g_method_names[CNV_SALIENCY_METHODS] = {
    "grad",           "smoothgrad", "guided",   "gradcam",  "deconvnet", "gradxinput",
    "ig",             "blurig",     "guidedig", "guided-gradcam", "gradcam++", "layercam",
    "xgradcam",       "eigencam",   "scorecam", "ablationcam",    "occlusion", "rise"};

const char *cnv_saliency_method_name(cnv_saliency_method method)
{
    int k = (int)method;
    return k >= 0 && k < CNV_SALIENCY_METHODS ? g_method_names[k] : NULL;
}

int cnv_saliency_method_parse(const char *name)
{
    for (int k = 0; name && k < CNV_SALIENCY_METHODS; k++)
        if (!strcmp(name, g_method_names[k]))
            return k;
    return -1;
}

cnv_saliency_params cnv_saliency_params_default(void)
{
    cnv_saliency_params p;
    memset(&p, 0, sizeof p);
    p.method = CNV_SALIENCY_GRAD;
    p.class_index = -1;
    p.samples = 25;
    p.noise = 0.15f;
    p.batch = 0;
    p.y = p.x = -1;
    p.steps = 64;
    p.guided_fraction = 0.25f;
    p.masks = 2000;
    p.mask_cells = 7;
    p.mask_prob = 0.5f;
    return p;
}

/* What each method uses, in enum order. */
#define GRADIENT (CNV_SAL_TARGET | CNV_SAL_SMOOTH)
#define CAM (CNV_SAL_TARGET | CNV_SAL_LAYER)
static const unsigned g_method_flags[CNV_SALIENCY_METHODS] = {
    [CNV_SALIENCY_GRAD] = GRADIENT,
    [CNV_SALIENCY_SMOOTHGRAD] = GRADIENT,
    [CNV_SALIENCY_GUIDED] = GRADIENT,
    [CNV_SALIENCY_GRADCAM] = CAM,
    [CNV_SALIENCY_DECONVNET] = GRADIENT,
    [CNV_SALIENCY_GRADXINPUT] = GRADIENT | CNV_SAL_SIGNED,
    [CNV_SALIENCY_IG] = GRADIENT | CNV_SAL_SIGNED | CNV_SAL_STEPS | CNV_SAL_BASELINE | CNV_SAL_BATCHED,
    [CNV_SALIENCY_BLUR_IG] = GRADIENT | CNV_SAL_SIGNED | CNV_SAL_STEPS | CNV_SAL_BATCHED,
    [CNV_SALIENCY_GUIDED_IG] = GRADIENT | CNV_SAL_SIGNED | CNV_SAL_STEPS | CNV_SAL_BASELINE,
    [CNV_SALIENCY_GUIDED_GRADCAM] = CAM,
    [CNV_SALIENCY_GRADCAM_PP] = CAM,
    [CNV_SALIENCY_LAYERCAM] = CAM,
    [CNV_SALIENCY_XGRADCAM] = CAM,
    [CNV_SALIENCY_EIGENCAM] = CNV_SAL_LAYER | CNV_SAL_FORWARD_ONLY,
    [CNV_SALIENCY_SCORECAM] = CAM | CNV_SAL_BASELINE | CNV_SAL_BATCHED | CNV_SAL_FORWARD_ONLY,
    [CNV_SALIENCY_ABLATIONCAM] = CAM | CNV_SAL_BATCHED | CNV_SAL_FORWARD_ONLY,
    [CNV_SALIENCY_OCCLUSION] =
        CNV_SAL_TARGET | CNV_SAL_BASELINE | CNV_SAL_BATCHED | CNV_SAL_SIGNED | CNV_SAL_FORWARD_ONLY,
    [CNV_SALIENCY_RISE] =
        CNV_SAL_TARGET | CNV_SAL_BASELINE | CNV_SAL_BATCHED | CNV_SAL_SEEDED | CNV_SAL_FORWARD_ONLY,
};

unsigned cnv_saliency_method_flags(cnv_saliency_method method)
{
    int k = (int)method;
    return k >= 0 && k < CNV_SALIENCY_METHODS ? g_method_flags[k] : 0;
}

int sal_is_gradient(cnv_saliency_method m)
{
    return (cnv_saliency_method_flags(m) & CNV_SAL_SMOOTH) != 0;
}

int sal_is_signed(cnv_saliency_method m)
{
    return (cnv_saliency_method_flags(m) & CNV_SAL_SIGNED) != 0;
}

/* ------------------------------------------------------------ parameters */

static cnv_status check_params(const cnv_saliency_params *p, cnv_err *err)
{
    const char *name = cnv_saliency_method_name(p->method);
    if (!name)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: unknown method %d", (int)p->method);
    if (p->class_index < -1)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: class %d (use -1 for the top-1 class)",
                        p->class_index);
    if (p->batch < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: batch is %d (>= 1, or 0: automatic)", p->batch);
    if ((int)p->smooth < CNV_SMOOTH_NONE || (int)p->smooth > CNV_SMOOTH_VAR)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: unknown smoothing %d", (int)p->smooth);
    if (p->smooth != CNV_SMOOTH_NONE && !sal_is_gradient(p->method))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: %s takes no noise smoothing (gradient methods do)",
                        name);
    if (p->smooth != CNV_SMOOTH_NONE || p->method == CNV_SALIENCY_SMOOTHGRAD) {
        if (p->samples < 1)
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: samples is %d (>= 1)", p->samples);
        if (!(p->noise >= 0.0f) || !isfinite(p->noise))
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: noise %g is not a finite value >= 0",
                            (double)p->noise);
    }
    if (p->steps < 1 || p->steps > 100000)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: steps is %d (1..100000)", p->steps);
    if ((int)p->baseline < CNV_BASELINE_AUTO || (int)p->baseline > CNV_BASELINE_IMAGE)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: unknown baseline %d", (int)p->baseline);
    if (p->baseline == CNV_BASELINE_IMAGE && !p->baseline_image)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: an image baseline needs baseline_image");
    if (!(p->baseline_sigma >= 0.0f) || !(p->baseline_sigma <= 1000.0f))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: baseline_sigma %g is not in [0, 1000]",
                        (double)p->baseline_sigma);
    if (!(p->blur_max_sigma >= 0.0f) || !(p->blur_max_sigma <= 1000.0f))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: blur_max_sigma %g is not in [0, 1000]",
                        (double)p->blur_max_sigma);
    if (!(p->guided_fraction > 0.0f && p->guided_fraction <= 1.0f))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: guided_fraction %g is not in (0, 1]",
                        (double)p->guided_fraction);
    if (p->window < 0 || p->stride < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: window %d and stride %d must be >= 0 (0: default)",
                        p->window, p->stride);
    if (p->masks < 1 || p->masks > 10000000 || p->mask_cells < 1 || p->mask_cells > 4096)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: RISE needs 1..1e7 masks and 1..4096 cells (got %d, %d)",
                        p->masks, p->mask_cells);
    if (!(p->mask_prob > 0.0f && p->mask_prob <= 1.0f))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: mask_prob %g is not in (0, 1]", (double)p->mask_prob);
    return CNV_OK;
}

/* ---------------------------------------------------------------- target */

cnv_status sal_plan(sal_ctx *c, int n)
{
    return cnv_session_plan(c->v.s, cnv_viz_batch(&c->v, n), c->v.h, c->v.w);
}

int sal_batch(const sal_ctx *c)
{
    cnv_shape sh;
    return cnv_session_tensor(c->v.s, c->tg.t, NULL, &sh) == CNV_OK && sh.ndim > 0 ? (int)sh.dims[0] : 0;
}

cnv_status sal_forward(sal_ctx *c, int used, float *values, float *probs)
{
    cnv_status st = cnv_session_forward_to(c->v.s, c->tg.t);
    if (st != CNV_OK)
        return st;
    c->passes++;
    return sal_read(c, used, values, probs);
}

cnv_status sal_read(sal_ctx *c, int used, float *values, float *probs)
{
    const sal_target *tg = &c->tg;
    float *y;
    cnv_status st = cnv_session_tensor(c->v.s, tg->t, &y, NULL);
    if (st != CNV_OK)
        return st;
    for (int i = 0; i < used; i++) {
        const float *yi = y + (size_t)i * tg->per;
        double val;
        if (!tg->layer) {
            val = yi[tg->index];
            if (!isfinite(val))
                return cnv_viz_finite(&c->v, yi, (size_t)tg->K, tg->K);
        } else if (tg->y >= 0) {
            val = yi[(size_t)tg->index * tg->lh * tg->lw + (size_t)tg->y * tg->lw + tg->x];
        } else {
            size_t plane = (size_t)tg->lh * tg->lw;
            const float *q = yi + (size_t)tg->index * plane;
            double sum = 0.0;
            for (size_t j = 0; j < plane; j++)
                sum += q[j];
            val = sum / (double)plane;
        }
        if (values)
            values[i] = (float)val;
        if (probs) {
            if (tg->layer) {
                probs[i] = (float)val;
            } else {
                cnv_softmax(yi, tg->K, tg->prob);
                probs[i] = tg->prob[tg->index];
            }
        }
    }
    return CNV_OK;
}

void sal_seed(const sal_ctx *c, int batch, int used, float *seed)
{
    const sal_target *tg = &c->tg;
    memset(seed, 0, (size_t)batch * tg->per * sizeof *seed);
    size_t plane = (size_t)tg->lh * tg->lw;
    for (int i = 0; i < used; i++) {
        float *si = seed + (size_t)i * tg->per;
        if (!tg->layer)
            si[tg->index] = 1.0f;
        else if (tg->y >= 0)
            si[(size_t)tg->index * plane + (size_t)tg->y * tg->lw + tg->x] = 1.0f;
        else
            for (size_t j = 0; j < plane; j++)
                si[(size_t)tg->index * plane + j] = 1.0f / (float)plane;
    }
}

cnv_status sal_backward(sal_ctx *c, int batch, int used, float *seed, const float **g)
{
    sal_seed(c, batch, used, seed);
    cnv_status st = cnv_session_backward(c->v.s, c->tg.t, seed, (size_t)batch * c->tg.per);
    if (st != CNV_OK)
        return st;
    if (!(*g = cnv_session_input_grad(c->v.s)))
        return cnv_fail(c->v.err, CNV_ERR_STATE, "saliency: '%s' does not depend on the input",
                        cnv_model_tensor_name(c->v.m, c->tg.t));
    return CNV_OK;
}

cnv_status sal_progress(sal_ctx *c, int done, int total, float value)
{
    const cnv_saliency_params *p = &c->p;
    if (p->progress && p->progress(p->user, done, total, value, c->prob))
        return cnv_fail(c->v.err, CNV_ERR_CANCELLED, "saliency: cancelled after %d of %d passes", done, total);
    return CNV_OK;
}

/* The target's tensor, its kind and index, after a forward of the image
 * at batch 1; the image's value and probability. */
static cnv_status resolve_target(sal_ctx *c)
{
    cnv_viz *v = &c->v;
    const cnv_saliency_params *p = &c->p;
    sal_target *tg = &c->tg;
    cnv_status st;
    tg->t = cnv_model_score_tensor(v->m);
    if (p->score && (tg->t = cnv_model_tensor_index(v->m, p->score)) < 0 &&
        (st = cnv_viz_layer(v, p->score, &tg->t)) != CNV_OK)
        return st;
    if (tg->t < 0)
        return cnv_fail(v->err, CNV_ERR_NOT_FOUND, "saliency: the model has no output to explain");
    if ((st = cnv_viz_depends(v, tg->t, "score")) != CNV_OK || (st = sal_plan(c, 1)) != CNV_OK)
        return st;
    memcpy(cnv_session_input(v->s), c->image, v->item * sizeof(float));
    float *y;
    cnv_shape sh;
    int n = sal_batch(c);
    const char *name = cnv_model_tensor_name(v->m, tg->t);
    if ((st = cnv_session_forward_to(v->s, tg->t)) != CNV_OK || (st = cnv_session_tensor(v->s, tg->t, &y, &sh)) != CNV_OK)
        return st;
    tg->layer = sh.ndim == 4 && (sh.dims[2] > 1 || sh.dims[3] > 1);
    tg->y = tg->x = -1;
    if (tg->layer) {
        tg->K = (int)sh.dims[1];
        tg->lh = (int)sh.dims[2];
        tg->lw = (int)sh.dims[3];
        tg->per = (size_t)tg->K * tg->lh * tg->lw;
        if (n != 1 && sh.dims[0] != n)
            return cnv_fail(v->err, CNV_ERR_SHAPE, "saliency: layer '%s' does not have the batch first", name);
        if (p->y >= 0 || p->x >= 0) {
            if (p->y < 0 || p->x < 0 || p->y >= tg->lh || p->x >= tg->lw)
                return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "saliency: unit (%d, %d) is outside '%s' (%d x %d)",
                                p->y, p->x, name, tg->lh, tg->lw);
            tg->y = p->y;
            tg->x = p->x;
        }
    } else {
        float *sc;
        if ((st = cnv_viz_scores(v, tg->t, n, &sc, &tg->K)) != CNV_OK ||
            (st = cnv_viz_finite(v, sc, (size_t)n * tg->K, tg->K)) != CNV_OK)
            return st;
        tg->per = (size_t)tg->K;
    }
    int cls = p->class_index;
    if (cls >= tg->K)
        return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "saliency: %s %d is out of range ('%s' has %d)",
                        tg->layer ? "channel" : "class", cls, name, tg->K);
    if (cls < 0) {
        /* the top-1 class or the most active channel; NaN never chosen */
        double best = -INFINITY;
        size_t plane = tg->layer ? (size_t)tg->lh * tg->lw : 1;
        for (int k = 0; k < tg->K; k++) {
            double m = 0.0;
            for (size_t j = 0; j < plane; j++)
                m += y[(size_t)k * plane + j];
            if (m == m && (cls < 0 || m > best))
                cls = k, best = m;
        }
        if (cls < 0)
            return cnv_fail(v->err, CNV_ERR_INVALID_ARG, "saliency: every value of '%s' is NaN", name);
    }
    tg->index = cls;
    if (!(tg->prob = cnv_malloc((size_t)tg->K * sizeof *tg->prob)))
        return cnv_fail(v->err, CNV_ERR_NOMEM, "saliency: out of memory");
    c->passes = 0;
    if ((st = sal_forward(c, 1, &c->score, &c->prob)) != CNV_OK)
        return st;
    if (tg->layer)
        c->prob = 0.0f;
    return CNV_OK;
}

/* Everything before a method runs; what sal_end frees. */
cnv_status sal_begin(sal_ctx *c, cnv_session *s, const float *image, size_t count, int h, int w,
                            const cnv_saliency_params *pp, cnv_saliency_info *info)
{
    memset(c, 0, sizeof *c);
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *err = cnv_session_err(s);
    if (info) {
        memset(info, 0, sizeof *info);
        info->class_index = -1;
    }
    if (!image || h < 1 || w < 1)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: needs an image of at least 1x1 (got %dx%d)", h, w);
    c->p = pp ? *pp : cnv_saliency_params_default();
    c->image = image;
    cnv_status st = check_params(&c->p, err);
    /* Every method but GUIDED, DECONVNET ascends the true gradient,
     * whatever mode the session was left in (cnv_viz_begin sets it). */
    if (st == CNV_OK)
        st = cnv_viz_begin(&c->v, s, "saliency", NULL, h, w);
    if (st == CNV_OK)
        st = cnv_viz_check_len(&c->v, "the image", count, 1);
    if (st == CNV_OK && c->p.baseline == CNV_BASELINE_IMAGE) {
        for (size_t i = 0; i < c->v.item; i++)
            if (!isfinite(c->p.baseline_image[i]))
                return cnv_fail(err, CNV_ERR_INVALID_ARG, "saliency: the baseline image has a non-finite value");
    }
    if (st == CNV_OK && c->p.batch == 0) {
        /* a pass of about 32768 pixels: 8 small images, 1 at 224 x 224,
         * where a batch costs memory (SqueezeNet: 64 MB a pass at 1, 480
         * MB at 8) and buys no speed on two cores */
        int64_t fit = (int64_t)32768 / ((int64_t)h * w);
        c->p.batch = fit < 1 ? 1 : fit > 8 ? 8 : (int)fit;
    }
    if (st == CNV_OK)
        st = resolve_target(c);
    return st;
}

void sal_end(sal_ctx *c, cnv_saliency_info *info)
{
    if (info && c->tg.prob) {
        info->class_index = c->tg.index;
        info->score = c->score;
        info->prob = c->prob;
        info->is_signed = sal_is_signed(c->p.method);
        info->passes = c->passes;
    }
    cnv_free(c->tg.prob);
    c->tg.prob = NULL;
    if (c->v.s)
        cnv_session_set_relu_mode(c->v.s, CNV_RELU_GRAD);
}

/* -------------------------------------------------------------- baseline */

cnv_status sal_baseline(const sal_ctx *c, cnv_baseline kind, float *b)
{
    const cnv_viz *v = &c->v;
    size_t plane = (size_t)v->h * v->w;
    switch (kind) {
    case CNV_BASELINE_BLACK:
        for (int k = 0; k < v->c; k++)
            for (size_t i = 0; i < plane; i++)
                b[(size_t)k * plane + i] = -v->pp.mean[k] / v->pp.std[k];
        return CNV_OK;
    case CNV_BASELINE_BLUR: {
        float sigma = c->p.baseline_sigma > 0.0f ? c->p.baseline_sigma : 0.1f * (float)(v->h > v->w ? v->h : v->w);
        float *scratch = cnv_malloc(cnv_blur_scratch(v->h, v->w, sigma) * sizeof *scratch);
        if (!scratch)
            return cnv_fail(v->err, CNV_ERR_NOMEM, "saliency: out of memory for the blurred baseline");
        memcpy(b, c->image, v->item * sizeof *b);
        cnv_blur_chw(b, v->c, v->h, v->w, sigma, scratch);
        cnv_free(scratch);
        return CNV_OK;
    }
    case CNV_BASELINE_NOISE: {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < v->item; i++)
            if (isfinite(c->image[i])) {
                lo = c->image[i] < lo ? c->image[i] : lo;
                hi = c->image[i] > hi ? c->image[i] : hi;
            }
        if (!(lo <= hi))
            lo = hi = 0.0;
        cnv_rng r;
        cnv_rng_seed2(&r, c->p.seed, UINT64_C(0x6261736500000000)); /* apart from the noise samples' streams */
        for (size_t i = 0; i < v->item; i++)
            b[i] = (float)(lo + (hi - lo) * cnv_rng_uniform(&r));
        return CNV_OK;
    }
    case CNV_BASELINE_IMAGE:
        memcpy(b, c->p.baseline_image, v->item * sizeof *b);
        return CNV_OK;
    case CNV_BASELINE_ZERO:
    case CNV_BASELINE_AUTO:
        break;
    }
    memset(b, 0, v->item * sizeof *b);
    return CNV_OK;
}

/* ------------------------------------------------------------- upsampling */

/* a + t (b - a) as (1-t) a + t b, but a neighbour with weight 0 is left
 * out, so a NaN does not leak into pixels it has no weight in. */
static double lerp(double a, double b, double t)
{
    return t == 0.0 ? a : (1.0 - t) * a + t * b;
}

void sal_bilinear(const float *in, int u, int v, float *out, int h, int w)
{
    for (int y = 0; y < h; y++) {
        double sy = ((double)y + 0.5) * u / h - 0.5;
        if (sy < 0.0)
            sy = 0.0;
        int y0 = (int)sy;
        if (y0 > u - 1)
            y0 = u - 1;
        int y1 = y0 < u - 1 ? y0 + 1 : y0;
        double fy = sy - y0;
        for (int x = 0; x < w; x++) {
            double sx = ((double)x + 0.5) * v / w - 0.5;
            if (sx < 0.0)
                sx = 0.0;
            int x0 = (int)sx;
            if (x0 > v - 1)
                x0 = v - 1;
            int x1 = x0 < v - 1 ? x0 + 1 : x0;
            double fx = sx - x0;
            out[(size_t)y * w + x] = (float)lerp(lerp(in[(size_t)y0 * v + x0], in[(size_t)y0 * v + x1], fx),
                                                 lerp(in[(size_t)y1 * v + x0], in[(size_t)y1 * v + x1], fx), fy);
        }
    }
}

/* ------------------------------------------------------- channel reduce */

/* map[i] = max over channels of |a[k][i]|, or their sum for signed
 * methods; a NaN anywhere in the column stays NaN, so a broken gradient
 * shows instead of hiding behind a max. */
static void reduce_channels(const float *a, int c, size_t plane, int is_signed, float *map)
{
    for (size_t i = 0; i < plane; i++) {
        double acc = 0.0;
        for (int k = 0; k < c; k++) {
            float x = a[(size_t)k * plane + i];
            if (x != x) {
                acc = x;
                break;
            }
            if (is_signed)
                acc += x;
            else if (fabsf(x) > acc)
                acc = fabsf(x);
        }
        map[i] = (float)acc;
    }
}

/* ------------------------------------------------------------ entry points */

cnv_status cnv_saliency(cnv_session *s, const float *image, size_t count, int h, int w,
                        const cnv_saliency_params *pp, float *map, size_t map_count, cnv_saliency_info *info)
{
    sal_ctx c;
    cnv_status st = sal_begin(&c, s, image, count, h, w, pp, info);
    if (st == CNV_OK && (!map || map_count != (size_t)h * w))
        st = cnv_fail(c.v.err, CNV_ERR_INVALID_ARG, "saliency: the map holds %zu floats, %dx%d needs %zu",
                      map ? map_count : 0, h, w, (size_t)h * w);
    if (st == CNV_OK) {
        switch (c.p.method) {
        case CNV_SALIENCY_OCCLUSION:
            st = sal_occlusion(&c, map);
            break;
        case CNV_SALIENCY_RISE:
            st = sal_rise(&c, map);
            break;
        default:
            if (sal_is_gradient(c.p.method)) {
                float *attr = cnv_malloc(c.v.item * sizeof *attr);
                if (!attr) {
                    st = cnv_fail(c.v.err, CNV_ERR_NOMEM, "saliency: out of memory");
                    break;
                }
                if ((st = sal_gradient_attribution(&c, attr)) == CNV_OK)
                    reduce_channels(attr, c.v.c, (size_t)h * w, sal_is_signed(c.p.method), map);
                cnv_free(attr);
            } else {
                st = sal_cam(&c, map, info);
            }
        }
    }
    if (st == CNV_OK && info && (c.p.method == CNV_SALIENCY_IG || c.p.method == CNV_SALIENCY_GUIDED_IG ||
                                 c.p.method == CNV_SALIENCY_BLUR_IG))
        info->baseline_score = c.baseline_score;
    sal_end(&c, info);
    return st;
}

cnv_status cnv_saliency_attribution(cnv_session *s, const float *image, size_t count, int h, int w,
                                    const cnv_saliency_params *pp, float *attr, size_t attr_count,
                                    cnv_saliency_info *info)
{
    sal_ctx c;
    cnv_status st = sal_begin(&c, s, image, count, h, w, pp, info);
    if (st == CNV_OK && !sal_is_gradient(c.p.method))
        st = cnv_fail(c.v.err, CNV_ERR_INVALID_ARG, "saliency: %s gives a map, not a per-input attribution",
                      cnv_saliency_method_name(c.p.method));
    if (st == CNV_OK && (!attr || attr_count != c.v.item))
        st = cnv_fail(c.v.err, CNV_ERR_INVALID_ARG, "saliency: the attribution holds %zu floats, the image %zu",
                      attr ? attr_count : 0, c.v.item);
    if (st == CNV_OK)
        st = sal_gradient_attribution(&c, attr);
    if (st == CNV_OK && info)
        info->baseline_score = c.baseline_score;
    sal_end(&c, info);
    return st;
}
