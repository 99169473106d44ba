/* Deep dream with octaves and a zooming movie: gradient ascent on a
 * layer's mean activation, the input growing octave by octave, then each
 * frame zoomed into the last one and dreamed on a few steps more. */
#include <math.h>
#include <string.h>

#include "viz/viz.h"

cnv_dream_params cnv_dream_params_default(void)
{
    cnv_dream_params p;
    memset(&p, 0, sizeof p);
    p.channel = -1;
    p.start = 64;
    p.octaves = 4;
    p.octave_scale = 1.4f;
    p.steps = 20;
    p.frames = 1;
    p.zoom = 1.05f;
    p.frame_steps = 5;
    p.lr = 1.5f;
    p.jitter = 16;
    p.clamp = 1;
    p.pre_relu = 1;
    p.init_std = 20.0f;
    p.l2 = 1;
    return p;
}

static cnv_status check_params(const cnv_dream_params *p, cnv_err *err)
{
    if (!p->layer)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "dream: no layer given");
    if (p->octaves < 1 || p->octaves > 64 || p->start < 1 || p->steps < 0 || p->frames < 1 ||
        p->frame_steps < 0 || p->channel_every < 0 || p->jitter < 0 || p->jitter > 4096 || p->channel < -1)
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "dream: octaves %d (1..64), start %d (>= 1), steps %d, frames %d (>= 1), "
                        "frame_steps %d, channel_every %d, jitter %d (0..4096), channel %d (>= -1)",
                        p->octaves, p->start, p->steps, p->frames, p->frame_steps, p->channel_every,
                        p->jitter, p->channel);
    if (!(p->octave_scale > 1.0f && p->octave_scale <= 16.0f) || !(p->zoom >= 1.0f && p->zoom <= 4.0f) ||
        !isfinite(p->lr) || !(p->init_std >= 0.0f) || !isfinite(p->init_std))
        return cnv_fail(err, CNV_ERR_INVALID_ARG,
                        "dream: octave_scale %g (in (1,16]), zoom %g (in [1,4]), lr %g, init_std %g "
                        "(>= 0) must be finite",
                        p->octave_scale, p->zoom, p->lr, p->init_std);
    return CNV_OK;
}

/* What one octave or frame works on. */
typedef struct dream_run {
    cnv_viz v;          /* its size: the current octave's or the frame's */
    cnv_session *s;
    int layer;
    int pre;            /* the layer's pre-activation (pre_relu), or -1 */
    const cnv_dream_params *p;
    cnv_rng rng;
    float *seed;     /* d(objective)/d(layer), sized for the current plan */
    float *seed2;    /* the same size: cnv_viz_layer_grads' scratch */
    size_t seed_cap; /* floats */
    float *scratch;  /* roll scratch: at least the largest plane */
    int C;           /* the layer's channels */
    size_t P;        /* its positions per channel in the current plan */
    int channel;     /* -1: the whole layer */
    int step, total; /* for progress */
    float objective;
    cnv_err *err;
} dream_run;

/* Plans for h x w and reads the layer's size. */
static cnv_status plan_size(dream_run *r, int h, int w)
{
    cnv_status st = cnv_session_set_plan_target(r->s, r->layer);
    if (st == CNV_OK)
        st = cnv_session_plan(r->s, 1, h, w);
    if (st != CNV_OK)
        return st;
    r->v.h = h;
    r->v.w = w;
    r->v.item = (size_t)r->v.c * h * w;
    cnv_shape sh;
    if ((st = cnv_session_tensor(r->s, r->layer, NULL, &sh)) != CNV_OK)
        return st;
    int64_t cnt = cnv_shape_count(&sh);
    if (sh.ndim < 2 || sh.dims[0] != 1 || sh.dims[1] < 1 || cnt <= 0) {
        char buf[128];
        return cnv_fail(r->err, CNV_ERR_SHAPE, "dream: layer '%s' has shape %s: expected 1 x channels x ...",
                        cnv_model_tensor_name(r->v.m, r->layer), cnv_shape_str(&sh, buf, sizeof buf));
    }
    r->C = (int)sh.dims[1];
    r->P = (size_t)(cnt / sh.dims[1]);
    if ((size_t)cnt > r->seed_cap) {
        cnv_free(r->seed);
        cnv_free(r->seed2);
        r->seed = cnv_malloc((size_t)cnt * sizeof *r->seed);
        r->seed2 = cnv_malloc((size_t)cnt * sizeof *r->seed2);
        r->seed_cap = r->seed && r->seed2 ? (size_t)cnt : 0;
        if (!r->seed_cap)
            return cnv_fail(r->err, CNV_ERR_NOMEM, "dream: out of memory for a seed of %lld values",
                            (long long)cnt);
    }
    return CNV_OK;
}

