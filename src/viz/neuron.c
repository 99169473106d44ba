/* Neuron visualization: the image that maximizes one channel (or unit) of
 * a layer, batched over channels, by the Lucid recipe (lucid.c) or by
 * CS231n's pixel ascent. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "viz/lucid.h"

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
    p.recipe = CNV_RECIPE_LUCID;
    p.lucid = cnv_lucid_params_default();
    return p;
}

static cnv_status check_params(const cnv_neuron_params *p, cnv_err *err)
{
    if (!p->layer)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: no layer given");
    if (p->batch < 0 || p->frame_every < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: batch %d, frame_every %d must be >= 0", p->batch,
                        p->frame_every);
    if ((p->unit_y < 0) != (p->unit_x < 0))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: unit (%d, %d): give both or neither",
                        p->unit_y, p->unit_x);
    if (!cnv_recipe_name(p->recipe))
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: recipe %d is none of the cnv_recipe values",
                        (int)p->recipe);
    if (p->recipe == CNV_RECIPE_LUCID)
        return cnv_lucid_check(&p->lucid, "neuron", err);
    if (p->iters < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: iters is %d (>= 0)", p->iters);
    if (!isfinite(p->lr) || !isfinite(p->decay) || !(p->decay >= 0.0f && p->decay < 1.0f) ||
        !(p->init_std >= 0.0f) || !isfinite(p->init_std) || !isfinite(p->blur_sigma))
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "neuron: lr %g, decay %g (in [0,1)), init_std %g (>= 0), blur_sigma %g must be "
                        "finite",
                        p->lr, p->decay, p->init_std, p->blur_sigma);
    if (p->jitter < 0 || p->jitter > 4096 || p->blur_every < 0)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: jitter %d (0..4096), blur_every %d must be >= 0",
                        p->jitter, p->blur_every);
    return CNV_OK;
}

/* The layer as n x C x P (P: spatial positions, 1 for a 2-D layer). */
typedef struct layer_geom {
    int C, H, W; /* H, W: -1 unless 4-D */
    size_t P;
} layer_geom;

