/* Neuron visualization: the image that maximizes one channel (or unit) of
 * a layer, batched over channels. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/query.h"
#include "engine/session.h"
#include "viz/viz.h"

/* --------------------------------------------------------------- neuron */

cnv_neuron_params cnv_neuron_params_default(void)
{
    cnv_neuron_params p;
    memset(&p, 0, sizeof p);
    p.unit_y = p.unit_x = -1;
    p.iters = 200;
    p.lr = 2.0f;
    p.decay = 0.001f;
    p.blur_every = 4;
    p.blur_sigma = 0.5f;
    p.jitter = 4;
    p.clamp = 1;
    p.pre_relu = 1;
    p.init_std = 10.0f;
    p.frame_every = 10;
    return p;
}

static cnv_status check_params(const cnv_neuron_params *p, cnv_err *err)
{
    if (!p->layer)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: no layer given");
    if (p->iters < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: iters is %d (>= 0)", p->iters);
    if (!isfinite(p->lr) || !isfinite(p->decay) || !(p->decay >= 0.0f && p->decay < 1.0f) ||
        !(p->init_std >= 0.0f) || !isfinite(p->init_std) || !isfinite(p->blur_sigma))
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "neuron: lr %g, decay %g (in [0,1)), init_std %g (>= 0), blur_sigma %g must be "
                        "finite",
                        p->lr, p->decay, p->init_std, p->blur_sigma);
    if (p->jitter < 0 || p->jitter > 4096 || p->blur_every < 0 || p->batch < 0 || p->frame_every < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "neuron: jitter %d (0..4096), blur_every %d, batch %d, frame_every %d must be >= 0",
                        p->jitter, p->blur_every, p->batch, p->frame_every);
    if ((p->unit_y < 0) != (p->unit_x < 0))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: unit (%d, %d): give both or neither",
                        p->unit_y, p->unit_x);
    return CNV_OK;
}

/* The tensor the ascent seeds: the layer, or the input of the activation
 * that made it (same shape) when pre_relu is on. */
static const char *ascent_tensor(const cnv_model *m, const char *layer, int pre_relu)
{
    int pre = pre_relu ? cnv_model_pre_activation(m, cnv_model_find(m, layer)) : -1;
    return pre >= 0 ? m->tensors[pre].name : layer;
}

/* The layer as n x C x P (P: spatial positions, 1 for a 2-D layer). */
typedef struct layer_geom {
    int C, H, W; /* H, W: -1 unless 4-D */
    size_t P;
} layer_geom;

static cnv_status layer_geometry(cnv_session *s, const char *name, int n, layer_geom *g, cnv_err *err)
{
    cnv_shape sh;
    cnv_status st = cnv_session_tensor(s, name, NULL, &sh);
    if (st != CNV_OK)
        return st;
    int64_t cnt = cnv_shape_count(&sh);
    char buf[128];
    if (sh.ndim < 2 || sh.dims[0] != n || sh.dims[1] < 1 || cnt <= 0)
        return cnv_fail(err, CNV_ERR_SHAPE, "layer '%s' has shape %s: expected batch %d x channels x ...",
                        name, cnv_shape_str(&sh, buf, sizeof buf), n);
    g->C = (int)sh.dims[1];
    g->P = (size_t)(cnt / sh.dims[0] / sh.dims[1]);
    g->H = sh.ndim == 4 ? (int)sh.dims[2] : -1;
    g->W = sh.ndim == 4 ? (int)sh.dims[3] : -1;
    return CNV_OK;
}

/* The objective of item i: channel ch's mean, or the unit at offset `unit`
 * of its plane (unit < 0: the mean). */
static float objective(const float *act, const layer_geom *g, int i, int ch, long unit)
{
    const float *p = act + ((size_t)i * g->C + ch) * g->P;
    if (unit >= 0)
        return p[unit];
    double sum = 0.0;
    for (size_t j = 0; j < g->P; j++)
        sum += p[j];
    return (float)(sum / (double)g->P);
}

static int all_zero(const float *g, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (g[j] != 0.0f)
            return 0;
    return 1;
}

/* x += step_k * g / mean|g| per channel k, after x *= 1 - decay. A zero or
 * non-finite mean|g| leaves the image to the decay alone. */
static void ascend(float *x, const float *g, int c, size_t plane, const float *std, float lr,
                   float decay)
{
    size_t n = (size_t)c * plane;
    double sum = 0.0;
    for (size_t j = 0; j < n; j++)
        sum += fabs((double)g[j]);
    double mean_abs = sum / (double)n;
    int ok = mean_abs > 0.0 && isfinite(mean_abs);
    for (int k = 0; k < c; k++) {
        double step = ok ? (double)lr / 255.0 / (std ? std[k] : 1.0) / mean_abs : 0.0;
        float *xk = x + (size_t)k * plane;
        const float *gk = g + (size_t)k * plane;
        for (size_t j = 0; j < plane; j++)
            xk[j] = (float)(xk[j] * (1.0 - (double)decay) + step * gk[j]);
    }
}