static cnv_status pick_channel(dream_run *r)
{
    if (r->p->channel_every > 0)
        r->channel = cnv_rng_int(&r->rng, 0, r->C - 1);
    else if (r->p->channel >= r->C)
        return cnv_fail(r->err, CNV_ERR_INVALID_ARG, "dream: channel %d is out of range (layer '%s' has %d)",
                        r->p->channel, cnv_model_tensor_name(r->v.m, r->layer), r->C);
    else
        r->channel = r->p->channel;
    return CNV_OK;
}

/* Rolls the gradient back as the input was rolled, steps, and clamps
 * (cnv_viz_grad_fn, for the one image). */
typedef struct dream_step {
    dream_run *r;
    float *img;
    int dy, dx;
} dream_step;

static void step_image(void *arg, int i, float *g)
{
    (void)i;
    dream_step *ds = arg;
    dream_run *r = ds->r;
    const cnv_viz *v = &r->v;
    cnv_roll_chw(g, v->c, v->h, v->w, -ds->dy, -ds->dx, r->scratch);
    cnv_viz_step(v, ds->img, g, r->p->lr, 0.0f);
    if (r->p->clamp)
        cnv_clamp_pixels(ds->img, 1, v->c, v->h, v->w, v->pp.mean, v->pp.std);
}

/* One ascent step on img (of the planned size): DeepDream's step, the
 * gradient of the objective (half the mean square, or the mean) scaled by
 * 1 / mean|g|. */
static cnv_status step(dream_run *r, float *img)
{
    const cnv_dream_params *p = r->p;
    const cnv_viz *v = &r->v;
    float *in = cnv_session_input(r->s);
    memcpy(in, img, v->item * sizeof *in);
    dream_step ds = {r, img, cnv_rng_int(&r->rng, -p->jitter, p->jitter), 0};
    ds.dx = cnv_rng_int(&r->rng, -p->jitter, p->jitter);
    cnv_roll_chw(in, v->c, v->h, v->w, ds.dy, ds.dx, r->scratch);
    cnv_status st = cnv_session_forward_to(r->s, r->layer);
    float *act;
    if (st == CNV_OK)
        st = cnv_session_tensor(r->s, r->layer, &act, NULL);
    if (st != CNV_OK)
        return st;
    /* objective and seed over the channel (or all of the layer) */
    size_t n = (size_t)r->C * r->P, from = 0, count = n;
    if (r->channel >= 0) {
        from = (size_t)r->channel * r->P;
        count = r->P;
    }
    double sum = 0.0;
    for (size_t j = 0; j < count; j++)
        sum += p->l2 ? 0.5 * (double)act[from + j] * act[from + j] : act[from + j];
    r->objective = (float)(sum / (double)count);
    if (!isfinite(r->objective))
        return cnv_fail(r->err, CNV_ERR_FORMAT,
                        "dream: the objective is %g: not finite (the model's weights overflow, or make "
                        "NaN, on this image)",
                        (double)r->objective);
    memset(r->seed, 0, n * sizeof *r->seed);
    /* d/da of the objective: 1 / count, or a / count for L2. A layer that
     * is zero throughout has a zero L2 gradient even on its Relu's input
     * (pre_relu): the mean's seed brings it alive there. */
    int l2 = p->l2 && sum > 0.0;
    for (size_t j = 0; j < count; j++)
        r->seed[from + j] = (l2 ? act[from + j] : 1.0f) / (float)count;
    if ((st = cnv_viz_layer_grads(v, r->layer, r->pre, r->seed, n, n, 1, r->seed2, step_image, &ds)) != CNV_OK)
        return st;
    r->step++;
    if (p->progress && p->progress(p->user, r->step, r->total, r->objective, 0.0f))
        return cnv_fail(r->err, CNV_ERR_CANCELLED, "dream: cancelled at step %d of %d", r->step, r->total);
    return CNV_OK;
}