static cnv_status layer_geometry(cnv_session *s, int t, int n, layer_geom *g, cnv_err *err)
{
    const char *name = cnv_model_tensor_name(cnv_session_model(s), t);
    cnv_shape sh;
    cnv_status st = cnv_session_tensor(s, t, NULL, &sh);
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

/* Runs the forward to the layer and puts each used item's objective in
 * vals[i]; fails on a value that is not finite. */
static cnv_status layer_values(const cnv_viz *v, int layer, const layer_geom *g, int used, const int *channels,
                               long unit, float *vals)
{
    cnv_status st;
    float *act;
    if ((st = cnv_session_forward_to(v->s, layer)) != CNV_OK ||
        (st = cnv_session_tensor(v->s, layer, &act, NULL)) != CNV_OK)
        return st;
    for (int i = 0; i < used; i++) {
        vals[i] = objective(act, g, i, channels[i], unit);
        if (!isfinite(vals[i]))
            return cnv_fail(v->err, CNV_ERR_FORMAT,
                            "neuron: the activation of channel %d is %g: not finite (the model's weights "
                            "overflow, or make NaN, on this image)",
                            channels[i], (double)vals[i]);
    }
    return CNV_OK;
}

/* The Lucid recipe's objective (cnv_lucid_grad_fn) for one chunk of items:
 * their channels' means, or units. */
typedef struct neuron_objective {
    const cnv_viz *v;
    int layer, pre;
    const layer_geom *g;
    const int *channels; /* the chunk's */
    long unit;
    const float *seed;
    float *seed2, *vals;
    size_t nseed;
    float *grad;         /* the chunk's input gradients */
} neuron_objective;

static void copy_grad(void *arg, int i, float *g)
{
    const neuron_objective *o = arg;
    memcpy(o->grad + (size_t)i * o->v->item, g, o->v->item * sizeof *g);
}

static cnv_status neuron_grad(void *arg, int first, int used, float **grad, double *obj, double *prob)
{
    (void)first; /* the chunk is the job: its items start at 0 */
    (void)prob;
    neuron_objective *o = arg;
    cnv_status st = layer_values(o->v, o->layer, o->g, used, o->channels, o->unit, o->vals);
    if (st != CNV_OK)
        return st;
    for (int i = 0; i < used; i++)
        *obj += o->vals[i];
    *grad = o->grad;
    return cnv_viz_layer_grads(o->v, o->layer, o->pre, o->seed, o->nseed, (size_t)o->g->C * o->g->P, used,
                               o->seed2, copy_grad, o);
}

/* What the ascent step needs for each item's gradient (cnv_viz_grad_fn). */
typedef struct neuron_step {
    const cnv_viz *v;
    float *img;          /* the chunk's first image */
    const int *dy, *dx;  /* each item's roll */
    float *scratch;      /* roll scratch */
    float lr, decay;
} neuron_step;

/* Rolls item i's gradient back as its image was rolled, then steps. */
static void step_item(void *arg, int i, float *g)
{
    const neuron_step *ns = arg;
    const cnv_viz *v = ns->v;
    cnv_roll_chw(g, v->c, v->h, v->w, -ns->dy[i], -ns->dx[i], ns->scratch);
    cnv_viz_step(v, ns->img + (size_t)i * v->item, g, ns->lr, ns->decay);
}

static cnv_status run_neuron(cnv_session *s, int n, const int *channels, const cnv_neuron_params *pp, float *images,
                      size_t count, float *before, float *after)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *err = cnv_session_err(s);
    if (n < 1 || !channels || !images)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: needs n >= 1 (got %d) channels and an output buffer",
                        n);
    cnv_neuron_params p = pp ? *pp : cnv_neuron_params_default();
    cnv_status st = check_params(&p, err);
    if (st != CNV_OK)
        return st;
    cnv_viz v;
    int layer;
    if ((st = cnv_viz_begin(&v, s, "neuron", p.preprocess, p.height, p.width)) != CNV_OK ||
        (st = cnv_viz_check_len(&v, "images", count, n)) != CNV_OK || (st = cnv_viz_layer(&v, p.layer, &layer)) != CNV_OK)
        return st;
    int c = v.c, h = v.h, w = v.w;
    const float *mean = v.pp.mean, *std = v.pp.std;
    const char *name = cnv_model_tensor_name(v.m, layer);
    int pre = p.pre_relu ? cnv_model_pre_activation(v.m, layer) : -1;
    int B = cnv_viz_batch(&v, p.batch > 0 && p.batch < n ? p.batch : n);
    if ((st = cnv_session_set_plan_target(s, layer)) != CNV_OK || (st = cnv_session_plan(s, B, h, w)) != CNV_OK)
        return st;
    layer_geom g = {0, 0, 0, 0};
    if ((st = layer_geometry(s, layer, B, &g, err)) != CNV_OK)
        return st;
    for (int i = 0; i < n; i++)
        if (channels[i] < 0 || channels[i] >= g.C)
            return cnv_fail(err, CNV_ERR_INVALID_ARG, "neuron: channel %d is out of range (layer '%s' has %d)",
                            channels[i], name, g.C);
    long unit = -1;
    if (p.unit_y >= 0) {
        if (g.H < 0 || p.unit_y >= g.H || p.unit_x >= g.W)
            return cnv_fail(err, CNV_ERR_INVALID_ARG,
                            "neuron: unit (%d, %d) is outside layer '%s' (%d x %d positions)", p.unit_y,
                            p.unit_x, name, g.H < 0 ? 1 : g.H, g.W < 0 ? (int)g.P : g.W);
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
    float *vals = cnv_malloc((size_t)B * sizeof *vals);
    uint64_t *streams = cnv_malloc((size_t)B * sizeof *streams);
    /* the Lucid recipe's starting images, to measure `before` on */
    float *start = p.recipe == CNV_RECIPE_LUCID && before ? cnv_malloc((size_t)B * item * sizeof *start) : NULL;
    float *grads = p.recipe == CNV_RECIPE_LUCID ? cnv_malloc((size_t)B * item * sizeof *grads) : NULL;
    float *in = cnv_session_input(s);
    if (!seed || !seed2 || !scratch || !dy || !rng || !vals || !streams ||
        (p.recipe == CNV_RECIPE_LUCID && ((before && !start) || !grads))) {
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
        if (p.recipe == CNV_RECIPE_LUCID) {
            neuron_objective o = { &v, layer, pre, &g, channels + first, unit, seed, seed2, vals, nseed, grads };
            for (int i = 0; i < used; i++)
                streams[i] = (uint64_t)channels[first + i];
            cnv_lucid_job job = {
                .v = &v, .lucid = &p.lucid, .n = used, .batch = B, .seed = p.seed, .streams = streams,
                .grad = neuron_grad, .arg = &o, .progress = p.progress, .progress_done = ck * p.lucid.iters,
                .progress_total = chunks * p.lucid.iters, .frame = p.frame, .frame_every = p.frame_every,
                .user = p.user,
            };
            if ((st = cnv_lucid_run(&job, img, start)) != CNV_OK)
                goto done;
            /* the objective on the start and on the result */
            for (int pass = before ? 0 : 1; pass < 2 && (pass == 0 || after); pass++) {
                memset(in, 0, (size_t)B * item * sizeof *in);
                memcpy(in, pass ? img : start, (size_t)used * item * sizeof *in);
                if ((st = layer_values(&v, layer, &g, used, channels + first, unit, vals)) != CNV_OK)
                    goto done;
                memcpy((pass ? after : before) + first, vals, (size_t)used * sizeof *vals);
            }
            continue;
        }
        for (int i = 0; i < used; i++) {
            cnv_rng_seed2(&rng[i], p.seed, (uint64_t)channels[first + i]);
            float *x = img + (size_t)i * item;
            for (int k = 0; k < c; k++) {
                float sd = p.init_std / 255.0f / std[k];
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
            if ((st = layer_values(&v, layer, &g, used, channels + first, unit, vals)) != CNV_OK)
                goto done;
            double obj = 0.0;
            for (int i = 0; i < used; i++) {
                obj += vals[i];
                if (t == 0 && before)
                    before[first + i] = vals[i];
                if (last && after)
                    after[first + i] = vals[i];
            }
            if (last)
                break;
            neuron_step ns = {&v, img, dy, dx, scratch, p.lr, p.decay};
            if ((st = cnv_viz_layer_grads(&v, layer, pre, seed, nseed, (size_t)g.C * g.P, used, seed2, step_item,
                                          &ns)) != CNV_OK)
                goto done;
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
    cnv_free(vals);
    cnv_free(streams);
    cnv_free(start);
    cnv_free(grads);
    return st;
}

/* The objective is a layer: the plan stops there (cnv_session_set_plan_target),
 * so a later layer that needs a larger input does not stand in the way, and
 * the session plans the whole model again afterwards. */
cnv_status cnv_neuron(cnv_session *s, int n, const int *channels, const cnv_neuron_params *pp, float *images,
                      size_t count, float *before, float *after)
{
    cnv_status st = run_neuron(s, n, channels, pp, images, count, before, after);
    if (s)
        cnv_session_set_plan_target(s, -1);
    return st;
}