cnv_status cnv_neuron(cnv_session *s, const cnv_model *m, const float *mean, const float *std, int n,
                      const int *channels, const cnv_neuron_params *pp, float *images, float *before,
                      float *after)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *err = cnv_session_err(s);
    if (!m || n < 1 || !channels || !images)
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "neuron: needs a model, n >= 1 (got %d) channels and an output buffer", n);
    cnv_neuron_params p = pp ? *pp : cnv_neuron_params_default();
    cnv_status st = check_params(&p, err);
    if (st != CNV_OK)
        return st;
    int c, h, w;
    if ((st = cnv_viz_input_geom(m, &c, &h, &w, err)) != CNV_OK)
        return st;
    if (p.height > 0)
        h = p.height;
    if (p.width > 0)
        w = p.width;
    if (h < 1 || w < 1)
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "neuron: the model does not declare its input size; give height and width");
    for (int k = 0; std && k < c; k++)
        if (!(std[k] > 0.0f) || !isfinite(std[k]))
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: std[%d] is %g", k, std[k]);
    const char *layer;
    char msg[256];
    if ((st = cnv_find_layer(m, p.layer, &layer, msg, sizeof msg)) != CNV_OK)
        return cnv_fail(err, st, "neuron: %s", msg);
    const char *ascent = ascent_tensor(m, layer, p.pre_relu);
    int B = p.batch > 0 && p.batch < n ? p.batch : n;
    if ((st = cnv_session_set_relu_mode(s, CNV_RELU_GRAD)) != CNV_OK ||
        (st = cnv_session_plan(s, B, h, w)) != CNV_OK)
        return st;
    layer_geom g = {0, 0, 0, 0};
    if ((st = layer_geometry(s, layer, B, &g, err)) != CNV_OK)
        return st;
    for (int i = 0; i < n; i++)
        if (channels[i] < 0 || channels[i] >= g.C)
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: channel %d is out of range (layer '%s' has %d)",
                            channels[i], layer, g.C);
    long unit = -1;
    if (p.unit_y >= 0) {
        if (g.H < 0 || p.unit_y >= g.H || p.unit_x >= g.W)
            return cnv_fail(err, CNV_ERR_INVALID_ARG,
                            "neuron: unit (%d, %d) is outside layer '%s' (%d x %d positions)", p.unit_y,
                            p.unit_x, layer, g.H < 0 ? 1 : g.H, g.W < 0 ? (int)g.P : g.W);
        unit = (long)p.unit_y * g.W + p.unit_x;
    }

    size_t item = (size_t)c * h * w, plane = (size_t)h * w;
    size_t nseed, nscratch = cnv_blur_scratch(h, w, p.blur_sigma);
    if (!cnv_mul_size((size_t)B * g.C, g.P, &nseed) || !nscratch)
        return cnv_fail(err, CNV_ERR_NOMEM, "neuron: sizes overflow");
    float *seed = cnv_malloc(nseed * sizeof *seed), *seed2 = cnv_malloc(nseed * sizeof *seed2);
    float *scratch = cnv_malloc(nscratch * sizeof *scratch);
    int *dy = cnv_malloc((size_t)B * 2 * sizeof *dy), *dx = dy ? dy + B : NULL;
    cnv_rng *rng = cnv_malloc((size_t)B * sizeof *rng);
    float *in = cnv_session_input(s);
    if (!seed || !seed2 || !scratch || !dy || !rng) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "neuron: out of memory for %d images of %dx%dx%d", B, c, h, w);
        goto done;
    }
    int chunks = (n + B - 1) / B;
    for (int ck = 0; ck < chunks; ck++) {
        int first = ck * B, used = n - first < B ? n - first : B;
        float *img = images + (size_t)first * item;
        /* the seed: d(objective)/d(layer) for the used items, 0 for spares */
        memset(seed, 0, nseed * sizeof *seed);
        for (int i = 0; i < used; i++) {
            float *sp = seed + ((size_t)i * g.C + channels[first + i]) * g.P;
            if (unit >= 0)
                sp[unit] = 1.0f;
            else
                for (size_t j = 0; j < g.P; j++)
                    sp[j] = 1.0f / (float)g.P;
        }
        for (int i = 0; i < used; i++) {
            cnv_rng_seed2(&rng[i], p.seed, (uint64_t)channels[first + i]);
            float *x = img + (size_t)i * item;
            for (int k = 0; k < c; k++) {
                float sd = p.init_std / 255.0f / (std ? std[k] : 1.0f);
                for (size_t j = 0; j < plane; j++)
                    x[(size_t)k * plane + j] = sd * cnv_rng_normal(&rng[i]);
            }
        }
        if (p.clamp)
            cnv_clamp_pixels(img, used, c, h, w, mean, std);
        for (int t = 0; t <= p.iters; t++) {
            /* t == iters: one last forward to measure the result */
            memset(in, 0, (size_t)B * item * sizeof *in);
            memcpy(in, img, (size_t)used * item * sizeof *in);
            /* the first and the last pass see the image unrolled, so that
             * `before` and `after` measure the images themselves */
            int last = t == p.iters, roll = t > 0 && !last;
            for (int i = 0; i < B; i++) {
                dy[i] = i < used && roll ? cnv_rng_int(&rng[i], -p.jitter, p.jitter) : 0;
                dx[i] = i < used && roll ? cnv_rng_int(&rng[i], -p.jitter, p.jitter) : 0;
            }
            cnv_roll_nchw(in, B, c, h, w, dy, dx, scratch);
            if ((st = cnv_session_forward_to(s, layer)) != CNV_OK)
                goto done;
            float *act;
            if ((st = cnv_session_tensor(s, layer, &act, NULL)) != CNV_OK)
                goto done;
            double obj = 0.0;
            for (int i = 0; i < used; i++) {
                float v = objective(act, &g, i, channels[first + i], unit);
                obj += v;
                if (t == 0 && before)
                    before[first + i] = v;
                if (last && after)
                    after[first + i] = v;
            }
            if (last)
                break;
            if ((st = cnv_session_backward(s, layer, seed)) != CNV_OK)
                goto done;
            float *gr = cnv_session_input_grad(s);
            if (!gr) {
                st = cnv_fail(err, CNV_ERR_STATE, "neuron: layer '%s' does not depend on the input", layer);
                goto done;
            }
            /* Items whose gradient is all zero (the target is off
             * everywhere) wait for a second backward from the Relu's
             * input; the forward values are still in place for it. */
            int dead = 0;
            memset(seed2, 0, nseed * sizeof *seed2);
            for (int i = 0; i < used; i++) {
                float *gi = gr + (size_t)i * item;
                if (ascent != layer && all_zero(gi, item)) {
                    size_t off = (size_t)i * g.C * g.P;
                    memcpy(seed2 + off, seed + off, (size_t)g.C * g.P * sizeof *seed2);
                    dead++;
                    continue;
                }
                cnv_roll_chw(gi, c, h, w, -dy[i], -dx[i], scratch);
                ascend(img + (size_t)i * item, gi, c, plane, std, p.lr, p.decay);
            }
            if (dead) {
                if ((st = cnv_session_backward(s, ascent, seed2)) != CNV_OK)
                    goto done;
                gr = cnv_session_input_grad(s);
                for (int i = 0; i < used; i++) {
                    if (seed2[(size_t)i * g.C * g.P + (size_t)channels[first + i] * g.P + (unit >= 0 ? (size_t)unit : 0)] == 0.0f)
                        continue;
                    float *gi = gr + (size_t)i * item;
                    cnv_roll_chw(gi, c, h, w, -dy[i], -dx[i], scratch);
                    ascend(img + (size_t)i * item, gi, c, plane, std, p.lr, p.decay);
                }
            }
            if (p.clamp)
                cnv_clamp_pixels(img, used, c, h, w, mean, std);
            if (p.blur_every > 0 && (t + 1) % p.blur_every == 0)
                for (int i = 0; i < used; i++)
                    cnv_blur_chw(img + (size_t)i * item, c, h, w, p.blur_sigma, scratch);
            if (p.progress &&
                p.progress(p.user, ck * p.iters + t + 1, chunks * p.iters, (float)(obj / used), 0.0f)) {
                st = cnv_fail(err, CNV_ERR_CANCELLED, "neuron: cancelled at step %d of %d", t + 1, p.iters);
                goto done;
            }
            if (p.frame && p.frame_every > 0 && ((t + 1) % p.frame_every == 0 || t + 1 == p.iters) &&
                p.frame(p.user, t + 1, img, used, c, h, w)) {
                st = cnv_fail(err, CNV_ERR_CANCELLED, "neuron: cancelled at step %d of %d", t + 1, p.iters);
                goto done;
            }
        }
    }
done:
    cnv_free(seed);
    cnv_free(seed2);
    cnv_free(scratch);
    cnv_free(dy);
    cnv_free(rng);
    return st;
}