static cnv_status resize(const float *in, int c, int h, int w, float *out, int oh, int ow, cnv_err *err)
{
    char msg[200];
    cnv_status st = cnv_resize_chw(in, c, h, w, out, oh, ow, msg, sizeof msg);
    return st == CNV_OK ? st : cnv_fail(err, st, "dream: %s", msg);
}

static cnv_status run_dream(cnv_session *s, const cnv_dream_params *pp, float *out, size_t count, int *channels,
                     int n_channels)
{
    if (!s)
        return CNV_ERR_INVALID_ARG;
    cnv_err *err = cnv_session_err(s);
    cnv_dream_params p = pp ? *pp : cnv_dream_params_default();
    cnv_status st = check_params(&p, err);
    if (st != CNV_OK)
        return st;
    dream_run r;
    memset(&r, 0, sizeof r);
    int layer;
    if ((st = cnv_viz_begin(&r.v, s, "dream", p.preprocess, p.height, p.width)) != CNV_OK ||
        (out && (st = cnv_viz_check_len(&r.v, "out", count, 1)) != CNV_OK) ||
        (st = cnv_viz_layer(&r.v, p.layer, &layer)) != CNV_OK)
        return st;
    if (channels && n_channels != p.frames)
        return cnv_fail(err, CNV_ERR_INVALID_ARG, "dream: channels holds %d values, one per frame needs %d",
                        n_channels, p.frames);
    int c = r.v.c, H = r.v.h, W = r.v.w;
    const float *mean = r.v.pp.mean, *std = r.v.pp.std;

    /* Octave sizes: start * scale^k, at most the frame, the last the frame;
     * every one the frame for a model that takes one size only. */
    int oh[64], ow[64];
    for (int k = 0; k < p.octaves; k++) {
        double hh = p.start * pow(p.octave_scale, k);
        if (k == p.octaves - 1 || hh >= H || r.v.fixed_h || r.v.fixed_w) {
            oh[k] = H;
            ow[k] = W;
            continue;
        }
        oh[k] = (int)lround(hh);
        ow[k] = (int)lround(hh * W / H);
        if (oh[k] < 1)
            oh[k] = 1;
        if (ow[k] < 1)
            ow[k] = 1;
        if (ow[k] > W)
            ow[k] = W;
    }
    int zh = (int)lround(H * (double)p.zoom), zw = (int)lround(W * (double)p.zoom);
    size_t frame = (size_t)c * H * W, big = (size_t)c * zh * zw;
    r.s = s;
    r.layer = layer;
    r.pre = p.pre_relu ? cnv_model_pre_activation(r.v.m, layer) : -1;
    r.p = &p;
    r.err = err;
    r.total = p.octaves * p.steps + (p.frames - 1) * p.frame_steps;
    cnv_rng_seed(&r.rng, p.seed);
    float *img = cnv_malloc(frame * sizeof *img);
    float *base = cnv_malloc(frame * sizeof *base);
    float *detail = cnv_calloc(frame, sizeof *detail);
    float *tmp = cnv_malloc(big * sizeof *tmp);
    r.scratch = cnv_malloc((size_t)zh * zw * sizeof *r.scratch);
    if (!img || !base || !detail || !tmp || !r.scratch) {
        st = cnv_fail(err, CNV_ERR_NOMEM, "dream: out of memory for %dx%dx%d frames", c, H, W);
        goto done;
    }

    /* Octave 0's base: the photo shrunk, or noise around the mean color. */
    if (p.init) {
        if ((st = resize(p.init, c, H, W, base, oh[0], ow[0], err)) != CNV_OK)
            goto done;
    } else {
        size_t plane = (size_t)oh[0] * ow[0];
        for (int k = 0; k < c; k++) {
            float sd = p.init_std / 255.0f / std[k];
            for (size_t j = 0; j < plane; j++)
                base[(size_t)k * plane + j] = sd * cnv_rng_normal(&r.rng);
        }
    }
    if (p.clamp)
        cnv_clamp_pixels(base, 1, c, oh[0], ow[0], mean, std);
    for (int k = 0; k < p.octaves; k++) {
        int h = oh[k], w = ow[k];
        size_t item = (size_t)c * h * w;
        if (k > 0) {
            int ph = oh[k - 1], pw = ow[k - 1];
            /* the base at this size, and the detail dreamed so far on top */
            if (p.init)
                st = resize(p.init, c, H, W, base, h, w, err);
            else if ((st = resize(base, c, ph, pw, tmp, h, w, err)) == CNV_OK)
                memcpy(base, tmp, item * sizeof *base);
            if (st != CNV_OK || (st = resize(detail, c, ph, pw, tmp, h, w, err)) != CNV_OK)
                goto done;
            for (size_t j = 0; j < item; j++)
                img[j] = base[j] + tmp[j];
            if (p.clamp)
                cnv_clamp_pixels(img, 1, c, h, w, mean, std);
        } else {
            memcpy(img, base, item * sizeof *img);
        }
        if ((st = plan_size(&r, h, w)) != CNV_OK)
            goto done;
        if (k == 0 && (st = pick_channel(&r)) != CNV_OK)
            goto done;
        for (int t = 0; t < p.steps; t++)
            if ((st = step(&r, img)) != CNV_OK)
                goto done;
        for (size_t j = 0; j < item; j++)
            detail[j] = img[j] - base[j];
    }

    /* The movie; the last octave was at the frame size. */
    for (int f = 0; f < p.frames; f++) {
        if (f > 0) {
            if (p.channel_every > 0 && f % p.channel_every == 0 && (st = pick_channel(&r)) != CNV_OK)
                goto done;
            if (zh != H || zw != W) {
                if ((st = resize(img, c, H, W, tmp, zh, zw, err)) != CNV_OK)
                    goto done;
                int y0 = (zh - H) / 2, x0 = (zw - W) / 2;
                for (int k = 0; k < c; k++)
                    for (int y = 0; y < H; y++)
                        memcpy(img + ((size_t)k * H + y) * W,
                               tmp + ((size_t)k * zh + y0 + y) * zw + x0, (size_t)W * sizeof *img);
            }
            for (int t = 0; t < p.frame_steps; t++)
                if ((st = step(&r, img)) != CNV_OK)
                    goto done;
        }
        if (channels)
            channels[f] = r.channel;
        if (p.frame && p.frame(p.user, f, img, 1, c, H, W)) {
            st = cnv_fail(err, CNV_ERR_CANCELLED, "dream: cancelled at frame %d of %d", f, p.frames);
            goto done;
        }
    }
    if (out)
        memcpy(out, img, frame * sizeof *out);
done:
    cnv_free(img);
    cnv_free(base);
    cnv_free(detail);
    cnv_free(tmp);
    cnv_free(r.scratch);
    cnv_free(r.seed);
    cnv_free(r.seed2);
    return st;
}

/* The objective is a layer: the plan stops there (cnv_session_set_plan_target),
 * so a later layer that needs a larger input does not stand in the way, and
 * the session plans the whole model again afterwards. */
cnv_status cnv_dream(cnv_session *s, const cnv_dream_params *pp, float *out, size_t count, int *channels,
                     int n_channels)
{
    cnv_status st = run_dream(s, pp, out, count, channels, n_channels);
    if (s)
        cnv_session_set_plan_target(s, -1);
    return st;
}
